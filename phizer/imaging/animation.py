"""Animated sources: counting their frames and decoding them composited."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from phizer.imaging.formats import ANIMATED_SOURCES
from phizer.imaging.structure import gif_frames

# A GIF without a loop count plays once; other formats default to forever.
_PLAY_ONCE = None
# Longest frame kept, in milliseconds (about a minute), and the largest loop
# count GIF and WebP can store.
MAX_FRAME_MS = 65_535
MAX_LOOP = 65_535


@dataclass(frozen=True)
class Animation:
    """Frames ready to encode, each shown for ``durations[i]`` milliseconds.

    ``loop`` is the source's loop count (0: forever), or None for a GIF
    that plays once.
    """

    frames: list[Image.Image]
    durations: list[int]
    loop: int | None


def frame_count(image: Image.Image, max_frames: int, data: bytes, max_blocks: int) -> int:
    """Frames an animated source would give (1 for a still), from its headers.

    A GIF's frames are counted from its blocks, and only up to
    ``max_frames`` (Pillow would read every frame to count them); the
    other formats state their frame count.
    """
    if image.format == "GIF":
        return gif_frames(data, max_frames, max_blocks)
    if image.format not in ANIMATED_SOURCES or not getattr(image, "is_animated", False):
        return 1
    return max(1, min(int(getattr(image, "n_frames", 1)), max_frames))


def decode_animation(
    image: Image.Image, count: int, prepare: Callable[[Image.Image], Image.Image]
) -> Animation:
    """Decode the first ``count`` frames as full RGBA canvases, then ``prepare`` each.

    Each frame is converted after seeking, when Pillow has composited it
    with the previous ones as its disposal method says, so partial GIF
    frames come out whole.
    """
    loop = image.info.get("loop", _PLAY_ONCE if image.format == "GIF" else 0)
    canvas = image.size
    frames: list[Image.Image] = []
    durations: list[int] = []
    for index in range(count):
        image.seek(index)
        frame = image.convert("RGBA")
        if frame.size != canvas:  # a GIF frame reaching past the screen
            frame = frame.crop((0, 0, *canvas))
        durations.append(_duration(image.info.get("duration")))
        frames.append(prepare(frame))
    if all(frame.getchannel("A").getextrema()[0] == 255 for frame in frames):
        frames = [frame.convert("RGB") for frame in frames]
    if isinstance(loop, int):
        loop = max(0, min(loop, MAX_LOOP))
    return Animation(frames, durations, loop if isinstance(loop, int) else _PLAY_ONCE)


def _duration(value: object) -> int:
    # Capped so a damaged source cannot overflow the encoders' timestamps.
    if isinstance(value, (int, float)) and value > 0:
        return min(round(value), MAX_FRAME_MS)
    return 0
