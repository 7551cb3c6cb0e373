"""Writes samples into tar shards, byte for byte reproducibly.

A sample is an ordered list of (extension, bytes) members, stored as
``KEY.<extension>``.  Each tar header carries a fixed mtime, owner and mode, so
the same samples always give the same bytes and the same sha256.  Shards are
bounded by a sample count and a byte size (of the finished file); ``ShardSink``
rolls over to the next part when either bound would be crossed.  A single
sample larger than the byte bound still gets a shard of its own.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

_BLOCK = tarfile.BLOCKSIZE
_MTIME = 0  # a fixed timestamp keeps the archive independent of when it was built


@dataclass(frozen=True)
class ShardInfo:
    path: str  # where the sink wrote it (renamed later by the build)
    samples: int
    bytes: int
    sha256: str


class _HashingWriter:
    """File-like object that hashes and counts what passes through to ``raw``."""

    def __init__(self, raw):
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def _member_bytes(size: int) -> int:
    return _BLOCK + -(-size // _BLOCK) * _BLOCK


def sample_bytes(members: list[tuple[str, bytes]]) -> int:
    return sum(_member_bytes(len(data)) for _, data in members)


def closed_size(content_bytes: int) -> int:
    """The file size once closed: two zero blocks end the archive, then padding to a whole record."""
    return -(-(content_bytes + 2 * _BLOCK) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


class TarShard:
    """One open tar file."""

    def __init__(self, fileobj, path: str):
        self.path = path
        self._raw = fileobj
        self._out = _HashingWriter(fileobj)
        self._tar = tarfile.open(fileobj=self._out, mode="w", format=tarfile.PAX_FORMAT)
        self.samples = 0

    @property
    def bytes(self) -> int:
        return self._out.size

    def write(self, key: str, members: list[tuple[str, bytes]]) -> None:
        for extension, data in members:
            info = tarfile.TarInfo(f"{key}.{extension}")
            info.size = len(data)
            info.mtime = _MTIME
            info.mode = 0o444
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))
        self.samples += 1

    def close(self) -> ShardInfo:
        self._tar.close()
        _sync(self._raw)
        self._raw.close()
        return ShardInfo(self.path, self.samples, self._out.size, self._out.digest.hexdigest())


def _sync(raw) -> None:
    """On a local disk, data reaches the platter before the part is committed, so a power cut
    cannot leave a committed part of the right size with the wrong bytes."""
    try:
        raw.flush()
        os.fsync(raw.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass  # not a local file (an S3 upload, a pipe): nothing to sync


class ShardSink:
    """Writes samples into parts ``open_part(0)``, ``open_part(1)``, … within the bounds."""

    def __init__(self, open_part: Callable[[int], TarShard], max_samples: int, max_bytes: int):
        self._open_part = open_part
        self._max_samples = max_samples
        self._max_bytes = max_bytes
        self._current: TarShard | None = None
        self.closed: list[ShardInfo] = []

    def write(self, key: str, members: list[tuple[str, bytes]]) -> None:
        size = sample_bytes(members)
        shard = self._current
        if shard is not None and shard.samples and (
            shard.samples >= self._max_samples or closed_size(shard.bytes + size) > self._max_bytes
        ):
            self.closed.append(shard.close())
            shard = None
        if shard is None:
            shard = self._current = self._open_part(len(self.closed))
        shard.write(key, members)

    def close(self) -> list[ShardInfo]:
        if self._current is not None:
            self.closed.append(self._current.close())
            self._current = None
        return self.closed
