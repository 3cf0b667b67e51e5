"""What Pillow alone does with the benchmark's photos and sizes: the wall.

    python bench/pillow_wall.py [-n 20] [--png 8] [--processes 2] [--rounds 3]

Three pipelines, each on ``processes`` processes (multiprocessing), with
the originals already in memory as both servers have them:

- per request: for every (photo, size), open the bytes, decode (JPEGs with
  ``draft``: DCT scaling down to no less than twice the output size), one
  LANCZOS resize, encode (JPEG quality 85, optimize; PNG at Pillow's
  default level, as both servers do);
- per request, draft to 1x: the same, but DCT scaling down to the output
  size itself, as thumbor asks ``draft`` for (cheaper, and it aliases);
- per original: decode each photo once, at the scale its largest size
  needs (twice its size), then make every size from that.

No HTTP, no caches, no copies between processes: a server that decodes
once per request cannot beat the first number, one that decodes once per
original cannot beat the last. The module also holds the geometry of the
sizes, the full-decode LANCZOS reference and the SSIM the benchmark checks
outputs with (needs numpy and scikit-image, see bench/requirements.txt).
Run it inside bench/.venv-phizer (bench/perf.py builds it).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageOps
from servers import QUALITY, SIZES, Size

Box = tuple[float, float, float, float]
ORIENTATION_TAG = 0x0112
HEADROOM = 2.0  # LANCZOS always works from at least twice the output size


# --------------------------------------------------------------------------
# Geometry and pipelines


def plan(width: int, height: int, size: Size) -> tuple[Box, tuple[int, int]]:
    """Source box and output size of ``size`` on an upright ``width x height`` image."""
    if size.square:
        side = min(width, height)
        x, y = (width - side) / 2, (height - side) / 2
        return (x, y, x + side, y + side), (size.width, size.width)
    if size.width * height <= size.height * width:
        out = (size.width, max(1, height * size.width // width))
    else:
        out = (max(1, width * size.height // height), size.height)
    return (0.0, 0.0, float(width), float(height)), out


def _scale(box: Box, out: tuple[int, int]) -> float:
    return max(out[0] / (box[2] - box[0]), out[1] / (box[3] - box[1]))


def _orientation(image: Image.Image) -> int:
    value = image.getexif().get(ORIENTATION_TAG, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright_size(image: Image.Image, orientation: int) -> tuple[int, int]:
    width, height = image.size
    return (height, width) if orientation >= 5 else (width, height)


def _decode(image: Image.Image, orientation: int, factor: float) -> Image.Image:
    """Load (JPEGs reduced to no less than ``factor`` of full size), upright, RGB."""
    if image.format == "JPEG" and factor < 1.0:
        width, height = image.size
        image.draft(None, (math.ceil(width * factor), math.ceil(height * factor)))
    image.load()
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _resize(pixels: Image.Image, upright: tuple[int, int], box: Box, out: tuple[int, int]):
    fx, fy = pixels.width / upright[0], pixels.height / upright[1]
    scaled = (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
    return pixels.resize(out, Image.Resampling.LANCZOS, box=scaled)


def encode(image: Image.Image, image_format: str, quality: int = QUALITY) -> bytes:
    buffer = io.BytesIO()
    if image_format == "JPEG":
        image.save(buffer, "JPEG", quality=quality, optimize=True)
    else:
        image.save(buffer, image_format)
    return buffer.getvalue()


def render(data: bytes, size: Size, quality: int = QUALITY, headroom: float = HEADROOM) -> bytes:
    """One request: decode with draft, one LANCZOS resize, encode."""
    with Image.open(io.BytesIO(data)) as image:
        image_format = image.format or "JPEG"
        orientation = _orientation(image)
        upright = _upright_size(image, orientation)
        box, out = plan(*upright, size)
        pixels = _decode(image, orientation, min(1.0, _scale(box, out) * headroom))
    return encode(_resize(pixels, upright, box, out), image_format, quality)


def render_all(data: bytes, sizes: Sequence[Size], quality: int = QUALITY) -> list[bytes]:
    """One original: decoded once at the largest scale any size needs, then every size."""
    with Image.open(io.BytesIO(data)) as image:
        image_format = image.format or "JPEG"
        orientation = _orientation(image)
        upright = _upright_size(image, orientation)
        plans = [plan(*upright, size) for size in sizes]
        factor = min(1.0, max(_scale(box, out) for box, out in plans) * HEADROOM)
        pixels = _decode(image, orientation, factor)
    return [encode(_resize(pixels, upright, box, out), image_format, quality) for box, out in plans]


def decode_full(data: bytes) -> Image.Image:
    """The whole original, upright and RGB, without any DCT scaling."""
    with Image.open(io.BytesIO(data)) as image:
        return _decode(image, _orientation(image), 1.0)


def reference(full: Image.Image, size: Size) -> Image.Image:
    """A plain LANCZOS resize of the full decode, to the geometry of ``size``."""
    box, out = plan(full.width, full.height, size)
    return full.resize(out, Image.Resampling.LANCZOS, box=box)


# --------------------------------------------------------------------------
# SSIM: Wang et al. (2004) on BT.601 luma, measure.py's


def ssim(expected: Image.Image, actual: Image.Image) -> float:
    # Imported here: the wall itself needs neither numpy nor scikit-image.
    from measure import luma
    from measure import ssim as luma_ssim

    return luma_ssim(luma(expected), luma(actual))


# --------------------------------------------------------------------------
# The wall

_originals: list[bytes] = []


def default_signals() -> None:
    """Pool workers leave SIGTERM and SIGINT to the parent, which stops them."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _load(paths: Sequence[Path]) -> None:
    default_signals()
    _originals[:] = [path.read_bytes() for path in paths]


