"""Whether bytes begin as the image format their content type names.

Used where bytes come back from somewhere phizer does not control (a
cache tier) and are about to be served under a content type: only the
types phizer writes, and only bytes that start as that format.
"""

from __future__ import annotations

from collections.abc import Callable

from phizer.imaging.formats import CONTENT_TYPES

_AVIF_BRANDS = (b"avif", b"avis")


def _avif(data: bytes) -> bool:
    # An ISO BMFF file whose leading ftyp box names an AVIF brand, as the
    # major brand or among the compatible ones.
    if data[4:8] != b"ftyp":
        return False
    size = int.from_bytes(data[:4], "big")
    if not 16 <= size <= min(len(data), 4096) or size % 4:
        return False
    brands = [data[8:12]] + [data[i : i + 4] for i in range(16, size, 4)]
    return any(brand in _AVIF_BRANDS for brand in brands)


_SIGNATURES: dict[str, Callable[[bytes], bool]] = {
    "JPEG": lambda data: data.startswith(b"\xff\xd8\xff"),
    "PNG": lambda data: data.startswith(b"\x89PNG\r\n\x1a\n"),
    "GIF": lambda data: data[:6] in (b"GIF87a", b"GIF89a"),
    "WEBP": lambda data: data[:4] == b"RIFF" and data[8:12] == b"WEBP",
    "AVIF": _avif,
    "BMP": lambda data: data.startswith(b"BM"),
    "TIFF": lambda data: data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"),
}
_BY_TYPE = {CONTENT_TYPES[name]: check for name, check in _SIGNATURES.items()}
# Every content type phizer writes; nothing else is ever served from a tier.
IMAGE_TYPES = frozenset(_BY_TYPE)


def looks_like(content_type: str, data: bytes) -> bool:
    """Whether ``content_type`` is one phizer writes and ``data`` starts as it."""
    check = _BY_TYPE.get(content_type)
    return check is not None and check(data)
