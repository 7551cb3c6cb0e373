"""Prepares the bytes of a record's image for the shard, and proves every image decodes whole.

The original bytes pass through untouched (no generation loss) when nothing
would change them: a JPEG, PNG or WebP (the members open_clip's loader looks
for), in RGB, upright (EXIF orientation 1 or none), not transparent, of the
requested format and already of the requested size.  Anything else is decoded
once (a JPEG straight at 1/2, 1/4 or 1/8 scale when it is to shrink that much),
cropped to the record's crop, resized with Lanczos, turned upright, cut to the
centre square for ``center_crop``, flattened onto white if transparent, and
encoded as JPEG or WebP: every re-encoded image is RGB.

An image is written only if it decodes cleanly, passed through or not:

* before any pixel is decoded, the header must be within the decode budget:
  ``--max-image-pixels``, and for a JPEG its scans times its pixels (a
  progressive JPEG of thousands of tiny scans takes minutes), so the same
  file is refused on every run, whatever the machine's speed;
* a JPEG is decoded by libjpeg-turbo through simplejpeg in strict mode, which
  turns libjpeg's warnings (corrupt data, premature end of data, a zero-filled
  tail, data that ends before the header's size) into errors Pillow would
  ignore.  A passed-through JPEG is decoded at 1/8 scale, which still reads
  every coefficient, and a resized one is decoded once, at the scale it needs;
* every other format is decoded in full by Pillow before anything else is read
  of it, so its errors surface (EXIF is read afterwards, never in place of it);
  a PNG's chunk CRCs and image data size are checked too (``png_check.py``),
  which Pillow does not do.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import PIL
import simplejpeg
from PIL import ExifTags, Image

from vlconvert.options import DEFAULT_MAX_IMAGE_PIXELS, IMAGE_CODECS, OUTPUT_FORMATS, RESIZE_MODES
from vlconvert.pipeline import opencv_resize
from vlconvert.pipeline.decode import (
    DECODE_ERRORS,
    JPEG_FORMATS,
    ImageError,
    check_budget,
    decode_errors,
    decode_jpeg,
    load_whole,
    verify_jpeg,
)
from vlconvert.pipeline.image_hashes import thumbnail

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
# What each codec does to a JPEG it shrinks (anything else takes Pillow's path on both).
CODEC_PATHS = {
    "pillow": "libjpeg-turbo (simplejpeg) decode at 1/1, 1/2, 1/4 or 1/8 scale, Pillow Lanczos, Pillow (libjpeg-turbo) encode",
    "opencv": "libjpeg-turbo (simplejpeg) decode at M/8 scale, OpenCV bicubic at the exact scale, simplejpeg (libjpeg-turbo) encode; "
              "a JPEG still over 4/3 the target after 1/8 (or 2/8, 3/8) takes Pillow's path",
}




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
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    codec: str = "auto"  # auto: opencv when OpenCV is installed, else pillow (resolved here, in the parent process)

    def __post_init__(self):
        if self.codec not in IMAGE_CODECS:
            raise ValueError(f"image codec must be one of {', '.join(IMAGE_CODECS)}, got {self.codec!r}")
        if self.codec == "auto":
            object.__setattr__(self, "codec", "opencv" if opencv_resize.available() else "pillow")
        if self.codec == "opencv" and not opencv_resize.available():
            raise ValueError("--image-codec opencv needs OpenCV: pip install 'vlconvert[fast]'")
        if self.mode not in RESIZE_MODES:
            raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {self.mode!r}")
        if self.format not in OUTPUT_FORMATS:
            raise ValueError(f"image format must be one of {', '.join(OUTPUT_FORMATS)}, got {self.format!r}")
        pixels = self.max_pixels
        if isinstance(pixels, bool) or not isinstance(pixels, int) or not 1 <= pixels <= DEFAULT_MAX_IMAGE_PIXELS:
            raise ValueError(f"max_image_pixels must be a whole number from 1 to {DEFAULT_MAX_IMAGE_PIXELS:,} "
                             f"(Pillow's own limit), got {self.max_pixels!r}")

    def describe(self) -> dict:
        return {"size": self.size, "resize_mode": self.mode if self.size else "none", "format": self.format,
                "quality": self.quality, "upscale": self.upscale, "max_pixels": self.max_pixels, "codec": self.codec,
                "codec_path": CODEC_PATHS[self.codec], "codec_libraries": self.libraries()}

    def libraries(self) -> dict[str, str]:
        """The versions that decide the bytes of a re-encoded image on this codec path."""
        found = {"pillow": PIL.__version__, "simplejpeg": simplejpeg.__version__}
        return {**found, "opencv": opencv_resize.version()} if self.codec == "opencv" else found


@dataclass(frozen=True)
class PreparedImage:
    data: bytes
    extension: str
    width: int
    height: int
    source_size: tuple[int, int] = (0, 0)  # the image as read, before any crop or resize
    thumbnail: np.ndarray | None = None  # 32x32 grey, from pixels decoded anyway: what the perceptual hash is made of


def prepare(data: bytes, options: ImageOptions, crop=None) -> PreparedImage:
    """The bytes for the shard; ``crop`` is a Record's crop region (forces a re-encode)."""
    with decode_errors(DECODE_ERRORS), Image.open(io.BytesIO(data)) as img:
        check_budget(img, data, options.max_pixels)
        jpeg = img.format in JPEG_FORMATS
        if not jpeg:
            load_whole(img, data)  # now: a decode error must never hide inside a later step
        orientation = _orientation(img)
        source_size = img.size
        if crop is None and _passes_through(img, options, orientation):
            pixels = verify_jpeg(data, img) if jpeg and img.mode in ("RGB", "L") else img
            return PreparedImage(data, _PASSTHROUGH_FORMATS[img.format], img.width, img.height, source_size, thumbnail(pixels))
        prepared = _reencode(img, data, options, orientation, crop)
        return PreparedImage(prepared.data, prepared.extension, prepared.width, prepared.height, source_size, prepared.thumbnail)


