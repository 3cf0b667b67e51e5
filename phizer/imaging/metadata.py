"""EXIF, XMP and comments carried from the source to the output.

The output's pixels are already upright, so the orientation is removed
from both EXIF and XMP: no viewer may rotate them a second time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from PIL import Image, PngImagePlugin

ORIENTATION_TAG = 0x0112
# Sources whose ``exif`` is an Exif block; a TIFF's tags describe its own
# file layout and are not carried over.
_EXIF_SOURCES = ("JPEG", "PNG", "WEBP", "AVIF")
_XMP_ORIENTATION = re.compile(
    rb"""\s*tiff:Orientation=(?:"[^"]*"|'[^']*')|<tiff:Orientation>[^<]*</tiff:Orientation>"""
)
# A JPEG marker segment holds at most this many bytes of payload.
_JPEG_SEGMENT = 65533 - 29
_PNG_XMP_KEY = "XML:com.adobe.xmp"


@dataclass(frozen=True)
class Metadata:
    exif: bytes | None = None
    xmp: bytes | None = None
    comment: bytes | None = None

    @property
    def nbytes(self) -> int:
        return sum(len(value or b"") for value in (self.exif, self.xmp, self.comment))


def read_metadata(image: Image.Image) -> Metadata:
    """The source's metadata worth keeping, orientation removed."""
    return Metadata(_exif(image), _xmp(image), _comment(image))


def save_params(metadata: Metadata, image_format: str) -> dict[str, object]:
    """Encoder parameters that write ``metadata`` where the format can hold it."""
    params: dict[str, object] = {}
    if image_format in ("JPEG", "WEBP", "AVIF", "PNG") and metadata.exif:
        params["exif"] = metadata.exif
    if image_format in ("JPEG", "WEBP", "AVIF") and metadata.xmp:
        params["xmp"] = metadata.xmp
    if image_format in ("JPEG", "GIF") and metadata.comment:
        params["comment"] = metadata.comment
    if image_format == "PNG" and (metadata.xmp or metadata.comment):
        info = PngImagePlugin.PngInfo()
        if metadata.comment:
            info.add_text("Comment", metadata.comment)
        if metadata.xmp:
            info.add_itxt(_PNG_XMP_KEY, metadata.xmp.decode("utf-8", "replace"))
        params["pnginfo"] = info
    if image_format == "JPEG":  # what does not fit one marker is dropped
        for key in ("exif", "xmp", "comment"):
            value = params.get(key)
            if isinstance(value, bytes) and len(value) > _JPEG_SEGMENT:
                del params[key]
    return params


def _exif(image: Image.Image) -> bytes | None:
    raw = image.info.get("exif")
    if image.format not in _EXIF_SOURCES or not isinstance(raw, bytes):
        return None
    exif = Image.Exif()
    try:
        exif.load(raw)
        exif.pop(ORIENTATION_TAG, None)
        return exif.tobytes() if len(exif) else None
    except Exception:  # damaged EXIF is dropped, never fatal
        return None


def _xmp(image: Image.Image) -> bytes | None:
    raw = image.info.get("xmp")
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not isinstance(raw, bytes) or not raw:
        return None
    return _XMP_ORIENTATION.sub(b"", raw)


def _comment(image: Image.Image) -> bytes | None:
    raw = image.info.get("comment", image.info.get("Comment"))
    if isinstance(raw, str):
        raw = raw.encode("latin-1", "replace")
    return raw if isinstance(raw, bytes) and raw else None
