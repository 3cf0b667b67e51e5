"""``python -m phizer.engine simd``: this environment's Pillow becomes Pillow-SIMD.

1. Refuse on a CPU without AVX2: the build below would not run on it.
2. Install the Debian packages the build needs (as root; otherwise name them).
3. Build a Pillow-SIMD wheel from source with ``CC="cc -mavx2"``, the flag
   Pillow-SIMD documents for its AVX2 code. Until the wheel is built,
   nothing in the environment changes.
4. Replace Pillow with it, then add ``pillow-avif-plugin`` when the build
   has no AVIF of its own (Pillow needs libavif 1.0, Debian 12 has 0.11).
5. Check, in a fresh interpreter, that PIL is now Pillow-SIMD.

Everything goes into the interpreter that runs this command
(``sys.executable -m pip``). pip knows Pillow-SIMD only as another
distribution: ``pip check`` reports phizer's ``Pillow`` requirement as
missing, and ``pip install phizer`` (or anything requiring Pillow) brings
stock Pillow back; run this command again after it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PILLOW_SIMD_VERSION = "12.1.1.post0"  # follows Pillow 12.1.1
AVIF_PLUGIN_REQUIREMENT = "pillow-avif-plugin>=1.5"
NO_AVX2 = 3  # exit status: this CPU cannot run the build

# Pillow's build dependencies on Debian and Ubuntu (JPEG, zlib, TIFF, WebP,
# Little CMS, FreeType, OpenJPEG) and what compiles them. libavif-dev is
# added when the release has libavif 1.0 or later (see avif_packages).
BUILD_PACKAGES = (
    "build-essential",
    "pkg-config",
    "libjpeg-dev",
    "zlib1g-dev",
    "libtiff-dev",
    "libwebp-dev",
    "liblcms2-dev",
    "libfreetype-dev",
    "libopenjp2-7-dev",
)

Runner = Callable[[Sequence[str], Mapping[str, str] | None], str]


class Refusal(Exception):
    """Why the conversion cannot go on; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def cpu_flags(cpuinfo: str) -> set[str]:
    """The union of every processor's ``flags`` in /proc/cpuinfo's text."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            flags.update(value.split())
    return flags


def require_avx2(cpuinfo_path: Path) -> None:
    try:
        text = cpuinfo_path.read_text()
    except OSError as err:
        raise Refusal(f"cannot read {cpuinfo_path} to look for AVX2: {err}", NO_AVX2) from None
    if "avx2" not in cpu_flags(text):
        raise Refusal(
            f"this CPU has no AVX2 (no avx2 among the flags in {cpuinfo_path}): "
            "Pillow-SIMD's AVX2 build would not run here; keep stock Pillow",
            NO_AVX2,
        )


def debian_version_at_least(version: str, major: int) -> bool:
    """Whether a Debian version (``1:2.1.5-2``, ``0.11.1-1+deb12u1``) has
    an upstream major version of at least ``major``."""
    upstream = version.split(":", 1)[-1]
    digits = upstream.split(".", 1)[0]
    return digits.isdigit() and int(digits) >= major


def apt_candidate(package: str) -> str | None:
    """The version apt would install, None when it has none."""
    result = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=False
    )
    for line in result.stdout.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate":
            value = value.strip()
            return None if value in ("", "(none)") else value
    return None


def avif_packages(candidate: Callable[[str], str | None]) -> list[str]:
    """libavif-dev when it is 1.0 or later: Pillow builds no AVIF with older ones."""
    version = candidate("libavif-dev")
    return ["libavif-dev"] if version and debian_version_at_least(version, 1) else []


def dpkg_installed(package: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return result.returncode == 0 and result.stdout.endswith(" installed")


def python_headers_package() -> str | None:
    """The Debian package with this interpreter's Python.h, None when it is there.

    Only a Debian-built interpreter (in /usr) gets its headers from a package.
    """
    include = Path(sysconfig.get_path("include"))
    if (include / "Python.h").exists():
        return None
    if sys.base_prefix != "/usr":
        raise Refusal(f"no Python.h in {include}: this interpreter cannot build extensions")
    return f"python{sys.version_info.major}.{sys.version_info.minor}-dev"


@dataclass(frozen=True)
class Plan:
    """What the conversion does; ``run`` carries it out or prints it."""

    python: str
    version: str
    missing: tuple[str, ...]  # Debian packages to install first
    compiler: str  # CC for the build

    def apt_commands(self) -> list[list[str]]:
        if not self.missing:
            return []
        return [
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", *self.missing],
        ]

    def build_command(self, wheel_dir: str) -> list[str]:
        # --no-cache-dir: pip would otherwise reuse a wheel it once built
        # from the same source without the AVX2 flag.
        return [
            *self.pip(),
            "wheel",
            "--no-deps",
            "--no-cache-dir",
            "--no-binary",
            "pillow-simd",
            "--wheel-dir",
            wheel_dir,
            f"pillow-simd=={self.version}",
        ]

    def swap_commands(self, wheel: str) -> list[list[str]]:
        return [
            [*self.pip(), "uninstall", "-y", "pillow", "pillow-simd"],
            [*self.pip(), "install", "--no-deps", "--no-index", wheel],
        ]

    def avif_command(self) -> list[str]:
        # --no-deps: nothing may pull stock Pillow back in.
        return [*self.pip(), "install", "--no-deps", AVIF_PLUGIN_REQUIREMENT]

    def pip(self) -> list[str]:
        return [self.python, "-m", "pip"]


def make_plan(
    version: str,
    debian: bool,
    root: bool,
    installed: Callable[[str], bool] = dpkg_installed,
    candidate: Callable[[str], str | None] = apt_candidate,
) -> Plan:
    """Refuses when build packages are missing and cannot be installed."""
    missing: list[str] = []
    headers = python_headers_package()
    if debian:
        wanted = [*BUILD_PACKAGES, *avif_packages(candidate)]
        if headers is not None:
            wanted.append(headers)
        missing = [package for package in wanted if not installed(package)]
        if missing and not root:
            raise Refusal(
                "the build needs Debian packages; as root: "
                f"apt-get install -y --no-install-recommends {' '.join(missing)}"
            )
    compiler = f"{os.environ.get('CC', 'cc')} -mavx2"
    return Plan(sys.executable, version, tuple(missing), compiler)


def run_command(argv: Sequence[str], extra_env: Mapping[str, str] | None = None) -> str:
    """Run ``argv``, its output going to the terminal as it comes; returns stdout."""
    print("+", show_command(argv, extra_env), flush=True)
    env = {**os.environ, **(extra_env or {})}
    output = []
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            output.append(line)
    sys.stdout.flush()
    if process.returncode != 0:
        raise Refusal(f"`{' '.join(argv[:4])} ...` failed with status {process.returncode}")
    return "".join(output)


# What phizer needs of the engine: the formats it reads and writes
# (AVIF is checked apart: a plugin may add it) and colour management.
REQUIRED_FEATURES = ("jpg", "zlib", "webp", "libtiff", "littlecms2")
PROBE = (
    "import json, PIL; from PIL import features; "
    "print(json.dumps({'version': PIL.__version__, "
    f"'missing': [f for f in {REQUIRED_FEATURES!r} if not features.check(f)], "
    "'avif': bool(features.check_module('avif'))}))"
)


@dataclass(frozen=True)
class Probed:
    version: str  # PIL.__version__
    missing: tuple[str, ...]  # of REQUIRED_FEATURES
    avif: bool  # built in


def probe(python: str, run: Runner, path: str | None = None) -> Probed:
    """What a fresh interpreter's PIL is (found first on ``path`` when given)."""
    output = run([python, "-c", PROBE], {"PYTHONPATH": path} if path else None)
    found = json.loads(output.strip().splitlines()[-1])
    return Probed(str(found["version"]), tuple(map(str, found["missing"])), bool(found["avif"]))


