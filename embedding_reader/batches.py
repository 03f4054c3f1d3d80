"""Batch assembly: one preallocated array per batch, filled in place by the pieces, plus its metadata."""

import sys
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Protocol, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from .casts import cast_into
from .errors import InconsistentCollectionError
from .pieces import Piece

PAGE = 4096  # batch arrays start on a page: a local read into them is never an aliased copy (storage/local.py)
PLACEMENT_BYTES_PER_ROW = 56  # a reordered batch's arrays: its order, places, runs (24 bytes a run at most), index
PLACE_BLOCK_BYTES = 2**20  # a shuffled read casts a piece's rows a block this size at a time, still cached when placed


def page_aligned(buffer: np.ndarray, nbytes: int) -> np.ndarray:
    """`nbytes` of a uint8 buffer (of at least nbytes + PAGE) from its first page boundary on."""
    skip = -buffer.ctypes.data % PAGE
    return buffer[skip : skip + nbytes]


class ArrayPool:
    """Hands out batch arrays, reusing one the caller has dropped instead of allocating fresh memory.

    A fresh array's pages are faulted in and zeroed by the kernel on first write, which costs about a
    third of a local read's speed. Arrays start on a page boundary (a page more is allocated). An array is
    reused only when nothing but this pool refers to it (every numpy view, memoryview or DataFrame made
    from it holds a reference), so a batch the caller keeps is never overwritten. Otherwise arrays come from
    np.empty, whose pages the operating system commits only as pieces fill them: a batch costs memory in
    step with the pieces read.
    """

    def __init__(self, keep: int = 2):
        self._handed_out: Deque[np.ndarray] = deque(maxlen=keep)  # flat byte buffers the batches are views of

    def take(self, shape: Tuple[int, int], dtype: np.dtype) -> np.ndarray:
        """An array of this shape and dtype, starting on a page: a view of a dropped buffer big enough if there is
        one, else a new one."""
        nbytes = shape[0] * shape[1] * dtype.itemsize
        for k in range(len(self._handed_out)):
            buffer = self._handed_out[k]
            # References: the deque, `buffer` and getrefcount's argument; any more are views someone holds.
            if nbytes <= buffer.nbytes - PAGE <= 2 * nbytes and sys.getrefcount(buffer) <= 3:
                del self._handed_out[k]
                return page_aligned(buffer, nbytes).view(dtype).reshape(shape)
            del buffer
        return page_aligned(np.empty(nbytes + PAGE, dtype=np.uint8), nbytes).view(dtype).reshape(shape)

    def handed_out(self, array: np.ndarray) -> None:
        """Remember the buffer of an array given to the caller, to reuse once the caller has dropped it."""
        assert isinstance(array.base, np.ndarray) and array.base.base is None
        self._handed_out.append(array.base)

    def clear(self) -> None:
        """Forget every array (the caller's stay valid)."""
        self._handed_out.clear()


@dataclass(frozen=True)
class Placement:
    """Where the rows of a batch handed out in another order than read go: read row p is handed out as row
    places[p]. The places run consecutively from each read position of run_starts (then the batch's length) on,
    over [run_places, run_place_ends): worked out once per batch, so that a piece finds its runs in a few calls (int64
    arrays, so that batches of single-row runs cost 24 bytes a run, counted by PLACEMENT_BYTES_PER_ROW)."""

    places: np.ndarray
    run_starts: np.ndarray
    run_places: np.ndarray
    run_place_ends: np.ndarray

    @classmethod
    def of(cls, order: np.ndarray) -> "Placement":
        """The placement of a batch whose row q is the one read order[q]-th."""
        places = inverse_permutation(order)
        breaks = np.flatnonzero(places[1:] - places[:-1] != 1) + 1
        starts = np.concatenate(([0], breaks)) if len(places) else breaks
        run_starts = np.append(starts, len(places))
        run_places = places[starts]
        return cls(places, run_starts, run_places, run_places + np.diff(run_starts))

    def byte_runs(self, first: int, last: int, row_bytes: int) -> Tuple[List[int], List[int]]:
        """The runs of consecutive places of read rows [first, last), as byte ranges of the batch array (rows of
        `row_bytes`): their starts and stops."""
        if first >= last:
            return [], []
        run = int(self.run_starts.searchsorted(first, side="right")) - 1
        end = int(self.run_starts.searchsorted(last))  # runs [run, end) hold the rows (run_starts[run] <= first)
        starts = (self.run_places[run:end] * row_bytes).tolist()
        stops = (self.run_place_ends[run:end] * row_bytes).tolist()
        starts[0] += (first - int(self.run_starts[run])) * row_bytes
        stops[-1] -= (int(self.run_starts[end]) - last) * row_bytes
        return starts, stops


