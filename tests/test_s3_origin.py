"""Bucket origins against a real S3 API (moto's server) on loopback.

The bucket is private and moto checks every signature and IAM policy:
``reader`` may only GetObject under the prefix. The first tests drive a
``BucketOrigin`` directly; the last ones start the real ``phizer``
command with a bucket master, an HTTP slave, and credentials from a
shared credentials file profile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from botocore.credentials import Credentials
from tornado.curl_httpclient import CurlAsyncHTTPClient

from phizer.config.loader import OriginSpec
from phizer.config.origin_options import BucketSpec
from phizer.errors import NotFound, OriginError, OriginTimeout, SourceTooLarge
from phizer.origins.base import Fetched, FetchLimits, Validators
from phizer.origins.build import build_origin
from phizer.origins.credentials import CredentialSource, Found
from phizer.origins.redirects import RedirectRules
from phizer.origins.s3 import BucketOrigin
from tests.e2e_support import DEFAULT_SIZES, PhizerProcess, run_cli, serving_origin
from tests.imagetools import decode, encode, photo
from tests.s3_support import (
    BUCKET,
    PREFIX,
    REGION,
    Keys,
    S3World,
    aws_environment,
    credentials_file,
    running_s3,
    unsigned_status,
)
from tests.services import silent_port

pytestmark = pytest.mark.timeout(120)

JPEG = encode(photo(640, 480), "JPEG", quality=90)
# Keys S3 wants escaped in the canonical URI: space, "+", non-ASCII, reserved.
AWKWARD_NAMES = ("with space.jpg", "a+b.jpg", "café/naïve 写真.jpg", "odd=&'()$,;!@.jpg")
NO_REDIRECTS = RedirectRules(frozenset(), range(0))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3World]:
    with running_s3(tmp_path_factory.mktemp("moto")) as running:
        running.add("photo.jpg", JPEG)
        for name in AWKWARD_NAMES:
            running.add(name, JPEG)
        yield running


def spec(world: S3World, name: str = "master", **bucket: object) -> OriginSpec:
    options = {"prefix": PREFIX, "region": REGION, "endpoint": world.endpoint, **bucket}
    return OriginSpec(name, bucket=BucketSpec(BUCKET, **options))  # type: ignore[arg-type]


def fixed(keys: Keys) -> CredentialSource:
    source = CredentialSource(lambda: Found(Credentials(keys.access_key, keys.secret_key)))
    source.load()
    return source


def fetch(origin_spec: OriginSpec, keys: Keys, path: str, max_bytes: int = 10 << 20) -> bytes:
    """``path`` through a BucketOrigin with ``keys``, on a fresh loop and client."""
    fetched = fetch_version(origin_spec, keys, path, max_bytes=max_bytes)
    assert fetched.data is not None
    return fetched.data


def fetch_version(
    origin_spec: OriginSpec,
    keys: Keys,
    path: str,
    validators: Validators | None = None,
    max_bytes: int = 10 << 20,
) -> Fetched:
    """``origin.fetch(path, validators)`` on a fresh loop and client."""

    async def run() -> Fetched:
        client = CurlAsyncHTTPClient(force_instance=True)
        try:
            limits = FetchLimits(1.0, 3.0, max_bytes)
            origin = BucketOrigin(origin_spec, client, limits, NO_REDIRECTS, fixed(keys))
            return await origin.fetch(path, validators)
        finally:
            client.close()

    return asyncio.run(run())


# --------------------------------------------------------------------------
# The origin itself


def test_the_bucket_is_private(world: S3World) -> None:
    assert unsigned_status(world, PREFIX + "photo.jpg") == 403


def test_signed_get_reads_the_object(world: S3World) -> None:
    assert fetch(spec(world), world.reader, "photo.jpg") == JPEG


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_keys_that_need_escaping(world: S3World, name: str) -> None:
    assert fetch(spec(world), world.reader, name) == JPEG


def test_a_plus_is_not_a_space(world: S3World) -> None:
    world.add("x y.jpg", b"space")
    world.add("x+y.jpg", b"plus")
    assert fetch(spec(world), world.reader, "x+y.jpg") == b"plus"
    assert fetch(spec(world), world.reader, "x y.jpg") == b"space"


def test_revalidation_is_signed_and_answered_304_until_the_object_changes(
    world: S3World,
) -> None:
    world.add("versioned.jpg", JPEG)
    first = fetch_version(spec(world), world.reader, "versioned.jpg")
    assert first.data == JPEG and first.validators.etag
    # The conditional headers are part of the signed request, and S3 says
    # the copy is current.
    assert fetch_version(spec(world), world.reader, "versioned.jpg", first.validators).data is None
    changed = encode(photo(320, 240), "JPEG")
    world.add("versioned.jpg", changed)
    again = fetch_version(spec(world), world.reader, "versioned.jpg", first.validators)
    assert again.data == changed
    assert again.validators.etag != first.validators.etag


def test_missing_key_is_not_found(world: S3World) -> None:
    with pytest.raises(NotFound):
        fetch(spec(world), world.reader, "no-such-photo.jpg")


def test_access_denied_counts_as_not_found_and_says_so_once(
    world: S3World, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> list[type[BaseException]]:
        client = CurlAsyncHTTPClient(force_instance=True)
        origin = BucketOrigin(
            spec(world), client, FetchLimits(1.0, 3.0), NO_REDIRECTS, fixed(world.stranger)
        )
        outcomes = []
        for _ in range(2):
            try:
                await origin.fetch("photo.jpg")
            except NotFound as err:
                outcomes.append(type(err))
        client.close()
        return outcomes

    with caplog.at_level(logging.WARNING, "phizer.origins"):
        assert asyncio.run(run()) == [NotFound, NotFound]
    warnings = [r for r in caplog.records if "AccessDenied" in r.getMessage()]
    assert len(warnings) == 1
    assert "master" in warnings[0].getMessage() and "s3:GetObject" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("keys", "code"),
    [
        (Keys("AKIANOSUCHKEY0000000", "whatever"), "InvalidAccessKeyId"),
        ("wrong-secret", "SignatureDoesNotMatch"),
    ],
)
def test_bad_credentials_are_502_with_a_log_line(
    world: S3World, caplog: pytest.LogCaptureFixture, keys: Keys | str, code: str
) -> None:
    if keys == "wrong-secret":
        keys = Keys(world.reader.access_key, "not-the-secret")
    assert isinstance(keys, Keys)
    with caplog.at_level(logging.ERROR, "phizer.origins"), pytest.raises(OriginError) as raised:
        fetch(spec(world), keys, "photo.jpg")
    assert raised.value.status == 502
    lines = [r.getMessage() for r in caplog.records if r.name == "phizer.origins"]
    assert any("master" in line and code in line and BUCKET in line for line in lines), lines
    assert not any(keys.secret_key in line for line in lines)


def test_max_source_bytes_holds(world: S3World) -> None:
    world.add("big.bin", bytes(300_000))
    with pytest.raises(SourceTooLarge):
        fetch(spec(world), world.reader, "big.bin", max_bytes=100_000)
    assert len(fetch(spec(world), world.reader, "big.bin", max_bytes=300_000)) == 300_000


def test_an_endpoint_that_never_answers_is_a_timeout(world: S3World) -> None:
    with silent_port() as port:
        stalled = spec(world, endpoint=f"http://127.0.0.1:{port}")
        with pytest.raises(OriginTimeout):
            fetch(stalled, world.reader, "photo.jpg")


def test_credentials_from_a_profile_of_the_shared_file(
    world: S3World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = aws_environment(tmp_path)
    credentials_file(Path(env["AWS_SHARED_CREDENTIALS_FILE"]), {"reader": world.reader})
    _apply(monkeypatch, env)
    profile_spec = spec(world, profile="reader")

    async def run() -> tuple[str | None, bytes]:
        client = CurlAsyncHTTPClient(force_instance=True)
        try:
            origin = build_origin(profile_spec, client, FetchLimits(1.0, 3.0), NO_REDIRECTS)
            assert isinstance(origin, BucketOrigin)
            return origin._credentials.method, (await origin.fetch("photo.jpg")).data
        finally:
            client.close()

    method, data = asyncio.run(run())
    assert method == "shared-credentials-file"
    assert data == JPEG


def test_no_credentials_is_502_and_a_startup_log_line(
    world: S3World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _apply(monkeypatch, aws_environment(tmp_path))

    async def run() -> None:
        client = CurlAsyncHTTPClient(force_instance=True)
        try:
            origin = build_origin(spec(world), client, FetchLimits(1.0, 3.0), NO_REDIRECTS)
            await origin.fetch("photo.jpg")
        finally:
            client.close()

    with caplog.at_level(logging.ERROR, "phizer.origins"), pytest.raises(OriginError):
        asyncio.run(run())
    assert any("no AWS credentials" in r.getMessage() for r in caplog.records)


def _apply(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Make ``env`` this process's environment for one test."""
    import os

    for key in set(os.environ) - set(env):
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


