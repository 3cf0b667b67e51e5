"""``log_format = legacy``: the 2012 phizer's access line, from the formatter
and from the real command."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from phizer.config.options import Settings
from phizer.process import logsetup
from phizer.process.logsetup import configure_logging
from phizer.web.accesslog import RECORD_ATTR, AccessEntry, render_legacy, render_text
from tests.e2e_support import FRONT_NAME, HOST, PhizerProcess, serving_origin, wait_until
from tests.imagetools import encode, photo

# What a log pipeline written for the 2012 phizer matches.
LEGACY_LINE = re.compile(
    r"^(?P<level>[A-Z]+) pid=(?P<pid>\d+) (?P<status>\d{3}) (?P<method>[A-Z]+) "
    r"(?P<path>\S+) \((?P<ip>[^)]+)\) (?P<ms>\d+\.\d)ms$"
)


def entry(**changes: object) -> AccessEntry:
    values: dict[str, object] = {
        "method": "GET",
        "path": "/s100/missing.jpg",
        "status": 404,
        "bytes": 10,
        "total_ms": 1.234,
        "fetch_ms": 0.5,
        "resize_ms": None,
        "cache": "miss",
        "worker": 2,
        "client": "10.1.2.3",
    }
    values.update(changes)
    return AccessEntry(**values)  # type: ignore[arg-type]


def test_render_legacy():
    assert render_legacy(entry()) == "404 GET /s100/missing.jpg (10.1.2.3) 1.2ms"


def test_a_hostile_path_cannot_split_the_line():
    line = render_legacy(entry(path="/s100/a b\n200 GET /forged (1.1.1.1) 0.1ms"))
    assert "\n" not in line
    assert line.count(" ") == 4


@pytest.fixture
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
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


@pytest.mark.usefixtures("restore_logging")
def test_stderr_legacy_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_format="legacy"), "front", logging.INFO)
    logged = entry()
    access = logging.getLogger("phizer.access")
    access.warning(render_text(logged), extra={RECORD_ATTR: logged})
    logging.getLogger("phizer.test").error("origin %s down", "a")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"WARNING pid={os.getpid()} 404 GET /s100/missing.jpg (10.1.2.3) 1.2ms"
    assert LEGACY_LINE.match(lines[0])
    assert lines[1].endswith(" origin a down")
    assert lines[1].startswith("ERROR pid=")


def test_the_command_writes_legacy_access_lines(tmp_path: Path) -> None:
    with serving_origin(tmp_path / "origin", {"a.jpg": encode(photo(64, 48), "JPEG")}) as origin:
        process = PhizerProcess(
            tmp_path / "phizer",
            origin,
            num_workers=1,
            properties={"log_format": "legacy", "log_level": "INFO"},
        ).start()
        try:
            assert process.get("/s100/missing.jpg").status == 404
            assert process.get("/s100/a.jpg").status == 200
            front = process.child_pid(FRONT_NAME)

            def access_lines() -> list[re.Match[str]]:
                found = [LEGACY_LINE.match(line) for line in process.log_text().splitlines()]
                ours = [m for m in found if m and m["path"] in ("/s100/missing.jpg", "/s100/a.jpg")]
                return ours if len(ours) == 2 else []

            missing, served = wait_until(access_lines, 5.0, process.log_text)  # type: ignore[misc]
        finally:
            process.stop()
    assert (missing["level"], missing["status"], missing["method"]) == ("WARNING", "404", "GET")
    assert (served["level"], served["status"]) == ("INFO", "200")
    assert missing["ip"] == served["ip"] == HOST
    assert int(missing["pid"]) == int(served["pid"]) == front
