"""Builders of hostile and careless inputs for the red-team tests: real files, made here with Pillow and bytes.

Each one is what a stranger's dataset or a careless user can put in front of
vlconvert: corrupt images that Pillow alone accepts, images whose decoding
would cost minutes, JSON nested to exhaust a parser, and runs confined by a
memory and a time limit so that a regression fails the test instead of the machine.
"""

from __future__ import annotations

import io
import os
import random
import resource
import struct
import subprocess
import sys
from pathlib import Path

from PIL import Image

VLCONVERT = str(Path(sys.executable).with_name("vlconvert"))
MEMORY_LIMIT = 1 << 30  # a build of a few images needs about 300 MB; the attacks below need many GB unchecked
TIME_LIMIT = 120


def run_confined(*args: str, memory: int = MEMORY_LIMIT, timeout: int = TIME_LIMIT, cwd=None) -> subprocess.CompletedProcess:
    """``vlconvert ARGS`` under an address-space limit (workers inherit it) and a wall-clock limit."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run([VLCONVERT, *args], capture_output=True, text=True, timeout=timeout, preexec_fn=limit, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"})


def photo(size=(96, 72), seed: int = 0) -> Image.Image:
    """An image with real detail (seeded noise), so its compressed data is long enough to damage."""
    return Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))


def jpeg(img: Image.Image | None = None, **options) -> bytes:
    out = io.BytesIO()
    (img or photo()).save(out, "JPEG", quality=90, **options)
    return out.getvalue()


def png(img: Image.Image | None = None) -> bytes:
    out = io.BytesIO()
    (img or photo()).save(out, "PNG")
    return out.getvalue()


def zero_tail(data: bytes) -> bytes:
    """The first third kept, the rest zeroed: a download or copy that was allocated but never filled."""
    third = len(data) // 3
    return data[:third] + b"\0" * (len(data) - third)


def cut_with_end_marker(data: bytes) -> bytes:
    """A JPEG cut to a third with an end-of-image marker appended, so it 'ends' cleanly."""
    return data[: len(data) // 3] + b"\xff\xd9"


def header_claiming(width: int, height: int) -> bytes:
    """A tiny JPEG whose frame header claims ``width`` x ``height``: its data covers a sliver of that."""
    data = bytearray(jpeg(Image.new("RGB", (16, 16), (200, 30, 30))))
    at = next(data.find(marker) for marker in (b"\xff\xc0", b"\xff\xc2") if data.find(marker) >= 0)
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of every JPEG segment; a scan's end includes its entropy-coded data."""
    i, found = 2, []
    while i < len(data):
        marker = data[i + 1]
        if marker == 0xD9:
            found.append((marker, i, i + 2))
            break
        end = i + 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker == 0xDA:
            while True:
                end = data.index(b"\xff", end)
                if data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                    end += 2
                    continue
                break
        found.append((marker, i, end))
        i = end
    return found


def scan_bomb(scans: int = 3000, size=(4000, 4000)) -> bytes:
    """A progressive JPEG of one flat colour whose last scan is repeated ``scans`` times: a few hundred KB
    that libjpeg decodes scan by scan over the whole image, for minutes."""
    data = jpeg(Image.new("RGB", size, (90, 140, 60)), progressive=True)
    segments = _segments(data)
    _, start, end = [s for s in segments if s[0] == 0xDA][-1]
    eoi = segments[-1][1]
    return data[:eoi] + data[start:end] * scans + data[eoi:]


def nested_json(depth: int = 100_000, key: str = "images") -> str:
    """About ``2 * depth`` bytes of nested arrays under ``key``: costs an unguarded ijson gigabytes."""
    return '{"%s": %s%s}' % (key, "[" * depth, "]" * depth)


def make_fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def interlaced_png(width: int = 13, height: int = 9) -> bytes:
    """An Adam7-interlaced RGB PNG, written by hand (Pillow writes none): seven passes of filter-0 rows."""
    import zlib

    pixels = random.Random(1).randbytes(width * height * 3)
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
        for y in range(y0, height, dy):
            row = b"".join(pixels[(y * width + x) * 3:(y * width + x) * 3 + 3] for x in range(x0, width, dx))
            if row:
                raw += b"\0" + row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def png_claiming(width: int, height: int, rows: int = 1) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but whose (valid, cleanly ended) data holds ``rows`` rows."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    data = zlib.compress((b"\0" + b"\x80" * width * 3) * rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def rewrite_shard(out: Path, split: str, index: int, change) -> None:
    """Rewrite shard ``index`` of ``split`` member by member (``change(name, data) -> (name, data)``) and update
    its manifest entry to match, so that only what ``change`` did is wrong with the build."""
    import hashlib
    import io
    import json
    import tarfile

    shard = out / split / f"{split}-{index:06d}.tar"
    buffer = io.BytesIO()
    with tarfile.open(shard) as source, tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as target:
        for member in source:
            member.name, data = change(member.name, source.extractfile(member).read())
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    shard.write_bytes(buffer.getvalue())
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["splits"][split]["shards"][index]
    entry.update(bytes=shard.stat().st_size, sha256=hashlib.sha256(shard.read_bytes()).hexdigest())
    (out / "manifest.json").write_text(json.dumps(manifest))
