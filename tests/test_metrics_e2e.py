"""End-to-end: ``/_metrics`` and ``/_health`` of the real, forked ``phizer`` command."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_support import (
    PhizerProcess,
    serving_origin,
    wait_until,
    worker_for,
    worker_name,
)
from tests.imagetools import encode, photo
from tests.metrics_support import METRICS_TYPE, Samples, check_exposition, samples

NUM_WORKERS = 2
RESTART_SECONDS = 10.0


@pytest.fixture
def phizer(tmp_path: Path) -> Iterator[PhizerProcess]:
    with serving_origin(tmp_path / "origin") as origin:
        process = PhizerProcess(tmp_path / "phizer", origin, num_workers=NUM_WORKERS)
        try:
            yield process.start()
        finally:
            process.stop()


def scrape(process: PhizerProcess) -> Samples:
    response = process.get("/_metrics")
    assert response.status == 200, response.body[:300]
    assert response.header("Content-Type") == METRICS_TYPE
    text = response.body.decode("utf-8")
    check_exposition(text)
    return samples(text)


def get(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_cover_every_process_and_count_restarts(phizer: PhizerProcess) -> None:
    # one new image per worker, each asked twice: a miss then a hit at the front
    data = encode(photo(120, 90), "PNG")
    names: dict[int, str] = {}
    k = 0
    while len(names) < NUM_WORKERS:
        name = f"metrics-{k}.png"
        names.setdefault(worker_for(name, NUM_WORKERS), name)
        k += 1
    for name in names.values():
        phizer.master.add(name, data)

    before = scrape(phizer)
    for name in names.values():
        for _ in range(2):
            assert phizer.get(f"/s100/{name}").status == 200
    after = scrape(phizer)

    def delta(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    # the front: 2 images x 2 requests, plus the first scrape, all 200
    assert delta("phizer_requests_total", worker="front", code="200") == 2 * NUM_WORKERS + 1
    resized = {"worker": "front", "cache": "resized"}
    assert delta("phizer_cache_hits_total", **resized) == NUM_WORKERS
    assert delta("phizer_cache_misses_total", **resized) == NUM_WORKERS
    for number in range(1, NUM_WORKERS + 1):
        worker = str(number)
        # one image request each (the second was a front hit), plus the first scrape
        assert delta("phizer_requests_total", worker=worker, code="200") == 2
        assert delta("phizer_cache_misses_total", worker=worker, cache="originals") == 1
        assert delta("phizer_origin_fetch_duration_seconds_count", worker=worker) == 1
        assert delta("phizer_resize_duration_seconds_count", worker=worker) == 1
        assert get(after, "phizer_worker_up", worker=worker) == 1
        assert get(after, "phizer_in_flight_requests", worker=worker) == 1  # the scrape
    for child in ("front", *map(str, range(1, NUM_WORKERS + 1))):
        assert ("phizer_restarts_total", (("worker", child),)) in after
        assert get(after, "phizer_restarts_total", worker=child) == 0

    victim = 1
    old_pid = phizer.child_pid(worker_name(victim))
    os.kill(old_pid, signal.SIGKILL)
    phizer.wait_for_new_child(worker_name(victim), old_pid, RESTART_SECONDS)

    def restarted() -> Samples | None:
        found = scrape(phizer)
        return found if get(found, "phizer_worker_up", worker=str(victim)) == 1 else None

    found = wait_until(restarted, RESTART_SECONDS, "the restarted worker never answered")
    assert isinstance(found, dict)
    assert get(found, "phizer_restarts_total", worker=str(victim)) == 1
    assert get(found, "phizer_restarts_total", worker="front") == 0
    assert get(found, "phizer_restarts_total", worker="2") == 0
    # the new worker starts counting from zero; the other keeps its counts
    assert get(found, "phizer_origin_fetch_duration_seconds_count", worker=str(victim)) == 0
    other = {"worker": "2"}
    assert get(found, "phizer_origin_fetch_duration_seconds_count", **other) == get(
        after, "phizer_origin_fetch_duration_seconds_count", **other
    )

    health = phizer.get("/_health")
    assert health.status == 200
    body = json.loads(health.body)
    assert body["status"] == "ok"
    assert body["workers"][victim - 1]["pid"] == phizer.child_pid(worker_name(victim))
