"""One origin GET over the shared curl client, and redirects followed by hand.

curl's own redirect following is off: each ``Location`` is checked by the
origin's ``RedirectGuard`` first, then asked for again (signed again,
for a bucket, since the signature covers the host). Every hop shares one
deadline, so a chain of redirects takes no longer than one fetch may.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import pycurl
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httputil import HTTPHeaders

from phizer import __version__
from phizer.errors import OriginError, OriginTimeout, SourceTooLarge, WorkerUnavailable
from phizer.origins.base import OVER_BUDGET, FetchLimits, InFlightBytes
from phizer.origins.redirects import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    RedirectGuard,
    RedirectRefused,
)
from phizer.transport import TransportFailure, fetch

log = logging.getLogger("phizer.origins")

# The headers a request to ``url`` carries (a bucket signs each one).
HeadersFor = Callable[[str], dict[str, str]]


@dataclass(frozen=True)
class Answer:
    code: int
    headers: HTTPHeaders
    body: bytes
    url: str  # the last URL asked (after redirects)


class BoundedSink:
    """Collects a response body and aborts the transfer past ``max_bytes``.

    curl refuses a larger ``Content-Length`` before reading the body; a
    body without one (chunked, or compressed and inflated) is cut off as
    soon as it grows past the limit instead of being buffered whole.
    """

    def __init__(self, max_bytes: int, in_flight: InFlightBytes | None = None) -> None:
        self.max_bytes = max_bytes
        self.in_flight = in_flight
        self.overflowed = False
        self.over_budget = False
        self._chunks: list[bytes] = []
        self._size = 0

    def attach(self, curl: pycurl.Curl) -> None:
        curl.setopt(pycurl.MAXFILESIZE_LARGE, self.max_bytes)
        curl.setopt(pycurl.WRITEFUNCTION, self.write)

    def write(self, chunk: bytes) -> int:
        if self._size + len(chunk) > self.max_bytes:
            self.overflowed = True
            return 0  # anything but len(chunk) makes curl abort the transfer
        if self.in_flight is not None and not self.in_flight.take(len(chunk)):
            self.over_budget = True
            return 0
        self._size += len(chunk)
        self._chunks.append(chunk)
        return len(chunk)

    def release(self) -> None:
        """The body is handed on (or dropped): it no longer counts as in flight."""
        if self.in_flight is not None:
            self.in_flight.give_back(self._size)

    def data(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks = []  # one copy held from here on, not two
        return data


async def get(
    client: AsyncHTTPClient,
    url: str,
    name: str,
    limits: FetchLimits,
    *,
    timeout: float | None = None,
    headers: dict[str, str] | None = None,
    pin: str | None = None,
    path_as_is: bool = False,
) -> Answer:
    """One GET, without following redirects; transport failures become
    ``OriginTimeout`` (504), ``SourceTooLarge`` (413) or ``OriginError`` (502)."""
    sink = BoundedSink(limits.max_bytes, limits.in_flight)

    def prepare(curl: pycurl.Curl) -> None:
        sink.attach(curl)
        # Set on every request: tornado reuses curl handles between origins.
        curl.setopt(pycurl.PATH_AS_IS, 1 if path_as_is else 0)
        if pin is not None:
            curl.setopt(pycurl.RESOLVE, [pin])

    request = HTTPRequest(
        url,
        headers=headers,
        follow_redirects=False,
        connect_timeout=limits.connect_timeout,
        request_timeout=limits.timeout if timeout is None else timeout,
        user_agent=f"phizer/{__version__}",
        prepare_curl_callback=prepare,
    )
    try:
        response = await fetch(client, request)
        return Answer(response.code, response.headers, sink.data(), url)
    except TransportFailure as failure:
        if sink.over_budget:
            raise WorkerUnavailable(OVER_BUDGET) from None
        if sink.overflowed or failure.curl_errno == pycurl.E_FILESIZE_EXCEEDED:
            raise SourceTooLarge(limits.too_large()) from None
        if failure.timed_out:
            raise OriginTimeout(f"origin {name} timed out") from None
        raise OriginError(f"origin {name} unreachable") from None
    finally:
        sink.release()


async def get_following(
    client: AsyncHTTPClient,
    url: str,
    name: str,
    limits: FetchLimits,
    guard: RedirectGuard,
    headers_for: HeadersFor | None = None,
    path_as_is: bool = False,
) -> Answer:
    """``get``, following up to ``MAX_REDIRECTS`` redirects the guard allows.

    A redirect without ``Location`` is returned as it is; a refused one,
    a loop or too many raise ``OriginError`` and log why.
    """
    deadline = time.monotonic() + limits.timeout
    seen = {url}
    pin = None
    for hop in range(MAX_REDIRECTS + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OriginTimeout(f"origin {name} timed out")
        headers = headers_for(url) if headers_for is not None else None
        answer = await get(
            client,
            url,
            name,
            limits,
            timeout=remaining,
            headers=headers,
            pin=pin,
            path_as_is=path_as_is,
        )
        location = answer.headers.get("Location")
        if answer.code not in REDIRECT_STATUSES or not location:
            return answer
        if hop == MAX_REDIRECTS:
            break
        try:
            target = await guard.check(url, location, max(0.001, deadline - time.monotonic()))
        except RedirectRefused as refused:
            log.warning(
                "origin %s: not following the redirect from %s to %s: %s",
                name,
                url,
                _shown(location),
                refused,
            )
            raise OriginError(f"origin {name} redirected where phizer does not follow") from None
        if target.url in seen:
            log.warning("origin %s: redirect loop at %s", name, _shown(target.url))
            raise OriginError(f"origin {name} redirects in a loop")
        seen.add(target.url)
        url, pin = target.url, target.pin
    log.warning("origin %s: more than %d redirects from %s", name, MAX_REDIRECTS, url)
    raise OriginError(f"origin {name} redirects too many times")


def _shown(text: str) -> str:
    """An origin's text as a log may show it: printable and short."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return repr(text if len(text) <= 200 else text[:200] + "...")
