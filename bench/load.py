#!/usr/bin/env python3
"""Bounded load benchmark of the real ``phizer`` command.

Builds a corpus of generated photos and bad inputs in a temporary
directory, starts ``phizer -c`` on it (the front and N workers on free
ports of 127.0.0.1), drives thousands of distinct URLs through many
concurrent HTTP/1.1 connections, samples the memory of every phizer
process, stops phizer and reports statuses, latency, crashes/restarts
and peak RSS against the configured cache bounds.

    python bench/load.py [--connections 1000] [--urls 20000]
                         [--duration-limit S] [--out FILE.json]

Only Pillow is needed besides the standard library. Everything runs on
127.0.0.1, and the run stops by itself (URL count and wall-clock limit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import http.client
import io
import json
import os
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from PIL import Image

# The port picking of the end-to-end tests, from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hostile_corpus import (
    gif_frames_1x1,
    jpeg_scan_bomb,
    jpeg_segments,
    png_many_chunks,
    png_ztxt,
)
from tests.ports import free_port_block

HOST = "127.0.0.1"
MIB = 1024 * 1024
BENCH_DIR = Path(__file__).resolve().parent
# Below the usual ephemeral range, so outgoing connections rarely hold them.
READY_SECONDS = 30.0
STOP_SECONDS = 30.0
PROGRESS_SECONDS = 10.0
MAX_EXAMPLES = 20
EXAMPLES_PER_OUTCOME = 3
RETRY_PAUSE_CAP = 2.0

# The sizes of the repository's phizer.conf, plus larger and cropping ones
# and one at max_dimension (served unresized; crop points still apply).
SIZES = {
    "s100": "100x100",
    "s220": "220x220",
    "s640": "640 x 640 max",
    "sq150": "150 square",
    "p200": "200x300 portrait",
    "l300": "300x200 landscape",
    "thumb": "96, 96 square quality=70",
    "w1024": "1024x768",
    "sq400": "400 square",
    "p600": "600x900 portrait",
    "l1200": "1200x800 landscape quality=80",
    "full": "3000x3000",
}
MAX_DIMENSION = 3000
PASSTHROUGH_SIZE = "full"
# The corpus tops out at 3000x2000 (6 MP); the limit leaves headroom.
MAX_SOURCE_PIXELS = 8_000_000
MAX_SOURCE_BYTES = "16M"
# What each process may hold besides its caches (docs/operations.md,
# "Memory"): originals fetched or in use, within max_inflight_bytes...
MAX_INFLIGHT_MIB = 64
DECODE_MEMORY_RESERVE_MIB = 32
# ...and a fixed overhead: every process's own memory, the front's client
# connections, a worker's kept decode buffers and one decode in progress.
OWN_MIB = 56
CONNECTION_KIB = 64
DECODE_BYTES_PER_PIXEL = 7
# Photo sizes (landscape; a third are turned to portrait) and their weights.
PHOTO_SIZES = [
    ((800, 600), 3),
    ((1024, 768), 4),
    ((1280, 960), 3),
    ((1600, 1200), 3),
    ((2048, 1536), 2),
    ((2400, 1600), 1),
    ((3000, 2000), 2),
]
PNG_MAX_SIDE = 1600  # PNG photos are big; keep them to a realistic few MB
BOMB_SIDE = 50_000


# --------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class Options:
    connections: int
    urls: int
    duration_limit: float
    request_timeout: float
    retry_503: int
    images: int
    bad_fraction: float
    workers: int
    cache_mib: int
    decoded_cache_mib: int
    slack_mib: int
    keep_alive: bool
    seed: int
    sample_interval: float
    out: Path
    keep_temp: bool


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000, help="concurrent connections")
    parser.add_argument("--urls", type=int, default=20000, help="distinct URLs to request")
    parser.add_argument(
        "--duration-limit", type=float, default=600.0, help="stop the load after S seconds"
    )
    parser.add_argument("--request-timeout", type=float, default=60.0, help="per request, s")
    parser.add_argument(
        "--retry-503", type=int, default=5, help="times a 503 is asked again (0: never)"
    )
    parser.add_argument("--images", type=int, default=300, help="generated photos")
    parser.add_argument("--bad-fraction", type=float, default=0.07, help="share of bad requests")
    parser.add_argument("--workers", type=int, default=2, help="num_workers")
    parser.add_argument(
        "--cache-mib", type=int, default=64, help="resized_cache_size and client_cache_size"
    )
    parser.add_argument(
        "--decoded-cache-mib", type=int, default=64, help="the workers' decoded_cache_size"
    )
    parser.add_argument(
        "--slack-mib",
        type=int,
        default=0,
        help="RSS allowed above each process's documented bound (see bench/README.md)",
    )
    parser.add_argument("--keep-alive", action="store_true", help="keep_alive = true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample-interval", type=float, default=0.2, help="RSS sampling, s")
    parser.add_argument("--out", type=Path, help="JSON result (bench/results/load-<date>.json)")
    parser.add_argument("--keep-temp", action="store_true", help="keep corpus, config and log")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.urls < 1 or args.images < 4:
        parser.error("--connections and --urls must be positive, --images at least 4")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or BENCH_DIR / "results" / f"load-{stamp}.json"
    return Options(
        connections=args.connections,
        urls=args.urls,
        duration_limit=args.duration_limit,
        request_timeout=args.request_timeout,
        retry_503=args.retry_503,
        images=args.images,
        bad_fraction=args.bad_fraction,
        workers=args.workers,
        cache_mib=args.cache_mib,
        decoded_cache_mib=args.decoded_cache_mib,
        slack_mib=args.slack_mib,
        keep_alive=args.keep_alive,
        seed=args.seed,
        sample_interval=args.sample_interval,
        out=out,
        keep_temp=args.keep_temp,
    )


# --------------------------------------------------------------------------
# The corpus


@dataclass(frozen=True)
class CorpusImage:
    path: str  # relative to the origin directory
    width: int
    height: int
    fmt: str
    nbytes: int


@dataclass(frozen=True)
class Corpus:
    root: Path
    images: tuple[CorpusImage, ...]
    undecodable: tuple[str, ...]  # garbage, truncated, empty
    bombs: tuple[str, ...]  # pixels or structure over the limits
    heavy: tuple[str, ...] = ()  # served, but weigh: metadata, size

    def summary(self) -> dict[str, object]:
        sizes = [image.nbytes for image in self.images]
        pixels = [image.width * image.height for image in self.images]
        return {
            "images": len(self.images),
            "jpeg": sum(image.fmt == "JPEG" for image in self.images),
            "png": sum(image.fmt == "PNG" for image in self.images),
            "total_mib": round(sum(sizes) / MIB, 1),
            "largest_bytes": max(sizes),
            "largest_pixels": max(pixels),
            "bad_inputs": [*self.undecodable, *self.bombs],
            "heavy_inputs": list(self.heavy),
        }


def build_corpus(root: Path, count: int, rng: random.Random) -> Corpus:
    images = [_write_photo(root, k, rng) for k in range(count)]
    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "garbage.jpg").write_bytes(rng.randbytes(64 * 1024))
    whole = _encode(_photo(1600, 1200, rng), "JPEG", quality=85)
    (bad / "truncated.jpg").write_bytes(whole[: len(whole) * 2 // 5])
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "bomb.png").write_bytes(png_bomb(BOMB_SIDE, BOMB_SIDE))
    # Structure that costs a decoder seconds (refused before decoding).
    (bad / "scans.jpg").write_bytes(jpeg_scan_bomb(3000, (2000, 2000)))
    (bad / "chunks.png").write_bytes(png_many_chunks(200_000))
    (bad / "blocks.gif").write_bytes(gif_frames_1x1(1, extensions=200_000))
    # Served, but heavy: 20 MB of text in 60 kB, 8 MB of APP segments, and
    # an original near max_source_bytes (relayed whole at PASSTHROUGH_SIZE).
    (bad / "ztxt.png").write_bytes(png_ztxt(2000, 10_000))
    (bad / "segments.jpg").write_bytes(jpeg_segments(0xE5, 8000, b"\0" * 1000))
    side = 2200  # 4.8 MP of noise: a 14.5 MB PNG
    noise = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    (bad / "noise.png").write_bytes(_encode(noise, "PNG", compress_level=1))
    return Corpus(
        root,
        tuple(images),
        ("bad/garbage.jpg", "bad/truncated.jpg", "bad/empty.jpg"),
        ("bad/bomb.png", "bad/scans.jpg", "bad/chunks.png", "bad/blocks.gif"),
        ("bad/ztxt.png", "bad/segments.jpg", "bad/noise.png"),
    )


def _write_photo(root: Path, k: int, rng: random.Random) -> CorpusImage:
    sizes, weights = zip(*PHOTO_SIZES, strict=True)
    width, height = rng.choices(sizes, weights)[0]
    if rng.random() < 1 / 3:
        width, height = height, width
    fmt = "PNG" if rng.random() < 0.15 else "JPEG"
    if fmt == "PNG" and max(width, height) > PNG_MAX_SIDE:
        scale = PNG_MAX_SIDE / max(width, height)
        width, height = int(width * scale), int(height * scale)
    image = _photo(width, height, rng)
    if fmt == "PNG":
        if rng.random() < 0.3:
            image.putalpha(Image.linear_gradient("L").resize((width, height)))
        data = _encode(image, "PNG", compress_level=1)
        name = f"u{k % 10}/img-{k:04d}.png"
    else:
        params: dict[str, object] = {"quality": rng.choice((75, 85, 92))}
        if rng.random() < 0.1:
            # Stored sideways with EXIF orientation 6, as phones do.
            image = image.transpose(Image.Transpose.ROTATE_90)
            exif = Image.Exif()
            exif[0x0112] = 6
            params["exif"] = exif.tobytes()
        data = _encode(image, "JPEG", **params)
        name = f"u{k % 10}/img-{k:04d}.jpg"
        width, height = image.size
    target = root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return CorpusImage(name, width, height, fmt, len(data))


def _photo(width: int, height: int, rng: random.Random) -> Image.Image:
    """Gradients, soft colour blobs and grain: compresses like a photo, not
    like a flat test card (a 6 MP one is about 1.5-2 MB as JPEG q85)."""
    gradient = Image.linear_gradient("L")
    channels = []
    for _ in range(3):
        ramp = gradient.rotate(rng.uniform(0, 360)).resize((width, height))
        blob_size = (max(2, width // 64), max(2, height // 64))
        blobs = Image.effect_noise(blob_size, 64).resize((width, height), Image.Resampling.BICUBIC)
        channels.append(Image.blend(ramp, blobs, 0.6))
    grain = Image.effect_noise((width, height), 48).convert("RGB")
    return Image.blend(Image.merge("RGB", channels), grain, 0.2)


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid 8-bit greyscale PNG of ``width`` x ``height`` zero pixels.

    The zlib stream is assembled from one repeated block: after a full
    flush deflate starts afresh, so every 1 MiB of zeros compresses to the
    same bytes, and the Adler-32 of n zero bytes is (n mod 65521) << 16 | 1.
    50000 x 50000 is 2.5 GB of pixels in about 2.4 MB.
    """
    total = (width + 1) * height  # a filter byte (0) before each row
    chunk = bytes(MIB)
    compressor = zlib.compressobj(9)
    first = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeat = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    full_chunks, rest = divmod(total, MIB)
    tail = compressor.compress(bytes(rest)) + compressor.flush()
    adler = ((total % 65521) << 16) | 1
    stream = first + repeat * (full_chunks - 1) + tail[:-4] + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", stream)
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# --------------------------------------------------------------------------
# The targets


