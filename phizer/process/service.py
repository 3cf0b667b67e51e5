"""Running phizer once the config is known: sockets first, then the supervisor."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from phizer import __version__
from phizer.config.loader import Config
from phizer.process.child import run_child
from phizer.process.linux import raise_open_file_limit
from phizer.process.listeners import Listener
from phizer.process.logsetup import configure_logging
from phizer.process.restarts import RestartBoard
from phizer.process.supervisor import Plan, Supervisor

log = logging.getLogger("phizer")

STOP_MARGIN_SECONDS = 2.0


def listeners_for(config: Config) -> list[Listener]:
    """The front on bind_host:bind_port, worker i on loopback only at bind_port + i."""
    settings = config.settings
    front = Listener(settings.bind_host, settings.bind_port, hold_while_down=True)
    workers = [
        Listener("127.0.0.1", settings.bind_port + i, hold_while_down=False)
        for i in range(1, settings.num_workers + 1)
    ]
    return [front, *workers]


def open_listeners(config: Config) -> list[Listener]:
    """Bind every socket (before dropping privileges); raises ``OSError``."""
    listeners = listeners_for(config)
    try:
        for listener in listeners:
            listener.open()
    except OSError:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def serve(config: Config, listeners: list[Listener], reload_config: Callable[[], Config]) -> int:
    """Run the supervisor until it is told to stop; returns the exit status.

    ``reload_config`` is called on SIGHUP; whatever it raises (a broken
    file, a port that cannot be bound) is logged and the running config
    keeps serving.
    """
    board = RestartBoard()
    _announce(config)
    _check_open_file_limit(config)

    def next_plan() -> Plan:
        fresh = reload_config()
        configure_logging(fresh.settings, "supervisor", fresh.settings.log_level)
        for warning in fresh.warnings:
            log.warning("%s", warning)
        _announce(fresh)
        return plan_for(fresh, listeners_for(fresh), board)

    plan = plan_for(config, listeners, board)
    supervisor = Supervisor(
        plan.listeners, plan.child_main, plan.stop_grace, reload=next_plan, restarts=board
    )
    return supervisor.run()


def plan_for(config: Config, listeners: list[Listener], board: RestartBoard) -> Plan:
    # Children drain for shutdown_timeout; the margin covers closing up after it.
    grace = config.settings.shutdown_timeout + STOP_MARGIN_SECONDS
    return Plan(listeners, functools.partial(run_child, config, board), grace)


def _check_open_file_limit(config: Config) -> None:
    # Client connections, worker connections, origin fetches and files.
    settings = config.settings
    wanted = settings.max_client_connections + 2 * settings.max_inflight_requests + 256
    limit = raise_open_file_limit(wanted)
    if limit < wanted:
        log.warning(
            "open file limit is %d, below the %d that max_client_connections needs;"
            " raise it (ulimit -n, LimitNOFILE=) or lower max_client_connections",
            limit,
            wanted,
        )


def _announce(config: Config) -> None:
    settings = config.settings
    log.info(
        "phizer %s on %s:%d with %d workers",
        __version__,
        settings.bind_host,
        settings.bind_port,
        settings.num_workers,
    )
