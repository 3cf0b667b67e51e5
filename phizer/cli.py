"""``phizer`` command: flags, config, sockets, then the supervisor."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from phizer import __version__
from phizer.config import Config, load_config, with_overrides
from phizer.errors import ConfigError
from phizer.logsetup import configure_logging
from phizer.service import open_listeners, serve
from phizer.values import parse_log_level

log = logging.getLogger("phizer")


def _log_level(value: str) -> int:
    try:
        return parse_log_level(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"invalid log level {value!r}: {err}") from None


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phizer", description="Dynamic image resizing proxy for predefined sizes."
    )
    parser.add_argument("-c", "--config", default="phizer.conf", help="config file (phizer.conf)")
    parser.add_argument("-H", "--host", help="front interface (bind_host)")
    parser.add_argument("-p", "--port", type=_positive_int, help="front port (bind_port)")
    parser.add_argument("-n", "--num-workers", type=_positive_int, help="number of workers")
    parser.add_argument("-a", "--max-age", type=_positive_int, help="Cache-Control max-age")
    parser.add_argument("-d", "--max-dimension", type=_positive_int, help="max_dimension")
    parser.add_argument(
        "-D", "--disable-cache", action="store_true", default=None, help="turn both caches off"
    )
    parser.add_argument("-l", "--log-level", type=_log_level, help="front log level")
    parser.add_argument("-w", "--log-level-worker", type=_log_level, help="workers' log level")
    parser.add_argument("--version", action="version", version=f"phizer {__version__}")
    return parser


def resolve_config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    debug = True if args.log_level == logging.DEBUG else None
    config = with_overrides(
        config,
        bind_host=args.host,
        bind_port=args.port,
        num_workers=args.num_workers,
        max_age=args.max_age,
        max_dimension=args.max_dimension,
        disable_cache=args.disable_cache,
        log_level=args.log_level,
        log_level_worker=args.log_level_worker,
        debug=debug,
    )
    settings = config.settings
    if settings.bind_port < 1 or settings.bind_port + settings.num_workers > 65535:
        raise ConfigError(
            f"port {settings.bind_port} + {settings.num_workers} workers is out of range"
        )
    if settings.num_workers < 1:
        raise ConfigError("num_workers must be at least 1")
    if settings.debug:
        config = with_overrides(config, log_level=logging.DEBUG, log_level_worker=logging.DEBUG)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = resolve_config(args)
    except ConfigError as err:
        print(f"phizer: {err}", file=sys.stderr)
        return 2
    settings = config.settings
    configure_logging(settings, "supervisor", settings.log_level)
    for warning in config.warnings:
        log.warning("%s: %s", args.config, warning)
    try:
        listeners = open_listeners(config)
    except OSError as err:
        print(f"phizer: {err.strerror or err}", file=sys.stderr)
        return 1
    return serve(config, listeners, lambda: resolve_config(args))
