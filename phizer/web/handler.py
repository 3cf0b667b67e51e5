"""What the front and the workers share: the base handler and the access log.

``BaseHandler`` is the one place where errors become responses: a
``PhizerError`` becomes its status with its short message, anything else a
500 with a generic message. No traceback ever reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Protocol

from tornado import httputil
from tornado.escape import utf8
from tornado.web import HTTPError, RequestHandler

from phizer import __version__
from phizer.errors import BadRequest, PhizerError
from phizer.web.accesslog import RECORD_ATTR, AccessEntry, client_address, render_text
from phizer.web.inflight import InFlight

access_log = logging.getLogger("phizer.access")
SERVER = f"phizer/{__version__}"
Networks = Sequence[IPv4Network | IPv6Network]


class RequestObserver(Protocol):
    def request_finished(self, status: int, seconds: float) -> None: ...


@dataclass(frozen=True)
class HandlerContext:
    """What every handler of one process shares, given through ``initialize``."""

    in_flight: InFlight = field(default_factory=InFlight)
    metrics: RequestObserver | None = None
    trusted_proxies: Networks = ()


class BaseHandler(RequestHandler):
    """Handlers raise ``PhizerError`` (or Tornado's ``HTTPError``);
    ``write_error`` is the one place that turns them into responses."""

    SUPPORTED_METHODS: tuple[str, ...] = ("GET", "HEAD")

    def initialize(self, context: HandlerContext | None = None) -> None:
        self.context = context or HandlerContext()
        self.fetch_ms: float | None = None
        self.resize_ms: float | None = None
        self.cache_result = "-"
        self.worker: int | None = None  # 1-based, set once the front routes to a worker
        self.bytes_sent = 0
        self._entered = False

    def prepare(self) -> None:
        in_flight = self.context.in_flight
        in_flight.enter()
        self._entered = True
        if in_flight.draining:
            # Keep-alive clients reconnect to a process that is not stopping.
            self.set_header("Connection", "close")

    def on_finish(self) -> None:
        if self._entered:
            self._entered = False
            self.context.in_flight.leave()
        if self.context.metrics is not None:
            self.context.metrics.request_finished(self.get_status(), self.request.request_time())

    def set_default_headers(self) -> None:
        self.set_header("Server", SERVER)

    def compute_etag(self) -> str | None:
        return None  # ETags are set explicitly where they are strong and cheap

    def write(self, chunk: str | bytes | dict[str, Any]) -> None:
        # Counted here: a HEAD answer's body is dropped before it is sent.
        if self.request.method != "HEAD" and isinstance(chunk, bytes | str):
            self.bytes_sent += len(utf8(chunk))
        super().write(chunk)

    async def get(self, *_: str) -> None:
        await self.serve()

    async def head(self, *_: str) -> None:
        await self.serve()

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

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # A PhizerError is an answer, not a fault: the access line records it.
        if not isinstance(value, PhizerError):
            super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        if isinstance(error, PhizerError):
            status_code, message = error.status, str(error)
            self.set_status(status_code)
            if status_code == 503:
                self.set_header("Retry-After", "1")  # a busy or restarting worker
        elif status_code < 500:
            # Tornado's own errors (405, malformed requests): its reason phrase.
            reason = error.reason if isinstance(error, HTTPError) else None
            message = (reason or httputil.responses.get(status_code, "error")).lower()
        else:
            message = "internal error"  # a bug: never its details
        if status_code == 405:
            self.set_header("Allow", "GET, HEAD")
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(message + "\n")


class UnroutableHandler(BaseHandler):
    """What no route takes: a target that is not a path (``GET http://host/x``,
    ``OPTIONS *``, ``CONNECT host:443``) gets phizer's own answer."""

    async def serve(self) -> None:
        raise BadRequest("request target must be a path")


def unroutable(context: HandlerContext) -> dict[str, Any]:
    """The Application settings that send unroutable targets to ``UnroutableHandler``."""
    return {
        "default_handler_class": UnroutableHandler,
        "default_handler_args": {"context": context},
    }


def accept_long_queries() -> None:
    """The query string is ignored, but Tornado parses it and refuses more
    than 1,000 fields with a bare 400. A request head is at most 16 KiB, so
    no query has more fields than this: it is read, and ignored."""
    httputil.set_parse_body_config(
        httputil.ParseBodyConfig(urlencoded=httputil.ParseUrlEncodedConfig(max_arguments=16384))
    )


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
            _trusted_proxies(handler),
        ),
    )


def _trusted_proxies(handler: RequestHandler) -> Networks:
    context = getattr(handler, "context", None)
    return context.trusted_proxies if isinstance(context, HandlerContext) else ()
