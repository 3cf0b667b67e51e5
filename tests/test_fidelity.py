"""Image fidelity: orientation, colour, modes, alpha, metadata, animation,
formats and per-size options, on images the tests generate.

Pixels are compared by similarity with tolerances (RMS or SSIM), never by
bytes; expected colours come from the test's own profiles and inks.
"""

from __future__ import annotations

import io
import itertools
import random
import struct
import zlib
from dataclasses import replace

import pytest
from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageFilter, PngImagePlugin

from phizer.config.loader import Settings
from phizer.config.sizes import Constraint, SizeSpec
from phizer.errors import SourceTooLarge, UnsupportedImage
from phizer.imaging.decode import unsupported_format
from phizer.imaging.formats import choose_format
from phizer.imaging.pipeline import OutputOptions, output_quality, render
from phizer.imaging.qualities import quality_for
from tests import icc_profiles
from tests.imagetools import decode, photo, rms_difference, similar, ssim
from tests.imagetools import encode as save

ORIENTATION = 0x0112
MAKE = 0x010F
LANCZOS = Image.Resampling.LANCZOS
T = Image.Transpose
# Fixed WebP and AVIF qualities: pixel comparisons must not depend on the
# JPEG-equivalence table in phizer.qualities, which is tuned separately.
DEFAULTS = OutputOptions(webp_quality=90, avif_quality=90)
KEEP_METADATA = replace(DEFAULTS, strip_metadata=False)
# What to apply to an upright picture to store it with EXIF orientation N.
STORED_FOR_ORIENTATION = {
    1: None,
    2: T.FLIP_LEFT_RIGHT,
    3: T.ROTATE_180,
    4: T.FLIP_TOP_BOTTOM,
    5: T.TRANSPOSE,
    6: T.ROTATE_90,
    7: T.TRANSVERSE,
    8: T.ROTATE_270,
}
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    b'tiff:Orientation="6" dc:format="image/jpeg"/></rdf:RDF></x:xmpmeta>'
)


def size(width: int, height: int, constraint: str = "max", **options: object) -> SizeSpec:
    return SizeSpec("t", width, height, Constraint(constraint), **options)  # type: ignore[arg-type]


def rendered(data: bytes, spec: SizeSpec, options: OutputOptions = DEFAULTS, **kwargs):
    out = render(data, spec, None, options, **kwargs)
    return decode(out.data), out


def exif_with(orientation: int | None = None, make: str | None = "Phizer Camera") -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    if make is not None:
        exif[MAKE] = make
    return exif


def stored_with_orientation(upright: Image.Image, orientation: int) -> Image.Image:
    transpose = STORED_FOR_ORIENTATION[orientation]
    return upright if transpose is None else upright.transpose(transpose)


# --- EXIF orientation ----------------------------------------------------------

UPRIGHT = photo(240, 160)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("options", [DEFAULTS, KEEP_METADATA], ids=["strip", "keep"])
def test_every_orientation_is_applied_then_dropped(orientation, options):
    stored = stored_with_orientation(UPRIGHT, orientation)
    data = save(stored, "JPEG", quality=95, exif=exif_with(orientation).tobytes(), xmp=XMP)
    result, _ = rendered(data, size(120, 120), options)
    assert result.size == (120, 80)
    assert ssim(result, UPRIGHT) >= 0.95
    # a wrong turn or flip of this asymmetric picture scores far lower
    wrong = UPRIGHT.transpose(T.FLIP_LEFT_RIGHT)
    assert ssim(result, wrong) < 0.9
    assert result.getexif().get(ORIENTATION, 1) == 1
    if options.strip_metadata:
        assert "exif" not in result.info
    else:
        assert result.getexif()[MAKE] == "Phizer Camera"  # the rest of EXIF is kept
        assert ORIENTATION not in result.getexif()
        assert b"tiff:Orientation" not in result.info["xmp"]
        assert b'dc:format="image/jpeg"' in result.info["xmp"]


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "AVIF"])
@pytest.mark.parametrize("orientation", [2, 6, 7])
def test_orientation_in_other_formats(fmt, orientation):
    stored = stored_with_orientation(UPRIGHT, orientation)
    data = save(stored, fmt, exif=exif_with(orientation).tobytes())
    result, _ = rendered(data, size(120, 120), KEEP_METADATA)
    assert result.size == (120, 80)
    assert ssim(result, UPRIGHT) >= 0.9
    assert result.getexif().get(ORIENTATION, 1) == 1
    assert result.getexif()[MAKE] == "Phizer Camera"


# --- ICC profiles ------------------------------------------------------------------

ADOBE = icc_profiles.adobe_rgb_like()
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
SATURATED = Image.new("RGB", (96, 64), (60, 160, 60))
ImageDraw.Draw(SATURATED).rectangle((48, 0, 96, 64), fill=(200, 60, 90))


