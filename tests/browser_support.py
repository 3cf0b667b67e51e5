"""Headless Debian ``chromium`` for the page tests: dump a page's DOM, take a screenshot.

Each run gets a fresh profile directory and its own session; whatever it
started (renderers, the GPU process) is killed with its process group when
the run ends, however it ends. Chromium's console (CSP violations among
it) goes to stderr, which the caller gets back.

Without chromium the tests that need it skip, unless
``PHIZER_REQUIRE_SERVICES=1`` (set by ``.ci/run``) turns that into a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e_support import wait_until
from tests.services import REQUIRE_ENV

RUN_SECONDS = 90.0
STOP_SECONDS = 10.0
# Virtual time the page may use before the DOM is dumped: far more than a
# page of data: images needs, and free when the page is done sooner.
VIRTUAL_TIME_MS = 10_000
FLAGS = (
    "--headless",
    "--no-sandbox",  # tests may run as root, where the sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
CSP_VIOLATION = "violates the following Content Security Policy"


def require_chromium() -> str:
    found = shutil.which("chromium")
    if found is not None:
        return found
    reason = "chromium is not installed (apt-get install chromium)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 requires it")
    pytest.skip(reason)


@dataclass(frozen=True)
class BrowserRun:
    stdout: str
    stderr: str

    def csp_violations(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if CSP_VIOLATION in line]


def run_chromium(binary: str, *args: str) -> BrowserRun:
    with tempfile.TemporaryDirectory(prefix="phizer-chromium-") as profile:
        process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=RUN_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"chromium {' '.join(args)} did not finish") from None
        finally:
            _kill_session(process)
    if process.returncode != 0:
        raise AssertionError(f"chromium exited {process.returncode}: {stderr[-2000:]!r}")
    return BrowserRun(stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"))


def _kill_session(process: subprocess.Popen[bytes]) -> None:
    """Kill every process of the run's session and wait until none is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.kill()
    process.communicate()
    wait_until(lambda: not _session_members(process.pid), STOP_SECONDS, "chromium did not stop")


def _session_members(sid: int) -> list[int]:
    """Live processes (not zombies) whose session is ``sid``."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state, ppid, pgrp, session
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(name))
    return members


def dump_dom(binary: str, url: str) -> BrowserRun:
    """The DOM after the page loaded and its scripts ran, as HTML on stdout."""
    return run_chromium(binary, f"--virtual-time-budget={VIRTUAL_TIME_MS}", "--dump-dom", url)


def screenshot(binary: str, url: str, target: Path, width: int, height: int) -> BrowserRun:
    return run_chromium(
        binary,
        f"--virtual-time-budget={VIRTUAL_TIME_MS}",
        f"--screenshot={target}",
        f"--window-size={width},{height}",
        url,
    )
