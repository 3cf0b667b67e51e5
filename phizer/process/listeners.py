"""Listening sockets, bound by the supervisor before it forks."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from tornado.netutil import bind_sockets

LISTEN_BACKLOG = 1024


@dataclass
class Listener:
    """One child's address.

    ``hold_while_down``: keep the socket open while its child is dead, so
    clients queue until the restarted child accepts them (the public front).
    Otherwise the socket is closed, so callers (the front, for a worker) are
    refused at once and answer 503 instead of waiting.
    """

    host: str
    port: int
    hold_while_down: bool
    sockets: list[socket.socket] = field(default_factory=list)

    def open(self) -> None:
        if self.sockets:
            return
        try:
            self.sockets = bind_sockets(self.port, self.host, backlog=LISTEN_BACKLOG)
        except OSError as err:
            raise OSError(
                err.errno, f"cannot listen on {self.host}:{self.port}: {err.strerror}"
            ) from None

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []
