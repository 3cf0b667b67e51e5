"""Logging setup: stderr text and JSON, and syslog on real sockets the tests bind
(Unix datagram and stream, UDP), its threshold, and its outages."""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from logging.handlers import SysLogHandler
from pathlib import Path

import pytest

from phizer.config.loader import Settings
from phizer.config.values import parse_syslog_facility
from phizer.process import logsetup
from phizer.process.logsetup import ResilientSysLogHandler, configure_logging
from phizer.web.accesslog import RECORD_ATTR, AccessEntry, render_text
from tests.syslog_support import RECEIVE_SECONDS, SyslogSink, parse_datagram, pri

LOCAL0 = parse_syslog_facility("LOG_LOCAL0")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to 107 bytes: a short directory in /tmp."""
    with tempfile.TemporaryDirectory(prefix="phz-") as directory:
        yield Path(directory)


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """configure_logging changes the root logger: put it back after each test."""
    monkeypatch.setattr(logsetup, "_fallback_announced", False)
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    quiet = [logging.getLogger(name) for name in ("tornado.access", "tornado.curl_httpclient")]
    quiet_levels = [logger.level for logger in quiet]
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
        for logger, old in zip(quiet, quiet_levels, strict=True):
            logger.setLevel(old)


def syslog_settings(address: str | tuple[str, int], **changes: object) -> Settings:
    values: dict[str, object] = {
        "syslog_facility": LOCAL0,
        "syslog_priority": logging.INFO,
        "syslog_address": address,
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


def access_entry() -> AccessEntry:
    return AccessEntry("GET", "/s100/a.jpg", 200, 321, 12.34, 1.0, 9.0, "miss", 1, "127.0.0.1")


def log_access(level: int = logging.INFO) -> AccessEntry:
    entry = access_entry()
    logging.getLogger("phizer.access").log(level, render_text(entry), extra={RECORD_ATTR: entry})
    return entry


# --------------------------------------------------------------------------
# stderr


def test_stderr_text_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(), "front", logging.INFO)
    logging.getLogger("phizer.test").info("hello %s", "there")
    logging.getLogger("phizer.test").debug("below the level")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(" INFO [front] phizer.test: hello there")


def test_stderr_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_format="json"), "worker-2", logging.INFO)
    logging.getLogger("phizer.test").warning("two\nlines")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("phizer.test").exception("failed")
    entry = log_access()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    first, second, access = (json.loads(line) for line in lines)
    assert {k: first[k] for k in ("level", "logger", "role", "message")} == {
        "level": "WARNING",
        "logger": "phizer.test",
        "role": "worker-2",
        "message": "two\nlines",
    }
    stamp = datetime.fromisoformat(first["time"])
    assert stamp.tzinfo is not None
    assert abs(stamp.timestamp() - time.time()) < 60
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exception"]
    assert access["logger"] == "phizer.access"
    assert (access["status"], access["bytes"], access["worker"]) == (
        entry.status,
        entry.bytes,
        entry.worker,
    )
    assert (access["path"], access["cache"], access["total_ms"]) == ("/s100/a.jpg", "miss", 12.3)


# --------------------------------------------------------------------------
# syslog


def test_unix_syslog_priority_encoding_and_threshold(short_dir: Path) -> None:
    sink = SyslogSink.unix(str(short_dir / "log"))
    try:
        settings = syslog_settings(sink.address, syslog_priority=logging.WARNING)
        configure_logging(settings, "front", logging.DEBUG)
        log = logging.getLogger("phizer.test")
        log.info("below the syslog threshold")
        log.warning("a warning")
        log.error("an error")
        log.critical("a critical")
        received = sink.wait_for(3)
        assert [d.pri for d in received] == [
            pri(LOCAL0, SysLogHandler.LOG_WARNING),
            pri(LOCAL0, SysLogHandler.LOG_ERR),
            pri(LOCAL0, SysLogHandler.LOG_CRIT),
        ]
        assert received[0].body == "[front] phizer.test: a warning"
        assert {d.pid for d in received} == {os.getpid()}
    finally:
        sink.close()


def test_process_level_still_applies_to_syslog(short_dir: Path) -> None:
    sink = SyslogSink.unix(str(short_dir / "log"))
    try:
        configure_logging(syslog_settings(sink.address), "front", logging.ERROR)
        logging.getLogger("phizer.test").warning("below the process level")
        logging.getLogger("phizer.test").error("sent")
        [datagram] = sink.wait_for(1)
        assert datagram.pri == pri(LOCAL0, SysLogHandler.LOG_ERR)
        assert datagram.body.endswith("sent")
    finally:
        sink.close()


def test_info_access_line_reaches_syslog_as_info(short_dir: Path) -> None:
    sink = SyslogSink.unix(str(short_dir / "log"))
    try:
        configure_logging(syslog_settings(sink.address), "front", logging.INFO)
        entry = log_access()
        [datagram] = sink.wait_for(1)
        assert datagram.pri == pri(LOCAL0, SysLogHandler.LOG_INFO)
        assert datagram.body == f"[front] phizer.access: {render_text(entry)}"
    finally:
        sink.close()


def test_syslog_json(short_dir: Path) -> None:
    sink = SyslogSink.unix(str(short_dir / "log"))
    try:
        settings = syslog_settings(sink.address, log_format="json")
        configure_logging(settings, "front", logging.INFO)
        entry = log_access(logging.WARNING)
        [datagram] = sink.wait_for(1)
        assert datagram.pri == pri(LOCAL0, SysLogHandler.LOG_WARNING)
        fields = json.loads(datagram.body)
        assert (fields["role"], fields["level"], fields["method"]) == ("front", "WARNING", "GET")
        assert (fields["bytes"], fields["client"]) == (entry.bytes, entry.client)
    finally:
        sink.close()


def test_udp_syslog() -> None:
    sink = SyslogSink.udp()
    try:
        facility = parse_syslog_facility("LOG_DAEMON")
        settings = syslog_settings(sink.address, syslog_facility=facility)
        configure_logging(settings, "supervisor", logging.INFO)
        logging.getLogger("phizer.test").debug("below the level")
        logging.getLogger("phizer.test").info("over udp")
        [datagram] = sink.wait_for(1)
        assert datagram.pri == pri(facility, SysLogHandler.LOG_INFO)
        assert datagram.body == "[supervisor] phizer.test: over udp"
    finally:
        sink.close()


def test_unix_stream_socket(short_dir: Path) -> None:
    path = str(short_dir / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        server.settimeout(RECEIVE_SECONDS)
        configure_logging(syslog_settings(path), "front", logging.INFO)
        logging.getLogger("phizer.test").info("over a stream")
        connection, _ = server.accept()
        with connection:
            connection.settimeout(RECEIVE_SECONDS)
            data = b""
            while not data.endswith(b"\x00"):
                chunk = connection.recv(4096)
                assert chunk, data
                data += chunk
        assert parse_datagram(data).body == "[front] phizer.test: over a stream"


@pytest.mark.parametrize("reused", [False, True])
def test_reconfigure_after_a_daemon_closed_the_socket(short_dir: Path, reused: bool) -> None:
    """Becoming a daemon closes every descriptor; configuring again must not
    fail on the dead one, nor close a file that took its number since."""
    sink = SyslogSink.unix(str(short_dir / "log"))
    try:
        configure_logging(syslog_settings(sink.address), "supervisor", logging.INFO)
        [handler] = logging.getLogger().handlers
        assert isinstance(handler, ResilientSysLogHandler) and handler.socket is not None
        number = handler.socket.fileno()
        os.close(number)
        other = None
        if reused:
            null = os.open(os.devnull, os.O_RDONLY)
            other = os.dup2(null, number)
            os.close(null)
        try:
            configure_logging(syslog_settings(sink.address), "supervisor", logging.INFO)
            if other is not None:
                os.fstat(other)  # still open
            logging.getLogger("phizer.test").info("after detaching")
            assert sink.wait_for(1)[0].body.endswith("after detaching")
        finally:
            if other is not None:
                os.close(other)
    finally:
        sink.close()


def fallback_warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "phizer.logsetup" in line]


def test_missing_socket_falls_back_to_stderr_with_one_warning(
    short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(short_dir / "no-such-socket")
    settings = syslog_settings(missing)
    configure_logging(settings, "supervisor", logging.INFO)
    logging.getLogger("phizer.test").info("still logged")
    # A forked child configures again and inherits the announcement.
    configure_logging(settings, "front", logging.INFO)
    logging.getLogger("phizer.test").info("from the child")
    err = capsys.readouterr().err
    [warning] = fallback_warnings(err)
    assert "WARNING" in warning and missing in warning and "logging to stderr" in warning
    assert "[supervisor] phizer.test: still logged" in err
    assert "[front] phizer.test: from the child" in err


def test_warning_shown_even_above_warning_level(
    short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(syslog_settings(str(short_dir / "nope")), "front", logging.CRITICAL)
    assert len(fallback_warnings(capsys.readouterr().err)) == 1


def test_socket_without_a_daemon_falls_back(
    short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = SyslogSink.unix(str(short_dir / "log"))
    sink.sock.close()  # the file stays, nobody reads it: a stopped daemon
    try:
        configure_logging(syslog_settings(sink.address), "front", logging.INFO)
        logging.getLogger("phizer.test").info("on stderr")
        err = capsys.readouterr().err
        [warning] = fallback_warnings(err)
        assert "refused" in warning.lower()
        assert "phizer.test: on stderr" in err
    finally:
        sink.close()


def test_daemon_restart_keeps_logging(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(short_dir / "log")
    sink = SyslogSink.unix(path)
    try:
        configure_logging(syslog_settings(path), "front", logging.INFO)
        logging.getLogger("phizer.test").info("before")
        assert sink.wait_for(1)[0].body.endswith("before")
        sink.close()
        sink = SyslogSink.unix(path)  # the restarted daemon's new socket
        logging.getLogger("phizer.test").info("after")
        [datagram] = sink.wait_for(1)
        assert datagram.body.endswith("after")
        assert capsys.readouterr().err == ""
    finally:
        sink.close()


def test_outage_goes_to_stderr_then_back_to_syslog(
    short_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logsetup, "SYSLOG_RETRY_SECONDS", 0.0)
    path = str(short_dir / "log")
    sink = SyslogSink.unix(path)
    try:
        configure_logging(syslog_settings(path), "front", logging.INFO)
        sink.close()
        log = logging.getLogger("phizer.test")
        log.info("during the outage 1")
        log.info("during the outage 2")
        err = capsys.readouterr().err
        assert len(fallback_warnings(err)) == 1
        assert "failed" in fallback_warnings(err)[0]
        assert "during the outage 1" in err and "during the outage 2" in err
        sink = SyslogSink.unix(path)
        log.info("back on syslog")
        [datagram] = sink.wait_for(1)
        assert datagram.body.endswith("back on syslog")
        err = capsys.readouterr().err
        assert "is back" in err and "back on syslog" not in err
    finally:
        sink.close()


def test_stuck_daemon_does_not_block_logging(
    short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(short_dir / "log")
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stuck.bind(path)  # bound and never read: its queue fills up
    done = threading.Event()
    try:
        configure_logging(syslog_settings(path), "front", logging.INFO)

        def flood() -> None:
            for number in range(5000):
                logging.getLogger("phizer.test").info("line %d", number)
            done.set()

        thread = threading.Thread(target=flood, daemon=True)
        started = time.monotonic()
        thread.start()
        thread.join(timeout=20)
        assert done.is_set(), "logging blocked on a syslog socket nobody reads"
        # Blocked at most twice SYSLOG_SEND_TIMEOUT per SYSLOG_RETRY_SECONDS.
        assert time.monotonic() - started < 5.0
        err = capsys.readouterr().err
        assert len(fallback_warnings(err)) >= 1
        assert "phizer.test: line 4999" in err
    finally:
        stuck.close()  # also wakes a sender still blocked on it
