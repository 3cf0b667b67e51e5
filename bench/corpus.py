"""Real photographs for the image benchmarks, taken from Debian wallpaper packages.

The packages are fetched with ``apt-get download`` (not installed) into
``bench/.corpus/`` and unpacked there with ``dpkg-deb -x``; nothing from
them is committed. Run ``apt-get update`` once first.

    python bench/corpus.py            # fetch if needed, list the 20 photos
    python bench/corpus.py -n 22      # every listed photo

From other scripts: ``from corpus import corpus; paths = corpus(20)``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

CACHE = Path(__file__).resolve().parent / ".corpus"
MIN_PIXELS = 2_000_000
_BACKGROUNDS = "usr/share/backgrounds"

# Chosen by looking at every JPEG in these packages: photographs only
# (gnome-backgrounds, ukui-wallpapers and sway-backgrounds hold only
# illustrations, renders or PNG/WebP/SVG files). Left
# out: renders and illustrations (umang, Infinite-Sea, Painting-Colors, Fossa,
# Elephants, GreenTraditional), a texture that may be generated
# (analogpattern) and photos under MIN_PIXELS (Picture_1A, Dune, FreshFlower,
# GreenMeadow). The first 20 are 2.5-20.4 MP; the last two, smaller, only
# serve callers that ask for more.
_LISTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "lomiri-wallpapers-16.04": (
        _BACKGROUNDS,
        (
            "Bridge_by_Sander_Klootwijk.jpg",
            "Dragonfly_by_Bolly.jpg",
            "Picture_0B_by_freespace.jpg",
            "Wine_by_Jakkub_Mede.jpg",
            "aitzgorri_by_Aitzol_Berasategi.jpg",
            "free_by_Peter_Nerlich.jpg",
            "friends_by_Aitzol_Berasategi.jpg",
            "greentock_by_Peter_Nerlich.jpg",
            "life_by_Aitzol_Berasategi.jpg",
            "picosdeeuropa_by_Aitzol_Berasategi.jpg",
            "seeding_by_Clements_Engelhardt.jpg",
            "sunset_by_Aitzol_Berasategi.jpg",
        ),
    ),
    "lomiri-wallpapers-20.04": (_BACKGROUNDS, ("Kleiber_by_Lukas_Baubkus.jpg",)),
    "mate-backgrounds": (
        f"{_BACKGROUNDS}/mate/nature",
        (
            "Aqua.jpg",
            "Garden.jpg",
            "LadyBird.jpg",
            "TwoWings.jpg",
            "Wood.jpg",
            "YellowFlower.jpg",
            "Storm.jpg",
            "Blinds.jpg",
            "RainDrops.jpg",
        ),
    ),
}
# (package, path inside it), in the order corpus() takes them.
PHOTOS: tuple[tuple[str, str], ...] = tuple(
    (package, f"{folder}/{name}") for package, (folder, names) in _LISTED.items() for name in names
)
PACKAGES: tuple[str, ...] = tuple(dict.fromkeys(package for package, _ in PHOTOS))


@dataclass(frozen=True)
class Photo:
    package: str
    path: Path
    width: int
    height: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def corpus(n: int = 20, cache: Path = CACHE) -> list[Path]:
    """Paths of the first ``n`` listed photos, fetching the packages if needed."""
    return [photo.path for photo in photos(n, cache)]


def photos(n: int = 20, cache: Path = CACHE) -> list[Photo]:
    """The first ``n`` listed photos that are present, JPEG and at least MIN_PIXELS."""
    roots = {package: unpacked(package, cache) for package in PACKAGES}
    found: list[Photo] = []
    for package, relative in PHOTOS:
        photo = _check(package, roots[package] / relative)
        if photo is not None:
            found.append(photo)
        if len(found) == n:
            return found
    raise SystemExit(f"corpus: asked for {n} photos, only {len(found)} available")


def unpacked(package: str, cache: Path = CACHE) -> Path:
    """The package's files under ``cache``, downloading and unpacking it once."""
    root = cache / "root" / package
    if root.is_dir():
        return root
    deb = _download(package, cache / "debs")
    partial = root.with_name(package + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
    partial.rename(root)  # only a complete extraction counts as cached
    return root


def _download(package: str, debs: Path) -> Path:
    debs.mkdir(parents=True, exist_ok=True)
    existing = sorted(debs.glob(f"{package}_*.deb"))
    if not existing:
        result = subprocess.run(
            ["apt-get", "download", package], cwd=debs, capture_output=True, text=True
        )
        existing = sorted(debs.glob(f"{package}_*.deb"))
        if result.returncode != 0 or not existing:
            raise SystemExit(
                f"corpus: apt-get download {package} failed (run apt-get update first?)\n"
                + result.stderr.strip()
            )
    return existing[-1]


def _check(package: str, path: Path) -> Photo | None:
    if not path.is_file():
        print(f"corpus: missing {package}:{path.name}, skipped", file=sys.stderr)
        return None
    with Image.open(path) as image:
        if image.format != "JPEG" or image.width * image.height < MIN_PIXELS:
            print(f"corpus: {path.name} is not a JPEG of >= 2 MP, skipped", file=sys.stderr)
            return None
        return Photo(package, path, image.width, image.height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20, help="how many photos (default 20)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="download directory")
    args = parser.parse_args()
    for photo in photos(args.n, args.cache):
        print(
            f"{photo.package:24} {photo.path.name:40} "
            f"{photo.width:5}x{photo.height:<5} {photo.megapixels:5.1f} MP"
        )
    for deb in sorted((args.cache / "debs").glob("*.deb")):
        print(f"# from {deb.name}")


if __name__ == "__main__":
    main()
