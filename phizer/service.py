"""Running phizer once the config is known: sockets first, then the supervisor."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from phizer import __version__
from phizer.child import run_child
from phizer.config import Config
from phizer.listeners import Listener
from phizer.restarts import RestartBoard
from phizer.supervisor import Supervisor

log = logging.getLogger("phizer")


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


def serve(
    config: Config, listeners: list[Listener], reload_config: Callable[[], Config]
) -> int:
    """Run the supervisor until it is told to stop; returns the exit status.

    ``reload_config`` is called on SIGHUP; a ``ConfigError`` it raises is
    logged and the running config keeps serving.
    """
    settings = config.settings
    log.info(
        "phizer %s on %s:%d with %d workers",
        __version__,
        settings.bind_host,
        settings.bind_port,
        settings.num_workers,
    )
    board = RestartBoard()
    child_main = functools.partial(run_child, config, board)
    return Supervisor(listeners, child_main).run()
