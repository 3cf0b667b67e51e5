"""Container structure read before any decoder runs: work refused up front.

A decoder's cost grows with what a file's structure asks of it, not only
with its pixels: every scan of a progressive JPEG is a pass over all its
coefficients, and Pillow reads every PNG chunk, JPEG marker segment and
GIF block in Python. These walks count them from the bytes, stop as soon
as a bound is passed, and never decode anything. A file they cannot
follow is left to the decoder, which says what is wrong with it.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from itertools import islice

from phizer.errors import TooComplex

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SOS = 0xDA
_EOI = 0xD9
# Start-of-frame markers: 0xC0-0xCF but DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length: TEM and RST0-7.
_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))
# In entropy-coded data 0xFF is followed by 0x00 (stuffing) or a restart marker.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")
# Searched by the regex engine: three times faster than bytes.count here.
_SOS_PAIR = re.compile(rb"\xff\xda")


@dataclass(frozen=True)
class DecodeLimits:
    """What one original's structure may ask of the decoders."""

    max_jpeg_scans: int = 64  # typical progressive JPEGs have about 10
    max_chunks: int = 10_000  # PNG chunks, JPEG marker segments, GIF blocks


DEFAULT_LIMITS = DecodeLimits()


def check_structure(data: bytes, limits: DecodeLimits) -> None:
    """Refuse (``TooComplex``) a JPEG, PNG or GIF over ``limits``."""
    if data.startswith(b"\xff\xd8"):
        jpeg_scans(data, limits)
    elif data.startswith(PNG_SIGNATURE):
        png_chunks(data, limits.max_chunks)
    elif data.startswith((b"GIF87a", b"GIF89a")):
        gif_frames(data, 1, limits.max_chunks)


def jpeg_scans(data: bytes, limits: DecodeLimits) -> int:
    """The scans (SOS markers) of the first image, or an upper bound of
    them within ``max_jpeg_scans``; ``TooComplex`` past the limits.

    A baseline JPEG whose first scan holds every component has only that
    one (libjpeg refuses a second). Otherwise, when the SOS byte pairs left
    in the whole file are few enough, that count is the answer (a scan's
    entropy-coded data never holds one); else every scan is found by
    skipping its entropy-coded data.
    """
    pos, end = 2, len(data)
    segments = scans = components = 0
    progressive = False
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return scans  # damaged: the decoder will say so
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _EOI:
            return scans
        if marker in _STANDALONE:
            pos += 2
            continue
        segments += 1
        if segments > limits.max_chunks:
            raise TooComplex(f"JPEG has more than {limits.max_chunks} marker segments")
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF_MARKERS and pos + 9 < end:
            progressive = marker in (0xC2, 0xC6, 0xCA, 0xCE)
            components = data[pos + 9]
        pos += 2 + length
        if marker != _SOS:
            continue
        scans += 1
        if scans > limits.max_jpeg_scans:
            raise TooComplex(f"JPEG has more than {limits.max_jpeg_scans} scans")
        if scans == 1:
            in_scan = data[pos - length + 2] if length >= 3 else 0
            if not progressive and in_scan >= components:
                return scans
            room = limits.max_jpeg_scans - scans
            left = sum(1 for _ in islice(_SOS_PAIR.finditer(data, pos), room + 1))
            if left <= room:
                return scans + left
        found = _NEXT_MARKER.search(data, pos)
        if found is None:
            return scans
        pos = found.start()
    return scans


def png_chunks(data: bytes, max_chunks: int) -> int:
    """The chunks up to IEND, counted up to ``max_chunks``."""
    pos, end, chunks = len(PNG_SIGNATURE), len(data), 0
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        chunks += 1
        if chunks > max_chunks:
            raise TooComplex(f"PNG has more than {max_chunks} chunks")
        if kind == b"IEND":
            break
        pos += 12 + length
    return chunks


def gif_frames(data: bytes, wanted: int, max_blocks: int) -> int:
    """The GIF's frames, counted up to ``wanted`` (at least 1), its blocks
    (extensions and frames) up to ``max_blocks``; frames past ``wanted``
    are never looked at."""
    end = len(data)
    if end < 13:
        return 1
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = blocks = 0
    while pos < end:
        introducer = data[pos]
        if introducer not in (0x21, 0x2C):
            break  # the trailer, or damage
        blocks += 1
        if blocks > max_blocks:
            raise TooComplex(f"GIF has more than {max_blocks} blocks")
        if introducer == 0x21:
            pos = _skip_sub_blocks(data, pos + 2)
            continue
        frames += 1
        if frames >= wanted or pos + 10 > end:
            break
        local = data[pos + 9]
        pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
        pos = _skip_sub_blocks(data, pos + 1)  # after the LZW code size
    return max(frames, 1)


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    end = len(data)
    while pos < end:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            break
    return pos