@dataclass(frozen=True)
class Target:
    method: str
    path: str
    kind: str
    expected: frozenset[int]


OK = frozenset({200})
# The SPEC allows 413 or 422 for a source over the limits; undecodable is 502.
EXPECTED = {
    "traversal": frozenset({400}),
    "bad_crop": frozenset({400}),
    "unknown_size": frozenset({404}),
    "overlong": frozenset({414}),
    "missing": frozenset({404}),
    "post": frozenset({405}),
    "undecodable": frozenset({502, 422}),
    "bomb": frozenset({413, 422}),
    "heavy": OK,
}
# Requests the front must hand to a worker: under overload they may be shed
# with 503 (max_worker_queue), which the run counts apart.
NEEDS_A_WORKER = frozenset({"image", "missing", "undecodable", "bomb", "heavy"})
BAD_WEIGHTS = {
    "traversal": 2.0,
    "bad_crop": 2.0,
    "unknown_size": 1.0,
    "overlong": 0.5,
    "missing": 1.5,
    "post": 0.5,
    "undecodable": 1.5,
    "bomb": 0.5,
    "heavy": 1.0,
}
TRAVERSALS = (
    "../{p}",
    "%2e%2e/{p}",
    "{d}%2f..%2f{f}",
    "{d}//{f}",
    "%252e%252e/{p}",
    "..%5c{f}",
    "{d}/%00{f}",
    "{d}/%e9{f}",
    "{d}/%zz{f}",
    "./{p}",
)
BAD_CROPS = (
    "600x0/400x1000",
    "0x0/1001x1000",
    "00000x0/1000x1000",
    "-1x0/500x500",
    "500x500/500x600",
    "0x700/1000x300",
    "0x0/1000x99999",
)


