"""Reads a record's image bytes, as far as the dataset may take the reader and no further.

A dataset from someone else decides which paths vlconvert opens, so every read
holds to three rules (docs/security.md):

* **inside the root after resolving links**: a local path is resolved (every
  symlink, ``..``) and must land inside the adapter's dataset folder, unless the
  adapter allows paths outside it (``allow_outside_root``);
* **regular files only**: a FIFO would block for ever and ``/dev/zero`` would
  never end, so the file is opened without blocking and checked with ``fstat``
  before a byte is read;
* **a byte cap** (``--max-image-bytes``): a larger file is refused from its size,
  and never more than the cap is read, locally or remotely.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

import fsspec

from vlconvert.options import DEFAULT_MAX_IMAGE_BYTES
from vlconvert.pipeline.decode import ImageError
from vlconvert.storage import NotARegularFile, open_local_regular, protocols, read_at_most, within


@dataclass(frozen=True)
class ReadLimits:
    root: str | None = None  # the resolved folder local images must lie in; None: anywhere
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES


def read_image_bytes(image: str | bytes, limits: ReadLimits) -> bytes:
    """The encoded image: bytes as given, a local file, or an fsspec URL; raises ImageError."""
    if isinstance(image, bytes):
        if len(image) > limits.max_bytes:
            raise ImageError(_too_large(f"<{len(image)} bytes>", len(image), limits.max_bytes))
        return image
    if "://" in image and not image.startswith("file://"):
        return _read_remote(image, limits)
    return _read_local(image.removeprefix("file://"), limits)


def _read_local(path: str, limits: ReadLimits) -> bytes:
    real = os.path.realpath(path)
    if limits.root is not None and not within(real, limits.root):
        raise ImageError(f"image {path} resolves to {real}, outside the dataset root {limits.root}; links may not lead "
                         "out of it (--option allow_outside_root=true to read them anyway)")
    try:
        with open_local_regular(real) as f:
            size = os.fstat(f.fileno()).st_size
            if size > limits.max_bytes:
                raise ImageError(_too_large(path, size, limits.max_bytes))
            data = read_at_most(f, limits.max_bytes, size)  # a file that grows while read still stops at the cap
    except FileNotFoundError as exc:
        raise ImageError(f"image file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"image path is a folder: {path}") from exc
    except NotARegularFile as exc:
        raise ImageError(f"image {path} is {exc.strerror}; only regular files are read") from exc
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {os.strerror(exc.errno) if exc.errno else exc}") from exc
    if len(data) > limits.max_bytes:
        raise ImageError(_too_large(path, len(data), limits.max_bytes))
    return data


def _read_remote(url: str, limits: ReadLimits) -> bytes:
    try:
        fs, path = fsspec.core.url_to_fs(url)
        if "http" in protocols(fs):
            # A server may ignore a Range header: stream, and stop reading at the cap.
            with fs.open(path, "rb", block_size=0) as f:
                data = read_at_most(f, limits.max_bytes)
        else:
            data = _ranged_get(fs, path, limits.max_bytes + 1)  # one GET of at most the cap
    except FileNotFoundError as exc:  # fsspec's HTTP backend also says this when the server cannot be reached
        raise ImageError(f"cannot read image {url}: not found or not reachable") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"image path is a folder: {url}") from exc
    except OSError as exc:
        raise ImageError(f"cannot read image {url}: {os.strerror(exc.errno) if exc.errno else exc}") from exc
    except ImportError as exc:  # fsspec's http:// and s3:// backends are optional packages
        raise ImageError(f"cannot read image {url}: its URL scheme needs a package that is not installed ({exc})") from exc
    except ValueError as exc:
        raise ImageError(f"cannot read image {url}: {exc}") from exc
    except Exception as exc:
        # A store's own error (HTTP 403, a malformed URL for the backend) belongs to this record only.
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise ImageError(f"cannot read image {url}: {type(exc).__name__}: {detail}") from exc
    if len(data) > limits.max_bytes:
        raise ImageError(_too_large(url, len(data), limits.max_bytes))
    return data


def _ranged_get(fs, path: str, end: int) -> bytes:
    try:
        return fs.cat_file(path, start=0, end=end)
    except OSError as exc:
        # S3 answers any range on an empty object with 416 InvalidRange (s3fs: EINVAL); ask, rarely, why.
        if exc.errno == errno.EINVAL or "InvalidRange" in str(exc) or "416" in str(exc):
            if fs.size(path) == 0:
                return b""
        raise


def _too_large(path: str, size: int, limit: int) -> str:
    return f"image {path} is {size:,} bytes, over the limit of {limit:,} (--max-image-bytes)"
