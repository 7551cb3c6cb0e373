"""Decoding an image whole and strictly, within a budget checked from its header first.

A JPEG is decoded by libjpeg-turbo through simplejpeg in strict mode (libjpeg's
warnings are errors); every other format by Pillow in full, a PNG's integrity
checked as libpng would (:mod:`~vlconvert.pipeline.png_check`).  See
:mod:`~vlconvert.pipeline.images` for where this sits in preparing an image.
"""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from vlconvert.options import DEFAULT_MAX_IMAGE_PIXELS
from vlconvert.pipeline.png_check import check_png

# A JPEG's decode work is its pixels times its scans (each scan walks every block).  The budget is
# what the largest allowed image costs with 10 scans, the progression libjpeg itself writes.
SCANS_PER_PIXEL_BUDGET = 10
JPEG_FORMATS = {"JPEG", "MPO"}


class ImageError(ValueError):
    """A record whose image could not be read or decoded; it goes to the error report."""


def check_decodes(data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
    """Raise ImageError unless ``data`` decodes fully and cleanly within the decode budget, as the build
    demands of every image it writes (``vlconvert validate`` holds a shard's images to the same)."""
    # Any exception: whatever stops a decoder here stops a reader of the shard too.
    with decode_errors(Exception), Image.open(io.BytesIO(data)) as img:
        check_budget(img, data, max_pixels)
        if img.format in JPEG_FORMATS:
            verify_jpeg(data, img)
        else:
            load_whole(img, data)


# What decoders raise for bad data.  Anything else in a build is a decoder failing in a way vlconvert does
# not know, which the shard task reports as "unexpected" (docs/errors.md).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


@contextmanager
def decode_errors(expected):
    """The ``expected`` exceptions a decoder raises, as the ImageError the error report gives a reason for."""
    try:
        yield
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError("not a recognised image format") from exc
    except expected as exc:
        raise ImageError(f"cannot decode image: {exc}") from exc


def load_whole(img: Image.Image, data: bytes) -> None:
    """Decode a non-JPEG image in full; a PNG's integrity is checked as libpng would (``png_check``)."""
    img.load()
    if img.format == "PNG":
        check_png(data)


def check_budget(img: Image.Image, data: bytes, max_pixels: int) -> None:
    """Refuse, from the header alone, an image whose decoding would cost more than the budget."""
    width, height = img.size
    pixels = width * height
    if pixels > max_pixels:
        raise ImageError(f"image is {width}x{height} = {pixels:,} pixels, over the limit of {max_pixels:,} (--max-image-pixels)")
    if img.format in JPEG_FORMATS and img.info.get("progression"):  # a sequential JPEG has a scan per component at most
        # Every start-of-scan marker: in entropy-coded data 0xFF is always followed by 0x00 or a
        # restart marker, so this overcounts only by the scans of an embedded EXIF thumbnail.
        scans = data.count(b"\xff\xda")
        if scans > 1 and scans * pixels > SCANS_PER_PIXEL_BUDGET * max_pixels:
            raise ImageError(f"JPEG of {width}x{height} pixels has {scans:,} scans; decoding it would cost more than "
                             f"{SCANS_PER_PIXEL_BUDGET} scans of the largest image allowed (--max-image-pixels)")


_HASH_PIXELS = 64


def verify_jpeg(data: bytes, img: Image.Image) -> np.ndarray:
    """Decode ``data`` strictly at 1/8 scale (more for small images): every coefficient is still read, so a corrupt or
    cut-off JPEG fails here as on a full decode, for an eighth of the pixel work (and no image object).  The pixels returned (enough
    for a perceptual hash) are a view of a buffer the next decode on this thread reuses."""
    # 1/8, unless that leaves under 64 pixels a side: the perceptual hash averages these pixels down to 32x32, and
    # from fewer it would be upsampling, and a small photo's resized copies fell outside the threshold
    # (tests/pipeline/test_dedup.py).
    reduce = next((r for r in (8, 4, 2) if min(img.size) >= _HASH_PIXELS * r), 1)
    size = (-(-img.width // reduce), -(-img.height // reduce))
    colorspace, channels = ("RGB", 3) if img.mode in ("RGB", "L") else ("CMYK", 4)
    return simplejpeg.decode_jpeg(data, colorspace=colorspace, min_width=size[0], min_height=size[1],
                                  buffer=_buffer(size, channels))


def decode_jpeg(data: bytes, img: Image.Image, reduce: int) -> Image.Image:
    """``data`` decoded by libjpeg-turbo at 1/``reduce`` scale (1, 2, 4 or 8), strictly: a libjpeg
    warning (corrupt or missing data) is an error.  Same pixels as Pillow's ``draft`` at that scale."""
    width, height = img.size
    size = (-(-width // reduce), -(-height // reduce))
    if img.mode not in ("RGB", "L"):  # CMYK/YCCK: checked here, converted by Pillow (Adobe's inverted CMYK)
        simplejpeg.decode_jpeg(data, colorspace="CMYK", min_width=size[0], min_height=size[1], buffer=_buffer(size, 4))
        if reduce > 1:
            img.draft(None, size)
        img.load()
        return img
    # RGB, copied into Pillow's image: mapping RGBX pixels instead saves the copy but makes Lanczos work on four
    # bands, which costs more than the copy (benchmarks/img2dataset_comparison.py).
    pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=size[0], min_height=size[1], buffer=_buffer(size, 3))
    rows, columns = pixels.shape[:2]
    return Image.frombuffer("RGB", (columns, rows), pixels, "raw", "RGB", 0, 1)  # a copy: the buffer is reused


def jpeg_scale(full: tuple[int, int], size: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """The smallest of libjpeg-turbo's M/8 scales that keeps an image of ``full`` size no smaller than ``size``:
    M, and the size it decodes to."""
    width, height = full
    eighths = next((m for m in range(1, 8) if -(-width * m // 8) >= size[0] and -(-height * m // 8) >= size[1]), 8)
    return eighths, (-(-width * eighths // 8), -(-height * eighths // 8))


def decode_jpeg_scaled(data: bytes, img: Image.Image, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """An RGB ``data`` decoded strictly at the smallest of libjpeg-turbo's M/8 scales that keeps it no smaller
    than ``size``, and that scale.  The array is a view of a buffer the next decode on this thread reuses."""
    eighths, scaled = jpeg_scale(img.size, size)
    pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=scaled[0], min_height=scaled[1], buffer=_buffer(scaled, 3))
    if pixels.shape[:2] != scaled[::-1]:  # libjpeg-turbo chose another scale: no exact geometry to resize from
        raise ImageError(f"cannot decode image: libjpeg-turbo decoded {pixels.shape[1]}x{pixels.shape[0]} "
                         f"where {scaled[0]}x{scaled[1]} was asked")
    return pixels, eighths / 8


_buffers = threading.local()
_MAX_KEPT_BUFFER = 64 << 20


def _buffer(size: tuple[int, int], channels: int) -> bytearray | None:
    """A decode buffer kept per thread: a fresh array per image is an mmap, page faults and an munmap each
    time (several percent of the build in system time), where Pillow's own decoder reuses its arena."""
    needed = (size[0] + 1) * (size[1] + 1) * channels  # room for the scale simplejpeg picks for a tiny image
    if needed > _MAX_KEPT_BUFFER:
        return None
    kept = getattr(_buffers, "data", None)
    if kept is None or len(kept) < needed:
        kept = _buffers.data = bytearray(max(needed, 1 << 20))
    return kept
