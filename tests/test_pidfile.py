"""The pidfile: held, stale, garbage, atomic writes and who may remove it.

Live processes named like phizer (or not) are real subprocesses of this
test, each stopped by its fixture.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from phizer.process import pidfile as pidfile_module
from phizer.process.pidfile import (
    PidFile,
    PidFileBusy,
    PidFileError,
    is_phizer,
    parse_pid,
)
from tests.e2e_support import pid_alive, wait_until

SLEEP = "import time; time.sleep(60)"
# Names itself like a phizer child through prctl, with nothing phizer-like in argv.
NAMED_CHILD = "from ctypes import CDLL; CDLL(None).prctl(15, b'phizer-w1', 0, 0, 0); " + SLEEP


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a Python process with the given argv[0] and code; all killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv0: str, code: str = SLEEP) -> subprocess.Popen[bytes]:
        process = subprocess.Popen([argv0, "-c", code], executable=sys.executable)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.kill()
            process.wait(timeout=10)


def _write(path: Path, text: str) -> PidFile:
    path.write_text(text)
    return PidFile(str(path))


def _dead_pid(spawn: Callable[..., subprocess.Popen[bytes]]) -> int:
    process = spawn("phizer", "pass")
    process.wait(timeout=10)
    return process.pid


# --------------------------------------------------------------------------
# Who holds the file


def test_no_file_is_free(tmp_path: Path) -> None:
    assert PidFile(str(tmp_path / "phizer.pid")).check() is None


def test_live_phizer_holds_the_file(tmp_path: Path, spawn: Callable[..., object]) -> None:
    holder = spawn("/usr/local/bin/phizer")
    pidfile = _write(tmp_path / "phizer.pid", f"{holder.pid}\n")
    with pytest.raises(PidFileBusy) as caught:
        pidfile.check()
    assert caught.value.pid == holder.pid
    assert str(holder.pid) in str(caught.value)
    assert "already running" in str(caught.value)


def test_process_named_like_a_phizer_child_holds_the_file(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    holder = spawn("python3", NAMED_CHILD)
    wait_until(
        lambda: Path(f"/proc/{holder.pid}/comm").read_text().strip() == "phizer-w1",
        10.0,
        "the child did not rename itself",
    )
    with pytest.raises(PidFileBusy):
        _write(tmp_path / "phizer.pid", str(holder.pid)).check()


def test_live_process_that_is_not_phizer_is_stale(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    other = spawn("python3")
    reason = _write(tmp_path / "phizer.pid", f"{other.pid}\n").check()
    assert reason is not None and "not phizer" in reason
    assert pid_alive(other.pid), "checking must not disturb the other process"


def test_dead_pid_is_stale(tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]]) -> None:
    pid = _dead_pid(spawn)
    reason = _write(tmp_path / "phizer.pid", f"{pid}\n").check()
    assert reason is not None and "not running" in reason


def test_zombie_phizer_is_stale(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    # Named like a phizer child, exits at once, not reaped until the fixture ends.
    zombie = spawn("python3", NAMED_CHILD.replace(SLEEP, "pass"))
    wait_until(lambda: _state(zombie.pid) == "Z", 10.0, "the child never became a zombie")
    assert Path(f"/proc/{zombie.pid}/comm").read_text().strip() == "phizer-w1"
    reason = _write(tmp_path / "phizer.pid", str(zombie.pid)).check()
    assert reason is not None and "not running" in reason


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_own_pid_is_stale(tmp_path: Path) -> None:
    reason = _write(tmp_path / "phizer.pid", str(os.getpid())).check()
    assert reason is not None and "this very process" in reason


@pytest.mark.parametrize(
    "text", ["", "\n", "abc", "-5", "0", "12 34", "1.5", "99999999999999999999", "4194305"]
)
def test_garbage_is_stale(tmp_path: Path, text: str) -> None:
    reason = _write(tmp_path / "phizer.pid", text).check()
    assert reason is not None and "holds no pid" in reason


def test_unreadable_pidfile_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "phizer.pid").mkdir()
    with pytest.raises(PidFileError, match="cannot read pidfile"):
        PidFile(str(tmp_path / "phizer.pid")).check()


@pytest.mark.parametrize(
    ("cmdline", "comm", "expected"),
    [
        (b"/usr/bin/python3\0/usr/local/bin/phizer\0-c\0x.conf\0", "phizer", True),
        (b"/venv/bin/python\0-m\0phizer\0-c\0x.conf\0", "python", True),
        (b"phizer\0", "python3.11", True),
        (b"", "phizer-front", True),
        (b"/usr/bin/vim\0/etc/phizer.conf\0", "vim", False),
        (b"/usr/bin/python3\0-m\0pytest\0tests/test_phizer.py\0", "python3", False),
        (b"/usr/sbin/nginx\0", "nginx", False),
    ],
)
def test_is_phizer(cmdline: bytes, comm: str, expected: bool) -> None:
    assert is_phizer(cmdline, comm) is expected


def test_parse_pid() -> None:
    assert parse_pid(" 1234\n") == 1234
    assert parse_pid("1234x") is None


# --------------------------------------------------------------------------
# Writing


def test_write_creates_the_file_with_the_pid(tmp_path: Path) -> None:
    path = tmp_path / "phizer.pid"
    PidFile(str(path)).write(4321)
    assert path.read_text() == "4321\n"
    assert path.stat().st_mode & 0o777 == pidfile_module.PIDFILE_MODE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phizer.pid"], "no temporary left"


def test_write_replaces_rather_than_rewrites(tmp_path: Path) -> None:
    # A new inode renamed over the old one: a reader holding the old file
    # sees the complete old content, never a truncated or partial one.
    path = tmp_path / "phizer.pid"
    path.write_text("1111\n")
    with path.open() as reader:
        before = path.stat().st_ino
        PidFile(str(path)).write(2222)
        assert reader.read() == "1111\n"
    assert path.stat().st_ino != before
    assert path.read_text() == "2222\n"


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "phizer.pid"
    path.write_text("1111\n")

    def no_space(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pidfile_module.os, "replace", no_space)
    with pytest.raises(PidFileError, match="No space left"):
        PidFile(str(path)).write(2222)
    assert path.read_text() == "1111\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phizer.pid"]


def test_write_into_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PidFileError, match="cannot write pidfile"):
        PidFile(str(tmp_path / "missing" / "phizer.pid")).write(1)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_write_chowns_to_the_service_user(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    path = tmp_path / "phizer.pid"
    PidFile(str(path)).write(1, owner=(nobody.pw_uid, nobody.pw_gid))
    assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)


# --------------------------------------------------------------------------
# Removing


def test_writer_removes_its_file(tmp_path: Path) -> None:
    path = tmp_path / "phizer.pid"
    pidfile = PidFile(str(path))
    pidfile.write(os.getpid())
    assert pidfile.remove() is True
    assert not path.exists()
    assert pidfile.remove() is False, "a second removal is a no-op"


def test_file_taken_over_by_another_process_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "phizer.pid"
    pidfile = PidFile(str(path))
    pidfile.write(os.getpid())
    path.write_text("777\n")
    assert pidfile.remove() is False
    assert path.read_text() == "777\n"


def test_file_never_written_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "phizer.pid"
    path.write_text(f"{os.getpid()}\n")
    assert PidFile(str(path)).remove() is False
    assert path.exists()


def test_already_removed_file_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "phizer.pid"
    pidfile = PidFile(str(path))
    pidfile.write(os.getpid())
    path.unlink()
    assert pidfile.remove() is False


def test_forked_child_never_removes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "phizer.pid"
    pidfile = PidFile(str(path))
    pidfile.write(os.getpid())
    child = os.fork()
    if child == 0:
        os._exit(0 if pidfile.remove() is False and path.exists() else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert path.read_text() == f"{os.getpid()}\n"
    assert pidfile.remove() is True
