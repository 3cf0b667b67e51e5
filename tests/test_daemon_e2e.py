"""End-to-end: ``phizer --daemon``, the pidfile, the log file, ``--user``/``--group``
and ``--check-config``, with the real command against a real origin on 127.0.0.1.

A daemon is not a child of the test: every config file name carries a
token, and teardown kills every process whose command line holds it (the
supervisor, its children and anything left from the detach), whether the
test passed or not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import PIL
import pytest

from phizer import cli
from phizer.config.loader import Settings
from phizer.engine.detect import detect
from phizer.process.daemonize import hold_startup_signals
from tests.e2e_support import (
    FRONT_NAME,
    HOST,
    CliResult,
    OriginServer,
    PhizerProcess,
    child_pids,
    free_port_block,
    http_get,
    pid_alive,
    read_comm,
    run_cli,
    serving_origin,
    wait_until,
    worker_name,
)

NUM_WORKERS = 2
CHILD_NAMES = {FRONT_NAME, *(worker_name(i) for i in range(1, NUM_WORKERS + 1))}
START_ATTEMPTS = 5
READY_SECONDS = 20.0
STOP_SECONDS = 20.0
KILL_SECONDS = 10.0
# A started daemon answers at once; far less than run_cli's own limit.
DETACH_SECONDS = 10.0


# --------------------------------------------------------------------------
# Helpers


@dataclass
class Daemon:
    """One config and its files; ``run`` starts ``phizer`` with them."""

    workdir: Path
    process: PhizerProcess  # writes the config and the ready images
    token: str

    @property
    def config(self) -> Path:
        return self.process.config_path

    @property
    def port(self) -> int:
        return self.process.port

    def write_config(self) -> None:
        self.process.port = free_port_block(NUM_WORKERS + 1)
        self.config.write_text(self.process.config_text())

    def run(self, args: Sequence[str], cwd: Path | None = None) -> CliResult:
        """``phizer -c CONFIG ARGS``, retried on a new port block if one was taken."""
        for _ in range(START_ATTEMPTS):
            config = self.config.name if cwd == self.workdir else str(self.config)
            started = time.monotonic()
            # -H: the file's loopback bind_host is ignored, as in 2012.
            command = ["-c", config, "-H", HOST, *args]
            result = run_cli(command, cwd=str(cwd) if cwd else None)
            assert time.monotonic() - started < DETACH_SECONDS, "the command did not return"
            if not (result.returncode == 1 and "cannot listen" in result.stderr):
                return result
            self.write_config()
        raise AssertionError(f"no free ports after {START_ATTEMPTS} attempts: {result.stderr}")

    def serves(self, log: Path | None = None) -> None:
        """Every worker answers through the front."""
        for name in self.process.ready_files.values():
            response = http_get(self.port, f"/{self.process.ready_size}/{name}")
            logged = log.read_text() if log is not None and log.exists() else ""
            assert response.status == 200, (name, response.status, response.body, logged)


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginServer]:
    with serving_origin(tmp_path_factory.mktemp("origin")) as server:
        yield server


@pytest.fixture
def make_daemon(tmp_path: Path, origin: OriginServer) -> Iterator[Callable[..., Daemon]]:
    """Configs for daemons; every process they start is killed at teardown."""
    tokens: list[str] = []

    def make(properties: dict[str, object] | None = None) -> Daemon:
        token = uuid.uuid4().hex[:12]
        workdir = tmp_path / f"d{len(tokens)}"
        process = PhizerProcess(
            workdir,
            origin,
            num_workers=NUM_WORKERS,
            properties={"shutdown_timeout": 3, **(properties or {})},
        )
        process.config_path = workdir / f"phizer-{token}.conf"
        tokens.append(token)
        daemon = Daemon(workdir, process, token)
        daemon.write_config()
        return daemon

    try:
        yield make
    finally:
        for token in tokens:
            _kill_processes_holding(token)


def _processes_holding(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid() and pid_alive(int(name)):
            with contextlib.suppress(OSError):
                if marker.encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                    found.append(int(name))
    return found


def _kill_processes_holding(marker: str) -> None:
    deadline = time.monotonic() + KILL_SECONDS
    while (left := _processes_holding(marker)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def _supervisor(pidfile: Path) -> int:
    text = wait_until(
        lambda: pidfile.exists() and pidfile.read_text(), 5.0, f"no pidfile {pidfile}"
    )
    assert isinstance(text, str) and text.endswith("\n"), repr(text)
    pid = int(text)
    assert pid_alive(pid), f"pidfile names {pid}, which is not running"
    return pid


def _children(pid: int) -> dict[str, int]:
    named = {}
    for child in child_pids(pid):
        name = read_comm(child)
        if name is not None and pid_alive(child):
            named[name] = child
    return named


def _wait_for_children(pid: int) -> dict[str, int]:
    wait_until(
        lambda: set(_children(pid)) == CHILD_NAMES,
        READY_SECONDS,
        lambda: f"children of {pid}: {_children(pid)}",
    )
    return _children(pid)


def _stop(pid: int, pidfile: Path) -> None:
    """SIGTERM the supervisor; it and its children go and the pidfile is removed."""
    children = list(_children(pid).values())
    os.kill(pid, signal.SIGTERM)
    wait_until(
        lambda: not any(map(pid_alive, [pid, *children])),
        STOP_SECONDS,
        f"supervisor {pid} or children {children} still running",
    )
    wait_until(lambda: not pidfile.exists(), STOP_SECONDS, f"{pidfile} not removed")


def _ids(pid: int) -> tuple[list[int], list[int]]:
    """Real, effective, saved and filesystem uids and gids of ``pid``."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return [int(v) for v in fields["Uid"]], [int(v) for v in fields["Gid"]]


