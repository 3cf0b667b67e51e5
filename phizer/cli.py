"""``phizer`` command: flags, config, sockets, then the supervisor.

Everything that can fail is done while the terminal still listens: the
config is read (exit 2 on an error), the pidfile checked, the log file
opened and the sockets bound (exit 1), and only then does phizer detach,
write its pidfile and give up root.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from PIL import Image

from phizer import __version__
from phizer.config.loader import Config, load_config, with_overrides
from phizer.config.values import parse_log_level
from phizer.engine.detect import detect
from phizer.errors import ConfigError
from phizer.process.daemonize import (
    LogFileError,
    Startup,
    detach,
    hold_startup_signals,
    open_log_file,
    redirect_stderr,
)
from phizer.process.listeners import Listener
from phizer.process.logsetup import configure_logging
from phizer.process.pidfile import PidFile, PidFileError
from phizer.process.privileges import (
    Identity,
    PrivilegeError,
    accessible_as,
    drop_privileges,
    require_root,
    resolve_identity,
)
from phizer.process.service import open_listeners, serve
from phizer.report import render
from phizer.web.fleet import purge_fleet

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


def _path(value: str) -> str:
    # Absolute now: a daemon runs in / and SIGHUP re-reads the config from there.
    if not value.strip():
        raise argparse.ArgumentTypeError("expected a path")
    return os.path.abspath(value)


class _VersionAction(argparse.Action):
    """``phizer 1.0.0 (Pillow-SIMD 12.1.1.post0, AVIF via ...)``: the engine is looked
    up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings, dest, nargs=0, help="print the version and the imaging engine"
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"phizer {__version__} ({detect().describe()})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phizer", description="Dynamic image resizing proxy for predefined sizes."
    )
    parser.add_argument(
        "-c", "--config", type=_path, default="phizer.conf", help="config file (phizer.conf)"
    )
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
    parser.add_argument("--version", action=_VersionAction)
    ops = parser.add_argument_group("operation")
    ops.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config, print the resolved settings and exit (binds nothing)",
    )
    ops.add_argument(
        "--daemon",
        action="store_true",
        help="run in the background; returns once the daemon is ready (pidfile written)",
    )
    ops.add_argument(
        "--pidfile",
        type=_path,
        metavar="PATH",
        help="write the supervisor's pid to PATH; refuse to start while a live phizer holds it",
    )
    ops.add_argument(
        "--log-file",
        type=_path,
        metavar="PATH",
        help="append the log (stderr of every process) to PATH",
    )
    ops.add_argument(
        "--purge",
        action="append",
        metavar="PATH",
        help="purge the photo PATH (e.g. users/42/photo.jpg) on every --purge-host, then exit",
    )
    ops.add_argument(
        "--purge-host",
        action="append",
        metavar="HOST:PORT",
        help="a front to purge on (repeatable; default: this config's front on 127.0.0.1)",
    )
    ops.add_argument("--user", help="run as USER once the sockets are bound (needs root)")
    ops.add_argument(
        "--group", help="run as GROUP once the sockets are bound (default: USER's group)"
    )
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


