"""Measurements shared by fidelity.py and calibrate.py.

For each photo and size: the pixels phizer's pipeline produces before
encoding (draft decode + ``reducing_gap``), a reference made the slow way
(full decode, plain LANCZOS, RGB), then encoded sizes and SSIM. Encoding
is phizer's own (``phizer.encoding``), AVIF at its ``AVIF_SPEED``.

SSIM is scikit-image's ``structural_similarity`` with the parameters of
Wang et al. (2004): 11x11 Gaussian window of sigma 1.5, K1 0.01, K2 0.03,
population covariances, on BT.601 luma (float, 0-255).

Needs numpy and scikit-image: ``pip install -r bench/requirements.txt``.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from skimage.metrics import structural_similarity

from phizer.config.sizes import SizeSpec, parse_size_spec
from phizer.imaging import encoding
from phizer.imaging import pipeline as imaging
from phizer.imaging.geometry import plan_resize

# As they would be written under [sizes] (code = value).
SIZES: tuple[tuple[str, str], ...] = (("s320", "320x320"), ("s1024", "1024x1024"))
FORMATS = ("JPEG", "WEBP", "AVIF")
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class Case:
    """One photo at one size."""

    photo: str
    size: str
    data: bytes
    pixels: Image.Image  # phizer's output before encoding
    reference: np.ndarray  # luma of the full-decode resize

    @property
    def fast_path_ssim(self) -> float:
        return ssim(self.reference, luma(self.pixels))


@dataclass(frozen=True)
class Sample:
    """One encoding of one case."""

    size: int
    ssim: float
    encode_seconds: float


def size_spec(code: str, value: str) -> SizeSpec:
    """A size parsed as phizer parses ``[sizes]`` (``value`` may carry ``format=``)."""
    spec, warnings = parse_size_spec(code, value)
    if warnings:
        raise ValueError(f"{code} = {value}: {warnings}")
    return spec


def load_cases(paths: Iterable[Path]) -> list[Case]:
    cases = []
    for path in paths:
        data = path.read_bytes()
        for code, value in SIZES:
            spec = size_spec(code, value)
            pixels = pipeline_pixels(data, spec)
            cases.append(Case(path.name, code, data, pixels, luma(reference(data, spec))))
    return cases


def pipeline_pixels(data: bytes, spec: SizeSpec) -> Image.Image:
    """What ``imaging.render`` produces before encoding: its PNG output (lossless)."""
    png = size_spec(spec.code, f"{spec.width}x{spec.height} format=png")
    rendered = imaging.render(data, png, None, imaging.OutputOptions())
    if rendered.content_type != "image/png":
        raise RuntimeError("imaging.render ignored format=png")
    return Image.open(io.BytesIO(rendered.data)).convert("RGB")


def reference(data: bytes, spec: SizeSpec) -> Image.Image:
    """Full decode, upright, RGB, one plain LANCZOS resize to phizer's geometry."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        upright = ImageOps.exif_transpose(image).convert("RGB")
    plan = plan_resize(upright.width, upright.height, spec)
    return upright.resize(plan.size, Image.Resampling.LANCZOS, box=plan.box)


def luma(image: Image.Image) -> np.ndarray:
    """BT.601 luma in floats, so no rounding enters the comparison."""
    return np.asarray(image.convert("RGB"), dtype=np.float64) @ _LUMA


def ssim(expected: np.ndarray, actual: np.ndarray) -> float:
    return float(
        structural_similarity(
            expected,
            actual,
            data_range=255.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            K1=0.01,
            K2=0.03,
        )
    )


def encode(
    image: Image.Image, image_format: str, quality: int, avif_speed: int | None = None
) -> bytes:
    """Encode as phizer does, with ``quality`` given to the encoder as is.

    ``avif_speed`` replaces phizer's AVIF speed, to compare settings.
    """
    options = encoding.EncodeOptions(quality=quality)
    if avif_speed is None:
        return encoding.encode(image, image_format, options)
    params = encoding.encoder_params(image_format, options) | {"speed": avif_speed}
    buffer = io.BytesIO()
    encoding.writable(image, image_format, options.background).save(buffer, image_format, **params)
    return buffer.getvalue()


def measure(
    case: Case,
    image_format: str,
    quality: int,
    repeats: int = 1,
    avif_speed: int | None = None,
) -> Sample:
    """Encode ``case`` (the fastest of ``repeats`` runs is timed) and compare."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        data = encode(case.pixels, image_format, quality, avif_speed)
        best = min(best, time.perf_counter() - started)
    decoded = Image.open(io.BytesIO(data))
    return Sample(len(data), ssim(case.reference, luma(decoded)), best)
