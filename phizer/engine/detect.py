"""Which engine provides ``PIL`` here, its version, and where AVIF comes from.

Pillow and Pillow-SIMD install the same ``PIL`` package under two
distribution names (``pillow``, ``pillow-simd``); the one whose recorded
version is the running ``PIL.__version__`` is the engine. AVIF is either
built in (Pillow 11.2+ linked to libavif 1.0+) or comes from the
``pillow-avif-plugin`` package, which registers the same ``AVIF`` format.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import PIL
from PIL import features

PILLOW = "Pillow"
PILLOW_SIMD = "Pillow-SIMD"
AVIF_PLUGIN = "pillow-avif-plugin"
_DISTRIBUTIONS = {"pillow": PILLOW, "pillow-simd": PILLOW_SIMD}


@dataclass(frozen=True)
class Engine:
    name: str  # PILLOW or PILLOW_SIMD
    version: str  # PIL.__version__
    avif: str | None  # "native", AVIF_PLUGIN + " <version>", or None: no AVIF

    @property
    def avif_source(self) -> str:
        """``native``, ``pillow-avif-plugin`` or ``no``."""
        if self.avif is None:
            return "no"
        return self.avif.split()[0]

    def describe(self) -> str:
        """``Pillow-SIMD 12.1.1.post0, AVIF via pillow-avif-plugin 1.6.0``."""
        if self.avif is None:
            avif = "no AVIF"
        elif self.avif == "native":
            avif = "AVIF built in"
        else:
            avif = f"AVIF via {self.avif}"
        return f"{self.name} {self.version}, {avif}"


def engine_name(installed: Mapping[str, str], version: str) -> str:
    """The engine among ``installed`` (distribution name -> version) that
    provides PIL ``version``.

    Both may be recorded at once (pip installs stock Pillow over
    Pillow-SIMD when a requirement asks for it, leaving the other's record
    behind); the version tells which one's files are in place. Pillow-SIMD
    versions are Pillow's with a ``.postN`` suffix, the fallback when the
    records are missing.
    """
    for distribution, name in _DISTRIBUTIONS.items():
        if installed.get(distribution) == version:
            return name
    return PILLOW_SIMD if ".post" in version else PILLOW


def installed_versions() -> dict[str, str]:
    """Versions of the recorded distributions that may provide PIL."""
    versions = {}
    for distribution in _DISTRIBUTIONS:
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def native_avif() -> bool:
    try:
        return bool(features.check_module("avif"))
    except ValueError:  # a Pillow older than its AVIF support
        return False


def avif_plugin_version() -> str | None:
    """The installed ``pillow-avif-plugin`` version, None without it."""
    if importlib.util.find_spec("pillow_avif") is None:
        return None
    try:
        return importlib.metadata.version(AVIF_PLUGIN)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


@cache
def enable_avif() -> str | None:
    """Make AVIF readable and writable; where it comes from (``Engine.avif``).

    The plugin is imported only when the engine has no AVIF of its own:
    it would otherwise replace the native codec.
    """
    if native_avif():
        return "native"
    version = avif_plugin_version()
    if version is None:
        return None
    importlib.import_module("pillow_avif")
    return f"{AVIF_PLUGIN} {version}"


@cache
def detect() -> Engine:
    """The engine of this interpreter (AVIF enabled as phizer uses it)."""
    version = PIL.__version__
    return Engine(engine_name(installed_versions(), version), version, enable_avif())
