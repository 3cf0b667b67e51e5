"""Classifying the transport failures of Tornado's curl client (status 599)."""

from __future__ import annotations

import pycurl
from tornado.curl_httpclient import CurlError
from tornado.simple_httpclient import HTTPTimeoutError


def is_timeout(error: BaseException | None) -> bool:
    return isinstance(error, HTTPTimeoutError) or (
        isinstance(error, CurlError) and error.errno == pycurl.E_OPERATION_TIMEDOUT
    )
