"""``python -m phizer.engine [show | simd | stock]``: name, or change, this environment's engine."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence
from pathlib import Path

from phizer.engine.simd import PILLOW_SIMD_VERSION, Refusal, run_command
from phizer.engine.simd import main as simd_main


def pillow_requirement() -> str:
    """phizer's own Pillow requirement (``Pillow>=11.3``), from its metadata."""
    for requirement in importlib.metadata.requires("phizer") or []:
        if requirement.lower().startswith("pillow") and "extra ==" not in requirement:
            return requirement.split(";")[0].replace(" ", "")
    return "Pillow"


def stock() -> int:
    """Back to stock Pillow: the inverse of ``simd``."""
    pip = [sys.executable, "-m", "pip"]
    try:
        run_command([*pip, "uninstall", "-y", "pillow-simd", "pillow-avif-plugin", "pillow"])
        run_command([*pip, "install", pillow_requirement()])
        run_command([sys.executable, "-m", "phizer.engine"])
    except Refusal as err:
        print(f"phizer.engine: {err}", file=sys.stderr)
        return err.status
    return 0


def show() -> int:
    # A fresh import: the caller may just have swapped the engine.
    from phizer.engine.detect import detect

    print(detect().describe())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m phizer.engine",
        description="Name this environment's imaging engine, or change it.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("show", help="print the engine (the default)")
    simd = commands.add_parser(
        "simd",
        help="replace Pillow with Pillow-SIMD built for AVX2 (exit status 3 without AVX2)",
    )
    simd.add_argument("--pillow-simd", default=PILLOW_SIMD_VERSION, metavar="VERSION")
    simd.add_argument("--dry-run", action="store_true", help="print the steps, change nothing")
    simd.add_argument("--cpuinfo", type=Path, default=Path("/proc/cpuinfo"), help=argparse.SUPPRESS)
    commands.add_parser("stock", help="go back to stock Pillow")
    args = parser.parse_args(argv)
    if args.command == "simd":
        return simd_main(args.pillow_simd, args.dry_run, args.cpuinfo)
    if args.command == "stock":
        return stock()
    return show()


if __name__ == "__main__":
    sys.exit(main())
