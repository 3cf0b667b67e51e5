"""Logging: stderr by default, syslog when ``syslog_facility`` is set.

Lines are text, one JSON object each (``log_format = json``) or the 2012
phizer's lines (``log_format = legacy``: ``WARNING pid=N 404 GET /path
(ip) 1.2ms``) for log pipelines that parse them. An
unreachable syslog socket at startup means stderr with one warning; a
syslog daemon that goes away later (a restart) costs no log line: they go
to stderr until it is back.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from datetime import UTC, datetime
from logging.handlers import SysLogHandler
from typing import Any

from phizer.config.loader import Settings
from phizer.web.accesslog import RECORD_ATTR, AccessEntry, json_fields, render_legacy

# A syslog daemon that stops reading must not stall the event loop.
SYSLOG_SEND_TIMEOUT = 0.1
# While syslog is unreachable, how often to try it again.
SYSLOG_RETRY_SECONDS = 1.0

log = logging.getLogger("phizer.logsetup")

# Inherited by forked children: the supervisor's fallback warning is the
# only one, instead of one more per child.
_fallback_announced = False


def configure_logging(settings: Settings, role: str, level: int) -> None:
    """(Re)configure the root logger for one process; ``role`` tags every line."""
    global _fallback_announced
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(_formatter(settings.log_format, role))
    handler: logging.Handler = stderr
    if settings.syslog_facility is not None:
        try:
            handler = open_syslog(settings, role, stderr)
            _fallback_announced = False
        except OSError as err:
            if not _fallback_announced:
                _fallback_announced = True
                _announce(
                    stderr,
                    f"syslog at {_describe(settings.syslog_address)} is unreachable "
                    f"({_reason(err)}); logging to stderr instead",
                )
    root.addHandler(handler)
    root.setLevel(level)
    # Tornado logs every request itself at INFO; ours carries more and replaces it.
    logging.getLogger("tornado.access").setLevel(logging.CRITICAL)
    # libcurl's per-request chatter drowns everything else at DEBUG.
    logging.getLogger("tornado.curl_httpclient").setLevel(max(level, logging.INFO))


def open_syslog(settings: Settings, role: str, fallback: logging.Handler) -> logging.Handler:
    """A syslog handler, or OSError when its socket cannot be reached now."""
    assert settings.syslog_facility is not None
    handler = ResilientSysLogHandler(settings.syslog_address, settings.syslog_facility, fallback)
    if handler.connect_error is not None:
        handler.close()
        raise handler.connect_error
    handler.setLevel(settings.syslog_priority)
    handler.setFormatter(SyslogFormatter(_formatter(settings.log_format, role, syslog=True)))
    return handler


class ResilientSysLogHandler(SysLogHandler):
    """A SysLogHandler that neither blocks nor loses records when syslog is down.

    The base class reconnects a Unix socket once per failed send; when that
    fails too, the record goes to ``fallback`` (stderr) with one warning per
    outage, and syslog is tried again at most every SYSLOG_RETRY_SECONDS.
    """

    def __init__(
        self, address: str | tuple[str, int], facility: int, fallback: logging.Handler
    ) -> None:
        self.fallback = fallback
        self.connect_error: OSError | None = None
        self._socket_id: tuple[int, int] | None = None
        self._failure: BaseException | None = None
        self._down_until: float | None = None
        super().__init__(address=address, facility=facility)

    def _connect_unixsocket(self, address: Any) -> None:
        # The base class keeps quiet when the socket is unreachable at startup.
        try:
            super()._connect_unixsocket(address)
        except OSError as err:
            self.connect_error = err
            raise
        self.connect_error = None
        self.socket.settimeout(SYSLOG_SEND_TIMEOUT)
        self._socket_id = _socket_identity(self.socket)

    def createSocket(self) -> None:
        super().createSocket()
        self._socket_id = _socket_identity(self.socket)

    def emit(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        if self._down_until is not None and now < self._down_until:
            self.fallback.handle(record)
            return
        self._failure = None
        super().emit(record)  # calls handleError on failure
        if self._failure is not None:
            if self._down_until is None:
                _announce(
                    self.fallback,
                    f"syslog at {_describe(self.address)} failed ({_reason(self._failure)}); "
                    "logging to stderr until it is back",
                )
            self._down_until = now + SYSLOG_RETRY_SECONDS
            self.fallback.handle(record)
        elif self._down_until is not None:
            self._down_until = None
            _announce(self.fallback, f"syslog at {_describe(self.address)} is back", logging.INFO)

    def handleError(self, record: logging.LogRecord) -> None:
        failure = sys.exc_info()[1]
        if isinstance(failure, OSError):
            self._failure = failure
        else:  # a bad format string, not syslog's fault
            super().handleError(record)

    def close(self) -> None:
        # A daemon closes every descriptor it does not know of: this socket's
        # number may be closed already, or reused by another file by now.
        if self.socket is not None and _socket_identity(self.socket) != self._socket_id:
            self.socket.detach()
        super().close()
        self.fallback.close()


class SyslogFormatter(logging.Formatter):
    """Adds the syslog tag ``phizer[PID]:`` (the pid when the record was made,
    so it stays right in forked children)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return f"phizer[{record.process}]: {self.inner.format(record)}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; access records add their named fields."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "role": self.role,
            "message": record.getMessage(),
        }
        entry = getattr(record, RECORD_ATTR, None)
        if isinstance(entry, AccessEntry):
            fields.update(json_fields(entry))
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return json.dumps(fields, default=str)


class LegacyFormatter(logging.Formatter):
    """``LEVEL pid=N message``, an access record as the 2012 phizer wrote it."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s pid=%(process)d %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        entry = getattr(record, RECORD_ATTR, None)
        if isinstance(entry, AccessEntry):
            return f"{record.levelname} pid={record.process} {render_legacy(entry)}"
        return super().formatMessage(record)


def _formatter(log_format: str, role: str, syslog: bool = False) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(role)
    if log_format == "legacy":
        return LegacyFormatter()
    if syslog:  # the daemon stamps the time and the level is in the priority
        return logging.Formatter(f"[{role}] %(name)s: %(message)s")
    return logging.Formatter(f"%(asctime)s %(levelname)s [{role}] %(name)s: %(message)s")


def _socket_identity(sock: socket.socket | None) -> tuple[int, int] | None:
    """Device and inode of the open file behind ``sock``'s descriptor."""
    if sock is None or sock.fileno() == -1:
        return None
    try:
        stat = os.fstat(sock.fileno())
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _announce(handler: logging.Handler, message: str, level: int = logging.WARNING) -> None:
    """Straight to ``handler``: shown whatever the configured log level."""
    handler.handle(logging.LogRecord(log.name, level, __file__, 0, message, None, None))


def _describe(address: str | tuple[str, int]) -> str:
    return address if isinstance(address, str) else f"{address[0]}:{address[1]}"


def _reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or str(err) or type(err).__name__
