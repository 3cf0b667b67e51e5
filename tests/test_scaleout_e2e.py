"""End-to-end: phizer hosts sharing work through Redis or memcached, a shared
store killed mid-test, and the disk tier across a ``kill -9`` and restart.

Every host is the real forked ``phizer`` command (tests/e2e_support.py);
Redis and memcached are real servers on free loopback ports
(tests/services.py). What a host did is read from the origin's request
counts and from the host's own ``/_metrics``.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from PIL import Image
from pymemcache.client.base import Client as MemcacheClient

from phizer.config.loader import load_config
from phizer.tiers.disk import unpack_entry
from phizer.tiers.keys import TierKeys
from tests.e2e_support import OriginServer, PhizerProcess, Response, serving_origin, wait_until
from tests.imagetools import decode, encode, photo, similar
from tests.metrics_support import Samples, samples
from tests.services import ServiceProcess, memcached_service, redis_service, running

# Generous for a loaded CI machine; the default (0.1 s) is for a LAN.
SHARED_TIMEOUT = 0.5
WRITE_SECONDS = 15.0
SIZES = {"s100": "100x100", "sq150": "150 square", "p200": "200x300 portrait"}
PHOTOS = {f"photo-{n}.jpg": photo(480 + 24 * n, 360 + 16 * n) for n in range(8)}
ORIGINALS = {name: encode(image, "JPEG", quality=90) for name, image in PHOTOS.items()}
SOURCES = {name: decode(data) for name, data in ORIGINALS.items()}


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[OriginServer]:
    with serving_origin(tmp_path / "origin", ORIGINALS) as server:
        yield server


def host(
    started: list[PhizerProcess], workdir: Path, origin: OriginServer, cache: dict[str, object]
) -> PhizerProcess:
    process = PhizerProcess(workdir, origin, sizes=SIZES, sections={"cache": cache})
    started.append(process)
    return process.start()


def scrape(process: PhizerProcess) -> Samples:
    response = process.get("/_metrics")
    assert response.status == 200, response.body[:300]
    return samples(response.body.decode("utf-8"))


def total(found: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over every series carrying ``labels`` (e.g. all workers)."""
    wanted = set(labels.items())
    return sum(
        value for (metric, pairs), value in found.items() if metric == name and wanted <= set(pairs)
    )


def workers_total(found: Samples, name: str, **labels: str) -> float:
    return total(found, name, **labels) - total(found, name, worker="front", **labels)


def tier_keys(process: PhizerProcess) -> TierKeys:
    """The keys the host derives from its own config file."""
    return TierKeys(load_config(str(process.config_path)))


def stored(store: ServiceProcess, key: str) -> bool:
    if store.name == "redis":
        client = redis.Redis(port=store.port, socket_timeout=2)
        try:
            return bool(client.exists(key))
        finally:
            client.close()
    memcache = MemcacheClient(("127.0.0.1", store.port), timeout=2)
    try:
        return memcache.get(key) is not None
    finally:
        memcache.close()


def access_line(process: PhizerProcess, path: str) -> str:
    lines = [line for line in process.log_text().splitlines() if f"GET {path} " in line]
    assert lines, process.log_text()[-2000:]
    return lines[-1]


def fit(size: tuple[int, int], box: int) -> tuple[int, int]:
    scale = min(box / size[0], box / size[1])
    return round(size[0] * scale), round(size[1] * scale)


def check_s100(response: Response, source: Image.Image) -> None:
    """A 200 whose body is ``source`` fitted into 100x100."""
    assert response.status == 200, response.body[:200]
    image = decode(response.body)
    reference = source.resize(fit(source.size, 100), Image.Resampling.LANCZOS)
    assert max(image.size) == 100
    assert similar(reference, image)


# --------------------------------------------------------------------------
# Two hosts, one shared store


def store_for(kind: str, workdir: Path) -> ServiceProcess:
    return redis_service(workdir) if kind == "redis" else memcached_service(workdir)


