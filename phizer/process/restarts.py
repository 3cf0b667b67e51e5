"""Restart counts per child, kept in memory the supervisor shares with its children.

The supervisor counts restarts; the front reports them in ``/_metrics``.
An anonymous shared mapping made before the fork is visible to both with
no extra channel between them.
"""

from __future__ import annotations

import mmap
import struct

# The front plus the largest allowed number of workers.
MAX_SLOTS = 257
_SLOT = struct.Struct("=Q")


class RestartBoard:
    def __init__(self, slots: int = MAX_SLOTS) -> None:
        self.slots = slots
        self._memory = mmap.mmap(-1, _SLOT.size * slots)

    def record(self, index: int) -> None:
        """Count one restart of child ``index`` (0 is the front); only the supervisor writes."""
        if 0 <= index < self.slots:
            offset = index * _SLOT.size
            (count,) = _SLOT.unpack_from(self._memory, offset)
            _SLOT.pack_into(self._memory, offset, count + 1)

    def count(self, index: int) -> int:
        if not 0 <= index < self.slots:
            return 0
        return _SLOT.unpack_from(self._memory, index * _SLOT.size)[0]

    def counts(self, children: int) -> list[int]:
        """Counts for the front and the first ``children - 1`` workers."""
        return [self.count(index) for index in range(children)]
