"""The supervisor for real: forked children, restarts, back-off, clean stop.

Each test runs the supervisor in a fresh interpreter (tests/supervisor_harness.py)
so forking never touches the test process.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e_support import wait_until

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 15.0


def _starts(directory: Path) -> list[tuple[int, int, float]]:
    path = directory / "starts"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        index, pid, at = line.split()
        rows.append((int(index), int(pid), float(at)))
    return rows


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def run_supervisor(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    started: list[subprocess.Popen] = []

    def start(children: int, crash_index: int | None = None) -> subprocess.Popen:
        args = [sys.executable, "-m", "tests.supervisor_harness", str(tmp_path), str(children)]
        if crash_index is not None:
            args.append(str(crash_index))
        process = subprocess.Popen(args, cwd=ROOT, start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_stops_every_child_and_exits_zero(
    run_supervisor: Callable[..., subprocess.Popen], tmp_path: Path, stop_signal: int
) -> None:
    supervisor = run_supervisor(3)
    wait_until(
        lambda: len(_starts(tmp_path)) == 3, DEADLINE, "timed out waiting for three children"
    )
    pids = [pid for _, pid, _ in _starts(tmp_path)]
    assert all(_alive(pid) for pid in pids)

    supervisor.send_signal(stop_signal)

    assert supervisor.wait(timeout=DEADLINE) == 0
    assert not any(_alive(pid) for pid in pids)
    assert sorted(index for index, _, _ in _starts(tmp_path)) == [0, 1, 2]


def test_killed_child_is_restarted_and_others_untouched(
    run_supervisor: Callable[..., subprocess.Popen], tmp_path: Path
) -> None:
    supervisor = run_supervisor(3)
    wait_until(
        lambda: len(_starts(tmp_path)) == 3, DEADLINE, "timed out waiting for three children"
    )
    first = {index: pid for index, pid, _ in _starts(tmp_path)}

    os.kill(first[1], signal.SIGKILL)

    wait_until(
        lambda: len(_starts(tmp_path)) == 4, DEADLINE, "timed out waiting for a restarted child"
    )
    index, new_pid, _ = _starts(tmp_path)[-1]
    assert index == 1 and new_pid != first[1] and _alive(new_pid)
    assert _alive(first[0]) and _alive(first[2])
    supervisor.terminate()
    assert supervisor.wait(timeout=DEADLINE) == 0
    assert not _alive(new_pid)


def test_child_dying_at_boot_is_restarted_with_growing_back_off(
    run_supervisor: Callable[..., subprocess.Popen], tmp_path: Path
) -> None:
    supervisor = run_supervisor(2, crash_index=1)

    def crash_starts() -> list[float]:
        return [at for index, _, at in _starts(tmp_path) if index == 1]

    wait_until(
        lambda: len(crash_starts()) >= 4,
        DEADLINE,
        "timed out waiting for four starts of the crashing child",
    )
    times = crash_starts()[:4]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # Back-off of 0.5 s, 1 s, 2 s: no fork storm.
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95 and gaps[2] >= 1.9, gaps
    assert [index for index, _, _ in _starts(tmp_path)].count(0) == 1
    supervisor.terminate()
    assert supervisor.wait(timeout=DEADLINE) == 0
