"""The imaging engine: naming it, and turning an environment into Pillow-SIMD.

The conversion is run with a recording runner in place of pip and apt-get;
the real build is what .ci/run does in a venv of its own.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import PIL
import pytest
from PIL import Image

from phizer.engine import simd
from phizer.engine.detect import PILLOW, PILLOW_SIMD, Engine, detect, engine_name
from phizer.engine.simd import NO_AVX2, Plan, Refusal, convert, make_plan

CPU = """processor\t: {n}
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 sse4_1 sse4_2 avx {extra}
bugs\t\t: spectre_v1

"""
WITH_AVX2 = CPU.format(n=0, extra="avx2 bmi2") + CPU.format(n=1, extra="avx2 bmi2")
WITHOUT_AVX2 = CPU.format(n=0, extra="avx512_vnni") + CPU.format(n=1, extra="")


# --------------------------------------------------------------------------
# Naming the engine


@pytest.mark.parametrize(
    ("installed", "version", "expected"),
    [
        ({"pillow": "13.0.0"}, "13.0.0", PILLOW),
        ({"pillow-simd": "12.1.1.post0"}, "12.1.1.post0", PILLOW_SIMD),
        # stock Pillow installed over Pillow-SIMD: its files are the ones in place
        ({"pillow": "13.0.0", "pillow-simd": "12.1.1.post0"}, "13.0.0", PILLOW),
        ({"pillow": "13.0.0", "pillow-simd": "12.1.1.post0"}, "12.1.1.post0", PILLOW_SIMD),
        # no record at all: Pillow-SIMD's versions are Pillow's plus .postN
        ({}, "9.5.0.post2", PILLOW_SIMD),
        ({}, "11.3.0", PILLOW),
    ],
)
def test_engine_name(installed: dict[str, str], version: str, expected: str) -> None:
    assert engine_name(installed, version) == expected


@pytest.mark.parametrize(
    ("avif", "source", "said"),
    [
        ("native", "native", "AVIF built in"),
        ("pillow-avif-plugin 1.6.0", "pillow-avif-plugin", "AVIF via pillow-avif-plugin 1.6.0"),
        (None, "no", "no AVIF"),
    ],
)
def test_engine_description(avif: str | None, source: str, said: str) -> None:
    engine = Engine(PILLOW_SIMD, "12.1.1.post0", avif)
    assert engine.describe() == f"Pillow-SIMD 12.1.1.post0, {said}"
    assert engine.avif_source == source


def test_this_engine_reads_and_writes_avif() -> None:
    import phizer.imaging.formats  # noqa: F401  (enables AVIF where a plugin provides it)

    engine = detect()
    assert engine.version == PIL.__version__
    assert engine.avif is not None, engine.describe()
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, "AVIF", quality=80)
    image = Image.open(io.BytesIO(buffer.getvalue()), formats=["AVIF"])
    assert (image.format, image.size) == ("AVIF", (64, 48))
    red, green, blue = image.convert("RGB").getpixel((32, 24))
    assert red > 150 and green < 80 and blue < 80


def test_show_prints_the_engine() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "phizer.engine"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{detect().name} {PIL.__version__}, ")


# --------------------------------------------------------------------------
# The CPU


def test_cpu_flags_are_read_from_every_processor() -> None:
    flags = simd.cpu_flags(WITH_AVX2)
    assert {"avx2", "sse4_2", "bmi2"} <= flags
    assert "spectre_v1" not in flags  # a bug, not a flag


def test_a_cpu_without_avx2_is_refused(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(WITHOUT_AVX2)  # avx512_vnni is not avx2
    with pytest.raises(Refusal) as refused:
        simd.require_avx2(cpuinfo)
    assert refused.value.status == NO_AVX2
    cpuinfo.write_text(WITH_AVX2)
    simd.require_avx2(cpuinfo)


def test_the_command_refuses_without_avx2_in_one_line(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(WITHOUT_AVX2)
    command = [sys.executable, "-m", "phizer.engine", "simd", "--dry-run", "--cpuinfo"]
    result = subprocess.run([*command, str(cpuinfo)], capture_output=True, text=True, timeout=60)
    assert result.returncode == NO_AVX2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "AVX2" in lines[0], result.stderr


def test_an_unreadable_cpuinfo_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Refusal) as refused:
        simd.require_avx2(tmp_path / "missing")
    assert refused.value.status == NO_AVX2


# --------------------------------------------------------------------------
# Build packages


@pytest.mark.parametrize(
    ("version", "major", "expected"),
    [
        ("0.11.1-1+deb12u1", 1, False),  # Debian 12's libavif: too old for Pillow
        ("1.2.1-1.2", 1, True),
        ("1:2.1.5-2", 2, True),  # an epoch is not the major version
        ("1:2.1.5-2", 3, False),
        ("", 1, False),
    ],
)
def test_debian_versions(version: str, major: int, expected: bool) -> None:
    assert simd.debian_version_at_least(version, major) is expected


def test_libavif_dev_only_when_pillow_can_use_it() -> None:
    assert simd.avif_packages(lambda name: "0.11.1-1+deb12u1") == []
    assert simd.avif_packages(lambda name: "1.2.1-1.2") == ["libavif-dev"]
    assert simd.avif_packages(lambda name: None) == []


def test_missing_packages_are_named_when_not_root() -> None:
    installed = {"build-essential", "pkg-config", "libjpeg-dev", "zlib1g-dev"}
    with pytest.raises(Refusal) as refused:
        make_plan("12.1.1.post0", True, False, installed.__contains__, lambda name: None)
    message = str(refused.value)
    assert "apt-get install" in message and "libwebp-dev" in message
    assert "libjpeg-dev" not in message
    assert len(message.splitlines()) == 1


def test_root_installs_what_is_missing_and_nothing_more() -> None:
    plan = make_plan("12.1.1.post0", True, True, lambda name: name != "libwebp-dev")
    assert plan.apt_commands()[-1][-1:] == ["libwebp-dev"]
    assert make_plan("12.1.1.post0", True, True, lambda name: True).apt_commands() == []


def test_outside_debian_nothing_is_asked_of_apt() -> None:
    def unreachable(name: str) -> bool:
        raise AssertionError("dpkg asked outside Debian")

    plan = make_plan("12.1.1.post0", False, False, unreachable)
    assert plan.apt_commands() == []


# --------------------------------------------------------------------------
# The conversion, with pip and apt-get recorded instead of run


class Recorder:
    """Stands in for ``run_command``: records each command, makes the wheel
    a build would leave, answers the probes as ``built`` and ``installed``."""

    def __init__(
        self, built: dict[str, object], installed: dict[str, object], fail: str | None = None
    ) -> None:
        self.commands: list[tuple[list[str], dict[str, str]]] = []
        self.built, self.installed, self.fail = built, installed, fail

    def __call__(self, argv: Sequence[str], env: Mapping[str, str] | None) -> str:
        argv, env = list(argv), dict(env or {})
        self.commands.append((argv, env))
        if self.fail is not None and self.fail in argv:
            raise Refusal(f"{self.fail} failed")
        if "wheel" in argv:
            wheel_dir = Path(argv[argv.index("--wheel-dir") + 1])
            (wheel_dir / "pillow_simd-12.1.1.post0-cp311-cp311-linux_x86_64.whl").touch()
        if argv[1:2] == ["-c"]:
            return json.dumps(self.built if "PYTHONPATH" in env else self.installed) + "\n"
        return ""

    def index(self, word: str) -> int:
        """Where the first command with ``word`` is in the sequence (-1: none)."""
        for at, (argv, _) in enumerate(self.commands):
            if word in argv:
                return at
        return -1


PLAN = Plan(sys.executable, "12.1.1.post0", ("libwebp-dev",), "cc -mavx2")
GOOD = {"version": "12.1.1.post0", "missing": [], "avif": False}


def test_conversion_builds_first_then_swaps_then_adds_avif() -> None:
    run = Recorder(GOOD, GOOD)
    convert(PLAN, run)
    apt = run.commands[1][0]
    assert apt[:2] == ["apt-get", "install"] and apt[-1] == "libwebp-dev"
    build, _ = run.commands[run.index("wheel")]
    assert build[:3] == [sys.executable, "-m", "pip"]  # this interpreter's environment
    assert "pillow-simd==12.1.1.post0" in build and "--no-cache-dir" in build
    assert run.commands[run.index("wheel")][1]["CC"] == "cc -mavx2"
    assert run.index("wheel") < run.index("uninstall") < run.index("--no-index")
    uninstall, _ = run.commands[run.index("uninstall")]
    assert "pillow" in uninstall
    plugin, _ = run.commands[-1]
    assert plugin[-1].startswith("pillow-avif-plugin") and "--no-deps" in plugin


def test_no_plugin_when_the_build_has_avif() -> None:
    native = {**GOOD, "avif": True}
    run = Recorder(native, native)
    convert(PLAN, run)
    assert not any("pillow-avif-plugin" in " ".join(argv) for argv, _ in run.commands)


@pytest.mark.parametrize(
    ("built", "fail"),
    [
        (GOOD, "wheel"),  # the build fails
        ({**GOOD, "missing": ["webp", "littlecms2"]}, None),  # built without libraries
        ({**GOOD, "version": "11.3.0.post0"}, None),  # another version than asked
    ],
)
def test_a_bad_build_leaves_pillow_in_place(built: dict[str, object], fail: str | None) -> None:
    run = Recorder(built, GOOD, fail)
    with pytest.raises(Refusal):
        convert(PLAN, run)
    assert run.index("uninstall") == -1


def test_an_install_that_does_not_take_is_reported() -> None:
    run = Recorder(GOOD, {**GOOD, "version": "13.0.0"})  # e.g. another PIL first on the path
    with pytest.raises(Refusal) as refused:
        convert(PLAN, run)
    assert "13.0.0" in str(refused.value)
