"""Side buffers of remote reads that cast (the stored rows land here before the cast into the batch): anonymous
memory maps, so that a freed buffer goes back to the system at once instead of staying in the C allocator's
per-thread arenas, and reused within one read, so that a new piece does not fault in fresh pages."""

import mmap
import threading
import weakref
from contextlib import contextmanager
from typing import Iterator, List, Optional

import numpy as np

MAPPED_BYTES = 256 * 1024  # smaller buffers come from the allocator: what it keeps of them is small
MAX_IDLE = 4  # buffers a read keeps between pieces ...
MAX_IDLE_BYTES = 64 * 2**20  # ... and their bytes at most (the newest are kept)
SLACK = 8  # a kept buffer serves a request of at least 1/SLACK less, so the budget's count stays within 1/SLACK
HUGE_PAGE = 2 * 2**20  # buffers from this size on are advised into huge pages (Linux)
HUGE_PAGE_ADVICE: Optional[int] = getattr(mmap, "MADV_HUGEPAGE", None)
# POSIX: mmap's default is a shared map; Windows has no flags, and its anonymous maps are private already
PRIVATE_MAP = {"flags": mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS} if hasattr(mmap, "MAP_PRIVATE") else {}


class ScratchPool:
    """Thread-safe idle buffers of one read: taken by a piece, given back after its cast."""

    def __init__(self) -> None:
        self._idle: List[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> np.ndarray:
        """A uint8 buffer of exactly `nbytes`: a view of a kept one no more than 1/SLACK larger, else a new one."""
        with self._lock:
            fits = [k for k, buffer in enumerate(self._idle) if nbytes <= buffer.nbytes <= nbytes + nbytes // SLACK]
            if fits:
                return self._idle.pop(min(fits, key=lambda k: self._idle[k].nbytes))[:nbytes]
        return allocate(nbytes)

    def give(self, buffer: np.ndarray) -> None:
        """Keep a buffer for the next piece; the oldest kept ones are dropped beyond MAX_IDLE or MAX_IDLE_BYTES."""
        whole = buffer.base if isinstance(buffer.base, np.ndarray) else buffer
        if whole.nbytes < MAPPED_BYTES:
            return
        with self._lock:
            self._idle.append(whole)
            del self._idle[: max(0, len(self._idle) - MAX_IDLE)]
            while sum(kept.nbytes for kept in self._idle) > MAX_IDLE_BYTES:
                del self._idle[0]


def allocate(nbytes: int) -> np.ndarray:
    """A new uint8 buffer: a private anonymous map from MAPPED_BYTES on (unmapped when the last view goes), in huge
    pages where the system offers them. mmap's default, a shared map, is shared memory: small pages only, whose first
    touches cost several times more."""
    if nbytes < MAPPED_BYTES:
        return np.empty(nbytes, dtype=np.uint8)
    mapped = mmap.mmap(-1, nbytes, **PRIVATE_MAP)
    if nbytes >= HUGE_PAGE and HUGE_PAGE_ADVICE is not None:
        mapped.madvise(HUGE_PAGE_ADVICE)
    return np.frombuffer(mapped, dtype=np.uint8)


_POOLS: "weakref.WeakKeyDictionary[object, ScratchPool]" = weakref.WeakKeyDictionary()
_POOLS_LOCK = threading.Lock()


def pool_of(read: object) -> ScratchPool:
    """The pool of one read, named by an object that lives as long as it (the pipeline's cancel event): the
    buffers go with it."""
    with _POOLS_LOCK:
        pool = _POOLS.get(read)
        if pool is None:
            pool = _POOLS[read] = ScratchPool()
        return pool


@contextmanager
def side_buffer(nbytes: int, read: Optional[object]) -> Iterator[np.ndarray]:
    """A uint8 buffer of `nbytes` for the block; given back to the read's pool only if the block succeeds (after a
    failure a cancelled request may still be writing into it)."""
    pool = None if read is None else pool_of(read)
    buffer = allocate(nbytes) if pool is None else pool.take(nbytes)
    yield buffer
    if pool is not None:
        pool.give(buffer)