def halves(image: Image.Image) -> list[tuple[int, ...]]:
    """The colours in the middle of the left and right halves (away from the edge)."""
    w, h = image.size
    boxes = [(w // 8, h // 4, 3 * w // 8, 3 * h // 4), (5 * w // 8, h // 4, 7 * w // 8, 3 * h // 4)]
    return [image.convert("RGB").crop(box).resize((1, 1)).getpixel((0, 0)) for box in boxes]


def same_colours(first: Image.Image, second: Image.Image, tolerance: int = 4) -> bool:
    return all(
        abs(a - b) <= tolerance
        for one, other in zip(halves(first), halves(second), strict=True)
        for a, b in zip(one, other, strict=True)
    )


def adobe_to_srgb(image: Image.Image) -> Image.Image:
    profile = ImageCms.ImageCmsProfile(io.BytesIO(ADOBE))
    converted = ImageCms.profileToProfile(image, profile, SRGB, outputMode="RGB")
    assert converted is not None
    return converted


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "AVIF"])
def test_icc_profile_is_kept_by_default(fmt):
    data = save(SATURATED, "PNG", icc_profile=ADOBE)
    result, _ = rendered(data, size(48, 48, output_format=fmt))
    assert result.info.get("icc_profile") == ADOBE
    assert same_colours(result, SATURATED)  # pixels untouched


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "AVIF"])
def test_icc_profile_is_converted_to_srgb_when_not_kept(fmt):
    data = save(SATURATED, "PNG", icc_profile=ADOBE)
    result, _ = rendered(data, size(48, 48, output_format=fmt), replace(DEFAULTS, keep_icc=False))
    assert not result.info.get("icc_profile")
    reference = adobe_to_srgb(SATURATED)
    assert not same_colours(reference, SATURATED, tolerance=15)  # the conversion matters
    assert same_colours(result, reference)


def test_image_without_profile_is_taken_as_srgb():
    data = save(SATURATED, "PNG")
    result, _ = rendered(data, size(48, 48), replace(DEFAULTS, keep_icc=False))
    assert not result.info.get("icc_profile")
    assert same_colours(result, SATURATED)


@pytest.mark.parametrize("keep_icc", [True, False])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_corrupt_profile_is_dropped_not_fatal(keep_icc, fmt):
    garbage = bytes(range(256)) * 8
    data = save(SATURATED, fmt, icc_profile=garbage)
    assert decode(data).info.get("icc_profile") == garbage  # the input carries it
    result, _ = rendered(data, size(48, 48), replace(DEFAULTS, keep_icc=keep_icc))
    assert not result.info.get("icc_profile")
    assert same_colours(result, SATURATED)


def test_profile_for_other_pixels_is_dropped():
    # an RGB profile on greyscale pixels describes nothing here
    grey = Image.linear_gradient("L").resize((64, 64))
    data = save(grey, "PNG", icc_profile=ADOBE)
    result, _ = rendered(data, size(32, 32))
    assert result.mode == "L"
    assert not result.info.get("icc_profile")


LINEAR_GREY = icc_profiles.linear_grey()
# 64 in linear light is 0.251; sRGB encodes it as 1.055 * 0.251^(1/2.4) - 0.055 = 0.537 -> 137
LINEAR_64_IN_SRGB = 137


def test_grey_profile_is_kept_on_grey_output():
    data = save(Image.new("L", (64, 64), 64), "PNG", icc_profile=LINEAR_GREY)
    result, _ = rendered(data, size(32, 32))
    assert result.mode == "L"
    assert result.info.get("icc_profile") == LINEAR_GREY
    assert result.getpixel((16, 16)) == pytest.approx(64, abs=1)


@pytest.mark.parametrize(
    ("options", "fmt", "mode"),
    [
        (replace(DEFAULTS, keep_icc=False), None, "L"),
        (replace(DEFAULTS, keep_icc=False), "JPEG", "L"),
        # WebP stores no grey channel: the grey profile cannot travel with RGB pixels
        (DEFAULTS, "WEBP", "RGB"),
    ],
)
def test_grey_profile_is_converted(options, fmt, mode):
    data = save(Image.new("L", (64, 64), 64), "PNG", icc_profile=LINEAR_GREY)
    result, _ = rendered(data, size(32, 32, output_format=fmt), options)
    assert result.mode == mode
    assert not result.info.get("icc_profile")
    value = result.convert("L").getpixel((16, 16))
    assert value == pytest.approx(LINEAR_64_IN_SRGB, abs=4)


# --- CMYK and YCCK JPEGs ----------------------------------------------------------------

# Patches of sRGB colours and the naive CMYK inks that Pillow's RGB -> CMYK gives them.
PATCHES = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "cyan": (0, 255, 255),
}


def patches() -> Image.Image:
    image = Image.new("RGB", (32 * len(PATCHES), 32))
    for index, colour in enumerate(PATCHES.values()):
        image.paste(colour, (32 * index, 0, 32 * index + 32, 32))
    return image


def patch_colour(image: Image.Image, index: int) -> tuple[int, ...]:
    """Mean colour in the middle of patch ``index`` (patches are 32 wide at 192x32)."""
    scale = image.width / (32 * len(PATCHES))
    left = int((32 * index + 10) * scale)
    right = int((32 * index + 22) * scale)
    box = (left, int(10 * scale), right, int(22 * scale))
    return image.convert("RGB").crop(box).resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))


