"""Operations endpoints: the front's ``/_health`` and ``/_metrics``, the workers' ``/_stats``.

Each process counts into its own ``ProcessMetrics``; a worker hands its
snapshot to the front as JSON on ``/_stats`` (workers listen on loopback
only). The front asks every worker at once with a short timeout, so one
hung worker costs a scrape at most ``PROBE_TIMEOUT`` seconds and the
others are still reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import TYPE_CHECKING, Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from phizer import __version__
from phizer.errors import Forbidden
from phizer.tiers.stats import TierMetrics
from phizer.transport import TransportFailure, fetch
from phizer.web.handler import BaseHandler, HandlerContext
from phizer.web.metrics import CONTENT_TYPE, FamilyData, Merged, Registry, render
from phizer.web.metrics import families_from_snapshot as read_families

if TYPE_CHECKING:
    from phizer.cache.lru import ByteLRU
    from phizer.web.front import FrontState

STATS_PATH = "/_stats"
HEALTH_PATH = "/_health"
METRICS_PATH = "/_metrics"
# Short, so a hung worker delays an answer by this much and no more.
PROBE_CONNECT_TIMEOUT = 1.0
PROBE_TIMEOUT = 1.5
FRONT = "front"
LOOPBACK = (IPv4Network("127.0.0.0/8"), IPv6Network("::1/128"))

Networks = Sequence[IPv4Network | IPv6Network]


# --- what each process counts ----------------------------------------------------


class ProcessMetrics:
    """The metrics of one process (front or worker) and the caches it owns."""

    def __init__(self, caches: dict[str, ByteLRU[Any]]) -> None:
        self.registry = registry = Registry()
        self.started = time.monotonic()
        self._caches = dict(caches)
        self.requests = registry.counter(
            "phizer_requests_total", "Requests answered, by HTTP status.", ("code",)
        )
        self.request_seconds = registry.histogram(
            "phizer_request_duration_seconds", "Time from reading a request to answering it."
        )
        self.in_flight = registry.gauge("phizer_in_flight_requests", "Requests being served.")
        self.uptime = registry.gauge("phizer_uptime_seconds", "Seconds since the process started.")
        labels = ("cache",)
        self._hits = registry.counter("phizer_cache_hits_total", "Cache lookups found.", labels)
        self._misses = registry.counter(
            "phizer_cache_misses_total", "Cache lookups not found.", labels
        )
        self._evictions = registry.counter(
            "phizer_cache_evictions_total", "Entries evicted to make room.", labels
        )
        self._bytes = registry.gauge("phizer_cache_bytes", "Bytes held by the cache.", labels)
        self._capacity = registry.gauge(
            "phizer_cache_capacity_bytes", "Bytes the cache may hold.", labels
        )
        self._entries = registry.gauge("phizer_cache_entries", "Entries in the cache.", labels)
        # The disk and shared tiers this process asks (phizer.tiers).
        self.tiers = TierMetrics(registry)
        registry.add_collector(self._collect)

    def request_finished(self, status: int, seconds: float) -> None:
        self.requests.inc(str(status))
        self.request_seconds.observe(seconds)

    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started

    def _collect(self) -> None:
        for name, cache in self._caches.items():
            self._hits.set_total(cache.stats.hits, name)
            self._misses.set_total(cache.stats.misses, name)
            self._evictions.set_total(cache.stats.evictions, name)
            self._bytes.set(cache.size, name)
            self._capacity.set(cache.capacity, name)
            self._entries.set(len(cache), name)
        self.uptime.set(round(self.uptime_seconds(), 3))

    def families(self, in_flight: int) -> list[FamilyData]:
        self.in_flight.set(in_flight)
        return self.registry.families()

    def snapshot(self, in_flight: int) -> dict[str, Any]:
        self.in_flight.set(in_flight)
        return self.registry.snapshot()


class WorkerMetrics(ProcessMetrics):
    def __init__(self, caches: dict[str, ByteLRU[Any]]) -> None:
        super().__init__(caches)
        self.fetch_seconds = self.registry.histogram(
            "phizer_origin_fetch_duration_seconds",
            "Time to fetch an original from the origins, failures included.",
        )
        self.resize_seconds = self.registry.histogram(
            "phizer_resize_duration_seconds", "Time to decode, resize and encode one image."
        )


# --- who may ask -------------------------------------------------------------------


def peer_address(handler: BaseHandler) -> str:
    """The TCP peer: with ``xheaders`` Tornado rewrites ``remote_ip`` from
    X-Forwarded-For, which a client chooses, so the socket address wins."""
    context = getattr(handler.request.connection, "context", None)
    address = getattr(context, "address", None)
    if getattr(context, "address_family", None) in (socket.AF_INET, socket.AF_INET6) and address:
        return str(address[0])
    return handler.request.remote_ip or ""


def is_allowed(address: str, networks: Networks) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return any(ip in network for network in networks)


class AdminHandler(BaseHandler):
    """Plain JSON or text answers that no cache should keep."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")

    def require_peer(self, networks: Networks) -> None:
        if not is_allowed(peer_address(self), networks):
            raise Forbidden()

    def in_flight(self) -> int:
        return self.context.in_flight.count

    def write_json(self, data: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(data, separators=(",", ":")) + "\n")


# --- the worker's side -------------------------------------------------------------


class StatsHandler(AdminHandler):
    """The worker's snapshot, for the front only."""

    def initialize(self, metrics: ProcessMetrics, context: HandlerContext) -> None:  # type: ignore[override]
        super().initialize(context)
        self.metrics = metrics

    async def serve(self) -> None:
        self.require_peer(LOOPBACK)
        in_flight = self.in_flight()
        self.write_json(
            {
                "pid": os.getpid(),
                "uptime_seconds": round(self.metrics.uptime_seconds(), 3),
                "in_flight": in_flight,
                "metrics": self.metrics.snapshot(in_flight),
            }
        )


