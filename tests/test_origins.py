"""Origins: the config options, redirects, S3 helpers and credentials.

Pure functions are tested directly; redirects also through a worker
against real HTTP servers on loopback (bucket origins against a real S3
API are in test_s3_origin.py).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import textwrap
import threading
from pathlib import Path

import pytest
from botocore.credentials import Credentials, RefreshableCredentials

from phizer.config.loader import Config, OriginSpec, load_config
from phizer.config.origin_options import BucketSpec, RedirectHost, parse_redirect_host
from phizer.errors import ConfigError, OriginError
from phizer.origins.base import Validators
from phizer.origins.credentials import CredentialSource, Found, lookup
from phizer.origins.redirects import MAX_REDIRECTS, RedirectGuard, RedirectRefused, RedirectRules
from phizer.origins.s3 import (
    Outcome,
    bucket_base,
    error_details,
    key_url,
    outcome,
    redirect_hosts,
)
from phizer.report import render
from phizer.tiers.keys import origins_fingerprint
from tests.http_support import PoolTestCase, ServerPool, StubServer, http_origin, make_config, url
from tests.imagetools import encode, photo
from tests.s3_support import Keys, aws_environment, credentials_file

JPEG = encode(photo(320, 240), "JPEG", quality=90)


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "phizer.conf"
    path.write_text(textwrap.dedent(text) + "\n[sizes]\ns100 = 100x100\n")
    return load_config(str(path))


# --------------------------------------------------------------------------
# Config: bucket sections and redirect_hosts


def test_bucket_section(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        [master]
        s3_bucket = photos
        s3_region = eu-west-1
        s3_prefix = /originals
        s3_endpoint = HTTP://127.0.0.1:9000/
        s3_profile = reader
        [slave-1]
        host = images.example
        """,
    )
    assert config.master == OriginSpec(
        "master",
        bucket=BucketSpec("photos", "originals/", "eu-west-1", "http://127.0.0.1:9000", "reader"),
    )
    assert config.slaves[0].host == "images.example"
    assert config.warnings == ()


def test_bucket_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "[master]\ns3_bucket = photos\n")
    assert config.master is not None
    assert config.master.bucket == BucketSpec("photos")
    assert config.master.describe() == "[master] bucket s3://photos/"


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ("s3_bucket = photos\nhost = a.example", "exactly one of"),
        ("s3_bucket = photos\ndirectory = .", "exactly one of"),
        ("s3_bucket = Photos_Upper", "s3_bucket"),
        ("s3_bucket = ab", "s3_bucket"),
        ("s3_bucket = photos\ns3_region = eu west", "s3_region"),
        ("s3_bucket = photos\ns3_endpoint = ftp://minio:9000", "s3_endpoint"),
        ("s3_bucket = photos\ns3_endpoint = http://minio:9000/some/path", "s3_endpoint"),
        ("s3_bucket = photos\ns3_endpoint = http://user:pw@minio:9000", "s3_endpoint"),
        ("s3_bucket = photos\nport = 8080", "port"),
        ("s3_bucket = photos\nroot = /images", "root"),
        ("host = a.example\ns3_region = eu-west-1", "only used with s3_bucket"),
        ("directory = .\nredirect_hosts = a.example", "redirect_hosts"),
        ("host = a.example\nredirect_hosts = a.example:99999", "redirect_hosts"),
        ("host = a.example\nredirect_hosts = http://a.example/", "redirect_hosts"),
    ],
)
def test_bad_origin_sections_name_the_option(tmp_path: Path, section: str, named: str) -> None:
    with pytest.raises(ConfigError, match=r"\[master\]") as raised:
        load(tmp_path, f"[master]\n{section}\n")
    assert named in str(raised.value)


