"""What the front and the workers share: the base handler and the access log.

``BaseHandler`` is the one place where errors become responses: a
``PhizerError`` becomes its status with its short message, anything else a
500 with a generic message. No traceback ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from tornado.web import HTTPError, RequestHandler

from phizer import __version__
from phizer.errors import BadRequest, PhizerError

access_log = logging.getLogger("phizer.access")
SERVER = f"phizer/{__version__}"


class BaseHandler(RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD")  # type: ignore[assignment]

    def initialize(self, **_: Any) -> None:
        self.fetch_ms: float | None = None
        self.resize_ms: float | None = None
        self.cache_result = "-"

    def set_default_headers(self) -> None:
        self.set_header("Server", SERVER)

    def compute_etag(self) -> str | None:
        return None  # ETags are set explicitly where they are strong and cheap

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
    status = handler.get_status()
    if not access_log.isEnabledFor(level):
        return
    request = handler.request
    fetch_ms = getattr(handler, "fetch_ms", None)
    resize_ms = getattr(handler, "resize_ms", None)
    access_log.log(
        level,
        "%s %s %d %s total=%.1fms fetch=%s resize=%s cache=%s",
        request.method,
        request.uri,
        status,
        request.remote_ip,
        1000.0 * request.request_time(),
        _ms(fetch_ms),
        _ms(resize_ms),
        getattr(handler, "cache_result", "-"),
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"
