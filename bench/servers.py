"""Lifecycles of the processes the benchmark runs: nginx, thumbor and phizer.

Each server runs in the foreground in its own session, with its own config
in a temporary directory, on 127.0.0.1 only. ``stop()`` asks it to finish
(SIGTERM), then kills what is left of its process group, so nothing
outlives the benchmark even when thumbor's forking parent dies first.
Only the standard library is used here: the orchestrator imports this
module before it has a virtualenv to run in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The port picking of the end-to-end tests, from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.ports import free_port_block

HOST = "127.0.0.1"
BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
THUMBOR_VENV = BENCH / ".venv-thumbor"
PHIZER_VENV = BENCH / ".venv-phizer"
# The same phizer, converted to Pillow-SIMD by `python -m phizer.engine simd`.
PHIZER_SIMD_VENV = BENCH / ".venv-phizer-simd"
ENGINE_VENVS = {"stock": PHIZER_VENV, "simd": PHIZER_SIMD_VENV}
THUMBOR_REQUIREMENT = "thumbor==7.8.0"
READY_SECONDS = 30.0
STOP_SECONDS = 15.0
# Below the usual ephemeral range, so outgoing connections rarely hold them.
MIB = 1024 * 1024


# --------------------------------------------------------------------------
# Small helpers


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def http_get(port: int, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
    """Status and body of GET http://127.0.0.1:port/path; 0 when nothing answered."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def status_kib(pid: int, key: str) -> int | None:
    """A ``/proc/PID/status`` value in KiB (VmRSS, VmHWM), None once gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as listing:
                found += [int(child) for child in listing.read().split()]
    except OSError:
        pass
    return found


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as name:
            return name.read().strip()
    except OSError:
        return "?"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores) since boot."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def install(venv: Path, *packages: str) -> None:
    _pip(venv, *packages)


def _pip(venv: Path, *args: str) -> None:
    command = [str(venv / "bin" / "pip"), "install", "--quiet", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def package_version(venv: Path, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    result = subprocess.run(
        [str(venv_python(venv)), "-c", code], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "?"


# --------------------------------------------------------------------------
# Virtualenvs


def ensure_thumbor_venv() -> Path:
    """thumbor 7.x (and pycurl, which its HTTP loader prefers) in its own venv."""
    if not (THUMBOR_VENV / "bin" / "thumbor").exists():
        subprocess.run([sys.executable, "-m", "venv", str(THUMBOR_VENV)], check=True)
        _pip(THUMBOR_VENV, THUMBOR_REQUIREMENT, "pycurl")
    return THUMBOR_VENV


PHIZER_SOURCES = ("setup.py", "README.md", "LICENSE", "phizer")


def ensure_phizer_venv(
    pillow: str,
    ref: str | None = None,
    reinstall: bool = True,
    venv: Path = PHIZER_VENV,
    keep_engine: bool = False,
) -> str:
    """phizer built from the working tree (or commit ``ref``), with the bench's requirements.

    Pillow is pinned to ``pillow`` (thumbor's), so both servers and the
    in-process measurements decode and encode with the same libjpeg-turbo.
    The sources are copied first so the build leaves nothing in the
    repository. With ``keep_engine``, an existing venv only gets the new
    phizer (its Pillow-SIMD stays). Returns the sha256 of the sources built.
    """
    fresh = not (venv / "bin" / "phizer").exists()
    if not fresh and not reinstall:
        return "not rebuilt"
    if fresh:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    with tempfile.TemporaryDirectory(prefix="phizer-src-") as tmp:
        source = Path(tmp) / "phizer"
        _copy_sources(source, ref)
        digest = tree_digest(source)
        requirements = BENCH / "requirements.txt"
        extra = ["-r", str(requirements)] if requirements.exists() else ["numpy"]
        if fresh or not keep_engine:
            _pip(venv, f"Pillow=={pillow}", *extra, str(source))
        if not fresh:  # same version number, new code
            _pip(venv, "--force-reinstall", "--no-deps", str(source))
    return digest


def ensure_simd_venv(pillow: str, ref: str | None = None) -> str:
    """``ensure_phizer_venv`` in PHIZER_SIMD_VENV, then Pillow-SIMD by phizer's own
    command (once: it stays across rebuilds of phizer). Raises on a CPU without AVX2."""
    digest = ensure_phizer_venv(pillow, ref, venv=PHIZER_SIMD_VENV, keep_engine=True)
    if not engine(PHIZER_SIMD_VENV).startswith("Pillow-SIMD "):
        python = str(venv_python(PHIZER_SIMD_VENV))
        result = subprocess.run([python, "-m", "phizer.engine", "simd"], check=False)
        if result.returncode != 0:
            raise RuntimeError(f"python -m phizer.engine simd failed ({result.returncode})")
    return digest


def engine(venv: Path) -> str:
    """The engine line of phizer in ``venv`` (``Pillow-SIMD 12.1.1.post0, AVIF ...``)."""
    result = subprocess.run(
        [str(venv_python(venv)), "-m", "phizer.engine"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or f"? ({result.stderr.strip()})"


def tree_digest(root: Path) -> str:
    """sha256 over the relative paths and contents of every file under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _copy_sources(target: Path, ref: str | None) -> None:
    target.mkdir()
    if ref is None:
        for name in PHIZER_SOURCES:
            if (REPO / name).is_dir():
                ignore = shutil.ignore_patterns("__pycache__")
                shutil.copytree(REPO / name, target / name, ignore=ignore)
            else:
                shutil.copy2(REPO / name, target / name)
        return
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, *PHIZER_SOURCES],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)


