"""What each process exposes, and how the front reads and merges the workers' answers."""

from __future__ import annotations

from dataclasses import dataclass

import PIL
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from phizer import __version__
from phizer.cache.lru import ByteLRU
from phizer.tiers.stats import TierMetrics
from phizer.web.fanin import FRONT_VIEW, Merged, front_view, read_exposition
from phizer.web.handler import InFlight
from phizer.web.metrics import DEFAULT_BUCKETS, ProcessMetrics, WorkerMetrics
from tests.metrics_support import Samples, check_exposition, samples


@dataclass(frozen=True)
class Blob:
    data: bytes

    @property
    def nbytes(self) -> int:
        return len(self.data)


def scrape(metrics: ProcessMetrics) -> Samples:
    text = metrics.exposition().decode("utf-8")
    check_exposition(text)
    return samples(text)


def types(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


# --- one process ---------------------------------------------------------------------


def test_requests_are_counted_by_status_with_their_durations() -> None:
    metrics = ProcessMetrics({})
    durations = [0.0004, 0.003, 0.003, 0.2, 30.0]
    for status, seconds in zip([200, 200, 404, 200, 503], durations, strict=True):
        metrics.request_finished(status, seconds)
    found = scrape(metrics)
    assert found[("phizer_requests_total", (("code", "200"),))] == 3
    assert found[("phizer_requests_total", (("code", "404"),))] == 1
    assert found[("phizer_requests_total", (("code", "503"),))] == 1
    assert found[("phizer_request_duration_seconds_count", ())] == len(durations)
    assert found[("phizer_request_duration_seconds_sum", ())] == pytest.approx(sum(durations))
    buckets = {
        float(labels[0][1]): value
        for (name, labels), value in found.items()
        if name == "phizer_request_duration_seconds_bucket"
    }
    assert sorted(buckets) == [*DEFAULT_BUCKETS, float("inf")]
    for bound, count in buckets.items():
        assert count == sum(1 for seconds in durations if seconds <= bound)
    kinds = types(metrics.exposition().decode())
    assert kinds["phizer_requests"] == "counter"
    assert kinds["phizer_request_duration_seconds"] == "histogram"


def test_caches_are_read_when_scraped() -> None:
    originals: ByteLRU[Blob] = ByteLRU(1000)
    decoded: ByteLRU[Blob] = ByteLRU(0)
    metrics = ProcessMetrics({"originals": originals, "decoded": decoded})

    def cache(name: str, which: str = "originals") -> float:
        return scrape(metrics)[(name, (("cache", which),))]

    assert cache("phizer_cache_entries") == 0
    assert cache("phizer_cache_capacity_bytes") == 1000
    assert cache("phizer_cache_capacity_bytes", "decoded") == 0
    for key in ("a", "b", "c", "d"):
        originals.put(key, Blob(b"x" * 200))  # about 400 bytes each: two fit
    originals.get("d")
    originals.get("a")
    assert cache("phizer_cache_entries") == len(originals) == 2
    assert cache("phizer_cache_bytes") == originals.size > 0
    assert cache("phizer_cache_hits_total") == 1
    assert cache("phizer_cache_misses_total") == 1
    assert cache("phizer_cache_evictions_total") == 2
    assert cache("phizer_cache_misses_total", "decoded") == 0
    kinds = types(metrics.exposition().decode())
    assert kinds["phizer_cache_hits"] == "counter"
    assert kinds["phizer_cache_bytes"] == "gauge"


def test_in_flight_and_uptime_are_live() -> None:
    metrics = ProcessMetrics({})
    assert scrape(metrics)[("phizer_in_flight_requests", ())] == 0
    tracker = InFlight()
    metrics.watch_in_flight(tracker)
    tracker.enter()
    tracker.enter()
    assert scrape(metrics)[("phizer_in_flight_requests", ())] == 2
    tracker.leave()
    assert scrape(metrics)[("phizer_in_flight_requests", ())] == 1
    assert metrics.in_flight() == 1
    metrics.started -= 42.0
    assert scrape(metrics)[("phizer_uptime_seconds", ())] >= 42.0


def test_a_worker_also_times_fetches_and_resizes() -> None:
    front, worker = ProcessMetrics({}), WorkerMetrics({})
    worker.fetch_seconds.observe(0.5)
    worker.resize_seconds.observe(0.02)
    worker.resize_seconds.observe(0.03)
    found = scrape(worker)
    assert found[("phizer_origin_fetch_duration_seconds_count", ())] == 1
    assert found[("phizer_resize_duration_seconds_count", ())] == 2
    assert found[("phizer_resize_duration_seconds_sum", ())] == pytest.approx(0.05)
    assert ("phizer_origin_fetch_duration_seconds_count", ()) not in scrape(front)


def test_each_process_has_a_registry_of_its_own() -> None:
    one, other = ProcessMetrics({}), ProcessMetrics({})
    one.request_finished(200, 0.1)
    assert scrape(one)[("phizer_requests_total", (("code", "200"),))] == 1
    assert ("phizer_requests_total", (("code", "200"),)) not in scrape(other)
    global_names = {family.name for family in REGISTRY.collect()}
    assert not any(name.startswith("phizer_") for name in global_names)


def test_no_created_series() -> None:
    metrics = WorkerMetrics({})
    metrics.request_finished(200, 0.1)
    assert "_created" not in metrics.exposition().decode()


class Watched:
    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False
        self.deleted: int | None = None

    def bypassed(self) -> bool:
        return self.down

    def evictions(self) -> int | None:
        return self.deleted


def test_tiers_are_counted_and_their_state_read_when_scraped() -> None:
    metrics = ProcessMetrics({})
    disk, shared = Watched("disk"), Watched("shared")
    metrics.tiers.watch(disk)
    metrics.tiers.watch(shared)
    metrics.tiers.hits.inc("disk")
    metrics.tiers.hits.inc("disk")
    metrics.tiers.misses.inc("shared")
    metrics.tiers.dropped.inc("shared", "busy")
    disk.deleted = 7
    shared.down = True
    found = scrape(metrics)
    assert found[("phizer_tier_hits_total", (("tier", "disk"),))] == 2
    assert found[("phizer_tier_misses_total", (("tier", "shared"),))] == 1
    dropped = ("phizer_tier_writes_dropped_total", (("reason", "busy"), ("tier", "shared")))
    assert found[dropped] == 1
    assert found[("phizer_tier_bypassed", (("tier", "shared"),))] == 1
    assert found[("phizer_tier_bypassed", (("tier", "disk"),))] == 0
    assert found[("phizer_tier_evictions_total", (("tier", "disk"),))] == 7
    assert ("phizer_tier_evictions_total", (("tier", "shared"),)) not in found  # no evictions
    shared.down = False
    assert scrape(metrics)[("phizer_tier_bypassed", (("tier", "shared"),))] == 0


def test_tier_tallies_take_their_labels() -> None:
    tiers = TierMetrics()
    with pytest.raises(ValueError):
        tiers.dropped.inc("disk")
    with pytest.raises(ValueError):
        tiers.hits.inc("disk", "extra")


# --- reading a worker's answer ------------------------------------------------------


def worker_text(requests: int = 1, cache_hits: int = 0) -> str:
    """What a real worker answers on /_metrics."""
    originals: ByteLRU[Blob] = ByteLRU(10_000)
    originals.put("a", Blob(b"x"))
    for _ in range(cache_hits):
        originals.get("a")
    metrics = WorkerMetrics({"originals": originals})
    for _ in range(requests):
        metrics.request_finished(200, 0.01)
    metrics.fetch_seconds.observe(0.2)
    return metrics.exposition().decode("utf-8")


def test_a_workers_answer_is_read_back() -> None:
    text = worker_text(requests=3)
    families = {family.name: family for family in read_exposition(text)}
    assert families["phizer_requests"].type == "counter"
    assert families["phizer_origin_fetch_duration_seconds"].type == "histogram"
    (sample,) = families["phizer_requests"].samples
    assert (sample.name, sample.labels, sample.value) == (
        "phizer_requests_total",
        {"code": "200"},
        3,
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "<html><body>502 Bad Gateway</body></html>",
        '{"families": []}',
        "# HELP x X.\n",
        "# TYPE x summary\nx_count 1\nx_sum 2\n",
        "x 1\n",  # no TYPE: untyped
        '# TYPE x gauge\nx{worker="1"} 1\n',
        "# TYPE x gauge\ny 1\n",
        "# TYPE x histogram\nx_bucket 1\nx_count 1\nx_sum 1\n",
        '# TYPE x_total counter\nx_total{a="1" 2\n',
    ],
)
def test_a_malformed_answer_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        read_exposition(text)


