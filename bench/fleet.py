#!/usr/bin/env python3
"""A two-host phizer fleet, with and without the shared cache tier.

One origin (an HTTP server on 127.0.0.1 that counts requests), two phizer
hosts (the real ``phizer`` command, a front and 2 workers each, on free
loopback ports) and, for the second run, a Redis or memcached on a free
loopback port that both hosts use as ``[cache] shared``. The workload asks
every URL once per host: a first pass sends each URL to one host (by file
name, as nginx's consistent hashing would, or ``--first-pass spread``), a
second pass, once the first one's write-backs have landed, sends it to the
other one, as a re-hash after a host went down or a second CDN edge
would. The hosts and the store are new for each run, so nothing is cached
at the start.

Reported per run: origin fetches per unique original and per unique URL,
resizes per unique URL (from the origin's counts and each host's
``/_metrics``), wall time and requests per second; then the throughput
ratio with/without the tier. With the tier the target is 1.0 resize per
URL and 1.0 fetch per original.

    python bench/fleet.py [--photos 40] [--store redis|memcached]
                          [--first-pass by-name|spread] [--concurrency 8]
                          [--time-limit 300] [--out FILE.json]

Needs redis-server (or memcached) installed, and phizer installed with its
test extras (the script reuses tests/e2e_support.py and tests/services.py);
run it from the repository. Everything listens on 127.0.0.1 and is stopped
at the end; a run that passes --time-limit stops with an error.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e_support import OriginServer, PhizerProcess, http_get
from tests.imagetools import encode, photo
from tests.metrics_support import samples
from tests.services import memcached_service, redis_service, running

SIZES = {"s220": "220x220", "sq150": "150 square", "l640": "640x400 landscape"}
HOSTS = 2
WORKERS_PER_HOST = 2
QUIET = {"log_level": "WARN", "log_level_worker": "WARN"}
RESIZES = "phizer_resize_duration_seconds_count"
WRITES = "phizer_tier_writes_total"
SETTLE_SECONDS = 10.0
TIER_PROBLEMS = (
    "phizer_tier_errors_total",
    "phizer_tier_skipped_total",
    "phizer_tier_writes_dropped_total",
    "phizer_tier_rejected_total",
)


@dataclass
class RunResult:
    mode: str
    unique_urls: int
    unique_originals: int
    requests: int
    failures: int
    origin_fetches: int
    resizes: int
    seconds: float
    # Tier errors, skipped calls, dropped writes and rejected values, when there were any.
    tier_problems: dict[str, int]
    # With a shared Redis: from a purge on one host until the other served
    # the photo's new bytes at every size, in milliseconds.
    purge_ms: float | None = None

    @property
    def fetches_per_original(self) -> float:
        return self.origin_fetches / self.unique_originals

    @property
    def fetches_per_url(self) -> float:
        return self.origin_fetches / self.unique_urls

    @property
    def resizes_per_url(self) -> float:
        return self.resizes / self.unique_urls

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    def summary(self) -> dict[str, object]:
        return {
            **asdict(self),
            "fetches_per_original": round(self.fetches_per_original, 3),
            "fetches_per_url": round(self.fetches_per_url, 3),
            "resizes_per_url": round(self.resizes_per_url, 3),
            "requests_per_second": round(self.requests_per_second, 1),
        }


def make_photos(origin: OriginServer, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    names = []
    for n in range(count):
        width, height = rng.choice([(1600, 1200), (1200, 1600), (2048, 1365), (1024, 768)])
        names.append(origin.add(f"fleet/photo-{n:03d}.jpg", encode(photo(width, height), "JPEG")))
    return names


Job = tuple[int, str]  # (host index, URL)


def schedule(urls: list[str], seed: int, by_name: bool) -> tuple[list[Job], list[Job]]:
    """Every URL once per host: in the first pass to one host, in the
    second to the other one, each pass in its own random order.

    ``by_name``: the first pass routes by the file name, as nginx's
    ``hash $image_name consistent`` does (docs/deploy.md), so all sizes of
    a photo go to one host; otherwise URL after URL to each host in turn,
    so two hosts may ask for one original at the same moment.
    """
    rng = random.Random(seed)

    def first_host(index: int, url: str) -> int:
        if by_name:
            return zlib.crc32(url.rsplit("/", 1)[1].encode()) % HOSTS
        return index % HOSTS

    first = [(first_host(index, url), url) for index, url in enumerate(urls)]
    rng.shuffle(first)
    second = [((host + 1) % HOSTS, url) for host, url in first]
    rng.shuffle(second)
    return first, second


def settle(hosts: list[PhizerProcess], expected: int, deadline: float) -> None:
    """Wait until the fleet has written ``expected`` entries to its shared
    tier: write-backs land just after the answers, and the second pass
    stands for requests that come later (another CDN edge, minutes on)."""
    limit = min(deadline, time.monotonic() + SETTLE_SECONDS)
    while fleet_metric(hosts, WRITES) < expected and time.monotonic() < limit:
        time.sleep(0.05)


def metric(process: PhizerProcess, wanted: str) -> int:
    """``wanted`` summed over every process of the host."""
    found = samples(process.get("/_metrics").body.decode("utf-8"))
    return int(sum(v for (name, _), v in found.items() if name == wanted))


def fleet_metric(hosts: list[PhizerProcess], wanted: str) -> int:
    return sum(metric(process, wanted) for process in hosts)


@contextmanager
def fleet(
    workdir: Path, origin: OriginServer, cache: dict[str, object] | None
) -> Iterator[list[PhizerProcess]]:
    sections = {"cache": cache} if cache else None
    hosts = [
        PhizerProcess(
            workdir / f"host-{n}",
            origin,
            sizes=SIZES,
            properties=QUIET,
            num_workers=WORKERS_PER_HOST,
            sections=sections,
        )
        for n in range(HOSTS)
    ]
    try:
        for process in hosts:
            process.start()
        yield hosts
    finally:
        for process in hosts:
            process.stop()


def run(
    mode: str,
    workdir: Path,
    origin: OriginServer,
    names: list[str],
    cache: dict[str, object] | None,
    options: argparse.Namespace,
    deadline: float,
) -> RunResult:
    urls = [f"/{size}/{name}" for name in names for size in SIZES]
    passes = schedule(urls, options.seed, options.first_pass == "by-name")
    with fleet(workdir / mode, origin, cache) as hosts:
        fetched_before = sum(origin.count(name) for name in names)
        counted = (RESIZES, WRITES, *TIER_PROBLEMS)
        before = {name: fleet_metric(hosts, name) for name in counted}

        def ask(job: Job) -> bool:
            if time.monotonic() > deadline:
                return False
            host, url = job
            try:
                return http_get(hosts[host].port, url, timeout=60).status == 200
            except OSError:
                return False

        answers: list[bool] = []
        seconds = 0.0
        with ThreadPoolExecutor(options.concurrency) as pool:
            for number, jobs in enumerate(passes):
                if number and cache:
                    fetched = sum(origin.count(name) for name in names) - fetched_before
                    settle(hosts, before[WRITES] + len(urls) + fetched, deadline)
                started = time.monotonic()
                answers += pool.map(ask, jobs)
                seconds += time.monotonic() - started
        if time.monotonic() > deadline:
            raise SystemExit("time limit reached; use fewer --photos")
        fetched = sum(origin.count(name) for name in names) - fetched_before
        after = {name: fleet_metric(hosts, name) - before[name] for name in counted}
        purge_ms = None
        if cache and options.store == "redis":
            purge_ms = purge_reaches_the_other_host(hosts, origin, names[0], deadline)
    return RunResult(
        mode,
        len(urls),
        len(names),
        len(answers),
        answers.count(False),
        fetched,
        after[RESIZES],
        seconds,
        {name: after[name] for name in TIER_PROBLEMS if after[name]},
        purge_ms,
    )


def purge_reaches_the_other_host(
    hosts: list[PhizerProcess], origin: OriginServer, name: str, deadline: float
) -> float:
    """Replace ``name`` at the origin, purge it on the first host and time
    how long until the second serves the new bytes at every size."""
    urls = [f"/{size}/{name}" for size in SIZES]
    old = [http_get(hosts[1].port, url).body for url in urls]
    origin.add(name, encode(photo(900, 600), "JPEG", quality=90))
    started = time.monotonic()
    if http_get(hosts[0].port, f"/_purge/{name}", method="POST").status != 200:
        raise SystemExit("the purge was refused")
    while time.monotonic() < deadline:
        now = [http_get(hosts[1].port, url).body for url in urls]
        if all(new != before for new, before in zip(now, old, strict=True)):
            return 1000 * (time.monotonic() - started)
        time.sleep(0.01)
    raise SystemExit("the other host never served the purged photo's new bytes")


def report(results: list[RunResult]) -> str:
    header = (
        f"{'run':<16} {'URLs':>5} {'requests':>8} {'failed':>6} {'fetch/orig':>10} "
        f"{'fetch/URL':>9} {'resize/URL':>10} {'seconds':>8} {'req/s':>7}"
    )
    lines = [header]
    for r in results:
        lines.append(
            f"{r.mode:<16} {r.unique_urls:>5} {r.requests:>8} {r.failures:>6} "
            f"{r.fetches_per_original:>10.2f} {r.fetches_per_url:>9.2f} "
            f"{r.resizes_per_url:>10.2f} {r.seconds:>8.2f} {r.requests_per_second:>7.1f}"
        )
    for r in results:
        if r.tier_problems:
            lines.append(f"{r.mode}: {r.tier_problems}")
        if r.purge_ms is not None:
            lines.append(f"{r.mode}: a purge on one host reached the other in {r.purge_ms:.0f} ms")
    without, with_tier = results
    ratio = with_tier.requests_per_second / without.requests_per_second
    lines.append(f"throughput ratio (shared / none): {ratio:.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--store", choices=("redis", "memcached"), default="redis")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--first-pass",
        choices=("by-name", "spread"),
        default="by-name",
        help="route the first ask of each URL by file name, or spread sizes over both hosts",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    deadline = time.monotonic() + args.time_limit
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="phizer-fleet-")))
        origin = OriginServer(workdir / "origin").start()
        stack.callback(origin.stop)
        names = make_photos(origin, args.photos, args.seed)
        results = [run("none", workdir, origin, names, None, args, deadline)]
        binary = "redis-server" if args.store == "redis" else "memcached"
        if shutil.which(binary) is None:
            raise SystemExit(f"{binary} is not installed (apt-get install redis-server memcached)")
        make_store = redis_service if args.store == "redis" else memcached_service
        store = stack.enter_context(running(make_store(workdir / args.store)))
        cache = {"shared": store.url}
        results.append(run(f"shared-{args.store}", workdir, origin, names, cache, args, deadline))
    print(report(results))
    if args.out is not None:
        args.out.write_text(json.dumps([r.summary() for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
