"""Reading /_metrics in tests: the reference parser plus the format's stricter rules."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample as (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def check_exposition(text: str) -> None:
    """What the format requires beyond what the lenient parser checks:
    HELP then TYPE once per family before its samples, histograms cumulative
    and ending in ``+Inf`` equal to ``_count``."""
    assert text.endswith("\n")
    declared: list[str] = []
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in declared, f"HELP twice for {name}"
            declared.append(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert declared and declared[-1] == name and name not in types
            types[name] = kind
        else:
            assert not line.startswith("#")
            sample = line.split("{")[0].split(" ")[0]
            family = declared[-1]
            if types[family] == "histogram":
                assert sample in (f"{family}_bucket", f"{family}_sum", f"{family}_count"), line
            else:
                assert sample == family, line
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        series: dict[tuple[tuple[str, str], ...], list[Any]] = {}
        counts: dict[tuple[tuple[str, str], ...], float] = {}
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            if sample.name.endswith("_bucket"):
                series.setdefault(labels, []).append((sample.labels["le"], sample.value))
            elif sample.name.endswith("_count"):
                counts[labels] = sample.value
        for labels, buckets in series.items():
            values = [value for _, value in buckets]
            assert values == sorted(values), buckets
            assert buckets[-1][0] == "+Inf"
            assert buckets[-1][1] == counts[labels]
