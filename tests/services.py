"""Real ``redis-server`` and ``memcached`` processes on free loopback ports.

Each server starts with explicit arguments (no config file, nothing saved
to disk, UDP off), is polled until it answers a real command, and is
stopped by the context manager that started it. A test may kill a server
mid-way and start it again on the same port.

Without the binaries the tests that need them skip with the reason,
unless ``PHIZER_REQUIRE_SERVICES=1`` (set by ``.ci/run``), which turns the
skip into a failure so CI cannot pass without exercising them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.ports import HOST, free_port_block

REQUIRE_ENV = "PHIZER_REQUIRE_SERVICES"
READY_SECONDS = 10.0
STOP_SECONDS = 5.0
POLL_SECONDS = 0.02
START_ATTEMPTS = 5


def require_binary(name: str) -> str:
    """The binary's path; skips (or, under PHIZER_REQUIRE_SERVICES=1, fails) without it."""
    found = shutil.which(name)
    if found is not None:
        return found
    reason = f"{name} is not installed (apt-get install redis-server memcached)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 requires it")
    pytest.skip(reason)


def _answers(port: int, command: bytes, expected: bytes) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as connection:
            connection.sendall(command)
            return connection.recv(64).startswith(expected)
    except OSError:
        return False


class ServiceProcess:
    """One server process; ``argv(port)`` builds its command line."""

    def __init__(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        probe: tuple[bytes, bytes],
        workdir: Path,
    ) -> None:
        self.name = name
        self._argv = argv
        self._probe = probe
        self.workdir = workdir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}.log"

    @property
    def url(self) -> str:
        scheme = "redis" if self.name == "redis" else "memcached"
        return f"{scheme}://{HOST}:{self.port}" + ("/0" if scheme == "redis" else "")

    def answers(self) -> bool:
        return self.port != 0 and _answers(self.port, *self._probe)

    def start(self, port: int | None = None) -> ServiceProcess:
        """On ``port`` (the same one again after ``kill``), else a free one."""
        for _ in range(START_ATTEMPTS):
            self.port = port or free_port_block(1)
            if self._spawn():
                return self
            if port is not None:
                break
        raise AssertionError(f"{self.name} did not start; log:\n{self.log_text()}")

    def _spawn(self) -> bool:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self._argv(self.port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False  # e.g. the port was taken meanwhile
            if self.answers():
                return True
            time.sleep(POLL_SECONDS)
        self.stop()
        return False

    def kill(self) -> None:
        """SIGKILL, as a crash would; waits until the port is closed."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_SECONDS)
        self.process = None

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        try:
            if process.poll() is None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=STOP_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=STOP_SECONDS)
            self.process = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def redis_service(workdir: Path) -> ServiceProcess:
    binary = require_binary("redis-server")

    def argv(port: int) -> list[str]:
        return [
            binary,
            "--port", str(port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
        ]  # fmt: skip

    return ServiceProcess("redis", argv, (b"PING\r\n", b"+PONG"), workdir)


def memcached_service(workdir: Path, item_limit: str | None = None) -> ServiceProcess:
    binary = require_binary("memcached")

    def argv(port: int) -> list[str]:
        args = [binary, "-l", HOST, "-p", str(port), "-U", "0", "-m", "64"]
        if item_limit is not None:
            args += ["-I", item_limit]
        if os.geteuid() == 0:
            args += ["-u", "root"]  # memcached refuses root without it
        return args

    return ServiceProcess("memcached", argv, (b"version\r\n", b"VERSION"), workdir)


@contextlib.contextmanager
def running(service: ServiceProcess) -> Iterator[ServiceProcess]:
    """Start ``service``; stopped on the way out, whatever happened."""
    try:
        yield service.start()
    finally:
        service.stop()


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never
    answers: what a stalled store looks like to a client."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((HOST, 0))
        listener.listen(64)
        yield listener.getsockname()[1]
    finally:
        listener.close()