# --------------------------------------------------------------------------
# The real phizer command


@pytest.fixture(scope="module")
def aws_files(tmp_path_factory: pytest.TempPathFactory, world: S3World) -> dict[str, str]:
    """An environment whose credentials file has the profiles ``reader``
    and ``wrong`` (reader's key id with a wrong secret)."""
    env = aws_environment(tmp_path_factory.mktemp("aws"))
    credentials_file(
        Path(env["AWS_SHARED_CREDENTIALS_FILE"]),
        {
            "reader": world.reader,
            "wrong": Keys(world.reader.access_key, "not-the-secret-at-all"),
        },
    )
    return env


@pytest.fixture(scope="module")
def bucket_phizer(
    tmp_path_factory: pytest.TempPathFactory, world: S3World, aws_files: dict[str, str]
) -> Iterator[tuple[PhizerProcess, object]]:
    """phizer with the bucket as master (profile from AWS_PROFILE) and an HTTP slave."""
    workdir = tmp_path_factory.mktemp("phizer-s3")
    with serving_origin(workdir / "slave") as slave:
        phizer = PhizerProcess(
            workdir,
            world,  # type: ignore[arg-type]  # only add() is used
            slaves=[slave],
            master_options=world.section(),
            properties={"max_source_bytes": 400_000},
            env={**aws_files, "AWS_PROFILE": "reader"},
        )
        try:
            phizer.start()
            yield phizer, slave
        finally:
            phizer.stop()


