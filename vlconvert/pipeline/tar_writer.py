"""Writes samples into tar files, byte for byte reproducibly, within a sample count and a byte size.

A sample is an ordered list of (member, bytes) pairs, stored as ``KEY.<member>``.
Each tar header carries a fixed mtime, owner and mode, so the same samples always
give the same bytes and the same sha256.  ``RollingTarWriter`` starts the next
part when a sample would cross either bound; the byte bound counts exactly what
tarfile writes, PAX extended headers included (a member name over 100 bytes gets
one), and the end-of-archive blocks.  A single sample larger than the byte bound
still gets a part of its own.

The members are written as ``tarfile.TarFile.addfile`` and ``close`` write them (the
pinned shard digests in tests/test_layout.py hold it to that), but each header is
encoded once, for the bound and the file alike, and the data goes out in one write:
``addfile`` encodes it again and copies the data through a file object, which cost
about a tenth of a build that passes images through.
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
# Fixed rather than tarfile's locale-dependent default, so that the header sizes counted
# below are the ones written, on any machine.
_FORMAT = tarfile.PAX_FORMAT
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


@dataclass(frozen=True)
class ShardInfo:
    path: str  # where the writer wrote it (renamed later by the build)
    samples: int
    bytes: int
    sha256: str
    table_bytes: int = 0  # the part's Parquet table (shard_table.py), beside it
    table_sha256: str = ""


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


def _tar_entries(key: str, members: list[tuple[str, bytes]]) -> list[tuple[bytes, bytes, bytes]]:
    """Each member as (header, data, padding): its header blocks as ``addfile`` encodes them (a PAX extended
    header first when the name is long or the size huge), its data, and the zeros that fill its last block."""
    return [(member_header(f"{key}.{member}", len(data)), data, _NUL[: -len(data) % _BLOCK]) for member, data in members]


_NUL = bytes(_BLOCK)
# The fields of a member's ustar header that are the same for every member: mode 0444, uid and gid 0 (before
# the size), mtime 0 (after it); a regular file, no link, the POSIX magic, no owner names, empty device fields (a
# regular file has none), no prefix.
_BEFORE_SIZE = b"0000444\0" + b"0000000\0" * 2
_AFTER_SIZE = b"%011o\0" % _MTIME
_AFTER_CHECKSUM = (tarfile.REGTYPE + bytes(100) + tarfile.POSIX_MAGIC + bytes(64 + 16 + 155)).ljust(_BLOCK - 156, b"\0")
_MAX_PLAIN_SIZE = 8**11 - 1  # the largest size the 12-byte field holds; larger needs a PAX header


def member_header(name: str, size: int) -> bytes:
    """The header ``TarInfo.tobuf`` writes for a member (tests/pipeline/test_tar_writer.py holds the two equal),
    built directly when it is one plain ustar block: tarfile's general encoder took about 5% of a
    pass-through build."""
    encoded = name.encode("ascii", "ignore")
    if len(encoded) != len(name) or len(encoded) > 100 or size > _MAX_PLAIN_SIZE:
        info = tarfile.TarInfo(name)  # a PAX extended header first: tarfile knows how
        info.size, info.mtime, info.mode = size, _MTIME, 0o444
        info.uname = info.gname = ""
        return info.tobuf(_FORMAT, _ENCODING, _ERRORS)
    head = encoded.ljust(100, b"\0") + _BEFORE_SIZE + b"%011o\0" % size + _AFTER_SIZE
    checksum = sum(head) + 8 * 32 + sum(_AFTER_CHECKSUM)  # the checksum field counts as eight spaces
    return head + b"%06o\0 " % checksum + _AFTER_CHECKSUM


def _stored_bytes(entries: list[tuple[bytes, bytes, bytes]]) -> int:
    return sum(len(header) + len(data) + len(padding) for header, data, padding in entries)


def sample_bytes(key: str, members: list[tuple[str, bytes]]) -> int:
    """The bytes a sample adds to a tar file."""
    return _stored_bytes(_tar_entries(key, members))


def closed_size(content_bytes: int) -> int:
    """The file size once closed: two zero blocks end the archive, then padding to a whole record."""
    return -(-(content_bytes + 2 * _BLOCK) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


class TarPart:
    """One open tar file.  As a context manager it is closed on the way out: finished when the block
    ran through, abandoned when it raised."""

    def __init__(self, fileobj, path: str):
        self.path = path
        self._raw = fileobj
        self._out = _HashingWriter(fileobj)
        self._ended = False
        self.samples = 0

    def __enter__(self) -> TarPart:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    @property
    def bytes(self) -> int:
        return self._out.size

    def write(self, key: str, members: list[tuple[str, bytes]]) -> None:
        self._add(_tar_entries(key, members))

    def _add(self, entries: list[tuple[bytes, bytes, bytes]]) -> None:
        # One write (and one hash update) per sample: a write per header, data and padding was 12 calls through
        # fsspec's file wrapper per sample, ~3% of a resizing build.
        self._out.write(b"".join(part for entry in entries for part in entry))
        self.samples += 1

    def close(self) -> ShardInfo:
        """End the archive and close the file; the file is closed even when ending it fails (a full disk)."""
        try:
            if not self._ended:
                self._ended = True
                self._out.write(bytes(closed_size(self._out.size) - self._out.size))
            _sync(self._raw)
        finally:
            self._raw.close()
        return ShardInfo(self.path, self.samples, self._out.size, self._out.digest.hexdigest())

    def abandon(self) -> None:
        """Close the file without ending the archive.  The task that wrote it did not commit, so the part
        is never counted: a ``_tmp-`` part is deleted by the next run, a ``_done-`` one overwritten."""
        self._ended = True
        self._raw.close()


def _sync(raw) -> None:
    """On a local disk, data reaches the platter before the part is committed, so a power cut
    cannot leave a committed part of the right size with the wrong bytes."""
    try:
        raw.flush()
        os.fsync(raw.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass  # not a local file (an S3 upload, a pipe): nothing to sync


class RollingTarWriter:
    """Writes samples into parts ``open_part(0)``, ``open_part(1)``, … within the bounds.

    As a context manager, the part still open is closed on the way out: finished when the block ran
    through, abandoned when it raised, so an error never leaves a file open."""

    def __init__(self, open_part: Callable[[int], TarPart], max_samples: int, max_bytes: int):
        self._open_part = open_part
        self._max_samples = max_samples
        self._max_bytes = max_bytes
        self._current: TarPart | None = None
        self.closed: list[ShardInfo] = []

    def __enter__(self) -> RollingTarWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._current is not None:
            part, self._current = self._current, None
            part.abandon()

    def write(self, key: str, members: list[tuple[str, bytes]]) -> int:
        """Adds one sample; returns the number of the part it went into."""
        entries = _tar_entries(key, members)
        size = _stored_bytes(entries)
        part = self._current
        if part is not None and part.samples and (
            part.samples >= self._max_samples or closed_size(part.bytes + size) > self._max_bytes
        ):
            self._current = None  # close() closes the file even when it fails: nothing left to abandon
            self.closed.append(part.close())
            part = None
        if part is None:
            part = self._current = self._open_part(len(self.closed))
        part._add(entries)
        return len(self.closed)

    def close(self) -> list[ShardInfo]:
        """Finish the open part; the parts written, in order."""
        if self._current is not None:
            part, self._current = self._current, None
            self.closed.append(part.close())
        return self.closed
