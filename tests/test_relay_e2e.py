"""The real command passes a large original on without holding it whole in the front."""

from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path

from PIL import Image

from tests.e2e_support import HOST, PhizerProcess, serving_origin

MIB = 1024 * 1024
SIDE = 2900  # 8.4 MP of noise: a 24 MiB PNG


def _noise_png() -> bytes:
    image = Image.frombytes("RGB", (SIDE, SIDE), os.urandom(SIDE * SIDE * 3))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _slow_get(port: int, path: str) -> bytes:
    """A client on a slow link: a quarter MiB at a time, with pauses."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        received = bytearray()
        while chunk := sock.recv(256 * 1024):
            received += chunk
            time.sleep(0.002)
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return body


def test_front_memory_stays_flat_while_a_slow_client_takes_a_large_original(
    tmp_path: Path, started: list[PhizerProcess]
) -> None:
    original = _noise_png()
    assert len(original) > 20 * MIB
    with serving_origin(tmp_path / "origin", {"big.png": original}) as origin:
        phizer = PhizerProcess(
            tmp_path / "run",
            origin,
            num_workers=1,
            sizes={"s100": "100x100", "full": "3000x3000"},
            properties={"max_dimension": 3000, "max_source_bytes": "64M"},
        )
        started.append(phizer)
        phizer.start()
        front = phizer.child_pid("phizer-front")
        resident = _status_kib(front, "VmRSS")
        Path(f"/proc/{front}/clear_refs").write_text("5")  # VmHWM starts again from here
        body = _slow_get(phizer.port, "/full/big.png")
        assert body == original
        grew = (_status_kib(front, "VmHWM") - resident) * 1024
        # Buffered whole, the front would have grown by the original (24 MiB) at least.
        assert grew < 12 * MIB, f"the front grew by {grew / MIB:.1f} MiB"
