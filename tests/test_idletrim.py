"""A worker returns freed decode buffers once it has been idle, never mid-spell."""

from __future__ import annotations

import asyncio

from phizer.idletrim import IdleTrim
from phizer.linux import release_free_memory, tune_allocator
from phizer.web import InFlight


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _trim(in_flight: InFlight, clock: Clock) -> tuple[IdleTrim, list[float]]:
    released: list[float] = []
    trim = IdleTrim(in_flight, lambda: released.append(clock.now), idle_seconds=2.0, clock=clock)
    return trim, released


def _request(in_flight: InFlight, clock: Clock, at: float) -> None:
    clock.now = at
    in_flight.enter()
    in_flight.leave()
    in_flight.last_finish = at  # as if the request ended at ``at`` on this clock


def test_nothing_is_released_before_any_request() -> None:
    clock = Clock()
    trim, released = _trim(InFlight(), clock)
    clock.now += 100
    assert not trim.check()
    assert released == []


def test_released_once_after_the_worker_has_been_idle_long_enough() -> None:
    in_flight, clock = InFlight(), Clock()
    trim, released = _trim(in_flight, clock)
    _request(in_flight, clock, 1000.0)
    clock.now = 1001.5
    assert not trim.check()  # idle, but not for 2 s yet
    clock.now = 1002.0
    assert trim.check()
    clock.now = 1010.0
    assert not trim.check()  # nothing new since
    _request(in_flight, clock, 1020.0)
    clock.now = 1023.0
    assert trim.check()
    assert released == [1002.0, 1023.0]


def test_never_released_while_a_request_is_in_flight() -> None:
    in_flight, clock = InFlight(), Clock()
    trim, released = _trim(in_flight, clock)
    _request(in_flight, clock, 1000.0)
    in_flight.enter()  # a long resize
    clock.now = 1100.0
    assert not trim.check()
    assert released == []


def test_in_flight_counts_finished_requests() -> None:
    async def run() -> InFlight:
        in_flight = InFlight()
        for _ in range(3):
            in_flight.enter()
            in_flight.leave()
        return in_flight

    in_flight = asyncio.run(run())
    assert in_flight.finished == 3 and in_flight.count == 0
    assert in_flight.last_finish > 0


def test_allocator_calls_are_safe_to_make() -> None:
    # Real glibc calls; they must not raise (no-ops elsewhere).
    tune_allocator(64 << 20)
    release_free_memory()
    tune_allocator(1 << 20)
