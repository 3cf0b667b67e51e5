"""The tiers' families in a process's metrics registry (see ``admin``)."""

from __future__ import annotations

from typing import Protocol

from phizer.web.metrics import Registry


class Watched(Protocol):
    name: str

    def bypassed(self) -> bool: ...

    def evictions(self) -> int | None: ...


class TierMetrics:
    def __init__(self, registry: Registry) -> None:
        tier = ("tier",)
        self.hits = registry.counter(
            "phizer_tier_hits_total", "Lookups a cache tier answered.", tier
        )
        self.misses = registry.counter(
            "phizer_tier_misses_total", "Lookups a cache tier did not have.", tier
        )
        self.errors = registry.counter(
            "phizer_tier_errors_total",
            "Tier operations that failed or timed out; each lookup among them was a miss.",
            tier,
        )
        self.skipped = registry.counter(
            "phizer_tier_skipped_total",
            "Operations not tried because the tier was bypassed after a failure.",
            tier,
        )
        self.writes = registry.counter(
            "phizer_tier_writes_total", "Entries written back to a tier.", tier
        )
        self.dropped = registry.counter(
            "phizer_tier_writes_dropped_total",
            "Write-backs not tried: too many pending (busy) or too large for the tier.",
            ("tier", "reason"),
        )
        self.bypassed = registry.gauge(
            "phizer_tier_bypassed", "1 while the tier is bypassed after a failure.", tier
        )
        self.evictions = registry.counter(
            "phizer_tier_evictions_total",
            "Entries deleted by this process to keep the disk tier within its size.",
            tier,
        )
        self._watched: list[Watched] = []
        registry.add_collector(self._collect)

    def watch(self, tier: Watched) -> None:
        self._watched.append(tier)

    def _collect(self) -> None:
        for tier in self._watched:
            self.bypassed.set(1 if tier.bypassed() else 0, tier.name)
            evictions = tier.evictions()
            if evictions is not None:
                self.evictions.set_total(evictions, tier.name)
