"""Operations endpoints: the front's ``/_health`` and ``/_metrics``, what workers tell it.

A worker answers the front on loopback only: ``/_stats`` (JSON: pid,
uptime, in-flight) for health, ``/_metrics`` (its registry in the text
format) for metrics. The front asks every worker at once with a short
timeout, so one hung worker costs a scrape at most ``PROBE_TIMEOUT``
seconds and the others are still reported.

Handlers get what they need through ``initialize``: a worker its
``ProcessMetrics``, the front a ``FrontAdmin`` it builds; this module
knows nothing of the front's or the workers' state.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any, Generic, Protocol, TypeVar

from prometheus_client.core import Metric
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from phizer import __version__
from phizer.errors import Forbidden
from phizer.transport import TransportFailure, fetch
from phizer.web.fanin import FRONT, Merged, front_view, read_exposition
from phizer.web.handler import BaseHandler, HandlerContext
from phizer.web.metrics import CONTENT_TYPE, ProcessMetrics

STATS_PATH = "/_stats"
HEALTH_PATH = "/_health"
METRICS_PATH = "/_metrics"
# Short, so a hung worker delays an answer by this much and no more.
PROBE_CONNECT_TIMEOUT = 1.0
PROBE_TIMEOUT = 1.5
LOOPBACK = (IPv4Network("127.0.0.0/8"), IPv6Network("::1/128"))

Networks = Sequence[IPv4Network | IPv6Network]
Routes = list[tuple[str, type, dict[str, Any]]]
T = TypeVar("T")


class RestartCounts(Protocol):
    def counts(self, children: int) -> list[int]:
        """Restarts of the front and of the first ``children - 1`` workers."""
        ...


class NoRestarts:
    """A front without a supervisor (tests, tools): nothing was restarted."""

    def counts(self, children: int) -> list[int]:
        return [0] * children


@dataclass(frozen=True)
class FrontAdmin:
    """What the front's admin endpoints need, built by the front."""

    worker_urls: Sequence[str]  # base URLs, worker 1 first
    client: AsyncHTTPClient
    restarts: RestartCounts
    metrics: ProcessMetrics  # the front's own, its in-flight count and uptime
    admin_allow: Networks


# --- who may ask -------------------------------------------------------------------


def peer_address(handler: BaseHandler) -> str:
    """The TCP peer. phizer's servers never read X-Forwarded-For into
    ``remote_ip`` (no ``xheaders``): a client chooses those headers."""
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

    def write_json(self, data: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(data, separators=(",", ":")) + "\n")

    def write_metrics(self, exposition: bytes) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(exposition)


def process_info(metrics: ProcessMetrics) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "uptime_seconds": round(metrics.uptime_seconds(), 3),
        "in_flight": metrics.in_flight(),
    }


# --- the worker's side -------------------------------------------------------------


class WorkerAdminHandler(AdminHandler):
    def initialize(self, metrics: ProcessMetrics, context: HandlerContext) -> None:  # type: ignore[override]
        super().initialize(context)
        self.metrics = metrics

    async def serve(self) -> None:
        self.require_peer(LOOPBACK)
        self.answer()

    def answer(self) -> None:
        raise NotImplementedError


class StatsHandler(WorkerAdminHandler):
    """The worker's pid, uptime and in-flight count, for the front's ``/_health``."""

    def answer(self) -> None:
        self.write_json(process_info(self.metrics))


class WorkerMetricsHandler(WorkerAdminHandler):
    """The worker's registry, for the front's ``/_metrics``."""

    def answer(self) -> None:
        self.write_metrics(self.metrics.exposition())


def worker_routes(metrics: ProcessMetrics, context: HandlerContext) -> Routes:
    """Routes to put before the worker's catch-all."""
    given = {"metrics": metrics, "context": context}
    return [(STATS_PATH, StatsHandler, given), (METRICS_PATH, WorkerMetricsHandler, given)]


# --- the front's side --------------------------------------------------------------


@dataclass
class Probe(Generic[T]):
    """One worker's answer; ``answer`` is None when it did not give a usable one."""

    worker: str
    latency_ms: float
    answer: T | None = None
    error: str | None = None

    @property
    def up(self) -> bool:
        return self.answer is not None


