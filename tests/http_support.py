"""Shared pieces for the HTTP tests: a scriptable stub server, configs, servers.

``StubServer`` plays an origin (or a fake worker): it serves bytes from a
dict, counts every request per path, and can be told to answer a status,
to redirect, or to hold a request (the server's own behaviour: the handler
waits, the test does not sleep). ``ServerPool`` starts extra Tornado
HTTPServers on unused loopback ports inside a test's IOLoop and stops them,
and closes the curl clients the tests create.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import mimetypes
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote

from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.httpclient import HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.testing import AsyncHTTPTestCase, bind_unused_port
from tornado.web import Application, RequestHandler

from phizer.config.loader import Config, OriginSpec, Settings
from phizer.config.sizes import parse_size_spec
from phizer.web.front import FrontState, make_front_app
from phizer.web.worker import WorkerState, make_origin_set, make_worker_app

LOOPBACK = "127.0.0.1"

# Size codes used by the HTTP tests (all below the default max_dimension).
DEFAULT_SIZES: Mapping[str, str] = {
    "s100": "100x100",
    "m200": "200x200 max",
    "sq100": "100 square",
    "p100": "100x200 portrait",
    "l200": "200x100 landscape",
    "c1000": "1000x1000",
    "huge": "4000x4000",
}


# --- waiting for things to happen ---------------------------------------------


class Arrivals:
    """Things that happened, in order, and a way to wait until enough have."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: Any) -> None:
        self.items.append(item)
        for waiter in list(self._waiters):
            count, future = waiter
            if len(self.items) >= count:
                self._waiters.remove(waiter)
                if not future.done():
                    future.set_result(None)

    async def wait_for(self, count: int) -> None:
        if len(self.items) >= count:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, future))
        await future


def spy_on(obj: Any, method: str) -> Arrivals:
    """Record the first argument of every call of ``obj.method`` (a coroutine)
    as it is called, before the real method runs."""
    real = getattr(obj, method)
    calls = Arrivals()

    async def spy(*args: Any, **kwargs: Any) -> Any:
        calls.add(args[0] if args else None)
        return await real(*args, **kwargs)

    setattr(obj, method, spy)
    return calls


# --- the stub server -------------------------------------------------------


@dataclass
class StubServer:
    """Serves ``files`` (decoded path without the leading ``/`` -> bytes).

    Per path (or for every path with ``"*"``) it can answer ``statuses``,
    redirect (``redirects``) or hold the request for ``delays`` seconds or
    until ``release()``. ``default`` answers paths that are not in ``files``.
    """

    files: dict[str, bytes] = field(default_factory=dict)
    default: bytes | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    uris: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    user_agents: list[str] = field(default_factory=list)
    # The If-None-Match each request carried (Tornado answers 304 on a match).
    conditions: list[str | None] = field(default_factory=list)
    port: int = 0  # set by ServerPool.stub
    arrivals: Arrivals = field(default_factory=lambda: Arrivals())
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def app(self) -> Application:
        return Application([(r"/.*", _StubHandler, {"stub": self})])

    def release(self) -> None:
        """Let every held request (and every later one) go on at once."""
        self._released.set()

    async def wait_for_requests(self, count: int) -> None:
        """Return once ``count`` requests have arrived in total."""
        await self.arrivals.wait_for(count)

    def _record(self, method: str, uri: str, path: str, user_agent: str) -> None:
        self.counts[path] += 1
        self.uris.append(uri)
        self.methods.append(method)
        self.user_agents.append(user_agent)
        self.arrivals.add(path)

    def _lookup(self, table: Mapping[str, Any], path: str) -> Any:
        return table.get(path, table.get("*"))

    async def _hold(self, path: str) -> None:
        delay = self._lookup(self.delays, path)
        if delay is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), delay)


class _StubHandler(RequestHandler):
    def initialize(self, stub: StubServer) -> None:
        self.stub = stub

    async def get(self) -> None:
        stub = self.stub
        path = unquote(self.request.path.lstrip("/"))
        stub._record(
            self.request.method or "",
            self.request.uri or "",
            path,
            self.request.headers.get("User-Agent", ""),
        )
        stub.conditions.append(self.request.headers.get("If-None-Match"))
        await stub._hold(path)
        location = stub._lookup(stub.redirects, path)
        if location is not None:
            self.redirect(location)
            return
        status = stub._lookup(stub.statuses, path)
        if status is not None:
            self.set_status(status)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"stub says {status} for {path}\n")
            return
        body = stub.files.get(path, stub.default)
        if body is None:
            self.set_status(404)
            self.finish("no such file\n")
            return
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        self.set_header("Content-Type", content_type)
        self.finish(body)

    async def head(self) -> None:
        await self.get()


# --- configs ----------------------------------------------------------------


def http_origin(name: str, port: int, root: str = "/") -> OriginSpec:
    return OriginSpec(name, host=LOOPBACK, port=port, root=root)


