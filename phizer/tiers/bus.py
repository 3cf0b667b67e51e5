"""Purges told to every host through Redis pub/sub.

The front of each host subscribes to one channel per deployment (named by
the origins' fingerprint, so deployments that share a Redis but not their
origins stay apart). A purge is published after its tombstone is in the
shared store, so a host that hears of it reads no old value afterwards.
The subscription runs in a thread of its own and reconnects by itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable

import redis

from phizer.config.addresses import SharedAddress

log = logging.getLogger("phizer.tiers")

# How long one wait for a message lasts: how soon a closing bus notices.
_POLL_SECONDS = 0.5
_RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)


class PurgeBus:
    def __init__(self, address: SharedAddress, channel: str, timeout: float) -> None:
        self.channel = channel
        self.sender = uuid.uuid4().hex  # this process: its own messages are not news
        self._address = address
        self._timeout = timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publisher = self._client(socket_timeout=max(1.0, timeout))

    def _client(self, socket_timeout: float | None) -> redis.Redis:
        address = self._address
        return redis.Redis(
            host=address.host,
            port=address.port,
            db=address.db,
            password=address.password,
            socket_timeout=socket_timeout,
            socket_connect_timeout=max(1.0, self._timeout),
        )

    def start(self, on_purge: Callable[[str], None]) -> None:
        """Call ``on_purge(path)`` on this event loop for every purge another
        host publishes."""
        loop = asyncio.get_running_loop()

        def deliver(path: str) -> None:
            loop.call_soon_threadsafe(on_purge, path)

        self._thread = threading.Thread(
            target=self._listen, args=(deliver,), name="phizer-purge-bus", daemon=True
        )
        self._thread.start()

    async def publish(self, path: str) -> bool:
        """Tell every host; False when Redis could not be reached."""
        message = json.dumps({"path": path, "sender": self.sender})
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._publisher.publish, self.channel, message)
        except (redis.RedisError, OSError) as error:
            log.warning("purge of %r not published to other hosts: %s", path, error)
            return False
        return True

    def _listen(self, deliver: Callable[[str], None]) -> None:
        attempt = 0
        while not self._stop.is_set():
            subscriber = self._client(socket_timeout=None).pubsub(ignore_subscribe_messages=True)
            try:
                subscriber.subscribe(self.channel)
                attempt = 0
                while not self._stop.is_set():
                    message = subscriber.get_message(timeout=_POLL_SECONDS)
                    if message is not None:
                        path = self._path(message.get("data"))
                        if path is not None:
                            deliver(path)
            except (redis.RedisError, OSError) as error:
                delay = _RECONNECT_SECONDS[min(attempt, len(_RECONNECT_SECONDS) - 1)]
                if attempt == 0:
                    log.warning("purge channel lost (%s); reconnecting", error)
                attempt += 1
                self._stop.wait(delay)
            finally:
                subscriber.close()

    def _path(self, data: object) -> str | None:
        """The path of another host's purge; None for our own or garbage."""
        try:
            message = json.loads(data) if isinstance(data, bytes | str) else None
        except ValueError:
            return None
        if not isinstance(message, dict) or message.get("sender") == self.sender:
            return None
        path = message.get("path")
        return path if isinstance(path, str) and path else None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * _POLL_SECONDS + 1)
        self._publisher.close()