def git_commit() -> dict[str, object]:
    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    return {
        "head": git("rev-parse", "HEAD"),
        "phizer_changed_files": git("status", "--short", "--", *PHIZER_SOURCES).splitlines(),
    }


# --------------------------------------------------------------------------
# A server process


@dataclass
class Process:
    """One foreground server started in its own session (its pid is its group)."""

    name: str
    command: Sequence[str]
    workdir: Path
    popen: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                list(self.command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, group_first: bool) -> int | None:
        """SIGTERM (to the group, or to the leader alone), then SIGKILL the group."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM, group_first)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(STOP_SECONDS)
        self._signal(signal.SIGKILL, True)  # whatever the leader left behind
        try:
            return self.popen.wait(STOP_SECONDS)
        finally:
            self.popen = None

    def _signal(self, signum: int, group: bool) -> None:
        assert self.popen is not None
        try:
            if group:
                os.killpg(self.popen.pid, signum)
            else:
                self.popen.send_signal(signum)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, without the readiness probes' access lines."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        kept = [line for line in text.splitlines() if "/_health" not in line]
        return "\n".join(kept[-lines:])

    def wait_ready(self, ready: Callable[[], bool]) -> None:
        if not wait_until(lambda: not self.alive() or ready(), READY_SECONDS, 0.1):
            raise RuntimeError(f"{self.name} not ready in {READY_SECONDS:.0f} s\n{self.log_tail()}")
        if not self.alive():
            raise RuntimeError(f"{self.name} exited at start\n{self.log_tail()}")


# --------------------------------------------------------------------------
# nginx: the origin


def nginx_prelude(tmp: Path) -> str:
    """A foreground nginx's settings up to inside ``http {``, files under ``tmp``."""
    temp_paths = "\n".join(
        f"  {kind}_temp_path {tmp}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 100000;
{temp_paths}"""


class Nginx:
    """nginx serving ``root`` on 127.0.0.1, access log off."""

    def __init__(self, root: Path, workdir: Path) -> None:
        self.root = root
        self.workdir = workdir / "nginx"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port_block(1)
        conf = self.workdir / "nginx.conf"
        conf.write_text(self._config())
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = Process(
            "nginx", [binary, "-p", str(self.workdir), "-c", str(conf)], self.workdir
        )

    def _config(self) -> str:
        return f"""{nginx_prelude(self.workdir)}
  sendfile on;
  tcp_nopush on;
  types {{ image/jpeg jpg jpeg; image/png png; }}
  default_type application/octet-stream;
  server {{
    listen {HOST}:{self.port};
    root {self.root};
  }}
}}
"""

    def start(self, probe: str) -> None:
        self.process.start()
        self.process.wait_ready(lambda: http_get(self.port, probe, 2.0)[0] == 200)

    def stop(self) -> None:
        self.process.stop(group_first=True)

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def version(self) -> str:
        result = subprocess.run(
            [self.process.command[0], "-v"], capture_output=True, text=True, check=False
        )
        return (result.stderr or result.stdout).strip().split("/")[-1]


# --------------------------------------------------------------------------
# The two resizers


@dataclass(frozen=True)
class Size:
    """``square``: the centre square scaled to width x width; otherwise fit inside."""

    code: str
    width: int
    height: int
    square: bool = False


# The four sizes both servers are configured with (phizer's `[sizes]`
# semantics: fit inside, or the centre square), JPEG quality 85.
SIZES = (
    Size("s120", 120, 120),
    Size("sq150", 150, 150, square=True),
    Size("s320", 320, 320),
    Size("s640", 640, 640),
)
QUALITY = 85


@dataclass(frozen=True)
class ServerOptions:
    """What a workload asks of a server, in the terms both understand."""

    result_cache: bool  # phizer's front cache / thumbor's result storage
    cache_bytes: int  # phizer's per-worker originals cache
    result_cache_bytes: int = 64 * MIB
    extra_properties: tuple[tuple[str, str], ...] = ()
    warm: bool = False  # the workload warms with Resizer.warm_path first


def fresh_dir(path: Path) -> Path:
    """``path`` as an empty directory, whatever an earlier run left there."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class Resizer:
    """What the orchestrator needs from phizer and thumbor alike."""

    name = ""
    port = 0
    process: Process

    def path(self, size: Size, origin_path: str) -> str:
        raise NotImplementedError

    def warm_path(self, origin_path: str) -> str:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        return [self.process.pid, *children(self.process.pid)]

    def memory(self) -> list[dict[str, object]]:
        """Peak and current RSS of every process of the server, while it runs."""
        return [
            {
                "pid": pid,
                "name": comm(pid),
                "peak_rss_mib": round((status_kib(pid, "VmHWM") or 0) / 1024, 1),
                "rss_mib": round((status_kib(pid, "VmRSS") or 0) / 1024, 1),
            }
            for pid in self.pids()
        ]


