"""Small ICC v2 profiles built byte by byte for the colour tests.

Pillow can only create sRGB, LAB and XYZ profiles, and no RGB, grey or
CMYK profile ships with the system, so the tests make their own: an RGB
profile with the published Adobe RGB (1998) primaries (D50-adapted, as
in ICC files) and a 2.2 gamma, a linear grey profile, and a CMYK press
profile whose inks are deliberately weak, so that converting through it
is easy to tell from Pillow's naive CMYK conversion.
"""

from __future__ import annotations

import struct

D50 = (0.9642, 1.0, 0.8249)
ADOBE_RGB_PRIMARIES = ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))
# The weak press: each ink absorbs this share of the light, black ink this share.
INK_STRENGTH = 0.7
BLACK_STRENGTH = 0.6


def adobe_rgb_like() -> bytes:
    curve = _curve(563 / 256)  # 2.19921875, as Adobe's own profile stores it
    red, green, blue = ADOBE_RGB_PRIMARIES
    return _profile(
        b"mntr",
        b"RGB ",
        b"XYZ ",
        [
            (b"desc", _desc("Adobe RGB (1998) primaries, test copy")),
            (b"cprt", _text("No copyright, test data")),
            (b"wtpt", _xyz(*D50)),
            (b"rXYZ", _xyz(*red)),
            (b"gXYZ", _xyz(*green)),
            (b"bXYZ", _xyz(*blue)),
            (b"rTRC", curve),
            (b"gTRC", curve),
            (b"bTRC", curve),
        ],
    )


def linear_grey() -> bytes:
    return _profile(
        b"mntr",
        b"GRAY",
        b"XYZ ",
        [
            (b"desc", _desc("Linear grey, test data")),
            (b"cprt", _text("No copyright, test data")),
            (b"wtpt", _xyz(*D50)),
            (b"kTRC", _curve(1.0)),
        ],
    )


def weak_press_cmyk() -> bytes:
    return _profile(
        b"prtr",
        b"CMYK",
        b"Lab ",
        [
            (b"desc", _desc("Weak-ink CMYK press, test data")),
            (b"cprt", _text("No copyright, test data")),
            (b"wtpt", _xyz(*D50)),
            (b"A2B0", _cmyk_lut()),
        ],
    )


def weak_press_rgb(c: float, m: float, y: float, k: float) -> tuple[float, float, float]:
    """The sRGB colour (0-1) the weak press prints for ink coverages 0-1."""
    white = 1 - BLACK_STRENGTH * k
    return tuple((1 - INK_STRENGTH * ink) * white for ink in (c, m, y))  # type: ignore[return-value]


def srgb_to_lab(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    """sRGB (0-1) to CIELAB relative to D50, the ICC connection space."""
    r, g, b = (v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in rgb)
    x = 0.4360747 * r + 0.3850649 * g + 0.1430804 * b
    y = 0.2225045 * r + 0.7168786 * g + 0.0606169 * b
    z = 0.0139322 * r + 0.0971045 * g + 0.7141733 * b

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    fx, fy, fz = f(x / D50[0]), f(y / D50[1]), f(z / D50[2])
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def _cmyk_lut() -> bytes:
    """lut8Type: 4 inputs, 3 outputs (Lab), a 2-point grid with identity curves."""
    identity = bytes(range(256))
    matrix = b"".join(_s15(1.0 if row == col else 0.0) for row in range(3) for col in range(3))
    grid = bytearray()
    for c in (0, 1):  # the first input channel varies slowest
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    lab = srgb_to_lab(weak_press_rgb(c, m, y, k))
                    grid += bytes(_lab_byte(value, index) for index, value in enumerate(lab))
    head = b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + matrix
    return head + identity * 4 + bytes(grid) + identity * 3


def _lab_byte(value: float, index: int) -> int:
    encoded = value * 255 / 100 if index == 0 else value + 128
    return max(0, min(255, round(encoded)))


def _profile(
    device_class: bytes, colour_space: bytes, pcs: bytes, tags: list[tuple[bytes, bytes]]
) -> bytes:
    table_end = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        table += signature + struct.pack(">II", table_end + len(data), len(body))
        data += body + bytes(-len(body) % 4)
    size = table_end + len(data)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + struct.pack(">I", 0x02100000)
        + device_class
        + colour_space
        + pcs
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + bytes(4 + 4 + 4 + 4 + 8 + 4)  # platform, flags, maker, model, attributes, intent
        + b"".join(_s15(v) for v in D50)
        + bytes(4 + 16 + 28)  # creator, profile id, reserved
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + _s15(x) + _s15(y) + _s15(z)


def _curve(gamma: float) -> bytes:
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256))


def _desc(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return (
        b"desc"
        + bytes(4)
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + struct.pack(">II", 0, 0)  # no Unicode description
        + struct.pack(">HB", 0, 0)  # no ScriptCode description
        + bytes(67)
    )


def _text(text: str) -> bytes:
    return b"text" + bytes(4) + text.encode("ascii") + b"\0"
