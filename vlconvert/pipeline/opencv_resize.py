"""The fast path of the common re-encode: a JPEG shrunk and written as JPEG, through OpenCV.

Chosen by measurement (benchmarks/img2dataset_comparison.py, docs/scale.md): per
image, Pillow's Lanczos took 2.6 ms of the 3.2 ms a 500x375 or 800x600 photo
costs; here libjpeg-turbo decodes straight at the smallest M/8 scale that stays
no smaller than the target (its scaled inverse DCT does the anti-aliasing), and
OpenCV's bicubic resize, at the exact scale from there (the decoded image's last
row and column are partial pixels, so the whole array is not stretched to the
target), does the rest: 1.3 ms, 39.2 dB against a full-resolution Lanczos
reference where img2dataset's path scores 38.3 dB and Pillow's 40.2 dB.

Only the commonest case comes here (an RGB or greyscale JPEG shrunk to within
4/3 of the decoded M/8 size, no crop region, written as JPEG): everything else
takes Pillow's path in ``images.py``.  OpenCV
comes with ``pip install 'vlconvert[fast]'``; ``--image-codec`` picks the path,
and the manifest names it, so a build's bytes can be reproduced.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util

import numpy as np
import simplejpeg

from vlconvert.pipeline.decode import ImageError, decode_jpeg_scaled, jpeg_scale

# Imported on first use, in the process that resizes: OpenCV maps ~300 MB of address space, which a parent
# that only plans (or a build that only passes bytes through) need not carry.
cv2 = None
_DISTRIBUTIONS = ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python")

# EXIF orientation → the array operation that makes the image upright (Pillow's Image.Transpose, as images.py uses).
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


# OpenCV's bicubic does not widen its kernel as it shrinks: past this factor after the DCT-scaled decode (where even
# 1/8 leaves the image that much larger than the target, or 2/8 or 3/8 leave 1.34-2x) it aliases fine detail, by up
# to 8 dB on stripes a red team drew, so those images take Pillow's Lanczos.  Photos shrunk 1.5-4x, with no
# higher step, come here: after M/8 they are within 4/3 of the target.
MAX_CUBIC_SHRINK = 4 / 3


def shrinks_well(full: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether an image of ``full`` size reaches ``size`` on this path without aliasing."""
    _, scaled = jpeg_scale(full, size)
    return scaled[0] <= size[0] * MAX_CUBIC_SHRINK and scaled[1] <= size[1] * MAX_CUBIC_SHRINK


def available() -> bool:
    return cv2 is not None or importlib.util.find_spec("cv2") is not None


def version() -> str | None:
    """OpenCV's version, from its package's metadata where it has one (importing it costs ~0.2 s)."""
    for name in _DISTRIBUTIONS:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return _opencv().__version__ if available() else None


def _opencv():
    global cv2
    if cv2 is None:
        cv2 = importlib.import_module("cv2")
    return cv2


def shrink_jpeg(data: bytes, img, size: tuple[int, int], centre, orientation: int, quality: int) -> tuple[bytes, np.ndarray]:
    """``data`` (whose header ``img`` read) resized to ``size`` as stored, turned upright, cut to ``centre``: the JPEG
    bytes and the pixels they encode."""
    pixels, scale = decode_jpeg_scaled(data, img, size)
    # fx, fy exact (not from the output size): pixel centres map as in Pillow's resize of the exact box.
    fx, fy = size[0] / (img.width * scale), size[1] / (img.height * scale)
    opencv = _opencv()
    try:
        out = opencv.resize(pixels, (0, 0), fx=fx, fy=fy, interpolation=opencv.INTER_CUBIC)[:size[1], :size[0]]
    except opencv.error as exc:  # never seen; a decoder-side surprise must still be a rejected record, not a crash
        raise ImageError(f"cannot resize image: {exc}") from exc
    if orientation in _UPRIGHT:
        out = _UPRIGHT[orientation](out)
    if centre is not None:
        left, top, right, bottom = centre
        out = out[top:bottom, left:right]
    out = np.ascontiguousarray(out)
    return simplejpeg.encode_jpeg(out, quality=quality, colorspace="RGB", colorsubsampling="420"), out