def ycck_jpeg(cmyk: Image.Image) -> bytes:
    """A real YCCK JPEG (Adobe APP14 transform 2), as Photoshop writes CMYK.

    Pillow only encodes CMYK, so the transform a decoder undoes is applied
    here: the stored channels are YCbCr of (C, M, Y) plus K, all inverted
    the Adobe way (Pillow inverts what it stores, so they go in upright).
    """
    c, m, y, k = cmyk.split()
    luma, blue, red = Image.merge("RGB", (c, m, y)).convert("YCbCr").split()
    stored = Image.merge("CMYK", [ImageChops.invert(band) for band in (luma, blue, red)] + [k])
    data = bytearray(save(stored, "JPEG", quality=95))
    adobe = data.index(b"Adobe")
    data[adobe + 11] = 2  # 'Adobe', version, flags0, flags1, transform
    return bytes(data)


@pytest.mark.parametrize("kind", ["adobe-cmyk", "ycck"])
def test_cmyk_jpeg_without_profile_has_the_right_colours(kind):
    source = patches()
    cmyk = source.convert("CMYK")
    data = save(cmyk, "JPEG", quality=95) if kind == "adobe-cmyk" else ycck_jpeg(cmyk)
    opened = Image.open(io.BytesIO(data))
    # Adobe inverted CMYK: Pillow reads APP14 and always decodes with Adobe polarity
    assert opened.mode == "CMYK" and "adobe" in opened.info
    assert opened.info["adobe_transform"] == (0 if kind == "adobe-cmyk" else 2)
    result, out = rendered(data, size(96, 96))
    assert out.content_type == "image/jpeg"
    assert result.mode == "RGB"
    assert not result.info.get("icc_profile")  # the CMYK profile-less source: plain sRGB
    for index, colour in enumerate(PATCHES.values()):
        assert patch_colour(result, index) == pytest.approx(colour, abs=12)


WEAK_PRESS = icc_profiles.weak_press_cmyk()


@pytest.mark.parametrize("keep_icc", [True, False])
@pytest.mark.parametrize("kind", ["adobe-cmyk", "ycck"])
def test_cmyk_jpeg_with_profile_is_converted_through_it(keep_icc, kind):
    inks = {
        "red": (0, 255, 255, 0),
        "cyan": (255, 0, 0, 0),
        "paper": (0, 0, 0, 0),
        "black": (0, 0, 0, 255),
    }
    cmyk = Image.new("CMYK", (32 * len(inks), 32))
    for index, ink in enumerate(inks.values()):
        cmyk.paste(ink, (32 * index, 0, 32 * index + 32, 32))
    if kind == "adobe-cmyk":
        data = save(cmyk, "JPEG", quality=95, icc_profile=WEAK_PRESS)
    else:
        plain = ycck_jpeg(cmyk)
        data = save_with_profile(plain, WEAK_PRESS)
    assert decode(data).info.get("icc_profile") == WEAK_PRESS
    result, _ = rendered(data, size(128, 128), replace(DEFAULTS, keep_icc=keep_icc))
    assert result.mode == "RGB"
    assert not result.info.get("icc_profile")  # sRGB now
    for index, ink in enumerate(inks.values()):
        printed = icc_profiles.weak_press_rgb(*(value / 255 for value in ink))
        expected = tuple(round(255 * value) for value in printed)
        scale = result.width / cmyk.width
        box = (int((32 * index + 10) * scale), 10, int((32 * index + 22) * scale), 22)
        got = result.crop(box).resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
        assert got == pytest.approx(expected, abs=12), (ink, got, expected)
    # the naive conversion would give pure black, not the weak press's grey
    assert patch_mean(result, 3, len(inks)) > 70


def patch_mean(image: Image.Image, index: int, count: int) -> float:
    width = image.width // count
    crop = image.convert("L").crop((width * index + 4, 4, width * index + width - 4, 28))
    return crop.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))


def save_with_profile(jpeg: bytes, profile: bytes) -> bytes:
    """Insert an ICC APP2 marker after SOI (the profile fits one marker)."""
    body = b"ICC_PROFILE\x00\x01\x01" + profile
    return jpeg[:2] + b"\xff\xe2" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


# --- modes and transparency -----------------------------------------------------


def test_sixteen_bit_rgb_png_keeps_its_colours():
    source = photo(120, 90)
    data = sixteen_bit_rgb_png(source)
    assert data[24] == 16  # IHDR bit depth: the input really is 16-bit
    result, _ = rendered(data, size(60, 60))
    assert similar(result, source, tolerance=4)


def sixteen_bit_rgb_png(image: Image.Image) -> bytes:
    """Pillow writes no 16-bit RGB PNG, so the rows are packed here."""
    width, height = image.size
    rows = bytearray()
    pixels = image.load()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            for value in pixels[x, y]:
                rows += struct.pack(">H", value * 257)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(rows)))
        + chunk(b"IEND", b"")
    )


