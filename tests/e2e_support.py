"""End-to-end helpers: a real origin HTTP server and the real ``phizer`` command.

``OriginServer`` serves files from a directory on 127.0.0.1 in a thread of
the test process and counts the requests per path. ``PhizerProcess``
writes a config file, starts ``phizer -c FILE`` in its own session, waits
until the front really answers, exposes the supervisor's and children's
pids and process names (from ``/proc``), and stops everything it started.
Nothing here sleeps for luck: every wait polls a real condition until a
deadline.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import http.client
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.imagetools import encode, photo
from tests.ports import HOST, free_port_block, serve_in_thread

READY_SECONDS = 20.0
STOP_SECONDS = 15.0
POLL_SECONDS = 0.02
START_ATTEMPTS = 5

DEFAULT_SIZES = {
    "s100": "100x100",
    "sq150": "150 square",
    "p200": "200x300 portrait",
    "l300": "300x200 landscape",
}


# --------------------------------------------------------------------------
# The origin


class _Listening(ThreadingHTTPServer):
    # The standard library's default backlog is 5: a burst of workers
    # fetching at once (a reload empties their caches) would have their
    # connections dropped and time out, which no real origin server does.
    request_queue_size = 128


class OriginServer:
    """An HTTP origin serving ``root`` and counting requests per path."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._paths: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle
    def start(self) -> OriginServer:
        server = _Listening((HOST, 0), _make_origin_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = serve_in_thread(server)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def port(self) -> int:
        assert self._server is not None, "origin not started"
        return self._server.server_address[1]

    # -- content
    def add(self, name: str, data: bytes) -> str:
        """Store ``data`` as ``name`` (a relative path); returns ``name``."""
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return name

    # -- counters
    def _record(self, path: str) -> None:
        with self._lock:
            self._counts[path] += 1
            self._paths.append(path)

    def count(self, name: str) -> int:
        """Requests seen for ``/name`` (as sent on the wire)."""
        with self._lock:
            return self._counts["/" + name.lstrip("/")]

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def paths(self) -> list[str]:
        with self._lock:
            return list(self._paths)


@contextlib.contextmanager
def serving_origin(root: Path, files: Mapping[str, bytes] | None = None) -> Iterator[OriginServer]:
    """An ``OriginServer`` holding ``files`` for the ``with`` block; always stopped."""
    server = OriginServer(root).start()
    try:
        for name, data in (files or {}).items():
            server.add(name, data)
        yield server
    finally:
        server.stop()


def _make_origin_handler(origin: OriginServer) -> type[BaseHTTPRequestHandler]:
    class OriginHandler(BaseHTTPRequestHandler):
        server_version = "e2e-origin/1"

        def do_GET(self) -> None:
            raw_path = urlsplit(self.path).path
            origin._record(raw_path)
            body = self._read(unquote(raw_path))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _read(self, path: str) -> bytes | None:
            root = origin.root.resolve()
            candidate = (root / path.lstrip("/")).resolve()
            if root not in candidate.parents or not candidate.is_file():
                return None
            return candidate.read_bytes()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return OriginHandler


# --------------------------------------------------------------------------
# The phizer command


def phizer_command() -> list[str]:
    found = shutil.which("phizer")
    if found:
        return [found]
    return [sys.executable, "-m", "phizer"]


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(
    args: Sequence[str],
    timeout: float = 15.0,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> CliResult:
    """Run ``phizer ARGS`` to completion; a run that does not end is killed.
    ``env``: the whole environment (default: this process's)."""
    process = subprocess.Popen(
        [*phizer_command(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=cwd,
        env=None if env is None else dict(env),
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        stdout, stderr = process.communicate()
        raise AssertionError(
            f"phizer {' '.join(args)} did not exit within {timeout}s\n{stdout}\n{stderr}"
        ) from None
    finally:
        _kill_group(process.pid)
    return CliResult(process.returncode, stdout, stderr)


def worker_for(filename: str, num_workers: int) -> int:
    """1-based worker number that serves ``filename``: crc32 of it modulo the workers."""
    return zlib.crc32(filename.encode("utf-8")) % num_workers + 1


def worker_name(number: int) -> str:
    return f"phizer-w{number}"


FRONT_NAME = "phizer-front"


def read_comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's list, Linux ``/proc``)."""
    pids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return pids
    for task in tasks:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            pids.extend(int(p) for p in text.split())
    return pids


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(
    condition: Callable[[], object], timeout: float, message: str | Callable[[], str]
) -> object:
    """Poll ``condition`` until it returns something truthy, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(POLL_SECONDS)


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def http_get(
    port: int, path: str, timeout: float = 10.0, method: str = "GET", host: str = HOST
) -> Response:
    """One request with ``path`` sent exactly as given (no normalisation)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, path)
        answer = connection.getresponse()
        return Response(answer.status, answer.headers, answer.read())
    finally:
        connection.close()


class PhizerProcess:
    """The real ``phizer -c FILE`` with a generated config, started and stopped."""

    def __init__(
        self,
        workdir: Path,
        master: OriginServer,
        *,
        slaves: Sequence[OriginServer] = (),
        sizes: Mapping[str, str] | None = None,
        properties: Mapping[str, object] | None = None,
        num_workers: int = 2,
        extra_args: Sequence[str] = (),
        port_via_flag: bool = False,
        file_port: int | None = None,
        sections: Mapping[str, Mapping[str, object]] | None = None,
        master_options: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``port_via_flag``: pass the chosen port as ``-p`` and write
        ``file_port`` (which may be a busy port) as bind_port in the file.
        ``sections``: more sections for the file, e.g. ``{"cache": {...}}``.
        ``master_options``: the ``[master]`` section, instead of ``master``'s
        host and port (``master`` then only needs ``add``, for the ready files).
        ``env``: phizer's whole environment (default: this process's)."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.master = master
        self.slaves = tuple(slaves)
        self.sizes = dict(sizes or DEFAULT_SIZES)
        self.properties = dict(properties or {})
        self.num_workers = num_workers
        self.extra_args = tuple(extra_args)
        self.port_via_flag = port_via_flag
        self.file_port = file_port
        self.sections = {name: dict(options) for name, options in (sections or {}).items()}
        self.master_options = dict(master_options) if master_options is not None else None
        self.env = dict(env) if env is not None else None
        self.config_path = self.workdir / "phizer.conf"
        self.log_path = self.workdir / "phizer.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_files = self._add_ready_files()
        self._log_handle = None

    # -- config
    def _add_ready_files(self) -> dict[int, str]:
        """One small PNG per worker on the master, named so it routes there."""
        data = encode(photo(40, 30), "PNG")
        files: dict[int, str] = {}
        k = 0
        while len(files) < self.num_workers:
            name = f"zz-ready-{k}.png"
            files.setdefault(worker_for(name, self.num_workers), name)
            k += 1
        for name in files.values():
            self.master.add(name, data)
        return files

    def config_text(self) -> str:
        properties: dict[str, object] = {
            "bind_host": HOST,
            "bind_port": self.file_port if self.port_via_flag else self.port,
            "num_workers": self.num_workers,
            "origin_connect_timeout": 1,
            "origin_timeout": 3,
            "log_level": "INFO",
            "log_level_worker": "INFO",
        }
        properties.update(self.properties)
        lines = ["[properties]"]
        lines += [f"{key} = {value}" for key, value in properties.items()]
        master = self.master_options or {"host": HOST, "port": self.master.port}
        lines += ["", "[master]", *(f"{key} = {value}" for key, value in master.items()), ""]
        for number, slave in enumerate(self.slaves, 1):
            lines += [f"[slave-{number}]", f"host = {HOST}", f"port = {slave.port}", ""]
        lines += ["[sizes]"]
        lines += [f"{code} = {spec}" for code, spec in self.sizes.items()]
        for name, options in self.sections.items():
            lines += ["", f"[{name}]", *(f"{key} = {value}" for key, value in options.items())]
        return "\n".join(lines) + "\n"

    @property
    def ready_size(self) -> str:
        return next(iter(self.sizes))

    # -- life cycle
    def start(self) -> PhizerProcess:
        for _ in range(START_ATTEMPTS):
            exclude = [self.file_port] if self.file_port else []
            self.port = free_port_block(self.num_workers + 1, exclude=exclude)
            self.config_path.write_text(self.config_text())
            self._spawn()
            if self._wait_ready():
                return self
            if "cannot listen" not in self.log_text():
                break  # not a port race: report it
            self._reap_after_failed_start()
        log = self.log_text()
        self.stop()
        raise AssertionError(f"phizer did not become ready; log:\n{log}")

    def _spawn(self) -> None:
        args = [*phizer_command(), "-c", str(self.config_path)]
        if self.port_via_flag:
            args += ["-p", str(self.port)]
        if not {"-H", "--host"} & set(self.extra_args):
            # The file's loopback bind_host is ignored, as in 2012: stay on loopback.
            args += ["-H", HOST]
        args += self.extra_args
        self._log_handle = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            args,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # phizer goes if the test process dies
        )

    def _wait_ready(self) -> bool:
        """True once every worker's ready image answers 200 through the front."""
        assert self.process is not None
        deadline = time.monotonic() + READY_SECONDS
        pending = list(self.ready_files.values())
        while pending and time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                status = http_get(self.port, f"/{self.ready_size}/{pending[0]}", 2.0).status
            except OSError:
                status = None
            if status == 200:
                pending.pop(0)
            else:
                time.sleep(POLL_SECONDS)
        if pending:
            return False
        # Each child names itself before serving; wait until all carry names.
        names = {FRONT_NAME, *(worker_name(i) for i in range(1, self.num_workers + 1))}
        with contextlib.suppress(AssertionError):
            wait_until(lambda: set(self.children()) == names, 5.0, "")
            return True
        return False

    def _reap_after_failed_start(self) -> None:
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_SECONDS)
            _kill_group(self.process.pid)
            self.process = None
        self._close_log()

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Signal the supervisor, wait (bounded) and return its exit status.

        Whatever happens, every process of phizer's session is killed
        before this returns.
        """
        process = self.process
        if process is None:
            return None
        try:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=STOP_SECONDS)
            return process.poll()
        finally:
            _kill_group(process.pid)
            if process.poll() is None:
                process.kill()
                process.wait(timeout=5)
            self._close_log()

    def _close_log(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    # -- inspection
    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def children(self) -> dict[str, int]:
        """Live children of the supervisor by process name (``/proc/PID/comm``)."""
        named: dict[str, int] = {}
        for child in child_pids(self.pid):
            name = read_comm(child)
            if name is not None and pid_alive(child):
                named[name] = child
        return named

    def child_pid(self, name: str) -> int:
        pid = self.children().get(name)
        assert pid is not None, f"no child named {name}: {self.children()}"
        return pid

    def wait_for_new_child(self, name: str, old_pid: int, timeout: float = 10.0) -> int:
        """Poll ``/proc`` until a child named ``name`` other than ``old_pid`` runs."""

        def replaced() -> int | None:
            pid = self.children().get(name)
            return pid if pid is not None and pid != old_pid else None

        result = wait_until(
            replaced, timeout, lambda: f"{name} not restarted; log:\n{self.log_text()}"
        )
        assert isinstance(result, int)
        return result

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def get(self, path: str, timeout: float = 10.0, method: str = "GET") -> Response:
        return http_get(self.port, path, timeout, method)


def _kill_group(pgid: int) -> None:
    """SIGKILL every process still in the session/group ``pgid`` started."""
    if any(_process_group(pid) == pgid for pid in _all_pids()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _process_group(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[2])  # state, ppid, pgrp


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


# Loaded here, not in the forked child: between fork and exec only a plain
# call is safe (find_library would even start subprocesses).
_LIBC = _load_libc()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the forked child before exec: SIGTERM when the test process dies."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