def _orientation(img: Image.Image) -> int:
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
        return orientation if orientation in _UPRIGHT else 1
    except Exception:  # a damaged EXIF block (the pixels decoded already) keeps the image as stored
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


def _reencode(img: Image.Image, data: bytes, options: ImageOptions, orientation: int, crop) -> PreparedImage:
    box = _crop_box(crop, img.size) if crop is not None else (0, 0, img.width, img.height)
    region = (box[2] - box[0], box[3] - box[1])
    sideways = orientation in _SIDEWAYS
    size, centre = _geometry(region[::-1] if sideways else region, options)
    size = size[::-1] if sideways else size  # resized as stored, turned upright after: less to turn
    if (options.codec == "opencv" and img.format in JPEG_FORMATS and img.mode in ("RGB", "L") and crop is None
            and options.format != "webp" and size[0] < region[0] and size[1] <= region[1]
            and opencv_resize.shrinks_well(img.size, size)):
        data, pixels = opencv_resize.shrink_jpeg(data, img, size, centre, orientation, options.quality)
        return PreparedImage(data, "jpg", pixels.shape[1], pixels.shape[0], thumbnail=thumbnail(pixels))
    if img.format in JPEG_FORMATS:
        reduce = _jpeg_reduction(img.size, size, box) if size[0] < region[0] else 1
        img = decode_jpeg(data, img, reduce)
        # Fractions kept: a side not divisible by the factor ends in a partial pixel (803 pixels at 1/2 are
        # 401.5), and resizing the whole reduced image would stretch the picture over it, half a pixel out
        # at the far edge (2 dB worse).
        box = tuple(v / reduce for v in box) if reduce != 1 else box
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
        return PreparedImage(out.getvalue(), "webp", img.width, img.height, thumbnail=thumbnail(img))
    img.save(out, format="JPEG", quality=options.quality)
    return PreparedImage(out.getvalue(), "jpg", img.width, img.height, thumbnail=thumbnail(img))


def _jpeg_reduction(full: tuple[int, int], size: tuple[int, int], box: tuple) -> int:
    """The DCT scaling (1, 2, 4 or 8) that keeps ``box`` no smaller than ``size``, chosen exactly as
    Pillow's ``draft`` chooses it, so the pixels are those of the path measured in benchmarks/."""
    scale = max(size[0] / (box[2] - box[0]), size[1] / (box[3] - box[1]))
    requested = (math.ceil(full[0] * scale), math.ceil(full[1] * scale))
    ratio = min(full[0] // requested[0], full[1] // requested[1])
    return next(factor for factor in (8, 4, 2, 1) if ratio >= factor)


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