def test_redirect_hosts_parse(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "[master]\nhost = a.example\n"
        "redirect_hosts = B.example, c.example:8080 *.s3.amazonaws.com [::1]:81 10.0.0.1\n",
    )
    assert config.master is not None
    assert config.master.redirect_hosts == (
        RedirectHost("b.example"),
        RedirectHost("c.example", 8080),
        RedirectHost("*.s3.amazonaws.com"),
        RedirectHost("::1", 81),
        RedirectHost("10.0.0.1"),
    )
    assert config.master.describe().endswith(
        "redirects also to b.example, c.example:8080, *.s3.amazonaws.com, [::1]:81, 10.0.0.1"
    )


@pytest.mark.parametrize(
    ("entry", "host", "port", "default", "matches"),
    [
        ("a.example", "A.EXAMPLE.", 80, 80, True),
        ("a.example", "a.example", 8080, 80, False),  # no port given: the default only
        ("a.example:8080", "a.example", 8080, 80, True),
        ("a.example", "a.example", 443, 443, True),
        ("*.example.com", "x.y.example.com", 443, 443, True),
        ("*.example.com", "example.com", 443, 443, False),
        ("*.example.com", "badexample.com", 443, 443, False),
    ],
)
def test_redirect_host_matching(
    entry: str, host: str, port: int, default: int, matches: bool
) -> None:
    assert parse_redirect_host(entry).matches(host, port, default) is matches


def test_bucket_fingerprints_differ_by_bucket_and_prefix() -> None:
    def bucket(name: str, prefix: str = "") -> OriginSpec:
        return OriginSpec("master", bucket=BucketSpec(name, prefix, "eu-west-1"))

    prints = {
        origins_fingerprint(bucket("photos"), ()),
        origins_fingerprint(bucket("photos", "a/"), ()),
        origins_fingerprint(bucket("avatars"), ()),
        origins_fingerprint(OriginSpec("master", host="photos.example"), ()),
    }
    assert len(prints) == 4


# --------------------------------------------------------------------------
# Redirect rules (pure, with a stand-in resolver)

HOME = "http://origin.example:8080/images/"
RULES = RedirectRules(frozenset({"origin.example", "10.1.2.3"}), range(6776, 6779))


def guard(*allowed: str, addresses: dict[str, list[str]] | None = None) -> RedirectGuard:
    async def resolver(host: str, port: int) -> list[str]:
        if addresses is None or host not in addresses:
            raise OSError("no such host")
        return addresses[host]

    return RedirectGuard(HOME, [parse_redirect_host(a) for a in allowed], RULES, resolver)


def check(redirects: RedirectGuard, location: str) -> tuple[str, str | None]:
    hop = asyncio.run(redirects.check(HOME + "a.jpg", location, 1.0))
    return hop.url, hop.pin


def test_same_host_and_port_is_followed_relative_or_absolute() -> None:
    assert check(guard(), "/images/b.jpg") == ("http://origin.example:8080/images/b.jpg", None)
    assert check(guard(), "b.jpg#part") == ("http://origin.example:8080/images/b.jpg", None)
    assert check(guard(), "HTTP://ORIGIN.example:8080/c.jpg")[0].endswith("/c.jpg")


def test_same_host_upgraded_to_https_is_followed() -> None:
    assert check(guard(), "https://origin.example/b.jpg") == ("https://origin.example/b.jpg", None)
    with pytest.raises(RedirectRefused):
        check(guard(), "https://origin.example:8443/b.jpg")


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://origin.example:8081/b.jpg", "neither"),  # same host, another port
        ("http://other.example:8080/b.jpg", "neither"),
        ("ftp://origin.example:8080/b.jpg", r"http\(s\)"),
        ("http://user:pw@origin.example:8080/b.jpg", "credentials"),
        ("http://origin.example:99999/b.jpg", "valid"),
        ("javascript:alert(1)", r"http\(s\)"),
    ],
)
def test_refused_targets(location: str, reason: str) -> None:
    with pytest.raises(RedirectRefused, match=reason):
        check(guard(), location)


