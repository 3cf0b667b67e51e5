"""A worker returns freed decode buffers when idle, or when too much has piled up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from phizer.process.heaptrim import DecodeMemory, HeapTrim, decode_memory, resident_bytes
from phizer.web.inflight import InFlight

MIB = 1 << 20


class Machine:
    """A fake clock and RSS, and a record of releases."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.rss = 40 * MIB
        self.cached = 0
        self.released: list[float] = []

    def trim(self, in_flight: InFlight) -> HeapTrim:
        return HeapTrim(
            in_flight,
            cached=lambda: self.cached,
            release=lambda: self.released.append(self.now),
            rss=lambda: self.rss,
            idle_seconds=2.0,
            max_kept_free=64 * MIB,
            clock=lambda: self.now,
        )


def _request(in_flight: InFlight, machine: Machine, at: float) -> None:
    machine.now = at
    in_flight.enter()
    in_flight.leave()
    in_flight.last_finish = at  # as if it ended at ``at`` on the fake clock


def test_nothing_is_released_before_any_request() -> None:
    machine = Machine()
    trim = machine.trim(InFlight())
    machine.now += 100
    machine.rss += 500 * MIB
    assert not trim.check()
    assert machine.released == []


def test_released_once_after_the_worker_has_been_idle_long_enough() -> None:
    in_flight, machine = InFlight(), Machine()
    trim = machine.trim(in_flight)
    _request(in_flight, machine, 1000.0)
    machine.now = 1001.5
    assert not trim.check()  # idle, but not for 2 s yet
    machine.now = 1002.0
    assert trim.check()
    machine.now = 1010.0
    assert not trim.check()  # nothing new since
    _request(in_flight, machine, 1020.0)
    machine.now = 1023.0
    assert trim.check()
    assert machine.released == [1002.0, 1023.0]


def test_released_mid_spell_when_free_memory_piles_up_beside_the_caches() -> None:
    in_flight, machine = InFlight(), Machine()
    trim = machine.trim(in_flight)  # started at 40 MiB
    in_flight.enter()  # busy throughout
    _request(in_flight, machine, 1000.0)
    machine.cached = 200 * MIB
    machine.rss = (40 + 200 + 64) * MIB  # caches + start + the allowance: kept
    assert not trim.check()
    machine.rss += MIB
    assert trim.check()
    assert not trim.check()  # once per finished request at most
    _request(in_flight, machine, 1000.5)
    assert trim.check()
    assert machine.released == [1000.0, 1000.5]


def test_never_released_for_idleness_while_a_request_is_in_flight() -> None:
    in_flight, machine = InFlight(), Machine()
    trim = machine.trim(in_flight)
    _request(in_flight, machine, 1000.0)
    in_flight.enter()  # a long resize
    machine.now = 1100.0
    assert not trim.check()
    assert machine.released == []


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


def _status_rss() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_resident_bytes_is_this_process_rss() -> None:
    # Both read the kernel's count; a page or two may change between them.
    ballast = bytearray(32 * MIB)  # touched: zero-filled by bytearray
    assert abs(resident_bytes() - _status_rss()) < MIB
    assert resident_bytes() > len(ballast)


# Touches a malloc'd buffer twice under a worker's allocator settings and
# prints the page faults of the second time: none when the first buffer's
# pages were kept for it, one per page when they went back to the system.
_REUSE_PROBE = """
import ctypes, resource, sys
from phizer.process.heaptrim import decode_memory
from phizer.process.linux import tune_allocator
memory = decode_memory(int(sys.argv[1]))
tune_allocator(memory.mmap_threshold, memory.trim_threshold)
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = int(sys.argv[2])
def touch():
    buffer = libc.malloc(size)
    ctypes.memset(buffer, 1, size)
    libc.free(buffer)
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _second_touch_faults(reserve: int, size: int) -> int:
    probe = subprocess.run(
        [sys.executable, "-c", _REUSE_PROBE, str(reserve), str(size)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(probe.stdout)


def test_decode_memory_splits_the_reserve() -> None:
    assert decode_memory(32 * MIB) == DecodeMemory(16 * MIB, 32 * MIB, 32 * MIB)
    assert decode_memory(64 * MIB) == DecodeMemory(32 * MIB, 64 * MIB, 64 * MIB)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_buffer_within_half_the_reserve_is_reused_without_faulting() -> None:
    # 24 MiB: luma coefficients of a 12 MP progressive JPEG.
    pages = (24 * MIB) // os.sysconf("SC_PAGE_SIZE")
    assert _second_touch_faults(64 * MIB, 24 * MIB) < pages // 20
    # The default reserve maps a buffer that size on its own: faulted afresh.
    assert _second_touch_faults(32 * MIB, 24 * MIB) > pages * 9 // 10


def test_started_trim_checks_after_requests_and_once_idle() -> None:
    """Wired to the request counter: the pile-up rule right after a request
    ends, the idle rule ``idle_seconds`` later, with no polling between."""

    async def run() -> list[float]:
        in_flight, machine = InFlight(), Machine()
        released: list[float] = []
        idle = asyncio.Event()

        def release() -> None:
            released.append(machine.now)
            idle.set()

        trim = HeapTrim(
            in_flight,
            cached=lambda: 0,
            max_kept_free=64 * MIB,
            release=release,
            rss=lambda: machine.rss,
            idle_seconds=0.05,
        )
        trim.start()
        machine.rss += 65 * MIB  # piled up beside empty caches
        in_flight.enter()
        in_flight.leave()
        assert released == [machine.now]  # released as the request ended
        machine.now += 1
        machine.rss -= 65 * MIB
        in_flight.enter()
        in_flight.leave()
        assert len(released) == 1  # nothing piled up this time
        await asyncio.wait_for(idle.wait(), 5)  # set by the first release
        idle.clear()
        await asyncio.wait_for(idle.wait(), 5)  # the idle release
        return released

    assert len(asyncio.run(run())) == 2
