"""The supervisor: forks the front and the workers, restarts, reloads, stops them.

Tornado's ``fork_processes`` only waits on its children and forwards no
signal, so this is our own loop: signals are turned into bytes on a pipe
(``signal.set_wakeup_fd``) and the loop sleeps in ``select`` until a signal
arrives or a timer (a delayed restart, a retirement deadline) is due.
Listening sockets are bound before forking (see ``Listener`` for what
happens to them while a child is down).

The children of one config form a ``Generation``. SIGHUP starts a new
generation beside the current one and then retires the old one; SIGTERM
retires the current one. Retiring is ordered: the front first, so the
requests it still has in flight can reach workers that still accept, and
the workers once the front has gone. Each step gets ``stop_grace`` seconds
before SIGKILL.
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

from phizer.process.linux import die_with_parent
from phizer.process.listeners import Listener
from phizer.process.restarts import RestartBoard

log = logging.getLogger("phizer.supervisor")

# A child that lived at least this long before dying is restarted at once.
HEALTHY_SECONDS = 10.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STOP_GRACE_SECONDS = 10.0

ChildMain = Callable[[int, Listener], int]


@dataclass
class Plan:
    """What a generation runs: one listener per child (index 0 is the front)."""

    listeners: Sequence[Listener]
    child_main: ChildMain
    stop_grace: float = STOP_GRACE_SECONDS


@dataclass
class Child:
    index: int
    listener: Listener
    pid: int | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None


@dataclass
class Generation:
    number: int
    plan: Plan
    children: list[Child]
    # Retirement: None while current; then "front", then "workers".
    retiring: str | None = None
    kill_at: float | None = None

    def alive(self) -> list[Child]:
        return [c for c in self.children if c.pid is not None]


@dataclass
class Supervisor:
    """Keeps one process per listener alive until told to stop.

    ``reload`` (called on SIGHUP) returns the plan of the next generation;
    whatever it raises is logged and the current generation keeps serving.
    """

    listeners: Sequence[Listener]
    child_main: ChildMain
    stop_grace: float = STOP_GRACE_SECONDS
    reload: Callable[[], Plan] | None = None
    restarts: RestartBoard | None = None
    current: Generation = field(init=False)
    retiring: list[Generation] = field(default_factory=list, init=False)
    _stopping: bool = field(default=False, init=False)
    _reload_requested: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        plan = Plan(self.listeners, self.child_main, self.stop_grace)
        self.current = _generation(1, plan)

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
        for child in self.current.children:
            self._spawn(child)
        while not self._stopping:
            self._wait_for_event(self._next_timer())
            self._reap()
            if self._stopping:
                break
            if self._reload_requested:
                self._reload_requested = False
                self._reload()
            self._restart_due()
            self._advance_retirements()
        self._stop()
        return 0

    def _on_stop_signal(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def _on_hangup(self, _signum: int, _frame: object) -> None:
        self._reload_requested = True

    # -- reload -------------------------------------------------------------

    def _reload(self) -> None:
        if self.reload is None:
            log.warning("SIGHUP ignored: no config to reload")
            return
        try:
            plan = self.reload()
        except Exception as err:
            log.error("reload failed, still serving the previous config: %s", err)
            return
        try:
            plan = self._share_listeners(plan)
        except OSError as err:
            log.error("reload failed, still serving the previous config: %s", err)
            return
        old = self.current
        self.current = _generation(old.number + 1, plan)
        log.info("reloading: starting generation %d", self.current.number)
        for child in self.current.children:
            self._spawn(child)
        self._retire(old)

    def _share_listeners(self, plan: Plan) -> Plan:
        """Reuse the open sockets of addresses that did not change; bind the others."""
        open_now = {(lst.host, lst.port): lst for lst in self._all_listeners()}
        shared: list[Listener] = []
        opened: list[Listener] = []
        try:
            for listener in plan.listeners:
                existing = open_now.get((listener.host, listener.port))
                if existing is not None and existing.hold_while_down == listener.hold_while_down:
                    shared.append(existing)
                    continue
                listener.open()
                opened.append(listener)
                shared.append(listener)
        except OSError:
            for listener in opened:
                listener.close()
            raise
        return Plan(shared, plan.child_main, plan.stop_grace)

    def _all_listeners(self) -> list[Listener]:
        generations = [self.current, *self.retiring]
        seen: dict[int, Listener] = {}
        for generation in generations:
            for child in generation.children:
                seen.setdefault(id(child.listener), child.listener)
        return list(seen.values())

    # -- retiring and stopping ----------------------------------------------

    def _retire(self, generation: Generation) -> None:
        """Stop the front first; the workers follow once it has gone."""
        generation.retiring = "front"
        front = generation.children[0]
        for child in generation.children:
            child.restart_at = None
        _signal(front.pid, signal.SIGTERM)
        generation.kill_at = time.monotonic() + generation.plan.stop_grace
        self.retiring.append(generation)
        self._advance_retirements()

    def _advance_retirements(self) -> None:
        now = time.monotonic()
        for generation in list(self.retiring):
            front = generation.children[0]
            front_due = generation.kill_at is not None and now >= generation.kill_at
            if generation.retiring == "front" and (front.pid is None or front_due):
                if front.pid is not None:
                    log.error("front did not stop in time; killing it")
                    _signal(front.pid, signal.SIGKILL)
                generation.retiring = "workers"
                generation.kill_at = now + generation.plan.stop_grace
                for child in generation.children[1:]:
                    _signal(child.pid, signal.SIGTERM)
            kill_at = generation.kill_at
            if generation.retiring == "workers" and kill_at is not None and now >= kill_at:
                for child in generation.alive():
                    log.error("%s did not stop in time; killing it", role_name(child.index))
                    _signal(child.pid, signal.SIGKILL)
                generation.kill_at = None
            if not generation.alive():
                self.retiring.remove(generation)
                self._close_unused_listeners(generation)
                log.info("generation %d stopped", generation.number)

    def _close_unused_listeners(self, gone: Generation) -> None:
        in_use = {id(listener) for listener in self._all_listeners()}
        for child in gone.children:
            if id(child.listener) not in in_use:
                child.listener.close()

    def _stop(self) -> None:
        self._retire(self.current)
        while self.retiring:
            self._wait_for_event(self._next_timer())
            self._reap()
            self._advance_retirements()
        log.info("all children stopped")

    # -- children -----------------------------------------------------------

    def _next_timer(self) -> float | None:
        due = [
            c.restart_at
            for c in self.current.children
            if c.restart_at is not None and not self._stopping
        ]
        due += [g.kill_at for g in self.retiring if g.kill_at is not None]
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
            for other in self._all_listeners():
                if other is not child.listener:
                    other.close()
            status = self.current.plan.child_main(child.index, child.listener)
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
            for generation in (self.current, *self.retiring):
                child = next((c for c in generation.children if c.pid == pid), None)
                if child is not None:
                    child.pid = None
                    if generation is self.current and not self._stopping:
                        self._child_died(child, pid, status)
                    break

    def _child_died(self, child: Child, pid: int, status: int) -> None:
        if not child.listener.hold_while_down and not self._listener_shared(child.listener):
            child.listener.close()
        lived = time.monotonic() - child.started_at
        delay = self._schedule_restart(child)
        if self.restarts is not None:
            self.restarts.record(child.index)
        log.error(
            "%s (pid %d) %s after %.1fs; restarting in %.1fs",
            role_name(child.index),
            pid,
            _describe_status(status),
            lived,
            delay,
        )

    def _listener_shared(self, listener: Listener) -> bool:
        """Still used by a retiring child: closing it would refuse that child's clients."""
        return any(
            c.listener is listener and c.pid is not None for g in self.retiring for c in g.children
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
        for child in self.current.children:
            if child.restart_at is not None and child.restart_at <= now:
                self._spawn(child)


def _generation(number: int, plan: Plan) -> Generation:
    children = [Child(i, listener) for i, listener in enumerate(plan.listeners)]
    return Generation(number, plan, children)


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
