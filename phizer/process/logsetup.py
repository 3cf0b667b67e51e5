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


class ResilientSysLogHandler(logging.Handler):
    """Sends records to syslog without blocking or losing any when it is down.

    Written on ``logging.Handler`` (with the priorities of
    ``SysLogHandler``) so that every socket it opens has a send timeout. A
    failed send to a Unix socket reconnects once (the daemon restarted);
    when that fails too, the record goes to ``fallback`` (stderr) with one
    warning per outage, and syslog is tried again at most every
    SYSLOG_RETRY_SECONDS.
    """

    def __init__(
        self, address: str | tuple[str, int], facility: int, fallback: logging.Handler
    ) -> None:
        super().__init__()
        self.address = address
        self.facility = facility
        self.fallback = fallback
        self.socket: socket.socket | None = None
        self._socket_id: tuple[int, int] | None = None
        self._down_until: float | None = None
        self.connect_error: OSError | None = None
        try:
            self._connect()
        except OSError as err:
            self.connect_error = err

    def _connect(self) -> None:
        if isinstance(self.address, str):
            sock = _unix_socket(self.address)
        else:
            host, port = self.address
            family, kind, proto, _name, _target = socket.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM
            )[0]
            sock = socket.socket(family, kind, proto)
            sock.settimeout(SYSLOG_SEND_TIMEOUT)
        self.socket = sock
        self._socket_id = _socket_identity(sock)

    def _send(self, data: bytes) -> None:
        if self.socket is None:
            self._connect()
        assert self.socket is not None
        if not isinstance(self.address, str):
            self.socket.sendto(data, self.address)
            return
        try:
            self.socket.sendall(data)
        except OSError:  # the daemon restarted and has a new socket
            self._close_socket()
            self._connect()
            assert self.socket is not None
            self.socket.sendall(data)

    def encode(self, record: logging.LogRecord) -> bytes:
        """A syslog message: ``<PRI>`` and the formatted record, NUL-terminated."""
        name = SysLogHandler.priority_map.get(record.levelname, "warning")
        priority = (self.facility << 3) | SysLogHandler.priority_names[name]
        return f"<{priority}>{self.format(record)}\000".encode()

    def emit(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        if self._down_until is not None and now < self._down_until:
            self.fallback.handle(record)
            return
        try:
            data = self.encode(record)
        except Exception:  # a bad format string, not syslog's fault
            self.handleError(record)
            return
        try:
            self._send(data)
        except OSError as failure:
            self._close_socket()
            if self._down_until is None:
                _announce(
                    self.fallback,
                    f"syslog at {_describe(self.address)} failed ({_reason(failure)}); "
                    "logging to stderr until it is back",
                )
            self._down_until = now + SYSLOG_RETRY_SECONDS
            self.fallback.handle(record)
            return
        if self._down_until is not None:
            self._down_until = None
            _announce(self.fallback, f"syslog at {_describe(self.address)} is back", logging.INFO)

    def _close_socket(self) -> None:
        sock, self.socket = self.socket, None
        if sock is None:
            return
        # A daemon closes every descriptor it does not know of: this socket's
        # number may be closed already, or reused by another file by now.
        if _socket_identity(sock) != self._socket_id:
            sock.detach()
        else:
            sock.close()

    def close(self) -> None:
        self._close_socket()
        super().close()
        self.fallback.close()


def _unix_socket(path: str) -> socket.socket:
    """Connected to syslog's Unix socket: a datagram socket, else a stream."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        sock = socket.socket(socket.AF_UNIX, kind)
        sock.settimeout(SYSLOG_SEND_TIMEOUT)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            if kind == socket.SOCK_STREAM:
                raise
            continue
        return sock
    raise AssertionError("unreachable")


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
