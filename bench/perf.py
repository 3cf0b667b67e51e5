#!/usr/bin/env python3
"""phizer and thumbor side by side: the same photos, sizes and quality, one machine.

    python bench/perf.py [--quick] [--reps N] [--workloads W1,W3] [--profile]
                         [--workers N] [--phizer-ref REF] [--set KEY=VALUE ...]
                         [--engines stock,simd]

Builds bench/.venv-thumbor (thumbor 7.8) and bench/.venv-phizer (phizer
from the working tree, the Pillow version thumbor uses, the bench's
requirements), then runs itself again inside the latter. With
``--engines stock,simd`` it also builds bench/.venv-phizer-simd, the same
phizer turned into Pillow-SIMD by ``python -m phizer.engine simd``, and
runs every workload on both engines ("phizer" and "phizer-simd"). nginx serves the
photos of bench/corpus.py (and PNG copies of some of them) on 127.0.0.1;
wrk (bench/wrk/urls.lua) drives each server with 16 connections, both
servers keep connections alive. Every workload starts a fresh server, and
the two servers never run at the same time; the order alternates between
repetitions.

phizer runs --workers workers (default twice thumbor's --processes, which
is the number of cores): it routes every photo to one worker by
crc32(name), so with as many workers as cores a burst whose photos hash
alike leaves a core idle; more workers let the kernel spread them.

- W1: every (photo, size) once, shuffled, the originals already fetched
  (each requested once beforehand at 64x64 by both servers, which leaves
  it in thumbor's storage and in phizer's decoded cache); phizer's front cache off,
  thumbor's result storage off.
- W1png: the same with PNG photos.
- W3: a cold server; photo after photo, all sizes of one before the next, so
  each original is fetched from nginx once and then served from the cache.
- W2: the same 8 URLs (2 photos x 4 sizes) for a fixed time, warmed first:
  phizer's front cache, thumbor's file result storage.
- W2ttl: W2 with ``original_ttl = 60`` (nothing is revalidated within the
  run): what freshness costs the hot path, reported as a share of W2.
- The decode-only floor (bench/floor.py), for each engine: every photo
  decoded once at the scale phizer picks, nothing else, in --processes
  processes; W3's photos per second (its req/s over the 4 sizes) as a
  fraction of it.

W1 and W3 ask for each URL exactly once: wrk stops when the last answer
arrives, and the rate is the list over the time from the first request to
the last answer (see bench/wrk/urls.lua). Errors are non-2xx answers,
socket errors and requests left unanswered.

Also measured: the in-process Pillow wall (bench/pillow_wall.py); the
output quality of both servers in W1 and W1png, first rep (SSIM against a
full-decode LANCZOS reference); the peak RSS of every server process next
to phizer's cache bounds and contents (from /_metrics); the CPU the server,
wrk and everything else on the machine used during each measurement; and,
with --profile, one more W1 and W3 per server under py-spy. The tables go to
stdout, the whole record to bench/results/perf-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import servers
from servers import MIB, QUALITY, SIZES, Nginx, Phizer, Resizer, ServerOptions, Size, Thumbor

BENCH = Path(__file__).resolve().parent
LUA = BENCH / "wrk" / "urls.lua"
RESULTS = BENCH / "results"
PNG_CACHE = BENCH / ".cache" / "png"
READY_ENV = "PHIZER_PERF_VENV_READY"
BUILT_ENV = "PHIZER_PERF_BUILT_FROM"
WORKLOADS = ("W1", "W1png", "W3", "W2", "W2ttl")
# W2 as it is, and with every original revalidated after a minute: what
# original_ttl costs a hot path (nothing is revalidated within the run).
HOT = ("W2", "W2ttl")
HOT_TTL = (("original_ttl", "60"),)
# The phizer server of each engine (bench/.venv-phizer, bench/.venv-phizer-simd).
PHIZERS = {"stock": "phizer", "simd": "phizer-simd"}
SSIM_MIN = 0.98
ENCODE_SLACK = 0.005
# Targets: phizer/thumbor requests per second (W1 also p99).
TARGETS = {"W1": 15.0, "W1png": 2.0, "W3": 3.0, "W2": 1.5, "W2ttl": 1.5}
# W2 with original_ttl set keeps at least this share of W2's rate.
TTL_SHARE = 0.95
# On Pillow-SIMD: W3 higher, and W3 at this share of the decode-only floor.
SIMD_TARGETS = {**TARGETS, "W3": 4.0}
SIMD_FLOOR_SHARE = 0.6
W1_P99_RATIO = 0.5


# --------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class Options:
    reps: int
    photos: int
    copies: int
    png_photos: int
    png_copies: int
    hot_photos: int
    hot_seconds: float
    connections: int
    processes: int
    workers: int
    wall_rounds: int
    ssim_sample: int
    workloads: tuple[str, ...]
    engines: tuple[str, ...]
    extra_properties: tuple[tuple[str, str], ...]
    phizer_ref: str | None
    seed: int
    quick: bool
    profile: bool


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (1 rep)")
    parser.add_argument("--reps", type=int, help="repetitions (default 2, --quick 1)")
    parser.add_argument("--photos", type=int, help="JPEG photos (default 20, --quick 6)")
    parser.add_argument(
        "--copies", type=int, help="each photo under this many names (default 4, --quick 1)"
    )
    parser.add_argument("--png-photos", type=int, help="PNG photos (default 8, --quick 3)")
    parser.add_argument("--png-copies", type=int, help="names per PNG (default 2, --quick 1)")
    parser.add_argument("--hot-seconds", type=float, help="W2 duration (default 10, --quick 3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--processes", type=int, default=2, help="thumbor processes (cores), wall pool"
    )
    parser.add_argument(
        "--workers", type=int, help="phizer num_workers (default: twice --processes)"
    )
    parser.add_argument(
        "--ssim-sample", type=int, default=0, help="check only N phizer outputs (0: all)"
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"a comma-separated subset of {','.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--engines",
        default="stock",
        help="phizer's engines, a comma-separated subset of stock,simd (simd: Pillow-SIMD)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra phizer [properties] option (repeatable)",
    )
    parser.add_argument(
        "--phizer-ref", help="build phizer from this commit instead of the working tree"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the reps, one more W1 and W3 per server under py-spy (not in the table)",
    )
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args(argv)
    quick = args.quick

    def pick(value: int | float | None, full: int | float, short: int | float):
        return value if value is not None else (short if quick else full)

    workloads = tuple(name for name in args.workloads.split(",") if name)
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {sorted(unknown)}")
    engines = tuple(name for name in args.engines.split(",") if name)
    if not engines or set(engines) - set(PHIZERS):
        parser.error(f"--engines wants stock and/or simd, not {args.engines!r}")
    extra = []
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set wants KEY=VALUE, not {item!r}")
        extra.append((key.strip(), value.strip()))
    return Options(
        reps=pick(args.reps, 2, 1),
        photos=pick(args.photos, 20, 6),
        copies=pick(args.copies, 4, 1),
        png_photos=pick(args.png_photos, 8, 3),
        png_copies=pick(args.png_copies, 2, 1),
        hot_photos=2,
        hot_seconds=pick(args.hot_seconds, 10.0, 3.0),
        connections=args.connections,
        processes=args.processes,
        workers=args.workers or 2 * args.processes,
        wall_rounds=1 if quick else 3,
        ssim_sample=args.ssim_sample,
        workloads=workloads,
        engines=engines,
        extra_properties=tuple(extra),
        phizer_ref=args.phizer_ref,
        seed=args.seed,
        quick=quick,
        profile=args.profile,
    )


# --------------------------------------------------------------------------
# The origin's tree


@dataclass(frozen=True)
class Origin:
    """What nginx serves: ``/jpeg/<name>`` and ``/png/<name>``, each a link to a photo."""

    root: Path
    jpeg: list[str]
    png: list[str]
    files: dict[str, Path]  # origin path -> the photo's file

    def nbytes(self, paths: Sequence[str]) -> int:
        return sum(self.files[path].stat().st_size for path in paths)

    def describe(self) -> dict[str, object]:
        photos = sorted({str(path) for path in self.files.values()})
        return {
            "jpeg_originals": len(self.jpeg),
            "png_originals": len(self.png),
            "jpeg_mib": round(self.nbytes(self.jpeg) / MIB, 1),
            "png_mib": round(self.nbytes(self.png) / MIB, 1),
            "distinct_files": [Path(photo).name for photo in photos],
        }


def build_origin(
    root: Path, jpegs: Sequence[Path], pngs: Sequence[Path], options: Options
) -> Origin:
    """Link each photo under ``copies`` names: distinct originals to both servers.

    Names start with a hash, as on most photo sites: phizer routes by
    crc32(name) % workers, and crc32 is affine in its input, so names that
    differ in one fixed place ("-c1", "-c2") would land on the workers in
    step and skew the split of work far beyond what random names do.
    """
    files: dict[str, Path] = {}
    groups: dict[str, list[str]] = {"jpeg": [], "png": []}
    for folder, photos, copies in (
        ("jpeg", jpegs, options.copies),
        ("png", pngs, options.png_copies),
    ):
        (root / folder).mkdir(parents=True)
        for copy in range(1, copies + 1):
            for photo in photos:
                tag = hashlib.sha1(f"{photo.name}/{copy}".encode()).hexdigest()[:10]
                name = f"{tag}-{photo.stem}{photo.suffix}"
                (root / folder / name).symlink_to(photo.resolve())
                files[f"/{folder}/{name}"] = photo.resolve()
                groups[folder].append(f"/{folder}/{name}")
    for folder in (root, *root.iterdir()):
        folder.chmod(0o755)  # nginx's workers run as nobody
    return Origin(root, groups["jpeg"], groups["png"], files)


# --------------------------------------------------------------------------
# wrk


@dataclass
class Measurement:
    workload: str
    server: str
    rep: int
    listed: int
    completed: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    error_detail: dict[str, int]
    statuses: dict[str, int]
    warm_seconds: float | None = None
    cpu_cores: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # per server process
    memory: list[dict[str, object]] = field(default_factory=list)
    cache_metrics: list[str] = field(default_factory=list)
    quality: dict[str, object] | None = None
    profile: dict[str, dict[str, float]] | None = None


def run_wrk(
    port: int, paths: Sequence[str], mode: str, seconds: float, options: Options, workdir: Path
) -> dict[str, object]:
    """wrk over ``paths`` (``once``: each path once; ``cycle``: for ``seconds``)."""
    listing = workdir / "urls.txt"
    listing.write_text("".join(path + "\n" for path in paths))
    command = [
        shutil.which("wrk") or "wrk",
        "-t1",
        f"-c{options.connections}",
        f"-d{int(seconds)}s",
        "--timeout",
        "30s",
        "-s",
        str(LUA),
        f"http://{servers.HOST}:{port}",
        "--",
        str(listing),
        mode,
        str(options.connections),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    for line in result.stdout.splitlines():
        if line.startswith("PERF-JSON "):
            return json.loads(line[len("PERF-JSON ") :])
    raise RuntimeError(
        f"wrk printed no result ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )


def measurement(workload: str, server: str, rep: int, raw: dict) -> Measurement:
    statuses = {str(key): int(value) for key, value in raw["statuses"].items()}
    listed, completed = int(raw["listed"]), int(raw["received"])
    if raw["mode"] == "once":
        seconds = float(raw["list_elapsed_s"] or 0.0)
        rate = completed / seconds if seconds else 0.0
    else:
        seconds = int(raw["wrk_duration_us"]) / 1e6
        rate = int(raw["wrk_requests"]) / seconds
    errors = {key: int(value) for key, value in raw["errors"].items() if key != "status"}
    errors["non_2xx"] = sum(n for status, n in statuses.items() if not status.startswith("2"))
    if raw["mode"] == "once":
        errors["not_answered"] = listed - completed
    latency = {
        key: None if value is None else round(float(value) / 1000, 2)
        for key, value in raw["latency_us"].items()
    }
    return Measurement(
        workload,
        server,
        rep,
        listed,
        completed,
        round(seconds, 3),
        round(rate, 1),
        latency["p50"],
        latency["p90"],
        latency["p99"],
        latency["max"],
        sum(errors.values()),
        errors,
        statuses,
    )


# --------------------------------------------------------------------------
# Who used the CPU during a measurement (other work on the machine skews it)


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    machine: float
    nginx: float
    wrk: float
    processes: dict[int, tuple[str, float]]  # the server's: pid -> (name, CPU seconds)

    @property
    def server(self) -> float:
        return sum(seconds for _, seconds in self.processes.values())

    @staticmethod
    def take(server: Resizer, nginx: Nginx) -> CpuSnapshot:
        import resource

        return CpuSnapshot(
            time.monotonic(),
            servers.machine_busy_seconds(),
            sum(servers.cpu_seconds(pid) for pid in nginx.pids()),
            sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2]),
            {pid: (servers.comm(pid), servers.cpu_seconds(pid)) for pid in server.pids()},
        )

    def seconds_until(self, later: CpuSnapshot) -> dict[str, float]:
        """CPU seconds each server process used in between, by process name."""
        used: dict[str, float] = {}
        for pid, (name, seconds) in later.processes.items():
            before = self.processes.get(pid, (name, 0.0))[1]
            used[name] = round(used.get(name, 0.0) + seconds - before, 3)
        return used

    def cores_until(self, later: CpuSnapshot) -> dict[str, float]:
        """Average cores busy in between: ours, and everything else on the machine."""
        wall = later.wall - self.wall
        used = {
            "machine": later.machine - self.machine,
            "server": later.server - self.server,
            "nginx": later.nginx - self.nginx,
            "wrk": later.wrk - self.wrk,
        }
        used["other"] = max(0.0, used["machine"] - used["server"] - used["nginx"] - used["wrk"])
        return {key: round(value / wall, 2) for key, value in used.items()}


# --------------------------------------------------------------------------
# Workloads


def fetch_all(port: int, paths: Sequence[str], repeat: int = 1, threads: int = 4) -> float:
    """GET every path (``repeat`` times in a row); any non-200 stops the run."""

    def get(path: str) -> None:
        for _ in range(repeat):
            status, _body = servers.http_get(port, path, 120.0)
            if status != 200:
                raise RuntimeError(f"warm-up GET {path}: status {status}")

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(get, paths))
    return time.perf_counter() - started


def requests_for(workload: str, origin: Origin, options: Options) -> list[tuple[str, Size]]:
    """(origin path, size) in the order the workload asks for them."""
    if workload in HOT:
        photos = origin.jpeg[: options.hot_photos]
    else:
        photos = origin.png if workload == "W1png" else origin.jpeg
    pairs = [(path, size) for path in photos for size in SIZES]
    if workload in ("W1", "W1png"):
        random.Random(options.seed).shuffle(pairs)
    return pairs


def server_options(workload: str, origin: Origin, options: Options) -> ServerOptions:
    # Every worker may hold every original of the run: no eviction in W1.
    served = origin.png if workload == "W1png" else origin.jpeg
    cache = max(64 * MIB, int(origin.nbytes(served) * 1.1))
    return ServerOptions(
        result_cache=workload in HOT,
        cache_bytes=cache,
        extra_properties=options.extra_properties + (HOT_TTL if workload == "W2ttl" else ()),
        warm=workload in ("W1", "W1png"),
    )


def make_server(
    name: str, workload: str, origin: Origin, nginx: Nginx, options: Options, workdir: Path
) -> Resizer:
    settings = server_options(workload, origin, options)
    for engine, phizer in PHIZERS.items():
        if name == phizer:
            venv = servers.ENGINE_VENVS[engine]
            workers = options.workers
            return Phizer(workdir, nginx.port, SIZES, QUALITY, workers, settings, name, venv)
    return Thumbor(workdir, nginx.port, SIZES, QUALITY, options.processes, settings)


def run_workload(
    workload: str,
    server: Resizer,
    origin: Origin,
    nginx: Nginx,
    options: Options,
    rep: int,
    workdir: Path,
    references: References,
    profile: bool = False,
) -> Measurement:
    pairs = requests_for(workload, origin, options)
    paths = [server.path(size, path) for path, size in pairs]
    warm = None
    profiler = None
    try:
        server.start()
        if workload in ("W1", "W1png"):
            originals = list(dict.fromkeys(path for path, _ in pairs))
            warm = fetch_all(server.port, [server.warm_path(path) for path in originals])
        elif workload in HOT:
            warm = fetch_all(server.port, paths, repeat=2, threads=1)
        if profile:
            profiler = servers.Profiler(server, workdir)
            profiler.start()
        before = CpuSnapshot.take(server, nginx)
        if workload in HOT:
            raw = run_wrk(server.port, paths, "cycle", options.hot_seconds, options, workdir)
        else:
            bound = min(600.0, 60.0 + len(paths) / 2.0)
            raw = run_wrk(server.port, paths, "once", bound, options, workdir)
        after = CpuSnapshot.take(server, nginx)
        cpu = before.cores_until(after)
        result = measurement(workload, server.name, rep, raw)
        result.cpu_cores = cpu
        result.cpu_seconds = before.seconds_until(after)
        if profiler is not None:
            result.profile, profiler = profiler.stop(), None
        result.warm_seconds = None if warm is None else round(warm, 2)
        if isinstance(server, Phizer):
            result.cache_metrics = [
                line
                for line in server.metrics().splitlines()
                if line.startswith(("phizer_cache_", "phizer_decoded"))
                or re.match(r"phizer_\w+_seconds_(sum|count)\{", line)
            ]
        if rep == 0 and workload in ("W1", "W1png") and not profile:
            result.quality = check_quality(server, pairs, origin, options, references)
        result.memory = server.memory()
    finally:
        if profiler is not None:
            profiler.stop()
        server.stop()
    return result


def profile_runs(
    origin: Origin, nginx: Nginx, options: Options, workdir: Path, references: References
) -> list[Measurement]:
    """One more W1 and W3 per server under py-spy; py-spy's own cost keeps them out of the table."""
    profiled = []
    for workload in ("W1", "W3"):
        for name in ("phizer", "thumbor"):
            server = make_server(name, workload, origin, nginx, options, workdir)
            print(f"perf: profiling {workload} {name} ...", flush=True)
            profiled.append(
                run_workload(
                    workload, server, origin, nginx, options, -1, workdir, references, profile=True
                )
            )
    return profiled