def convert(plan: Plan, run: Runner = run_command) -> None:
    """Carry out ``plan``; the environment changes only once the build is good."""
    for command in plan.apt_commands():
        run(command, {"DEBIAN_FRONTEND": "noninteractive"})
    with tempfile.TemporaryDirectory(prefix="phizer-simd-") as scratch:
        run(plan.build_command(scratch), {"CC": plan.compiler})
        wheels = sorted(Path(scratch).glob("pillow_simd-*.whl"))
        if len(wheels) != 1:
            raise Refusal(f"the build left {len(wheels)} Pillow-SIMD wheels, expected one")
        trial = str(Path(scratch) / "trial")
        run([*plan.pip(), "install", "--no-deps", "--target", trial, str(wheels[0])], None)
        built = probe(plan.python, run, trial)
        if built.version != plan.version:
            raise Refusal(f"the build is PIL {built.version}, not {plan.version}")
        if built.missing:
            raise Refusal(
                f"the build lacks {', '.join(built.missing)}: install the development "
                "packages of those libraries and run this again"
            )
        for command in plan.swap_commands(str(wheels[0])):
            run(command, None)
    installed = probe(plan.python, run)
    if installed.version != plan.version:
        raise Refusal(f"PIL is {installed.version} after the install, not {plan.version}")
    if not installed.avif:
        run(plan.avif_command(), None)


def dry_run(plan: Plan) -> None:
    """Print what ``convert`` would run."""
    steps = [(command, {"DEBIAN_FRONTEND": "noninteractive"}) for command in plan.apt_commands()]
    steps.append((plan.build_command("WHEELDIR"), {"CC": plan.compiler}))
    steps += [(command, {}) for command in plan.swap_commands("WHEELDIR/pillow_simd-*.whl")]
    for command, env in steps:
        print(show_command(command, env))
    print(f"# when the build has no AVIF of its own: {shlex.join(plan.avif_command())}")


def show_command(argv: Sequence[str], extra_env: Mapping[str, str] | None) -> str:
    """``argv`` as a shell would take it, its environment in front (the
    probe's code shortened: it is PROBE)."""
    assignments = [f"{key}={shlex.quote(value)}" for key, value in (extra_env or {}).items()]
    shown = [*argv[:2], "<features probe>"] if argv[1:2] == ["-c"] else argv
    return " ".join([*assignments, shlex.join(shown)])


def main(version: str, dry: bool, cpuinfo: Path = Path("/proc/cpuinfo")) -> int:
    try:
        require_avx2(cpuinfo)
        debian = shutil.which("dpkg-query") is not None and shutil.which("apt-get") is not None
        if not debian:
            print(
                "phizer.engine: not Debian: the build needs the headers of libjpeg, zlib, "
                "libtiff, libwebp, lcms2, freetype and openjpeg",
                flush=True,
            )
        plan = make_plan(version, debian, os.geteuid() == 0)
        if dry:
            dry_run(plan)
            return 0
        convert(plan)
        run_command([plan.python, "-m", "phizer.engine"])
    except Refusal as err:
        print(f"phizer.engine: {err}", file=sys.stderr)
        return err.status
    print(
        "phizer.engine: done. `pip check` now reports phizer's Pillow requirement as missing: "
        "Pillow-SIMD provides the same PIL under another name. Installing phizer again "
        "brings stock Pillow back; run this command again after it."
    )
    return 0