def worker_routes(
    metrics: ProcessMetrics, context: HandlerContext
) -> list[tuple[str, type, dict[str, Any]]]:
    """Routes to put before the worker's catch-all."""
    return [(STATS_PATH, StatsHandler, {"metrics": metrics, "context": context})]


# --- the front's side --------------------------------------------------------------


@dataclass
class Probe:
    """One worker's answer to ``/_stats``; ``families`` is None when it did not answer."""

    worker: str
    latency_ms: float
    families: list[FamilyData] | None = None
    info: dict[str, Any] | None = None
    error: str | None = None

    @property
    def up(self) -> bool:
        return self.families is not None


async def probe_worker(
    client: AsyncHTTPClient, worker: str, base_url: str, timeout: float
) -> Probe:
    request = HTTPRequest(
        base_url + STATS_PATH,
        connect_timeout=min(PROBE_CONNECT_TIMEOUT, timeout),
        request_timeout=timeout,
        follow_redirects=False,
    )
    started = time.perf_counter()

    def probe(**fields: Any) -> Probe:
        return Probe(worker, round(1000 * (time.perf_counter() - started), 1), **fields)

    try:
        response = await fetch(client, request)
    except TransportFailure as failure:
        return probe(error="timed out" if failure.timed_out else "unreachable")
    if response.code != 200:
        return probe(error=f"answered {response.code}")
    try:
        answer = json.loads(response.body)
        families = read_families(answer["metrics"])
        info = {key: answer[key] for key in ("pid", "uptime_seconds", "in_flight")}
    except (ValueError, KeyError, TypeError):
        return probe(error="malformed answer")
    return probe(families=families, info=info)


async def probe_workers(state: FrontState, timeout: float) -> list[Probe]:
    return await asyncio.gather(
        *(
            probe_worker(state.client, str(number), base_url, timeout)
            for number, base_url in enumerate(state.worker_urls, 1)
        )
    )


class FrontAdminHandler(AdminHandler):
    probe_timeout = PROBE_TIMEOUT

    def initialize(self, state: FrontState, context: HandlerContext) -> None:  # type: ignore[override]
        super().initialize(context)
        self.state = state

    async def serve(self) -> None:
        self.require_peer(self.state.config.settings.admin_allow)
        await self.answer(await probe_workers(self.state, self.probe_timeout))

    async def answer(self, probes: list[Probe]) -> None:
        raise NotImplementedError


class HealthHandler(FrontAdminHandler):
    """200 "ok" when every worker answers, 200 "degraded" when some do, 503 when none do."""

    async def answer(self, probes: list[Probe]) -> None:
        up = sum(probe.up for probe in probes)
        if up == len(probes):
            status, code = "ok", 200
        elif up:
            status, code = "degraded", 200
        else:
            status, code = "down", 503
        front = {
            "pid": os.getpid(),
            "uptime_seconds": round(self.state.metrics.uptime_seconds(), 3),
            "in_flight": self.in_flight(),
        }
        self.write_json(
            {
                "status": status,
                "version": __version__,
                "workers_up": up,
                "workers_total": len(probes),
                "front": front,
                "workers": [_worker_health(probe) for probe in probes],
            },
            code,
        )


def _worker_health(probe: Probe) -> dict[str, Any]:
    health: dict[str, Any] = {
        "worker": probe.worker,
        "status": "up" if probe.up else "down",
        "latency_ms": probe.latency_ms,
    }
    if probe.info is not None:
        health.update(probe.info)
    if probe.error is not None:
        health["error"] = probe.error
    return health


class MetricsHandler(FrontAdminHandler):
    """Every process's metrics in one Prometheus exposition."""

    async def answer(self, probes: list[Probe]) -> None:
        merged = Merged()
        merged.add(FRONT, self.state.metrics.families(self.in_flight()))
        up: dict[str, bool] = {}
        for probe in probes:
            up[probe.worker] = probe.up
            if probe.families is not None:
                try:
                    merged.add(probe.worker, probe.families)
                except ValueError:
                    up[probe.worker] = False  # e.g. a worker of another version
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(render([*merged.families(), *self._front_view(up)]))

    def _front_view(self, up: dict[str, bool]) -> list[FamilyData]:
        """What only the front knows: which workers answered, restarts, the build."""
        registry = Registry()
        worker_up = registry.gauge(
            "phizer_worker_up", "1 when the worker answered this scrape.", ("worker",)
        )
        for worker, answered in up.items():
            worker_up.set(1 if answered else 0, worker)
        restarts = registry.counter(
            "phizer_restarts_total", "Restarts of each child by the supervisor.", ("worker",)
        )
        children = [FRONT, *up]
        for child, count in zip(children, self.state.restarts.counts(len(children)), strict=True):
            restarts.set_total(count, child)
        info = registry.gauge(
            "phizer_build_info", "The running version; always 1.", ("version", "python")
        )
        info.set(1, __version__, ".".join(map(str, sys.version_info[:3])))
        return registry.families()


def front_routes(
    state: FrontState, context: HandlerContext
) -> list[tuple[str, type, dict[str, Any]]]:
    """Routes to put before the front's catch-all (which answers 404 for other ``/_`` paths)."""
    return [
        (HEALTH_PATH, HealthHandler, {"state": state, "context": context}),
        (METRICS_PATH, MetricsHandler, {"state": state, "context": context}),
    ]
