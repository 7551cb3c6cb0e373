"""Local paths and fsspec URLs (s3://, gs://, file://, …) behind one call."""

from __future__ import annotations

import errno
import functools
import os
import re
import secrets
import stat

import fsspec
from fsspec.implementations.local import LocalFileSystem

from vlconvert.errors import BuildFailed, VLConvertError

# Backends raise their own exception types (botocore's EndpointConnectionError is not an OSError).
_STORAGE_LIBRARIES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "google", "adlfs", "azure", "fsspec")


def filesystem(url: str, role: str):
    """``(fs, path)`` for ``url``; a missing fsspec backend is the user's to install, so say which."""
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise VLConvertError(f"{role} {url}: this URL needs an extra package: {exc}") from exc
    except ValueError as exc:
        raise VLConvertError(f"{role} {url}: not a usable path or URL: {exc}") from exc


_ATOMIC_UPLOAD_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "memory"}
_GLOB_CHARACTERS = set("*?[]")


def protocols(fs) -> tuple[str, ...]:
    """Every name of the filesystem's protocol (s3fs is both "s3" and "s3a")."""
    return tuple(fs.protocol) if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)


def uploads_are_atomic(fs) -> bool:
    """Object stores show a file only once its upload is complete; a rename there is a full copy."""
    return any(p in _ATOMIC_UPLOAD_PROTOCOLS for p in protocols(fs))


def check_no_glob(url: str, role: str) -> None:
    # fsspec expands these in listings and deletes: "exp[1]" would match, and delete, "exp1".
    found = sorted(_GLOB_CHARACTERS & set(url))
    if found:
        raise VLConvertError(f"{role} {url}: may not contain {' '.join(found)} (fsspec reads them as wildcards)")


def write_atomic(fs, path: str, data: bytes) -> None:
    """A reader sees the old file or the new one, never half of one."""
    if uploads_are_atomic(fs):
        fs.pipe_file(path, data)
        return
    try:
        with fs.open(path + ".tmp", "wb") as f:
            f.write(data)
    except BaseException:
        if fs.exists(path + ".tmp"):  # a full disk must not leave a stray half file
            fs.rm(path + ".tmp")
        raise
    fs.mv(path + ".tmp", path)


CLAIM_TEMP = re.compile(r"\.[0-9a-f]{16}\.tmp")  # what write_exclusive adds to a name while it writes


def write_exclusive(fs, path: str, data: bytes) -> bool:
    """Write ``path`` whole, only if nothing is there yet; False when something already is (or appears meanwhile).

    On a local disk the data goes to a temp file of its own (``path`` + :data:`CLAIM_TEMP`), published with
    ``os.link``, which fails when the name exists: of two writers exactly one wins, and a reader never sees half
    a file.  A disk without hard links (exFAT, some network shares) gets ``O_EXCL`` on ``path`` itself instead.
    Object stores replace, as :func:`write_atomic` does: fsspec offers them no create-if-absent."""
    if not isinstance(fs, LocalFileSystem):
        write_atomic(fs, path, data)
        return True
    temp = f"{path}.{secrets.token_hex(8)}.tmp"
    try:
        with fs.open(temp, "wb") as f:  # through fs: a LocalFileSystem subclass may watch writes
            f.write(data)
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        except FileNotFoundError:  # another run, seeing only a temp, took it for a claim cut short
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            return _create_exclusive(path, data)
        return True
    finally:
        try:
            os.remove(temp)
        except FileNotFoundError:
            pass


def _create_exclusive(path: str, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return True


def _from_storage_library(exc: BaseException) -> bool:
    return any(cls.__module__.split(".")[0] in _STORAGE_LIBRARIES for cls in type(exc).__mro__)


def storage_errors(function):
    """Report a storage backend's failure (an unreachable endpoint, an expired token) in one line."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            if isinstance(exc, (VLConvertError, BuildFailed)) or not _from_storage_library(exc):
                raise
            detail = (str(exc).strip().splitlines() or [""])[0]
            raise BuildFailed(f"storage error ({type(exc).__name__}): {detail}; shards finished so far are kept: "
                              "rerun the same command to resume") from exc

    return wrapper


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _special_file_kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


class NotARegularFile(OSError):
    """A FIFO, device or socket where a file was expected: opening it could block for ever or never end."""


def open_regular(fs, path: str):
    """``fs.open(path, "rb")``, refusing anything but a regular file on a local disk without blocking on it.

    A build folder from someone else may hold a FIFO named ``manifest.json`` or a link to ``/dev/zero``
    named like a shard; the readers of a build (validate, inspect) open files through this."""
    return fs.open(path, "rb") if not isinstance(fs, LocalFileSystem) else open_local_regular(path)


def open_local_regular(path: str):
    """A local file opened for reading without blocking on it; IsADirectoryError or NotARegularFile
    (its ``strerror`` says what it is instead) before a byte is read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "a folder, not a regular file", path)
        if not stat.S_ISREG(mode):
            raise NotARegularFile(0, f"{_special_file_kind(mode)}, not a regular file", path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def bounded_lines(f, limit: int):
    """(line number, line without its newline) of a binary file; a line longer than ``limit`` comes as None,
    read past in steps rather than held: a damaged errors.jsonl can be one line of gigabytes."""
    number = 0
    while True:
        line = f.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) <= limit or line.endswith(b"\n"):
            yield number, line.rstrip(b"\n")
            continue
        while line and not line.endswith(b"\n"):
            line = f.readline(1 << 20)
        yield number, None


def read_at_most(f, limit: int, expected: int | None = None) -> bytes:
    """What ``f`` holds, but never more than ``limit + 1`` bytes (so a caller can tell "too large").

    ``f.read(limit + 1)`` would allocate the whole limit up front on every call; the file's own
    size (``expected``) is asked for first, and a file that grows, or reports no size (``/proc``),
    is read on in 1 MB steps."""
    data = f.read(min(expected, limit) + 1) if expected is not None else b""
    if expected is not None and len(data) <= expected:
        return data
    parts, size = [data], len(data)
    while size <= limit and (chunk := f.read(min(1 << 20, limit + 1 - size))):
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def read_bounded(fs, path: str, limit: int) -> bytes:
    """A whole small file through :func:`open_regular`; ``ValueError`` when it is larger than ``limit``."""
    with open_regular(fs, path) as f:
        data = read_at_most(f, limit, os.fstat(f.fileno()).st_size if isinstance(fs, LocalFileSystem) else None)
    if len(data) > limit:
        raise ValueError(f"{path}: larger than {limit:,} bytes")
    return data


def within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (both already resolved)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")
