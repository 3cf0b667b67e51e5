"""The life of one forked child: the front (index 0) or worker i."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Sequence
from typing import Any

from tornado import httputil
from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream

from phizer.config.loader import Config
from phizer.process.heaptrim import HeapTrim, decode_memory
from phizer.process.linux import set_process_name, tune_allocator
from phizer.process.listeners import Listener
from phizer.process.logsetup import configure_logging
from phizer.process.restarts import RestartBoard
from phizer.process.supervisor import role_name
from phizer.web.front import WORKER_CLIENTS, FrontState, make_front_app
from phizer.web.handler import accept_long_queries
from phizer.web.inflight import InFlight
from phizer.web.protocol import worker_urls
from phizer.web.worker import WorkerState, make_origin_set, make_worker_app

log = logging.getLogger("phizer.child")

MAX_HEADER_BYTES = 16 * 1024
# GET/HEAD carry no body; a small one is read so other methods still get 405.
MAX_BODY_BYTES = 64 * 1024
FRONT_MMAP_THRESHOLD = 1 << 20
# The front keeps idle connections to workers open for reuse.
WORKER_IDLE_SECONDS = 60.0


def run_child(config: Config, restarts: RestartBoard, index: int, listener: Listener) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit status."""
    settings = config.settings
    set_process_name(f"phizer-{'front' if index == 0 else f'w{index}'}")
    # The front's buffers are small; a worker's decode buffers (tens of MB)
    # are kept for the next decode (phizer.heaptrim says how many, and when
    # they go back).
    if index == 0:
        tune_allocator(FRONT_MMAP_THRESHOLD)
    else:
        memory = decode_memory(settings.decode_memory_reserve)
        tune_allocator(memory.mmap_threshold, memory.trim_threshold)
    level = settings.log_level if index == 0 else settings.log_level_worker
    configure_logging(settings, role_name(index), level)
    asyncio.run(_serve(config, restarts, index, listener.sockets))
    return 0


async def _serve(
    config: Config, restarts: RestartBoard, index: int, sockets: Sequence[socket.socket]
) -> None:
    settings = config.settings
    accept_long_queries()
    state: FrontState | WorkerState
    if index == 0:
        client = CurlAsyncHTTPClient(force_instance=True, max_clients=WORKER_CLIENTS)
        urls = worker_urls(settings.bind_port, settings.num_workers)
        state = FrontState(config, urls, client, restarts)
        app = make_front_app(config, state)
        state.start()
        keep_alive = settings.keep_alive
        # Clients come from outside: a slow one is cut off after client_timeout.
        client_timeout = settings.client_timeout
    else:
        state = worker = WorkerState(config, make_origin_set(config))
        app = make_worker_app(config, worker)
        HeapTrim(
            worker.in_flight,
            lambda: worker.originals.memory.size + worker.decoded.size,
            decode_memory(settings.decode_memory_reserve).max_kept_free,
        ).start()
        keep_alive = True  # the front reuses its connections to workers
        client_timeout = max(settings.client_timeout, WORKER_IDLE_SECONDS)
    server = BoundedHTTPServer(
        app,
        max_connections=settings.max_client_connections,
        no_keep_alive=not keep_alive,
        max_header_size=MAX_HEADER_BYTES,
        max_body_size=MAX_BODY_BYTES,
        # Tornado applies this to the whole request head too (slowloris).
        idle_connection_timeout=client_timeout,
        body_timeout=client_timeout,
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
    await _drain(server, state.in_flight, settings.shutdown_timeout, index)
    # Cache write-backs still pending go to the tiers before the process ends.
    await state.close(settings.shutdown_timeout)


async def _drain(server: HTTPServer, in_flight: InFlight, timeout: float, index: int) -> None:
    """Stop accepting, let requests in flight finish, then close every connection."""
    server.stop()
    in_flight.draining = True
    if in_flight.count:
        log.info("%s finishing %d requests", role_name(index), in_flight.count)
    if not await in_flight.wait_idle(timeout):
        log.warning(
            "%s: %d requests still running after shutdown_timeout (%.0fs); closing them",
            role_name(index),
            in_flight.count,
            timeout,
        )
    await server.close_all_connections()


class BoundedHTTPServer(HTTPServer):
    """An HTTPServer that closes new connections beyond ``max_connections``.

    Past the limit, refusing a newcomer at once keeps file descriptors and
    memory for the connections already being served.
    """

    def initialize(self, *args: Any, max_connections: int = 4096, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections
        self.open_connections = 0
        # Without keep-alive, the connections that had their one request.
        self.one_request = bool(kwargs.get("no_keep_alive"))
        self._served: set[object] = set()

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        """Without keep-alive, a request pipelined behind the first (already
        answered with ``Connection: close``) is dropped unread, unanswered
        and unlogged: Tornado would read it from its buffer and serve it."""
        if self.one_request:
            if server_conn in self._served:
                return _Dropped(request_conn)
            self._served.add(server_conn)
        return super().start_request(server_conn, request_conn)

    def handle_stream(self, stream: IOStream, address: tuple) -> None:
        if self.open_connections >= self.max_connections:
            stream.close()
            return
        self.open_connections += 1
        super().handle_stream(stream, address)

    def on_close(self, server_conn: object) -> None:
        self.open_connections -= 1
        self._served.discard(server_conn)
        super().on_close(server_conn)


class _Dropped(httputil.HTTPMessageDelegate):
    def __init__(self, connection: httputil.HTTPConnection) -> None:
        self.connection = connection

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> None:
        self.connection.finish()
