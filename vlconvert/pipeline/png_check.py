"""What Pillow does not check of a PNG: its chunks' CRCs and the image data its header implies.

Pillow stops decoding once it has enough pixels and checks neither IDAT CRCs
nor the zlib stream's Adler-32, so a PNG zero-filled after its first third
(zeros decode as valid Huffman codes) or whose compressed data covers a sliver
of the header's size decodes "cleanly" into garbage or grey.  libpng reports
both (a CRC error on a critical chunk; "Not enough image data"): this module
makes the same checks, from the PNG specification, so the build and
``vlconvert validate`` can reject what libpng would.  It inflates the image
data a second time, in 1 MB steps, keeping none of it.
"""

from __future__ import annotations

import struct
import zlib

_CRITICAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type → samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))  # x0, y0, dx, dy


class DamagedPNG(ValueError):
    pass


def check_png(data: bytes) -> None:
    """Raise :class:`DamagedPNG` if a critical chunk fails its CRC, the file ends early, or the image data
    does not inflate, through a cleanly ended zlib stream, to exactly what the header implies."""
    position, header, expected, produced = 8, None, 0, 0
    inflater = zlib.decompressobj()
    while True:
        if position + 12 > len(data):
            raise DamagedPNG("the PNG ends before its IEND chunk")
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        end = position + 12 + length
        if end > len(data):
            raise DamagedPNG(f"PNG chunk {kind!r} runs past the end of the file")
        body = data[position + 8:end - 4]
        if kind in _CRITICAL and zlib.crc32(kind + body) != struct.unpack(">I", data[end - 4:end])[0]:
            raise DamagedPNG(f"PNG chunk {kind.decode('latin-1')} fails its CRC check")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13])
            expected = _image_data_size(header)
        elif kind == b"IDAT" and header is not None and not inflater.eof:
            pending = body
            while pending:
                produced += len(inflater.decompress(pending, 1 << 20))
                pending = inflater.unconsumed_tail
                if produced > expected:
                    raise DamagedPNG(f"PNG image data inflates past the {expected:,} bytes its header implies")
        elif kind == b"IEND":
            break
        position = end
    if header is None:
        raise DamagedPNG("the PNG has no IHDR chunk")
    if not inflater.eof:
        raise DamagedPNG("PNG image data ends before its compressed stream does")
    if produced != expected:
        raise DamagedPNG(f"PNG image data holds {produced:,} bytes, its header implies {expected:,} (not enough image data)")


def _image_data_size(header: tuple) -> int:
    """Bytes of filtered scanlines a PNG of this header holds (each row: a filter byte, then its pixels)."""
    width, height, depth, colour, _, _, interlace = header
    bits = depth * _CHANNELS.get(colour, 4)
    if interlace != 1:
        return height * (1 + (width * bits + 7) // 8)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        columns, rows = -(-(width - x0) // dx) if width > x0 else 0, -(-(height - y0) // dy) if height > y0 else 0
        if columns and rows:
            total += rows * (1 + (columns * bits + 7) // 8)
    return total
