"""A syslog daemon stand-in for tests: datagram sockets the tests bind themselves."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from dataclasses import dataclass

RECEIVE_SECONDS = 5.0
_DATAGRAM = re.compile(r"<(\d+)>phizer\[(\d+)\]: (.*?)\x00?", re.DOTALL)


def pri(facility: int, priority: int) -> int:
    """RFC 5424 section 6.2.1: facility * 8 + severity."""
    return facility * 8 + priority


@dataclass(frozen=True)
class Datagram:
    pri: int
    pid: int
    body: str


def parse_datagram(data: bytes) -> Datagram:
    match = _DATAGRAM.fullmatch(data.decode("utf-8"))
    assert match, data
    return Datagram(int(match[1]), int(match[2]), match[3])


class SyslogSink:
    """A syslog daemon stand-in: a datagram socket (Unix or UDP) and what arrived."""

    def __init__(self, family: int, address: str | tuple[str, int]) -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(address)
        self.sock.setblocking(False)
        self.address: str | tuple[str, int] = self.sock.getsockname()
        self.received: list[Datagram] = []

    @classmethod
    def unix(cls, path: str) -> SyslogSink:
        return cls(socket.AF_UNIX, path)

    @classmethod
    def udp(cls) -> SyslogSink:
        return cls(socket.AF_INET, ("127.0.0.1", 0))

    def drain(self) -> list[Datagram]:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.received
            self.received.append(parse_datagram(data))

    def wait_for(self, count: int, timeout: float = RECEIVE_SECONDS) -> list[Datagram]:
        deadline = time.monotonic() + timeout
        while len(self.drain()) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} datagrams"
            time.sleep(0.01)
        return self.received

    def close(self) -> None:
        self.sock.close()
        if isinstance(self.address, str):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)
