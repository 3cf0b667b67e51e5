"""What is read back from a tier is trusted only as far as it checks out:
image signatures (phizer/imaging/signatures.py), result records, and the
``[cache] secret`` seal (phizer/tiers/seal.py) through the tier chain."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from phizer.config.loader import load_config
from phizer.errors import ConfigError
from phizer.imaging.formats import CONTENT_TYPES
from phizer.imaging.signatures import IMAGE_TYPES, looks_like
from phizer.report import render
from phizer.tiers.chain import TierChain
from phizer.tiers.guard import Guard
from phizer.tiers.records import Envelope, ResultRecord, pack_result, unpack_result, wrap
from phizer.tiers.seal import Seal
from phizer.web.metrics import ProcessMetrics
from tests.metrics_support import samples
from tests.test_tiers import FakeTier

SECRET = "correct horse battery staple"
HOSTILE = b"<html><script>alert(document.cookie)</script></html>"


def encoded(image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, image_format)
    return buffer.getvalue()


@pytest.mark.parametrize("image_format", sorted(CONTENT_TYPES))
def test_every_format_phizer_writes_is_recognised_as_itself_only(image_format: str) -> None:
    data = encoded(image_format)
    for name, content_type in CONTENT_TYPES.items():
        assert looks_like(content_type, data) == (name == image_format), content_type


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/html", HOSTILE),
        ("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>"),
        ("image/jpeg", HOSTILE),
        ("image/jpeg", b""),
        ("image/png", b"\x89PNG"),
        ("image/webp", b"RIFF\0\0\0\0WAVE"),
        ("image/avif", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"),
        ("application/octet-stream", b"\xff\xd8\xff\xe0"),
    ],
)
def test_what_is_not_an_image_phizer_writes_is_refused(content_type: str, data: bytes) -> None:
    assert not looks_like(content_type, data)


def test_the_allow_list_is_the_types_phizer_writes() -> None:
    assert set(CONTENT_TYPES.values()) == IMAGE_TYPES
    assert not any(kind.startswith("text/") or "svg" in kind for kind in IMAGE_TYPES)


def test_a_result_record_must_be_an_image_of_its_type() -> None:
    jpeg = encoded("JPEG")
    record = unpack_result(pack_result("image/jpeg", jpeg))
    assert record == ResultRecord("image/jpeg", jpeg)
    assert unpack_result(pack_result("text/html", HOSTILE)) is None
    assert unpack_result(pack_result("image/jpeg", HOSTILE)) is None
    assert unpack_result(pack_result("image/png", jpeg)) is None


def test_a_seal_opens_only_with_its_secret_and_key() -> None:
    seal = Seal(SECRET)
    sealed = seal.close("phizer2r-abc", b"value")
    assert seal.open("phizer2r-abc", sealed) == b"value"
    assert Seal(SECRET + "!").open("phizer2r-abc", sealed) is None
    assert seal.open("phizer2r-abd", sealed) is None  # moved to another key
    assert seal.open("phizer2r-abc", b"value") is None  # never sealed
    for index in range(len(sealed)):
        flipped = bytearray(sealed)
        flipped[index] ^= 0x01
        assert seal.open("phizer2r-abc", bytes(flipped)) is None, index
    assert seal.open("phizer2r-abc", sealed + b"x") is None
    long_secret = Seal("s" * 200)  # longer than a BLAKE2b key
    assert long_secret.open("k", long_secret.close("k", b"v")) == b"v"
    assert Seal("s" * 199 + "t").open("k", long_secret.close("k", b"v")) is None


def read_result(envelope: Envelope) -> ResultRecord | None:
    return unpack_result(envelope.payload)


def rejected(metrics: ProcessMetrics) -> float:
    found = samples(metrics.exposition().decode())
    return found.get(("phizer_tier_rejected_total", (("tier", "fake"),)), 0.0)


async def settle(chain: TierChain) -> None:
    while any(guard.pending for guard in chain.guards):
        await asyncio.sleep(0)  # the background writes finish


@pytest.mark.parametrize("seal", [None, Seal(SECRET)], ids=["no-secret", "secret"])
def test_a_planted_html_record_is_a_rejected_miss(seal: Seal | None) -> None:
    metrics, store = ProcessMetrics({}), FakeTier()
    chain = TierChain([Guard(store, metrics.tiers, backstop=5.0)], seal=seal)
    planted = wrap(pack_result("text/html", HOSTILE), 1.0)
    store.store["k"] = seal.close("k", planted) if seal is not None else planted

    async def run() -> None:
        assert await chain.get("k", read_result, "g") is None
        chain.put_later("k", pack_result("image/png", encoded("PNG")))
        await settle(chain)
        found = await chain.get("k", read_result, "g")
        assert found is not None and found.value.content_type == "image/png"

    asyncio.run(run())
    assert rejected(metrics) == 1


def test_with_a_secret_an_unsealed_image_is_a_rejected_miss() -> None:
    metrics, store = ProcessMetrics({}), FakeTier()
    sealed = TierChain([Guard(store, metrics.tiers, backstop=5.0)], seal=Seal(SECRET))
    plain = TierChain([Guard(store, metrics.tiers, backstop=5.0)])
    other = TierChain([Guard(store, metrics.tiers, backstop=5.0)], seal=Seal("another secret!!"))
    image = pack_result("image/jpeg", encoded("JPEG"))

    async def run() -> None:
        for writer in (plain, other):
            writer.put_later("k", image)
            await settle(writer)
            assert await sealed.get("k", read_result, "g") is None
            assert await writer.get("k", read_result, "g") is not None
        sealed.put_later("k", image)
        await settle(sealed)
        assert await sealed.get("k", read_result, "g") is not None
        store.store["moved"] = store.store["k"]  # a sealed value under another key
        assert await sealed.get("moved", read_result, "g") is None

    asyncio.run(run())
    assert rejected(metrics) == 3


def test_purges_are_sealed_and_a_forged_one_is_ignored() -> None:
    clock_now = [100.0]
    metrics, store = ProcessMetrics({}), FakeTier()
    chain = TierChain(
        [Guard(store, metrics.tiers, backstop=5.0)], clock=lambda: clock_now[0], seal=Seal(SECRET)
    )
    plain = TierChain([Guard(store, metrics.tiers, backstop=5.0)], clock=lambda: clock_now[0])
    image = pack_result("image/jpeg", encoded("JPEG"))

    async def run() -> None:
        chain.put_later("k", image)
        await settle(chain)
        clock_now[0] += 1
        await plain.purge("g")  # written without the secret: not believed
        assert await chain.get("k", read_result, "g") is not None
        await chain.purge("g")
        assert await chain.get("k", read_result, "g") is None

    asyncio.run(run())


def write_config(tmp_path: Path, cache: str) -> Path:
    path = tmp_path / "phizer.conf"
    path.write_text(f"[master]\nhost = localhost\n\n[sizes]\ns100 = 100x100\n\n[cache]\n{cache}\n")
    return path


def test_the_secret_is_read_and_never_shown(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"disk_cache_dir = cache\nsecret = {SECRET}")
    config = load_config(str(path))
    assert config.cache.secret == SECRET
    report = render(config, str(path))
    assert "secret: set" in report
    assert SECRET not in report
    bare = load_config(str(write_config(tmp_path, "disk_cache_dir = cache")))
    assert "secret: none" in render(bare, str(path))


def test_a_short_secret_stops_phizer_without_repeating_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(str(write_config(tmp_path, "secret = hunter2")))
    assert "secret" in str(caught.value) and "16 characters" in str(caught.value)
    assert "hunter2" not in str(caught.value)
