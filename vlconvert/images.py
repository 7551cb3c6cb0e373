"""Reads a record's image and prepares the bytes that go into the shard.

The original bytes pass through untouched (no generation loss) when nothing
would change them: a JPEG, PNG or WebP (the members open_clip's loader looks
for), in RGB, upright (EXIF orientation 1 or none), not transparent, of the
requested format and already of the requested size.  It is still decoded, a
JPEG at 1/8 scale, to prove it is whole.  Anything else is decoded once (a
JPEG straight at 1/2, 1/4 or 1/8 scale when it is to shrink that much),
cropped to the record's crop, resized with Lanczos, turned upright, cut to the
centre square for ``center_crop``, flattened onto white if transparent, and
encoded as JPEG or WebP: every re-encoded image is RGB.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass

import fsspec
from PIL import ExifTags, Image, UnidentifiedImageError

# open_clip's loader looks for exactly these members; anything else is re-encoded.
# MPO is a camera JPEG with further images appended; JPEG decoders read the first.
_PASSTHROUGH_FORMATS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}

# How to make each EXIF orientation upright (ImageOps.exif_transpose's table; the
# orientation is needed before decoding, to plan the size, so it is applied here).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIDEWAYS = {5, 6, 7, 8}

# libwebp's own default.  On 256-pixel photos at quality 95, methods 0-2 take about half
# the time but lose 0.2 dB; 5 and 6 take 1.2x and 2.6x as long for 2-3 % fewer bytes
# (benchmarks/jpeg_reduced_decode.py --webp).
_WEBP_METHOD = 4
# Large reductions the JPEG draft cannot do (PNG, WebP, …) first average whole pixel blocks
# while the image stays 3x the target: a 3200x2400 photo to 341x256 resizes 4x faster,
# 54 dB from plain Lanczos.
_REDUCING_GAP = 3.0
_SIXTEEN_BIT = {"I", "I;16", "I;16L", "I;16B", "I;16N"}

RESIZE_MODES = ("shorter", "longer", "center_crop", "none")
OUTPUT_FORMATS = ("auto", "jpg", "webp")


@dataclass(frozen=True)
class ImageOptions:
    """How images are prepared.

    ``size`` with ``mode``: ``shorter`` scales the shorter side to ``size``,
    ``longer`` the longer side, ``center_crop`` scales the shorter side then cuts
    the centre ``size``×``size`` square, ``none`` (or no size) keeps the size.
    ``format`` ``auto`` keeps the original bytes when nothing changes and writes
    JPEG otherwise; ``jpg``/``webp`` always yield that format.  Images are never
    enlarged unless ``upscale``.
    """

    size: int | None = None
    mode: str = "shorter"
    format: str = "auto"
    quality: int = 95
    upscale: bool = False

    def __post_init__(self):
        if self.mode not in RESIZE_MODES:
            raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {self.mode!r}")
        if self.format not in OUTPUT_FORMATS:
            raise ValueError(f"image format must be one of {', '.join(OUTPUT_FORMATS)}, got {self.format!r}")

    def describe(self) -> dict:
        return {"size": self.size, "resize_mode": self.mode if self.size else "none", "format": self.format,
                "quality": self.quality, "upscale": self.upscale}


@dataclass(frozen=True)
class PreparedImage:
    data: bytes
    extension: str
    width: int
    height: int


class ImageError(ValueError):
    """A record whose image could not be read or decoded; it goes to the error report."""


def read_bytes(image: str | bytes) -> bytes:
    if isinstance(image, bytes):
        return image
    remote = "://" in image
    try:
        if remote:
            # One GET: fsspec.open would first ask the store for the object's size.
            fs, path = fsspec.core.url_to_fs(image)
            return fs.cat_file(path)
        with open(image, "rb") as f:
            return f.read()
    except FileNotFoundError as exc:
        if remote:  # fsspec's HTTP backend also says this when the server cannot be reached
            raise ImageError(f"cannot read image {image}: not found or not reachable") from exc
        raise ImageError(f"image file not found: {image}") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"image path is a folder: {image}") from exc
    except OSError as exc:
        raise ImageError(f"cannot read image {image}: {os.strerror(exc.errno) if exc.errno else exc}") from exc
    except ImportError as exc:  # fsspec's http:// and s3:// backends are optional packages
        raise ImageError(f"cannot read image {image}: its URL scheme needs a package that is not installed ({exc})") from exc
    except ValueError as exc:
        raise ImageError(f"cannot read image {image}: {exc}") from exc
    except Exception as exc:
        if not remote:
            raise
        # A store's own error (HTTP 403, a malformed URL for the backend) belongs to this record only.
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise ImageError(f"cannot read image {image}: {type(exc).__name__}: {detail}") from exc


def prepare(data: bytes, options: ImageOptions, crop=None) -> PreparedImage:
    """The bytes for the shard; ``crop`` is a Record's crop region (forces a re-encode)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            orientation = _orientation(img)
            if crop is None and _passes_through(img, options, orientation):
                prepared = PreparedImage(data, _PASSTHROUGH_FORMATS[img.format], img.width, img.height)
                _check_decodes(img)  # decodes at a reduced size, so the size is read before
                return prepared
            return _reencode(img, options, orientation, crop)
    except UnidentifiedImageError as exc:
        raise ImageError("not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot decode image: {exc}") from exc