# --------------------------------------------------------------------------
# Quality: phizer's outputs against a full-decode LANCZOS reference


def _references(task: tuple[str, list[int]]) -> tuple[str, dict[int, tuple[bytes, float]]]:
    """For one photo: each size's reference (as PNG) and the SSIM JPEG q85 alone leaves."""
    import pillow_wall
    from PIL import Image

    full = pillow_wall.decode_full(Path(task[0]).read_bytes())
    jpeg = task[0].lower().endswith((".jpg", ".jpeg"))
    made = {}
    for index in task[1]:
        reference = pillow_wall.reference(full, SIZES[index])
        floor = 1.0
        if jpeg:
            encoded = Image.open(io.BytesIO(pillow_wall.encode(reference, "JPEG", QUALITY)))
            floor = pillow_wall.ssim(reference, encoded)
        buffer = io.BytesIO()
        reference.save(buffer, "PNG", compress_level=1)
        made[index] = (buffer.getvalue(), floor)
    return task[0], made


class References:
    """Full-decode LANCZOS references, each made once per run (both servers share them)."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.made: dict[tuple[str, int], tuple[bytes, float]] = {}

    def ensure(self, wanted: Sequence[tuple[str, int]]) -> None:
        import pillow_wall

        missing: dict[str, set[int]] = {}
        for file, index in wanted:
            if (file, index) not in self.made:
                missing.setdefault(file, set()).add(index)
        if not missing:
            return
        tasks = [(file, sorted(indexes)) for file, indexes in missing.items()]
        context = multiprocessing.get_context("fork")
        with context.Pool(self.processes, pillow_wall.default_signals) as pool:
            for file, made in pool.imap_unordered(_references, tasks):
                for index, value in made.items():
                    self.made[(file, index)] = value

    def get(self, file: str, index: int):
        from PIL import Image

        data, floor = self.made[(file, index)]
        return Image.open(io.BytesIO(data)), floor


def check_quality(
    server: Resizer,
    pairs: Sequence[tuple[str, Size]],
    origin: Origin,
    options: Options,
    references: References,
) -> dict[str, object]:
    """SSIM of every output (or a sample) against its full-decode LANCZOS reference.

    An output passes with SSIM >= 0.98; a JPEG whose reference, encoded at
    the same quality, already scores below 0.98 (fine texture: the loss is
    the encoder's) passes within ENCODE_SLACK of that score.
    """
    import pillow_wall
    from PIL import Image

    chosen = list(pairs)
    if options.ssim_sample and options.ssim_sample < len(chosen):
        chosen = random.Random(options.seed).sample(chosen, options.ssim_sample)
    index = {size.code: i for i, size in enumerate(SIZES)}
    started = time.perf_counter()
    references.ensure([(str(origin.files[path]), index[size.code]) for path, size in chosen])
    scores, losses = [], []
    below, failures = 0, []
    for path, size in chosen:
        status, body = servers.http_get(server.port, server.path(size, path), 60.0)
        expected, floor = references.get(str(origin.files[path]), index[size.code])
        where = {"path": path, "size": size.code}
        if status != 200:
            failures.append({**where, "status": status})
            continue
        actual = Image.open(io.BytesIO(body))
        if actual.size != expected.size:
            failures.append({**where, "geometry": [list(actual.size), list(expected.size)]})
            continue
        score = pillow_wall.ssim(expected, actual)
        scores.append(score)
        losses.append(floor - score)
        below += score < SSIM_MIN
        if score < min(SSIM_MIN, floor - ENCODE_SLACK):
            failures.append({**where, "ssim": round(score, 4), "encoder_floor": round(floor, 4)})
    return {
        "checked": len(chosen),
        "of": len(pairs),
        "compared": len(scores),
        "min_ssim": round(min(scores), 4) if scores else None,
        "mean_ssim": round(sum(scores) / len(scores), 4) if scores else None,
        "below_0.98": below,
        "max_loss_beyond_encoder": round(max(losses), 4) if losses else None,
        "failures": failures,
        "seconds": round(time.perf_counter() - started, 1),
    }


# --------------------------------------------------------------------------
# Report


def aggregate(results: Sequence[Measurement]) -> list[dict[str, object]]:
    rows = []
    for workload in WORKLOADS:
        by_server = {}
        for name in (*PHIZERS.values(), "thumbor"):
            runs = [r for r in results if r.workload == workload and r.server == name]
            if not runs:
                continue
            by_server[name] = {
                "workload": workload,
                "server": name,
                "reps_rps": [r.requests_per_second for r in runs],
                "rps": round(sum(r.requests_per_second for r in runs) / len(runs), 1),
                "p50_ms": round(sum(r.p50_ms for r in runs) / len(runs), 1),
                "p99_ms": round(sum(r.p99_ms for r in runs) / len(runs), 1),
                "errors": sum(r.errors for r in runs),
                "requests_per_rep": runs[0].listed if workload not in HOT else None,
            }
        thumbor = by_server.get("thumbor")
        for name, phizer in by_server.items():
            if thumbor is None or name == "thumbor":
                continue
            phizer["ratio"] = round(phizer["rps"] / thumbor["rps"], 2) if thumbor["rps"] else None
            phizer["p99_ratio"] = (
                round(phizer["p99_ms"] / thumbor["p99_ms"], 2) if thumbor["p99_ms"] else None
            )
            targets = SIMD_TARGETS if name == PHIZERS["simd"] else TARGETS
            phizer["target"] = targets[workload]
        rows += by_server.values()
    return rows


def format_ttl_cost(rows: Sequence[dict[str, object]]) -> str:
    """W2 with original_ttl = 60 against W2, for each phizer of the run."""
    lines = []
    for name in PHIZERS.values():
        rates = {row["workload"]: row["rps"] for row in rows if row["server"] == name}
        plain, with_ttl = rates.get("W2"), rates.get("W2ttl")
        if isinstance(plain, float) and isinstance(with_ttl, float) and plain:
            share = with_ttl / plain
            verdict = "met" if share >= TTL_SHARE else "not met"
            lines.append(
                f"{name}: W2 with original_ttl = 60 at {share:.1%} of W2 "
                f"({with_ttl} vs {plain} req/s; target >= {TTL_SHARE:.0%}: {verdict})"
            )
    return "\n".join(lines)


def markdown(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table; ``None`` cells are left empty."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join("" if cell is None else str(cell) for cell in row) + " |")
    return "\n".join(lines)


def format_table(rows: Sequence[dict[str, object]]) -> str:
    header = (
        "workload",
        "server",
        "requests",
        "req/s (reps)",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "phizer/thumbor req/s",
        "p99 phizer/thumbor",
        "target",
    )

    def cells(row: dict[str, object]) -> list[object]:
        target = f">= {row['target']}x" if "target" in row else ""
        if row["workload"] == "W1" and target:
            target += f", p99 <= {W1_P99_RATIO}"
        ratio, p99_ratio = row.get("ratio"), row.get("p99_ratio")
        return [
            row["workload"],
            row["server"],
            row["requests_per_rep"] or "timed",
            ", ".join(f"{value:.1f}" for value in row["reps_rps"]),
            f"{row['rps']:.1f}",
            f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            row["errors"],
            None if ratio is None else f"{ratio:.2f}x",
            None if p99_ratio is None else f"{p99_ratio:.2f}",
            target,
        ]

    return markdown(header, (cells(row) for row in rows))


def format_runs(results: Sequence[Measurement]) -> str:
    header = (
        "rep",
        "workload",
        "server",
        "completed",
        "seconds",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "server cores",
        "wrk cores",
        "other cores",
    )
    return markdown(
        header,
        (
            (
                r.rep + 1,
                r.workload,
                r.server,
                r.completed,
                f"{r.seconds:.1f}",
                f"{r.requests_per_second:.1f}",
                r.p50_ms,
                r.p99_ms,
                r.errors,
                r.cpu_cores.get("server"),
                r.cpu_cores.get("wrk"),
                r.cpu_cores.get("other"),
            )
            for r in results
        ),
    )


def format_profiles(profiled: Sequence[Measurement]) -> str:
    """Share of wall time per process and kind of work (py-spy samples, idle excluded)."""
    kinds = servers.PROFILE_KINDS
    header = ("workload", "server", "req/s under py-spy", "process", *kinds)
    return markdown(
        header,
        (
            (
                r.workload,
                r.server,
                f"{r.requests_per_second:.1f}",
                process,
                *(f"{shares.get(kind, 0.0):.0%}" for kind in kinds),
            )
            for r in profiled
            for process, shares in (r.profile or {}).items()
        ),
    )


def format_wall(walls: Sequence[dict[str, object]]) -> str:
    return markdown(
        ("photos", "pipeline", "images/s", "originals/s"),
        (
            (
                f"{wall['photos']} {wall['image_format']}",
                wall["pipeline"],
                wall["images_per_second"],
                wall["originals_per_second"],
            )
            for wall in walls
        ),
    )


def measure_floor(
    engine: str, photos: Sequence[Path], processes: int, rounds: int
) -> dict[str, object]:
    """bench/floor.py in ``engine``'s venv: photos per second, decoded once each, nothing else."""
    python = servers.venv_python(servers.ENGINE_VENVS[engine])
    command = [str(python), str(BENCH / "floor.py"), "--processes", str(processes)]
    command += ["--rounds", str(rounds), *map(str, photos)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=BENCH)
    if result.returncode != 0:
        raise RuntimeError(f"bench/floor.py failed in {python}:\n{result.stderr}")
    return {"engine_venv": engine, **json.loads(result.stdout.strip().splitlines()[-1])}


def add_w3(floors: Sequence[dict[str, object]], results: Sequence[Measurement]) -> None:
    """Each engine's W3 photos per second (all sizes of a photo), and as a share of its floor."""
    for floor in floors:
        name = PHIZERS[str(floor["engine_venv"])]
        runs = [r for r in results if r.workload == "W3" and r.server == name]
        if not runs:
            continue
        photos = sum(r.requests_per_second for r in runs) / len(runs) / len(SIZES)
        floor["w3_photos_per_second"] = round(photos, 2)
        floor["w3_share_of_floor"] = round(photos / float(floor["photos_per_second"]), 3)


def format_floor(floors: Sequence[dict[str, object]]) -> str:
    header = ("phizer", "engine", "decode-only photos/s", "W3 photos/s", "W3 / floor", "target")
    return markdown(
        header,
        (
            (
                PHIZERS[str(floor["engine_venv"])],
                floor["engine"],
                floor["photos_per_second"],
                floor.get("w3_photos_per_second"),
                f"{floor['w3_share_of_floor']:.0%}" if "w3_share_of_floor" in floor else None,
                f">= {SIMD_FLOOR_SHARE:.0%}" if floor["engine_venv"] == "simd" else None,
            )
            for floor in floors
        ),
    )


def format_memory(results: Sequence[Measurement]) -> str:
    header = (
        "workload",
        "rep",
        "server",
        "process",
        "peak RSS MiB",
        "cache bound MiB",
        "cached at end MiB",
        "peak - cached MiB",
    )

    def cells(result: Measurement, proc: dict[str, object]) -> tuple[object, ...]:
        cached = proc.get("cached_mib")
        over = None if cached is None else f"{float(proc['peak_rss_mib']) - cached:.1f}"
        bound = proc.get("bound_mib", "")
        return (
            result.workload,
            result.rep + 1,
            result.server,
            proc["name"],
            proc["peak_rss_mib"],
            bound,
            cached,
            over,
        )

    return markdown(header, (cells(r, proc) for r in results for proc in r.memory))


def format_quality(results: Sequence[Measurement]) -> str:
    header = (
        "workload",
        "server",
        "outputs checked",
        "min SSIM",
        "mean SSIM",
        "below 0.98",
        "max loss beyond JPEG q85 alone",
        "failures",
    )
    return markdown(
        header,
        (
            (
                r.workload,
                r.server,
                f"{q['compared']}/{q['of']}",
                q["min_ssim"],
                q["mean_ssim"],
                q["below_0.98"],
                q["max_loss_beyond_encoder"],
                len(q["failures"]),
            )
            for r in results
            if (q := r.quality) is not None
        ),
    )


# The text format writes labels in any order (prometheus_client sorts them).
CACHE_GAUGE = re.compile(r"^phizer_cache_(bytes|capacity_bytes)\{([^}]*)\} (\S+)$")
WORKER_LABEL = re.compile(r'(?:^|,)worker="([^"]+)"')


def add_bounds(result: Measurement) -> None:
    """Each phizer process's cache bounds and cached bytes (from /_metrics) next to its peak RSS."""
    totals: dict[tuple[str, str], float] = {}
    for line in result.cache_metrics:
        match = CACHE_GAUGE.match(line)
        worker = WORKER_LABEL.search(match[2]) if match else None
        if match and worker:
            name = "phizer-front" if worker[1] == "front" else f"phizer-w{worker[1]}"
            key = (name, match[1])
            totals[key] = totals.get(key, 0.0) + float(match[3])
    for proc in result.memory:
        name = str(proc["name"])
        proc["bound_mib"] = round(totals.get((name, "capacity_bytes"), 0.0) / MIB, 1)
        proc["cached_mib"] = round(totals.get((name, "bytes"), 0.0) / MIB, 1)


def machine(nginx: Nginx, options: Options) -> dict[str, object]:
    def run(*command: str) -> str:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        return (result.stdout + result.stderr).strip()

    from PIL import __version__ as pillow

    return {
        "nproc": os.cpu_count(),
        "free_h": run("free", "-h"),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "pillow": pillow,
        "thumbor": servers.package_version(servers.THUMBOR_VENV, "thumbor"),
        "thumbor_pillow": servers.package_version(servers.THUMBOR_VENV, "Pillow"),
        "phizer_engines": {
            engine: servers.engine(servers.ENGINE_VENVS[engine]) for engine in options.engines
        },
        "tornado": servers.package_version(servers.PHIZER_VENV, "tornado"),
        "nginx": nginx.version(),
        "wrk": run("wrk", "-v").splitlines()[0],
        "kernel": platform.release(),
    }


# --------------------------------------------------------------------------
# Main


def prepare_and_reexec(argv: Sequence[str], options: Options) -> None:
    """Build both venvs, then continue inside bench/.venv-phizer."""
    if os.environ.get(READY_ENV) == "1":
        return
    servers.ensure_thumbor_venv()
    pillow = servers.package_version(servers.THUMBOR_VENV, "Pillow")
    print(f"perf: building phizer ({options.phizer_ref or 'working tree'}), Pillow {pillow}")
    built = servers.git_commit()  # before the build: others may commit meanwhile
    built["phizer_sources_sha256"] = servers.ensure_phizer_venv(pillow, options.phizer_ref)
    if "simd" in options.engines:
        print("perf: the same phizer on Pillow-SIMD (python -m phizer.engine simd)")
        servers.ensure_simd_venv(pillow, options.phizer_ref)
    if options.profile:
        servers.install(servers.PHIZER_VENV, "py-spy")
    python = servers.venv_python(servers.PHIZER_VENV)
    os.environ[READY_ENV] = "1"
    os.environ[BUILT_ENV] = json.dumps(built)
    os.execv(python, [str(python), str(Path(__file__).resolve()), *argv])


@contextlib.contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every started process is stopped."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parse_options(argv)
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"perf: {tool} is missing: apt-get install -y nginx-light wrk", file=sys.stderr)
            return 2
    prepare_and_reexec(argv, options)
    with terminated_as_interrupt(), tempfile.TemporaryDirectory(prefix="phizer-perf-") as tmp:
        return run(options, Path(tmp))


