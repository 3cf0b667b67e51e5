"""The disk tier: one file per entry, bounded, crash-safe, shared by processes.

Layout: ``DIR/<kind>/<bucket>/<key>``, kinds ``results`` (the front) and
``originals`` (the workers), 16 buckets by the key's last hex digit. Every
process of a host may use the same directory.

- **No torn entries.** An entry is written to a temporary file in its
  bucket and renamed over the final name, which is atomic: a reader (or a
  restart after ``kill -9``) sees the old file, the new one, or none. No
  fsync: a kill cannot lose written pages, and after a power cut a file
  whose data never reached the disk fails its checksum.
- **Checked.** A header carries the payload's length, write time and
  BLAKE2b digest; a file that does not match is absent and is deleted.
- **Bounded without a startup scan.** Keys are uniform hashes, so each
  bucket gets 1/16 of ``disk_cache_size``. A process counts what it writes
  per bucket; on its first write to a bucket, when its count would pass
  the bucket's share, or once it alone has written 5% of that share, it
  scans that one bucket (1/16 of the files, in the tier's thread, never
  on a request's path) and deletes the least recently used files (oldest
  mtime; a hit touches its file) until the bucket is at 95% of its share.
  Startup reads nothing, however large the directory. Processes that do
  not see each other's writes between scans overshoot by at most 5% of
  the size each.
- **Several processes.** Renames are atomic, deleting a file another
  process is reading leaves that reader its open copy, and a file that
  disappears between listing and reading is a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Callable

from phizer.tiers.base import Offloaded

RESULTS = "results"
ORIGINALS = "originals"
KINDS = (RESULTS, ORIGINALS)
BUCKETS = 16
LOW_WATER = 0.95
# No entry takes more than this share of its bucket.
MAX_ENTRY_SHARE = 0.5
TEMP_PREFIX = ".tmp-"
# Older temporary files are left by a killed process; live writes take
# well under a second.
TEMP_MAX_AGE = 300.0
READ_THREADS = 4
# Writes (and the scans that evict) one at a time per process.
WRITE_THREADS = 1
MAGIC = b"PZD1"
# magic, payload length, write time (Unix seconds), BLAKE2b-128 of the payload
HEADER = struct.Struct(">4sQd16s")
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,200}[0-9a-f]$")


def checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


def pack_entry(payload: bytes, written: float) -> bytes:
    return HEADER.pack(MAGIC, len(payload), written, checksum(payload)) + payload


def unpack_entry(blob: bytes) -> tuple[bytes, float] | None:
    """(payload, write time), or None for anything torn or damaged."""
    if len(blob) < HEADER.size:
        return None
    magic, length, written, digest = HEADER.unpack_from(blob)
    payload = blob[HEADER.size :]
    if magic != MAGIC or length != len(payload) or checksum(payload) != digest:
        return None
    return payload, written


class DiskTier(Offloaded):
    name = "disk"

    def __init__(
        self,
        root: str,
        kind: str,
        capacity: int,
        ttl: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown disk cache kind {kind!r}")
        super().__init__("phizer-disk", READ_THREADS, WRITE_THREADS)
        self.root = root
        self.kind = kind
        self.description = f"disk cache {root}"
        self.bucket_capacity = capacity // BUCKETS
        self.max_value: int | None = max(
            0, int(self.bucket_capacity * MAX_ENTRY_SHARE) - HEADER.size
        )
        self.ttl = ttl
        self.clock = clock
        self.evictions = 0
        self.discarded = 0  # damaged or expired entries deleted
        self._lock = threading.Lock()
        # Per bucket: bytes at the last scan plus this process's writes since,
        # and those writes alone.
        self._bucket_bytes: dict[str, int] = {}
        self._unscanned: dict[str, int] = {}

    # -- the Tier interface (blocking work in the tier's threads)
    async def get(self, key: str) -> bytes | None:
        return await self.call(self.read, key)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return await self.call(self.read_many, keys)

    async def put(self, key: str, value: bytes) -> None:
        await self.call(self.write, key, value, write=True)

    # -- blocking implementation
    def read(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            with open(path, "rb") as handle:
                blob = handle.read()
        except FileNotFoundError:
            return None
        entry = unpack_entry(blob)
        if entry is None or self._expired(entry[1]):
            self._discard(path)
            return None
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)  # recency for every process's eviction
        return entry[0]

    def read_many(self, keys: list[str]) -> list[bytes | None]:
        return [self.read(key) for key in keys]

    def write(self, key: str, value: bytes) -> None:
        path = self._path(key)
        directory = os.path.dirname(path)
        try:
            fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        blob = pack_entry(value, self.clock())
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        self._account(key[-1], len(blob))

    def _path(self, key: str) -> str:
        if not _KEY.match(key):
            raise ValueError(f"not a tier key: {key!r}")
        return os.path.join(self.root, self.kind, key[-1], key)

    def _expired(self, written: float) -> bool:
        return self.ttl > 0 and self.clock() - written > self.ttl

    def _discard(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with self._lock:
            self.discarded += 1

    def _account(self, bucket: str, size: int) -> None:
        """Rescan the bucket on the first write to it, when it would pass
        its share, or after this process alone wrote the slack (5%) of it:
        the last bound how far writers that do not see each other's files
        can overshoot together."""
        with self._lock:
            known = self._bucket_bytes.get(bucket)
            unseen = self._unscanned.get(bucket, 0) + size
            slack = self.bucket_capacity * (1 - LOW_WATER)
            if known is not None and known + size <= self.bucket_capacity and unseen <= slack:
                self._bucket_bytes[bucket] = known + size
                self._unscanned[bucket] = unseen
                return
        total = self.trim(bucket)
        with self._lock:
            self._bucket_bytes[bucket] = total
            self._unscanned[bucket] = 0

    def trim(self, bucket: str) -> int:
        """Scan one bucket (every kind), evict the least recently used files
        while it is over its share; returns the bytes it then holds."""
        now = time.time()
        entries: list[tuple[float, int, str]] = []
        for kind in KINDS:
            entries.extend(_scan(os.path.join(self.root, kind, bucket), now))
        total = sum(size for _, size, _ in entries)
        if total <= self.bucket_capacity:
            return total
        target = int(self.bucket_capacity * LOW_WATER)
        evicted = 0
        for _, size, path in sorted(entries):
            if total <= target:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            total -= size
            evicted += 1
        with self._lock:
            self.evictions += evicted
        return total


def _scan(directory: str, now: float) -> list[tuple[float, int, str]]:
    """(mtime, size, path) of each entry; stale temporary files are deleted."""
    found: list[tuple[float, int, str]] = []
    try:
        listing = os.scandir(directory)
    except FileNotFoundError:
        return found
    with listing:
        for item in listing:
            try:
                info = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # evicted or replaced by another process meanwhile
            if not stat.S_ISREG(info.st_mode):
                continue
            if item.name.startswith(TEMP_PREFIX):
                if now - info.st_mtime > TEMP_MAX_AGE:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(item.path)
                continue
            found.append((info.st_mtime, info.st_size, item.path))
    return found