def disc_on_clear(mode: str, colour: tuple[int, int, int] = (255, 0, 0)) -> Image.Image:
    """An opaque disc on fully transparent *black* pixels."""
    image = Image.new("RGBA", (99, 99), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((20, 20, 79, 79), fill=(*colour, 255))
    if mode == "P":
        paletted = Image.new("P", image.size, 0)
        paletted.putpalette([0, 0, 0, *colour] + [0] * 762)
        paletted.paste(1, mask=image.getchannel("A"))
        paletted.info["transparency"] = 0
        return paletted
    return image


@pytest.mark.parametrize("mode", ["RGBA", "P"])
@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "AVIF"])
def test_no_dark_fringe_at_transparent_edges(mode, fmt):
    data = save(disc_on_clear(mode), "PNG")
    result, _ = rendered(
        data, size(40, 40, output_format=fmt), replace(DEFAULTS, image_quality=100)
    )
    assert result.mode == "RGBA"
    pixels = result.load()
    edge = 0
    for y in range(result.height):
        for x in range(result.width):
            red, green, blue, alpha = pixels[x, y]
            if alpha >= 64:  # visible: must stay red, not darkened by the clear black
                edge += alpha < 250
                # (a resize that ignores alpha would give red about equal to alpha here)
                assert red >= 170 and green <= 70 and blue <= 70, (x, y, pixels[x, y])
    assert edge > 10  # there really were partly transparent edge pixels


@pytest.mark.parametrize("mode", ["RGBA", "P"])
def test_flattened_edges_blend_with_the_background_not_black(mode):
    # a white disc flattened on white is white everywhere; a dark fringe shows as a grey ring
    data = save(disc_on_clear(mode, (255, 255, 255)), "PNG")
    result, _ = rendered(data, size(40, 40, output_format="JPEG"))
    assert result.convert("L").getextrema()[0] >= 245
    # and the same disc on black really does have edge pixels to get wrong
    on_black, _ = rendered(data, size(40, 40, output_format="JPEG", background=(0, 0, 0)))
    histogram = on_black.convert("L").histogram()
    assert sum(histogram[40:215]) > 10


@pytest.mark.parametrize(
    ("source_mode", "fmt"),
    [("P", "PNG"), ("P", "GIF"), ("1", "PNG"), ("1", "JPEG"), ("L", "WEBP"), ("LA", "AVIF")],
)
def test_modes_are_resized_without_banding(source_mode, fmt):
    gradient = Image.linear_gradient("L").resize((128, 128))
    if source_mode == "LA":
        source = Image.merge("LA", (gradient, Image.new("L", gradient.size, 255)))
    elif source_mode == "1":
        source = gradient.convert("1")  # dithered: a smooth grey when averaged
    else:
        source = gradient.convert(source_mode) if source_mode != "P" else gradient.quantize(64)
    data = save(source, "PNG")
    result, _ = rendered(data, size(32, 32, output_format=fmt if fmt != "GIF" else None))
    grey = result.convert("L")
    # a smooth ramp: each row brighter than the one above, no flat bands
    column = [grey.getpixel((16, y)) for y in range(2, 30)]
    assert all(after >= before - 3 for before, after in itertools.pairwise(column))
    assert column[-1] - column[0] > 150
    assert len(set(column)) > 12


def test_palette_with_transparency_keeps_it_in_webp():
    data = save(disc_on_clear("P"), "GIF", transparency=0)
    result, out = rendered(data, size(50, 50), offers=("WEBP",))
    assert out.content_type == "image/webp"
    assert result.getpixel((1, 1))[3] == 0
    assert result.getpixel((25, 25))[3] == 255


# --- metadata -----------------------------------------------------------------


def with_all_metadata(fmt: str) -> bytes:
    source = photo(80, 60)
    exif = exif_with().tobytes()
    if fmt == "JPEG":
        return save(source, fmt, exif=exif, xmp=XMP, comment=b"a comment")
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", "a comment")
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        return save(source, fmt, exif=exif, pnginfo=info)
    if fmt == "GIF":
        return save(source, fmt, comment=b"a comment")
    return save(source, fmt, exif=exif, xmp=XMP)  # WEBP, AVIF


def metadata_of(image: Image.Image) -> set[str]:
    found = set()
    if image.getexif().get(MAKE) == "Phizer Camera":
        found.add("exif")
    xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if xmp and b"dc:format" in (xmp if isinstance(xmp, bytes) else xmp.encode()):
        found.add("xmp")
    comment = image.info.get("comment", image.info.get("Comment"))
    if comment in (b"a comment", "a comment"):
        found.add("comment")
    return found


SOURCE_METADATA = {
    "JPEG": {"exif", "xmp", "comment"},
    "PNG": {"exif", "xmp", "comment"},
    "GIF": {"comment"},
    "WEBP": {"exif", "xmp"},
    "AVIF": {"exif", "xmp"},
}


@pytest.mark.parametrize("fmt", sorted(SOURCE_METADATA))
def test_metadata_is_stripped_by_default(fmt):
    data = with_all_metadata(fmt)
    assert metadata_of(decode(data)) == SOURCE_METADATA[fmt]  # the input has it all
    result, _ = rendered(data, size(40, 40))
    assert metadata_of(result) == set()