def read_stats(body: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(body)
        return {key: answer[key] for key in ("pid", "uptime_seconds", "in_flight")}
    except (KeyError, TypeError) as err:
        raise ValueError(f"malformed stats: {err!r}") from None


def read_metrics(body: bytes) -> list[Metric]:
    return read_exposition(body.decode("utf-8"))


async def probe_worker(
    client: AsyncHTTPClient,
    worker: str,
    url: str,
    timeout: float,
    read: Callable[[bytes], T],
) -> Probe[T]:
    """Ask one worker; ``read`` turns its answer into ``T`` or raises ``ValueError``."""
    request = HTTPRequest(
        url,
        connect_timeout=min(PROBE_CONNECT_TIMEOUT, timeout),
        request_timeout=timeout,
        follow_redirects=False,
    )
    started = time.perf_counter()

    def probe(**fields: Any) -> Probe[T]:
        return Probe(worker, round(1000 * (time.perf_counter() - started), 1), **fields)

    try:
        response = await fetch(client, request)
    except TransportFailure as failure:
        return probe(error="timed out" if failure.timed_out else "unreachable")
    if response.code != 200:
        return probe(error=f"answered {response.code}")
    try:
        answer = read(response.body)
    except ValueError:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
        return probe(error="malformed answer")
    return probe(answer=answer)


async def probe_workers(
    admin: FrontAdmin, path: str, timeout: float, read: Callable[[bytes], T]
) -> list[Probe[T]]:
    return await asyncio.gather(
        *(
            probe_worker(admin.client, str(number), base_url + path, timeout, read)
            for number, base_url in enumerate(admin.worker_urls, 1)
        )
    )


class FrontAdminHandler(AdminHandler):
    probe_timeout = PROBE_TIMEOUT

    def initialize(self, admin: FrontAdmin, context: HandlerContext) -> None:  # type: ignore[override]
        super().initialize(context)
        self.admin = admin

    async def serve(self) -> None:
        self.require_peer(self.admin.admin_allow)
        await self.answer()

    async def answer(self) -> None:
        raise NotImplementedError


class HealthHandler(FrontAdminHandler):
    """200 "ok" when every worker answers, 200 "degraded" when some do, 503 when none do."""

    async def answer(self) -> None:
        probes = await probe_workers(self.admin, STATS_PATH, self.probe_timeout, read_stats)
        up = sum(probe.up for probe in probes)
        if up == len(probes):
            status, code = "ok", 200
        elif up:
            status, code = "degraded", 200
        else:
            status, code = "down", 503
        self.write_json(
            {
                "status": status,
                "version": __version__,
                "workers_up": up,
                "workers_total": len(probes),
                "front": process_info(self.admin.metrics),
                "workers": [_worker_health(probe) for probe in probes],
            },
            code,
        )


def _worker_health(probe: Probe[dict[str, Any]]) -> dict[str, Any]:
    health: dict[str, Any] = {
        "worker": probe.worker,
        "status": "up" if probe.up else "down",
        "latency_ms": probe.latency_ms,
    }
    if probe.answer is not None:
        health.update(probe.answer)
    if probe.error is not None:
        health["error"] = probe.error
    return health


class MetricsHandler(FrontAdminHandler):
    """Every process's metrics in one exposition, each series labelled with its process."""

    async def answer(self) -> None:
        probes = await probe_workers(self.admin, METRICS_PATH, self.probe_timeout, read_metrics)
        merged = Merged()
        merged.add(FRONT, self.admin.metrics.families())
        up: dict[str, bool] = {}
        for probe in probes:
            up[probe.worker] = probe.answer is not None
            if probe.answer is not None:
                try:
                    merged.add(probe.worker, probe.answer)
                except ValueError:
                    up[probe.worker] = False  # e.g. a worker of another version
        merged.add_front_view(front_view(up, self.admin.restarts.counts(len(up) + 1)))
        self.write_metrics(merged.exposition())


def front_routes(admin: FrontAdmin, context: HandlerContext) -> Routes:
    """Routes to put before the front's catch-all (which answers 404 for other ``/_`` paths)."""
    given = {"admin": admin, "context": context}
    return [(HEALTH_PATH, HealthHandler, given), (METRICS_PATH, MetricsHandler, given)]
