"""Content negotiation: which of the ``auto_format`` formats a client accepts.

The front turns the ``Accept`` header into an *offer set*, the configured
formats the client explicitly accepts, in configured order. The offer set,
never the raw header, is what varies the cache key and what the worker is
told, so the number of variants of one image is at most ``2 ** len(auto_format)``
however many distinct ``Accept`` headers clients send.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# The formats ``auto_format`` may name, and the media type a client must list.
MEDIA_TYPES = {"AVIF": "image/avif", "WEBP": "image/webp"}
# RFC 9110 qvalue: 0 to 1 with at most three decimals.
_QVALUE = re.compile(r"^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")


def offers_for(accept: str | None, auto_format: Sequence[str]) -> tuple[str, ...]:
    """The formats of ``auto_format`` that ``accept`` lists with a q-value above 0.

    Only an explicit media type counts: browsers send ``*/*`` (and some
    ``image/*``) whether or not they decode AVIF or WebP. An element that
    cannot be read is ignored, which can only lead to the source's format.
    """
    if not auto_format or not accept:
        return ()
    weights = accepted_types(accept)
    return tuple(name for name in auto_format if weights.get(MEDIA_TYPES.get(name, ""), 0.0) > 0)


def accepted_types(accept: str) -> dict[str, float]:
    """Media type (lower case) -> q-value, for every readable element of ``accept``.

    A type listed twice keeps its lowest q-value: when a client contradicts
    itself, serving the source's format is the safe reading.
    """
    weights: dict[str, float] = {}
    for element in accept.split(","):
        media_type, *params = element.split(";")
        media_type = media_type.strip().lower()
        if media_type.count("/") != 1 or " " in media_type:
            continue
        weight = _weight(params)
        if weight is not None:
            weights[media_type] = min(weight, weights.get(media_type, weight))
    return weights


def _weight(params: Iterable[str]) -> float | None:
    """The ``q`` parameter (1 when absent); None when it is malformed."""
    for param in params:
        name, sep, value = param.partition("=")
        if name.strip().lower() != "q":
            continue
        value = value.strip()
        if not sep or not _QVALUE.match(value):
            return None
        return float(value)
    return 1.0


def variant_key(key: str, offers: Sequence[str]) -> str:
    """The front's cache key for one offer set.

    ``|`` cannot occur in an ``ImageRequest.key`` (it is percent-encoded
    there), so a variant never collides with another image's key.
    """
    if not offers:
        return key
    return key + "|" + ",".join(name.lower() for name in offers)