def test_listed_host_with_public_addresses_is_pinned_to_them() -> None:
    redirects = guard("cdn.example", addresses={"cdn.example": ["93.184.216.34", "2606:2800::1"]})
    assert check(redirects, "http://cdn.example/b.jpg") == (
        "http://cdn.example/b.jpg",
        "cdn.example:80:93.184.216.34,[2606:2800::1]",
    )


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["93.184.216.34", "192.168.1.20"],  # one private address is enough
        ["169.254.169.254"],  # instance metadata
        ["::1"],
        ["fe80::1"],
        ["::ffff:127.0.0.1"],
        ["100.64.0.1"],  # carrier-grade NAT
        ["0.0.0.0"],
    ],
)
def test_listed_host_on_a_non_public_address_is_refused(addresses: list[str]) -> None:
    with pytest.raises(RedirectRefused, match="not public"):
        check(guard("cdn.example", addresses={"cdn.example": addresses}), "http://cdn.example/")


def test_non_public_address_an_origin_names_is_allowed() -> None:
    redirects = guard("cdn.example", "10.1.2.3", addresses={"cdn.example": ["10.1.2.3"]})
    assert check(redirects, "http://cdn.example/b.jpg")[1] == "cdn.example:80:10.1.2.3"
    assert check(redirects, "http://10.1.2.3/b.jpg") == ("http://10.1.2.3/b.jpg", None)


def test_literal_addresses_are_checked_without_resolving() -> None:
    with pytest.raises(RedirectRefused, match="not public"):
        check(guard("169.254.169.254"), "http://169.254.169.254/latest/meta-data/")
    assert check(guard("93.184.216.34"), "http://93.184.216.34/b.jpg")[1] is None


def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(RedirectRefused, match="does not resolve"):
        check(guard("cdn.example"), "http://cdn.example/b.jpg")


def test_phizers_own_ports_are_refused_even_when_listed() -> None:
    redirects = guard("cdn.example:6777", addresses={"cdn.example": ["93.184.216.34"]})
    with pytest.raises(RedirectRefused, match="phizer's own"):
        check(redirects, "http://cdn.example:6777/b.jpg")


def test_rules_from_config_name_every_origin_host_and_phizers_ports() -> None:
    config = make_config(
        OriginSpec("master", host="A.example."),
        (
            OriginSpec("slave-1", host="::1"),
            OriginSpec("slave-2", bucket=BucketSpec("b", endpoint="http://minio.lan:9000")),
        ),
        bind_port=7000,
        num_workers=3,
    )
    rules = RedirectRules.from_config(config)
    assert rules.named_hosts == {"a.example", "::1", "minio.lan"}
    assert list(rules.own_ports) == [7000, 7001, 7002, 7003]


# --------------------------------------------------------------------------
# Redirects through a worker, against real HTTP servers


