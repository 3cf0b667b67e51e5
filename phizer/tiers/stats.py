"""What the tiers count, exported to Prometheus by a collector read at scrape time.

The guards count into plain ``Tally`` objects (each process is
single-threaded); ``TierMetrics`` is a ``prometheus_client`` collector that
turns those counts, and the live state of each watched tier, into metric
families when a scrape asks, so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class Watched(Protocol):
    name: str

    def bypassed(self) -> bool: ...

    def evictions(self) -> int | None: ...


class Tally:
    """A counter per label values, as the guards call it: ``hits.inc("disk")``."""

    def __init__(self, name: str, help: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.help = help
        self.labels = labels
        self.counts: dict[tuple[str, ...], int] = {}

    def inc(self, *values: str) -> None:
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {values}")
        self.counts[values] = self.counts.get(values, 0) + 1

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.help, labels=self.labels)
        for values, count in self.counts.items():
            family.add_metric(values, count)
        return family


class TierMetrics(Collector):
    def __init__(self) -> None:
        tier = ("tier",)
        self.hits = Tally("phizer_tier_hits_total", "Lookups a cache tier answered.", tier)
        self.misses = Tally("phizer_tier_misses_total", "Lookups a cache tier did not have.", tier)
        self.errors = Tally(
            "phizer_tier_errors_total",
            "Tier operations that failed or timed out; each lookup among them was a miss.",
            tier,
        )
        self.skipped = Tally(
            "phizer_tier_skipped_total",
            "Operations not tried because the tier was bypassed after a failure.",
            tier,
        )
        self.writes = Tally("phizer_tier_writes_total", "Entries written back to a tier.", tier)
        self.rejected = Tally(
            "phizer_tier_rejected_total",
            "Values a tier returned that were damaged, failed the [cache] secret's check or "
            "are not usable here (a finished image that is not an image); each was a miss.",
            tier,
        )
        self.dropped = Tally(
            "phizer_tier_writes_dropped_total",
            "Write-backs not tried: too many pending (busy) or too large for the tier.",
            ("tier", "reason"),
        )
        self._watched: list[Watched] = []

    def watch(self, tier: Watched) -> None:
        self._watched.append(tier)

    def collect(self) -> Iterator[Metric]:
        yield from (
            tally.family()
            for tally in (
                self.hits,
                self.misses,
                self.errors,
                self.skipped,
                self.writes,
                self.rejected,
                self.dropped,
            )
        )
        bypassed = GaugeMetricFamily(
            "phizer_tier_bypassed", "1 while the tier is bypassed after a failure.", labels=["tier"]
        )
        evictions = CounterMetricFamily(
            "phizer_tier_evictions_total",
            "Entries deleted by this process to keep the disk tier within its size.",
            labels=["tier"],
        )
        for tier in self._watched:
            bypassed.add_metric([tier.name], 1 if tier.bypassed() else 0)
            count = tier.evictions()
            if count is not None:
                evictions.add_metric([tier.name], count)
        yield bypassed
        yield evictions