def build_targets(corpus: Corpus, count: int, bad_fraction: float, seed: int) -> list[Target]:
    """``count`` distinct requests: photos by size and crop, and bad ones."""
    rng = random.Random(seed)
    bad_count = round(count * bad_fraction)
    targets: dict[tuple[str, str], Target] = {}
    kinds, weights = zip(*BAD_WEIGHTS.items(), strict=True)
    while len(targets) < bad_count:
        kind = rng.choices(kinds, weights)[0]
        target = _bad_target(kind, corpus, rng, len(targets))
        targets.setdefault((target.method, target.path), target)
    sizes = list(SIZES)
    while len(targets) < count:
        image = rng.choice(corpus.images)
        size = rng.choice(sizes)
        crop = "" if rng.random() < 0.25 else "/" + _random_crop(rng)
        path = f"/{size}{crop}/{image.path}"
        targets.setdefault(("GET", path), Target("GET", path, "image", OK))
    ordered = list(targets.values())
    rng.shuffle(ordered)
    return ordered


def _random_crop(rng: random.Random) -> str:
    """Crop points in thousandths: mostly ordinary boxes, a few extreme ones."""
    roll = rng.random()
    if roll < 0.03:
        return "0x0/1000x1000"
    if roll < 0.06:
        x, y = rng.randrange(1000), rng.randrange(1000)
        return f"{x}x{y}/{x + 1}x{y + 1}"  # a sliver of a few pixels
    left, top = rng.randrange(0, 900), rng.randrange(0, 900)
    right = rng.randrange(left + 50, 1001) if left + 50 <= 1000 else 1000
    bottom = rng.randrange(top + 50, 1001) if top + 50 <= 1000 else 1000
    return f"{left}x{top}/{right}x{bottom}"


def _bad_target(kind: str, corpus: Corpus, rng: random.Random, n: int) -> Target:
    image = rng.choice(corpus.images)
    size = rng.choice(list(SIZES))
    directory, _, filename = image.path.rpartition("/")
    expected = EXPECTED[kind]
    if kind == "traversal":
        pattern = rng.choice(TRAVERSALS)
        return Target(
            "GET",
            f"/{size}/" + pattern.format(p=image.path, d=directory, f=filename),
            kind,
            expected,
        )
    if kind == "bad_crop":
        return Target("GET", f"/{size}/{rng.choice(BAD_CROPS)}/{image.path}", kind, expected)
    if kind == "unknown_size":
        return Target("GET", f"/nosize{rng.randrange(10_000)}/{image.path}", kind, expected)
    if kind == "overlong":
        return Target("GET", f"/{size}/" + "a" * (2050 + n) + ".jpg", kind, expected)
    if kind == "missing":
        return Target("GET", f"/{size}/missing/{n}-{filename}", kind, expected)
    if kind == "post":
        return Target("POST", f"/{size}/{image.path}", kind, expected)
    if kind == "heavy":
        name = rng.choice(corpus.heavy)
        crop = "" if rng.random() < 0.5 else "/" + _random_crop(rng)
        return Target("GET", f"/{size}{crop}/{name}", kind, expected)
    name = rng.choice(corpus.bombs if kind == "bomb" else corpus.undecodable)
    crop = "" if rng.random() < 0.5 else "/" + _random_crop(rng)
    if kind == "undecodable" and size == PASSTHROUGH_SIZE and not crop:
        # Documented: an uncropped size at max_dimension returns the original
        # bytes untouched, so a file whose header identifies it passes.
        expected = expected | OK
    return Target("GET", f"/{size}{crop}/{name}", kind, expected)


# --------------------------------------------------------------------------
# The phizer process


def phizer_command() -> list[str]:
    beside = Path(sys.executable).with_name("phizer")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("phizer")
    return [found] if found else [sys.executable, "-m", "phizer"]


