"""The configured origins, built for one worker."""

from __future__ import annotations

from tornado.httpclient import AsyncHTTPClient

from phizer.config.loader import Config, OriginSpec
from phizer.origins.base import FetchLimits, InFlightBytes, Origin
from phizer.origins.chain import OriginSet
from phizer.origins.directory import DirectoryOrigin
from phizer.origins.http import HttpOrigin
from phizer.origins.redirects import RedirectRules


def build_origin_set(config: Config, client: AsyncHTTPClient) -> OriginSet:
    """The master and the slaves; a bucket's credentials are looked up now."""
    settings = config.settings
    in_flight = InFlightBytes(max(settings.max_inflight_bytes, settings.max_source_bytes))
    limits = FetchLimits(
        settings.origin_connect_timeout,
        settings.origin_timeout,
        settings.max_source_bytes,
        in_flight,
    )
    rules = RedirectRules.from_config(config)
    origins = [build_origin(spec, client, limits, rules) for spec in config.origins]
    if config.master is not None:
        return OriginSet(origins[0], origins[1:], in_flight)
    return OriginSet(None, origins, in_flight)


def build_origin(
    spec: OriginSpec, client: AsyncHTTPClient, limits: FetchLimits, rules: RedirectRules
) -> Origin:
    if spec.directory is not None:
        return DirectoryOrigin(spec, limits.max_bytes)
    if spec.bucket is not None:
        # botocore (150 ms and 10 MB a process) only where a bucket is configured.
        from phizer.origins.s3 import BucketOrigin

        return BucketOrigin.at_startup(spec, client, limits, rules)
    return HttpOrigin(spec, client, limits, rules)
