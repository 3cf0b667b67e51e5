"""The life of one forked child: the front (index 0) or worker i."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Sequence

from tornado.httpserver import HTTPServer

from phizer.config import Config
from phizer.front import make_front_app
from phizer.linux import set_process_name
from phizer.listeners import Listener
from phizer.logsetup import configure_logging
from phizer.restarts import RestartBoard
from phizer.supervisor import role_name
from phizer.worker import make_worker_app

log = logging.getLogger("phizer.child")

MAX_HEADER_BYTES = 16 * 1024
# GET/HEAD carry no body; a small one is read so other methods still get 405.
MAX_BODY_BYTES = 64 * 1024
IDLE_CONNECTION_SECONDS = 60.0


def run_child(config: Config, restarts: RestartBoard, index: int, listener: Listener) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit status."""
    settings = config.settings
    set_process_name(f"phizer-{'front' if index == 0 else f'w{index}'}")
    level = settings.log_level if index == 0 else settings.log_level_worker
    configure_logging(settings, role_name(index), level)
    asyncio.run(_serve(config, restarts, index, listener.sockets))
    return 0


async def _serve(
    config: Config, restarts: RestartBoard, index: int, sockets: Sequence[socket.socket]
) -> None:
    if index == 0:
        app = make_front_app(config, restarts=restarts)
        keep_alive = config.settings.keep_alive
    else:
        app = make_worker_app(config)
        keep_alive = True  # the front reuses its connections to workers
    server = HTTPServer(
        app,
        no_keep_alive=not keep_alive,
        max_header_size=MAX_HEADER_BYTES,
        max_body_size=MAX_BODY_BYTES,
        idle_connection_timeout=IDLE_CONNECTION_SECONDS,
        body_timeout=IDLE_CONNECTION_SECONDS,
    )
    server.add_sockets(sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("%s serving", role_name(index))
    await stop.wait()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # A second signal while closing (Ctrl-C reaches the whole process
        # group) must not interrupt the shutdown.
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)
    server.stop()
    await server.close_all_connections()
