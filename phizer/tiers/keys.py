"""Tier keys: versioned, and derived from everything that shapes the bytes.

A result's key hashes its size's whole definition (every ``SizeSpec``
field), the ``[properties]`` settings declared ``shapes_output`` (those
that change the bytes of an output image), the origins
and the request with its negotiated offers; an original's key hashes the
origins and the path. So a changed size, quality or origin never finds an
old entry, and two deployments with different origins never mix, even in
one Redis. Keys are short hex digests: valid memcached keys (at most 250
bytes, no spaces or control characters) and valid file names.

Bump ``KEY_VERSION`` whenever the output for the same inputs changes (an
encoder change, a different resize) so a fleet stops serving old bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from phizer.config.loader import Config, OriginSpec
from phizer.config.options import Settings, output_settings
from phizer.config.sizes import SizeSpec

KEY_VERSION = 2
RESULT = "r"
ORIGINAL = "o"
PURGED = "p"
_DIGEST_BYTES = 20


def digest(*parts: str) -> str:
    hasher = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    for part in parts:
        encoded = part.encode("utf-8", "surrogatepass")
        # Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        hasher.update(len(encoded).to_bytes(8, "big"))
        hasher.update(encoded)
    return hasher.hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def size_fingerprint(spec: SizeSpec, settings: Settings) -> str:
    """What makes one size's bytes: its definition and the settings that shape outputs."""
    definition = {"size": dataclasses.asdict(spec), "settings": output_settings(settings)}
    return digest(_canonical(definition))


def origins_fingerprint(master: OriginSpec | None, slaves: tuple[OriginSpec, ...]) -> str:
    """Where originals come from. Section names do not count; the slaves,
    asked all at once, count as a set."""

    def where(origin: OriginSpec) -> list[Any]:
        place = [origin.scheme, origin.host, origin.port, origin.root, origin.directory]
        return place + ([origin.bucket.location] if origin.bucket is not None else [])

    identity = {
        "master": where(master) if master is not None else None,
        "slaves": sorted(_canonical(where(slave)) for slave in slaves),
    }
    return digest(_canonical(identity))


class TierKeys:
    """Keys for one configuration; fingerprints are computed once."""

    def __init__(self, config: Config) -> None:
        self._sizes: Mapping[str, str] = {
            code: size_fingerprint(spec, config.settings) for code, spec in config.sizes.items()
        }
        self._origins = origins_fingerprint(config.master, config.slaves)

    def result(self, size: str, variant: str) -> str:
        """``variant``: the front's cache key (request key and offers, see
        ``negotiate.variant_key``) of an image of ``size``."""
        return self._key(RESULT, self._sizes[size], self._origins, variant)

    def original(self, path: str) -> str:
        return self._key(ORIGINAL, self._origins, path)

    def group(self, path: str) -> str:
        """The tombstone of a photo: when it was last purged."""
        return self._key(PURGED, self._origins, path)

    @staticmethod
    def _key(kind: str, *parts: str) -> str:
        return f"phizer{KEY_VERSION}{kind}-{digest(str(KEY_VERSION), kind, *parts)}"