def test_every_size_from_the_bucket(bucket_phizer: tuple[PhizerProcess, object]) -> None:
    phizer, _ = bucket_phizer
    expected = {"s100": (100, 75), "sq150": (150, 150), "p200": (200, 300), "l300": (300, 200)}
    assert set(expected) == set(DEFAULT_SIZES)
    for size, dimensions in expected.items():
        response = phizer.get(f"/{size}/photo.jpg")
        assert response.status == 200, response.body[:200]
        assert decode(response.body).size == dimensions


def test_every_object_size_from_the_bucket(
    world: S3World, bucket_phizer: tuple[PhizerProcess, object]
) -> None:
    phizer, _ = bucket_phizer
    # s100 fits inside 100x100 and enlarges (upscale defaults to true).
    for (width, height), fitted in {
        (1, 1): (100, 100),
        (40, 30): (100, 75),
        (1200, 900): (100, 75),
    }.items():
        name = world.add(f"scale-{width}x{height}.png", encode(photo(width, height), "PNG"))
        response = phizer.get(f"/s100/{name}")
        assert response.status == 200, (name, response.body[:200])
        assert decode(response.body).size == fitted
    world.add("too-big.jpg", JPEG + bytes(400_000))
    assert phizer.get("/s100/too-big.jpg").status == 413


def test_escaped_keys_through_the_url(bucket_phizer: tuple[PhizerProcess, object]) -> None:
    phizer, _ = bucket_phizer
    for name in AWKWARD_NAMES:
        response = phizer.get("/s100/" + quote(name))
        assert response.status == 200, (name, response.status, response.body[:200])


def test_missing_everywhere_is_404_and_slave_only_is_200(
    bucket_phizer: tuple[PhizerProcess, object],
) -> None:
    phizer, slave = bucket_phizer
    assert phizer.get("/s100/nowhere.jpg").status == 404
    slave.add("only-on-slave.jpg", JPEG)  # type: ignore[attr-defined]
    response = phizer.get("/s100/only-on-slave.jpg")
    assert response.status == 200
    assert slave.count("only-on-slave.jpg") == 1  # type: ignore[attr-defined]


def test_wrong_credentials_through_phizer_are_502(
    tmp_path: Path, world: S3World, aws_files: dict[str, str]
) -> None:
    """An HTTP master, a bucket slave whose profile has a wrong secret."""
    with serving_origin(tmp_path / "master") as master:
        phizer = PhizerProcess(
            tmp_path,
            master,
            sections={"slave-bucket": world.section(s3_profile="wrong")},
            env=aws_files,
        )
        try:
            phizer.start()
            world.add("bucket-only.jpg", JPEG)
            response = phizer.get("/s100/bucket-only.jpg")
            assert response.status == 502
            assert b"not-the-secret" not in response.body
            assert phizer.get("/_health").status == 200  # asks no origin
            log = phizer.log_text()
        finally:
            phizer.stop()
    lines = [line for line in log.splitlines() if "SignatureDoesNotMatch" in line]
    assert lines and "slave-bucket" in lines[0], log
    assert "not-the-secret-at-all" not in log


def test_check_config_shows_where_credentials_come_from(
    tmp_path: Path, world: S3World, aws_files: dict[str, str]
) -> None:
    config = tmp_path / "phizer.conf"
    options = "\n".join(f"{k} = {v}" for k, v in world.section(s3_profile="reader").items())
    config.write_text(f"[master]\n{options}\n\n[sizes]\ns100 = 100x100\n")
    result = run_cli(["-c", str(config), "--check-config"], env=aws_files)
    assert result.returncode == 0, result.stderr
    assert f"[master] bucket s3://{BUCKET}/{PREFIX} at {world.endpoint}" in result.stdout
    assert "credentials: shared-credentials-file, profile reader" in result.stdout
    assert world.reader.secret_key not in result.stdout + result.stderr

    env_keys = {
        **aws_files,
        "AWS_ACCESS_KEY_ID": world.reader.access_key,
        "AWS_SECRET_ACCESS_KEY": world.reader.secret_key,
    }
    options = "\n".join(f"{k} = {v}" for k, v in world.section().items())
    config.write_text(f"[master]\n{options}\n\n[sizes]\ns100 = 100x100\n")
    result = run_cli(["-c", str(config), "--check-config"], env=env_keys)
    assert "credentials: env" in result.stdout
    assert world.reader.secret_key not in result.stdout + result.stderr
