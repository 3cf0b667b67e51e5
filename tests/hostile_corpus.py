"""The bad-input corpus: hostile URLs, origin behaviours and images, as data.

Every case is one ``Case``: the request to send, what the origins do for
the path it names and the status phizer must answer. Image bytes are made
here at run time (Pillow, or ``struct``/``zlib`` where a header must lie),
so nothing binary lives in the repository. Adding a case is one line in
one of the tables below.

As a script it writes the corpus for an operator to inspect or reuse::

    python -m tests.hostile_corpus --out DIR

which saves every body under ``DIR/files/<origin>/<path>`` and describes
every case in ``DIR/manifest.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import random
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from PIL import Image

from tests.hostile_origin import (
    Behaviour,
    HugeLength,
    NeverAnswer,
    Redirect,
    ResetMidBody,
    Serve,
    SlowChunked,
)
from tests.imagetools import encode, photo

MIB = 1024 * 1024
SIZE = "s100"  # 100x100, max: fits inside, keeps the aspect ratio
SIZE_BOX = (100, 100)
BIG_SIZE = "big"  # at or above max_dimension: the original is served untouched
SIZES = {SIZE: "100x100", BIG_SIZE: "5000x5000"}
SOURCE = (160, 120)  # fits SIZE_BOX as exactly 100x75
MAX_PATH_LENGTH = 2048


@dataclass(frozen=True)
class Limits:
    """The phizer properties the corpus is built for (small, so tests are fast)."""

    origin_timeout: float = 2.0
    origin_connect_timeout: float = 1.0
    max_source_bytes: int = 2 * MIB
    max_source_pixels: int = 4_000_000

    def properties(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Case:
    """One hostile request and the answer phizer owes it.

    ``origin_path`` is the decoded path (under the origins' root) that
    ``origin_behaviour`` (master) and ``slave_behaviour`` are scripted at.
    ``origin_hits`` is how many requests the master must see for this case
    (0: refused before any fetch). ``untouched`` are paths on the redirect
    target that must never be requested.
    """

    name: str
    path: str
    origin_behaviour: Behaviour | None
    expected_status: int
    origin_path: str | None = None
    slave_behaviour: Behaviour | None = None
    method: str = "GET"
    raw: bool = False  # the path holds bytes http.client refuses to send
    expected_size: tuple[int, int] | None = None
    expected_format: str | None = None
    origin_hits: int | None = None
    min_seconds: float | None = None
    max_seconds: float | None = None
    untouched: tuple[str, ...] = ()
    # (path, bytes) the master serves too: where a followed redirect leads.
    served: tuple[tuple[str, bytes], ...] = ()
    group: str = ""
    expected_type: str | None = None  # the Content-Type of a 200
    max_body: int | None = None  # bytes a 200 may have at most

    @property
    def filename(self) -> str:
        """The name phizer routes on (the last segment, as phizer decodes it)."""
        return (self.origin_path or self.path.split("?")[0]).rsplit("/", 1)[-1]


# --------------------------------------------------------------------------
# Image makers (pure functions returning bytes)


def picture(size: tuple[int, int] = SOURCE, mode: str = "RGB") -> Image.Image:
    return photo(*size, mode=mode) if mode in ("RGB", "RGBA") else photo(*size).convert(mode)


def jpeg(size: tuple[int, int] = SOURCE, **params: object) -> bytes:
    return encode(picture(size), "JPEG", quality=90, **params)


def png(size: tuple[int, int] = SOURCE, mode: str = "RGB", **params: object) -> bytes:
    return encode(picture(size, mode), "PNG", **params)


def fit(size: tuple[int, int], box: tuple[int, int] = SIZE_BOX) -> tuple[int, int]:
    """The ``max`` constraint: fit inside ``box`` keeping the aspect ratio."""
    width, height = size
    if box[0] * height <= box[1] * width:
        return box[0], max(1, height * box[0] // width)
    return max(1, width * box[1] // height), box[1]


def seeded_bytes(count: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(count)


def truncated(data: bytes, fraction: float = 0.5) -> bytes:
    return data[: int(len(data) * fraction)]


# -- PNG by hand: headers that lie


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_raw(width: int, height: int, depth: int, color_type: int, pixels: bytes) -> bytes:
    """A PNG whose IHDR says ``width x height`` and whose IDAT is ``pixels``
    (filter bytes included) compressed, whatever their real length."""
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(pixels, 9))
        + png_chunk(b"IEND", b"")
    )


def png_declaring(width: int, height: int) -> bytes:
    """Tiny file, huge canvas: one grey row of data for a ``width x height`` image."""
    return png_raw(width, height, 8, 0, b"\x00" * (1 + width))


def png_zero_flood(width: int, height: int) -> bytes:
    """A real, complete image of zeros: compresses about 1000:1."""
    return png_raw(width, height, 8, 0, (b"\x00" * (1 + width)) * height)


def png_16bit_rgb(size: tuple[int, int] = SOURCE, alpha: bool = False) -> bytes:
    """48- or 64-bit PNG (Pillow cannot write RGB with 16-bit samples)."""
    width, height = size
    channels = 4 if alpha else 3
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            sample = (x * 65535 // width, y * 65535 // height, 30000, 50000)[:channels]
            rows += struct.pack(f">{channels}H", *sample)
    return png_raw(width, height, 16, 6 if alpha else 2, bytes(rows))


def png_16bit_grey(size: tuple[int, int] = SOURCE) -> bytes:
    grey = Image.linear_gradient("L").resize(size).convert("I").point(lambda v: v * 257)
    return encode(grey.convert("I;16"), "PNG")


def png_palette(transparency: int | bytes) -> bytes:
    paletted = picture().quantize(16)
    return encode(paletted, "PNG", transparency=transparency)


# -- GIF by hand

_GIF_TWO_COLOURS = b"\x00\x00\x00\xff\xff\xff"
_GIF_ONE_PIXEL_LZW = b"\x02\x02\x44\x01\x00"  # min code size 2, one pixel, end


def gif_declaring(screen: tuple[int, int], frame: tuple[int, int]) -> bytes:
    """A GIF whose logical screen and frame claim the given sizes; one pixel of data."""
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", *screen, 0x80, 0, 0)
        + _GIF_TWO_COLOURS
        + b","
        + struct.pack("<HHHHB", 0, 0, *frame, 0)
        + _GIF_ONE_PIXEL_LZW
        + b";"
    )


def gif_animated(frames: int, size: tuple[int, int] = (64, 48)) -> bytes:
    base = picture(size).quantize(64)
    images = []
    for index in range(frames):
        frame = base.copy()
        left = index % (size[0] - 4)
        frame.paste(index % 64, (left, 0, left + 4, size[1]))
        images.append(frame)
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=20, loop=0)
    return buffer.getvalue()


def webp_animated(frames: int, size: tuple[int, int] = SOURCE) -> bytes:
    images = [picture(size).rotate(index * 7) for index in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "WEBP", save_all=True, append_images=images[1:], duration=40)
    return buffer.getvalue()


# -- JPEG header surgery


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 claims ``width x height`` (the data does not)."""
    data = bytearray(jpeg((64, 48)))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def jpeg_cmyk(transform: int | None = None) -> bytes:
    """CMYK JPEG (Adobe APP14, inverted as Photoshop writes it); ``transform``
    2 relabels it YCCK."""
    data = bytearray(encode(picture(mode="CMYK"), "JPEG", quality=90))
    if transform is not None:
        adobe = data.index(b"Adobe")
        data[adobe + 11] = transform  # 'Adobe', version, flags0, flags1, transform
    return bytes(data)


_TIFF_TYPES = {"BYTE": 1, "ASCII": 2, "SHORT": 3, "LONG": 4}


def exif_orientation(kind: str, values: Iterable[int] | bytes) -> bytes:
    """An Exif APP1 payload with one Orientation entry of any type and count."""
    if isinstance(values, bytes):
        payload, count = values, len(values)
    else:
        numbers = list(values)
        code = {"BYTE": "B", "SHORT": "H", "LONG": "I"}[kind]
        payload, count = struct.pack(f">{len(numbers)}{code}", *numbers), len(numbers)
    if len(payload) <= 4:
        value_field, extra = payload.ljust(4, b"\x00"), b""
    else:  # stored after the IFD
        value_field, extra = struct.pack(">I", 8 + 2 + 12 + 4), payload
    entry = struct.pack(">HHI", 0x0112, _TIFF_TYPES[kind], count) + value_field
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + b"\x00" * 4
    return b"Exif\x00\x00" + tiff + extra


def jpeg_with_exif(kind: str, values: Iterable[int] | bytes) -> bytes:
    return jpeg(exif=exif_orientation(kind, values))


# -- Structure that costs a decoder far more than its pixels


def jpeg_segments(kind: int, count: int, payload: bytes = b"") -> bytes:
    """``count`` marker segments of type ``0xFF<kind>`` (an APPn, say) right after SOI."""
    segment = bytes((0xFF, kind)) + struct.pack(">H", 2 + len(payload)) + payload
    data = jpeg((64, 48))
    return data[:2] + segment * count + data[2:]


def jpeg_scan_bomb(repeats: int, size: tuple[int, int] = (256, 256)) -> bytes:
    """A progressive JPEG with ``repeats`` more scans of its luma's last AC
    coefficient, each a few bytes of end-of-band runs: every one is another
    pass of the decoder over all the luma blocks."""
    data = encode(Image.new("RGB", size, (90, 140, 200)), "JPEG", progressive=True)
    blocks = -(-size[0] // 8) * -(-size[1] // 8)
    # An AC table whose only code, "0", is EOBRUN symbol 0xE0: with its 14
    # extra bits set, one code ends 32767 blocks.
    table = b"\x10" + bytes([1] + [0] * 15) + b"\xe0"
    dht = b"\xff\xc4" + struct.pack(">H", 2 + len(table)) + table
    bits = "0" + "1" * 14
    stream = bits * -(-blocks // 32767)
    stream += "1" * (-len(stream) % 8)
    entropy = int(stream, 2).to_bytes(len(stream) // 8, "big").replace(b"\xff", b"\xff\x00")
    scan = b"\xff\xda" + struct.pack(">HBBBBBB", 8, 1, 1, 0x00, 63, 63, 0) + entropy
    end = data.rindex(b"\xff\xd9")
    return data[:end] + dht + scan * repeats + data[end:]


def png_many_chunks(count: int, size: tuple[int, int] = (1, 1)) -> bytes:
    """A small PNG with ``count`` empty private chunks before its pixels."""
    data = png(size)
    idat = data.index(b"IDAT") - 4
    return data[:idat] + png_chunk(b"prVt", b"") * count + data[idat:]


def png_ztxt(chunks: int, text_bytes: int) -> bytes:
    """A small PNG with ``chunks`` zTXt chunks, each ``text_bytes`` once inflated."""
    data = png((32, 24))
    idat = data.index(b"IDAT") - 4
    text = zlib.compress(b"A" * text_bytes, 9)
    extra = b"".join(png_chunk(b"zTXt", b"k%d\x00\x00" % i + text) for i in range(chunks))
    return data[:idat] + extra + data[idat:]


def gif_frames_1x1(frames: int, extensions: int = 0) -> bytes:
    """A GIF of ``frames`` one-pixel frames after ``extensions`` empty comments."""
    frame = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + _GIF_ONE_PIXEL_LZW
    head = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + _GIF_TWO_COLOURS
    return head + b"!\xfe\x00" * extensions + frame * frames + b";"


def mpo(size: tuple[int, int] = SOURCE) -> bytes:
    """A two-picture MPO, as cameras and phones write them."""
    first, second = picture(size), picture(size).rotate(180)
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second], quality=90)
    return buffer.getvalue()


def large_profile(total: int) -> bytes:
    """A valid sRGB ICC profile padded to ``total`` bytes (its header says so)."""
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    padded = bytearray(profile + bytes(total - len(profile)))
    struct.pack_into(">I", padded, 0, total)
    return bytes(padded)


# -- Formats Pillow opens and phizer must not serve


def psd(size: tuple[int, int] = (32, 24)) -> bytes:
    """Minimal Photoshop file: RGB, 8 bits, raw planes, no layers."""
    width, height = size
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    sections = struct.pack(">III", 0, 0, 0)  # colour mode data, resources, layers
    planes = b"".join(bytes([value]) * (width * height) for value in (200, 100, 50))
    return header + sections + struct.pack(">H", 0) + planes


def cur(side: int = 32) -> bytes:
    """A Windows cursor: one 24-bit bitmap (its DIB header counts the AND
    mask's rows too) and its hotspot."""
    dib = struct.pack("<IiiHHIIiiII", 40, side, 2 * side, 1, 24, 0, 0, 0, 0, 0, 0)
    pixels = picture((side, side)).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    rows = pixels.convert("RGB").tobytes("raw", "BGR") + bytes(4 * side)  # colours, mask
    image = dib + rows
    entry = struct.pack("<BBBBHHII", side, side, 0, 0, 1, 1, len(image), 6 + 16)
    return struct.pack("<HHH", 0, 2, 1) + entry + image


def svg_after_comment(comment: int = 2000) -> bytes:
    head, body = SVG.split(b"\n", 1)
    return head + b"\n<!-- " + b"x" * comment + b" -->\n" + body


SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="160" '
    b'height="120"><rect width="160" height="120" fill="red"/></svg>\n'
)
HTML = b"<!DOCTYPE html>\n<html><head><title>Not Found</title></head><body>nope</body></html>\n"


# --------------------------------------------------------------------------
# The tables


def _path(name: str, crop: str = "") -> str:
    return f"/{SIZE}/{crop + '/' if crop else ''}{name}"


def url_cases() -> list[Case]:
    """Refused before any origin is asked (``origin_hits`` 0)."""

    def refused(name: str, path: str, status: int = 400, raw: bool = False) -> Case:
        return Case(name, path, None, status, raw=raw, origin_hits=0, group="url")

    long_name = "a" * (MAX_PATH_LENGTH + 1 - len(_path(".jpg"))) + ".jpg"
    return [
        refused("dotdot", "/s100/../good.jpg"),
        refused("dotdot-nested", "/s100/a/../../good.jpg"),
        refused("dot", "/s100/./good.jpg"),
        refused("dotdot-encoded", "/s100/%2e%2e/good.jpg"),
        refused("dotdot-encoded-upper", "/s100/%2E%2E/good.jpg"),
        refused("dotdot-half-encoded", "/s100/.%2e/good.jpg"),
        refused("slash-encoded", "/s100/..%2fgood.jpg"),
        refused("slash-encoded-upper", "/s100/a%2Fgood.jpg"),
        refused("double-encoded-dot", "/s100/%252e%252e/good.jpg"),
        refused("double-encoded-slash", "/s100/a%252fgood.jpg"),
        refused("double-encoded-name", "/s100/go%2561od.jpg"),
        refused("backslash", "/s100/a\\..\\good.jpg"),
        refused("backslash-encoded", "/s100/..%5cgood.jpg"),
        refused("empty-segment", "/s100//good.jpg"),
        refused("empty-segment-nested", "/s100/a//good.jpg"),
        refused("trailing-slash", "/s100/good.jpg/"),
        refused("nul-encoded", "/s100/good.jpg%00"),
        refused("nul-encoded-mid", "/s100/go%00od.jpg"),
        refused("newline-encoded", "/s100/go%0aod.jpg"),
        refused("cr-encoded", "/s100/go%0dod.jpg"),
        refused("del-encoded", "/s100/go%7fod.jpg"),
        refused("c1-encoded", "/s100/go%c2%85od.jpg"),
        refused("control-raw", "/s100/go\x01od.jpg", raw=True),
        refused("tab-raw", "/s100/go\tod.jpg", raw=True),
        refused("del-raw", "/s100/go\x7fod.jpg", raw=True),
        refused("bad-escape-letters", "/s100/good%zz.jpg"),
        refused("bad-escape-short", "/s100/good%2.jpg"),
        refused("bad-escape-bare", "/s100/good%.jpg"),
        refused("bad-escape-end", "/s100/good.jpg%"),
        refused("invalid-utf8", "/s100/go%ffod.jpg"),
        refused("overlong-utf8-slash", "/s100/a%c0%afgood.jpg"),
        refused("size-encoded-slash", "/s100%2f/good.jpg"),
        refused("too-long", _path(long_name), 414),
        refused("much-too-long", _path("b" * 8000 + ".jpg"), 414),
        refused("unknown-size", "/zz999/good.jpg", 404),
        refused("size-punctuation", "/s-100/good.jpg", 404),
        refused("size-only", "/s100", 404),
        refused("root", "/", 404),
        refused("crop-reversed-x", _path("good.jpg", "500x0/250x1000")),
        refused("crop-equal-y", _path("good.jpg", "0x500/1000x500")),
        refused("crop-over-1000", _path("good.jpg", "0x0/1001x1000")),
        refused("crop-negative", _path("good.jpg", "-1x0/1000x1000")),
        refused("crop-negative-br", _path("good.jpg", "0x0/-5x-5")),
        refused("crop-huge", _path("good.jpg", "0x0/99999999999999999999x1000")),
        refused("crop-huge-both", _path("good.jpg", "0x0/1000x" + "9" * 400)),
        refused("crop-point", _path("good.jpg", "0x0/0x0")),
        refused("crop-not-number", _path("good.jpg", "0x0/1000xabc")),
        refused("crop-exponent", _path("good.jpg", "0x0/1e3x1000")),
        refused("crop-fraction", _path("good.jpg", "0x0/999.5x1000")),
        refused("crop-exponent-top-left", _path("good.jpg", "1e3x0/1000x1000")),
        refused("crop-fraction-top-left", _path("good.jpg", "0.5x0/1000x1000")),
        refused("crop-both-malformed", _path("good.jpg", "1e3x0/1e3x1000")),
    ]


def method_cases() -> list[Case]:
    methods = ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "PROPFIND"]
    return [
        Case(
            f"method-{m.lower()}",
            "/s100/good.jpg",
            None,
            405,
            method=m,
            origin_hits=0,
            group="method",
        )
        for m in methods
    ]