def _start_and_wait(daemon: Daemon, args: Sequence[str], pidfile: Path) -> tuple[CliResult, int]:
    result = daemon.run(args)
    assert result.returncode == 0, result.stderr
    pid = _supervisor(pidfile)
    _wait_for_children(pid)
    return result, pid


# --------------------------------------------------------------------------
# Starting, serving, refusing a second start


def test_daemon_detaches_serves_and_keeps_its_files(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    # Relative paths, as an operator types them: the daemon works in /.
    args = ["--daemon", "--pidfile", "run.pid", "--log-file", "phizer.log"]
    result = daemon.run(args, cwd=daemon.workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    pidfile, log = daemon.workdir / "run.pid", daemon.workdir / "phizer.log"
    assert pidfile.exists(), "the command returned before the pidfile was written"
    pid = _supervisor(pidfile)

    assert b"phizer" in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert os.getsid(pid) != os.getsid(0), "still in the terminal's session"
    assert os.getsid(pid) != pid, "a session leader could reacquire a terminal"
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    assert "Umask:\t0022" in Path(f"/proc/{pid}/status").read_text()
    assert os.readlink(f"/proc/{pid}/fd/0") == os.devnull
    assert os.readlink(f"/proc/{pid}/fd/1") == os.devnull
    assert os.readlink(f"/proc/{pid}/fd/2") == str(log)

    children = _wait_for_children(pid)
    daemon.serves()
    for child in children.values():
        assert os.readlink(f"/proc/{child}/fd/2") == str(log)

    # The supervisor's and the children's lines (the access log) reach the file.
    wait_until(
        lambda: "[supervisor]" in log.read_text() and "[front]" in log.read_text(),
        5.0,
        lambda: f"log file lacks supervisor or front lines:\n{log.read_text()}",
    )


def test_second_start_with_the_same_pidfile_is_refused(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    pidfile = daemon.workdir / "phizer.pid"
    log = daemon.workdir / "phizer.log"
    args = ["--daemon", "--pidfile", str(pidfile), "--log-file", str(log)]
    _, pid = _start_and_wait(daemon, args, pidfile)
    children = _children(pid)

    second = daemon.run(args)
    assert second.returncode == 1, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert "already running" in lines[0] and str(pid) in lines[0]

    assert pidfile.read_text() == f"{pid}\n"
    assert _children(pid) == children, "the first instance was disturbed"
    daemon.serves()


@pytest.mark.parametrize("holder", ["dead", "not-phizer"])
def test_stale_pidfile_is_taken_over(make_daemon: Callable[..., Daemon], holder: str) -> None:
    daemon = make_daemon()
    pidfile = daemon.workdir / "phizer.pid"
    log = daemon.workdir / "phizer.log"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        if holder == "dead":
            other.kill()
            other.wait(timeout=10)
        pidfile.write_text(f"{other.pid}\n")
        result, pid = _start_and_wait(
            daemon, ["--daemon", "--pidfile", str(pidfile), "--log-file", str(log)], pidfile
        )
        assert pid != other.pid
        assert "taking over a stale pidfile" in result.stderr
        assert str(other.pid) in result.stderr
        if holder == "not-phizer":
            assert other.poll() is None, "the unrelated process was disturbed"
        daemon.serves()
        assert "taking over a stale pidfile" in log.read_text()
    finally:
        other.kill()
        other.wait(timeout=10)


def test_daemon_without_a_log_destination_warns(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    pidfile = daemon.workdir / "phizer.pid"
    result, pid = _start_and_wait(daemon, ["--daemon", "--pidfile", str(pidfile)], pidfile)
    assert "--daemon without --log-file or syslog_facility" in result.stderr
    assert os.readlink(f"/proc/{pid}/fd/2") == os.devnull
    daemon.serves()


# --------------------------------------------------------------------------
# Stopping


def test_sigterm_stops_every_process_and_removes_the_pidfile(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon()
    pidfile = daemon.workdir / "phizer.pid"
    log = daemon.workdir / "phizer.log"
    _, pid = _start_and_wait(
        daemon, ["--daemon", "--pidfile", str(pidfile), "--log-file", str(log)], pidfile
    )
    daemon.serves()
    _stop(pid, pidfile)
    assert "Traceback" not in log.read_text()


# --------------------------------------------------------------------------
# Errors reach the terminal, and leave nothing behind


def test_broken_config_is_reported_before_detaching(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    broken = daemon.config.read_text().replace("[sizes]", "[sizes]\nbad = 96x96 format=gif")
    daemon.config.write_text(broken)
    pidfile = daemon.workdir / "phizer.pid"
    log = daemon.workdir / "phizer.log"
    result = daemon.run(["--daemon", "--pidfile", str(pidfile), "--log-file", str(log)])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phizer: ") and "bad" in lines[0], lines
    assert not pidfile.exists()
    assert not log.exists()


def test_busy_port_is_reported_before_detaching(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    pidfile = daemon.workdir / "phizer.pid"
    with socket.socket() as busy:
        busy.bind((HOST, daemon.port))
        busy.listen()
        result = run_cli(
            ["-c", str(daemon.config), "-H", HOST, "--daemon", "--pidfile", str(pidfile)]
        )
    assert result.returncode == 1
    assert f"cannot listen on {HOST}:{daemon.port}" in result.stderr
    assert not pidfile.exists()


def test_failure_after_detaching_reaches_the_terminal(make_daemon: Callable[..., Daemon]) -> None:
    # A missing directory is only found when the daemon writes the pidfile.
    daemon = make_daemon()
    pidfile = daemon.workdir / "missing" / "phizer.pid"
    result = daemon.run(["--daemon", "--pidfile", str(pidfile)])
    assert result.returncode == 1
    assert "cannot write pidfile" in result.stderr and str(pidfile) in result.stderr
    wait_until(
        lambda: not _processes_holding(daemon.token), STOP_SECONDS, "the daemon did not exit"
    )


def test_startup_signals_stop_cleanly_and_ignore_hangup() -> None:
    # What the daemon (and the foreground process) does between binding and
    # the supervisor's own handlers: SIGHUP must not kill it, SIGTERM ends it
    # with status 0 (python-daemon's default would exit with status 1).
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 99
        try:
            hold_startup_signals()
            os.write(write_fd, b"x")
            while True:
                time.sleep(0.05)
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else 98
        finally:
            os._exit(status)
    os.close(write_fd)
    try:
        assert os.read(read_fd, 1) == b"x"
        os.kill(pid, signal.SIGHUP)
        os.kill(pid, signal.SIGTERM)  # delivered after SIGHUP: lower numbers go first
    finally:
        os.close(read_fd)
        status = _wait_exit_status(pid)
    assert status == 0


# --------------------------------------------------------------------------
# --user and --group


def _service_ids() -> tuple[int, int]:
    try:
        return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("no nobody user or nogroup group")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can reach (pytest's own tmp is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="phizer-e2e-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="starting as root needs root")


@needs_root
def test_user_and_group_run_every_process_unprivileged(
    make_daemon: Callable[..., Daemon], shared_dir: Path
) -> None:
    uid, gid = _service_ids()
    run_dir = shared_dir / "run"
    run_dir.mkdir()
    os.chown(run_dir, uid, gid)
    pidfile = run_dir / "phizer.pid"
    log = shared_dir / "phizer.log"
    daemon = make_daemon()
    args = ["--daemon", "--pidfile", str(pidfile), "--log-file", str(log)]
    _, pid = _start_and_wait(daemon, [*args, "--user", "nobody", "--group", "nogroup"], pidfile)

    for process in [pid, *_children(pid).values()]:
        assert _ids(process) == ([uid] * 4, [gid] * 4), process
    assert (pidfile.stat().st_uid, pidfile.stat().st_gid) == (uid, gid)
    assert (log.stat().st_uid, log.stat().st_gid) == (uid, gid)
    daemon.serves(log)
    # The config in root's private tmp cannot be re-read after the switch.
    assert "SIGHUP reloads will fail" in log.read_text()
    _stop(pid, pidfile)


@needs_root
def test_user_that_could_not_remove_the_pidfile_is_refused(
    make_daemon: Callable[..., Daemon],
) -> None:
    _service_ids()
    daemon = make_daemon()
    pidfile = daemon.workdir / "phizer.pid"  # in root's private tmp
    result = daemon.run(["--daemon", "--pidfile", str(pidfile), "--user", "nobody"])
    assert result.returncode == 1
    assert "could not remove the pidfile" in result.stderr
    assert not pidfile.exists()


def test_unknown_user_is_a_usage_error(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    result = daemon.run(["--user", "no-such-user-here"])
    assert result.returncode == 2
    assert "unknown user 'no-such-user-here'" in result.stderr


@needs_root
def test_user_flag_needs_root(make_daemon: Callable[..., Daemon], shared_dir: Path) -> None:
    # The interpreter may not be executable by another user (a home-directory
    # install), so the command runs in a forked copy of this process that
    # gave up root first, with its stderr on a pipe.
    uid, gid = _service_ids()
    config = shared_dir / "phizer.conf"
    shutil.copy(make_daemon().config, config)
    config.chmod(0o644)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 99
        try:
            sys.stderr = open(write_fd, "w")  # noqa: SIM115 (flushed below; the process ends)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            status = cli.main(["-c", str(config), "--user", "nobody"])
        finally:
            sys.stderr.flush()
            os._exit(status)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            stderr = pipe.read()
    finally:
        status = _wait_exit_status(pid)
    assert status == 1, stderr
    assert "phizer: --user and --group need phizer to be started as root" in stderr


def _wait_exit_status(pid: int) -> int:
    deadline = time.monotonic() + KILL_SECONDS
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the forked command did not finish")


# --------------------------------------------------------------------------
# --check-config


def test_check_config_prints_the_resolved_settings(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(
        properties={
            "client_cache_size": "25 * 1024 * 1024, # 25MB",
            "resized_cache_size": "1536 KiB",
            "no_such_option": "1",
        }
    )
    # A listener on the front port: --check-config must not try to bind it.
    with socket.socket() as busy:
        busy.bind((HOST, daemon.port))
        busy.listen()
        result = run_cli(["-c", str(daemon.config), "-H", HOST, "--check-config", "--daemon"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert str(daemon.config) in out and "is valid" in out
    for field in dataclasses.fields(Settings):
        assert f"\n{field.name} " in out, field.name
    assert "client_cache_size      = 25 MiB" in out
    assert "resized_cache_size     = 1.5 MiB (1572864 bytes)" in out
    assert f"[master] http://{HOST}:{daemon.process.master.port}/" in out
    assert f"front      {HOST}:{daemon.port}" in out
    for worker in range(1, NUM_WORKERS + 1):
        assert f"worker {worker}   127.0.0.1:{daemon.port + worker}" in out
    assert "l300   300 x 200 landscape: width 300, height cropped to at most 200" in out
    assert "sq150  150 x 150 square: the centre square, scaled to 150x150" in out
    assert "ignoring unknown option [properties] no_such_option" in out
    assert f"\nimaging engine\n  {detect().name} {PIL.__version__}, " in out
    assert result.stderr == ""
    assert not list(daemon.workdir.glob("*.pid")), "--check-config started nothing"


def test_check_config_reports_errors_with_status_2(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(properties={"image_quality": "best"})
    result = run_cli(["-c", str(daemon.config), "--check-config"])
    assert result.returncode == 2
    assert result.stdout == ""
    assert "image_quality" in result.stderr and "best" in result.stderr