class _Refusal(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Launch:
    """What is ready before detaching: everything that may fail on the terminal."""

    listeners: list[Listener]
    identity: Identity | None = None
    pidfile: PidFile | None = None
    log_file: IO[bytes] | None = None
    notes: list[str] = field(default_factory=list)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = resolve_config(args)
    except ConfigError as err:
        return _refuse(str(err), 2)
    if args.check_config:
        print(render(config, args.config), end="")
        return 0
    if args.purge:
        hosts = args.purge_host or [f"127.0.0.1:{config.settings.bind_port}"]
        return purge_fleet(args.purge, hosts)
    settings = config.settings
    configure_logging(settings, "supervisor", settings.log_level)
    try:
        launch = _prepare(args, config)
    except _Refusal as err:
        return _refuse(str(err), err.status)
    return _run(args, config, launch)


def _prepare(args: argparse.Namespace, config: Config) -> _Launch:
    notes = [f"{args.config}: {warning}" for warning in config.warnings]
    identity = _identity(args)
    pidfile = None
    try:
        if args.pidfile:
            pidfile = PidFile(args.pidfile)
            stale = pidfile.check()
            if stale:
                notes.append(f"taking over a stale pidfile: {stale}")
        if identity is not None:
            notes += _access_problems(identity, args, config)
        log_file = open_log_file(args.log_file, _owner(identity)) if args.log_file else None
    except (PidFileError, LogFileError) as err:
        raise _Refusal(str(err), 1) from None
    try:
        listeners = open_listeners(config)
    except OSError as err:
        raise _Refusal(str(err.strerror or err), 1) from None
    return _Launch(listeners, identity, pidfile, log_file, notes)


def _identity(args: argparse.Namespace) -> Identity | None:
    try:
        identity = resolve_identity(args.user, args.group)
    except PrivilegeError as err:
        raise _Refusal(str(err), 2) from None
    if identity is not None:
        try:
            require_root()
        except PrivilegeError as err:
            raise _Refusal(str(err), 1) from None
    return identity


def _access_problems(identity: Identity, args: argparse.Namespace, config: Config) -> list[str]:
    """Refuse when the pidfile could not be removed at exit; warn about the rest."""
    pidfile_dir = os.path.dirname(args.pidfile) if args.pidfile else None
    origin_dirs = [origin.directory for origin in config.origins if origin.directory]
    checks = [(args.config, os.R_OK)]
    checks += [(directory, os.R_OK | os.X_OK) for directory in origin_dirs]
    if pidfile_dir is not None:
        checks.append((pidfile_dir, os.W_OK | os.X_OK))
    try:
        allowed = dict(zip(checks, accessible_as(identity, checks), strict=True))
    except PrivilegeError as err:
        raise _Refusal(str(err), 1) from None
    who = identity.describe()
    if pidfile_dir is not None and not allowed[(pidfile_dir, os.W_OK | os.X_OK)]:
        raise _Refusal(
            f"{who} could not remove the pidfile from {pidfile_dir} at exit: "
            "use a directory it can write, such as /run/phizer",
            1,
        )
    notes = []
    if not allowed[(args.config, os.R_OK)]:
        notes.append(f"{who} cannot read {args.config}: SIGHUP reloads will fail")
    for directory in origin_dirs:
        if not allowed[(directory, os.R_OK | os.X_OK)]:
            notes.append(f"{who} cannot read the origin directory {directory}")
    return notes


def _owner(identity: Identity | None) -> tuple[int, int] | None:
    if identity is None:
        return None
    return (-1 if identity.uid is None else identity.uid, identity.gid)


def _run(args: argparse.Namespace, config: Config, launch: _Launch) -> int:
    settings = config.settings
    _warn_on_terminal(args, settings.syslog_facility is not None, launch.notes)
    hold_startup_signals()
    if args.daemon:
        sockets = [sock for listener in launch.listeners for sock in listener.sockets]
        startup = detach(sockets, launch.log_file, args.log_file)
        # The daemon closed every other descriptor, a syslog socket included.
        configure_logging(settings, "supervisor", settings.log_level)
    else:
        startup = Startup()
    try:
        try:
            _settle(launch)
        except (PidFileError, PrivilegeError) as err:
            startup.failed(str(err))
            return 1
        if launch.log_file is not None:
            if not args.daemon:
                redirect_stderr(launch.log_file)
            launch.log_file.close()  # stderr is a duplicate of it now
        for note in launch.notes:
            log.warning("%s", note)
        startup.ready()
        return serve(config, launch.listeners, lambda: resolve_config(args))
    finally:
        _remove_pidfile(launch.pidfile)


def _warn_on_terminal(args: argparse.Namespace, syslog: bool, notes: list[str]) -> None:
    if args.daemon and not args.log_file and not syslog:
        _warn("--daemon without --log-file or syslog_facility: every log message is discarded")
    if args.daemon or args.log_file:
        for note in notes:  # the log will not reach this terminal
            _warn(note)


def _settle(launch: _Launch) -> None:
    """Write the pidfile (as root: it may be in /run), then give up root."""
    if launch.pidfile is not None:
        launch.pidfile.write(os.getpid(), _owner(launch.identity))
    if launch.identity is not None:
        _load_before_dropping()
        drop_privileges(launch.identity)
        log.info("running as %s", launch.identity.describe())


def _load_before_dropping() -> None:
    # Pillow imports its format plugins on first use; the new user may not be
    # able to read the Python install (a home directory), so load them now.
    Image.init()


def _remove_pidfile(pidfile: PidFile | None) -> None:
    if pidfile is None:
        return
    try:
        pidfile.remove()
    except PidFileError as err:
        log.error("%s", err)


def _warn(message: str) -> None:
    print(f"phizer: warning: {message}", file=sys.stderr)


def _refuse(message: str, status: int) -> int:
    print(f"phizer: {message}", file=sys.stderr)
    return status