def name_cases() -> list[Case]:
    """Names that look odd and are fine: served like any other."""

    def served(name: str, path: str, origin_path: str, raw: bool = False) -> Case:
        return Case(
            name,
            path,
            Serve(jpeg()),
            200,
            origin_path=origin_path,
            raw=raw,
            expected_size=fit(SOURCE),
            expected_format="JPEG",
            origin_hits=1,
            group="name",
        )

    return [
        served("utf8-encoded", _path(quote("café.jpg")), "café.jpg"),
        served("utf8-encoded-cjk", _path(quote("图片/照片.jpg")), "图片/照片.jpg"),
        served("utf8-raw", _path("naïve.jpg"), "naïve.jpg", raw=True),
        served("space-encoded", _path("with%20space.jpg"), "with space.jpg"),
        served("plus-and-tilde", _path("a+b~c.jpg"), "a+b~c.jpg"),
        served("upper-extension", _path("LOUD.JPG"), "LOUD.JPG"),
        served("no-extension", _path("noextension"), "noextension"),
        served("nested", _path("a/b/c/deep.jpg"), "a/b/c/deep.jpg"),
        served("query-ignored", _path("query.jpg?x=../../etc/passwd&y=%00"), "query.jpg"),
        served("percent-in-name", _path("100%25.jpg"), "100%.jpg"),
    ]


