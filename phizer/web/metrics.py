"""Counters, gauges and histograms with labels, and the Prometheus text format.

Each process keeps a ``Registry``; its ``snapshot()`` is plain JSON so a
worker can hand it to the front, which merges every snapshot under a
``worker`` label and renders one exposition (text format 0.0.4). Each
process is single-threaded, so updates are plain dict operations.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"
_TYPES = (COUNTER, GAUGE, HISTOGRAM)

# Prometheus' usual latency buckets (seconds), with 1 ms in front for fast resizes.
DEFAULT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_RESERVED_LABELS = ("le",)

LabelValues = tuple[str, ...]


# --- the data every family reduces to ------------------------------------------


@dataclass
class HistogramValue:
    """Per-bucket counts (not cumulative; the last one is ``+Inf``) and the sum."""

    counts: list[int]
    sum: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass
class FamilyData:
    """One metric family as it is snapshotted, merged and rendered."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    series: dict[LabelValues, float | HistogramValue] = field(default_factory=dict)

    def with_label(self, label: str, value: str) -> FamilyData:
        """A copy with ``label=value`` put in front of every series' labels."""
        if label in self.labels:
            raise ValueError(f"{self.name} already has a {label} label")
        return FamilyData(
            self.name,
            self.type,
            self.help,
            (label, *self.labels),
            self.buckets,
            {(value, *key): _copy(v) for key, v in self.series.items()},
        )

    def compatible(self, other: FamilyData) -> bool:
        return (self.type, self.labels, self.buckets) == (other.type, other.labels, other.buckets)


def _copy(value: float | HistogramValue) -> float | HistogramValue:
    if isinstance(value, HistogramValue):
        return HistogramValue(list(value.counts), value.sum)
    return value


# --- the registry ---------------------------------------------------------------


class _Family:
    type = ""

    def __init__(self, name: str, help: str, labels: Sequence[str]) -> None:
        _check_names(name, labels)
        self.data = FamilyData(name, self.type, help, tuple(labels))

    def _key(self, values: Sequence[str]) -> LabelValues:
        if len(values) != len(self.data.labels):
            raise ValueError(f"{self.data.name} takes labels {self.data.labels}, got {values}")
        return tuple(values)


class Counter(_Family):
    type = COUNTER

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        series = self.data.series
        series[key] = series.get(key, 0.0) + amount  # type: ignore[operator]

    def set_total(self, value: float, *labels: str) -> None:
        """Mirror a count kept elsewhere (a cache's hit count, a restart board)."""
        self.data.series[self._key(labels)] = float(value)


class Gauge(_Family):
    type = GAUGE

    def set(self, value: float, *labels: str) -> None:
        self.data.series[self._key(labels)] = float(value)


class Histogram(_Family):
    type = HISTOGRAM

    def __init__(
        self, name: str, help: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, help, labels)
        self.data.buckets = _check_buckets(name, buckets)

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        series = self.data.series.get(key)
        if series is None:
            series = self.data.series[key] = HistogramValue([0] * (len(self.data.buckets) + 1))
        assert isinstance(series, HistogramValue)
        series.counts[_bucket_index(self.data.buckets, value)] += 1
        series.sum += value


def _check_buckets(name: str, buckets: Iterable[float]) -> tuple[float, ...]:
    """Finite, strictly increasing upper bounds; ``+Inf`` is always added."""
    bounds = tuple(float(b) for b in buckets)
    finite = all(math.isfinite(b) for b in bounds)
    if not bounds or not finite or any(a >= b for a, b in itertools.pairwise(bounds)):
        raise ValueError(f"{name}: buckets must be finite, increasing and not empty")
    return bounds


def _bucket_index(bounds: tuple[float, ...], value: float) -> int:
    # ``le`` is inclusive: a value equal to a bound belongs to that bucket.
    for index, bound in enumerate(bounds):
        if value <= bound:
            return index
    return len(bounds)