def config_text(options: Options, port: int, origin: Path) -> str:
    properties = {
        "bind_host": HOST,
        "bind_port": port,
        "num_workers": options.workers,
        "resized_cache_size": f"{options.cache_mib}M",
        "client_cache_size": f"{options.cache_mib}M",
        "decoded_cache_size": f"{options.decoded_cache_mib}M",
        "keep_alive": str(options.keep_alive).lower(),
        "image_quality": 85,
        "max_age": 86400,
        "max_dimension": MAX_DIMENSION,
        "max_source_pixels": MAX_SOURCE_PIXELS,
        "max_source_bytes": MAX_SOURCE_BYTES,
        "max_inflight_bytes": f"{MAX_INFLIGHT_MIB}M",
        "decode_memory_reserve": f"{DECODE_MEMORY_RESERVE_MIB}M",
        "max_client_connections": max(4096, 2 * options.connections),
        # WARN: 4xx/5xx and restarts are logged, 200s are not (they cost CPU).
        "log_level": "WARN",
        "log_level_worker": "WARN",
    }
    lines = ["[properties]", *(f"{key} = {value}" for key, value in properties.items())]
    lines += ["", "[master]", f"directory = {origin}", "", "[sizes]"]
    lines += [f"{code} = {spec}" for code, spec in SIZES.items()]
    return "\n".join(lines) + "\n"


class PhizerServer:
    """``phizer -c FILE`` in its own session, stopped (and reaped) by ``stop``."""

    def __init__(self, workdir: Path, options: Options, origin: Path) -> None:
        self.workdir = workdir
        self.options = options
        self.origin = origin
        self.config_path = workdir / "phizer.conf"
        self.log_path = workdir / "phizer.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.server_header = ""
        self.ready_files = self._add_ready_files()

    def _add_ready_files(self) -> list[str]:
        """One small PNG per worker, named so that it routes to that worker."""
        data = _encode(Image.new("RGB", (40, 30), (90, 120, 150)), "PNG")
        by_worker: dict[int, str] = {}
        k = 0
        while len(by_worker) < self.options.workers:
            name = f"ready-{k}.png"
            by_worker.setdefault(zlib.crc32(name.encode()) % self.options.workers, name)
            k += 1
        for name in by_worker.values():
            (self.origin / name).write_bytes(data)
        return list(by_worker.values())

    def start(self) -> None:
        for _ in range(5):
            self.port = free_port_block(self.options.workers + 1)
            self.config_path.write_text(config_text(self.options, self.port, self.origin))
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [*phizer_command(), "-c", str(self.config_path)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.workdir,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            if self._wait_ready():
                return
            self.stop()
            if "cannot listen" not in self.log_text():
                break  # not a port race
        raise RuntimeError(f"phizer did not start; log:\n{self.log_text()[-3000:]}")

    def _wait_ready(self) -> bool:
        """True once each worker's ready file answers 200 through the front and
        every child carries its name."""
        assert self.process is not None
        deadline = time.monotonic() + READY_SECONDS
        pending = list(self.ready_files)
        while pending and time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                status, server = _simple_get(self.port, f"/s100/{pending[0]}")
            except OSError:
                status, server = 0, ""
            if status == 200:
                self.server_header = server
                pending.pop(0)
            else:
                time.sleep(0.05)
        expected = {"phizer-front", *(f"phizer-w{i}" for i in range(1, self.options.workers + 1))}
        while not pending and time.monotonic() < deadline:
            if set(named_children(self.pid)) == expected:
                return True
            time.sleep(0.05)
        return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> dict[str, object]:
        """SIGTERM, wait, then SIGKILL whatever of the session is left."""
        process = self.process
        if process is None:
            return {}
        started = time.monotonic()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_SECONDS)
        seconds = time.monotonic() - started
        exit_code = process.poll()
        leftovers = session_pids(process.pid)
        if leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        self.process = None
        return {"exit_code": exit_code, "seconds": round(seconds, 2), "leftover_pids": leftovers}

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _simple_get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Server", "")
    finally:
        connection.close()


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_parent() -> None:
    """Between fork and exec: phizer gets SIGTERM if this script dies."""
    _LIBC.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


# --------------------------------------------------------------------------
# /proc


def read_proc(pid: int, name: str) -> str | None:
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def child_pids(pid: int) -> list[int]:
    pids: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in os.listdir(f"/proc/{pid}/task"):
            text = read_proc(pid, f"task/{task}/children")
            pids.extend(int(p) for p in (text or "").split())
    return pids


def named_children(pid: int) -> dict[str, int]:
    named: dict[str, int] = {}
    for child in child_pids(pid):
        stat = read_proc(child, "stat")
        comm = read_proc(child, "comm")
        if stat and comm and stat.rsplit(")", 1)[1].split()[0] != "Z":
            named[comm.strip()] = child
    return named


