"""Which redirects of an origin phizer follows.

A redirect is followed to the origin's own host and port (or the same
host over https on 443), or to a host its ``redirect_hosts`` lists, and
only when the address it leads to is public or one that a configured
origin names: an origin (or whoever answers for
it) cannot send phizer to a loopback, link-local or private service
nobody configured, nor to phizer's own ports. A host name is resolved
here and curl is pinned to the checked addresses, so a second DNS answer
cannot move the request elsewhere.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

from phizer.config.loader import Config
from phizer.config.origin_options import RedirectHost

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
DEFAULT_PORTS = {"http": 80, "https": 443}

Address = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]


class RedirectRefused(Exception):
    """Why a redirect is not followed (for the log; the client sees a 502)."""


@dataclass(frozen=True)
class Hop:
    """A checked redirect target."""

    url: str
    # curl's RESOLVE entry ("host:port:addr,...") pinning the checked
    # addresses; None when curl resolves a configured name as usual.
    pin: str | None = None


@dataclass(frozen=True)
class RedirectRules:
    """What holds for every origin of one configuration."""

    named_hosts: frozenset[str]  # the hosts (names and addresses) origins are configured at
    own_ports: range  # the front's and every worker's port

    @classmethod
    def from_config(cls, config: Config) -> RedirectRules:
        hosts = []
        for spec in config.origins:
            if spec.host is not None:
                hosts.append(spec.host)
            elif spec.bucket is not None and spec.bucket.endpoint is not None:
                hosts.append(urlsplit(spec.bucket.endpoint).hostname or "")
        settings = config.settings
        ports = range(settings.bind_port, settings.bind_port + settings.num_workers + 1)
        return cls(frozenset(normalise_host(host) for host in hosts if host), ports)

    def named(self, address: Address) -> bool:
        return str(address) in self.named_hosts


def normalise_host(host: str) -> str:
    """Lower case without brackets or a final dot; addresses in their short form."""
    host = host.strip("[]").lower().rstrip(".")
    try:
        return str(_unmapped(ip_address(host)))
    except ValueError:
        return host


def public(address: Address) -> bool:
    address = _unmapped(address)
    return address.is_global and not address.is_multicast


def _unmapped(address: Address) -> Address:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


async def resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives (in a thread: it blocks)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class RedirectGuard:
    """Checks one origin's redirects."""

    def __init__(
        self,
        home: str,
        allowed: Iterable[RedirectHost],
        rules: RedirectRules,
        resolver: Resolver = resolve,
    ) -> None:
        """``home``: the origin's own base URL (its scheme, host and port)."""
        parts = urlsplit(home)
        self._home = (normalise_host(parts.hostname or ""), _port(parts))
        self._allowed = tuple(allowed)
        self._rules = rules
        self._resolver = resolver

    def target(self, current: str, location: str) -> tuple[str, str, int, bool]:
        """The absolute URL, host, port and whether it is the origin's own
        host and port; raises ``RedirectRefused``. Pure: nothing is resolved."""
        url = urljoin(current, location.strip())
        try:
            parts = urlsplit(url)
            port = _port(parts)
        except ValueError:
            raise RedirectRefused("not a valid URL") from None
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise RedirectRefused("not an http(s) URL")
        if parts.username is not None or parts.password is not None:
            raise RedirectRefused("the URL carries credentials")
        host = normalise_host(parts.hostname)
        # The origin's own host and port, or the same host upgraded to https.
        home = host == self._home[0] and (
            port == self._home[1] or (parts.scheme == "https" and port == 443)
        )
        default = DEFAULT_PORTS[parts.scheme]
        if not home and not any(entry.matches(host, port, default) for entry in self._allowed):
            raise RedirectRefused(
                f"{_authority(host, port)} is neither the origin's host nor in redirect_hosts"
            )
        if port in self._rules.own_ports and not home:
            raise RedirectRefused(f"port {port} is phizer's own")
        return urlunsplit(parts._replace(fragment="")), host, port, home

    async def check(self, current: str, location: str, timeout: float) -> Hop:
        url, host, port, home = self.target(current, location)
        if home or host in self._rules.named_hosts:
            return Hop(url)  # a configured origin: resolved as for every fetch
        try:
            literal: Address | None = ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            self._check_address(literal)
            return Hop(url)
        try:
            found = await asyncio.wait_for(self._resolver(host, port), timeout)
        except (TimeoutError, OSError):
            raise RedirectRefused(f"{host} does not resolve") from None
        if not found:
            raise RedirectRefused(f"{host} does not resolve")
        addresses = [ip_address(address.split("%")[0]) for address in found]
        for address in addresses:
            self._check_address(address)
        pinned = ",".join(f"[{a}]" if a.version == 6 else str(a) for a in addresses)
        return Hop(url, f"{host}:{port}:{pinned}")

    def _check_address(self, address: Address) -> None:
        if not public(address) and not self._rules.named(_unmapped(address)):
            raise RedirectRefused(f"{address} is not public and no origin names it")


def _port(parts: SplitResult) -> int:
    port = parts.port  # raises ValueError when out of range
    return port if port is not None else DEFAULT_PORTS.get(parts.scheme, 0)


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