def directory_origin(name: str, directory: str) -> OriginSpec:
    return OriginSpec(name, directory=directory)


def make_config(
    master: OriginSpec | None,
    slaves: tuple[OriginSpec, ...] = (),
    sizes: Mapping[str, str] = DEFAULT_SIZES,
    **settings: Any,
) -> Config:
    """A Config as ``load_config`` would build it, without a file."""
    specs = {code: parse_size_spec(code, raw)[0] for code, raw in sizes.items()}
    settings.setdefault("num_workers", 1)
    settings.setdefault("origin_connect_timeout", 2.0)
    settings.setdefault("origin_timeout", 5.0)
    return Config(Settings(**settings), master, tuple(slaves), MappingProxyType(specs))


# --- servers and clients -----------------------------------------------------


class ServerPool:
    """HTTPServers on unused loopback ports and curl clients, all closed by ``close``."""

    def __init__(self, io_loop: IOLoop) -> None:
        self.io_loop = io_loop
        self._servers: list[HTTPServer] = []
        self._clients: list[CurlAsyncHTTPClient] = []
        self._sockets: list[socket.socket] = []
        self._stubs: list[StubServer] = []

    def start(self, app: Application, address: str = LOOPBACK) -> int:
        """Serve ``app`` on a fresh port of ``address`` (loopback); returns the port."""
        sock, port = bind_unused_port(address=address)
        self._serve(app, sock)
        return port

    def reserve_port(self) -> tuple[socket.socket, int]:
        """A port that is bound but not listening: connections are refused
        at once, and nobody else can take the port until ``serve_on``."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, 0))
        self._sockets.append(sock)
        return sock, sock.getsockname()[1]

    def serve_on(self, sock: socket.socket, app: Application) -> None:
        """Start listening on a socket from ``reserve_port``."""
        sock.setblocking(False)
        sock.listen(128)
        self._sockets.remove(sock)
        self._serve(app, sock)

    def _serve(self, app: Application, sock: socket.socket) -> None:
        server = HTTPServer(app)
        server.add_sockets([sock])
        self._servers.append(server)

    def stub(
        self, stub: StubServer | None = None, address: str = LOOPBACK
    ) -> tuple[StubServer, int]:
        """Start a stub server; returns it and its port."""
        stub = stub or StubServer()
        self._stubs.append(stub)
        stub.port = self.start(stub.app(), address)
        return stub, stub.port

    def client(self, max_clients: int = 50) -> CurlAsyncHTTPClient:
        client = CurlAsyncHTTPClient(force_instance=True, max_clients=max_clients)
        self._clients.append(client)
        return client

    def worker_app(self, config: Config) -> tuple[Application, WorkerState]:
        """``make_worker_app`` with an origin client that this pool closes."""
        settings = config.settings
        client = self.client(settings.max_inflight_requests)
        state = WorkerState(config, make_origin_set(config, client))
        return make_worker_app(config, state), state

    def worker(self, config: Config) -> tuple[WorkerState, int]:
        app, state = self.worker_app(config)
        return state, self.start(app)

    def front_app(self, config: Config, worker_urls: list[str]) -> tuple[Application, FrontState]:
        state = FrontState(config, worker_urls, self.client(100), relay_client=self.client(100))
        return make_front_app(config, state), state

    def close(self) -> None:
        for stub in self._stubs:
            stub.release()
        for server in self._servers:
            server.stop()
        for server in self._servers:
            self.io_loop.run_sync(server.close_all_connections, timeout=5)
        for client in self._clients:
            client.close()
        for sock in self._sockets:
            sock.close()
        self._servers.clear()
        self._clients.clear()
        self._sockets.clear()


class PoolTestCase(AsyncHTTPTestCase):
    """An AsyncHTTPTestCase whose extra servers live in ``self.pool``
    (created by ``get_app``) and are all stopped after each test."""

    pool: ServerPool

    def tearDown(self) -> None:
        self.pool.close()
        super().tearDown()

    def get(self, path: str, base: str | None = None, **kwargs: object) -> HTTPResponse:
        target = base + path if base else self.get_url(path)
        return self.fetch(target, raise_error=False, **kwargs)

    async def aget(self, path: str, base: str | None = None) -> HTTPResponse:
        target = base + path if base else self.get_url(path)
        return await self.http_client.fetch(target, raise_error=False)


def url(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


def count_requests(app: Application) -> list[tuple[str, str, int]]:
    """Record (method, uri, status) of every request ``app`` finishes."""
    seen: list[tuple[str, str, int]] = []
    inner: Callable[[RequestHandler], None] | None = app.settings.get("log_function")

    def log_function(handler: RequestHandler) -> None:
        seen.append((handler.request.method or "", handler.request.uri or "", handler.get_status()))
        if inner is not None:
            inner(handler)

    app.settings["log_function"] = log_function
    return seen
