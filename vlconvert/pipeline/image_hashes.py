"""The perceptual hash of every written image: imagehash's pHash, computed a shard task at a time.

pHash (imagehash's ``phash``, 64 bits): the image in grey, averaged down to 32×32, its
2-D DCT-II, and one bit per coefficient of the top-left 8×8 block saying whether it is
above their median.  Resizing, re-encoding and light colour changes move few bits; a
crop of a few percent moves several ([dedup.md](../../docs/dedup.md) has the figures).

Chosen over PDQ (256 bits, more robust to crops, but published only as a source package
that needs a compiler) and over imagehash's aHash/dHash (less robust to re-encoding).
Called once per image, ``imagehash.phash`` took 0.5 ms, a quarter of what a resizing build
spends on an image; here each image leaves only its 32×32 thumbnail (made from pixels
the build decoded anyway) and a task's thumbnails are hashed in one matrix product.
tests/pipeline/test_shard_tables.py holds the bits equal to ``imagehash.phash`` of the same
thumbnail.  Coefficients are rounded to 6 decimals first, so a flat image (all its
AC coefficients zero) hashes to the same bits on every machine rather than to rounding
noise; that is the only departure.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from vlconvert.errors import VLConvertError
from vlconvert.pipeline import opencv_resize

THUMBNAIL = 32  # imagehash's phash: hash_size 8 x highfreq_factor 4
_BITS = 8
_n = np.arange(THUMBNAIL)
# DCT-II as scipy.fftpack computes it (norm=None: 2 * sum x_n cos(pi k (2n + 1) / 2N)), only the rows the hash keeps.
_DCT = 2 * np.cos(np.pi * np.arange(_BITS)[:, None] * (2 * _n[None, :] + 1) / (2 * THUMBNAIL))
_WEIGHTS = np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64)  # the first bit is the most significant, as imagehash prints


def thumbnail(image: Image.Image | np.ndarray) -> np.ndarray:
    """The 32×32 grey thumbnail the hash is made from: every ``step``-th pixel (``step`` keeps at least 64 a side),
    Pillow's luma, then box averaging down to 32×32.  Sampling first costs a third of averaging a 256-pixel image
    whole (0.06 ms against 0.17 ms on 256-pixel photos) and moves the low frequencies the hash keeps a little
    (2% crops: 87% found at T=8 against 97%, docs/dedup.md); a passed-through JPEG's reduced decode and a re-encoded copy's pixels give nearly the
    same thumbnail."""
    if isinstance(image, Image.Image):
        image = np.asarray(image if image.mode in ("L", "RGB") else image.convert("RGB"))
    sampled = sample(image, max(1, min(image.shape[:2]) // (2 * THUMBNAIL)))
    grey = Image.fromarray(sampled)
    grey = grey.convert("L") if grey.mode != "L" else grey
    return np.asarray(grey.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX), dtype=np.uint8)


def sample(pixels: np.ndarray, step: int) -> np.ndarray:
    """Every ``step``-th row and column, from the first, of the whole ``step``×``step`` blocks: OpenCV's nearest
    resize at an exact integer factor when the build already loaded OpenCV (a quarter of NumPy's strided copy),
    else NumPy; the two pick the same pixels (tests/pipeline/test_shard_tables.py)."""
    if step == 1:
        return np.ascontiguousarray(pixels)
    height, width = pixels.shape[0] // step * step, pixels.shape[1] // step * step
    cv2 = opencv_resize.cv2
    if cv2 is not None:
        return cv2.resize(pixels[:height, :width], (width // step, height // step), interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(pixels[:height:step, :width:step])


def phashes(thumbnails: np.ndarray) -> np.ndarray:
    """One uint64 pHash per 32×32 thumbnail of ``thumbnails`` (shape n×32×32)."""
    if len(thumbnails) == 0:
        return np.zeros(0, dtype=np.uint64)
    pixels = np.asarray(thumbnails, dtype=np.float64)
    low = np.round(_DCT @ pixels @ _DCT.T, 6).reshape(len(pixels), _BITS * _BITS)  # matmul (BLAS): a third of einsum's time
    bits = low > np.median(low, axis=1, keepdims=True)
    return (bits.astype(np.uint64) * _WEIGHTS).sum(axis=1, dtype=np.uint64)


def to_hex(value: int | np.uint64) -> str:
    """As ``str(imagehash.phash(...))`` prints it, and ``imagehash.hex_to_hash`` reads it back."""
    return f"{int(value):016x}"


def from_hex(values) -> np.ndarray:
    try:
        return np.array([int(v, 16) for v in values], dtype=np.uint64)
    except (TypeError, ValueError, OverflowError):
        bad = next(v for v in values if not (isinstance(v, str) and len(v) == 16 and all(c in "0123456789abcdef" for c in v)))
        raise VLConvertError(f"a table's phash column holds {bad!r}, not 16 hex digits; run `vlconvert validate`") from None
