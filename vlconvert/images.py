"""Reads a record's image and prepares the bytes that go into the shard.

By default the original bytes pass through untouched (no generation loss):
the image is only decoded, a JPEG at 1/8 scale, to prove it is whole.  JPEG,
PNG and WebP pass through; other formats, which open_clip's loader would not
find, are re-encoded as JPEG.  With ``resize`` the image is decoded,
EXIF-rotated, flattened onto white if transparent, and re-encoded as JPEG with
its shorter side at most ``resize`` pixels.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass

import fsspec
from PIL import Image, ImageOps, UnidentifiedImageError

# open_clip's loader looks for exactly these members; anything else is re-encoded.
_PASSTHROUGH_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


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
    try:
        if "://" in image:
            with fsspec.open(image, "rb") as f:
                return f.read()
        with open(image, "rb") as f:
            return f.read()
    except FileNotFoundError as exc:
        raise ImageError(f"image file not found: {image}") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"image path is a folder: {image}") from exc
    except OSError as exc:
        raise ImageError(f"cannot read image {image}: {os.strerror(exc.errno) if exc.errno else exc}") from exc
    except ImportError as exc:  # fsspec's http:// and s3:// backends are optional packages
        raise ImageError(f"cannot read image {image}: its URL scheme needs a package that is not installed ({exc})") from exc
    except ValueError as exc:
        raise ImageError(f"cannot read image {image}: {exc}") from exc


def prepare(data: bytes, options: ImageOptions, crop=None) -> PreparedImage:
    """The bytes for the shard; ``crop`` is a Record's crop region (forces a re-encode)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if crop is not None:
                img.load()
                return _reencode(img.crop(_crop_box(crop, img.size)), options)
            if options.size is None and img.format in _PASSTHROUGH_FORMATS:
                prepared = PreparedImage(data, _PASSTHROUGH_FORMATS[img.format], img.width, img.height)
                _check_decodes(img)
                return prepared
            return _reencode(img, options)
    except UnidentifiedImageError as exc:
        raise ImageError("not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot decode image: {exc}") from exc


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
    if img.format == "JPEG":
        img.draft(None, (max(1, img.width // 8), max(1, img.height // 8)))
    img.load()


def _reencode(img: Image.Image, options: ImageOptions) -> PreparedImage:
    if options.size is not None:
        # Ask the JPEG decoder for a DCT-scaled image no smaller than needed:
        # decoding at 1/2, 1/4 or 1/8 size is several times faster.
        scale = options.size / min(img.size)
        if scale < 1 and img.format == "JPEG":
            img.draft("RGB", (math.ceil(img.width * scale), math.ceil(img.height * scale)))
    img = _to_rgb(ImageOps.exif_transpose(img))
    if options.size is not None and min(img.size) > options.size:
        scale = options.size / min(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=options.quality)
    return PreparedImage(out.getvalue(), "jpg", img.width, img.height)


def _to_rgb(img: Image.Image) -> Image.Image:
    if not img.has_transparency_data:
        return img.convert("RGB")
    # Transparent pixels often hide arbitrary colours; show them as white, as a viewer would.
    rgba = img.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background
