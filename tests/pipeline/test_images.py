"""Image preparation on real images drawn with Pillow: pass-through, resize modes, formats, colour modes.

Every test runs on each codec path (``--image-codec``): Pillow's, and OpenCV's where it is installed.
"""

import functools
import io
import os

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from vlconvert.pipeline import images
from vlconvert.pipeline.images import ImageError, prepare

CODECS = ["pillow"] + ([] if os.environ.get("VLCONVERT_TEST_WITHOUT_OPENCV") else ["opencv"])
ImageOptions = images.ImageOptions


@pytest.fixture(autouse=True, params=CODECS)
def codec(request, monkeypatch):
    monkeypatch.setitem(globals(), "ImageOptions", functools.partial(images.ImageOptions, codec=request.param))
    return request.param


def encode(img: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **params)
    return out.getvalue()


def halves(size=(120, 80), first=(200, 30, 30), second=(30, 30, 200), mode="RGB") -> Image.Image:
    """Left half ``first``, right half ``second``."""
    img = Image.new(mode, size, second)
    img.paste(Image.new(mode, (size[0] // 2, size[1]), first))  # pasting a colour would clip I;16 values
    return img


def opened(prepared) -> Image.Image:
    img = Image.open(io.BytesIO(prepared.data))
    assert img.size == (prepared.width, prepared.height)
    assert img.format == {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[prepared.extension]
    return img


def near(pixel, colour, tolerance=24) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


LANDSCAPE, PORTRAIT = encode(halves((120, 80))), encode(halves((80, 120)))


@pytest.mark.parametrize(("mode", "landscape", "portrait"), [
    ("shorter", (48, 32), (32, 48)),
    ("longer", (32, 21), (21, 32)),
    ("center_crop", (32, 32), (32, 32)),
])
def test_each_mode_resizes_landscape_and_portrait(mode, landscape, portrait):
    for data, size in ((LANDSCAPE, landscape), (PORTRAIT, portrait)):
        prepared = prepare(data, ImageOptions(32, mode))
        assert (prepared.extension, opened(prepared).size) == ("jpg", size)


def test_mode_none_and_no_size_keep_the_original_bytes():
    for options in (ImageOptions(32, "none"), ImageOptions(None), ImageOptions(None, "center_crop")):
        prepared = prepare(LANDSCAPE, options)
        assert prepared.data == LANDSCAPE and (prepared.width, prepared.height) == (120, 80)


def test_center_crop_keeps_the_centre():
    img = Image.new("RGB", (120, 40), (30, 30, 200))
    img.paste((200, 30, 30), (40, 0, 80, 40))  # the middle third
    cut = opened(prepare(encode(img, "PNG"), ImageOptions(20, "center_crop"))).convert("RGB")
    assert cut.size == (20, 20) and all(near(cut.getpixel((x, y)), (200, 30, 30)) for x in (2, 17) for y in (2, 17))


def test_never_enlarged_unless_upscale():
    small = encode(halves((40, 30)))
    for mode in ("shorter", "longer"):
        kept = prepare(small, ImageOptions(64, mode))
        assert kept.data == small and (kept.width, kept.height) == (40, 30)  # nothing to do: passes through
    assert opened(prepare(small, ImageOptions(64, "center_crop"))).size == (30, 30)
    assert opened(prepare(small, ImageOptions(64, "shorter", upscale=True))).size == (85, 64)
    assert opened(prepare(small, ImageOptions(64, "longer", upscale=True))).size == (64, 48)
    assert opened(prepare(small, ImageOptions(64, "center_crop", upscale=True))).size == (64, 64)


def test_an_image_already_at_the_size_passes_through():
    square = encode(halves((32, 32)))
    for mode in ("shorter", "longer", "center_crop"):
        assert prepare(square, ImageOptions(32, mode)).data == square


def test_webp_output():
    prepared = prepare(LANDSCAPE, ImageOptions(32, format="webp"))
    img = opened(prepared)
    assert prepared.extension == "webp" and img.size == (48, 32) and img.mode == "RGB"
    assert near(img.getpixel((4, 16)), (200, 30, 30)) and near(img.getpixel((44, 16)), (30, 30, 200))
    same_size = prepare(LANDSCAPE, ImageOptions(None, format="webp"))
    assert same_size.extension == "webp" and opened(same_size).size == (120, 80)


def test_explicit_format_passes_through_only_its_own_format():
    assert prepare(LANDSCAPE, ImageOptions(None, format="jpg")).data == LANDSCAPE
    webp = encode(halves(), "WEBP", quality=90)
    assert prepare(webp, ImageOptions(None, format="webp")).data == webp
    assert prepare(webp, ImageOptions(None)).data == webp
    png = encode(halves(), "PNG")
    as_jpeg = prepare(png, ImageOptions(None, format="jpg"))
    assert as_jpeg.extension == "jpg" and opened(as_jpeg).size == (120, 80)


def test_rgb_jpeg_and_png_pass_through_byte_for_byte():
    png = encode(halves(), "PNG")
    for data, extension in ((LANDSCAPE, "jpg"), (png, "png")):
        prepared = prepare(data, ImageOptions(None))
        assert (prepared.data, prepared.extension, prepared.width, prepared.height) == (data, extension, 120, 80)


def test_a_camera_mpo_passes_through_as_jpeg():
    data = encode(halves(), "MPO", save_all=True, append_images=[halves((60, 40))])
    prepared = prepare(data, ImageOptions(None))
    assert (prepared.data, prepared.extension, prepared.width, prepared.height) == (data, "jpg", 120, 80)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned 90° clockwise
    data = encode(halves((40, 20)), exif=exif)
    upright = opened(prepare(data, ImageOptions(None))).convert("RGB")
    assert upright.size == (20, 40)
    assert near(upright.getpixel((10, 5)), (200, 30, 30)) and near(upright.getpixel((10, 34)), (30, 30, 200))
    assert opened(prepare(data, ImageOptions(10))).size == (10, 20)
    assert opened(prepare(data, ImageOptions(10, "longer"))).size == (5, 10)
    exif[0x0112] = 1
    assert prepare(encode(halves((40, 20)), exif=exif), ImageOptions(None)).extension == "jpg"


@pytest.mark.parametrize(("img", "fmt", "left", "right"), [
    (halves((16, 16), (0, 255, 255, 0), (255, 255, 0, 0), mode="CMYK"), "JPEG", (255, 0, 0), (0, 0, 255)),
    (halves((16, 16), 40000, 1000, mode="I;16"), "PNG", (156, 156, 156), (4, 4, 4)),
    (halves((16, 16), (0, 255), (0, 0), mode="LA"), "PNG", (0, 0, 0), (255, 255, 255)),
    (halves((16, 16), 90, 90, mode="L"), "JPEG", (90, 90, 90), (90, 90, 90)),
])
def test_every_colour_mode_ends_rgb(img, fmt, left, right):
    out = opened(prepare(encode(img, fmt), ImageOptions(None)))
    assert out.mode == "RGB" and out.size == (16, 16)
    assert near(out.getpixel((2, 8)), left) and near(out.getpixel((13, 8)), right)


def test_palette_transparency_is_flattened_onto_white():
    img = halves((16, 16), 0, 1, mode="P")
    img.putpalette([20, 20, 20, 255, 0, 0])
    out = opened(prepare(encode(img, "PNG", transparency=1), ImageOptions(None))).convert("RGB")
    assert near(out.getpixel((2, 8)), (20, 20, 20)) and near(out.getpixel((13, 8)), (255, 255, 255))


def test_a_one_pixel_image():
    data = encode(Image.new("RGB", (1, 1), (10, 200, 10)))
    assert prepare(data, ImageOptions(256)).data == data
    assert opened(prepare(data, ImageOptions(8, "center_crop", upscale=True))).size == (8, 8)
    assert opened(prepare(data, ImageOptions(None, format="webp"))).size == (1, 1)


def test_a_reduced_jpeg_decode_lines_up_with_a_full_decode():
    img = Image.new("L", (803, 603), 255)  # odd sides: the 1/2-scale decode ends in half pixels
    draw = ImageDraw.Draw(img)
    for x in range(0, 803, 16):
        draw.rectangle((x, 0, x + 7, 602), fill=0)
    data = encode(img.convert("RGB"), quality=95)
    out = opened(prepare(data, ImageOptions(256))).convert("L")
    full = Image.open(io.BytesIO(data)).convert("L").resize(out.size, Image.Resampling.LANCZOS)
    assert out.size == (341, 256)
    assert ImageStat.Stat(ImageChops.difference(out, full)).mean[0] < 6  # 17 when stretched over the half pixels


def test_a_crop_is_taken_from_the_full_size_image():
    img = halves((400, 200))  # left half red, right half blue: a draft decode must not shift the box
    out = opened(prepare(encode(img, quality=95), ImageOptions(50), crop=(200, 0, None, None))).convert("RGB")
    assert out.size == (50, 50) and all(near(out.getpixel((x, 25)), (30, 30, 200)) for x in (0, 25, 49))
    left = opened(prepare(encode(img, quality=95), ImageOptions(None), crop=(0, 0, 200, 200))).convert("RGB")
    assert left.size == (200, 200) and near(left.getpixel((199, 100)), (200, 30, 30))


def test_undecodable_images_raise_image_error():
    whole = encode(halves((256, 256)))
    with pytest.raises(ImageError, match="^cannot decode image"):
        prepare(whole[: len(whole) // 2], ImageOptions(None))
    with pytest.raises(ImageError, match="^cannot decode image"):
        prepare(whole[: len(whole) // 2], ImageOptions(64))
    with pytest.raises(ImageError, match="^not a recognised image format"):
        prepare(b"not an image", ImageOptions(64))
