"""End-to-end: records planted in a real Redis and in the disk tier are not served.

The front's memory cache is off (``resized_cache_size = 0``), so every
request reads the tier; whoever can write to it replaces the finished
image's record, and the next request must still get the right image.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from PIL import Image

from phizer.config.loader import load_config
from phizer.tiers.disk import RESULTS, pack_entry, unpack_entry
from phizer.tiers.keys import TierKeys
from phizer.tiers.records import pack_result, wrap
from phizer.web.urls import parse_request_path
from tests.e2e_support import PhizerProcess, Response, http_get, serving_origin, wait_until
from tests.imagetools import decode, encode
from tests.metrics_support import samples
from tests.services import redis_service, running

SECRET = "a long enough secret for the tests"
PHOTO = encode(Image.new("RGB", (400, 300), (220, 20, 20)), "JPEG", quality=90)
FORGED = encode(Image.new("RGB", (60, 60), (20, 20, 220)), "JPEG", quality=90)
HOSTILE = b"<html><script>alert(document.cookie)</script></html>"
PATH = "/s100/p.jpg"
EXPECTED_SIZE = (100, 75)


class Store:
    """One tier as an attacker reaches it."""

    def __init__(
        self,
        read: Callable[[str], bytes | None],
        write: Callable[[str, bytes], None],
    ) -> None:
        self.read = read
        self.write = write
        self.planted = b""

    def plant(self, key: str, payload: bytes) -> None:
        """The record under ``key`` replaced by ``payload`` in a fresh envelope."""
        self.planted = wrap(payload, time.time())
        self.write(key, self.planted)

    def replaced(self, key: str) -> bool:
        """Whether phizer has written a record of its own over the planted one."""
        return self.read(key) not in (None, self.planted)


@contextlib.contextmanager
def redis_store(workdir: Path) -> Iterator[tuple[dict[str, str], Store]]:
    with running(redis_service(workdir)) as service:
        client = redis.Redis.from_url(service.url)
        try:
            store = Store(client.get, lambda key, value: client.set(key, value) and None)
            yield {"shared": service.url}, store
        finally:
            client.close()


@contextlib.contextmanager
def disk_store(workdir: Path) -> Iterator[tuple[dict[str, str], Store]]:
    root = workdir / "disk-cache"
    results = root / RESULTS

    def read(key: str) -> bytes | None:
        try:
            entry = unpack_entry((results / key[-1] / key).read_bytes())
        except FileNotFoundError:
            return None
        return entry[0] if entry is not None else None

    def write(key: str, value: bytes) -> None:
        # The disk tier's own checksum is no defence: it is recomputed.
        (results / key[-1] / key).write_bytes(pack_entry(value, time.time()))

    yield {"disk_cache_dir": str(root)}, Store(read, write)


STORES = {"redis": redis_store, "disk": disk_store}


def is_the_photo(response: Response) -> bool:
    if response.status != 200 or response.header("Content-Type") != "image/jpeg":
        return False
    image = decode(response.body)
    red, _, blue = image.convert("RGB").getpixel((50, 37))
    return image.size == EXPECTED_SIZE and red > 150 and blue < 100


@pytest.mark.parametrize("secret", [None, SECRET], ids=["no-secret", "secret"])
@pytest.mark.parametrize("tier", sorted(STORES))
def test_a_planted_record_is_never_served(tmp_path: Path, tier: str, secret: str | None) -> None:
    cache = {} if secret is None else {"secret": secret}
    with (
        serving_origin(tmp_path / "origin", {"p.jpg": PHOTO}) as origin,
        STORES[tier](tmp_path) as (options, store),
    ):
        phizer = PhizerProcess(
            tmp_path / "phizer",
            origin,
            properties={"resized_cache_size": 0},
            sections={"cache": {**options, **cache}},
            num_workers=1,
        )
        try:
            phizer.start()
            # Where the front keeps this image: no Accept header, no variant.
            request = parse_request_path(PATH)
            key = TierKeys(load_config(str(phizer.config_path))).result(request.size, request.key)
            assert is_the_photo(http_get(phizer.port, PATH))
            wait_until(lambda: store.read(key), 10, f"the image was not written to the {tier} tier")
            forgeries = [
                pack_result("text/html", HOSTILE),
                pack_result("image/jpeg", HOSTILE),  # an allowed type over other bytes
                pack_result("image/svg+xml", b"<svg onload='alert(1)'/>"),
            ]
            for forged in forgeries:
                store.plant(key, forged)
                response = http_get(phizer.port, PATH)
                assert is_the_photo(response), (forged[:30], response.status, response.body[:80])
                # Rejected, so the front wrote its own record back over it.
                wait_until(lambda: store.replaced(key), 10, "the good record was not written back")
            # A real image of the wrong photo: what only the secret can tell.
            store.plant(key, pack_result("image/jpeg", FORGED))
            planted = http_get(phizer.port, PATH)
            if secret is None:
                assert planted.body == FORGED  # why [cache] secret exists
            else:
                assert is_the_photo(planted)
            found = samples(http_get(phizer.port, "/_metrics").body.decode())
            tier_name = "shared" if tier == "redis" else "disk"
            counted = sum(
                value
                for (name, labels), value in found.items()
                if name == "phizer_tier_rejected_total" and ("tier", tier_name) in labels
            )
            assert counted >= len(forgeries) + (secret is not None)
        finally:
            phizer.stop()
        assert "Traceback" not in phizer.log_text()
