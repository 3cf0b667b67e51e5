"""Freshness and purge with the real ``phizer``: a replaced, deleted or
purged photo stops being served, on one host and, through a real Redis,
on another."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from PIL import Image

from tests.e2e_support import (
    OriginServer,
    PhizerProcess,
    http_get,
    run_cli,
    serving_origin,
    wait_until,
)
from tests.imagetools import encode
from tests.services import redis_service, running

RED = encode(Image.new("RGB", (400, 300), (220, 20, 20)), "JPEG", quality=90)
BLUE = encode(Image.new("RGB", (400, 300), (20, 20, 220)), "JPEG", quality=90)
SIZES = ("s100", "sq150", "p200", "l300")


def colour_at(process: PhizerProcess, size: str, name: str = "p.jpg") -> str | int:
    """ "red" or "blue", or the status when it is not 200."""
    response = http_get(process.port, f"/{size}/{name}")
    if response.status != 200:
        return response.status
    red, _green, blue = Image.open(io.BytesIO(response.body)).convert("RGB").getpixel((5, 5))
    return "red" if red > blue else "blue"


def every_size(process: PhizerProcess) -> list[str | int]:
    return [colour_at(process, size) for size in SIZES]


def replace(root: Path, data: bytes, name: str = "p.jpg") -> None:
    path = root / name
    path.write_bytes(data)
    later = path.stat().st_mtime_ns + 5_000_000_000  # never the old mtime
    os.utime(path, ns=(later, later))


def test_directory_origin_replaced_then_deleted(
    tmp_path: Path, started: list[PhizerProcess]
) -> None:
    photos = OriginServer(tmp_path / "photos")  # not served: a directory origin
    photos.add("p.jpg", RED)
    process = PhizerProcess(
        tmp_path / "phizer",
        photos,
        master_options={"directory": str(photos.root)},
        properties={"original_ttl": 1},
    )
    started.append(process.start())
    assert every_size(process) == ["red"] * 4
    replace(photos.root, BLUE)
    wait_until(
        lambda: every_size(process) == ["blue"] * 4, 10, lambda: f"still {every_size(process)}"
    )
    (photos.root / "p.jpg").unlink()
    wait_until(lambda: every_size(process) == [404] * 4, 10, lambda: f"{every_size(process)}")


def test_purge_shows_the_new_photo_at_once(tmp_path: Path, started: list[PhizerProcess]) -> None:
    with serving_origin(tmp_path / "origin", {"p.jpg": RED}) as origin:
        process = PhizerProcess(tmp_path / "phizer", origin)
        started.append(process.start())
        assert every_size(process) == ["red"] * 4
        replace(origin.root, BLUE)
        assert every_size(process) == ["red"] * 4  # cached, and no original_ttl
        answer = http_get(process.port, "/sq150/p.jpg", method="PURGE")
        assert answer.status == 200
        assert json.loads(answer.body)["front"]["finished"] == 4
        assert every_size(process) == ["blue"] * 4


def test_purge_on_one_host_reaches_the_other_through_redis(
    tmp_path: Path, started: list[PhizerProcess]
) -> None:
    with (
        serving_origin(tmp_path / "origin", {"p.jpg": RED}) as origin,
        running(redis_service(tmp_path / "redis")) as redis,
    ):
        hosts = []
        for name in ("a", "b"):
            host = PhizerProcess(tmp_path / name, origin, sections={"cache": {"shared": redis.url}})
            started.append(host.start())
            hosts.append(host)
        first, second = hosts
        assert every_size(first) == every_size(second) == ["red"] * 4
        replace(origin.root, BLUE)
        answer = json.loads(http_get(first.port, "/_purge/p.jpg", method="POST").body)
        assert answer["hosts"] == "told"
        assert every_size(first) == ["blue"] * 4
        # The other host heard of it: its memory and the shared store hold no red.
        wait_until(
            lambda: every_size(second) == ["blue"] * 4,
            1.0,
            lambda: f"the other host still serves {every_size(second)}",
        )


def test_one_command_purges_every_host_of_a_fleet_without_redis(
    tmp_path: Path, started: list[PhizerProcess]
) -> None:
    with serving_origin(tmp_path / "origin", {"p.jpg": RED}) as origin:
        hosts = [PhizerProcess(tmp_path / name, origin) for name in ("a", "b")]
        for host in hosts:
            started.append(host.start())
            assert every_size(host) == ["red"] * 4
        replace(origin.root, BLUE)
        args = ["-c", str(hosts[0].config_path), "--purge", "p.jpg"]
        for host in hosts:
            args += ["--purge-host", f"127.0.0.1:{host.port}"]
        result = run_cli(args)
        assert result.returncode == 0, result.stderr
        answers = [json.loads(line) for line in result.stdout.splitlines()]
        assert [answer["status"] for answer in answers] == [200, 200]
        assert [every_size(host) for host in hosts] == [["blue"] * 4] * 2
        refused = run_cli([*args[:4], "--purge-host", "127.0.0.1:9"])  # nobody there
        assert refused.returncode == 1
