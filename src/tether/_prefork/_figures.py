"""The pre-fork master's figures, shared with its workers for `/metrics`.

The master has no event loop and no server of its own: it writes how many workers it
wants and has serving, how many it respawned and how many reloads it began into a few
bytes of memory mapped before the first fork, shared with every worker it forks. A
worker's `/metrics` reads them from there, so whichever worker a scrape reaches reports
its master too.
"""

from __future__ import annotations

import mmap
import struct

__all__ = ["MasterFigures", "master_figures", "set_master_figures", "worker_number"]

_SEQUENCE = struct.Struct("=q")
_COUNTERS = struct.Struct("=qqqq")
_RETRIES = 100


class MasterFigures:
    """Four counters in anonymous shared memory: written by the master, read by workers.

    A sequence number before them, odd while the master writes, lets a reader retry
    instead of seeing a half-written set (a seqlock: the writer never waits).
    """

    __slots__ = ("_memory",)

    def __init__(self) -> None:
        # MAP_SHARED and anonymous: the children forked after this see every write.
        self._memory = mmap.mmap(-1, _SEQUENCE.size + _COUNTERS.size)

    def write(self, *, desired: int, serving: int, respawns: int, reloads: int) -> None:
        """The master's figures now (the master calls this after each change)."""
        memory = self._memory
        (sequence,) = _SEQUENCE.unpack_from(memory, 0)
        _SEQUENCE.pack_into(memory, 0, sequence + 1)
        _COUNTERS.pack_into(memory, _SEQUENCE.size, desired, serving, respawns, reloads)
        _SEQUENCE.pack_into(memory, 0, sequence + 2)

    def read(self) -> tuple[int, int, int, int]:
        """The figures as `(desired, serving, respawns, reloads)`.

        Workers wanted, workers ready and not stopping, workers forked again after one
        died or was killed, and reloads begun.
        """
        memory = self._memory
        counters = (0, 0, 0, 0)
        for _ in range(_RETRIES):
            (before,) = _SEQUENCE.unpack_from(memory, 0)
            counters = _COUNTERS.unpack_from(memory, _SEQUENCE.size)
            (after,) = _SEQUENCE.unpack_from(memory, 0)
            if before == after and not before % 2:
                break
        desired, serving, respawns, reloads = counters
        return desired, serving, respawns, reloads

    def close(self) -> None:
        """Unmap the memory (the master, once its workers are gone)."""
        self._memory.close()


class _Process:
    """What this process knows of its pre-fork master (set in a worker after the fork)."""

    figures: MasterFigures | None = None
    worker: int | None = None


def set_master_figures(figures: MasterFigures | None, worker: int | None = None) -> None:
    """Make `figures` this worker's view of its master, `worker` its number (after the fork)."""
    _Process.figures = figures
    _Process.worker = worker


def master_figures() -> MasterFigures | None:
    """The figures of this process's pre-fork master; None outside a worker."""
    return _Process.figures


def worker_number() -> int | None:
    """This pre-fork worker's number (as in the logs: `worker 3`); None outside a worker.

    Each worker forked gets the next number, a respawned or reloaded one too.
    """
    return _Process.worker
