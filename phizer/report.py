"""``--check-config``: the resolved config as an operator wants to read it (over every layer)."""

from __future__ import annotations

from collections.abc import Iterable

from phizer import __version__
from phizer.config.loader import Config, Settings
from phizer.config.options import CACHE, PROPERTIES, human_bytes
from phizer.config.sizes import Constraint, SizeSpec
from phizer.engine.detect import detect
from phizer.imaging.qualities import quality_for
from phizer.process.service import listeners_for


def render(config: Config, path: str) -> str:
    settings = config.settings
    sections = [
        [f"phizer {__version__}: {path} is valid"],
        ["imaging engine", *_engine()],
        ["[properties]", *_properties(settings)],
        ["origins (the master first, then every slave at once)", *_origins(config)],
        ["sizes", *_sizes(config)],
        ["processes", *_processes(config)],
        ["caches", *_caches(settings)],
        ["cache tiers (the front's results, the workers' originals)", *_tiers(config)],
        ["warnings", *_indent(config.warnings or ["none"])],
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _properties(settings: Settings) -> list[str]:
    width = max(map(len, PROPERTIES))
    return [
        f"{name:<{width}} = {declaration.show(getattr(settings, name))}"
        for name, declaration in PROPERTIES.items()
    ]


def _origins(config: Config) -> list[str]:
    lines = []
    for origin in config.origins:
        lines.append(origin.describe())
        if origin.bucket is not None:
            # Imported here: only a bucket needs botocore to be described.
            from phizer.origins.s3 import describe_credentials

            lines.append(f"  {describe_credentials(origin)}")
    return _indent(lines)


def _sizes(config: Config) -> list[str]:
    specs = list(config.sizes.values())
    width = max(len(spec.code) for spec in specs)
    return _indent(
        f"{spec.code:<{width}}  {spec.width} x {spec.height} {spec.constraint.value}: "
        f"{describe_size(spec, config.settings)}"
        for spec in specs
    )


def describe_size(spec: SizeSpec, settings: Settings) -> str:
    w, h = spec.width, spec.height
    if max(w, h) >= settings.max_dimension:
        return f"the original, unresized (a side >= max_dimension {settings.max_dimension})"
    geometry = {
        Constraint.MAX: f"fit inside {w}x{h} keeping the aspect ratio",
        Constraint.SQUARE: f"the centre square, scaled to {w}x{h}",
        Constraint.PORTRAIT: f"height {h}, width cropped to at most {w}",
        Constraint.LANDSCAPE: f"width {w}, height cropped to at most {h}",
    }[spec.constraint]
    output = spec.output_format
    parts = [geometry, f"as {output}" if output else "in the source's format"]
    parts.append(_quality(spec, settings))
    if not spec.upscale:
        parts.append("never enlarged")
    if output in (None, "JPEG"):
        progressive = settings.progressive if spec.progressive is None else spec.progressive
        mode = "progressive" if progressive else "baseline"
        parts.append(f"{mode} JPEG" if output else f"JPEGs written {mode}")
    if spec.background is not None:
        red, green, blue = spec.background
        parts.append(f"background #{red:02x}{green:02x}{blue:02x}")
    return ", ".join(parts)


def _quality(spec: SizeSpec, settings: Settings) -> str:
    """The encoder quality as the pipeline picks it: ``quality=`` (on the JPEG
    scale) first, then the format's own setting, then ``image_quality``."""
    jpeg_scale = spec.quality if spec.quality is not None else settings.image_quality
    output = spec.output_format
    if output is None:
        return f"quality {jpeg_scale} on the JPEG scale"
    if output == "PNG":
        return "lossless"
    own = {"WEBP": settings.webp_quality, "AVIF": settings.avif_quality}.get(output)
    if spec.quality is None and own is not None:
        return f"quality {own}"
    return f"quality {quality_for(output, jpeg_scale)}"


def _processes(config: Config) -> list[str]:
    lines = []
    for index, listener in enumerate(listeners_for(config)):
        role = "front" if index == 0 else f"worker {index}"
        host = listener.host or "*"
        lines.append(f"{role:<10} {host}:{listener.port}")
    budget = PROPERTIES["origin_timeout"].show(config.settings.worker_timeout)
    lines.append(f"front-to-worker timeout {budget}")
    return _indent(lines)


def _caches(settings: Settings) -> list[str]:
    if settings.disable_cache:
        return _indent(["off (disable_cache = true)"])
    workers = settings.num_workers
    per_worker = (
        ("originals", settings.client_cache_size),
        ("decoded originals", settings.decoded_cache_size),
    )
    lines = [f"front, finished images: {human_bytes(settings.resized_cache_size)}"]
    for what, size in per_worker:
        lines.append(
            f"each worker, {what}: {human_bytes(size)} ({workers} workers: "
            f"{human_bytes(workers * size)})"
        )
    total = settings.resized_cache_size + workers * sum(size for _, size in per_worker)
    lines.append(f"at most {human_bytes(total)} of cached images in all")
    return _indent(lines)


def _tiers(config: Config) -> list[str]:
    cache = config.cache
    if config.settings.disable_cache:
        return _indent(["off (disable_cache = true)"])
    lines = []
    if cache.disk_cache_dir is not None:
        lines.append(f"disk: {cache.disk_cache_dir}, at most {human_bytes(cache.disk_cache_size)}")
    if cache.shared is not None:
        lines.append(
            f"shared: {cache.shared.describe()}, entries kept {cache.shared_ttl}s, "
            f"timeout {CACHE['shared_timeout'].show(cache.shared_timeout)}"
        )
    if not lines:
        return _indent(["none (memory only)"])
    lines.append(f"secret: {CACHE['secret'].show(cache.secret)}")
    return _indent(lines)


def _engine() -> list[str]:
    return _indent([detect().describe()])


def _indent(lines: Iterable[str]) -> list[str]:
    return [f"  {line}" for line in lines]
