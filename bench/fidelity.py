"""Image fidelity and size of phizer's output, per format, on real photos.

Twenty photos (bench/corpus.py) at two [sizes] (320x320 and 1024x1024,
max): phizer's pipeline output is encoded as JPEG, WebP and AVIF at the
qualities phizer uses for each JPEG quality (phizer.qualities), and
compared by SSIM with a full-decode LANCZOS reference. Also checks the
fast decode path (JPEG draft + reducing_gap) alone against that reference.

    pip install -r bench/requirements.txt
    python bench/fidelity.py             # about 4 minutes on 2 cores

Prints Markdown. AVIF is encoded at phizer's speed (phizer.encoding.AVIF_SPEED),
and also at Pillow's default speed for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence

from corpus import photos
from measure import FORMATS, SIZES, Case, Sample, encode, load_cases, measure, size_spec

from phizer.imaging import pipeline as imaging
from phizer.imaging.encoding import AVIF_SPEED
from phizer.imaging.qualities import quality_for

FAST_PATH_MINIMUM = 0.98  # the requirement
PILLOW_AVIF_SPEED = 6


def fast_path(cases: list[Case]) -> None:
    print("## Fast path: draft decode + reducing_gap vs full decode\n")
    print("| photo | " + " | ".join(code for code, _ in SIZES) + " |")
    print("|---|" + "---:|" * len(SIZES))
    scores: dict[tuple[str, str], float] = {
        (case.photo, case.size): case.fast_path_ssim for case in cases
    }
    for photo in dict.fromkeys(case.photo for case in cases):
        cells = [f"{scores[photo, code]:.4f}" for code, _ in SIZES]
        print(f"| {photo} | " + " | ".join(cells) + " |")
    values = list(scores.values())
    worst = min(scores, key=scores.__getitem__)
    below = [key for key, value in scores.items() if value < FAST_PATH_MINIMUM]
    print(
        f"\nmean {statistics.fmean(values):.4f}, min {scores[worst]:.4f} "
        f"({worst[0]} at {worst[1]}); {len(below)} of {len(values)} below {FAST_PATH_MINIMUM}"
    )
    for key in below:
        print(
            f"- below: {key[0]} at {key[1]}: {scores[key]:.4f}, short by "
            f"{FAST_PATH_MINIMUM - scores[key]:.4f}"
        )
    print()


def formats(cases: list[Case], jpeg_qualities: Sequence[int], repeats: int) -> None:
    print("## Formats at the qualities phizer uses\n")
    print(
        "| JPEG q | format | quality | size | mean bytes | vs JPEG | mean SSIM | min SSIM "
        "| encode ms |"
    )
    print("|---:|---|---:|---|---:|---:|---:|---:|---:|")
    for jpeg_quality in jpeg_qualities:
        jpeg_bytes: dict[str, float] = {}
        for image_format in FORMATS:
            quality = quality_for(image_format, jpeg_quality)
            for code, _ in SIZES:
                samples = [
                    measure(case, image_format, quality, repeats)
                    for case in cases
                    if case.size == code
                ]
                mean_bytes = statistics.fmean(sample.size for sample in samples)
                jpeg_bytes.setdefault(code, mean_bytes)
                print(
                    f"| {jpeg_quality} | {image_format} | {quality} | {code} "
                    f"| {mean_bytes:,.0f} | {mean_bytes / jpeg_bytes[code]:.0%} "
                    + _ssim_cells(samples)
                    + f" | {1000 * statistics.fmean(s.encode_seconds for s in samples):.1f} |"
                )
    print()


def avif_speeds(cases: list[Case], jpeg_quality: int, repeats: int) -> None:
    quality = quality_for("AVIF", jpeg_quality)
    print(f"## AVIF speed at quality {quality} (JPEG {jpeg_quality})\n")
    print("| speed | size | mean bytes | mean SSIM | min SSIM | encode ms |")
    print("|---|---|---:|---:|---:|---:|")
    for speed, label in ((PILLOW_AVIF_SPEED, "Pillow default"), (AVIF_SPEED, "phizer")):
        for code, _ in SIZES:
            samples = [
                measure(case, "AVIF", quality, repeats, avif_speed=speed)
                for case in cases
                if case.size == code
            ]
            print(
                f"| {speed} ({label}) | {code} "
                f"| {statistics.fmean(sample.size for sample in samples):,.0f} "
                + _ssim_cells(samples)
                + f" | {1000 * statistics.fmean(s.encode_seconds for s in samples):.1f} |"
            )
    print()


def _ssim_cells(samples: list[Sample]) -> str:
    values = [sample.ssim for sample in samples]
    return f"| {statistics.fmean(values):.4f} | {min(values):.4f}"


def same_as_render(cases: list[Case], jpeg_quality: int) -> None:
    """Check the measured encodings are byte for byte what render() serves."""
    print("## Same bytes as imaging.render\n")
    probe = size_spec("probe", "320x320 format=webp")
    if imaging.render(cases[0].data, probe, None, imaging.OutputOptions()).content_type != (
        "image/webp"
    ):
        print("render() does not honour format= yet: encodings above use measure.encode.\n")
        return
    mismatches = []
    for case in cases:
        value = dict(SIZES)[case.size]
        for image_format in FORMATS:
            spec = size_spec(case.size, f"{value} format={image_format.lower()}")
            served = imaging.render(
                case.data, spec, None, imaging.OutputOptions(image_quality=jpeg_quality)
            ).data
            if served != encode(case.pixels, image_format, quality_for(image_format, jpeg_quality)):
                mismatches.append(f"{case.photo} {case.size} {image_format}")
    print(
        f"render() at quality {jpeg_quality}: {len(cases) * len(FORMATS) - len(mismatches)} "
        f"of {len(cases) * len(FORMATS)} outputs identical to the measured encoding"
        + "".join(f"\n- differs: {item}" for item in mismatches)
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20, help="photos (default 20)")
    parser.add_argument(
        "--jpeg",
        type=lambda text: tuple(int(part) for part in text.split(",")),
        default=(75, 85, 95),
        help="comma-separated JPEG qualities (default 75,85,95; 95 is image_quality's default)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="encodes timed, fastest kept")
    args = parser.parse_args()
    started = time.monotonic()
    load_at_start = os.getloadavg()[0]
    chosen = photos(args.n)
    print(f"# {len(chosen)} photos x {len(SIZES)} sizes\n")
    for photo in chosen:
        print(f"- {photo.package}: {photo.path.name} {photo.width}x{photo.height}")
    print()
    cases = load_cases(photo.path for photo in chosen)
    fast_path(cases)
    formats(cases, args.jpeg, args.repeats)
    avif_speeds(cases, max(args.jpeg), args.repeats)
    same_as_render(cases, max(args.jpeg))
    print(
        f"{time.monotonic() - started:.0f} s; 1-minute load average {load_at_start:.1f} at the "
        f"start, {os.getloadavg()[0]:.1f} at the end (encode times grow with it)"
    )


if __name__ == "__main__":
    main()
