"""A bucket of S3 (or of an S3-compatible store) as an origin.

Each GET is signed with AWS Signature Version 4 by botocore's signer and
sent through the same curl client as every other origin fetch. Keys are
escaped as S3's canonical URI wants them (every byte but letters, digits,
``-._~`` and ``/``), and curl sends the path exactly as signed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from enum import Enum
from urllib.parse import quote, urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from tornado.httpclient import AsyncHTTPClient

from phizer.config.loader import OriginSpec
from phizer.config.origin_options import BucketSpec, RedirectHost
from phizer.errors import NotFound, OriginError
from phizer.origins.base import Fetched, FetchLimits, Validators
from phizer.origins.credentials import DEFAULT_REGION, CredentialSource, lookup
from phizer.origins.redirects import RedirectGuard, RedirectRules
from phizer.origins.transfer import Answer, get_following

log = logging.getLogger("phizer.origins")

_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]{1,300})</Message>")
AWS_HOSTS = RedirectHost("*.amazonaws.com", 443)
# Names a virtual-hosted URL can carry (a dot would break the TLS name).
_VIRTUAL_HOSTABLE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")


class Outcome(Enum):
    FOUND = "found"
    MISSING = "missing"  # the key is not there
    HIDDEN = "hidden"  # AccessDenied: missing, without s3:ListBucket to say so
    FAILED = "failed"  # credentials, permissions, bucket or endpoint: 502


def outcome(status: int, code: str | None) -> Outcome:
    """How an S3 answer counts, from its status and its error ``<Code>``."""
    if status == 200:
        return Outcome.FOUND
    if status == 404 and code != "NoSuchBucket":
        return Outcome.MISSING
    if status == 403 and code in (None, "AccessDenied"):
        return Outcome.HIDDEN
    return Outcome.FAILED


def error_details(body: bytes) -> tuple[str | None, str | None]:
    """The ``<Code>`` and ``<Message>`` of an S3 error document, if any."""
    head = body[:8192]
    code = _CODE.search(head)
    message = _MESSAGE.search(head)
    text = message.group(1).decode("utf-8", "replace") if message else None
    if text is not None:
        text = "".join(c if c.isprintable() else "?" for c in text)
    return (code.group(1).decode("ascii") if code else None), text


def bucket_base(bucket: BucketSpec, region: str) -> str:
    """The URL keys are appended to (ends with ``/``).

    A custom endpoint is addressed path-style (MinIO, R2, GCS interop);
    AWS virtual-hosted style, or path-style for names with dots.
    """
    if bucket.endpoint is not None:
        return f"{bucket.endpoint}/{bucket.bucket}/"
    if _VIRTUAL_HOSTABLE.match(bucket.bucket):
        return f"https://{bucket.bucket}.s3.{region}.amazonaws.com/"
    return f"https://s3.{region}.amazonaws.com/{bucket.bucket}/"


def redirect_hosts(
    bucket: BucketSpec, listed: tuple[RedirectHost, ...]
) -> tuple[RedirectHost, ...]:
    """Where a bucket's redirects may lead: AWS sends a new bucket's requests
    to its regional endpoint (307) for a while, always within amazonaws.com."""
    return listed + ((AWS_HOSTS,) if bucket.endpoint is None else ())


def key_url(base: str, key: str) -> str:
    return base + quote(key, safe="/~")


def signed_headers(
    url: str,
    credentials: ReadOnlyCredentials,
    region: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers that make a GET of ``url`` (with the ``extra`` headers,
    signed as well) a SigV4-signed S3 request."""
    headers = {"Host": urlsplit(url).netloc, **(extra or {})}
    request = AWSRequest(method="GET", url=url, headers=headers)
    S3SigV4Auth(credentials, "s3", region).add_auth(request)
    return dict(request.headers.items())


class BucketOrigin:
    """Keys ``prefix + path`` of one bucket, read with signed GETs."""

    def __init__(
        self,
        spec: OriginSpec,
        client: AsyncHTTPClient,
        limits: FetchLimits,
        rules: RedirectRules,
        credentials: CredentialSource,
    ) -> None:
        assert spec.bucket is not None
        self.name = spec.name
        self.bucket = spec.bucket
        self.region = spec.bucket.region or credentials.region or DEFAULT_REGION
        self._base = bucket_base(spec.bucket, self.region)
        self._client = client
        self._limits = limits
        self._credentials = credentials
        allowed = redirect_hosts(spec.bucket, spec.redirect_hosts)
        self._guard = RedirectGuard(self._base, allowed, rules)
        self._warned_hidden = False

    @classmethod
    def at_startup(
        cls,
        spec: OriginSpec,
        client: AsyncHTTPClient,
        limits: FetchLimits,
        rules: RedirectRules,
    ) -> BucketOrigin:
        """Credentials looked up now (this blocks: before serving)."""
        assert spec.bucket is not None
        profile = spec.bucket.profile
        credentials = CredentialSource(lambda: lookup(profile))
        credentials.load()
        origin = cls(spec, client, limits, rules, credentials)
        if credentials.problem is not None:
            log.error("origin %s (%s): %s", spec.name, spec.bucket.location, credentials.problem)
        return origin

    def url_for(self, path: str) -> str:
        return key_url(self._base, self.bucket.prefix + path)

    async def fetch(self, path: str, validators: Validators | None = None) -> Fetched:
        frozen = await self._credentials.current(self.name)
        conditional = validators.conditional_headers() if validators else {}
        answer = await get_following(
            self._client,
            self.url_for(path),
            self.name,
            self._limits,
            self._guard,
            headers_for=lambda url: signed_headers(url, frozen, self.region, conditional),
            path_as_is=True,
        )
        if answer.code == 304 and validators:
            return Fetched(None, validators)
        return Fetched(self._body(answer), Validators.from_headers(answer.headers))

    def _body(self, answer: Answer) -> bytes:
        code, message = error_details(answer.body) if answer.code != 200 else (None, None)
        result = outcome(answer.code, code)
        if result is Outcome.FOUND:
            return answer.body
        if result is Outcome.HIDDEN:
            self._warn_hidden_once()
        if result is not Outcome.FAILED:
            raise NotFound(f"not found at origin {self.name}")
        reason = f"{answer.code} {code or 'without an error code'}"
        log.error(
            "origin %s (%s, credentials: %s): %s%s",
            self.name,
            self.bucket.location,
            self._credentials.method,
            reason,
            f": {message}" if message else "",
        )
        raise OriginError(f"origin {self.name} refused the request ({code or answer.code})")

    def _warn_hidden_once(self) -> None:
        if not self._warned_hidden:
            self._warned_hidden = True
            log.warning(
                "origin %s (%s): AccessDenied counts as not found (what a missing key "
                "looks like without s3:ListBucket); if every image is 404, check "
                "s3:GetObject on the prefix",
                self.name,
                self.bucket.location,
            )


def describe_credentials(spec: OriginSpec) -> str:
    """For ``--check-config``: the region and where the credentials come
    from (a real lookup, so it may take a moment); never the secret."""
    assert spec.bucket is not None
    found = lookup(spec.bucket.profile)
    region = spec.bucket.region or found.region
    shown = region if spec.bucket.region else f"{region or DEFAULT_REGION} (from the AWS config)"
    if spec.bucket.region is None and region is None:
        shown = f"{DEFAULT_REGION} (the default)"
    if found.credentials is None:
        return f"region {shown}, credentials: none ({found.problem}): every fetch is 502"
    profile = f", profile {spec.bucket.profile}" if spec.bucket.profile else ""
    return f"region {shown}, credentials: {found.credentials.method}{profile}"