@pytest.mark.parametrize(
    ("source_format", "output_format", "kept"),
    [
        ("JPEG", None, {"exif", "xmp", "comment"}),
        ("PNG", None, {"exif", "xmp", "comment"}),
        ("GIF", None, {"comment"}),
        ("WEBP", None, {"exif", "xmp"}),
        ("AVIF", None, {"exif", "xmp"}),
        ("JPEG", "PNG", {"exif", "xmp", "comment"}),
        ("JPEG", "WEBP", {"exif", "xmp"}),  # WebP has no comment
        ("PNG", "JPEG", {"exif", "xmp", "comment"}),
        ("JPEG", "AVIF", {"exif", "xmp"}),
    ],
)
def test_metadata_is_kept_where_the_output_can_hold_it(source_format, output_format, kept):
    data = with_all_metadata(source_format)
    result, _ = rendered(data, size(40, 40, output_format=output_format), KEEP_METADATA)
    assert metadata_of(result) == kept
    assert result.getexif().get(ORIENTATION, 1) == 1


def test_damaged_exif_is_dropped_not_fatal():
    data = save(
        photo(80, 60), "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + bytes(9)
    )
    result, _ = rendered(data, size(40, 40), KEEP_METADATA)
    assert result.size == (40, 30)


def test_passthrough_keeps_the_original_bytes_even_when_stripping():
    # legacy: sizes at or above max_dimension serve the original untouched
    data = with_all_metadata("JPEG")
    out = render(data, size(5000, 5000), None, DEFAULTS)
    assert out.data == data


# --- animation ------------------------------------------------------------------

COLOURS = [(255, 0, 0), (0, 160, 0), (0, 0, 255), (230, 230, 0), (0, 200, 200)]
DURATIONS = [100, 200, 300, 400, 500]


def animated_frames(count: int = 5, size_: tuple[int, int] = (64, 48)) -> list[Image.Image]:
    """Frames on a common grey ground with one moving coloured block each, so
    the GIF encoder writes partial frames after the first."""
    frames = []
    for index in range(count):
        frame = Image.new("RGB", size_, (128, 128, 128))
        left = 4 + 10 * index
        ImageDraw.Draw(frame).rectangle((left, 10, left + 12, 30), fill=COLOURS[index % 5])
        frames.append(frame)
    return frames


def animated(fmt: str, count: int = 5, loop: int | None = 0, **params: object) -> bytes:
    frames = animated_frames(count)
    extra = dict(params)
    if loop is not None:
        extra["loop"] = loop
    return save(
        frames[0],
        fmt,
        save_all=True,
        append_images=frames[1:],
        duration=[DURATIONS[i % 5] for i in range(count)],
        **extra,
    )


def frames_of(image: Image.Image) -> list[tuple[Image.Image, int]]:
    result = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        frame = image.convert("RGBA")
        result.append((frame, image.info.get("duration", 0)))
    return result


ANIMATED = replace(DEFAULTS, animated=True)


def test_animated_gif_keeps_every_frame_duration_and_loop():
    data = animated("GIF", loop=3)
    source = Image.open(io.BytesIO(data))
    source.seek(1)
    assert source.tile[0][1] != (0, 0, 64, 48)  # the input really has partial frames
    result, out = rendered(data, size(32, 32), ANIMATED)
    assert out.content_type == "image/gif"
    assert result.n_frames == 5
    assert result.info.get("loop") == 3
    expected = [frame.resize((32, 24), LANCZOS) for frame in animated_frames()]
    for (frame, duration), reference, wanted in zip(
        frames_of(result), expected, DURATIONS, strict=True
    ):
        assert frame.size == (32, 24)
        assert duration == wanted
        # whole frames: the grey ground from frame one is there in every frame
        assert similar(frame, reference, tolerance=10)


def test_gif_without_loop_count_still_plays_once():
    data = animated("GIF", loop=None)
    assert "loop" not in decode(data).info
    result, _ = rendered(data, size(32, 32), ANIMATED)
    assert result.n_frames == 5
    assert "loop" not in result.info


def test_frames_beyond_max_frames_are_dropped():
    data = animated("GIF")
    result, _ = rendered(data, size(32, 32), replace(ANIMATED, max_frames=3))
    assert result.n_frames == 3
    assert [duration for _, duration in frames_of(result)] == DURATIONS[:3]


def test_first_frame_only_by_default():
    result, _ = rendered(animated("GIF"), size(32, 32))
    assert getattr(result, "n_frames", 1) == 1
    assert similar(result, animated_frames()[0], tolerance=10)


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_animated_webp_and_apng_stay_animated(fmt):
    data = animated(fmt, loop=2, **({"lossless": True} if fmt == "WEBP" else {}))
    result, out = rendered(data, size(32, 32), ANIMATED)
    assert out.content_type == f"image/{fmt.lower()}"
    assert result.n_frames == 5
    assert result.info.get("loop") == 2
    expected = [frame.resize((32, 24), LANCZOS) for frame in animated_frames()]
    for (frame, duration), reference, wanted in zip(
        frames_of(result), expected, DURATIONS, strict=True
    ):
        assert duration == wanted
        assert similar(frame, reference, tolerance=14)  # lossy WebP


