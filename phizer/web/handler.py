"""What the front and the workers share: the base handler and the access log.

``BaseHandler`` is the one place where errors become responses: a
``PhizerError`` becomes its status with its short message, anything else a
500 with a generic message. No traceback ever reaches a client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from tornado.web import HTTPError, RequestHandler

from phizer import __version__
from phizer.errors import BadRequest, PhizerError
from phizer.web.accesslog import RECORD_ATTR, AccessEntry, client_address, render_text

access_log = logging.getLogger("phizer.access")
SERVER = f"phizer/{__version__}"


class InFlight:
    """The requests this process is serving; a stopping server waits for none."""

    def __init__(self) -> None:
        self.count = 0
        self.finished = 0
        self.last_finish = 0.0  # time.monotonic() of the last request's end
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count = max(0, self.count - 1)
        self.finished += 1
        self.last_finish = time.monotonic()
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True when every request finished within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


class BaseHandler(RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD")  # type: ignore[assignment]

    def initialize(self, **_: Any) -> None:
        self.fetch_ms: float | None = None
        self.resize_ms: float | None = None
        self.cache_result = "-"
        self.worker: int | None = None  # 1-based, set once the front routes to a worker
        self.bytes_sent = 0
        self._in_flight: InFlight | None = None

    def prepare(self) -> None:
        in_flight = self.application.settings.get("in_flight")
        if isinstance(in_flight, InFlight):
            in_flight.enter()
            self._in_flight = in_flight
            if in_flight.draining:
                # Keep-alive clients reconnect to a process that is not stopping.
                self.set_header("Connection", "close")

    def on_finish(self) -> None:
        if self._in_flight is not None:
            self._in_flight.leave()
            self._in_flight = None
        metrics = self.application.settings.get("metrics")  # metrics.ProcessMetrics
        if metrics is not None:
            metrics.request_finished(self.get_status(), self.request.request_time())

    def set_default_headers(self) -> None:
        self.set_header("Server", SERVER)

    def compute_etag(self) -> str | None:
        return None  # ETags are set explicitly where they are strong and cheap

    def flush(self, include_footers: bool = False) -> asyncio.Future[None]:
        # Counted here because this is where Tornado drops a HEAD answer's body.
        if self.request.method != "HEAD":
            self.bytes_sent += sum(len(chunk) for chunk in self._write_buffer)
        return super().flush(include_footers)

    async def get(self, *_: str) -> None:
        try:
            await self.serve()
        except PhizerError as err:
            self.fail(err)

    async def head(self, *_: str) -> None:
        await self.get()

    async def serve(self) -> None:
        raise NotImplementedError

    def request_path(self) -> str:
        """The raw path as text: Tornado reads the request line as latin-1, so
        unencoded UTF-8 bytes from a lax client are turned back into UTF-8."""
        path = self.request.path
        if path.isascii():
            return path
        try:
            return path.encode("latin-1").decode("utf-8")
        except UnicodeError:
            raise BadRequest("path is not valid UTF-8") from None

    def fail(self, err: PhizerError) -> None:
        if self._finished:
            return
        self.clear()
        self.set_status(err.status)
        if err.status == 503:
            self.set_header("Retry-After", "1")  # a busy or restarting worker
        self._write_message(str(err))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Reached for Tornado's own errors (405, malformed requests) and bugs.
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        if isinstance(error, HTTPError) and status_code < 500:
            message = self._reason.lower()
        else:
            message = "internal error"
        if status_code == 405:
            self.set_header("Allow", "GET, HEAD")
        self._write_message(message)

    def _write_message(self, message: str) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(message + "\n")


def log_request(handler: RequestHandler) -> None:
    """The front's line per request; the level follows the status like Tornado's."""
    status = handler.get_status()
    if status < 400:
        level = logging.INFO
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    _log_access(handler, level)


def log_worker_request(handler: RequestHandler) -> None:
    """Workers' lines: the front logs every request already, so only
    worker-side failures stand out; the rest is for DEBUG."""
    _log_access(handler, logging.ERROR if handler.get_status() >= 500 else logging.DEBUG)


def _log_access(handler: RequestHandler, level: int) -> None:
    if access_log.isEnabledFor(level):
        entry = access_entry(handler)
        access_log.log(level, render_text(entry), extra={RECORD_ATTR: entry})


def access_entry(handler: RequestHandler) -> AccessEntry:
    """What the access line says about a finished request."""
    request = handler.request
    cache = getattr(handler, "cache_result", "-")
    return AccessEntry(
        method=request.method or "-",
        path=request.uri or "-",
        status=handler.get_status(),
        bytes=getattr(handler, "bytes_sent", 0),
        total_ms=1000.0 * request.request_time(),
        fetch_ms=getattr(handler, "fetch_ms", None),
        resize_ms=getattr(handler, "resize_ms", None),
        cache=None if cache == "-" else cache,
        worker=getattr(handler, "worker", None),
        client=client_address(
            request.remote_ip or "-",
            request.headers.get_list("X-Forwarded-For"),
            handler.settings.get("trusted_proxies", ()),
        ),
    )
