"""A release's files, read under the read policy (docs/security.md): small text files
with errors that name the file and line, and whether a listed path leaves the root.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Iterator
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from vlconvert.errors import VLConvertError
from vlconvert.storage import NotARegularFile, filesystem, open_regular, read_at_most, within

from ._options import option_bool

# The largest text file of a known release is CUB's image_attribute_labels.txt, about 75 MB.
MAX_RELEASE_FILE_BYTES = 512 << 20


class ReleaseFiles:
    """The files of one dataset release under ROOT (a local folder or an fsspec URL).

    ``allow_outside_root``: the release's paths and links may lead out of ROOT (by
    default a path leaving it is rejected, and a local image must resolve inside it)."""

    def __init__(self, root: str, dataset: str, allow_outside_root: bool | str = False):
        self.root = root
        self.dataset = dataset
        self.allow_outside_root = option_bool(allow_outside_root, "allow_outside_root")
        self.fs, self.path = filesystem(root, "--root")
        self._beside_root: set[str] = set()
        if not self.fs.isdir(self.path):
            raise VLConvertError(f"{root}: no such folder (the {dataset} root)")

    def join(self, *parts: str) -> str:
        return posixpath.join(self.path, *parts)

    @property
    def image_root(self) -> str | None:
        """The folder local images must resolve into; None when the release may lead anywhere (or is remote)."""
        return None if self.allow_outside_root or not isinstance(self.fs, LocalFileSystem) else self.path

    def exists(self, relative: str) -> bool:
        return self.fs.exists(self.join(relative))

    def location(self, relative: str) -> str:
        """What a Record's ``image`` should hold for a file named by the release; URLs and absolute paths stay.

        A ``file://`` path is the local path it names, read as :func:`leaves_root` checked it: a
        relative one is relative to the root, never to the folder vlconvert happens to run in."""
        scheme, sep, rest = relative.partition("://")
        if sep and scheme.lower() == "file" and "::" not in relative and not rest.startswith("/"):
            relative = rest
        if "://" in relative or relative.startswith("/"):
            return relative
        path = self.join(relative)
        return path if isinstance(self.fs, LocalFileSystem) else self.fs.unstrip_protocol(path)

    def require(self, relative: str, expected: str) -> str:
        if not self.exists(relative):
            raise VLConvertError(f"{self.root}: {relative} not found; {self.dataset} expects {expected}")
        return relative

    def open_path(self, path: str, confine: bool = True):
        """A release file (``path`` as :meth:`join` makes it) opened for reading, under the read policy
        (docs/security.md): a regular file, inside the root after resolving links unless the release may
        leave it.  A metadata file linked to /etc/passwd would otherwise be read, and its lines quoted
        in the error; a FIFO named val.json would block for ever."""
        shown = posixpath.join(self.root, posixpath.relpath(path, self.path)) if path.startswith(self.path) else path
        if confine and self.image_root is not None:
            real, root = os.path.realpath(path), os.path.realpath(self.path)
            if not within(real, root) and real not in self._beside_root:
                raise VLConvertError(f"{shown}: resolves to {real}, outside the dataset root; not read "
                                     "(--option allow_outside_root=true to read it anyway)")
        try:
            return open_regular(self.fs, path)
        except FileNotFoundError:
            raise VLConvertError(f"{shown}: not found") from None
        except (NotARegularFile, IsADirectoryError) as exc:
            raise VLConvertError(f"{shown}: {exc.strerror}; not read") from None

    def allow_beside_root(self, relative: str) -> None:
        """A file the layout itself puts outside ROOT (CUB's attributes.txt beside CUB_200_2011/), read where it
        lies: a link there to anywhere else is still refused."""
        if self.image_root is not None:
            self._beside_root.add(os.path.normpath(os.path.join(os.path.realpath(self.path), relative)))

    def read_bytes(self, relative: str, limit: int = MAX_RELEASE_FILE_BYTES) -> bytes:
        with self.open_path(self.join(relative)) as f:
            data = read_at_most(f, limit)
        if len(data) > limit:
            raise VLConvertError(f"{self.root}/{relative}: larger than {limit >> 20} MB; not a release file vlconvert reads")
        return data

    def read_text(self, relative: str, expected: str) -> str:
        self.require(relative, expected)
        data = self.read_bytes(relative)
        try:
            return data.decode("utf-8-sig")  # a BOM would otherwise stick to the first id
        except UnicodeDecodeError:
            return data.decode("latin-1")  # older releases are not all UTF-8

    def rows(self, relative: str, fields: int, expected: str, rest: bool = False) -> Iterator[tuple[int, list[str]]]:
        """(line number, fields) of a whitespace-separated file; with ``rest`` the last field keeps its spaces."""
        for number, line in enumerate(self.read_text(relative, expected).splitlines(), start=1):
            if not line.strip():
                continue
            # Stray spaces at a line's end (or inside a name's last field) are not part of any value.
            parts = [p.strip() for p in line.split(maxsplit=fields - 1)] if rest else line.split()
            if len(parts) != fields:
                raise VLConvertError(f"{self.root}/{relative}, line {number}: expected '{expected}', found {line!r}")
            yield number, parts

    def table(self, relative: str, expected: str, parse: Callable[[list[str]], Any], fields: int, rest: bool = False) -> dict:
        """First field → ``parse(other fields)``; a bad value or a repeated id names the line."""
        out: dict[str, Any] = {}
        for number, (key, *values) in self.rows(relative, fields, expected, rest):
            if key in out:
                raise VLConvertError(f"{self.root}/{relative}, line {number}: id {key} appears a second time")
            try:
                out[key] = parse(values)
            except ValueError:
                raise VLConvertError(
                    f"{self.root}/{relative}, line {number}: expected '{expected}', found {' '.join([key, *values])!r}"
                ) from None
        return out


REMOTE_SCHEMES = ("http", "https", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "hf")


def leaves_root(root: str, path: str) -> bool:
    """Whether a listed path may resolve outside ``root`` (the release folder, as its filesystem names it).

    Remote URLs of the usual stores are references by design and stay; every other scheme
    (``file:``, ``local:``, a ``::`` chain, ``~``) could reach any local file, so it counts
    as leaving unless a ``file://`` path normalises to somewhere under the root."""
    scheme, sep, rest = path.partition("://")
    if sep and "::" not in path and scheme.lower() in REMOTE_SCHEMES:
        return False
    if sep:
        if scheme.lower() != "file" or "::" in path:
            return True
        path = rest
    if "::" in path or path.startswith("~") or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path):
        return True
    root = posixpath.normpath(root or ".")
    target = posixpath.normpath(path if path.startswith("/") else posixpath.join(root, path))
    if not target.startswith("/") and root.startswith("/"):
        return True
    return not (target == root or target.startswith(root.rstrip("/") + "/"))