def test_animation_goes_to_an_offered_format_that_can_animate():
    data = animated("GIF")
    result, out = rendered(data, size(32, 32), ANIMATED, offers=("AVIF", "WEBP"))
    assert out.content_type == "image/webp"  # AVIF is not written animated
    assert result.n_frames == 5


def test_animated_avif_source_becomes_animated_webp():
    data = animated("AVIF", loop=None, quality=90)
    assert Image.open(io.BytesIO(data)).n_frames == 5
    result, out = rendered(data, size(32, 32), ANIMATED)
    assert out.content_type == "image/webp"
    assert result.n_frames == 5
    assert [duration for _, duration in frames_of(result)] == DURATIONS


def test_size_format_without_animation_keeps_the_first_frame():
    result, out = rendered(animated("GIF"), size(32, 32, output_format="JPEG"), ANIMATED)
    assert out.content_type == "image/jpeg"
    assert similar(result, animated_frames()[0], tolerance=10)


def test_transparent_animation_clears_between_frames():
    frames = []
    for index in range(3):
        frame = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
        ImageDraw.Draw(frame).rectangle((12 * index, 0, 12 * index + 10, 39), fill=COLOURS[index])
        frames.append(frame)
    data = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, disposal=2)
    result, _ = rendered(data, size(40, 40), ANIMATED)
    assert result.n_frames == 3
    for index, (frame, _) in enumerate(frames_of(result)):
        alpha = frame.getchannel("A")
        for other in range(3):
            strip = alpha.crop((12 * other + 2, 5, 12 * other + 8, 35)).getextrema()
            # only this frame's own bar is visible: earlier bars never show through
            assert strip == ((255, 255) if other == index else (0, 0)), (index, other, strip)


def test_animation_counts_every_frame_against_the_pixel_limit():
    data = animated("GIF")  # 64x48 = 3072 pixels a frame, 5 frames
    rendered(data, size(32, 32), ANIMATED, max_pixels=5 * 3072)
    rendered(data, size(32, 32), DEFAULTS, max_pixels=4 * 3072)  # one frame only
    with pytest.raises(SourceTooLarge):
        render(data, size(32, 32), None, ANIMATED, max_pixels=4 * 3072)
    # max_frames bounds the count
    rendered(data, size(32, 32), replace(ANIMATED, max_frames=4), max_pixels=4 * 3072)


# --- JPEG encoder settings ----------------------------------------------------------


def jpeg_frame_markers(data: bytes) -> set[int]:
    """The SOFn markers of a JPEG, walking its segments up to the scan."""
    markers, at = set(), 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xDA:
            break
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            markers.add(marker)
        at += 2 + length
    return markers


@pytest.mark.parametrize(
    ("setting", "per_size", "progressive"),
    [(False, None, False), (True, None, True), (False, True, True), (True, False, False)],
)
def test_progressive_jpeg_from_settings_or_size(setting, per_size, progressive):
    data = save(photo(200, 150), "JPEG", quality=95)
    options = replace(DEFAULTS, progressive=setting)
    out = render(data, size(100, 100, progressive=per_size), None, options)
    markers = jpeg_frame_markers(out.data)
    assert markers == ({0xC2} if progressive else {0xC0} | ({0xC1} & markers))


def test_jpeg_huffman_tables_are_optimized():
    data = save(photo(400, 300), "JPEG", quality=95)
    out = render(data, size(300, 300), None, DEFAULTS).data
    plain = save(decode(out), "JPEG", quality=95, optimize=False)
    optimized = save(decode(out), "JPEG", quality=95, optimize=True)
    assert len(out) < len(plain)
    assert abs(len(out) - len(optimized)) < len(plain) - len(optimized)


# --- the fast path ---------------------------------------------------------------