class RedirectTest(PoolTestCase):
    def get_app(self):  # type: ignore[no-untyped-def]
        self.pool = ServerPool(self.io_loop)
        self.origin, self.origin_port = self.pool.stub(StubServer(files={"photo.jpg": JPEG}))
        self.other, self.other_port = self.pool.stub(StubServer(files={"photo.jpg": JPEG}))
        app, _ = self.pool.worker_app(make_config(http_origin("master", self.origin_port)))
        return app

    def worker(self, *allowed: RedirectHost, **settings: object) -> str:
        spec = OriginSpec("master", host="127.0.0.1", port=self.origin_port, redirect_hosts=allowed)
        return url(self.pool.worker(make_config(spec, **settings))[1])

    def elsewhere(self, path: str = "photo.jpg") -> str:
        return f"http://127.0.0.1:{self.other_port}/{path}"

    def test_same_host_redirect_is_followed(self) -> None:
        self.origin.redirects["moved.jpg"] = "/photo.jpg"
        response = self.get("/s100/moved.jpg")
        self.assertEqual(response.code, 200)
        self.assertEqual(self.origin.counts["photo.jpg"], 1)

    def test_redirect_to_another_host_is_refused_and_logged(self) -> None:
        self.origin.redirects["moved.jpg"] = self.elsewhere()
        with self.assertLogs("phizer.origins", logging.WARNING) as logs:
            response = self.get("/s100/moved.jpg")
        self.assertEqual(response.code, 502)
        self.assertEqual(self.other.total, 0)
        self.assertIn("origin master", logs.output[0])
        self.assertIn("redirect_hosts", logs.output[0])

    def test_redirect_hosts_lets_another_host_in(self) -> None:
        base = self.worker(RedirectHost("127.0.0.1", self.other_port))
        self.origin.redirects["moved.jpg"] = self.elsewhere()
        self.assertEqual(self.get("/s100/moved.jpg", base).code, 200)
        self.assertEqual(self.other.counts["photo.jpg"], 1)

    def test_redirect_loop_is_502(self) -> None:
        self.origin.redirects["a.jpg"] = "/b.jpg"
        self.origin.redirects["b.jpg"] = "/a.jpg"
        response = self.get("/s100/a.jpg")
        self.assertEqual(response.code, 502)
        self.assertEqual((self.origin.counts["a.jpg"], self.origin.counts["b.jpg"]), (1, 1))

    def test_a_long_chain_stops(self) -> None:
        for hop in range(2 * MAX_REDIRECTS):
            self.origin.redirects[f"r{hop}.jpg"] = f"/r{hop + 1}.jpg"
        self.origin.files[f"r{2 * MAX_REDIRECTS}.jpg"] = JPEG
        response = self.get("/s100/r0.jpg")
        self.assertEqual(response.code, 502)
        self.assertEqual(self.origin.counts[f"r{2 * MAX_REDIRECTS}.jpg"], 0)
        self.assertLessEqual(self.origin.total, MAX_REDIRECTS + 1)

    def test_redirect_to_phizers_own_port_is_refused(self) -> None:
        # "other" stands for phizer: its port is this config's worker port.
        listed = RedirectHost("127.0.0.1", self.other_port)
        self.origin.redirects["moved.jpg"] = self.elsewhere()
        as_phizer = self.worker(listed, bind_port=self.other_port - 1, num_workers=1)
        self.assertEqual(self.get("/s100/moved.jpg", as_phizer).code, 502)
        self.assertEqual(self.other.total, 0)
        # The same redirect with phizer elsewhere is followed.
        self.assertEqual(self.get("/s100/moved.jpg", self.worker(listed)).code, 200)
        self.assertEqual(self.other.total, 1)

    def test_unnamed_private_address_is_refused_even_when_listed(self) -> None:
        # 127.0.0.2 is loopback too, but no origin names it.
        hidden, port = self.pool.stub(StubServer(files={"photo.jpg": JPEG}), "127.0.0.2")
        self.origin.redirects["moved.jpg"] = f"http://127.0.0.2:{port}/photo.jpg"
        listed = RedirectHost("127.0.0.2", port)
        self.assertEqual(self.get("/s100/moved.jpg", self.worker(listed)).code, 502)
        self.assertEqual(hidden.total, 0)
        # Named by a (slave) origin, it may be redirected to.
        master = OriginSpec(
            "master", host="127.0.0.1", port=self.origin_port, redirect_hosts=(listed,)
        )
        slave = OriginSpec("slave-1", host="127.0.0.2", port=port)
        base = url(self.pool.worker(make_config(master, (slave,)))[1])
        self.assertEqual(self.get("/s100/moved.jpg", base).code, 200)
        self.assertEqual(hidden.counts["photo.jpg"], 1)


# --------------------------------------------------------------------------
# S3 helpers


def test_keys_are_escaped_as_s3_canonical_uris() -> None:
    base = "http://127.0.0.1:9000/photos/"
    assert key_url(base, "a b+c/été~x.jpg") == base + "a%20b%2Bc/%C3%A9t%C3%A9~x.jpg"
    assert key_url(base, "q?&=#%.jpg") == base + "q%3F%26%3D%23%25.jpg"