def _orientation(img: Image.Image) -> int:
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
        return orientation if orientation in _UPRIGHT else 1
    except Exception:  # a damaged EXIF block must not cost the pixels: keep them as stored
        return 1


def _passes_through(img: Image.Image, options: ImageOptions, orientation: int) -> bool:
    extension = _PASSTHROUGH_FORMATS.get(img.format)
    if extension is None or options.format not in ("auto", extension):
        return False
    if img.mode != "RGB" or img.has_transparency_data or orientation != 1:
        return False
    return _geometry(img.size, options) == (img.size, None)


def _geometry(size: tuple[int, int], options: ImageOptions) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
    """The upright size to resize to, and the centre square to cut from it (None: all of it)."""
    width, height = size
    if options.size is None or options.mode == "none":
        return size, None
    side = max(size) if options.mode == "longer" else min(size)
    if side > options.size or (side < options.size and options.upscale):
        scale = options.size / side
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if options.mode != "center_crop" or width == height:
        return (width, height), None
    square = min(width, height)
    left, top = (width - square) // 2, (height - square) // 2
    return (width, height), (left, top, left + square, top + square)


def _crop_box(crop, size: tuple[int, int]) -> tuple[int, int, int, int]:
    width, height = size
    left, top, right, bottom = crop
    left = max(0, round(left or 0))
    top = max(0, round(top or 0))
    right = width if right is None else round(right + width if right < 0 else right)
    bottom = height if bottom is None else round(bottom + height if bottom < 0 else bottom)
    right, bottom = min(width, right), min(height, bottom)
    if right - left < 1 or bottom - top < 1:
        raise ImageError(f"crop {tuple(crop)} leaves nothing of a {width}x{height} image")
    return left, top, right, bottom


def _check_decodes(img: Image.Image) -> None:
    """A truncated file has a valid header; only decoding finds it, so decode before passing it on.

    A JPEG is decoded at 1/8 scale (DCT scaling), which still reads every byte."""
    img.draft(None, (max(1, img.width // 8), max(1, img.height // 8)))
    img.load()


def _reencode(img: Image.Image, options: ImageOptions, orientation: int, crop) -> PreparedImage:
    box = _crop_box(crop, img.size) if crop is not None else (0, 0, img.width, img.height)
    region = (box[2] - box[0], box[3] - box[1])
    sideways = orientation in _SIDEWAYS
    size, centre = _geometry(region[::-1] if sideways else region, options)
    size = size[::-1] if sideways else size  # resized as stored, turned upright after: less to turn
    if size[0] < region[0]:
        box = _draft(img, size, box)
    img = _to_rgb(img)
    if size != region:
        img = img.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=_REDUCING_GAP)
    elif box != (0, 0, img.width, img.height):
        img = img.crop(box)
    if orientation in _UPRIGHT:
        img = img.transpose(_UPRIGHT[orientation])
    if centre is not None:
        img = img.crop(centre)
    out = io.BytesIO()
    if options.format == "webp":
        img.save(out, format="WEBP", quality=options.quality, method=_WEBP_METHOD)
        return PreparedImage(out.getvalue(), "webp", img.width, img.height)
    img.save(out, format="JPEG", quality=options.quality)
    return PreparedImage(out.getvalue(), "jpg", img.width, img.height)


def _draft(img: Image.Image, size: tuple[int, int], box: tuple) -> tuple:
    """Ask a JPEG decoder for 1/2, 1/4 or 1/8 scale (DCT scaling: several times faster than
    decoding in full) as long as ``box`` stays no smaller than ``size``; other formats ignore it.

    Returns ``box`` in the reduced image's pixels, fractions kept: a side not divisible by the
    factor ends in a partial pixel, and resizing the whole reduced image would stretch the
    picture over it, half a pixel out at the far edge (2 dB worse on photos)."""
    scale = max(size[0] / (box[2] - box[0]), size[1] / (box[3] - box[1]))
    width = img.width
    drafted = img.draft(None, (math.ceil(img.width * scale), math.ceil(img.height * scale)))
    if drafted is None:
        return box
    factor = drafted[1][2] / width
    return tuple(v * factor for v in box)


def _to_rgb(img: Image.Image) -> Image.Image:
    img.load()
    if img.mode in _SIXTEEN_BIT:  # Pillow's conversion would clip 16-bit samples at 255, not scale them
        img = img.convert("I").point(lambda v: v / 256).convert("L")
    if img.mode == "RGB" and not img.has_transparency_data:
        return img
    if not img.has_transparency_data:
        return img.convert("RGB")
    # Transparent pixels often hide arbitrary colours; show them as white, as a viewer would.
    rgba = img.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background