@given(st.text(max_size=300))
def test_any_text_is_read_or_refused_with_a_value_error(text: str) -> None:
    try:
        families = read_exposition(text)
    except ValueError:
        return
    merged = Merged()
    merged.add("1", families)
    check_exposition(merged.exposition().decode("utf-8"))


# --- merging --------------------------------------------------------------------------


def test_every_series_is_labelled_with_its_process() -> None:
    front = ProcessMetrics({"resized": ByteLRU(500)})
    front.request_finished(200, 0.1)
    merged = Merged()
    merged.add("front", front.families())
    merged.add("1", read_exposition(worker_text(requests=5, cache_hits=2)))
    merged.add("2", read_exposition(worker_text(requests=0)))
    text = merged.exposition().decode("utf-8")
    check_exposition(text)
    found = samples(text)
    assert found[("phizer_requests_total", (("code", "200"), ("worker", "front")))] == 1
    assert found[("phizer_requests_total", (("code", "200"), ("worker", "1")))] == 5
    assert ("phizer_requests_total", (("code", "200"), ("worker", "2"))) not in found
    hits = ("phizer_cache_hits_total", (("cache", "originals"), ("worker", "1")))
    assert found[hits] == 2
    capacity = ("phizer_cache_capacity_bytes", (("cache", "resized"), ("worker", "front")))
    assert found[capacity] == 500
    fetches = ("phizer_origin_fetch_duration_seconds_bucket", (("le", "+Inf"), ("worker", "2")))
    assert found[fetches] == 1
    assert ("phizer_origin_fetch_duration_seconds_count", (("worker", "front"),)) not in found
    # each family declared once, whatever the number of processes
    assert text.count("# TYPE phizer_requests_total counter") == 1
    assert text.count("# TYPE phizer_origin_fetch_duration_seconds histogram") == 1


