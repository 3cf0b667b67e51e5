"""A real S3 API on loopback (moto's server mode) with a private bucket.

``running_s3`` starts ``python -m moto.server`` on a free 127.0.0.1 port,
creates IAM users and a private bucket, then turns moto's IAM checks on,
so from then on every request must be signed with a real user's keys and
is allowed only what that user's policy allows. The server is stopped on
the way out. Nothing here ever talks to AWS: every client names the
loopback endpoint, and ``aws_environment`` gives botocore an environment
with no credentials, empty config files and instance metadata off.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session

from tests.ports import HOST
from tests.services import ServiceProcess, running

BUCKET = "photos"
REGION = "eu-west-1"
PREFIX = "originals/"
# botocore settings that could lead a test to real credentials or to AWS.
_AWS_VARIABLES_CLEARED = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


@dataclass(frozen=True)
class Keys:
    access_key: str
    secret_key: str


@dataclass
class S3World:
    """The running server, its users' keys and a client that may write."""

    port: int
    reader: Keys  # s3:GetObject on the bucket's PREFIX, nothing else
    stranger: Keys  # a real user without any permission
    _writer: Any  # a botocore S3 client of a user allowed s3:*

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def put(self, key: str, data: bytes) -> str:
        self._writer.put_object(Bucket=BUCKET, Key=key, Body=data)
        return key

    def add(self, name: str, data: bytes) -> str:
        """Store ``data`` at PREFIX + ``name`` (the interface ``PhizerProcess`` expects)."""
        self.put(PREFIX + name, data)
        return name

    def section(self, **extra: object) -> dict[str, object]:
        """An origin section for the bucket, in the config file's words."""
        options: dict[str, object] = {
            "s3_bucket": BUCKET,
            "s3_region": REGION,
            "s3_prefix": PREFIX,
            "s3_endpoint": self.endpoint,
        }
        options.update(extra)
        return options


def moto_service(workdir: Path) -> ServiceProcess:
    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]

    return ServiceProcess(
        "moto", argv, (b"GET /moto-api/data.json HTTP/1.0\r\n\r\n", b"HTTP/1."), workdir
    )


@contextlib.contextmanager
def running_s3(workdir: Path) -> Iterator[S3World]:
    with running(moto_service(workdir)) as service:
        yield _populate(service.port)


def _populate(port: int) -> S3World:
    endpoint = f"http://{HOST}:{port}"
    session = botocore.session.Session()
    admin = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
    iam = session.create_client("iam", REGION, endpoint_url=endpoint, **admin)
    s3 = session.create_client("s3", REGION, endpoint_url=endpoint, **admin)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    reader = _user(iam, "reader", [("s3:GetObject", f"arn:aws:s3:::{BUCKET}/{PREFIX}*")])
    stranger = _user(iam, "stranger", [])
    writer = _user(iam, "writer", [("s3:*", "*")])
    _post(port, "/moto-api/reset-auth", b"0")  # every request from now on is checked
    writer_client = session.create_client(
        "s3",
        REGION,
        endpoint_url=endpoint,
        aws_access_key_id=writer.access_key,
        aws_secret_access_key=writer.secret_key,
    )
    return S3World(port, reader, stranger, writer_client)


def _user(iam: Any, name: str, grants: list[tuple[str, str]]) -> Keys:
    iam.create_user(UserName=name)
    if grants:
        statements = [
            {"Effect": "Allow", "Action": action, "Resource": resource}
            for action, resource in grants
        ]
        iam.put_user_policy(
            UserName=name,
            PolicyName=f"{name}-policy",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Keys(key["AccessKeyId"], key["SecretAccessKey"])


def _post(port: int, path: str, body: bytes) -> None:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("POST", path, body=body)
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200, f"POST {path}: {answer.status}"
    finally:
        connection.close()


def unsigned_status(world: S3World, key: str) -> int:
    """What an anonymous GET of ``key`` gets: a private bucket refuses it."""
    connection = http.client.HTTPConnection(HOST, world.port, timeout=10)
    try:
        connection.request("GET", f"/{BUCKET}/{key}")
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def credentials_file(path: Path, profiles: Mapping[str, Keys]) -> Path:
    lines = []
    for name, keys in profiles.items():
        lines += [
            f"[{name}]",
            f"aws_access_key_id = {keys.access_key}",
            f"aws_secret_access_key = {keys.secret_key}",
            "",
        ]
    path.write_text("\n".join(lines))
    return path


def aws_environment(workdir: Path, **variables: str) -> dict[str, str]:
    """This process's environment without any AWS setting, with empty AWS
    files in ``workdir``, instance metadata off, plus ``variables``."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "aws-config"
    shared = workdir / "aws-credentials"
    for path in (config, shared):
        if not path.exists():
            path.write_text("")
    env = {key: value for key, value in os.environ.items() if key not in _AWS_VARIABLES_CLEARED}
    env.update(
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(shared),
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(variables)
    return env
