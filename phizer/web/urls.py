"""Request paths: ``/<size>/<path>`` and ``/<size>/<tlx>x<tly>/<brx>x<bry>/<path>``.

Parsing is strict because the path is hostile: every segment is split
before it is decoded, so ``%2f`` cannot create a segment, and ``..``,
empty segments, backslashes, control characters and double encoding are
refused rather than normalised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from phizer.errors import BadRequest, NotFound, UriTooLong
from phizer.imaging.geometry import CROP_SCALE, Crop

MAX_PATH_LENGTH = 2048
_CROP_POINT = re.compile(r"^([+-]?\d+)x([+-]?\d+)$")
# What a mistyped number is made of: 1e3, 999.5, +-0.
_NUMBERISH = r"[+\-\d.eE]*\d[+\-\d.eE]*"
# One number-like side: a mistyped point beside a valid one (1e3x0, 10xabc, 2x).
_CROP_LIKE = re.compile(rf"^({_NUMBERISH}x[^/]*|[^/]*x{_NUMBERISH})$")
# Both sides number-like: a point however mistyped (1e3x0, 0.5x1), where a
# directory name (2x, box, 0x1f) is not.
_POINT_LIKE = re.compile(rf"^{_NUMBERISH}x{_NUMBERISH}$")
_SIZE_CODE = re.compile(r"^[A-Za-z0-9]{1,32}$")
_ENCODED = re.compile(r"%[0-9a-fA-F]{2}")
_BAD_ESCAPE = re.compile(r"%(?![0-9a-fA-F]{2})")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


@dataclass(frozen=True)
class ImageRequest:
    size: str
    crop: Crop | None
    path: str

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def key(self) -> str:
        """Canonical form: the cache key and the path a worker is asked for."""
        crop = f"/{self.crop.to_segments()}" if self.crop else ""
        return f"/{self.size}{crop}/{quote(self.path, safe='/')}"


def parse_request_path(raw_path: str) -> ImageRequest:
    """Parse the still percent-encoded path of a request (no query string)."""
    if len(raw_path) > MAX_PATH_LENGTH:
        raise UriTooLong()
    if not raw_path.startswith("/"):
        raise BadRequest("path must start with /")
    if raw_path == "/":
        raise NotFound("expected /<size>/<path>")
    segments = [_decode_segment(s) for s in raw_path[1:].split("/")]
    if len(segments) < 2:
        raise NotFound("expected /<size>/<path>")
    size = segments[0]
    if not _SIZE_CODE.match(size):
        raise NotFound("unknown size")
    crop = None
    if len(segments) >= 4:
        top_left, bottom_right = segments[1], segments[2]
        if _is_crop_point(top_left) and _is_crop_point(bottom_right):
            crop = _parse_crop(top_left, bottom_right)
            segments = [size, *segments[3:]]
        elif _is_malformed_crop(top_left, bottom_right):
            raise BadRequest("malformed crop point")
    return ImageRequest(size.lower(), crop, "/".join(segments[1:]))


def parse_photo_path(raw_path: str) -> str:
    """A photo's path alone (``users/42/photo.jpg``, still percent-encoded),
    checked like the path of an image request."""
    if len(raw_path) > MAX_PATH_LENGTH:
        raise UriTooLong()
    if not raw_path:
        raise NotFound("expected a photo's path")
    return "/".join(_decode_segment(segment) for segment in raw_path.split("/"))


def _decode_segment(segment: str) -> str:
    if segment == "":
        raise BadRequest("empty path segment")
    if _BAD_ESCAPE.search(segment):
        raise BadRequest("malformed percent-encoding")
    try:
        decoded = unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("path is not valid UTF-8") from None
    if decoded in (".", "..") or "/" in decoded:
        raise BadRequest("path segment not allowed")
    if _FORBIDDEN.search(decoded):
        raise BadRequest("control character or backslash in path")
    if _ENCODED.search(decoded):
        raise BadRequest("double-encoded path")
    return decoded


def _is_crop_point(segment: str) -> bool:
    return _CROP_POINT.match(segment) is not None


def _is_malformed_crop(first: str, second: str) -> bool:
    """Two segments meant as crop points, either way round: a valid point
    beside a crop-like one, or two number-like points."""
    if _is_crop_point(first) and _CROP_LIKE.match(second):
        return True
    if _is_crop_point(second) and _CROP_LIKE.match(first):
        return True
    return bool(_POINT_LIKE.match(first) and _POINT_LIKE.match(second))


def _parse_crop(top_left: str, bottom_right: str) -> Crop:
    points = []
    for segment in (top_left, bottom_right):
        match = _CROP_POINT.match(segment)
        assert match is not None
        for number in match.groups():
            if len(number.lstrip("+-")) > 4:
                raise BadRequest("crop point out of range")
            points.append(int(number))
    crop = Crop(*points)
    if not (
        0 <= crop.left < crop.right <= CROP_SCALE and 0 <= crop.top < crop.bottom <= CROP_SCALE
    ):
        raise BadRequest("crop points must satisfy 0 <= top-left < bottom-right <= 1000")
    return crop
