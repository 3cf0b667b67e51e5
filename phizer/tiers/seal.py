"""A keyed MAC on every value a tier holds, with ``[cache] secret``.

Whoever can write to a shared store (or a disk cache directory) could
otherwise put any bytes under any key. With a secret, each value is
written as ``PZS1`` + a 32-byte keyed BLAKE2b of the tier key and the
value + the value; one that does not verify reads as absent. The key is
part of the MAC, so a value cannot be moved to another key either; an
old value of the same key can still be put back (a purge's tombstone is
sealed too, and a removed tombstone brings back what it hid).
"""

from __future__ import annotations

import hashlib
import hmac

MAGIC = b"PZS1"
_MAC_BYTES = 32
_PERSON = b"phizer-tier"


class Seal:
    def __init__(self, secret: str) -> None:
        encoded = secret.encode("utf-8")
        # BLAKE2b takes keys up to 64 bytes; a longer secret is hashed to one.
        self._key = encoded if len(encoded) <= 64 else hashlib.blake2b(encoded).digest()

    def _mac(self, key: str, value: bytes) -> bytes:
        name = key.encode("utf-8")
        mac = hashlib.blake2b(key=self._key, digest_size=_MAC_BYTES, person=_PERSON)
        mac.update(len(name).to_bytes(8, "big"))  # so (key, value) splits one way only
        mac.update(name)
        mac.update(value)
        return mac.digest()

    def close(self, key: str, value: bytes) -> bytes:
        """``value`` as it is written under ``key``."""
        return MAGIC + self._mac(key, value) + value

    def open(self, key: str, sealed: bytes) -> bytes | None:
        """The value written under ``key``, or None when it was not sealed
        with this secret for this key (forged, damaged, or moved)."""
        head = len(MAGIC) + _MAC_BYTES
        if len(sealed) < head or not sealed.startswith(MAGIC):
            return None
        value = sealed[head:]
        if not hmac.compare_digest(sealed[len(MAGIC) : head], self._mac(key, value)):
            return None
        return value


def seal_for(secret: str | None) -> Seal | None:
    return Seal(secret) if secret else None
