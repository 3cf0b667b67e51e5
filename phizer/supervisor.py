"""The supervisor: forks the front and the workers, restarts, stops them.

Tornado's ``fork_processes`` only waits on its children and forwards no
signal, so this is our own loop: signals are turned into bytes on a pipe
(``signal.set_wakeup_fd``) and the loop sleeps in ``select`` until a signal
arrives or a delayed restart is due. Listening sockets are bound before
forking (see ``Listener`` for what happens to them while a child is down).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from phizer.linux import die_with_parent
from phizer.listeners import Listener

log = logging.getLogger("phizer.supervisor")

# A child that lived at least this long before dying is restarted at once.
HEALTHY_SECONDS = 10.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STOP_GRACE_SECONDS = 10.0

ChildMain = Callable[[int, Listener], int]


@dataclass
class Child:
    index: int
    listener: Listener
    pid: int | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Keeps one process per listener alive until told to stop."""

    listeners: Sequence[Listener]
    child_main: ChildMain
    stop_grace: float = STOP_GRACE_SECONDS
    children: list[Child] = field(init=False)
    _stopping: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.children = [Child(i, listener) for i, listener in enumerate(self.listeners)]

    def run(self) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        self._pipe = (wake_read, wake_write)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGHUP, self._on_hangup)
        for child in self.children:
            self._spawn(child)
        while not self._stopping:
            self._wait_for_event(self._next_restart_delay())
            self._reap()
            if not self._stopping:
                self._restart_due()
        self._stop_children()
        return 0

    def _on_stop_signal(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def _on_hangup(self, _signum: int, _frame: object) -> None:
        log.warning("SIGHUP ignored: restart phizer to load a new config")

    def _next_restart_delay(self) -> float | None:
        due = [c.restart_at for c in self.children if c.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _wait_for_event(self, timeout: float | None) -> None:
        """Sleep until a signal (SIGCHLD included) arrives or ``timeout`` passes."""
        wake_read = self._pipe[0]
        select.select([wake_read], [], [], timeout)
        try:
            while os.read(wake_read, 512):
                pass
        except BlockingIOError:
            pass

    def _spawn(self, child: Child) -> None:
        child.restart_at = None
        child.started_at = time.monotonic()
        try:
            child.listener.open()
        except OSError as err:
            log.error("%s: %s", role_name(child.index), err)
            self._schedule_restart(child)
            return
        supervisor_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._become_child(child, supervisor_pid)
        child.pid = pid
        log.info("started %s (pid %d)", role_name(child.index), pid)

    def _become_child(self, child: Child, supervisor_pid: int) -> None:
        status = 1
        try:
            die_with_parent()
            if os.getppid() != supervisor_pid:
                os._exit(0)  # the supervisor died before we could ask to follow it
            signal.set_wakeup_fd(-1)
            for fd in self._pipe:
                os.close(fd)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            for other in self.children:
                if other is not child:
                    other.listener.close()
            status = self.child_main(child.index, child.listener)
        except BaseException:
            log.exception("%s failed", role_name(child.index))
        finally:
            logging.shutdown()
            os._exit(status)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = next((c for c in self.children if c.pid == pid), None)
            if child is not None:
                child.pid = None
                self._child_died(child, pid, status)

    def _child_died(self, child: Child, pid: int, status: int) -> None:
        if self._stopping:
            return
        if not child.listener.hold_while_down:
            child.listener.close()
        lived = time.monotonic() - child.started_at
        delay = self._schedule_restart(child)
        log.error(
            "%s (pid %d) %s after %.1fs; restarting in %.1fs",
            role_name(child.index),
            pid,
            _describe_status(status),
            lived,
            delay,
        )

    def _schedule_restart(self, child: Child) -> float:
        """Restart at once after a long life; back off exponentially after short ones."""
        if time.monotonic() - child.started_at >= HEALTHY_SECONDS:
            child.quick_deaths = 0
            delay = 0.0
        else:
            child.quick_deaths += 1
            delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (child.quick_deaths - 1))
        child.restart_at = time.monotonic() + delay
        return delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None and child.restart_at <= now:
                self._spawn(child)

    def _stop_children(self) -> None:
        for child in self.children:
            _signal(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        killed = False
        while True:
            self._reap()
            alive = [c for c in self.children if c.pid is not None]
            if not alive:
                break
            if not killed and time.monotonic() >= deadline:
                for child in alive:
                    log.error("%s did not stop in time; killing it", role_name(child.index))
                    _signal(child.pid, signal.SIGKILL)
                killed = True
            self._wait_for_event(0.1)
        log.info("all children stopped")


def _signal(pid: int | None, sig: int) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def role_name(index: int) -> str:
    return "front" if index == 0 else f"worker-{index}"


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"
