"""Fetching with Tornado's curl client, with transport failures made explicit.

``raise_error=False`` keeps HTTP statuses as responses, but connection
failures and timeouts still raise (as status 599); ``fetch`` turns those
into ``TransportFailure`` so callers map them to their own errors.
"""

from __future__ import annotations

import pycurl
from tornado.curl_httpclient import CurlError
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.simple_httpclient import HTTPTimeoutError


class TransportFailure(Exception):
    def __init__(self, message: str, timed_out: bool, curl_errno: int | None = None) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.curl_errno = curl_errno


async def fetch(client: AsyncHTTPClient, request: HTTPRequest) -> HTTPResponse:
    try:
        return await client.fetch(request, raise_error=False)
    except HTTPClientError as err:
        errno = err.errno if isinstance(err, CurlError) else None
        raise TransportFailure(str(err), is_timeout(err), errno) from None


def is_timeout(error: BaseException | None) -> bool:
    return isinstance(error, HTTPTimeoutError) or (
        isinstance(error, CurlError) and error.errno == pycurl.E_OPERATION_TIMEDOUT
    )
