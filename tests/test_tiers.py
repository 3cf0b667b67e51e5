"""The cache tiers (phizer/tiers): keys, the disk tier, the guard, and the
Redis and memcached tiers against real servers started by tests/services.py."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

from phizer import report as checkconfig
from phizer.config.addresses import MEMCACHED, REDIS, SharedAddress, parse_shared_address
from phizer.config.loader import CacheTiers, Config, OriginSpec, Settings, load_config
from phizer.config.sizes import parse_size_spec
from phizer.errors import ConfigError
from phizer.tiers import disk as disk_module
from phizer.tiers import keys as keys_module
from phizer.tiers.base import Offloaded, Tier, TierPaused
from phizer.tiers.chain import TierChain, open_tiers
from phizer.tiers.disk import (
    BUCKETS,
    HEADER,
    ORIGINALS,
    RESULTS,
    TEMP_MAX_AGE,
    TEMP_PREFIX,
    DiskTier,
    pack_entry,
    unpack_entry,
)
from phizer.tiers.guard import Guard
from phizer.tiers.keys import TierKeys
from phizer.tiers.memcached import MemcachedTier
from phizer.tiers.records import (
    Envelope,
    ResultRecord,
    pack_result,
    purged_at,
    unpack_result,
    unwrap,
    wrap,
)
from phizer.tiers.redis import RedisTier
from phizer.web.metrics import ProcessMetrics
from tests.metrics_support import samples
from tests.services import (
    ServiceProcess,
    memcached_service,
    redis_service,
    running,
    silent_port,
)

SIZES = {"s100": "100x100", "sq150": "150 square", "card": "400x300 landscape format=webp"}
MASTER = OriginSpec("master", host="images.example", port=8080, root="/photos/")


def config(
    sizes: dict[str, str] | None = None,
    master: OriginSpec | None = MASTER,
    slaves: tuple[OriginSpec, ...] = (),
    cache: CacheTiers | None = None,
    **settings: object,
) -> Config:
    specs = {code: parse_size_spec(code, raw)[0] for code, raw in (sizes or SIZES).items()}
    return Config(
        Settings(**settings),  # type: ignore[arg-type]
        master,
        slaves,
        MappingProxyType(specs),
        cache=cache or CacheTiers(),
    )


def key_of(cfg: Config, size: str = "s100", variant: str = "/s100/a/photo.jpg") -> str:
    return TierKeys(cfg).result(size, variant)


# --------------------------------------------------------------------------
# Keys


def test_same_definition_same_key() -> None:
    assert key_of(config()) == key_of(config())
    assert TierKeys(config()).original("a/b.jpg") == TierKeys(config()).original("a/b.jpg")


@pytest.mark.parametrize(
    "definition",
    [
        "101x100",
        "100x101",
        "100x100 square",
        "100x100 quality=70",
        "100x100 format=webp",
        "100x100 upscale=false",
        "100x100 progressive=true",
        "100x100 background=#000000",
    ],
)
def test_changing_a_size_definition_changes_its_key(definition: str) -> None:
    changed = config({**SIZES, "s100": definition})
    assert key_of(changed) != key_of(config())
    # the other sizes keep their entries
    assert key_of(changed, "sq150", "/sq150/x.jpg") == key_of(config(), "sq150", "/sq150/x.jpg")


@pytest.mark.parametrize(
    "setting",
    [
        {"image_quality": 80},
        {"canvas_color": (0, 0, 0)},
        {"keep_icc": False},
        {"strip_metadata": False},
        {"progressive": True},
        {"animated": True},
        {"max_frames": 10},
        {"webp_quality": 70},
        {"avif_quality": 50},
        {"max_dimension": 90},
    ],
)
def test_output_settings_change_result_keys(setting: dict[str, object]) -> None:
    assert key_of(config(**setting)) != key_of(config())


def test_settings_that_shape_no_bytes_keep_the_keys() -> None:
    same = config(bind_port=9999, num_workers=7, max_age=60, resized_cache_size=1)
    assert key_of(same) == key_of(config())


def test_request_and_offers_are_part_of_the_key() -> None:
    keys = TierKeys(config())
    variants = [
        "/s100/a/photo.jpg",
        "/s100/a/photo2.jpg",
        "/s100/0x0/500x500/a/photo.jpg",
        "/s100/a/photo.jpg|webp",
        "/s100/a/photo.jpg|avif,webp",
    ]
    assert len({keys.result("s100", variant) for variant in variants}) == len(variants)


def test_origins_identity_separates_deployments() -> None:
    other = OriginSpec("master", host="images.example", port=8081, root="/photos/")
    for made in (lambda c: TierKeys(c).original("a.jpg"), key_of):
        assert made(config(master=other)) != made(config())
        # the section's name is not part of the identity
        assert made(config(master=dataclasses.replace(MASTER, name="Master"))) == made(config())
    one = OriginSpec("slave-1", host="a.example")
    two = OriginSpec("slave-2", host="b.example")
    assert key_of(config(slaves=(one, two))) == key_of(config(slaves=(two, one)))
    assert key_of(config(slaves=(one,))) != key_of(config(slaves=(one, two)))


def test_keys_carry_the_version_and_suit_memcached_and_file_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    long_variant = "/s100/" + "deep/" * 400 + "photo with spaces.jpg|avif,webp"
    keys = [key_of(config(), "s100", long_variant), TierKeys(config()).original("x" * 3000)]
    for key in keys:
        assert len(key) <= 250
        assert all(33 <= ord(c) < 127 for c in key)
        assert disk_module._KEY.match(key)
    before = key_of(config())
    monkeypatch.setattr(keys_module, "KEY_VERSION", keys_module.KEY_VERSION + 1)
    assert key_of(config()) != before


def test_result_records_round_trip_and_refuse_garbage() -> None:
    packed = pack_result("image/webp", b"RIFF....WEBP")
    record = unpack_result(packed)
    assert record is not None
    assert (record.content_type, record.data) == ("image/webp", b"RIFF....WEBP")
    for bad in (b"", b"\xff\xd8\xff", packed[:5], b"PZR1 image/jpeg", b"PZR1 no type\nxx"):
        assert unpack_result(bad) is None


# --------------------------------------------------------------------------
# The [cache] section


def write_config(tmp_path: Path, cache: str) -> Path:
    path = tmp_path / "phizer.conf"
    text = "[master]\nhost = localhost\n\n[sizes]\ns100 = 100x100\n\n" + textwrap.dedent(cache)
    path.write_text(text)
    return path


def test_cache_section_is_parsed(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        [cache]
        shared = redis://:s3cret@cache.internal:6380/2
        shared_ttl = 3600
        shared_timeout = 0.05
        disk_cache_dir = var/cache   # relative to this file
        disk_cache_size = 2 GiB
        """,
    )
    loaded = load_config(str(path))
    cache = loaded.cache
    assert cache.shared == SharedAddress(REDIS, "cache.internal", 6380, 2, "s3cret")
    assert (cache.shared_ttl, cache.shared_timeout) == (3600, 0.05)
    assert cache.disk_cache_dir == str((tmp_path / "var" / "cache").resolve())
    assert (tmp_path / "var" / "cache").is_dir()  # created
    assert cache.disk_cache_size == 2 * 1024**3
    printed = checkconfig.render(loaded, str(path))
    assert f"disk: {cache.disk_cache_dir}, at most 2 GiB" in printed
    assert "shared: redis://:***@cache.internal:6380/2" in printed
    assert "s3cret" not in printed


