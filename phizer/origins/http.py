"""An HTTP(S) server as an origin."""

from __future__ import annotations

from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient

from phizer.config.loader import OriginSpec
from phizer.errors import NotFound, OriginError
from phizer.origins.base import Fetched, FetchLimits, Validators
from phizer.origins.redirects import RedirectGuard, RedirectRules
from phizer.origins.transfer import get_following

# What a web server answers for "not here" (403: S3-style private listings).
MISSING_STATUSES = (403, 404, 410)


class HttpOrigin:
    """``scheme://host:port`` + ``root`` + path; redirects as ``RedirectGuard`` allows."""

    def __init__(
        self,
        spec: OriginSpec,
        client: AsyncHTTPClient,
        limits: FetchLimits,
        rules: RedirectRules,
    ) -> None:
        assert spec.host is not None
        self.name = spec.name
        host = f"[{spec.host}]" if ":" in spec.host else spec.host
        self._base = f"{spec.scheme}://{host}:{spec.port}{spec.root}"
        self._client = client
        self._limits = limits
        self._guard = RedirectGuard(self._base, spec.redirect_hosts, rules)

    def url_for(self, path: str) -> str:
        return self._base + quote(path, safe="/")

    async def fetch(self, path: str, validators: Validators | None = None) -> Fetched:
        conditional = validators.conditional_headers() if validators else {}
        answer = await get_following(
            self._client,
            self.url_for(path),
            self.name,
            self._limits,
            self._guard,
            headers_for=(lambda url: conditional) if conditional else None,
        )
        if answer.code == 200:
            return Fetched(answer.body, Validators.from_headers(answer.headers))
        if answer.code == 304 and validators:
            return Fetched(None, validators)
        if answer.code in MISSING_STATUSES:
            raise NotFound(f"not found at origin {self.name}")
        raise OriginError(f"origin {self.name} answered {answer.code}")
