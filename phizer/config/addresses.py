"""The ``[cache] shared =`` URL: ``redis://host:port/db`` or ``memcached://host:port``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

REDIS = "redis"
MEMCACHED = "memcached"
DEFAULT_PORTS = {REDIS: 6379, MEMCACHED: 11211}
EXPECTED = "expected redis://host:port/db or memcached://host:port"


@dataclass(frozen=True)
class SharedAddress:
    kind: str  # REDIS or MEMCACHED
    host: str
    port: int
    db: int = 0
    password: str | None = None

    def describe(self) -> str:
        """The address without its password, for logs and ``--check-config``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        secret = ":***@" if self.password else ""
        path = f"/{self.db}" if self.kind == REDIS else ""
        return f"{self.kind}://{secret}{host}:{self.port}{path}"


def parse_shared_address(value: str) -> SharedAddress:
    """Raises ``ValueError`` saying what is expected for anything else."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(EXPECTED) from None
    kind = parts.scheme.lower()
    if kind not in DEFAULT_PORTS or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(EXPECTED)
    if port == 0:
        raise ValueError(EXPECTED)
    path = parts.path.strip("/")
    if kind == MEMCACHED:
        if path or parts.username or parts.password:
            raise ValueError("memcached://host:port takes no path or credentials")
        db = 0
    else:
        if path and not (path.isdigit() and int(path) < 1_000_000):
            raise ValueError(f"redis database {path!r}: expected a number")
        db = int(path or 0)
    password = unquote(parts.password) if parts.password else None
    return SharedAddress(kind, parts.hostname, port or DEFAULT_PORTS[kind], db, password)
