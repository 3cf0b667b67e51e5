"""What one process (the front or a worker) counts, in a ``prometheus_client`` registry of its own.

Requests and durations are the library's counters and histograms; the
caches, the in-flight requests, the uptime and the tiers are read from the
live objects when a scrape asks (custom collectors, ``set_function``), so
nothing is counted twice. Each process owns a ``CollectorRegistry``, never
the library's global one, so several apps in one test process stay apart.

Why the front asks every worker (``phizer.web.fanin``) instead of using the
library's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``):

- that mode keeps counters in per-pid files and sums them over every pid
  whose files remain: a worker restarted by the supervisor would add its
  predecessor's counts (ours start again from zero with the new worker,
  as documented) unless the supervisor wiped files of dead pids, and the
  series would carry no ``worker="1"`` label, only an optional ``pid``
  on gauges;
- custom collectors and ``Gauge.set_function`` do not work in that mode,
  and the caches' and tiers' statistics live in each worker's memory, out
  of the front's reach;
- it needs a directory set in the environment before the first import and
  wiped before every start, and ``phizer_worker_up`` would still need a
  probe of each worker.

Asking each worker on loopback, with a short timeout, keeps every process's
series apart and live, and reports a hung worker as down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from phizer.cache.lru import ByteLRU
from phizer.engine.detect import Engine
from phizer.tiers.stats import TierMetrics

# What ``generate_latest`` writes (every phizer name is a classic one).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

ENGINE_INFO = "phizer_engine_info"

# Prometheus' usual latency buckets (seconds), with 1 ms in front for fast resizes.
DEFAULT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# ``*_created`` series are an OpenMetrics notion that the text format can
# only carry as extra gauges, one per series; phizer has never exposed them.
disable_created_metrics()


def engine_info(engine: Engine) -> GaugeMetricFamily:
    """``phizer_engine_info{engine="Pillow-SIMD",version="12.1.1.post0",avif="native"} 1``;
    ``avif`` is ``native``, ``pillow-avif-plugin`` or ``no``."""
    family = GaugeMetricFamily(
        ENGINE_INFO, "The imaging engine; always 1.", labels=["engine", "version", "avif"]
    )
    family.add_metric([engine.name, engine.version, engine.avif_source], 1)
    return family


class Counted(Protocol):
    """What is read of the in-flight tracker (``phizer.web.handler.InFlight``)."""

    @property
    def count(self) -> int: ...


class CacheCollector(Collector):
    """Hits, misses, evictions, bytes, capacity and entries of named ``ByteLRU`` caches."""

    def __init__(self, caches: Mapping[str, ByteLRU[Any]]) -> None:
        self._caches = dict(caches)

    def collect(self) -> Iterator[Metric]:
        labels = ["cache"]
        hits = CounterMetricFamily("phizer_cache_hits_total", "Cache lookups found.", labels=labels)
        misses = CounterMetricFamily(
            "phizer_cache_misses_total", "Cache lookups not found.", labels=labels
        )
        evictions = CounterMetricFamily(
            "phizer_cache_evictions_total", "Entries evicted to make room.", labels=labels
        )
        size = GaugeMetricFamily("phizer_cache_bytes", "Bytes held by the cache.", labels=labels)
        capacity = GaugeMetricFamily(
            "phizer_cache_capacity_bytes", "Bytes the cache may hold.", labels=labels
        )
        entries = GaugeMetricFamily("phizer_cache_entries", "Entries in the cache.", labels=labels)
        for name, cache in self._caches.items():
            hits.add_metric([name], cache.stats.hits)
            misses.add_metric([name], cache.stats.misses)
            evictions.add_metric([name], cache.stats.evictions)
            size.add_metric([name], cache.size)
            capacity.add_metric([name], cache.capacity)
            entries.add_metric([name], len(cache))
        yield from (hits, misses, evictions, size, capacity, entries)


class ProcessMetrics:
    """The metrics of one process (front or worker) and the caches it owns."""

    def __init__(self, caches: Mapping[str, ByteLRU[Any]]) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.started = time.monotonic()
        self._in_flight: Counted | None = None
        self.requests = Counter(
            "phizer_requests_total",
            "Requests answered, by HTTP status.",
            ["code"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "phizer_request_duration_seconds",
            "Time from reading a request to answering it.",
            registry=registry,
            buckets=DEFAULT_BUCKETS,
        )
        Gauge(
            "phizer_in_flight_requests", "Requests being served.", registry=registry
        ).set_function(self.in_flight)
        Gauge(
            "phizer_uptime_seconds", "Seconds since the process started.", registry=registry
        ).set_function(lambda: round(self.uptime_seconds(), 3))
        registry.register(CacheCollector(caches))
        # The disk and shared tiers this process asks (phizer.tiers).
        self.tiers = TierMetrics()
        registry.register(self.tiers)

    def watch_in_flight(self, tracker: Counted) -> None:
        """Report ``tracker``'s count as the requests in flight (the app's ``InFlight``)."""
        self._in_flight = tracker

    def in_flight(self) -> int:
        return self._in_flight.count if self._in_flight is not None else 0

    def request_finished(self, status: int, seconds: float) -> None:
        self.requests.labels(str(status)).inc()
        self.request_seconds.observe(seconds)

    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started

    def families(self) -> list[Metric]:
        return list(self.registry.collect())

    def exposition(self) -> bytes:
        """This process's metrics in the text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)


class FrontMetrics(ProcessMetrics):
    def __init__(self, caches: Mapping[str, ByteLRU[Any]]) -> None:
        super().__init__(caches)
        self.purges = Counter(
            "phizer_purges_total", "Photos purged in this process.", registry=self.registry
        )


class WorkerMetrics(ProcessMetrics):
    def __init__(self, caches: Mapping[str, ByteLRU[Any]]) -> None:
        super().__init__(caches)
        self.fetch_seconds = Histogram(
            "phizer_origin_fetch_duration_seconds",
            "Time to fetch an original from the origins, failures included.",
            registry=self.registry,
            buckets=DEFAULT_BUCKETS,
        )
        self.resize_seconds = Histogram(
            "phizer_resize_duration_seconds",
            "Time to decode, resize and encode one image.",
            registry=self.registry,
            buckets=DEFAULT_BUCKETS,
        )
        self.revalidations = Counter(
            "phizer_revalidations_total",
            "Originals past original_ttl asked again of the origins, by what came back "
            "(unchanged, changed, gone, failed).",
            ["result"],
            registry=self.registry,
        )
        self.stale = Counter(
            "phizer_stale_answers_total",
            "Images made from an original past original_ttl (while it was revalidated, "
            "or because the origins failed).",
            registry=self.registry,
        )
        self.purges = Counter(
            "phizer_purges_total", "Photos purged in this process.", registry=self.registry
        )