def status_kib(pid: int, key: str) -> int | None:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM)."""
    text = read_proc(pid, "status")
    for line in (text or "").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float | None:
    stat = read_proc(pid, "stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, PermissionError):
        return None


def session_pids(sid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = read_proc(int(name), "stat")
            if stat and int(stat.rsplit(")", 1)[1].split()[3]) == sid:
                found.append(int(name))
    return found


# --------------------------------------------------------------------------
# Memory and process watch


@dataclass
class ProcessTrack:
    name: str
    pid: int
    idle_kib: int = 0
    peak_kib: int = 0
    peak_fds: int = 0


@dataclass
class PidChange:
    t: float
    name: str
    old: int | None
    new: int | None


class ProcessWatch:
    """Samples the supervisor's and children's RSS; notes every pid change."""

    def __init__(self, supervisor_pid: int, interval: float) -> None:
        self.supervisor_pid = supervisor_pid
        self.interval = interval
        self.started = time.monotonic()
        self.tracks: dict[str, ProcessTrack] = {"supervisor": ProcessTrack("supervisor", 0)}
        self.current: dict[str, int | None] = {}
        self.changes: list[PidChange] = []
        self.supervisor_gone_at: float | None = None
        self.timeline: list[tuple[float, dict[str, tuple[int, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def baseline(self) -> None:
        for name, pid in self._pids().items():
            rss = status_kib(pid, "VmRSS") or 0
            self.tracks[name] = ProcessTrack(name, pid, idle_kib=rss, peak_kib=rss)
            self.current[name] = pid

    def _pids(self) -> dict[str, int]:
        return {"supervisor": self.supervisor_pid, **named_children(self.supervisor_pid)}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        for track in self.tracks.values():
            hwm = status_kib(track.pid, "VmHWM")
            track.peak_kib = max(track.peak_kib, hwm or 0)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        t = round(time.monotonic() - self.started, 2)
        if read_proc(self.supervisor_pid, "stat") is None and self.supervisor_gone_at is None:
            self.supervisor_gone_at = t
        pids = self._pids()
        for name in set(self.current) | set(pids):
            old, new = self.current.get(name), pids.get(name)
            if old != new:
                self.changes.append(PidChange(t, name, old, new))
                self.current[name] = new
        row: dict[str, tuple[int, int]] = {}
        for name, pid in pids.items():
            rss = status_kib(pid, "VmRSS")
            if rss is None:
                continue
            fds = open_fds(pid) or 0
            track = self.tracks.setdefault(name, ProcessTrack(name, pid))
            track.pid = pid
            track.peak_kib = max(track.peak_kib, rss)
            track.peak_fds = max(track.peak_fds, fds)
            row[name] = (rss, fds)
        self.timeline.append((t, row))

    def per_second(self) -> dict[str, object]:
        """The timeline reduced to the highest RSS (MiB) and open fds of each
        second, one row per second. A worker's fds are mostly the front's
        connections to it, so they follow the requests it holds."""
        names = sorted(self.tracks)
        seconds: dict[int, dict[str, tuple[int, int]]] = {}
        for t, row in self.timeline:
            slot = seconds.setdefault(int(t), {})
            for name, (rss, fds) in row.items():
                old_rss, old_fds = slot.get(name, (0, 0))
                slot[name] = (max(old_rss, rss), max(old_fds, fds))
        rows = []
        for second, slot in sorted(seconds.items()):
            rss = [round(slot[n][0] / 1024, 1) if n in slot else None for n in names]
            fds = [slot[n][1] if n in slot else None for n in names]
            rows.append([second, *rss, *fds])
        columns = ["t", *(f"rss_mib:{n}" for n in names), *(f"fds:{n}" for n in names)]
        return {"columns": columns, "rows": rows}


# --------------------------------------------------------------------------
# The HTTP client


class BadResponse(Exception):
    pass


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    latencies_ok: list[float] = field(default_factory=list)
    unexpected: Counter[str] = field(default_factory=Counter)
    shed: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    not_images: int = 0
    bytes_received: int = 0
    connections_opened: int = 0
    stale_retries: int = 0
    retried_503: int = 0
    sent: int = 0

    def record(self, target: Target, status: int | None, error: str | None) -> None:
        outcome = str(status) if status is not None else f"error:{error}"
        self.by_kind.setdefault(target.kind, Counter())[outcome] += 1
        if status is not None and status in target.expected:
            return
        if status == 503 and target.kind in NEEDS_A_WORKER:
            # Shed: the worker's queue stayed full through every retry. A
            # fast, clear answer under overload, not a wrong one.
            self.shed[target.kind] += 1
            return
        key = f"{target.kind} -> {outcome}"
        self.unexpected[key] += 1
        examples = self.examples.setdefault(key, [])
        if len(examples) < EXAMPLES_PER_OUTCOME:
            examples.append(f"{target.method} {target.path[:200]}")


@dataclass(frozen=True)
class Reply:
    status: int
    close: bool
    nbytes: int
    content_type: str
    retry_after: float | None = None


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class LoadClient:
    """``connections`` tasks share one iterator of targets; each request is
    raw HTTP/1.1 on asyncio streams. A connection is reused only while the
    server does not say ``Connection: close``."""

    def __init__(self, port: int, targets: Sequence[Target], options: Options) -> None:
        self.port = port
        self.targets: Iterator[Target] = iter(targets)
        self.options = options
        self.tally = Tally()
        self.in_flight = 0
        self.unfinished_at_limit = 0
        self.stopped_by_time = False
        self.elapsed = 0.0
        # Other work on the machine shows here; throughput depends on it.
        self.load_average_at_start = os.getloadavg()

    async def run(self, progress: ProcessWatch) -> None:
        started = time.monotonic()
        tasks = [asyncio.create_task(self._connection()) for _ in range(self.options.connections)]
        reporter = asyncio.create_task(self._progress(started, progress))
        _, pending = await asyncio.wait(tasks, timeout=self.options.duration_limit)
        if pending:
            self.stopped_by_time = True
            self.unfinished_at_limit = self.in_flight
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self.elapsed = time.monotonic() - started
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter

    async def _progress(self, started: float, watch: ProcessWatch) -> None:
        while True:
            await asyncio.sleep(PROGRESS_SECONDS)
            done = len(self.tally.latencies) + sum(self.tally.errors.values())
            rss = {name: round(t.peak_kib / 1024) for name, t in watch.tracks.items()}
            print(
                f"  {time.monotonic() - started:5.0f}s  {done} done, {self.in_flight} in flight,"
                f" peak RSS MiB {rss}",
                flush=True,
            )

    async def _connection(self) -> None:
        streams: Streams | None = None
        try:
            for target in self.targets:
                streams = await self._one(target, streams)
        finally:
            if streams is not None:
                _close(streams[1])

    async def _one(self, target: Target, streams: Streams | None) -> Streams | None:
        """One URL to its final answer: a 503 (a worker's queue is full, or
        it is restarting) is asked again after a pause, up to --retry-503
        times, as a CDN would. The latency runs from the first attempt."""
        self.in_flight += 1
        started = time.perf_counter()
        try:
            for attempt in range(self.options.retry_503 + 1):
                reply, error, streams = await self._attempt(target, streams)
                if reply is None or reply.status != 503 or attempt == self.options.retry_503:
                    break
                self.tally.retried_503 += 1
                await asyncio.sleep(_retry_pause(reply.retry_after, attempt))
        finally:
            self.in_flight -= 1
        latency = time.perf_counter() - started
        tally = self.tally
        if reply is None:
            tally.errors[error or "unknown"] += 1
            tally.record(target, None, error)
            return streams
        tally.statuses[reply.status] += 1
        tally.latencies.append(latency)
        if reply.status == 200:
            tally.latencies_ok.append(latency)
            if not reply.content_type.startswith("image/") or reply.nbytes == 0:
                tally.not_images += 1
        tally.record(target, reply.status, None)
        return streams

    async def _attempt(
        self, target: Target, streams: Streams | None
    ) -> tuple[Reply | None, str | None, Streams | None]:
        """One request; the connection comes back only if it may be reused."""
        self.tally.sent += 1
        try:
            async with asyncio.timeout(self.options.request_timeout):
                reply, streams = await self._exchange(target, streams)
        except TimeoutError:
            return None, "timeout", _closed(streams)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            BadResponse,
            ValueError,
        ) as err:
            return None, type(err).__name__, _closed(streams)
        self.tally.bytes_received += reply.nbytes
        return reply, None, _closed(streams) if reply.close else streams

    async def _exchange(self, target: Target, streams: Streams | None) -> tuple[Reply, Streams]:
        request = _request_bytes(target, self.port)
        if streams is not None:
            # A kept-alive connection may have been closed by the server
            # meanwhile: retry once on a new one if nothing came back.
            try:
                streams[1].write(request)
                return await _read_reply(streams[0], target.method), streams
            except (ConnectionError, asyncio.IncompleteReadError) as err:
                if isinstance(err, asyncio.IncompleteReadError) and err.partial:
                    raise
                _close(streams[1])
                self.tally.stale_retries += 1
        streams = await asyncio.open_connection(HOST, self.port)
        self.tally.connections_opened += 1
        streams[1].write(request)
        return await _read_reply(streams[0], target.method), streams


def _request_bytes(target: Target, port: int) -> bytes:
    body = "Content-Length: 0\r\n" if target.method == "POST" else ""
    return (
        f"{target.method} {target.path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"User-Agent: phizer-load\r\nAccept: */*\r\n{body}\r\n"
    ).encode("latin-1")


async def _read_reply(reader: asyncio.StreamReader, method: str) -> Reply:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise BadResponse(lines[0][:80])
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    close = headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0"
    if method == "HEAD" or status in (204, 304) or status < 200:
        nbytes = 0
    elif "content-length" in headers:
        nbytes = len(await reader.readexactly(int(headers["content-length"])))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        nbytes = await _read_chunked(reader)
    else:
        nbytes = len(await reader.read())
        close = True
    return Reply(
        status, close, nbytes, headers.get("content-type", ""), _seconds(headers.get("retry-after"))
    )


def _seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not used by phizer)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _retry_pause(retry_after: float | None, attempt: int) -> float:
    """Retry-After if given, else exponential from 0.25 s; capped and jittered
    so that a thousand connections do not come back in step."""
    wanted = retry_after if retry_after is not None else 0.25 * 2**attempt
    return min(RETRY_PAUSE_CAP, wanted) * random.uniform(0.5, 1.0)


async def _read_chunked(reader: asyncio.StreamReader) -> int:
    total = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return total
        total += len(await reader.readexactly(size))
        await reader.readexactly(2)


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


def _closed(streams: Streams | None) -> None:
    if streams is not None:
        _close(streams[1])


def raise_fd_limit() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# --------------------------------------------------------------------------
# The report


def percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency_summary(values: Sequence[float]) -> dict[str, float | None]:
    def ms(value: float | None) -> float | None:
        return None if value is None else round(1000 * value, 1)

    return {
        "p50_ms": ms(percentile(values, 0.50)),
        "p90_ms": ms(percentile(values, 0.90)),
        "p99_ms": ms(percentile(values, 0.99)),
        "max_ms": ms(max(values) if values else None),
    }


FRONT_ACCESS = re.compile(r"\[front\] phizer\.access: \S+ \S+ (\d{3}) .*\bworker=(\S+)")


def log_findings(log: str) -> dict[str, object]:
    """What phizer's log says; the front logs 4xx/5xx at WARN and ERROR, and
    (when its access line names it) the worker that was asked."""
    lines = log.splitlines()
    by_worker: Counter[str] = Counter()
    for line in lines:
        match = FRONT_ACCESS.search(line)
        if match and match.group(1).startswith("5"):
            by_worker[f"{match.group(1)} worker={match.group(2)}"] += 1
    restarts = [line for line in lines if "restarting" in line]
    killed = [line for line in lines if "did not stop in time" in line]
    alarming = [
        line
        for line in lines
        if any(
            word in line
            for word in (
                "Traceback",
                "restarting",
                "killing it",
                " failed",
                "internal error",
                "MemoryError",
            )
        )
    ]
    return {
        "lines": len(lines),
        "error_lines": sum(" ERROR " in line for line in lines),
        "warning_lines": sum(" WARNING " in line for line in lines),
        "restarting_lines": len(restarts),
        "killed_at_stop_lines": len(killed),
        "front_5xx_by_worker": dict(sorted(by_worker.items())),
        "alarming_examples": alarming[:MAX_EXAMPLES],
    }


UNKNOWN_OPTION = re.compile(r"unknown option \[properties\] (\w+)")


def cache_settings(options: Options, log: str) -> dict[str, list[tuple[str, int]]]:
    """The caches each role holds, as (setting, bytes); a setting this phizer
    warned to be unknown (an older version) bounds nothing."""
    unknown = set(UNKNOWN_OPTION.findall(log))
    front = [("resized_cache_size", options.cache_mib * MIB)]
    worker = [
        ("client_cache_size", options.cache_mib * MIB),
        ("decoded_cache_size", options.decoded_cache_mib * MIB),
    ]
    return {
        "front": [item for item in front if item[0] not in unknown],
        "worker": [item for item in worker if item[0] not in unknown],
    }


def allowed_beside_caches(role: str, options: Options) -> tuple[int, int]:
    """(in-flight budget, fixed overhead) in bytes, as docs/operations.md states them."""
    if role == "worker":
        decode = DECODE_BYTES_PER_PIXEL * MAX_SOURCE_PIXELS
        return MAX_INFLIGHT_MIB * MIB, OWN_MIB * MIB + DECODE_MEMORY_RESERVE_MIB * MIB + decode
    if role == "front":
        # Originals gathered for the cache as they are relayed; the mix's
        # relays go to fast clients, so none holds its 512 KiB for long.
        gathering = options.cache_mib * MIB // 8
        return gathering, OWN_MIB * MIB + options.connections * CONNECTION_KIB * 1024
    return 0, OWN_MIB * MIB


def memory_report(watch: ProcessWatch, options: Options, log: str) -> list[dict[str, object]]:
    caches = cache_settings(options, log)
    report = []
    for name, track in sorted(watch.tracks.items()):
        role = (
            "front" if name == "phizer-front" else "worker" if name.startswith("phizer-w") else ""
        )
        held = caches.get(role, [])
        bound = sum(size for _, size in held)
        in_flight, fixed = allowed_beside_caches(role, options)
        setting = " + ".join(setting for setting, _ in held) or None
        peak = track.peak_kib * 1024
        limit = bound + in_flight + fixed + options.slack_mib * MIB
        report.append(
            {
                "process": name,
                "pid": track.pid,
                "cache_setting": setting,
                "cache_bound_mib": round(bound / MIB, 1),
                "in_flight_mib": round(in_flight / MIB, 1),
                "fixed_overhead_mib": round(fixed / MIB, 1),
                "idle_rss_mib": round(track.idle_kib / 1024, 1),
                "peak_rss_mib": round(peak / MIB, 1),
                "beyond_caches_mib": round((peak - bound) / MIB, 1),
                "limit_mib": round(limit / MIB, 1),
                "within_limit": peak <= limit,
                "peak_open_fds": track.peak_fds,
                "cpu_seconds": cpu_seconds(track.pid),
            }
        )
    return report


def build_report(
    options: Options,
    corpus: Corpus,
    targets: Sequence[Target],
    server: PhizerServer,
    client: LoadClient,
    watch: ProcessWatch,
    memory: list[dict[str, object]],
    stop: dict[str, object],
    fd_limit: tuple[int, int],
    commit: str | None,
) -> dict[str, object]:
    tally = client.tally
    completed = len(tally.latencies)
    classes = Counter(f"{status // 100}xx" for status in tally.statuses.elements())
    log = log_findings(server.log_text())
    crashes = [asdict(change) for change in watch.changes]
    checks = {
        "no_child_pid_change": not crashes,
        "no_restart_in_log": log["restarting_lines"] == 0,
        "supervisor_alive_until_stop": watch.supervisor_gone_at is None,
        "memory_within_limit": all(row["within_limit"] for row in memory),
        "clean_stop": stop.get("exit_code") == 0 and not stop.get("leftover_pids"),
        "no_child_killed_at_stop": log["killed_at_stop_lines"] == 0,
        "no_client_errors": not tally.errors,
        "all_statuses_as_expected": not tally.unexpected,
        "all_urls_done": completed + sum(tally.errors.values()) == len(targets),
    }
    kinds = Counter(target.kind for target in targets)
    return {
        "date": datetime.now().isoformat(timespec="seconds"),
        "phizer": server.server_header,
        "commit": commit,
        "phizer_command": phizer_command(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "client_fd_limit": list(fd_limit),
            "load_average_at_start": [round(x, 2) for x in client.load_average_at_start],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "client_cpu_seconds": round(_own_cpu_seconds(), 1),
        },
        "options": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in asdict(options).items()
        },
        "phizer_config": {
            "sizes": SIZES,
            "num_workers": options.workers,
            "resized_cache_size_mib": options.cache_mib,
            "client_cache_size_mib": options.cache_mib,
            "decoded_cache_size_mib": options.decoded_cache_mib,
            "keep_alive": options.keep_alive,
            "max_dimension": MAX_DIMENSION,
            "max_source_pixels": MAX_SOURCE_PIXELS,
            "max_source_bytes": MAX_SOURCE_BYTES,
            "max_inflight_bytes_mib": MAX_INFLIGHT_MIB,
            "decode_memory_reserve_mib": DECODE_MEMORY_RESERVE_MIB,
        },
        "corpus": corpus.summary(),
        "targets": {"total": len(targets), "by_kind": dict(sorted(kinds.items()))},
        "load": {
            "seconds": round(client.elapsed, 2),
            "stopped_by_time_limit": client.stopped_by_time,
            "unfinished_at_limit": client.unfinished_at_limit,
            "sent": tally.sent,
            "responses": completed,
            "requests_per_second": round(completed / client.elapsed, 1) if client.elapsed else None,
            "mib_received": round(tally.bytes_received / MIB, 1),
            "connections_opened": tally.connections_opened,
            "stale_keepalive_retries": tally.stale_retries,
            "retried_503": tally.retried_503,
        },
        "statuses": {
            "by_class": dict(sorted(classes.items())),
            "by_code": {str(code): n for code, n in sorted(tally.statuses.items())},
            "by_kind": {kind: dict(sorted(c.items())) for kind, c in sorted(tally.by_kind.items())},
            "unexpected": dict(tally.unexpected.most_common()),
            "shed_503": dict(tally.shed.most_common()),
            "unexpected_examples": tally.examples,
            "200_not_an_image": tally.not_images,
        },
        "client_errors": dict(tally.errors),
        "latency_all": latency_summary(tally.latencies),
        "latency_200": latency_summary(tally.latencies_ok),
        "processes": {
            "pid_changes": crashes,
            "supervisor_gone_at": watch.supervisor_gone_at,
            "log": log,
            "stop": stop,
        },
        "memory": {
            "slack_mib": options.slack_mib,
            "per_process": memory,
            "per_second": watch.per_second(),
        },
        "checks": checks,
        "ok": all(checks.values()),
    }


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def to_json(report: dict[str, object]) -> str:
    """Indented JSON with every list of numbers on one line (the timeline
    stays one row per second)."""
    text = json.dumps(report, indent=1)
    number = r"(?:-?[\d.]+(?:e-?\d+)?|null)"
    flat = re.compile(rf"\[\s+({number}(?:,\s+{number})*)\s+\]")
    return flat.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def print_report(report: dict[str, object]) -> None:
    load = report["load"]
    statuses = report["statuses"]
    assert isinstance(load, dict) and isinstance(statuses, dict)
    print()
    print(f"phizer {report['phizer']}  commit {report['commit']}")
    print(
        f"requests: {load['sent']} sent ({load['retried_503']} of them 503 retries),"
        f" {load['responses']} URLs answered in {load['seconds']} s"
        f" ({load['requests_per_second']} answers/s, {load['mib_received']} MiB)"
        f"{'  STOPPED BY TIME LIMIT' if load['stopped_by_time_limit'] else ''}"
    )
    print(f"statuses by class: {statuses['by_class']}")
    print(f"statuses by code:  {statuses['by_code']}")
    print(f"unexpected:        {statuses['unexpected'] or 'none'}")
    print(f"shed (503 after every retry): {statuses['shed_503'] or 'none'}")
    print(f"client errors:     {report['client_errors'] or 'none'}")
    print(f"latency (all):     {report['latency_all']}")
    print(f"latency (200):     {report['latency_200']}")
    processes = report["processes"]
    assert isinstance(processes, dict)
    print(f"pid changes:       {processes['pid_changes'] or 'none'}")
    print(f"restarting lines:  {processes['log']['restarting_lines']}")
    print(f"front 5xx by worker (log): {processes['log']['front_5xx_by_worker'] or 'none'}")
    print(f"stop:              {processes['stop']}")
    memory = report["memory"]
    assert isinstance(memory, dict)
    print(
        "memory (limit: caches + in-flight budget + fixed overhead"
        f" + {memory['slack_mib']} MiB slack):"
    )
    print(
        f"  {'process':<14}{'idle':>8}{'peak':>8}{'caches':>8}{'flight':>8}{'fixed':>8}"
        f"{'limit':>8}{'fds':>7}  verdict"
    )
    for row in memory["per_process"]:
        verdict = "within" if row["within_limit"] else "OVER"
        print(
            f"  {row['process']:<14}{row['idle_rss_mib']:>8}{row['peak_rss_mib']:>8}"
            f"{row['cache_bound_mib']:>8}{row['in_flight_mib']:>8}{row['fixed_overhead_mib']:>8}"
            f"{row['limit_mib']:>8}"
            f"{row['peak_open_fds']:>7}  {verdict}"
        )
    checks = report["checks"]
    assert isinstance(checks, dict)
    failed = [name for name, passed in checks.items() if not passed]
    print(f"checks: {'all passed' if not failed else 'FAILED: ' + ', '.join(failed)}")


# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    fd_limit = raise_fd_limit()
    if fd_limit[0] < options.connections + 100:
        print(f"open-file limit {fd_limit[0]} is too low for {options.connections} connections")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="phizer-load-"))
    server: PhizerServer | None = None
    try:
        rng = random.Random(options.seed)
        started = time.monotonic()
        origin = workdir / "origin"
        corpus = build_corpus(origin, options.images, rng)
        print(f"corpus: {corpus.summary()} in {time.monotonic() - started:.1f}s", flush=True)
        targets = build_targets(corpus, options.urls, options.bad_fraction, options.seed)
        commit = _git_commit()  # of the checkout at the start; it may move meanwhile
        server = PhizerServer(workdir, options, origin)
        server.start()
        print(
            f"phizer {server.server_header} on {HOST}:{server.port} (pid {server.pid});"
            f" {len(targets)} URLs over {options.connections} connections",
            flush=True,
        )
        watch = ProcessWatch(server.pid, options.sample_interval)
        watch.baseline()
        watch.start()
        client = LoadClient(server.port, targets, options)
        try:
            asyncio.run(client.run(watch))
        finally:
            watch.stop()
        memory = memory_report(watch, options, server.log_text())
        stop = server.stop()
        report = build_report(
            options, corpus, targets, server, client, watch, memory, stop, fd_limit, commit
        )
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.write_text(to_json(report))
        print_report(report)
        print(f"written to {options.out}")
        return 0 if report["ok"] else 1
    finally:
        if server is not None:
            server.stop()
        if options.keep_temp:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