class Thumbor(Resizer):
    """thumbor 7 with the PIL engine, HTTP loader on nginx, file storage of originals.

    ``processes`` single-process thumbor instances behind an nginx balancer,
    as thumbor is deployed in production: with ``--processes=N`` the forked
    processes share one listening socket, and a client's keep-alive
    connections (all 16 of wrk's) stick to whichever process accepted them,
    so one process did all the work on one core. The balancer spreads the
    connections (least_conn) and keeps its own connections to the instances
    alive, a hop like phizer's front.
    """

    name = "thumbor"

    def __init__(
        self,
        workdir: Path,
        origin_port: int,
        sizes: Sequence[Size],
        quality: int,
        processes: int,
        options: ServerOptions,
    ) -> None:
        self.workdir = fresh_dir(workdir / "thumbor")
        self.origin = f"{HOST}:{origin_port}"
        self.port = free_port_block(processes + 1)
        self.instance_ports = [self.port + 1 + i for i in range(processes)]
        conf = self.workdir / "thumbor.conf"
        conf.write_text(self._config(quality, options))
        # The same storage directory for every instance, as with --processes.
        self.instances = [
            Process(
                f"thumbor-{number}",
                [
                    str(THUMBOR_VENV / "bin" / "thumbor"),
                    f"--ip={HOST}",
                    f"--port={port}",
                    f"--conf={conf}",
                    "--processes=1",
                    "--log-level=warning",
                ],
                self.workdir,
            )
            for number, port in enumerate(self.instance_ports, 1)
        ]
        balancer = self.workdir / "balancer"
        balancer.mkdir()
        (balancer / "nginx.conf").write_text(self._balancer_config(balancer))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = Process(
            "thumbor-balancer",
            [binary, "-p", str(balancer), "-c", str(balancer / "nginx.conf")],
            self.workdir,
        )

    def _balancer_config(self, tmp: Path) -> str:
        servers = "\n".join(f"    server {HOST}:{port};" for port in self.instance_ports)
        return f"""{nginx_prelude(tmp)}
  upstream thumbors {{
    least_conn;
{servers}
    keepalive 64;
  }}
  server {{
    listen {HOST}:{self.port};
    location / {{
      proxy_pass http://thumbors;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
      proxy_read_timeout 120s;
    }}
  }}
}}
"""

    def pids(self) -> list[int]:
        pids = [self.process.pid, *children(self.process.pid)]
        for instance in self.instances:
            pids += [instance.pid, *children(instance.pid)]
        return pids

    def _config(self, quality: int, options: ServerOptions) -> str:
        lines = [
            "ALLOW_UNSAFE_URL = True",
            "LOADER = 'thumbor.loaders.http_loader'",
            "HTTP_LOADER_CURL_ASYNC_HTTP_CLIENT = True",
            "HTTP_LOADER_MAX_CLIENTS = 100",
            # Originals are kept after their first fetch.
            "STORAGE = 'thumbor.storages.file_storage'",
            f"FILE_STORAGE_ROOT_PATH = {str(self.workdir / 'storage')!r}",
            "ENGINE = 'thumbor.engines.pil'",
            f"QUALITY = {quality}",
            # phizer writes baseline JPEGs; thumbor's default is progressive.
            "PROGRESSIVE_JPEG = False",
            # phizer applies EXIF orientation.
            "RESPECT_ORIENTATION = True",
            "AUTO_WEBP = False",
            "MAX_AGE = 86400",
        ]
        if options.result_cache:
            lines += [
                "RESULT_STORAGE = 'thumbor.result_storages.file_storage'",
                f"RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = {str(self.workdir / 'results')!r}",
                "RESULT_STORAGE_STORES_UNSAFE = True",
            ]
        else:
            lines.append("RESULT_STORAGE = None")
        return "\n".join(lines) + "\n"

    def path(self, size: Size, origin_path: str) -> str:
        fit = "" if size.square else "fit-in/"  # no smart: a centred crop
        return f"/unsafe/{fit}{size.width}x{size.height}/{self.origin}{origin_path}"

    def warm_path(self, origin_path: str) -> str:
        return f"/unsafe/fit-in/64x64/{self.origin}{origin_path}"

    def start(self) -> None:
        for instance, port in zip(self.instances, self.instance_ports, strict=True):
            instance.start()
            instance.wait_ready(lambda port=port: http_get(port, "/healthcheck", 2.0)[0] == 200)
        self.process.start()
        self.process.wait_ready(lambda: http_get(self.port, "/healthcheck", 2.0)[0] == 200)

    def stop(self) -> None:
        self.process.stop(group_first=True)
        for instance in self.instances:
            instance.stop(group_first=True)

    def version(self) -> str:
        return package_version(THUMBOR_VENV, "thumbor")


