"""Tier keys: versioned, and derived from everything that shapes the bytes.

A result's key hashes its size's whole definition (every ``SizeSpec``
field), the ``[properties]`` settings that change any output, the origins
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
from phizer.config.sizes import SizeSpec
from phizer.imaging.pipeline import OutputOptions

KEY_VERSION = 1
RESULT = "r"
ORIGINAL = "o"
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


def size_fingerprint(spec: SizeSpec, output: OutputOptions, max_dimension: int) -> str:
    """What makes one size's bytes: its definition and the settings it falls back to."""
    definition = {
        "size": dataclasses.asdict(spec),
        "output": dataclasses.asdict(output),
        # Decides whether the size is resized at all or served as the original.
        "max_dimension": max_dimension,
    }
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
        output = OutputOptions.from_settings(config.settings)
        max_dimension = config.settings.max_dimension
        self._sizes: Mapping[str, str] = {
            code: size_fingerprint(spec, output, max_dimension)
            for code, spec in config.sizes.items()
        }
        self._origins = origins_fingerprint(config.master, config.slaves)

    def result(self, size: str, variant: str) -> str:
        """``variant``: the front's cache key (request key and offers, see
        ``negotiate.variant_key``) of an image of ``size``."""
        return self._key(RESULT, self._sizes[size], self._origins, variant)

    def original(self, path: str) -> str:
        return self._key(ORIGINAL, self._origins, path)

    @staticmethod
    def _key(kind: str, *parts: str) -> str:
        return f"phizer{KEY_VERSION}{kind}-{digest(str(KEY_VERSION), kind, *parts)}"