def _one_request(task: tuple[int, int, float]) -> int:
    render(_originals[task[0]], SIZES[task[1]], headroom=task[2])
    return 1


def _one_original(photo: int) -> int:
    return len(render_all(_originals[photo], SIZES))


@dataclass(frozen=True)
class Wall:
    pipeline: str
    image_format: str
    photos: int
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "images_per_second": round(self.images_per_second, 1),
            "originals_per_second": round(self.images_per_second / len(SIZES), 2),
        }


def measure(
    paths: Sequence[Path], image_format: str, processes: int = 2, rounds: int = 3, seed: int = 1
) -> list[Wall]:
    """Images per second of both pipelines on ``paths``, ``rounds`` passes each."""
    pairs = [(p, s) for p in range(len(paths)) for s in range(len(SIZES))] * rounds
    random.Random(seed).shuffle(pairs)
    originals = list(range(len(paths))) * rounds
    results = []
    with multiprocessing.get_context("fork").Pool(processes, _load, (list(paths),)) as pool:
        pool.map(_one_original, range(min(len(paths), processes)))  # imports, first decodes
        for name, function, tasks in (
            ("per request", _one_request, [(p, s, HEADROOM) for p, s in pairs]),
            ("per request, draft to 1x", _one_request, [(p, s, 1.0) for p, s in pairs]),
            ("per original", _one_original, originals),
        ):
            started = time.perf_counter()
            images = sum(pool.imap_unordered(function, tasks, chunksize=1))
            elapsed = time.perf_counter() - started
            results.append(Wall(name, image_format, len(paths), images, elapsed))
    return results


def png_copies(paths: Sequence[Path], folder: Path) -> list[Path]:
    """Lossless PNG versions of some corpus JPEGs (the packages ship no PNG photos)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for path in paths:
        target = folder / (path.stem + ".png")
        if not target.exists():
            partial = target.with_suffix(".partial")
            with Image.open(path) as image:
                image.convert("RGB").save(partial, "PNG")
            partial.rename(target)
        made.append(target)
    return made


def main() -> None:
    from corpus import corpus

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20, help="JPEG photos (default 20)")
    parser.add_argument("--png", type=int, default=8, help="PNG photos (default 8; 0: none)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the photos")
    args = parser.parse_args()
    photos = corpus(args.n)
    walls = measure(photos, "JPEG", args.processes, args.rounds)
    if args.png:
        pngs = png_copies(smallest(photos, args.png), Path(__file__).parent / ".cache" / "png")
        walls += measure(pngs, "PNG", args.processes, max(1, args.rounds // 2))
    print(json.dumps([wall.as_dict() for wall in walls], indent=1))


def smallest(paths: Sequence[Path], count: int) -> list[Path]:
    """The ``count`` photos with the fewest pixels (PNG photos are big), in corpus order."""

    def pixels(path: Path) -> int:
        with Image.open(path) as image:
            return image.width * image.height

    chosen = set(sorted(paths, key=pixels)[:count])
    return [path for path in paths if path in chosen]


if __name__ == "__main__":
    main()
