"""The front's one exposition: its own families and every worker's, each
series labelled with the process it came from (``worker="front"``, ``"1"``, ...).

A worker's answer is read with ``prometheus_client.parser`` and checked
like any input from the network; one that does not pass is left out and
that worker is reported down, never breaking the scrape.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from phizer import __version__
from phizer.engine.detect import detect
from phizer.web.metrics import ENGINE_INFO, engine_info

WORKER_LABEL = "worker"
FRONT = "front"

# The samples each family type may hold, by suffix of the family's name;
# workers expose nothing else.
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}

WORKER_UP = "phizer_worker_up"
RESTARTS = "phizer_restarts_total"
BUILD_INFO = "phizer_build_info"
# Families only the front knows; a worker's answer may not carry them.
FRONT_VIEW = (WORKER_UP, RESTARTS, BUILD_INFO, ENGINE_INFO)


def exposed_name(family: Metric) -> str:
    """The name in the text format's ``# TYPE`` line (a counter's ends in ``_total``)."""
    return family.name + "_total" if family.type == "counter" else family.name


def read_exposition(text: str) -> list[Metric]:
    """A worker's metrics; ``ValueError`` when they are not a well-formed
    exposition of counters, gauges and histograms without a ``worker`` label."""
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, IndexError, KeyError, TypeError) as err:
        raise ValueError(f"not the text format: {err}") from None
    if not families:
        raise ValueError("no metrics")
    for family in families:
        suffixes = _SUFFIXES.get(family.type)
        if suffixes is None:
            raise ValueError(f"{family.name}: unexpected type {family.type}")
        allowed = {family.name + suffix for suffix in suffixes}
        for sample in family.samples:
            if sample.name not in allowed:
                raise ValueError(f"{sample.name} does not belong to {family.name}")
            if WORKER_LABEL in sample.labels:
                raise ValueError(f"{sample.name} has a {WORKER_LABEL} label of its own")
            if sample.name == f"{family.name}_bucket" and "le" not in sample.labels:
                raise ValueError(f"{sample.name} without le")
    return families


class Merged(Collector):
    """Families of several processes as one collection for ``generate_latest``;
    a family keeps the place where it first appeared."""

    def __init__(self, reserved: Iterable[str] = FRONT_VIEW) -> None:
        self._families: dict[str, Metric] = {}
        self._reserved = frozenset(reserved)

    def add(self, source: str, families: Sequence[Metric]) -> None:
        """Add ``families`` with ``worker=source`` on each series. Raises
        ``ValueError``, changing nothing, when a family is reserved, appears
        twice or has another type than the same family of another process."""
        seen: set[str] = set()
        for family in families:
            name = exposed_name(family)
            existing = self._families.get(name)
            if name in self._reserved or name in seen:
                raise ValueError(f"{name} may not come from {source}")
            if existing is not None and existing.type != family.type:
                raise ValueError(f"{name} differs between processes")
            if any(WORKER_LABEL in sample.labels for sample in family.samples):
                raise ValueError(f"{name} has a {WORKER_LABEL} label of its own")
            seen.add(name)
        for family in families:
            merged = self._families.setdefault(
                exposed_name(family),
                Metric(family.name, family.documentation, family.type, family.unit),
            )
            for sample in family.samples:
                merged.add_sample(
                    sample.name, {WORKER_LABEL: source, **sample.labels}, sample.value
                )

    def add_front_view(self, families: Iterable[Metric]) -> None:
        """The front's own families about every process, labelled already."""
        for family in families:
            name = exposed_name(family)
            if name in self._families:
                raise ValueError(f"{name} added twice")
            self._families[name] = family

    def collect(self) -> list[Metric]:
        return list(self._families.values())

    def exposition(self) -> bytes:
        return generate_latest(self)


def front_view(up: Mapping[str, bool], restarts: Sequence[int]) -> list[Metric]:
    """Which workers answered this scrape, the supervisor's restart count of
    each child (``restarts[0]`` the front's, then the workers' in order), the build
    and the imaging engine."""
    worker_up = GaugeMetricFamily(
        WORKER_UP, "1 when the worker answered this scrape.", labels=[WORKER_LABEL]
    )
    for worker, answered in up.items():
        worker_up.add_metric([worker], 1 if answered else 0)
    restarted = CounterMetricFamily(
        RESTARTS, "Restarts of each child by the supervisor.", labels=[WORKER_LABEL]
    )
    for child, count in zip([FRONT, *up], restarts, strict=True):
        restarted.add_metric([child], count)
    build = GaugeMetricFamily(
        BUILD_INFO, "The running version; always 1.", labels=["version", "python"]
    )
    build.add_metric([__version__, ".".join(map(str, sys.version_info[:3]))], 1)
    return [worker_up, restarted, build, engine_info(detect())]