class Registry:
    """The families of one process; ``collectors`` refresh mirrored values
    (cache sizes, in-flight requests) right before a snapshot."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}
        self._collectors: list[Callable[[], None]] = []

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help, labels))

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help, labels))

    def histogram(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        return self._add(Histogram(name, help, labels, buckets))

    def add_collector(self, collect: Callable[[], None]) -> None:
        self._collectors.append(collect)

    def _add(self, family: Any) -> Any:
        name = family.data.name
        if name in self._families:
            raise ValueError(f"metric {name} registered twice")
        self._families[name] = family
        return family

    def families(self) -> list[FamilyData]:
        for collect in self._collectors:
            collect()
        return [family.data for family in self._families.values()]

    def snapshot(self) -> dict[str, Any]:
        return {"families": [family_to_json(f) for f in self.families()]}


def _check_names(name: str, labels: Iterable[str]) -> None:
    if not _METRIC_NAME.match(name):
        raise ValueError(f"invalid metric name {name!r}")
    labels = list(labels)
    for label in labels:
        if not _LABEL_NAME.match(label) or label.startswith("__") or label in _RESERVED_LABELS:
            raise ValueError(f"invalid label name {label!r} in {name}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate label in {name}")


# --- JSON snapshots -------------------------------------------------------------


def family_to_json(family: FamilyData) -> dict[str, Any]:
    series: list[dict[str, Any]] = []
    for key, value in family.series.items():
        if isinstance(value, HistogramValue):
            series.append({"labels": list(key), "counts": list(value.counts), "sum": value.sum})
        else:
            series.append({"labels": list(key), "value": value})
    data: dict[str, Any] = {
        "name": family.name,
        "type": family.type,
        "help": family.help,
        "labels": list(family.labels),
        "series": series,
    }
    if family.type == HISTOGRAM:
        data["buckets"] = list(family.buckets)
    return data


def families_from_snapshot(snapshot: Mapping[str, Any]) -> list[FamilyData]:
    """Read a snapshot back; raises ``ValueError`` on anything malformed
    (it comes over the network, so it is checked like any input)."""
    try:
        families = [_family_from_json(item) for item in snapshot["families"]]
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"malformed metrics snapshot: {err!r}") from None
    if len({family.name for family in families}) != len(families):
        raise ValueError("a metric appears twice in the snapshot")
    return families


def _family_from_json(item: Mapping[str, Any]) -> FamilyData:
    name, kind, labels = str(item["name"]), str(item["type"]), tuple(map(str, item["labels"]))
    if kind not in _TYPES:
        raise ValueError(f"unknown metric type {kind!r}")
    _check_names(name, labels)
    buckets = _check_buckets(name, item["buckets"]) if kind == HISTOGRAM else ()
    family = FamilyData(name, kind, str(item.get("help", "")), labels, buckets)
    for entry in item["series"]:
        key = tuple(str(v) for v in entry["labels"])
        if len(key) != len(labels):
            raise ValueError(f"{name}: series labels do not match {labels}")
        if kind == HISTOGRAM:
            counts = [int(c) for c in entry["counts"]]
            if len(counts) != len(buckets) + 1 or min(counts) < 0:
                raise ValueError(f"{name}: bucket counts do not match the buckets")
            family.series[key] = HistogramValue(counts, float(entry["sum"]))
        else:
            family.series[key] = float(entry["value"])
    return family


class Merged:
    """Families of several processes as one list, each series labelled with
    its source (``worker="1"``); families keep the order they first appear in."""

    def __init__(self, label: str = "worker") -> None:
        self.label = label
        self._families: dict[str, FamilyData] = {}

    def add(self, source: str, families: Iterable[FamilyData]) -> None:
        """Raises ``ValueError``, changing nothing, when a family clashes
        (type, labels or buckets) with one already added."""
        labelled = [family.with_label(self.label, source) for family in families]
        for family in labelled:
            existing = self._families.get(family.name)
            if existing is not None and not existing.compatible(family):
                raise ValueError(f"{family.name} differs between processes")
        for family in labelled:
            existing = self._families.setdefault(family.name, family)
            if existing is not family:
                existing.series.update(family.series)

    def families(self) -> list[FamilyData]:
        return list(self._families.values())


# --- the text exposition format -------------------------------------------------


def render(families: Iterable[FamilyData]) -> str:
    """Prometheus text format 0.0.4: HELP and TYPE once per family, then its samples."""
    lines: list[str] = []
    seen: set[str] = set()
    for family in families:
        if family.name in seen:
            raise ValueError(f"{family.name} rendered twice")
        seen.add(family.name)
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for key, value in family.series.items():
            pairs = list(zip(family.labels, key, strict=True))
            if isinstance(value, HistogramValue):
                lines.extend(_histogram_lines(family, pairs, value))
            else:
                lines.append(_sample(family.name, pairs, value))
    return "\n".join(lines) + "\n" if lines else ""


def _histogram_lines(
    family: FamilyData, pairs: list[tuple[str, str]], value: HistogramValue
) -> list[str]:
    lines = []
    cumulative = 0
    bounds = [*map(format_value, family.buckets), "+Inf"]
    for bound, count in zip(bounds, value.counts, strict=True):
        cumulative += count
        lines.append(_sample(f"{family.name}_bucket", [*pairs, ("le", bound)], cumulative))
    lines.append(_sample(f"{family.name}_sum", pairs, value.sum))
    lines.append(_sample(f"{family.name}_count", pairs, cumulative))
    return lines


def _sample(name: str, pairs: Sequence[tuple[str, str]], value: float) -> str:
    if not pairs:
        return f"{name} {format_value(value)}"
    labels = ",".join(f'{label}="{escape_label_value(v)}"' for label, v in pairs)
    return f"{name}{{{labels}}} {format_value(value)}"


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