@pytest.mark.parametrize("kind", ["redis", "memcached"])
def test_a_result_made_by_one_host_is_served_by_the_other(
    tmp_path: Path, origin: OriginServer, started: list[PhizerProcess], kind: str
) -> None:
    with running(store_for(kind, tmp_path / kind)) as store:
        cache = {"shared": store.url, "shared_timeout": SHARED_TIMEOUT}
        first = host(started, tmp_path / "first", origin, cache)
        second = host(started, tmp_path / "second", origin, cache)
        path = "/s100/photo-1.jpg"

        made = first.get(path)
        check_s100(made, SOURCES["photo-1.jpg"])
        # the front's result and its worker's original reach the store after the answer
        keys = tier_keys(first)
        wanted = [keys.result("s100", path), keys.original("photo-1.jpg")]
        wait_until(
            lambda: all(stored(store, key) for key in wanted),
            WRITE_SECONDS,
            lambda: f"not written to {kind}; log:\n{first.log_text()[-3000:]}",
        )
        assert origin.count("photo-1.jpg") == 1

        before = scrape(second)
        served = second.get(path)
        after = scrape(second)
        assert served.status == 200
        assert served.body == made.body
        assert served.header("ETag") == made.header("ETag")
        assert origin.count("photo-1.jpg") == 1  # no origin request
        resized = "phizer_resize_duration_seconds_count"
        assert total(after, resized) == total(before, resized)  # no resize
        hits = "phizer_tier_hits_total"
        assert total(after, hits, worker="front", tier="shared") == (
            total(before, hits, worker="front", tier="shared") + 1
        )
        line = access_line(second, path)
        assert " cache=shared " in line and line.endswith("worker=-"), line

        # another size of the same photo: the second host's worker resizes it,
        # from the original the first host's worker stored
        other = second.get("/sq150/photo-1.jpg")
        assert other.status == 200 and decode(other.body).size == (150, 150)
        assert origin.count("photo-1.jpg") == 1
        later = scrape(second)
        assert total(later, resized) == total(after, resized) + 1
        assert (
            workers_total(later, hits, tier="shared")
            == workers_total(after, hits, tier="shared") + 1
        )


def test_a_changed_size_never_gets_the_old_geometry(
    tmp_path: Path, origin: OriginServer, started: list[PhizerProcess]
) -> None:
    with running(redis_service(tmp_path / "redis")) as store:
        cache = {"shared": store.url, "shared_timeout": SHARED_TIMEOUT}
        old = host(started, tmp_path / "old", origin, cache)
        path = "/s100/photo-4.jpg"
        check_s100(old.get(path), SOURCES["photo-4.jpg"])
        wait_until(
            lambda: stored(store, tier_keys(old).result("s100", path)),
            WRITE_SECONDS,
            "result not written",
        )
        # the same code, redefined, on a host sharing the store
        new = PhizerProcess(
            tmp_path / "new",
            origin,
            sizes={**SIZES, "s100": "120x120"},
            sections={"cache": cache},
        )
        started.append(new)
        new.start()
        before = scrape(new)
        answer = new.get(path)
        assert answer.status == 200 and max(decode(answer.body).size) == 120
        after = scrape(new)
        resized = "phizer_resize_duration_seconds_count"
        assert total(after, resized) == total(before, resized) + 1
        hits = "phizer_tier_hits_total"
        assert total(after, hits, worker="front") == total(before, hits, worker="front")


# --------------------------------------------------------------------------
# The shared store dies, and comes back


def failures(process: PhizerProcess, role: str, address: str) -> int:
    pattern = re.compile(rf"WARNING \[{role}\] phizer\.tiers: {re.escape(address)} failed ")
    return len(pattern.findall(process.log_text()))


def recoveries(process: PhizerProcess, role: str, address: str) -> int:
    pattern = re.compile(rf"WARNING \[{role}\] phizer\.tiers: {re.escape(address)} answers again")
    return len(pattern.findall(process.log_text()))


