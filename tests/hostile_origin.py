"""A scripted origin: per path, a behaviour a real (or broken, or hostile) server has.

``HostileOrigin`` runs ``ThreadingHTTPServer`` on 127.0.0.1 (free port) in a
thread of the test process. Each path is scripted with one behaviour:
serve bytes with any status and Content-Type (or none), redirect, reset
the connection mid-body, never answer, declare a huge Content-Length,
or stream an endless chunked body. Unscripted paths are 404. Requests
are counted per (decoded) path.

Connections that are held open (``NeverAnswer``, ``HugeLength``) end when
the client hangs up or when the server stops: ``stop`` wakes every held
connection, shuts every open socket down and joins every handler thread,
so nothing outlives it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from tests.ports import HOST, serve_in_thread

HOLD_POLL_SECONDS = 0.05
JOIN_SECONDS = 5.0


# --------------------------------------------------------------------------
# Behaviours (plain data, so the corpus can describe and save them)


@dataclass(frozen=True)
class Serve:
    """Answer ``status`` with ``body``; ``content_type`` None sends no Content-Type."""

    body: bytes
    status: int = 200
    content_type: str | None = "application/octet-stream"


@dataclass(frozen=True)
class Redirect:
    """Answer ``status`` with a Location to ``path`` on the peer origin (or on
    this one when ``other_host`` is false)."""

    path: str
    status: int = 302
    other_host: bool = True


@dataclass(frozen=True)
class ResetMidBody:
    """Declare ``len(body)``, send the first ``sent`` bytes, then reset (RST)."""

    body: bytes
    sent: int


@dataclass(frozen=True)
class NeverAnswer:
    """Read the request and say nothing until the client gives up or we stop."""


@dataclass(frozen=True)
class HugeLength:
    """Declare ``declared`` bytes, send ``body`` and hold the connection."""

    declared: int
    body: bytes


@dataclass(frozen=True)
class SlowChunked:
    """A chunked body without Content-Length, ``chunk_size`` bytes every
    ``pause`` seconds, up to ``total`` bytes (or until the client hangs up)."""

    total: int
    chunk_size: int = 128 * 1024
    pause: float = 0.005
    prefix: bytes = b""


Behaviour = Serve | Redirect | ResetMidBody | NeverAnswer | HugeLength | SlowChunked


@dataclass
class Stream:
    """What a ``SlowChunked`` answer managed to send."""

    sent: int = 0
    completed: bool = False


# --------------------------------------------------------------------------
# The server


class HostileOrigin:
    def __init__(self, redirect_base: str | None = None) -> None:
        """``redirect_base`` (``http://host:port``) is where ``Redirect`` with
        ``other_host`` points."""
        self.redirect_base = redirect_base
        self._scripts: dict[str, Behaviour] = {}
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._streams: dict[str, Stream] = {}
        self._connections: set[socket.socket] = set()
        self._handlers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle
    def start(self) -> HostileOrigin:
        server = ThreadingHTTPServer((HOST, 0), _make_handler(self))
        server.daemon_threads = False  # server_close joins them: no thread outlives stop
        self._server = server
        self._thread = serve_in_thread(server)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # unblocks handlers reading or writing
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=JOIN_SECONDS)
        self._server = self._thread = None

    @property
    def port(self) -> int:
        assert self._server is not None, "origin not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def live_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def live_handlers(self) -> int:
        """Handler threads of this origin still running (0 after ``stop``)."""
        with self._lock:
            return sum(thread.is_alive() for thread in self._handlers)

    # -- scripting
    def script(self, path: str, behaviour: Behaviour) -> str:
        """Give ``path`` (decoded, relative to the root) a behaviour; returns it."""
        with self._lock:
            self._scripts[path.lstrip("/")] = behaviour
        return path

    def add(self, name: str, data: bytes) -> str:
        """Serve ``data`` as ``name`` (the interface ``PhizerProcess`` expects)."""
        return self.script(name, Serve(data))

    # -- counters
    def count(self, path: str) -> int:
        with self._lock:
            return self._counts[path.lstrip("/")]

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def stream(self, path: str) -> Stream | None:
        with self._lock:
            return self._streams.get(path.lstrip("/"))

    # -- used by the handler
    def _arrive(self, path: str, connection: socket.socket) -> Behaviour | None:
        with self._lock:
            self._counts[path] += 1
            self._connections.add(connection)
            self._handlers.append(threading.current_thread())
            return self._scripts.get(path)

    def _leave(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _stream_for(self, path: str) -> Stream:
        with self._lock:
            stream = self._streams[path] = Stream()
            return stream


def _make_handler(origin: HostileOrigin) -> type[BaseHTTPRequestHandler]:
    class HostileHandler(BaseHTTPRequestHandler):
        server_version = "hostile-origin/1"
        timeout = 30  # a client that connects and sends nothing cannot pin a thread

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path, errors="replace").lstrip("/")
            behaviour = origin._arrive(path, self.connection)
            try:
                self._answer(path, behaviour)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up: that is its right
            finally:
                origin._leave(self.connection)

        def _answer(self, path: str, behaviour: Behaviour | None) -> None:
            match behaviour:
                case None:
                    self._send(404, b"not here\n", "text/plain")
                case Serve(body, status, content_type):
                    self._send(status, body, content_type)
                case Redirect(target, status, other_host):
                    base = origin.redirect_base if other_host else ""
                    self.send_response(status)
                    self.send_header("Location", f"{base}/{target.lstrip('/')}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                case ResetMidBody(body, sent):
                    self._reset_mid_body(body, sent)
                case NeverAnswer():
                    self._hold()
                case HugeLength(declared, body):
                    self._head(200, declared, "image/jpeg")
                    self.wfile.write(body)
                    self._hold()
                case SlowChunked():
                    self._chunked(origin._stream_for(path), behaviour)

        def _head(self, status: int, length: int | None, content_type: str | None) -> None:
            self.send_response(status)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()

        def _send(self, status: int, body: bytes, content_type: str | None) -> None:
            self._head(status, len(body), content_type)
            self.wfile.write(body)

        def _reset_mid_body(self, body: bytes, sent: int) -> None:
            self._head(200, len(body), "image/jpeg")
            self.wfile.write(body[:sent])
            self.wfile.flush()
            # Linger 0: close sends RST instead of FIN. The read buffer holds
            # a reference to the socket, so it goes first or close is deferred.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
            self.close_connection = True

        def _hold(self) -> None:
            """Until the client hangs up or the origin stops."""
            self.wfile.flush()
            while not origin._stopping.is_set():
                readable, _, _ = select.select([self.connection], [], [], HOLD_POLL_SECONDS)
                if readable:
                    try:
                        if not self.connection.recv(4096):
                            return
                    except OSError:
                        return

        def _chunked(self, stream: Stream, plan: SlowChunked) -> None:
            self.protocol_version = "HTTP/1.1"  # chunked needs 1.1
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            pending = plan.prefix
            while stream.sent < plan.total and not origin._stopping.is_set():
                size = min(plan.chunk_size, plan.total - stream.sent)
                chunk = (pending + bytes(size))[:size]
                pending = pending[size:]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                stream.sent += len(chunk)
                origin._stopping.wait(plan.pause)  # paced, so the client sees a stream
            if stream.sent >= plan.total:
                self.wfile.write(b"0\r\n\r\n")
                stream.completed = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    return HostileHandler
