"""The decode-only floor: each photo decoded once, at the scale phizer picks, nothing else.

    python bench/floor.py [-n 20] [--processes 2] [--rounds 3]

A cold photo costs phizer at least one decode at the DCT scale from which
its configured sizes are made (``phizer.imaging.decoded.decode_once``
after ``phizer.imaging.source.open_original``): no resize, no encode, no
HTTP. Run on ``processes`` processes with the originals in memory, the
photos per second here are the most W3 (every size of one photo, photo
after photo) could reach. The benchmark's four sizes, phizer's default
settings. Run it inside a phizer venv (bench/perf.py runs it in each
engine's); prints JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from phizer.config.loader import Settings
from phizer.config.sizes import Constraint, SizeSpec
from phizer.engine.detect import detect
from phizer.imaging.decoded import decode_once
from phizer.imaging.source import open_original


def bench_specs() -> tuple[SizeSpec, ...]:
    """The benchmark's sizes as phizer's ``[sizes]`` (fit inside, or the centre square)."""
    # Imported only now: servers puts the checkout first on sys.path, and the
    # phizer measured must be the venv's, imported above.
    from servers import SIZES

    return tuple(
        SizeSpec(s.code, s.width, s.height, Constraint.SQUARE if s.square else Constraint.MAX)
        for s in SIZES
    )


SPECS = bench_specs()
SETTINGS = Settings()
_originals: list[bytes] = []


def decode_photo(data: bytes) -> tuple[int, int]:
    """phizer's cold-photo decode of ``data``; the size of the pixels it keeps."""
    fresh = open_original(
        data, False, SETTINGS.max_frames, not SETTINGS.strip_metadata, SETTINGS.max_source_pixels
    )
    decoded = decode_once(fresh, SPECS, SETTINGS.max_dimension)
    assert decoded.base is not None
    return decoded.base.size


def _load(paths: Sequence[Path]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _originals[:] = [path.read_bytes() for path in paths]


def _decode(photo: int) -> int:
    decode_photo(_originals[photo])
    return 1


def measure(paths: Sequence[Path], processes: int = 2, rounds: int = 3) -> dict[str, object]:
    """Photos per second over ``rounds`` passes of ``paths`` on ``processes`` processes."""
    tasks = list(range(len(paths))) * rounds
    with multiprocessing.get_context("fork").Pool(processes, _load, (list(paths),)) as pool:
        pool.map(_decode, range(min(len(paths), processes)))  # imports, first decodes
        started = time.perf_counter()
        decoded = sum(pool.imap_unordered(_decode, tasks, chunksize=1))
        elapsed = time.perf_counter() - started
    return {
        "engine": detect().describe(),
        "photos": len(paths),
        "decodes": decoded,
        "processes": processes,
        "seconds": round(elapsed, 3),
        "photos_per_second": round(decoded / elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20, help="JPEG photos of the corpus (default 20)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the photos")
    parser.add_argument("paths", nargs="*", type=Path, help="photos (default: the corpus)")
    args = parser.parse_args()
    if args.paths:
        photos = list(args.paths)
    else:
        from corpus import corpus

        photos = corpus(args.n)
    print(json.dumps(measure(photos, args.processes, args.rounds)))


if __name__ == "__main__":
    main()