def test_redis_killed_mid_test_fails_no_request(
    tmp_path: Path, origin: OriginServer, started: list[PhizerProcess]
) -> None:
    with running(redis_service(tmp_path / "redis")) as store:
        phizer = host(
            started,
            tmp_path / "phizer",
            origin,
            {"shared": store.url, "shared_timeout": SHARED_TIMEOUT},
        )
        address = store.url
        crops = iter(
            (f"/s100/{x}x{y}/{x + 400}x{y + 400}/photo-2.jpg", (x, y))
            for y in range(0, 600, 10)
            for x in range(0, 600, 10)
        )
        source = SOURCES["photo-2.jpg"]

        def ask() -> None:
            """A new crop each time, so the front always asks its tiers."""
            path, (x, y) = next(crops)
            width, height = source.size
            box = (x * width // 1000, y * height // 1000, (x + 400) * width // 1000,
                   (y + 400) * height // 1000)  # fmt: skip
            check_s100(phizer.get(path), source.crop(box))

        for _ in range(3):
            ask()
        store.kill()
        for _ in range(12):
            ask()  # every request still succeeds
        assert failures(phizer, "front", address) == 1, phizer.log_text()[-3000:]
        found = scrape(phizer)
        errors = total(found, "phizer_tier_errors_total", worker="front", tier="shared")
        skipped = total(found, "phizer_tier_skipped_total", worker="front", tier="shared")
        assert errors >= 1
        assert errors + skipped >= 12  # each request's lookup failed or was skipped

        store.start(store.port)

        def back() -> bool:
            ask()
            return recoveries(phizer, "front", address) == 1

        wait_until(back, 40.0, lambda: f"no recovery logged:\n{phizer.log_text()[-3000:]}")
        assert failures(phizer, "front", address) == 1  # still one incident

        store.kill()  # a second incident: a second warning
        for _ in range(3):
            ask()
        assert failures(phizer, "front", address) == 2
        for role in ("worker-1", "worker-2"):
            assert failures(phizer, role, address) <= 2


# --------------------------------------------------------------------------
# The disk tier across kill -9


def disk_entries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")]


def test_disk_tier_survives_kill_9_and_restart(
    tmp_path: Path, origin: OriginServer, started: list[PhizerProcess]
) -> None:
    cache_dir = tmp_path / "disk-cache"
    cache = {"disk_cache_dir": cache_dir, "disk_cache_size": "64MB"}
    first = host(started, tmp_path / "first", origin, cache)
    whole = [f"/{size}/{name}" for name in ORIGINALS for size in SIZES]
    served = {}
    for path in whole:
        served[path] = first.get(path)
        assert served[path].status == 200
    keys = tier_keys(first)
    expected = [
        cache_dir / "results" / key[-1] / key
        for key in (keys.result(path.split("/")[1], path) for path in whole)
    ]
    expected += [cache_dir / "originals" / key[-1] / key for key in map(keys.original, ORIGINALS)]
    wait_until(
        lambda: all(path.exists() for path in expected),
        WRITE_SECONDS,
        "results and originals not all written to disk",
    )

    # many more entries being made and written when every process is killed
    crops = [f"/s100/{x}x0/{x + 500}x1000/{name}" for name in ORIGINALS for x in (0, 100, 250, 500)]
    answered: list[str] = []
    lock = threading.Lock()

    def client(paths: list[str]) -> None:
        for path in paths:
            try:
                if first.get(path, timeout=10).status == 200:
                    with lock:
                        answered.append(path)
            except OSError:
                return  # the host is gone

    threads = [threading.Thread(target=client, args=(crops[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(answered) >= 8, 30.0, "no crop answered")
    os.killpg(first.pid, signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=30)
    first.stop()

    entries = disk_entries(cache_dir)
    assert len(entries) >= len(whole) + len(ORIGINALS)
    for entry in entries:
        assert unpack_entry(entry.read_bytes()) is not None, f"torn entry {entry}"
    # what a torn entry would look like: it must read as absent, not be served
    victim = expected[whole.index("/s100/photo-3.jpg")]
    victim.write_bytes(victim.read_bytes()[:100])

    second = host(started, tmp_path / "second", origin, cache)
    before = origin.total()
    for path, first_answer in served.items():
        answer = second.get(path)
        assert answer.status == 200
        assert answer.body == first_answer.body, path
    assert origin.total() == before  # results and originals came from the disk
    found = scrape(second)
    assert total(found, "phizer_tier_hits_total", worker="front", tier="disk") >= len(whole) - 1
    for path in crops:
        name = path.rsplit("/", 1)[1]
        x = int(path.split("/")[2].split("x")[0])
        source = SOURCES[name]
        box = (x * source.width // 1000, 0, (x + 500) * source.width // 1000, source.height)
        check_s100(second.get(path), source.crop(box))
    # the damaged entry was replaced by a whole one
    wait_until(
        lambda: victim.exists() and unpack_entry(victim.read_bytes()) is not None,
        WRITE_SECONDS,
        "the damaged entry was not rewritten",
    )