def run(options: Options, workdir: Path) -> int:
    import pillow_wall
    from corpus import corpus

    started_at = datetime.now().astimezone()
    jpegs = corpus(options.photos)
    pngs = pillow_wall.png_copies(pillow_wall.smallest(jpegs, options.png_photos), PNG_CACHE)
    workdir.chmod(0o755)
    origin = build_origin(workdir / "origin", jpegs, pngs if options.png_photos else [], options)
    nginx = Nginx(origin.root, workdir)
    results: list[Measurement] = []
    profiles: list[Measurement] = []
    references = References(options.processes)
    nginx.start(origin.jpeg[0])
    try:
        info = machine(nginx, options)
        for rep in range(options.reps):
            names = [PHIZERS[engine] for engine in options.engines]
            order = (*names, "thumbor") if rep % 2 == 0 else ("thumbor", *reversed(names))
            for workload in options.workloads:
                if workload == "W1png" and not origin.png:
                    continue
                for name in order:
                    server = make_server(name, workload, origin, nginx, options, workdir)
                    print(f"perf: rep {rep + 1}/{options.reps} {workload} {name} ...", flush=True)
                    result = run_workload(
                        workload, server, origin, nginx, options, rep, workdir, references
                    )
                    if name != "thumbor":
                        add_bounds(result)
                    print(
                        f"perf:   {result.requests_per_second:.1f} req/s,"
                        f" p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms,"
                        f" errors {result.errors}, cores {result.cpu_cores}",
                        flush=True,
                    )
                    results.append(result)
        if options.profile:
            profiles = profile_runs(origin, nginx, options, workdir, references)
    finally:
        nginx.stop()
    print("perf: in-process Pillow wall ...", flush=True)
    walls = [
        w.as_dict()
        for w in pillow_wall.measure(
            jpegs, "JPEG", options.processes, options.wall_rounds, options.seed
        )
    ]
    if options.png_photos:
        walls += [
            w.as_dict()
            for w in pillow_wall.measure(pngs, "PNG", options.processes, 1, options.seed)
        ]
    print("perf: decode-only floor ...", flush=True)
    floors = []
    for engine in options.engines:
        try:
            floors.append(measure_floor(engine, jpegs, options.processes, options.wall_rounds))
        except RuntimeError as error:
            # An older --phizer-ref may lack what bench/floor.py imports.
            print(f"perf: no decode-only floor for {engine}: {error}", file=sys.stderr)
    add_w3(floors, results)
    rows = aggregate(results)
    record = {
        "started": started_at.isoformat(timespec="seconds"),
        "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python bench/perf.py " + " ".join(sys.argv[1:]),
        "git": json.loads(os.environ.get(BUILT_ENV, "null")) or servers.git_commit(),
        "phizer_ref": options.phizer_ref or "working tree",
        "machine": info,
        "options": asdict(options),
        "sizes": [asdict(size) for size in SIZES],
        "quality": QUALITY,
        "corpus": origin.describe(),
        "summary": rows,
        "wall": walls,
        "floor": floors,
        "runs": [asdict(result) for result in results],
        "profiles": [asdict(result) for result in profiles],
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"perf-{started_at:%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print()
    print(format_runs(results))
    print()
    print(format_table(rows))
    print()
    ttl_cost = format_ttl_cost(rows)
    if ttl_cost:
        print(ttl_cost + "\n")
    print(format_wall(walls))
    print()
    print(format_floor(floors))
    print()
    print(format_quality(results))
    print()
    print(format_memory(results))
    if profiles:
        print()
        print(format_profiles(profiles))
    print(f"\nperf: wrote {out.relative_to(BENCH.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
