#!/usr/bin/env python3
"""Large originals at once: peak memory of every phizer process against its bound.

    python bench/originals.py [--count 10] [--mib 45] [--out FILE.json]

Writes one PNG of noise of about --mib MiB and --count names for it (hard
links: to phizer, --count different originals), starts ``phizer -c`` on a
directory origin with one worker (every original on the same worker, the
worst case), then asks for all of them at once twice: at a size at
``max_dimension`` (the original's bytes, passed on untouched, read by slow
clients) and at a small size (fetched, decoded, resized). Reports the
statuses and each process's peak RSS (the kernel's high-water mark, reset
after start) against the bound docs/operations.md states: caches +
``max_inflight_bytes`` + fixed overhead. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from load import (
    BENCH_DIR,
    CONNECTION_KIB,
    DECODE_BYTES_PER_PIXEL,
    HOST,
    MIB,
    OWN_MIB,
    named_children,
    phizer_command,
    status_kib,
)
from PIL import Image

from tests.ports import free_port_block

# The configuration; the bound docs/operations.md states for it is
# figured with load.py's reading of that table.
CACHE_MIB = {"resized_cache_size": 64, "client_cache_size": 128, "decoded_cache_size": 64}
MAX_INFLIGHT_MIB = 256
DECODE_MEMORY_RESERVE_MIB = 32
MAX_SOURCE_PIXELS = 20_000_000
SLOW_READ = 256 * 1024  # a slow client takes this much, then pauses
SLOW_PAUSE = 0.005


def noise_png(mib: int) -> bytes:
    side = int((mib * MIB / 3) ** 0.5)
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def config_text(port: int, origin: Path) -> str:
    properties = {
        "bind_host": HOST,
        "bind_port": port,
        "num_workers": 1,
        **{name: f"{size}M" for name, size in CACHE_MIB.items()},
        "max_inflight_bytes": f"{MAX_INFLIGHT_MIB}M",
        "decode_memory_reserve": f"{DECODE_MEMORY_RESERVE_MIB}M",
        "max_source_bytes": "64M",
        "max_source_pixels": MAX_SOURCE_PIXELS,
        "max_dimension": 3000,
        "log_level": "WARN",
        "log_level_worker": "WARN",
    }
    lines = ["[properties]", *(f"{key} = {value}" for key, value in properties.items())]
    lines += ["", "[master]", f"directory = {origin}", "", "[sizes]"]
    lines += ["s220 = 220x220", "full = 3000x3000"]
    return "\n".join(lines) + "\n"


def get(port: int, path: str, slow: bool) -> tuple[int, int]:
    """(status, body bytes) of one GET; a slow client pauses after each read."""
    with socket.create_connection((HOST, port), timeout=120) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        received = bytearray()
        while chunk := sock.recv(SLOW_READ):
            received += chunk
            if slow:
                time.sleep(SLOW_PAUSE)
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), len(body)


def burst(port: int, paths: list[str], slow: bool) -> dict[str, int]:
    """Every path at once; how many got each status."""
    answers: list[tuple[int, int]] = []
    threads = [
        threading.Thread(target=lambda p=path: answers.append(get(port, p, slow))) for path in paths
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses: dict[str, int] = {}
    for status, _ in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return statuses


def bound_mib(role: str, connections: int) -> dict[str, float]:
    if role == "phizer-front":
        caches = CACHE_MIB["resized_cache_size"]
        # Gathered for the cache, and 512 KiB per original being relayed.
        in_flight = caches / 8 + connections * 0.5
        fixed = OWN_MIB + connections * CONNECTION_KIB / 1024
    else:
        caches = CACHE_MIB["client_cache_size"] + CACHE_MIB["decoded_cache_size"]
        decode = DECODE_BYTES_PER_PIXEL * MAX_SOURCE_PIXELS / MIB
        in_flight, fixed = MAX_INFLIGHT_MIB, OWN_MIB + DECODE_MEMORY_RESERVE_MIB + decode
    return {
        "caches": caches,
        "in_flight": in_flight,
        "fixed": round(fixed, 1),
        "limit": round(caches + in_flight + fixed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10, help="originals asked for at once")
    parser.add_argument("--mib", type=int, default=45, help="size of each original")
    parser.add_argument(
        "--out", type=Path, help="JSON result (bench/results/originals-<date>.json)"
    )
    args = parser.parse_args()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or BENCH_DIR / "results" / f"originals-{stamp}.json"
    with tempfile.TemporaryDirectory(prefix="phizer-originals-") as temp:
        root = Path(temp)
        origin = root / "origin"
        origin.mkdir()
        data = noise_png(args.mib)
        (origin / "big-0.png").write_bytes(data)
        for k in range(1, args.count):
            os.link(origin / "big-0.png", origin / f"big-{k}.png")
        port = free_port_block(2)
        (root / "phizer.conf").write_text(config_text(port, origin))
        command = [*phizer_command(), "-c", str(root / "phizer.conf")]
        log = open(root / "phizer.log", "wb")  # noqa: SIM115 (closed below)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while len(named_children(process.pid)) < 2 or not _answers(port):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("phizer did not start: see its log")
                time.sleep(0.1)
            named = named_children(process.pid)
            for pid in named.values():
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak from here on
            names = [f"big-{k}.png" for k in range(args.count)]
            started = time.monotonic()
            untouched = burst(port, [f"/full/{name}" for name in names], slow=True)
            resized = burst(port, [f"/s220/{name}" for name in names], slow=False)
            seconds = round(time.monotonic() - started, 1)
            memory = {}
            for name, pid in sorted(named.items()):
                peak = round((status_kib(pid, "VmHWM") or 0) / 1024, 1)
                bound = bound_mib(name, args.count)
                memory[name] = {"peak_mib": peak, **bound, "within": peak <= bound["limit"]}
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
            log.close()
    report = {
        "date": stamp,
        "original_bytes": len(data),
        "count": args.count,
        "untouched_statuses": untouched,
        "resized_statuses": resized,
        "seconds": seconds,
        "memory": memory,
        "ok": all(row["within"] for row in memory.values()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{args.count} originals of {len(data) / MIB:.1f} MiB at once, in {seconds} s")
    print(f"  at max_dimension (slow clients): {untouched}")
    print(f"  at s220:                         {resized}")
    print(f"  {'process':<14}{'peak':>8}{'caches':>8}{'flight':>8}{'fixed':>8}{'limit':>8}")
    for name, row in memory.items():
        print(
            f"  {name:<14}{row['peak_mib']:>8}{row['caches']:>8}{row['in_flight']:>8}"
            f"{row['fixed']:>8}{row['limit']:>8}  {'within' if row['within'] else 'OVER'}"
        )
    print(f"written to {out}")
    return 0 if report["ok"] else 1


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.sendall(b"GET /_health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