class Phizer(Resizer):
    """The real ``phizer -c`` command from the harness's venv, front + N workers."""

    name = "phizer"
    # The same warm-up request as thumbor's (fit in 64x64): it fetches the
    # original and, by phizer's design, leaves it in the decoded cache.
    WARM_SIZE = Size("w64", 64, 64)

    def __init__(
        self,
        workdir: Path,
        origin_port: int,
        sizes: Sequence[Size],
        quality: int,
        workers: int,
        options: ServerOptions,
        name: str = "phizer",
        venv: Path = PHIZER_VENV,
    ) -> None:
        self.name = name  # "phizer-simd" runs from PHIZER_SIMD_VENV
        self.workdir = fresh_dir(workdir / name)
        self.workers = workers
        self.options = options
        self.port = free_port_block(workers + 1)
        conf = self.workdir / "phizer.conf"
        conf.write_text(self._config(origin_port, sizes, quality))
        self.process = Process(name, [str(venv / "bin" / "phizer"), "-c", str(conf)], self.workdir)

    def _config(self, origin_port: int, sizes: Sequence[Size], quality: int) -> str:
        options = self.options
        properties = {
            "bind_host": HOST,
            "bind_port": str(self.port),
            "num_workers": str(self.workers),
            "image_quality": str(quality),
            "keep_alive": "true",
            "client_cache_size": str(options.cache_bytes),
            "resized_cache_size": str(options.result_cache_bytes if options.result_cache else 0),
            "max_source_bytes": str(256 * MIB),
            "log_level": "WARN",
            "log_level_worker": "WARN",
        }
        properties.update(dict(options.extra_properties))
        lines = ["[properties]", *(f"{key} = {value}" for key, value in properties.items())]
        lines += ["", "[master]", f"host = {HOST}", f"port = {origin_port}", "root = /"]
        lines += ["", "[sizes]"]
        # The warm-up size only where a workload uses it: phizer makes every
        # configured size of a photo it decodes.
        for size in (*sizes, *([self.WARM_SIZE] if self.options.warm else [])):
            kind = "square" if size.square else "max"
            lines.append(f"{size.code} = {size.width}x{size.height} {kind}")
        return "\n".join(lines) + "\n"

    def properties(self) -> dict[str, str]:
        text = (self.workdir / "phizer.conf").read_text()
        section = text.split("[properties]")[1].split("[master]")[0]
        pairs = (line.split(" = ", 1) for line in section.strip().splitlines())
        return {key: value for key, value in pairs}

    def path(self, size: Size, origin_path: str) -> str:
        return f"/{size.code}{origin_path}"

    def warm_path(self, origin_path: str) -> str:
        return self.path(self.WARM_SIZE, origin_path)

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(self._healthy)

    def _healthy(self) -> bool:
        status, body = http_get(self.port, "/_health", 2.0)
        if status != 200:
            return False
        try:
            return json.loads(body).get("status") == "ok"
        except ValueError:
            return False

    def stop(self) -> None:
        # The supervisor stops its children gracefully; the group kill is a backstop.
        self.process.stop(group_first=False)

    def metrics(self) -> str:
        return http_get(self.port, "/_metrics", 5.0)[1].decode(errors="replace")