def origin_cases(limits: Limits) -> list[Case]:
    """What the origins answer, and what phizer makes of it."""
    over = limits.max_source_bytes + 1
    timeout = limits.origin_timeout

    def case(name: str, master: Behaviour, status: int, **extra: object) -> Case:
        extra.setdefault("origin_hits", 1)
        origin_path = f"origin/{name}.jpg"
        if status == 200:
            extra.setdefault("expected_size", fit(SOURCE))
            extra.setdefault("expected_format", "JPEG")
        return Case(
            name,
            _path(origin_path),
            master,
            status,
            origin_path=origin_path,
            group="origin",
            **extra,  # type: ignore[arg-type]
        )

    good = jpeg()
    return [
        case("master-403-on-slave", Serve(b"no", 403), 200, slave_behaviour=Serve(good)),
        case("master-404-on-slave", Serve(b"no", 404), 200, slave_behaviour=Serve(good)),
        case("master-410-on-slave", Serve(b"gone", 410), 200, slave_behaviour=Serve(good)),
        case("master-403-nowhere", Serve(b"no", 403), 404),
        case("master-404-nowhere", Serve(b"no", 404), 404),
        case("master-404-slave-403", Serve(b"no", 404), 404, slave_behaviour=Serve(b"", 403)),
        case("master-500", Serve(b"oops", 500), 502),
        case("master-502", Serve(b"bad gateway", 502), 502),
        case("master-503", Serve(b"busy", 503), 502),
        case("master-500-image-body", Serve(good, 500, "image/jpeg"), 502),
        case("master-201", Serve(good, 201, "image/jpeg"), 502),
        case(
            "redirect-other-host",
            Redirect("elsewhere/target.jpg"),
            502,
            untouched=("elsewhere/target.jpg",),
        ),
        case(
            "redirect-same-host",
            Redirect("elsewhere/same.jpg", 301, other_host=False),
            200,
            served=(("elsewhere/same.jpg", good),),
        ),
        case("redirect-loop", Redirect("origin/redirect-loop.jpg", 307, other_host=False), 502),
        case("content-type-wrong", Serve(good, content_type="text/html"), 200),
        case("content-type-missing", Serve(good, content_type=None), 200),
        case("html-page", Serve(HTML, content_type="text/html"), 502),
        case("zero-bytes", Serve(b"", content_type="image/jpeg"), 502),
        case("truncated-jpeg", Serve(truncated(good)), 502),
        case("truncated-jpeg-header", Serve(good[:200]), 502),
        case("truncated-png", Serve(truncated(png())), 502),
        case("garbage", Serve(seeded_bytes(4096, 1)), 502),
        case("garbage-jpeg-magic", Serve(b"\xff\xd8\xff\xe0" + seeded_bytes(4096, 2)), 502),
        case("garbage-png-magic", Serve(PNG_SIGNATURE + seeded_bytes(4096, 3)), 502),
        case("garbage-gif-magic", Serve(b"GIF89a\x10\x00\x10\x00" + seeded_bytes(4096, 4)), 502),
        case("reset-mid-body", ResetMidBody(good, len(good) // 2), 502),
        case(
            "never-answers",
            NeverAnswer(),
            504,
            min_seconds=timeout * 0.8,
            max_seconds=timeout + limits.origin_connect_timeout + 3.0,
        ),
        case("huge-content-length", HugeLength(10**12, good[:1000]), 413, max_seconds=timeout / 2),
        case(
            "content-length-over-limit", HugeLength(over, good[:1000]), 413, max_seconds=timeout / 2
        ),
        case("honest-body-over-limit", Serve(good + bytes(over - len(good))), 413),
        case(
            "chunked-over-limit", SlowChunked(total=12 * limits.max_source_bytes, prefix=png()), 413
        ),
    ]


def image_cases(limits: Limits) -> list[Case]:
    """Images that are hostile or merely unusual."""
    side = int(limits.max_source_pixels**0.5) + 100  # just over the pixel limit

    def case(
        name: str,
        data: bytes,
        status: int,
        fmt: str | None = None,
        size: tuple[int, int] = SOURCE,
        **extra: object,
    ) -> Case:
        extension = {"png": "png", "gif": "gif", "webp": "webp"}.get(name.split("-")[0], "jpg")
        origin_path = f"image/{name}.{extension}"
        code = str(extra.pop("size_code", SIZE))
        return Case(
            name,
            f"/{code}/{origin_path}",
            Serve(data),
            status,
            origin_path=origin_path,
            expected_size=(fit(size) if code == SIZE else size) if status == 200 else None,
            expected_format=fmt if status == 200 else None,
            origin_hits=1,
            group="image",
            **extra,  # type: ignore[arg-type]
        )

    return [
        # Decompression bombs: refused from the header, never decoded.
        case("png-declares-50000x50000", png_declaring(50_000, 50_000), 413),
        case("png-declares-over-limit", png_declaring(side, side), 413),
        case("png-zero-flood-over-limit", png_zero_flood(side, side), 413),
        case("gif-screen-65535", gif_declaring((65535, 65535), (1, 1)), 413),
        case("gif-frame-65535", gif_declaring((16, 16), (65535, 65535)), 413),
        case("jpeg-sof-over-limit", jpeg_declaring(side, side), 413),
        case("jpeg-sof-65535", jpeg_declaring(65535, 65535), 413),
        case("jpeg-real-over-limit", jpeg((side, side)), 413),
        # Structure that costs a decoder far more than the pixels: refused
        # from the bytes, before any decoder runs.
        case("jpeg-scan-bomb", jpeg_scan_bomb(3000), 413, max_seconds=1.0),
        case("jpeg-app-segments", jpeg_segments(0xE5, 20_000), 413, max_seconds=1.0),
        case("png-many-chunks", png_many_chunks(20_000), 413, max_seconds=1.0),
        case("gif-many-extensions", gif_frames_1x1(1, extensions=20_000), 413, max_seconds=1.0),
        # Cheap to serve, as long as nothing reads (or keeps) what it need not.
        case("gif-50000-frames", gif_frames_1x1(50_000), 200, "GIF", size=(1, 1)),
        case("png-ztxt-flood", png_ztxt(20, MIB), 200, "PNG", size=(32, 24)),
        case("jpeg-mpo", mpo(), 200, "JPEG", expected_type="image/jpeg"),
        case(
            "jpeg-mpo-untouched",
            mpo(),
            200,
            "MPO",
            size_code=BIG_SIZE,
            expected_type="image/jpeg",
        ),
        case(
            "jpeg-icc-1mib",
            jpeg(icc_profile=large_profile(MIB)),
            200,
            "JPEG",
            max_body=64 * 1024,
        ),
        # Unusual but valid: served at the right size.
        case("jpeg-cmyk-adobe", jpeg_cmyk(), 200, "JPEG"),
        case("jpeg-ycck", jpeg_cmyk(transform=2), 200, "JPEG"),
        case("jpeg-grey", encode(picture(mode="L"), "JPEG"), 200, "JPEG"),
        case("jpeg-progressive", jpeg(progressive=True), 200, "JPEG"),
        case("png-16bit-grey", png_16bit_grey(), 200, "PNG"),
        case("png-16bit-rgb", png_16bit_rgb(), 200, "PNG"),
        case("png-16bit-rgba", png_16bit_rgb(alpha=True), 200, "PNG"),
        case("png-1bit", png(mode="1"), 200, "PNG"),
        case("png-palette-transparent-index", png_palette(0), 200, "PNG"),
        case("png-palette-alpha-table", png_palette(bytes(range(0, 256, 16))), 200, "PNG"),
        case("png-grey-alpha", png(mode="LA"), 200, "PNG"),
        case("gif-300-frames", gif_animated(300), 200, "GIF", size=(64, 48)),
        case("webp-animated", webp_animated(12), 200, "WEBP"),
        case("exif-orientation-0", jpeg_with_exif("SHORT", [0]), 200, "JPEG"),
        case("exif-orientation-9", jpeg_with_exif("SHORT", [9]), 200, "JPEG"),
        case("exif-orientation-65535", jpeg_with_exif("SHORT", [65535]), 200, "JPEG"),
        case("exif-orientation-long", jpeg_with_exif("LONG", [2**32 - 1]), 200, "JPEG"),
        case("exif-orientation-string", jpeg_with_exif("ASCII", b"six\x00"), 200, "JPEG"),
        case("exif-orientation-pair", jpeg_with_exif("SHORT", [0, 9]), 200, "JPEG"),
        case("exif-garbage", jpeg(exif=b"Exif\x00\x00" + seeded_bytes(64, 5)), 200, "JPEG"),
        case("icc-random", jpeg(icc_profile=seeded_bytes(3000, 6)), 200, "JPEG"),
        case("icc-random-png", png(icc_profile=seeded_bytes(700, 7)), 200, "PNG"),
    ]


def unsupported_cases() -> list[Case]:
    """Formats Pillow can open (or sniff) that phizer must not serve: 422.
    Named ``.jpg``: the extension is what an uploader controls."""

    def case(name: str, data: bytes) -> Case:
        origin_path = f"unsupported/{name}.jpg"
        return Case(
            name,
            _path(origin_path),
            Serve(data),
            422,
            origin_path=origin_path,
            origin_hits=1,
            group="unsupported",
        )

    small = picture((40, 30))
    return [
        case("eps", encode(small, "EPS")),
        case("pdf", encode(small, "PDF")),
        case("psd", psd()),
        case("ico", encode(small, "ICO")),
        case("svg", SVG),
        case("xbm", encode(small.convert("1"), "XBM")),
        case("cur", cur()),
        case("pcx", encode(small, "PCX")),
        case("tga", encode(small, "TGA")),
        case("svg-after-comment", svg_after_comment()),
    ]


# --------------------------------------------------------------------------
# A directory origin's tree: what a local user who can write into it plants


@dataclass(frozen=True)
class DirectoryCase:
    """A path under a ``directory =`` origin's root and the status it owes."""

    name: str
    origin_path: str
    expected_status: int
    expected_size: tuple[int, int] | None = None

    @property
    def path(self) -> str:
        return _path(quote(self.origin_path))


INSIDE_IMAGE_SIZE = SOURCE
OUTSIDE_IMAGE_SIZE = (SOURCE[1], SOURCE[0])  # portrait: told apart from the inside one


def directory_tree(root: Path, outside: Path) -> None:
    """Plant the hostile tree under ``root``; ``outside`` (a sibling of
    ``root`` named ``outside``) holds what must never be served."""
    inside = jpeg(INSIDE_IMAGE_SIZE)
    secret = jpeg(OUTSIDE_IMAGE_SIZE)
    (root / "sub" / "deeper").mkdir(parents=True)
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.jpg").write_bytes(secret)
    (root / "sub" / "inside.jpg").write_bytes(inside)
    links = {
        "alias.jpg": "sub/inside.jpg",
        "roundabout.jpg": "sub/deeper/../inside.jpg",
        "absolute.jpg": str(root / "sub" / "inside.jpg"),
        "escape.jpg": str(outside / "secret.jpg"),
        "up": "..",
        "out": str(outside),
        "loop-a.jpg": "loop-b.jpg",
        "loop-b.jpg": "loop-a.jpg",
        "self": "self",
        "dangling.jpg": "gone.jpg",
        "proc-self.jpg": "/proc/self/fd/0",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    (root / "sub" / "climb.jpg").symlink_to(os.path.relpath(outside / "secret.jpg", root / "sub"))
    os.mkfifo(root / "fifo.jpg")


def directory_cases() -> list[DirectoryCase]:
    served = fit(INSIDE_IMAGE_SIZE)
    refused = [
        ("absolute-link", "absolute.jpg"),
        ("link-out", "escape.jpg"),
        ("link-up", "up/outside/secret.jpg"),
        ("link-dir-out", "out/secret.jpg"),
        ("link-climbs-out", "sub/climb.jpg"),
        ("link-loop", "loop-a.jpg"),
        ("link-self-loop", "self/x.jpg"),
        ("link-dangling", "dangling.jpg"),
        ("magic-link", "proc-self.jpg"),
        ("fifo", "fifo.jpg"),
        ("directory", "sub"),
        ("name-too-long", "n" * 300 + ".jpg"),
        ("missing", "nothing.jpg"),
        ("file-as-directory", "sub/inside.jpg/x.jpg"),
    ]
    return [
        DirectoryCase("dir-plain", "sub/inside.jpg", 200, served),
        DirectoryCase("dir-link-inside", "alias.jpg", 200, served),
        DirectoryCase("dir-link-dotdot-inside", "roundabout.jpg", 200, served),
        *(DirectoryCase(f"dir-{name}", path, 404) for name, path in refused),
    ]


def build_corpus(limits: Limits | None = None) -> list[Case]:
    limits = limits or Limits()
    cases = [
        *url_cases(),
        *method_cases(),
        *name_cases(),
        *origin_cases(limits),
        *image_cases(limits),
        *unsupported_cases(),
    ]
    check_corpus(cases)
    return cases


def check_corpus(cases: list[Case]) -> None:
    """Names and scripted paths must be unique, or cases would overwrite each other."""
    names = [case.name for case in cases]
    duplicates = {name for name in names if names.count(name) > 1}
    assert not duplicates, f"duplicate case names: {sorted(duplicates)}"
    paths = [case.origin_path for case in cases if case.origin_path]
    duplicates = {path for path in paths if paths.count(path) > 1}
    assert not duplicates, f"duplicate origin paths: {sorted(duplicates)}"


# --------------------------------------------------------------------------
# Writing the corpus out


def describe(behaviour: Behaviour | None, save: Callable[[bytes], dict[str, object]]) -> object:
    """A JSON-ready description of a behaviour; bytes go through ``save``."""
    if behaviour is None:
        return None
    fields: dict[str, object] = {"kind": type(behaviour).__name__}
    for field in dataclasses.fields(behaviour):
        value = getattr(behaviour, field.name)
        fields[field.name] = save(value) if isinstance(value, bytes) else value
    return fields


def write_corpus(out: Path, cases: list[Case], limits: Limits) -> Path:
    files = out / "files"
    entries = []
    for case in cases:
        entry: dict[str, object] = {
            key: value
            for key, value in dataclasses.asdict(case).items()
            if key not in ("origin_behaviour", "slave_behaviour")
        }
        for role, behaviour in (("master", case.origin_behaviour), ("slave", case.slave_behaviour)):
            entry[role] = describe(behaviour, _saver(files / role, case, behaviour, out))
        entries.append(entry)
    manifest = out / "manifest.json"
    manifest.write_text(
        json.dumps(
            {"limits": limits.properties(), "size": SIZE, "cases": entries},
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    return manifest


def _saver(
    root: Path, case: Case, behaviour: Behaviour | None, out: Path
) -> Callable[[bytes], dict[str, object]]:
    def save(data: bytes) -> dict[str, object]:
        name = case.origin_path or case.name
        if not isinstance(behaviour, Serve):
            name = f"{name}.{type(behaviour).__name__.lower()}"
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return {
            "file": str(target.relative_to(out)),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    return save


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write phizer's hostile-input corpus.")
    parser.add_argument("--out", required=True, type=Path, help="directory to write")
    args = parser.parse_args(argv)
    limits = Limits()
    cases = build_corpus(limits)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = write_corpus(args.out, cases, limits)
    print(f"{len(cases)} cases; manifest: {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
