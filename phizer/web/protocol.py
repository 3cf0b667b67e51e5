"""The front-to-worker protocol: which worker, the URL it is asked, what it answers.

The front asks worker ``crc32(filename) % N`` (so every size of one
original is made where that original is cached) for the request's
canonical path, with the negotiated formats in the ``offers`` query
parameter. The worker answers the image, or an error status with a short
text body, and says how long its fetch and resize took in headers.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Sequence

FETCH_MS_HEADER = "X-Phizer-Fetch-Ms"
RESIZE_MS_HEADER = "X-Phizer-Resize-Ms"
# When the original an image was made from stops being fresh (Unix time),
# sent when original_ttl is set: no finished image outlives its original.
EXPIRES_HEADER = "X-Phizer-Expires"
# How the worker got the original (hit, miss, coalesced, decoded): for
# operators asking a worker directly; the front keeps its own cache result.
CACHE_HEADER = "X-Phizer-Cache"
# The worker URL's query parameter carrying the offer set.
OFFERS_PARAM = "offers"
WORKER_HOST = "127.0.0.1"


def worker_index(filename: str, num_workers: int) -> int:
    """The worker (0-based) that makes every size of ``filename``."""
    return zlib.crc32(filename.encode("utf-8")) % num_workers


def worker_urls(bind_port: int, num_workers: int) -> list[str]:
    """Worker i (1-based) listens on loopback at ``bind_port + i``."""
    return [f"http://{WORKER_HOST}:{bind_port + i}" for i in range(1, num_workers + 1)]


def worker_url(base_url: str, request_key: str, offers: Sequence[str]) -> str:
    """The URL asking the worker at ``base_url`` for ``request_key``."""
    return base_url + request_key + offers_query(offers)


def offers_query(offers: Sequence[str]) -> str:
    """The query string the front adds to a worker URL ("" for no offers)."""
    return f"?{OFFERS_PARAM}={','.join(offers)}" if offers else ""


def parse_offers(values: Iterable[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """The worker's reading of the ``offers`` parameter(s).

    Only names in ``allowed`` (the worker's own ``auto_format``) are kept, in
    that order; anything else is ignored, so no query can make a worker
    encode a format the configuration does not offer.
    """
    named = {item.strip().upper() for value in values for item in value.split(",")}
    return tuple(name for name in allowed if name in named)


def parse_ms(value: str | None) -> float | None:
    """A timing header's value; None when absent or not a number."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def entity_tag(digest: bytes) -> str:
    """The ETag of an image whose bytes have this 16-byte BLAKE2b ``digest``."""
    return '"' + digest.hex() + '"'


def strong_etag(data: bytes) -> str:
    """The ETag of an image: the front's, and a worker's for an original it
    serves untouched (the front passes that on before it has the bytes)."""
    return entity_tag(hashlib.blake2b(data, digest_size=16).digest())