@dataclass(frozen=True)
class RowTarget:
    """Where a piece's rows go when its batch hands rows out in another order than they are read: read rows
    [first, last) of the batch, whose places in `array` (the whole batch) the batch's placement gives."""

    array: np.ndarray
    placement: Placement
    first: int
    last: int

    @property
    def rows(self) -> np.ndarray:
        """The place of each of the piece's rows in `array`."""
        return self.placement.places[self.first : self.last]

    def byte_views(self) -> List[memoryview]:
        """The bytes of `array` (C-contiguous) the piece's rows fill, run by run in piece order."""
        starts, stops = self.placement.byte_runs(self.first, self.last, self.array.shape[1] * self.array.itemsize)
        whole = memoryview(self.array).cast("B")  # type: ignore[arg-type]
        return list(map(whole.__getitem__, map(slice, starts, stops)))

    def place(self, values: np.ndarray, spare: Optional[np.ndarray] = None) -> None:
        """Copy the piece's rows to their places (numpy's fancy assignment copies row by row in C). Values of another
        dtype are cast first, a block of cast_block_rows at a time into `spare` (a uint8 buffer of at least a block's
        bytes), so that the cast rows are still in the CPU cache when they are copied to their places."""
        if values.dtype == self.array.dtype:
            self.array[self.rows] = values
            return
        rows, dimension, itemsize = self.rows, values.shape[1], self.array.itemsize
        step = max(1, min(len(values), cast_block_rows(dimension, self.array.dtype)))
        block_bytes = step * dimension * itemsize
        if spare is None:
            spare = np.empty(block_bytes, dtype=np.uint8)
        if spare.nbytes < block_bytes:
            raise ValueError(f"a side buffer of {spare.nbytes} bytes cannot hold a block of {step} rows to place")
        block = spare[:block_bytes].view(self.array.dtype).reshape(step, dimension)
        for first in range(0, len(values), step):
            part = block[: min(step, len(values) - first)]
            cast_into(part, values[first : first + len(part)])
            self.array[rows[first : first + len(part)]] = part


def cast_block_rows(dimension: int, dtype: np.dtype) -> int:
    """Rows RowTarget.place casts at a time: PLACE_BLOCK_BYTES of them in the output dtype (at least one)."""
    return max(1, PLACE_BLOCK_BYTES // (dimension * np.dtype(dtype).itemsize))


Slot = Union[np.ndarray, RowTarget]  # what a piece fills


class BatchLayout(Protocol):
    """Which rows make each batch: how many, and the global index of each."""

    def length(self, batch_id: int) -> int:
        """Rows of a batch."""

    def index(self, batch_id: int) -> np.ndarray:
        """The global index of each row of a batch in reading order (int64)."""

    def order(self, batch_id: int) -> Optional[np.ndarray]:
        """The batch's rows as handed out: row q is the one read order[q]-th, or None, the reading order itself."""


@dataclass(frozen=True)
class RangeLayout:
    """Consecutive batches of `batch_size` rows over global rows [start, end) (the last one may be short)."""

    start: int
    end: int
    batch_size: int

    def length(self, batch_id: int) -> int:
        return min(self.batch_size, self.end - self.start - batch_id * self.batch_size)

    def index(self, batch_id: int) -> np.ndarray:
        first = self.start + batch_id * self.batch_size
        return np.arange(first, first + self.length(batch_id), dtype=np.int64)

    def order(self, batch_id: int) -> Optional[np.ndarray]:
        return None


class BatchAssembler:
    """Owns the output array of every batch being read; pieces write straight into their slice of it, or, when the
    layout hands rows out in another order than they are read, into their rows' places (a RowTarget)."""

    def __init__(self, layout: BatchLayout, dimension: int, dtype: np.dtype):
        self.layout = layout
        self.dimension, self.dtype = dimension, np.dtype(dtype)
        self._arrays: Dict[int, np.ndarray] = {}
        self._orders: Dict[int, Tuple[np.ndarray, Placement]] = {}  # reordered batches: order, rows' places
        self._pool = ArrayPool()

    def slot(self, piece: Piece) -> Slot:
        """What the piece fills: its slice of the batch array (allocated on first use), or its rows' places in it."""
        array = self._arrays.get(piece.batch_id)
        if array is None:
            shape = (self.layout.length(piece.batch_id), self.dimension)
            array = self._arrays[piece.batch_id] = self._pool.take(shape, self.dtype)
            order = self.layout.order(piece.batch_id)
            if order is not None:
                self._orders[piece.batch_id] = order, Placement.of(order)
        reordered = self._orders.get(piece.batch_id)
        if reordered is not None:
            return RowTarget(array, reordered[1], piece.batch_start, piece.batch_end)
        return array[piece.batch_start : piece.batch_end]

    def complete(self, batch_id: int, metas: Sequence[Optional[pd.DataFrame]]) -> Tuple[np.ndarray, pd.DataFrame]:
        """Hand over a finished batch: its array and a DataFrame of its meta columns plus global index `i`."""
        array = self._arrays.pop(batch_id)
        reordered = self._orders.pop(batch_id, None)
        meta = _batch_meta(metas, self.layout.index(batch_id), None if reordered is None else reordered[0])
        self._pool.handed_out(array)
        return array, meta

    def discard(self) -> None:
        """Drop every unfinished batch (after an error or an early stop)."""
        self._arrays.clear()
        self._orders.clear()
        self._pool.clear()


def inverse_permutation(order: np.ndarray) -> np.ndarray:
    """Where each row of a permutation goes: places[order[q]] = q (one scatter, not a sort)."""
    places = np.empty_like(order)
    places[order] = np.arange(len(order), dtype=order.dtype)
    return places


def _batch_meta(
    metas: Sequence[Optional[pd.DataFrame]], index: np.ndarray, order: Optional[np.ndarray]
) -> pd.DataFrame:
    """The pieces' meta frames stacked in reading order, with the global row index as column `i`; then, for a batch
    handed out in another order, its rows in that order."""
    frames: List[pd.DataFrame] = [meta for meta in metas if meta is not None]
    if not frames:
        return pd.DataFrame({"i": index if order is None else index[order]}, copy=False)  # ours alone: no copy
    meta = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    if len(meta) != len(index):
        raise InconsistentCollectionError(
            f"metadata of rows [{index[0]}, {index[-1] + 1}) has {len(meta)} rows instead of {len(index)}"
        )
    meta = meta.reset_index(drop=True)
    meta["i"] = index
    return meta if order is None else meta.take(order).reset_index(drop=True)
