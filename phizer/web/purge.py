"""Purging a photo: its original and every image made from it, everywhere.

``PURGE /<size>/<path>`` (any size, with or without crop points) or
``POST /_purge/<path>`` on the front, from ``admin_allow`` only. The front
drops its finished images of the photo, has every worker drop the original
and its decode, marks the photo's entries stale in the disk and shared
tiers (a tombstone every host reads with each entry) and, with a shared
Redis, tells the other hosts' fronts, which do the same locally.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from phizer.errors import Forbidden
from phizer.transport import TransportFailure, fetch
from phizer.web.admin import LOOPBACK, Networks, is_allowed, peer_address
from phizer.web.handler import BaseHandler, HandlerContext
from phizer.web.urls import parse_photo_path

log = logging.getLogger("phizer.purge")

PURGE_PATH = "/_purge/"
_WORKER_TIMEOUT = 5.0


def purge_url(base_url: str, path: str) -> str:
    return base_url + PURGE_PATH + quote(path, safe="/")


class FrontPurge:
    """What a purge does on this host, and who else to tell."""

    def __init__(
        self,
        purge_front: Callable[[str], Awaitable[int]],
        worker_urls: Sequence[str],
        client: AsyncHTTPClient,
        publish: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.purge_front = purge_front
        self.worker_urls = tuple(worker_urls)
        self.client = client
        self.publish = publish
        self.count = 0

    async def purge(self, path: str, tell_hosts: bool = True) -> dict[str, Any]:
        self.count += 1
        front = await self.purge_front(path)
        workers = await asyncio.gather(*(self._worker(url, path) for url in self.worker_urls))
        answer: dict[str, Any] = {
            "path": path,
            "front": {"finished": front},
            "workers": [{"worker": str(n), **found} for n, found in enumerate(workers, 1)],
        }
        if tell_hosts and self.publish is not None:
            answer["hosts"] = "told" if await self.publish(path) else "not told"
        return answer

    def heard(self, path: str) -> None:
        """Another host purged ``path``: do the same here, tell nobody."""
        task = asyncio.ensure_future(self.purge(path, tell_hosts=False))
        task.add_done_callback(_log_failure)

    async def _worker(self, base_url: str, path: str) -> dict[str, Any]:
        request = HTTPRequest(
            purge_url(base_url, path),
            method="POST",
            body=b"",
            connect_timeout=_WORKER_TIMEOUT,
            request_timeout=_WORKER_TIMEOUT,
        )
        try:
            response = await fetch(self.client, request)
            found = json.loads(response.body) if response.code == 200 else None
        except (TransportFailure, ValueError):
            found = None
        if not isinstance(found, dict):
            return {"error": "did not answer"}
        return {key: found[key] for key in ("originals", "decoded") if key in found}


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("purge heard from another host failed: %s", task.exception())


class PurgeHandler(BaseHandler):
    """``POST /_purge/<path>`` on the front (admin peers) or a worker (loopback)."""

    SUPPORTED_METHODS = ("POST",)

    def initialize(  # type: ignore[override]
        self,
        purge: Callable[[str], Awaitable[dict[str, Any]]],
        allow: Networks,
        context: HandlerContext,
    ) -> None:
        super().initialize(context)
        self.run_purge = purge
        self.allow = allow

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")

    async def post(self, *_: str) -> None:
        if not is_allowed(peer_address(self), self.allow):
            raise Forbidden()
        # The raw path: Tornado's own argument would have decoded %2f already.
        path = parse_photo_path(self.request_path().removeprefix(PURGE_PATH))
        self.write_json(await self.run_purge(path))

    def write_json(self, answer: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(answer, separators=(",", ":")) + "\n")


def purge_route(
    purge: Callable[[str], Awaitable[dict[str, Any]]], allow: Networks, context: HandlerContext
) -> tuple[str, type, dict[str, Any]]:
    return (
        PURGE_PATH + "(.+)",
        PurgeHandler,
        {"purge": purge, "allow": allow, "context": context},
    )


def worker_purge_route(
    purge: Callable[[str], Awaitable[dict[str, Any]]], context: HandlerContext
) -> tuple[str, type, dict[str, Any]]:
    return purge_route(purge, LOOPBACK, context)