# --------------------------------------------------------------------------
# py-spy on a running server: where its CPU time goes

# A sample is named by its innermost frame that matches a specific kind of
# work, else by its innermost frame that matches a general one (frames read
# "Class.function (file:line)", as py-spy's raw format writes them).
PROFILE_SPECIFIC = (
    ("decode", ("load (PIL/ImageFile.py", "draft (PIL/", "load_prepare", "_open (PIL/Png")),
    ("resize", ("resize (PIL/Image.py", "reduce (PIL/Image.py")),
    ("encode", ("_save (PIL/", "save (PIL/Image.py")),
    ("origin fetch", ("phizer/origins/", "curl_httpclient.py", "loaders/http_loader.py")),
)
PROFILE_GENERAL = (
    ("other Pillow", ("PIL/",)),
    ("HTTP, Tornado", ("tornado/",)),
    ("phizer", ("phizer/",)),
    ("thumbor", ("thumbor/",)),
)
PROFILE_KINDS = (*(kind for kind, _ in (*PROFILE_SPECIFIC, *PROFILE_GENERAL)), "other")


class Profiler:
    """``py-spy record`` on every process of a server for one measurement."""

    def __init__(self, server: Resizer, workdir: Path, rate: int = 200) -> None:
        self.binary = shutil.which("py-spy") or str(PHIZER_VENV / "bin" / "py-spy")
        self.workdir = workdir / "profile"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rate = rate
        self.targets = {pid: comm(pid) for pid in server.pids()}
        self.running: dict[int, subprocess.Popen[bytes]] = {}
        self.started = 0.0

    def start(self) -> None:
        for pid in self.targets:
            out = self.workdir / f"{pid}.txt"
            self.running[pid] = subprocess.Popen(
                [
                    self.binary,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(self.rate),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(out),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        self.started = time.monotonic()

    def stop(self) -> dict[str, dict[str, float]]:
        """Share of wall time each process spent in each kind of work."""
        seconds = time.monotonic() - self.started
        for spy in self.running.values():
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in self.running.values():
            try:
                spy.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        report = {}
        for pid, name in self.targets.items():
            samples = _categorise(self.workdir / f"{pid}.txt")
            if samples:
                possible = seconds * self.rate
                report[name] = {kind: round(n / possible, 3) for kind, n in samples.items()}
        return report


def _categorise(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return counts
    for line in lines:
        stack, _, number = line.rpartition(" ")
        if number.isdigit():
            kind = _kind(list(reversed(stack.split(";"))))
            counts[kind] = counts.get(kind, 0) + int(number)
    return counts


def _kind(frames: list[str]) -> str:
    for rules in (PROFILE_SPECIFIC, PROFILE_GENERAL):
        for frame in frames:
            for kind, patterns in rules:
                if any(pattern in frame for pattern in patterns):
                    return kind
    return "other"
