"""Logging: stderr by default, syslog when ``syslog_facility`` is set."""

from __future__ import annotations

import logging
import os
import sys
from logging.handlers import SysLogHandler

from phizer.config import Settings

_FORMAT = "%(asctime)s %(levelname)s [{role}] %(name)s: %(message)s"


def configure_logging(settings: Settings, role: str, level: int) -> None:
    """(Re)configure the root logger for one process; ``role`` tags every line."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    if settings.syslog_facility is not None:
        handler: logging.Handler = SysLogHandler(
            address=_syslog_address(), facility=settings.syslog_facility
        )
        handler.setLevel(max(level, settings.syslog_priority))
        handler.setFormatter(logging.Formatter(f"phizer[{role}]: %(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT.format(role=role)))
    root.addHandler(handler)
    root.setLevel(level)
    # Tornado logs every request itself at INFO; ours carries more and replaces it.
    logging.getLogger("tornado.access").setLevel(logging.CRITICAL)
    # libcurl's per-request chatter drowns everything else at DEBUG.
    logging.getLogger("tornado.curl_httpclient").setLevel(max(level, logging.INFO))


def _syslog_address() -> str | tuple[str, int]:
    return "/dev/log" if os.path.exists("/dev/log") else ("localhost", 514)