def test_a_clashing_worker_is_refused_and_changes_nothing() -> None:
    merged = Merged()
    merged.add("front", ProcessMetrics({}).families())
    before = merged.exposition()
    clash = "# TYPE phizer_new gauge\nphizer_new 1\n# TYPE phizer_requests_total gauge\n"
    clash += 'phizer_requests_total{code="200"} 1\n'
    with pytest.raises(ValueError):
        merged.add("1", read_exposition(clash))
    assert merged.exposition() == before


@pytest.mark.parametrize("name", FRONT_VIEW)
def test_a_worker_may_not_speak_for_the_front(name: str) -> None:
    kind = "counter" if name.endswith("_total") else "gauge"
    text = f'# TYPE {name} {kind}\n{name}{{version="x"}} 1\n'
    with pytest.raises(ValueError):
        Merged().add("1", read_exposition(text))


def test_a_family_twice_in_one_answer_is_refused() -> None:
    text = "# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\n# TYPE x gauge\nx 2\n"
    with pytest.raises(ValueError):
        Merged().add("1", read_exposition(text))


def test_front_view() -> None:
    merged = Merged()
    merged.add("front", ProcessMetrics({}).families())
    merged.add_front_view(front_view({"1": True, "2": False, "3": True}, [4, 0, 2, 1]))
    text = merged.exposition().decode("utf-8")
    check_exposition(text)
    found = samples(text)
    up = {w: found[("phizer_worker_up", (("worker", w),))] for w in "123"}
    assert up == {"1": 1, "2": 0, "3": 1}
    restarts = {
        w: found[("phizer_restarts_total", (("worker", w),))] for w in ("front", "1", "2", "3")
    }
    assert restarts == {"front": 4, "1": 0, "2": 2, "3": 1}
    (build,) = [labels for name, labels in found if name == "phizer_build_info"]
    assert dict(build)["version"] == __version__
    (engine,) = [dict(labels) for name, labels in found if name == "phizer_engine_info"]
    assert engine["version"] == PIL.__version__
    assert engine["engine"] in ("Pillow", "Pillow-SIMD") and engine["avif"] != "no"
    assert types(text)["phizer_restarts"] == "counter"