def test_without_cache_section_there_are_no_tiers(tmp_path: Path) -> None:
    loaded = load_config(str(write_config(tmp_path, "")))
    assert loaded.cache == CacheTiers()
    assert not open_tiers(loaded, RESULTS, ProcessMetrics({}).tiers)
    assert "none (memory only)" in checkconfig.render(loaded, "x.conf")


@pytest.mark.parametrize(
    "url,expected",
    [
        ("memcached://10.0.0.5:11212", SharedAddress(MEMCACHED, "10.0.0.5", 11212)),
        ("memcached://cache", SharedAddress(MEMCACHED, "cache", 11211)),
        ("redis://cache", SharedAddress(REDIS, "cache", 6379)),
        ("REDIS://[::1]:7000/3", SharedAddress(REDIS, "::1", 7000, 3)),
    ],
)
def test_shared_addresses(url: str, expected: SharedAddress) -> None:
    assert parse_shared_address(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://cache:6379",
        "cache:6379",
        "redis://",
        "redis://cache:99999",
        "redis://cache:0",
        "redis://cache/db",
        "memcached://cache:11211/1",
        "redis://cache?x=1",
        "s3://bucket",
    ],
)
def test_bad_shared_url_is_a_config_error_naming_it(tmp_path: Path, url: str) -> None:
    path = write_config(tmp_path, f"[cache]\nshared = {url}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(str(path))
    assert "[cache] shared" in str(raised.value)
    assert repr(url) in str(raised.value)


def test_cache_section_errors_and_warnings(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for text, message in [
        (f"disk_cache_dir = {blocker}/sub", "cannot create it"),
        ("shared_timeout = 30", "must be at most 10"),
        ("disk_cache_size = lots", "disk_cache_size"),
        ("shared_ttl = -1", "must be at least 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(str(write_config(tmp_path, f"[cache]\n{text}\n")))
    loaded = load_config(str(write_config(tmp_path, "[cache]\nsharde = redis://x\n")))
    assert "ignoring unknown option [cache] sharde" in loaded.warnings


# --------------------------------------------------------------------------
# The disk tier


def key_in_bucket(bucket: str, n: int) -> str:
    return f"phizer1r-test{n:06d}{bucket}"


def files_in(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(TEMP_PREFIX)]


def test_disk_put_get_and_restart(tmp_path: Path) -> None:
    tier = DiskTier(str(tmp_path), RESULTS, 16 * 1024 * 1024)
    key = TierKeys(config()).result("s100", "/s100/a.jpg")
    assert tier.read(key) is None
    tier.write(key, b"payload")
    assert tier.read(key) == b"payload"
    (entry,) = files_in(tmp_path)
    assert entry.parent.parent.name == RESULTS and entry.name == key
    # a new process (a restart) finds it; the other kind does not
    assert DiskTier(str(tmp_path), RESULTS, 16 * 1024 * 1024).read(key) == b"payload"
    assert DiskTier(str(tmp_path), ORIGINALS, 16 * 1024 * 1024).read(key) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda blob: blob[: len(blob) // 2],  # torn
        lambda blob: blob[: HEADER.size - 1],  # torn inside the header
        lambda blob: blob[:-1] + bytes([blob[-1] ^ 1]),  # one bit flipped
        lambda blob: b"\0" * len(blob),  # never-written pages after a power cut
        lambda blob: blob + b"x",  # longer than its header says
        lambda blob: b"",
    ],
)
def test_damaged_entry_reads_as_absent_and_is_deleted(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    tier = DiskTier(str(tmp_path), ORIGINALS, 16 * 1024 * 1024)
    key = key_in_bucket("a", 1)
    tier.write(key, os.urandom(5000))
    (entry,) = files_in(tmp_path)
    entry.write_bytes(damage(entry.read_bytes()))
    assert tier.read(key) is None
    assert not entry.exists()
    assert tier.discarded == 1


def test_expired_entry_reads_as_absent(tmp_path: Path) -> None:
    now = [1000.0]
    tier = DiskTier(str(tmp_path), RESULTS, 1 << 24, ttl=60, clock=lambda: now[0])
    tier.write(key_in_bucket("b", 1), b"x")
    now[0] += 59
    assert tier.read(key_in_bucket("b", 1)) == b"x"
    now[0] += 2
    assert tier.read(key_in_bucket("b", 1)) is None


def test_disk_stays_within_its_size_and_evicts_least_recently_used(tmp_path: Path) -> None:
    capacity = BUCKETS * 40_000  # 40 kB per bucket
    tier = DiskTier(str(tmp_path), RESULTS, capacity)
    value = b"v" * (5_000 - HEADER.size)  # 5 kB files
    keys = [key_in_bucket("c", n) for n in range(6)]
    for age, key in enumerate(keys):
        tier.write(key, value)
        path = tmp_path / RESULTS / "c" / key
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    assert tier.read(keys[0]) == value  # now the most recently used
    for n in range(6, 10):  # 10 files of 5 kB: over the bucket's 40 kB once
        tier.write(key_in_bucket("c", n), value)
    survivors = {p.name for p in files_in(tmp_path)}
    assert keys[0] in survivors
    assert keys[1] not in survivors
    assert tier.evictions > 0
    for n in range(10, 60):
        tier.write(key_in_bucket("c", n), value)
        held = sum(p.stat().st_size for p in files_in(tmp_path))
        assert held <= capacity // BUCKETS, held


def test_eviction_counts_every_kind_in_the_bucket(tmp_path: Path) -> None:
    capacity = BUCKETS * 20_000
    results = DiskTier(str(tmp_path), RESULTS, capacity)
    originals = DiskTier(str(tmp_path), ORIGINALS, capacity)
    value = b"v" * 4_000
    for n in range(12):
        (results if n % 2 else originals).write(key_in_bucket("d", n), value)
    assert sum(p.stat().st_size for p in files_in(tmp_path)) <= 20_000


def test_too_large_for_the_disk_is_not_kept(tmp_path: Path) -> None:
    tier = DiskTier(str(tmp_path), RESULTS, BUCKETS * 10_000)
    assert tier.max_value is not None and tier.max_value < 10_000
    metrics = ProcessMetrics({})
    guard = Guard(tier, metrics.tiers, backstop=5.0)

    async def run() -> None:
        guard.put_later(key_in_bucket("e", 1), b"x" * (tier.max_value + 1))
        guard.put_later(key_in_bucket("e", 2), b"x" * tier.max_value)
        await guard.close(5.0)

    asyncio.run(run())
    assert [p.name for p in files_in(tmp_path)] == [key_in_bucket("e", 2)]
    found = samples(metrics.exposition().decode())
    assert found[("phizer_tier_writes_dropped_total", (("reason", "too_large"), ("tier", "disk")))]


def test_stale_temporary_files_are_removed_and_fresh_ones_left(tmp_path: Path) -> None:
    tier = DiskTier(str(tmp_path), RESULTS, 1 << 24)
    bucket = tmp_path / RESULTS / "f"
    bucket.mkdir(parents=True)
    stale, fresh = bucket / f"{TEMP_PREFIX}old", bucket / f"{TEMP_PREFIX}new"
    for path in (stale, fresh):
        path.write_bytes(b"partial")
    old = time.time() - TEMP_MAX_AGE - 10
    os.utime(stale, (old, old))
    tier.write(key_in_bucket("f", 1), b"x")  # the first write to a bucket scans it
    assert not stale.exists() and fresh.exists()
    assert tier.read(key_in_bucket("f", 1)) == b"x"


def _hammer(root: str, capacity: int, writer: int, rounds: int) -> None:
    tier = DiskTier(root, ORIGINALS if writer % 2 else RESULTS, capacity)
    for n in range(rounds):
        key = key_in_bucket("0123"[n % 4], n % 25)  # shared keys: same files rewritten
        value = bytes([writer]) * (1_000 + 37 * ((n * 7 + writer) % 50))
        tier.write(key, value)
        got = tier.read(key_in_bucket("0123"[(n + 1) % 4], (n + 3) % 25))
        assert got is None or len(set(got)) == 1, "a reader saw a mixed entry"


def test_concurrent_writers_never_corrupt_and_stay_bounded(tmp_path: Path) -> None:
    capacity = BUCKETS * 30_000
    writers = 4
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(target=_hammer, args=(str(tmp_path), capacity, w, 300))
        for w in range(writers)
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    for path in files_in(tmp_path):
        entry = unpack_entry(path.read_bytes())
        assert entry is not None, path
        assert len(set(entry[0])) == 1
    for bucket in "0123":
        held = sum(p.stat().st_size for p in files_in(tmp_path) if p.parent.name == bucket)
        # each writer may add its 5% slack before it rescans
        assert held <= capacity // BUCKETS * (1 + 0.05 * writers) + 3_000, (bucket, held)
    assert not [p for p in tmp_path.rglob(f"{TEMP_PREFIX}*")]


def test_entry_format_is_checked(tmp_path: Path) -> None:
    blob = pack_entry(b"hello", 12.5)
    assert unpack_entry(blob) == (b"hello", 12.5)
    assert unpack_entry(b"XXXX" + blob[4:]) is None


# --------------------------------------------------------------------------
# The guard, with a tier whose behaviour each test scripts


class FakeTier:
    name = "fake"
    description = "fake tier"

    def __init__(self) -> None:
        self.max_value: int | None = None
        self.failing = False
        self.store: dict[str, bytes] = {}
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.held_until = 0.0
        self.closed = False

    async def get(self, key: str) -> bytes | None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise ConnectionError("refused")
        return self.store.get(key)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        first = await self.get(keys[0])
        return [first, *(self.store.get(key) for key in keys[1:])]

    async def put(self, key: str, value: bytes) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise OSError(28, "No space left on device")
        self.store[key] = value

    def hold(self, until: float) -> None:
        self.held_until = until

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def guarded() -> Iterator[tuple[Guard, FakeTier, Clock, ProcessMetrics]]:
    tier, clock, metrics = FakeTier(), Clock(), ProcessMetrics({})
    yield Guard(tier, metrics.tiers, backstop=5.0, clock=clock), tier, clock, metrics


def tier_sample(metrics: ProcessMetrics, name: str, **labels: str) -> float:
    found = samples(metrics.exposition().decode())
    return found.get((name, tuple(sorted({"tier": "fake", **labels}.items()))), 0.0)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "phizer.tiers"]


def test_failure_is_a_miss_then_bypass_with_back_off(
    guarded: tuple[Guard, FakeTier, Clock, ProcessMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    guard, tier, clock, metrics = guarded
    caplog.set_level(logging.WARNING, "phizer.tiers")

    async def run() -> None:
        tier.store["k"] = b"v"
        assert await guard.get("k") == b"v"
        tier.failing = True
        assert await guard.get("k") is None
        assert guard.bypassed() and tier.held_until == clock.now + 1.0
        calls = tier.calls
        assert await guard.get("k") is None  # bypassed: not even asked
        assert tier.calls == calls
        backoffs = []
        for _ in range(7):
            clock.now = tier.held_until  # the bypass ends; the next call probes
            assert not guard.bypassed()
            assert await guard.get("k") is None
            backoffs.append(tier.held_until - clock.now)
        assert backoffs == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
        assert tier_sample(metrics, "phizer_tier_bypassed") == 1
        tier.failing = False
        clock.now = tier.held_until
        assert await guard.get("k") == b"v"
        assert tier_sample(metrics, "phizer_tier_bypassed") == 0

    asyncio.run(run())
    messages = warnings_of(caplog)
    assert len(messages) == 2, messages  # one for the incident, one when it is over
    assert "fake tier failed (get: ConnectionError: refused)" in messages[0]
    assert "fake tier answers again" in messages[1]
    assert tier_sample(metrics, "phizer_tier_errors_total") == 8
    assert tier_sample(metrics, "phizer_tier_skipped_total") == 1
    assert tier_sample(metrics, "phizer_tier_hits_total") == 2


def test_each_incident_is_logged_once(
    guarded: tuple[Guard, FakeTier, Clock, ProcessMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    guard, tier, clock, _ = guarded
    caplog.set_level(logging.WARNING, "phizer.tiers")

    async def incident() -> None:
        tier.failing = True
        for _ in range(3):
            await guard.get("k")
            clock.now += 100
        tier.failing = False
        await guard.get("k")
        clock.now += 100

    async def run() -> None:
        await incident()
        await incident()

    asyncio.run(run())
    messages = warnings_of(caplog)
    assert [m.split()[2] for m in messages] == ["failed", "answers", "failed", "answers"]


def test_calls_failing_together_double_the_back_off_once(
    guarded: tuple[Guard, FakeTier, Clock, ProcessMetrics],
) -> None:
    guard, tier, clock, metrics = guarded

    async def run() -> None:
        tier.gate = asyncio.Event()
        tier.failing = True
        calls = [asyncio.ensure_future(guard.get(f"k{n}")) for n in range(5)]
        await asyncio.sleep(0)
        tier.gate.set()
        assert await asyncio.gather(*calls) == [None] * 5
        assert tier.held_until == clock.now + 1.0

    asyncio.run(run())
    assert tier_sample(metrics, "phizer_tier_errors_total") == 5


def test_a_success_started_before_the_failure_does_not_end_the_incident(
    guarded: tuple[Guard, FakeTier, Clock, ProcessMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    guard, tier, clock, _ = guarded
    caplog.set_level(logging.WARNING, "phizer.tiers")

    async def run() -> None:
        tier.gate = asyncio.Event()
        slow = asyncio.ensure_future(guard.get("k"))  # starts while healthy
        await asyncio.sleep(0)
        tier.gate.set()
        tier.gate = None
        tier.failing = True
        clock.now += 0.5
        await guard.get("k")  # fails: the incident starts
        tier.failing = False
        await slow  # succeeds, but it was asked before the failure

    asyncio.run(run())
    assert len(warnings_of(caplog)) == 1


def test_a_full_disk_stays_an_incident_while_reads_work(
    guarded: tuple[Guard, FakeTier, Clock, ProcessMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    guard, tier, clock, metrics = guarded
    caplog.set_level(logging.WARNING, "phizer.tiers")

    async def run() -> None:
        tier.failing = True
        guard.put_later("a", b"1")
        await guard.close(1.0)
        tier.failing = False
        for _ in range(3):
            clock.now += 60
            await guard.get("a")  # reads work; the writes' incident goes on
        assert len(warnings_of(caplog)) == 1
        guard.put_later("b", b"2")
        await guard.close(1.0)

    asyncio.run(run())
    messages = warnings_of(caplog)
    assert "(put: OSError: [Errno 28] No space left on device)" in messages[0]
    assert "answers again" in messages[1] and len(messages) == 2
    assert tier_sample(metrics, "phizer_tier_writes_total") == 1


def test_write_backs_are_bounded_and_never_awaited_by_the_caller(
    guarded: tuple[Guard, FakeTier, Clock, ProcessMetrics],
) -> None:
    guard, tier, _, metrics = guarded
    guard.pending_limit = 4

    async def run() -> None:
        tier.gate = asyncio.Event()
        for n in range(10):
            guard.put_later(f"k{n}", b"v")  # returns at once: nothing awaited
        assert guard.pending == 4
        await asyncio.sleep(0)
        assert tier.store == {}
        tier.gate.set()
        await guard.close(5.0)
        assert sorted(tier.store) == ["k0", "k1", "k2", "k3"]
        assert tier.closed

    asyncio.run(run())
    assert tier_sample(metrics, "phizer_tier_writes_dropped_total", reason="busy") == 6
    assert tier_sample(metrics, "phizer_tier_writes_total") == 4


def test_close_cancels_writes_that_do_not_finish_in_time(
    guarded: tuple[Guard, FakeTier, Clock, ProcessMetrics],
) -> None:
    guard, tier, _, _ = guarded

    async def run() -> None:
        tier.gate = asyncio.Event()  # never set: a hung store
        guard.put_later("k", b"v")
        started = time.monotonic()
        await guard.close(0.1)
        assert time.monotonic() - started < 2.0
        assert guard.pending == 0 and tier.closed

    asyncio.run(run())


def test_backstop_bounds_a_hung_call() -> None:
    tier, metrics = FakeTier(), ProcessMetrics({})
    guard = Guard(tier, metrics.tiers, backstop=0.05)

    async def run() -> None:
        tier.gate = asyncio.Event()
        started = time.monotonic()
        assert await guard.get("k") is None
        assert time.monotonic() - started < 1.0
        assert guard.bypassed()

    asyncio.run(run())


def test_calls_queued_while_held_are_not_tried() -> None:
    pool = Offloaded("test", 1, 1)
    running = threading.Event()
    release = threading.Event()
    tried: list[int] = []

    def block() -> None:
        running.set()
        release.wait(5)

    async def run() -> None:
        blocker = asyncio.ensure_future(pool.call(block))
        queued = asyncio.ensure_future(pool.call(tried.append, 1))
        # The only read thread is busy with the blocker: the other call waits.
        assert await asyncio.to_thread(running.wait, 5)
        pool.hold(time.monotonic() + 60)
        release.set()
        await blocker
        with pytest.raises(TierPaused):
            await queued

    try:
        asyncio.run(run())
    finally:
        pool.close()
    assert tried == []


def read_result(envelope: Envelope) -> ResultRecord | None:
    return unpack_result(envelope.payload)


GROUP = key_in_bucket("7", 9)
PNG_START = b"\x89PNG\r\n\x1a\n"  # what a finished PNG read from a tier must start with


def test_chain_asks_in_order_and_copies_to_earlier_tiers(tmp_path: Path) -> None:
    metrics = ProcessMetrics({})
    disk = DiskTier(str(tmp_path), RESULTS, 1 << 24)
    shared = FakeTier()
    chain = TierChain(
        [Guard(disk, metrics.tiers, backstop=5.0), Guard(shared, metrics.tiers, backstop=5.0)]
    )
    key = key_in_bucket("9", 1)
    stored = wrap(pack_result("image/png", PNG_START + b"png"), time.time())
    shared.store[key] = stored
    shared.store[key_in_bucket("9", 2)] = b"garbage"

    async def run() -> None:
        found = await chain.get(key, read_result, GROUP)
        assert found is not None and found.tier == "fake"
        assert found.value.data == PNG_START + b"png"
        await chain.close(5.0)  # lets the copy to the disk finish
        assert await chain.get(key_in_bucket("9", 2), read_result, GROUP) is None

    asyncio.run(run())
    assert disk.read(key) == stored
    shared.store.clear()
    restarted = DiskTier(str(tmp_path), RESULTS, 1 << 24)
    chain = TierChain([Guard(restarted, metrics.tiers, backstop=5.0)])

    async def again() -> None:
        found = await chain.get(key, read_result, GROUP)
        assert found is not None and found.tier == "disk"
        await chain.close(1.0)

    asyncio.run(again())


def test_chain_skips_what_a_purge_or_an_expiry_made_stale(tmp_path: Path) -> None:
    clock = Clock()
    shared = FakeTier()
    chain = TierChain([Guard(shared, ProcessMetrics({}).tiers, backstop=5.0)], clock=clock)
    before, after, expiring = (key_in_bucket("a", n) for n in range(3))

    async def run() -> None:
        chain.put_later(before, pack_result("image/png", PNG_START + b"old"))
        chain.put_later(
            expiring, pack_result("image/png", PNG_START + b"brief"), expires=clock.now + 10
        )
        clock.now += 1
        await chain.purge(GROUP)
        clock.now += 1
        chain.put_later(after, pack_result("image/png", PNG_START + b"new"))
        while any(guard.pending for guard in chain.guards):
            await asyncio.sleep(0)  # the background writes finish
        assert await chain.get(before, read_result, GROUP) is None  # written before the purge
        found = await chain.get(after, read_result, GROUP)
        assert found is not None and found.value.data == PNG_START + b"new"
        other = key_in_bucket("b", 1)  # another photo's purge leaves it alone
        assert await chain.get(expiring, read_result, other) is not None
        clock.now += 10
        assert await chain.get(expiring, read_result, other) is None  # past its expiry
        await chain.close(1.0)

    asyncio.run(run())
    assert unwrap(b"PZT1 short") is None and purged_at(b"garbage") == 0.0


def test_disable_cache_turns_the_tiers_off(tmp_path: Path) -> None:
    cache = CacheTiers(disk_cache_dir=str(tmp_path))
    metrics = ProcessMetrics({}).tiers
    assert open_tiers(config(cache=cache), RESULTS, metrics)
    assert not open_tiers(config(cache=cache, disable_cache=True), RESULTS, metrics)


# --------------------------------------------------------------------------
# Redis and memcached, real servers


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[ServiceProcess]:
    with running(redis_service(tmp_path / "redis")) as server:
        yield server


@pytest.fixture
def memcached_server(tmp_path: Path) -> Iterator[ServiceProcess]:
    with running(memcached_service(tmp_path / "memcached")) as server:
        yield server


def redis_tier(port: int, ttl: int = 3600, timeout: float = 0.2) -> RedisTier:
    return RedisTier(SharedAddress(REDIS, "127.0.0.1", port, 0), ttl, timeout)


def memcached_tier(port: int, ttl: int = 3600, timeout: float = 0.2) -> MemcachedTier:
    return MemcachedTier(SharedAddress(MEMCACHED, "127.0.0.1", port), ttl, timeout)


def raw_command(port: int, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
        connection.sendall(command)
        return connection.recv(256)


def round_trip(tier: Tier, key: str, value: bytes) -> None:
    """A miss, a write, then the value read back; the tier is closed after."""

    async def run() -> None:
        assert await tier.get(key) is None
        await tier.put(key, value)
        assert await tier.get(key) == value

    try:
        asyncio.run(run())
    finally:
        tier.close()


def test_redis_tier_round_trip_with_ttl(redis_server: ServiceProcess) -> None:
    tier = redis_tier(redis_server.port, ttl=3600)
    key = TierKeys(config()).original("a/photo.jpg")
    value = os.urandom(300_000)
    round_trip(tier, key, value)
    ttl = int(raw_command(redis_server.port, f"TTL {key}\r\n".encode()).strip(b":\r\n"))
    assert 3590 <= ttl <= 3600


def test_memcached_tier_round_trip_and_long_ttl(memcached_server: ServiceProcess) -> None:
    # 40 days: memcached would read a relative expiry that long as a date in 1970
    tier = memcached_tier(memcached_server.port, ttl=40 * 86400)
    key = TierKeys(config()).result("s100", "/s100/a.jpg")
    value = os.urandom(200_000)
    round_trip(tier, key, value)


def test_memcached_values_over_its_item_limit_are_not_sent(
    memcached_server: ServiceProcess,
) -> None:
    tier = memcached_tier(memcached_server.port)
    metrics = ProcessMetrics({})
    guard = Guard(tier, metrics.tiers, backstop=2.0)
    assert tier.max_value is not None

    async def run() -> None:
        guard.put_later("phizer1o-big0", b"x" * (tier.max_value + 1))
        guard.put_later("phizer1o-fits0", b"x" * tier.max_value)
        await guard.close(5.0)

    asyncio.run(run())
    found = samples(metrics.exposition().decode())
    too_large = (("reason", "too_large"), ("tier", "shared"))
    assert found[("phizer_tier_writes_total", (("tier", "shared"),))] == 1
    assert found[("phizer_tier_writes_dropped_total", too_large)] == 1
    assert found.get(("phizer_tier_errors_total", (("tier", "shared"),)), 0) == 0


@pytest.mark.parametrize("kind", ["redis", "memcached"])
def test_shared_tier_killed_and_back(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "phizer.tiers")
    service = (redis_service if kind == "redis" else memcached_service)(tmp_path / kind)
    with running(service) as server:
        tier = (redis_tier if kind == "redis" else memcached_tier)(server.port)
        guard = Guard(tier, ProcessMetrics({}).tiers, backstop=2.0, first_backoff=0.05)

        async def run() -> None:
            # several pooled connections of each kind, all stale after the kill
            for n in range(8):
                guard.put_later(f"phizer1o-k{n}", b"before")
            assert (
                await asyncio.gather(*(guard.get(f"phizer1o-x{n}") for n in range(16)))
                == [None] * 16
            )
            while guard.pending:
                await asyncio.sleep(0.01)
            assert await guard.get("phizer1o-k0") == b"before"
            server.kill()
            started = time.monotonic()
            assert await guard.get("phizer1o-k0") is None  # a miss, not an exception
            assert time.monotonic() - started < 1.0
            server.start(server.port)
            deadline = time.monotonic() + 10
            while await guard.get("phizer1o-k0") is None or guard.bypassed():
                assert time.monotonic() < deadline, "the tier never came back"
                guard.put_later("phizer1o-k0", b"after")
                await asyncio.sleep(0.02)
            assert await guard.get("phizer1o-k0") == b"after"

        try:
            asyncio.run(run())
        finally:
            tier.close()
    messages = warnings_of(caplog)
    assert len(messages) == 2, messages
    assert "failed" in messages[0] and "answers again" in messages[1]


@pytest.mark.parametrize("make", [redis_tier, memcached_tier])
def test_a_stalled_store_costs_one_short_timeout(make: Callable[..., object]) -> None:
    with silent_port() as port:
        tier = make(port, timeout=0.1)
        guard = Guard(tier, ProcessMetrics({}).tiers, backstop=5.0)  # type: ignore[arg-type]

        async def run() -> list[float]:
            started = time.monotonic()
            times = []

            async def one(n: int) -> None:
                assert await guard.get(f"phizer1r-k{n}") is None
                times.append(time.monotonic() - started)

            # more calls than the tier has threads: the queued ones must not
            # each wait out a timeout once the first has failed
            await asyncio.gather(*(one(n) for n in range(100)))
            return times

        try:
            times = asyncio.run(run())
        finally:
            tier.close()  # type: ignore[attr-defined]
    assert max(times) < 0.8, times
    assert guard.bypassed()