def test_bucket_urls() -> None:
    assert bucket_base(BucketSpec("photos"), "eu-west-1") == (
        "https://photos.s3.eu-west-1.amazonaws.com/"
    )
    assert bucket_base(BucketSpec("my.photos"), "eu-west-1") == (
        "https://s3.eu-west-1.amazonaws.com/my.photos/"
    )
    minio = BucketSpec("photos", endpoint="http://127.0.0.1:9000")
    assert bucket_base(minio, "us-east-1") == "http://127.0.0.1:9000/photos/"


def test_aws_buckets_may_redirect_within_amazonaws_only() -> None:
    rules = RedirectRules(frozenset(), range(0))
    listed = (RedirectHost("cdn.example"),)
    aws = BucketSpec("photos", region="us-east-1")
    base = bucket_base(aws, "us-east-1")
    redirects = RedirectGuard(base, redirect_hosts(aws, listed), rules)
    regional = "https://photos.s3-eu-west-1.amazonaws.com/x.jpg"
    assert redirects.target(base + "x.jpg", regional)[0] == regional
    assert redirects.target(base + "x.jpg", "http://cdn.example/x.jpg")[1] == "cdn.example"
    with pytest.raises(RedirectRefused):
        redirects.target(base + "x.jpg", "https://amazonaws.com.evil.example/x.jpg")
    minio = BucketSpec("photos", endpoint="http://127.0.0.1:9000")
    assert redirect_hosts(minio, listed) == listed


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (200, None, Outcome.FOUND),
        (404, "NoSuchKey", Outcome.MISSING),
        (404, None, Outcome.MISSING),
        (404, "NoSuchBucket", Outcome.FAILED),
        (403, "AccessDenied", Outcome.HIDDEN),
        (403, "InvalidAccessKeyId", Outcome.FAILED),
        (403, "SignatureDoesNotMatch", Outcome.FAILED),
        (400, "ExpiredToken", Outcome.FAILED),
        (400, "AuthorizationHeaderMalformed", Outcome.FAILED),
        (301, "PermanentRedirect", Outcome.FAILED),
        (503, "SlowDown", Outcome.FAILED),
    ],
)
def test_s3_outcomes(status: int, code: str | None, expected: Outcome) -> None:
    assert outcome(status, code) is expected


def test_error_details_are_read_safely() -> None:
    body = (
        b'<?xml version="1.0"?><Error><Code>AccessDenied</Code>'
        b"<Message>Access\x07Denied</Message><RequestId>1</RequestId></Error>"
    )
    assert error_details(body) == ("AccessDenied", "Access?Denied")
    assert error_details(b"<html>bad gateway</html>") == (None, None)
    assert error_details(b"<Code>" + b"x" * 100 + b"</Code>") == (None, None)


# --------------------------------------------------------------------------
# Credentials


def test_lookup_finds_the_environment_and_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = aws_environment(tmp_path)
    credentials_file(Path(env["AWS_SHARED_CREDENTIALS_FILE"]), {"reader": Keys("AKIAFILE", "s")})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    nothing = lookup(None)
    assert nothing.credentials is None and "no AWS credentials" in (nothing.problem or "")
    profile = lookup("reader")
    assert profile.credentials is not None
    assert (profile.credentials.method, profile.credentials.access_key) == (
        "shared-credentials-file",
        "AKIAFILE",
    )
    missing = lookup("nobody")
    assert missing.credentials is None and "nobody" in (missing.problem or "")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    from_env = lookup(None)
    assert from_env.credentials is not None and from_env.credentials.method == "env"