def photo_like(width: int, height: int) -> Image.Image:
    """Gradients, hard edges, fine lines and grain: a stand-in for a photo."""
    image = photo(width, height)
    draw = ImageDraw.Draw(image)
    for x in range(0, width, 37):
        draw.line((x, 0, x + height // 3, height), fill=(20, 20, 20), width=2)
    for index in range(12):
        left = (index * 173) % (width - 200)
        top = (index * 97) % (height - 150)
        draw.ellipse((left, top, left + 180, top + 120), outline=(250, 250, 240), width=4)
    noise = random.Random(width * height).randbytes(width * height)  # the same on every run
    grain = Image.frombytes("L", (width, height), noise).convert("RGB")
    return Image.blend(image, grain.filter(ImageFilter.GaussianBlur(0.6)), 0.25)


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    return save(photo_like(2400, 1600), "JPEG", quality=92)


@pytest.mark.parametrize("target", [(300, 300), (600, 600), (900, 900)])
def test_draft_and_reducing_gap_look_like_a_full_decode(big_jpeg, target):
    # PNG output, so only the decode and resampling path is compared
    out = render(big_jpeg, size(*target, output_format="PNG"), None, DEFAULTS).data
    result = decode(out)
    reference = decode(big_jpeg).resize(result.size, LANCZOS)
    assert ssim(result, reference) >= 0.98
    # and the metric sees the difference a careless shortcut makes
    careless = Image.open(io.BytesIO(big_jpeg))
    careless.draft("RGB", (result.width // 2, result.height // 2))
    shortcut = careless.convert("RGB").resize(result.size, Image.Resampling.NEAREST)
    assert ssim(shortcut, reference) < 0.98


def test_fast_path_with_jpeg_output_stays_close_to_the_reference(big_jpeg):
    # both sides through the same JPEG encoder, as served
    result = decode(render(big_jpeg, size(400, 400), None, DEFAULTS).data)
    full = decode(big_jpeg).resize(result.size, LANCZOS)
    reference = decode(save(full, "JPEG", quality=DEFAULTS.image_quality, optimize=True))
    assert ssim(result, reference) >= 0.98


# --- input formats ------------------------------------------------------------------

SOURCE = photo(120, 90)


@pytest.mark.parametrize(
    ("fmt", "params", "content_type"),
    [
        ("JPEG", {"quality": 95}, "image/jpeg"),
        ("PNG", {}, "image/png"),
        ("GIF", {}, "image/gif"),
        ("WEBP", {"quality": 95}, "image/webp"),
        ("AVIF", {"quality": 90}, "image/avif"),
        ("BMP", {}, "image/jpeg"),
        ("TIFF", {}, "image/jpeg"),
        ("TIFF", {"compression": "tiff_lzw"}, "image/jpeg"),
        ("TIFF", {"compression": "tiff_adobe_deflate"}, "image/jpeg"),
        ("TIFF", {"compression": "jpeg"}, "image/jpeg"),
        ("TIFF", {"compression": "packbits"}, "image/jpeg"),
    ],
)
def test_every_input_format_is_served(fmt, params, content_type):
    data = save(SOURCE, fmt, **params)
    result, out = rendered(data, size(60, 60))
    assert out.content_type == content_type
    assert result.size == (60, 45)
    lossless = content_type == "image/png" or (fmt == "BMP" and content_type == "image/png")
    assert similar(result, SOURCE, tolerance=3 if lossless else 14)
    assert ssim(result, SOURCE) >= (0.9 if fmt == "GIF" else 0.95)


def bmp_with_alpha(image: Image.Image) -> bytes:
    """A 32-bit BMP with an alpha mask (BITMAPV4HEADER), which Pillow reads but
    does not write."""
    width, height = image.size
    rows = b"".join(
        image.crop((0, y, width, y + 1)).tobytes("raw", "BGRA") for y in reversed(range(height))
    )
    header = struct.pack(
        "<IiiHHIIiiII4I4s36s3I",
        108, width, height, 1, 32, 3, len(rows), 2835, 2835, 0, 0,
        0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000, b"BGRs", bytes(36), 0, 0, 0,
    )  # fmt: skip
    offset = 14 + len(header)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + header + rows


@pytest.mark.parametrize("fmt", ["BMP", "TIFF"])
def test_bmp_and_tiff_with_alpha_become_png(fmt):
    source = photo(120, 90, "RGBA")
    data = bmp_with_alpha(source) if fmt == "BMP" else save(source, fmt)
    assert decode(data).mode == "RGBA"
    result, out = rendered(data, size(60, 60))
    assert out.content_type == "image/png"
    assert result.mode == "RGBA"
    assert rms_difference(result.getchannel("A"), source.getchannel("A")) < 4


def test_multi_page_tiff_serves_its_first_page():
    pages = [Image.new("RGB", (60, 40), colour) for colour in ((200, 0, 0), (0, 0, 200))]
    data = save(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    result, _ = rendered(data, size(30, 30), ANIMATED)
    assert getattr(result, "n_frames", 1) == 1
    assert result.getpixel((15, 10)) == pytest.approx((200, 0, 0), abs=8)


@pytest.mark.parametrize("fmt", ["AVIF", "BMP", "TIFF"])
def test_new_formats_pass_through_untouched_at_max_dimension(fmt):
    data = save(SOURCE, fmt)
    out = render(data, size(5000, 5000), None, DEFAULTS)
    assert out.data == data
    assert out.content_type == f"image/{fmt.lower()}"


def heif_header(major: bytes, compatible: bytes) -> bytes:
    body = b"ftyp" + major + b"\x00\x00\x00\x00" + compatible
    return struct.pack(">I", len(body) + 4) + body + bytes(64)


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (heif_header(b"heic", b"mif1heic"), "HEIF"),
        (heif_header(b"mif1", b"mif1heic"), "HEIF"),
        (heif_header(b"avif", b"avifmif1"), None),
        (heif_header(b"mif1", b"mif1avif"), None),
    ],
)
def test_heic_is_refused_and_avif_is_not(data, name):
    assert unsupported_format(data) == name
    if name is not None:
        with pytest.raises(UnsupportedImage):
            render(data, size(10, 10), None, DEFAULTS)


# --- choosing the output format ---------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "spec_format", "offers", "animated_", "alpha", "expected"),
    [
        # the size's format= wins, whatever the client accepts
        ("JPEG", "PNG", ("AVIF", "WEBP"), False, False, "PNG"),
        ("GIF", "JPEG", ("WEBP",), True, False, "JPEG"),
        # else the first offer that can hold the result
        ("JPEG", None, ("AVIF", "WEBP"), False, False, "AVIF"),
        ("PNG", None, ("WEBP", "AVIF"), False, True, "WEBP"),
        ("GIF", None, ("AVIF", "WEBP"), True, True, "WEBP"),  # AVIF does not animate here
        ("GIF", None, ("AVIF",), True, False, "GIF"),
        ("JPEG", None, ("JPEG",), False, False, "JPEG"),
        ("PNG", None, ("JPEG",), False, True, "PNG"),  # JPEG has no alpha
        # else the source's format
        ("JPEG", None, (), False, False, "JPEG"),
        ("PNG", None, (), False, True, "PNG"),
        ("GIF", None, (), True, True, "GIF"),
        ("WEBP", None, (), True, False, "WEBP"),
        ("PNG", None, (), True, False, "PNG"),  # APNG
        ("AVIF", None, (), False, False, "AVIF"),
        ("AVIF", None, (), True, False, "WEBP"),  # an animated AVIF source
        # BMP and TIFF are not written
        ("BMP", None, (), False, False, "JPEG"),
        ("BMP", None, (), False, True, "PNG"),
        ("TIFF", None, (), False, False, "JPEG"),
        ("TIFF", None, (), False, True, "PNG"),
        ("TIFF", None, ("WEBP",), False, False, "WEBP"),
    ],
)
def test_choose_format(source, spec_format, offers, animated_, alpha, expected):
    assert choose_format(source, spec_format, offers, animated_, alpha) == expected


@pytest.mark.parametrize(
    ("offers", "spec_format", "content_type"),
    [
        ((), None, "image/jpeg"),
        (("AVIF", "WEBP"), None, "image/avif"),
        (("WEBP",), None, "image/webp"),
        (("AVIF",), "PNG", "image/png"),
    ],
)
def test_render_uses_the_offers(offers, spec_format, content_type):
    data = save(SOURCE, "JPEG", quality=95)
    result, out = rendered(data, size(60, 60, output_format=spec_format), offers=offers)
    assert out.content_type == content_type
    assert result.format == content_type.split("/")[1].upper()
    assert similar(result, SOURCE, tolerance=14)


# --- per-size background, upscale and quality --------------------------------------------


@pytest.mark.parametrize(
    ("background", "canvas", "expected"),
    [((255, 0, 0), (255, 255, 255), (255, 0, 0)), (None, (0, 0, 255), (0, 0, 255))],
)
def test_background_flattens_alpha(background, canvas, expected):
    clear = Image.new("RGBA", (40, 40), (0, 255, 0, 0))
    data = save(clear, "PNG")
    options = replace(DEFAULTS, canvas_color=canvas)
    result, _ = rendered(data, size(20, 20, output_format="JPEG", background=background), options)
    assert result.getpixel((10, 10)) == pytest.approx(expected, abs=6)


@pytest.mark.parametrize(
    ("upscale", "expected"),
    [(True, (200, 160)), (False, (50, 40))],
)
def test_upscale_false_never_enlarges(upscale, expected):
    data = save(photo(50, 40), "PNG")
    result, _ = rendered(data, size(200, 200, upscale=upscale))
    assert result.size == expected


@pytest.mark.parametrize(
    ("fmt", "options", "spec_quality", "expected"),
    [
        ("JPEG", OutputOptions(image_quality=80), None, 80),
        ("JPEG", OutputOptions(image_quality=80), 60, 60),
        ("WEBP", OutputOptions(image_quality=80), None, quality_for("WEBP", 80)),
        ("WEBP", OutputOptions(image_quality=80, webp_quality=55), None, 55),
        ("WEBP", OutputOptions(image_quality=80, webp_quality=55), 60, quality_for("WEBP", 60)),
        ("AVIF", OutputOptions(image_quality=80), None, quality_for("AVIF", 80)),
        ("AVIF", OutputOptions(image_quality=80, avif_quality=40), None, 40),
    ],
)
def test_output_quality(fmt, options, spec_quality, expected):
    assert output_quality(fmt, size(10, 10, quality=spec_quality), options) == expected


def test_webp_quality_setting_reaches_the_encoder():
    data = save(photo_like(400, 300), "PNG")
    low = render(data, size(300, 300, output_format="WEBP"), None, OutputOptions(webp_quality=5))
    high = render(data, size(300, 300, output_format="WEBP"), None, OutputOptions(webp_quality=95))
    assert len(low.data) < len(high.data) / 2


def test_output_options_come_from_the_settings():
    settings = Settings(
        image_quality=70,
        canvas_color=(1, 2, 3),
        keep_icc=False,
        strip_metadata=False,
        animated=True,
        max_frames=7,
        progressive=True,
        webp_quality=61,
        avif_quality=52,
    )
    assert OutputOptions.from_settings(settings) == OutputOptions(
        image_quality=70,
        canvas_color=(1, 2, 3),
        keep_icc=False,
        strip_metadata=False,
        animated=True,
        max_frames=7,
        progressive=True,
        webp_quality=61,
        avif_quality=52,
    )
