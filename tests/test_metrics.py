"""The metrics registry, snapshots, merging and the Prometheus text format."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from phizer.web.metrics import (
    CONTENT_TYPE,
    FamilyData,
    Merged,
    Registry,
    escape_label_value,
    families_from_snapshot,
    format_value,
    render,
)
from tests.metrics_support import check_exposition, samples


def parse(text: str) -> dict[str, Any]:
    """Families by name, parsed by the reference parser."""
    return {family.name: family for family in text_string_to_metric_families(text)}


# --- counters, gauges, histograms ---------------------------------------------------


def test_counter_counts_per_label_values() -> None:
    registry = Registry()
    requests = registry.counter("x_requests_total", "Requests.", ("code",))
    for code in ("200", "200", "404", "200"):
        requests.inc(code)
    requests.inc("500", amount=2.5)
    found = samples(render(registry.families()))
    assert found[("x_requests_total", (("code", "200"),))] == 3
    assert found[("x_requests_total", (("code", "404"),))] == 1
    assert found[("x_requests_total", (("code", "500"),))] == 2.5
    assert parse(render(registry.families()))["x_requests"].type == "counter"


def test_counter_refuses_to_go_down_and_wrong_labels() -> None:
    counter = Registry().counter("x_total", "X.", ("a", "b"))
    with pytest.raises(ValueError):
        counter.inc("1", "2", amount=-1)
    with pytest.raises(ValueError):
        counter.inc("only-one")
    with pytest.raises(ValueError):
        counter.inc("1", "2", "3")


def test_gauge_and_mirrored_counter_take_the_last_value() -> None:
    registry = Registry()
    gauge = registry.gauge("x_bytes", "Bytes.")
    mirrored = registry.counter("x_hits_total", "Hits.", ("cache",))
    gauge.set(10)
    gauge.set(7)
    mirrored.set_total(4, "a")
    mirrored.set_total(9, "a")
    found = samples(render(registry.families()))
    assert found[("x_bytes", ())] == 7
    assert found[("x_hits_total", (("cache", "a"),))] == 9


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    registry = Registry()
    histogram = registry.histogram("x_seconds", "Durations.", ("kind",), buckets=(0.1, 1.0, 5.0))
    observed = [0.05, 0.1, 0.5, 1.0, 3.0, 7.0, 100.0]
    for value in observed:
        histogram.observe(value, "a")
    histogram.observe(0.2, "b")
    text = render(registry.families())
    check_exposition(text)
    found = samples(text)

    def bucket(le: str, kind: str = "a") -> float:
        return found[("x_seconds_bucket", (("kind", kind), ("le", le)))]

    # le is "less than or equal": 0.1 and 1.0 fall in their own buckets
    for le, bound in (("0.1", 0.1), ("1", 1.0), ("5", 5.0)):
        assert bucket(le) == sum(1 for v in observed if v <= bound)
    assert bucket("+Inf") == len(observed)
    assert found[("x_seconds_count", (("kind", "a"),))] == len(observed)
    assert found[("x_seconds_sum", (("kind", "a"),))] == pytest.approx(sum(observed))
    assert bucket("0.1", "b") == 0 and bucket("1", "b") == 1 and bucket("+Inf", "b") == 1
    assert parse(text)["x_seconds"].type == "histogram"


def test_histogram_needs_increasing_buckets() -> None:
    registry = Registry()
    for number, buckets in enumerate([(), (1.0, 0.5), (1.0, 1.0), (math.inf,), (math.nan,)]):
        with pytest.raises(ValueError):
            registry.histogram(f"h{number}", "H.", buckets=buckets)


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("1bad", ()),
        ("bad-name", ()),
        ("ok", ("bad-label",)),
        ("ok", ("__reserved",)),
        ("ok", ("le",)),
        ("ok", ("a", "a")),
    ],
)
def test_invalid_names_are_refused(name: str, labels: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        Registry().counter(name, "X.", labels)


def test_a_name_is_registered_once() -> None:
    registry = Registry()
    registry.counter("x_total", "X.")
    with pytest.raises(ValueError):
        registry.gauge("x_total", "X again.")


def test_collectors_run_before_every_snapshot() -> None:
    registry = Registry()
    gauge = registry.gauge("x_entries", "Entries.")
    source = {"entries": 3}
    registry.add_collector(lambda: gauge.set(source["entries"]))
    assert samples(render(registry.families()))[("x_entries", ())] == 3
    source["entries"] = 5
    assert registry.snapshot()["families"][0]["series"][0]["value"] == 5


# --- the text format ----------------------------------------------------------------


def test_help_and_type_once_per_family_even_with_many_series() -> None:
    registry = Registry()
    counter = registry.counter("x_total", "X.", ("code",))
    for code in range(200, 205):
        counter.inc(str(code))
    registry.histogram("x_seconds", "S.", ("code",)).observe(0.3, "200")
    registry.gauge("x_empty", "No series yet.", ("code",))
    text = render(registry.families())
    check_exposition(text)
    assert text.count("# HELP x_total ") == 1 and text.count("# TYPE x_total counter") == 1
    assert "# TYPE x_empty gauge" in text
    assert len(parse(text)["x"].samples) == 5


@pytest.mark.parametrize(
    "value", ['quote " here', "back\\slash", "new\nline", 'all \\" \n of them', "naïve ü €", ""]
)
def test_label_values_are_escaped(value: str) -> None:
    registry = Registry()
    registry.gauge("x_info", "Info.", ("v",)).set(1, value)
    text = render(registry.families())
    assert len(text.splitlines()) == 3  # an escaped newline does not break the line
    (sample,) = parse(text)["x_info"].samples
    assert sample.labels == {"v": value}


def test_escape_label_value_by_hand() -> None:
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_help_is_escaped() -> None:
    registry = Registry()
    registry.gauge("x", "line one\nback\\slash").set(1)
    text = render(registry.families())
    assert "# HELP x line one\\nback\\\\slash\n" in text
    assert parse(text)["x"].documentation == "line one\nback\\slash"


@pytest.mark.parametrize(
    ("value", "text"),
    [(3, "3"), (3.0, "3"), (0.25, "0.25"), (-2, "-2"), (math.inf, "+Inf"), (-math.inf, "-Inf")],
)
def test_values(value: float, text: str) -> None:
    assert format_value(value) == text


def test_nan_value() -> None:
    assert format_value(math.nan) == "NaN"


def test_nothing_renders_nothing() -> None:
    assert render([]) == ""


def test_a_family_is_not_rendered_twice() -> None:
    family = FamilyData("x", "gauge", "X.", ())
    with pytest.raises(ValueError):
        render([family, family])


def test_content_type_is_the_text_format() -> None:
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


# --- snapshots ----------------------------------------------------------------------


def _sample_registry() -> Registry:
    registry = Registry()
    registry.counter("r_total", "R.", ("code",)).inc("200")
    registry.gauge("g", "G.").set(4.5)
    histogram = registry.histogram("h_seconds", "H.", buckets=(0.5, 2.0))
    for value in (0.1, 1.0, 9.0):
        histogram.observe(value)
    return registry


def test_snapshot_survives_json_and_renders_the_same() -> None:
    registry = _sample_registry()
    through_json = json.loads(json.dumps(registry.snapshot()))
    assert render(families_from_snapshot(through_json)) == render(registry.families())


def _broken(change: Any) -> dict[str, Any]:
    snapshot = json.loads(json.dumps(_sample_registry().snapshot()))
    change(snapshot)
    return snapshot


@pytest.mark.parametrize(
    "snapshot",
    [
        {},
        [],
        {"families": 3},
        {"families": [{"name": "x"}]},
        _broken(lambda s: s["families"][0].update(type="summary")),
        _broken(lambda s: s["families"][0].update(name="bad name")),
        _broken(lambda s: s["families"][0]["series"][0].update(labels=[])),
        _broken(lambda s: s["families"][0]["series"][0].update(value="many")),
        _broken(lambda s: s["families"][2]["series"][0].update(counts=[1, 2])),
        _broken(lambda s: s["families"][2]["series"][0].update(counts=[1, -1, 1])),
        _broken(lambda s: s["families"][2].update(buckets=[2.0, 0.5])),
        _broken(lambda s: s["families"].append(s["families"][0])),
    ],
)
def test_malformed_snapshots_are_refused(snapshot: Any) -> None:
    with pytest.raises(ValueError):
        families_from_snapshot(snapshot)


# --- merging ------------------------------------------------------------------------


def _process(requests: int, cache_bytes: int) -> list[FamilyData]:
    registry = Registry()
    counter = registry.counter("r_total", "R.", ("code",))
    for _ in range(requests):
        counter.inc("200")
    registry.gauge("cache_bytes", "B.", ("cache",)).set(cache_bytes, "c")
    registry.histogram("h_seconds", "H.", buckets=(1.0,)).observe(requests)
    return families_from_snapshot(json.loads(json.dumps(registry.snapshot())))


def test_merge_labels_every_series_with_its_process() -> None:
    merged = Merged()
    merged.add("front", _process(3, 100))
    merged.add("1", _process(5, 200))
    merged.add("2", _process(0, 300))
    text = render(merged.families())
    check_exposition(text)
    found = samples(text)
    assert found[("r_total", (("code", "200"), ("worker", "front")))] == 3
    assert found[("r_total", (("code", "200"), ("worker", "1")))] == 5
    assert ("r_total", (("code", "200"), ("worker", "2"))) not in found  # never counted
    assert found[("cache_bytes", (("cache", "c"), ("worker", "2")))] == 300
    assert found[("h_seconds_bucket", (("le", "1"), ("worker", "1")))] == 0
    assert found[("h_seconds_bucket", (("le", "+Inf"), ("worker", "1")))] == 1
    # the worker label comes first, and each family is declared once
    assert 'r_total{worker="1",code="200"} 5' in text.splitlines()
    assert text.count("# TYPE r_total counter") == 1


def test_merge_keeps_families_only_some_processes_have() -> None:
    merged = Merged()
    merged.add("front", _process(1, 1))
    extra = Registry()
    extra.histogram("fetch_seconds", "F.").observe(0.2)
    merged.add("1", extra.families())
    names = [family.name for family in merged.families()]
    assert names == ["r_total", "cache_bytes", "h_seconds", "fetch_seconds"]


def test_a_clashing_process_is_refused_and_changes_nothing() -> None:
    merged = Merged()
    merged.add("front", _process(1, 1))
    before = render(merged.families())
    clash = Registry()
    clash.counter("new_total", "N.").inc()
    clash.gauge("r_total", "Now a gauge.", ("code",)).set(1, "200")
    with pytest.raises(ValueError):
        merged.add("1", clash.families())
    assert render(merged.families()) == before


def test_a_family_with_its_own_worker_label_is_refused() -> None:
    registry = Registry()
    registry.gauge("up", "U.", ("worker",)).set(1, "1")
    with pytest.raises(ValueError):
        Merged().add("front", registry.families())


def test_merging_does_not_alias_the_source() -> None:
    registry = _sample_registry()
    merged = Merged()
    merged.add("front", registry.families())
    registry.families()[2].series[()].counts[0] += 10  # type: ignore[union-attr]
    found = samples(render(merged.families()))
    assert found[("h_seconds_bucket", (("le", "0.5"), ("worker", "front")))] == 1