class Clock:
    """botocore's idea of now, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime.datetime.now(datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)


def expiring(clock: Clock, seconds: float, refresh: object) -> RefreshableCredentials:
    expiry = clock.now + datetime.timedelta(seconds=seconds)
    return RefreshableCredentials(
        "AKIAOLD", "old", "token-old", expiry, refresh, "assume-role", time_fetcher=clock
    )


class Refresher:
    """A refresh function that records the thread it ran on."""

    def __init__(self, lasts: float = 3600) -> None:
        self.threads: list[threading.Thread] = []
        self.lasts = lasts

    def __call__(self) -> dict[str, str]:
        self.threads.append(threading.current_thread())
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=self.lasts)
        return {
            "access_key": "AKIANEW",
            "secret_key": "new",
            "token": "token-new",
            "expiry_time": expiry.isoformat(),
        }


def source_of(credentials: Credentials | None, retry: float = 30.0) -> CredentialSource:
    source = CredentialSource(lambda: Found(credentials, None if credentials else "none"), retry)
    source.load()
    return source


def test_fresh_credentials_are_never_refreshed() -> None:
    refresh = Refresher()
    source = source_of(expiring(Clock(), 3600, refresh))
    keys = [asyncio.run(source.current("master")).access_key for _ in range(3)]
    assert keys == ["AKIAOLD"] * 3
    assert refresh.threads == []


def test_credentials_about_to_expire_are_refreshed_in_a_thread() -> None:
    refresh, clock = Refresher(), Clock()
    source = source_of(expiring(clock, 3600, refresh))
    clock.advance(3600 - 30)  # inside the last minute: requests wait for the refresh
    loop_thread = threading.current_thread()
    assert asyncio.run(source.current("master")).access_key == "AKIANEW"
    assert len(refresh.threads) == 1 and refresh.threads[0] is not loop_thread


def test_credentials_in_the_advisory_window_refresh_in_the_background() -> None:
    refresh, clock = Refresher(), Clock()
    source = source_of(expiring(clock, 3600, refresh))
    clock.advance(3600 - 5 * 60)  # a refresh is due, but not urgent

    async def run() -> list[str]:
        first = (await source.current("master")).access_key
        for _ in range(500):  # the refresh runs in a thread: poll until it is done
            if refresh.threads and source._pending is None:
                break
            await asyncio.sleep(0.01)
        return [first, (await source.current("master")).access_key]

    assert asyncio.run(run()) == ["AKIAOLD", "AKIANEW"]
    assert refresh.threads[0] is not threading.current_thread()


def test_expired_credentials_that_cannot_refresh_are_a_problem_not_a_crash() -> None:
    clock = Clock()

    def refuse() -> dict[str, str]:
        raise OSError("metadata endpoint unreachable")

    credentials = expiring(clock, 3600, refuse)
    clock.advance(3600 + 10)
    source = CredentialSource(lambda: Found(credentials))
    source.load()
    assert source.method is None
    assert "assume-role" in (source.problem or "") and "unreachable" in (source.problem or "")
    with pytest.raises(OriginError):
        asyncio.run(source.current("master"))


def test_missing_credentials_are_looked_for_again() -> None:
    found: list[Credentials | None] = [None]
    source = CredentialSource(lambda: Found(found[0], "none yet"), retry_seconds=0)
    source.load()

    async def run() -> str:
        with pytest.raises(OriginError):
            await source.current("master")
        found[0] = Credentials("AKIALATE", "late", method="iam-role")
        return (await source.current("master")).access_key

    assert asyncio.run(run()) == "AKIALATE"
    assert source.method == "iam-role"


# --------------------------------------------------------------------------
# --check-config


def test_check_config_names_bucket_and_credentials_without_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = aws_environment(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASHOWN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-shown-secret")
    config = load(tmp_path, "[master]\ns3_bucket = photos\ns3_region = eu-west-1\n")
    report = render(config, "phizer.conf")
    assert "[master] bucket s3://photos/ in eu-west-1" in report
    assert "region eu-west-1, credentials: env" in report
    assert "never-shown-secret" not in report


def test_a_conditional_get_asks_by_etag_when_there_is_one() -> None:
    both = Validators('"v1"', "Fri, 04 Dec 2026 10:21:39 GMT")
    assert both.conditional_headers() == {"If-None-Match": '"v1"'}
    dated = Validators(None, "Fri, 04 Dec 2026 10:21:39 GMT")
    assert dated.conditional_headers() == {"If-Modified-Since": "Fri, 04 Dec 2026 10:21:39 GMT"}
    assert Validators().conditional_headers() == {}
