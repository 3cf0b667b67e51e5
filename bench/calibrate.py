"""Calibrate WebP and AVIF qualities against JPEG qualities on real photos.

For each JPEG quality, finds the smallest WebP and AVIF quality whose mean
SSIM over the corpus (20 photos x 2 sizes, against the full-decode
reference) is at least JPEG's, and shows the bytes at that point. The
result is the EQUIVALENT_QUALITY table of phizer/qualities.py.

    pip install -r bench/requirements.txt
    python bench/calibrate.py            # about 8 minutes on 2 cores

AVIF is encoded at phizer's speed (phizer.encoding.AVIF_SPEED).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from corpus import corpus
from measure import Case, load_cases, measure

from phizer.imaging.encoding import AVIF_SPEED

JPEG_QUALITIES = (10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 100)


@dataclass(frozen=True)
class Point:
    """Means over the corpus for one format at one quality."""

    quality: int
    ssim: float
    size: float


class Curves:
    """Mean SSIM and bytes per (format, quality), each measured once."""

    def __init__(self, cases: list[Case], deadline: float) -> None:
        self.cases = cases
        self.deadline = deadline
        self.points: dict[tuple[str, int], Point] = {}

    def at(self, image_format: str, quality: int) -> Point:
        key = (image_format, quality)
        if key not in self.points:
            if time.monotonic() > self.deadline:
                raise SystemExit("calibrate: time limit reached; rerun with a larger --limit")
            samples = [measure(case, image_format, quality) for case in self.cases]
            self.points[key] = Point(
                quality,
                sum(sample.ssim for sample in samples) / len(samples),
                sum(sample.size for sample in samples) / len(samples),
            )
        return self.points[key]

    def smallest_reaching(self, image_format: str, target: float) -> Point | None:
        """The lowest quality whose mean SSIM reaches ``target`` (bisection:
        mean SSIM rises with quality), or None if even 100 falls short."""
        if self.at(image_format, 100).ssim < target:
            return None
        low, high = 1, 100
        while low < high:
            middle = (low + high) // 2
            if self.at(image_format, middle).ssim >= target:
                high = middle
            else:
                low = middle + 1
        return self.at(image_format, low)


def calibrate(curves: Curves, jpeg_qualities: tuple[int, ...]) -> list[tuple[Point, ...]]:
    rows = []
    for jpeg_quality in jpeg_qualities:
        jpeg = curves.at("JPEG", jpeg_quality)
        row = [jpeg]
        for image_format in ("WEBP", "AVIF"):
            found = curves.smallest_reaching(image_format, jpeg.ssim)
            row.append(found if found is not None else curves.at(image_format, 100))
        rows.append(tuple(row))
        print(f"calibrate: JPEG {jpeg_quality} done", file=sys.stderr)
    return rows


def monotonic(rows: list[tuple[Point, ...]]) -> list[tuple[int, int, int]]:
    """Table rows, each column made non-decreasing (measurement noise can
    put a higher JPEG quality one step below its neighbour)."""
    table: list[tuple[int, int, int]] = []
    for jpeg, webp, avif in rows:
        previous = table[-1] if table else (0, 1, 1)
        table.append((jpeg.quality, max(webp.quality, previous[1]), max(avif.quality, previous[2])))
    return table


def report(rows: list[tuple[Point, ...]], curves: Curves) -> None:
    print(
        "| JPEG q | SSIM | bytes | WebP q | SSIM | bytes (vs JPEG) "
        "| AVIF q | SSIM | bytes (vs JPEG) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for jpeg, webp, avif in rows:
        cells = [f"{jpeg.quality}", f"{jpeg.ssim:.4f}", f"{jpeg.size:,.0f}"]
        for point in (webp, avif):
            short = "" if point.ssim >= jpeg.ssim else " (not reached)"
            cells += [
                f"{point.quality}{short}",
                f"{point.ssim:.4f}",
                f"{point.size:,.0f} ({point.size / jpeg.size:.0%})",
            ]
        print("| " + " | ".join(cells) + " |")
    print("\nEQUIVALENT_QUALITY rows (jpeg_q, webp_q, avif_q):")
    for row in monotonic(rows):
        print(f"    {row},")
    print("\nPoints measured (format quality mean-SSIM mean-bytes):")
    for (image_format, _), point in sorted(curves.points.items()):
        print(f"  {image_format:4} {point.quality:3} {point.ssim:.4f} {point.size:9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20, help="photos (default 20)")
    parser.add_argument("--limit", type=float, default=1800, help="seconds before giving up")
    parser.add_argument(
        "--jpeg",
        type=lambda text: tuple(int(part) for part in text.split(",")),
        default=JPEG_QUALITIES,
        help="comma-separated JPEG qualities",
    )
    args = parser.parse_args()
    started = time.monotonic()
    cases = load_cases(corpus(args.n))
    curves = Curves(cases, started + args.limit)
    rows = calibrate(curves, args.jpeg)
    print(f"{args.n} photos x 2 sizes = {len(cases)} cases; AVIF speed {AVIF_SPEED}\n")
    report(rows, curves)
    print(f"\n{time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
