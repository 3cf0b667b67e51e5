"""The origin options beyond ``host`` and ``directory``: a bucket
(``s3_*``) and the hosts an origin may redirect to (``redirect_hosts``).

Pure parsing: nothing here reads AWS files or resolves names; the
credentials are found when the origin is built (phizer.origins.credentials).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

from phizer.errors import ConfigError

BUCKET_OPTIONS = ("s3_bucket", "s3_region", "s3_prefix", "s3_endpoint", "s3_profile")
# What a bucket origin's address is made of instead.
HTTP_ONLY_OPTIONS = ("port", "root", "scheme")

# S3's rules for new buckets: 3-63 lower-case letters, digits, dots and hyphens.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
_PROFILE = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")
_HOST_NAME = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")


@dataclass(frozen=True)
class BucketSpec:
    """A bucket of S3 or an S3-compatible store."""

    bucket: str
    prefix: str = ""  # "" or a folder, ending with "/"
    region: str | None = None  # None: the profile's region, else us-east-1
    endpoint: str | None = None  # scheme://host[:port]; None: AWS
    profile: str | None = None  # None: AWS_PROFILE or the default profile

    @property
    def location(self) -> str:
        """``s3://bucket/prefix`` and where it lives; names the origin in logs."""
        place = f"s3://{self.bucket}/{self.prefix}"
        if self.endpoint is not None:
            return f"{place} at {self.endpoint}"
        return f"{place} in {self.region}" if self.region else place


@dataclass(frozen=True)
class RedirectHost:
    """One ``redirect_hosts`` entry: ``host``, ``host:port`` or ``*.domain``.

    Without a port only the scheme's default port (80, 443) matches.
    """

    host: str  # lower case; an IPv6 address without brackets
    port: int | None = None

    def matches(self, host: str, port: int, default_port: int) -> bool:
        if port != (self.port if self.port is not None else default_port):
            return False
        host = host.lower().rstrip(".")
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def parse_bucket(section: str, options: Mapping[str, str]) -> BucketSpec:
    """The ``s3_*`` options of an origin section that names ``s3_bucket``."""
    for option in HTTP_ONLY_OPTIONS:
        if options.get(option):
            raise ConfigError(
                f"[{section}] {option}: not used with s3_bucket (s3_endpoint gives the address)"
            )
    bucket = options["s3_bucket"]
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigError(
            f"[{section}] s3_bucket = {bucket!r}: expected a bucket name "
            "(3-63 lower-case letters, digits, dots and hyphens)"
        )
    region = options.get("s3_region") or None
    if region is not None and not _REGION.match(region):
        raise ConfigError(
            f"[{section}] s3_region = {region!r}: expected a region such as eu-west-1"
        )
    profile = options.get("s3_profile") or None
    if profile is not None and not _PROFILE.match(profile):
        raise ConfigError(f"[{section}] s3_profile = {profile!r}: expected a profile name")
    endpoint = options.get("s3_endpoint") or None
    if endpoint is not None:
        endpoint = _parse_endpoint(section, endpoint)
    prefix = (options.get("s3_prefix") or "").strip("/")
    if not prefix.isprintable():
        raise ConfigError(f"[{section}] s3_prefix = {prefix!r}: expected a key prefix")
    return BucketSpec(bucket, prefix + "/" if prefix else "", region, endpoint, profile)


def check_no_bucket_options(section: str, options: Mapping[str, str]) -> None:
    """``s3_*`` options in a section without ``s3_bucket`` are a mistake, not noise."""
    for option in BUCKET_OPTIONS:
        if options.get(option):
            raise ConfigError(f"[{section}] {option}: only used with s3_bucket")


def _parse_endpoint(section: str, raw: str) -> str:
    """``scheme://host[:port]``, normalised (no default port, no trailing slash)."""
    problem = f"[{section}] s3_endpoint = {raw!r}: expected http(s)://host[:port]"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ConfigError(problem) from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ConfigError(problem)
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def parse_redirect_hosts(section: str, raw: str) -> tuple[RedirectHost, ...]:
    """``redirect_hosts = a.example, b.example:8080, *.s3.amazonaws.com``."""
    entries = []
    for item in raw.replace(",", " ").split():
        try:
            entries.append(parse_redirect_host(item))
        except ValueError as err:
            raise ConfigError(f"[{section}] redirect_hosts: {item!r}: {err}") from None
    return tuple(entries)


def parse_redirect_host(item: str) -> RedirectHost:
    host, port = item.lower(), None
    if host.startswith("["):  # [v6] or [v6]:port
        address, _, rest = host[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError("expected [address]:port")
            port = _port(rest[1:])
        return RedirectHost(str(ip_address(address)), port)
    if host.count(":") == 1:
        host, _, number = host.partition(":")
        port = _port(number)
    elif ":" in host:
        return RedirectHost(str(ip_address(host)))
    if not _HOST_NAME.match(host):
        raise ValueError("expected a host name, an address or *.domain, with an optional :port")
    return RedirectHost(host.rstrip("."), port)


def _port(number: str) -> int:
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        raise ValueError("the port must be 1-65535")
    return int(number)
