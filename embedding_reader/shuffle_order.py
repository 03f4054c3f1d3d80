"""The order of a shuffled epoch: blocks of rows permuted across the range, shared out to ranks, cut into windows.

The range [start, end) is cut into blocks: runs of about BLOCK_BYTES of one file (a parquet file's row groups).
The blocks, permuted by the seed, make the epoch's sequence of rows; rank r of world_size takes positions
[r * rows // world_size, (r + 1) * rows // world_size) of it; each rank's share is read a window of rows at a
time, and the rows of a window are permuted again before they are cut into batches. The order depends on the
seed, the range, the files' rows (and row groups), the window's size, the rank and the world size: never on
threads, piece sizes or where the files live.
"""

from itertools import accumulate
from typing import Iterator, List, Sequence, Tuple

import numpy as np

from .errors import InvalidArgumentError
from .header import FileHeader

BLOCK_BYTES = 2**21  # a block is read as one piece: large enough for a fast read; a 256 MB window holds 128 of them
MAX_BLOCKS = 2**27  # the order holds 3 integers per block: 3 GB for 128 Mi blocks (256 TiB of rows of 2 MB blocks)
MAX_RUN_ROWS = 16  # a window's rows are permuted in runs of consecutive rows: far faster to place than single rows
RUNS_PER_BATCH = 64  # ... and a batch gathers at least this many runs (or single rows), from all over its window
BLOCK_STREAM, WINDOW_STREAM = 0, 1  # the two uses of a seed: the blocks' order, the rows' order in a window


class EpochOrder:
    """One rank's share of a shuffled epoch over rows [start, end) of a collection (see the module docstring)."""

    def __init__(
        self,
        headers: Sequence[FileHeader],
        start: int,
        end: int,
        seed: int,
        window_rows: int,
        rank: int = 0,
        world_size: int = 1,
        run_rows: int = 1,
        batch_size: int = 1,
    ):
        """`window_rows`: the most a window may hold, a multiple of `batch_size` (windows hold whole batches)."""
        self.seed, self.rank, self.world_size, self.run_rows = seed, rank, world_size, run_rows
        cuts = block_cuts(headers, start, end)  # the same on every rank, whatever its budget or batch size
        lengths = np.diff(cuts)
        order = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, BLOCK_STREAM]))).permutation(
            len(lengths)
        )
        self._block_first = cuts[:-1][order]  # the global row where each block of the epoch's sequence begins
        self._position_ends = np.cumsum(lengths[order])  # the sequence position after each block
        self._position_starts = self._position_ends - lengths[order]
        del cuts, lengths, order  # 3 arrays of a block each are kept: 24 bytes a block
        rows = end - start
        self.share_first, self.share_end = rank * rows // world_size, (rank + 1) * rows // world_size
        self.window_rows = balanced_window_rows(self.rows, window_rows, batch_size)

    @property
    def rows(self) -> int:
        """Rows in this rank's share."""
        return self.share_end - self.share_first

    def window_length(self, window: int) -> int:
        """Rows of a window (the last one may be short)."""
        return min(self.window_rows, self.rows - window * self.window_rows)

    def segments(self, first: int, last: int) -> Iterator[Tuple[int, int]]:
        """Global row ranges holding the share's positions [first, last), in order (a block cut at both ends)."""
        first, last = first + self.share_first, last + self.share_first
        block = int(np.searchsorted(self._position_ends, first, side="right"))
        while first < last:
            row = int(self._block_first[block]) + first - int(self._position_starts[block])
            stop = min(last, int(self._position_ends[block]))
            yield row, row + stop - first
            first, block = stop, block + 1

    def window_index(self, window: int) -> np.ndarray:
        """The global row index of each position of a window, before the window's permutation."""
        first = window * self.window_rows
        segments = list(self.segments(first, first + self.window_length(window)))
        starts, ends = np.array(segments, dtype=np.int64).reshape(-1, 2).T
        return consecutive_runs(starts, ends - starts)

    def window_permutation(self, window: int) -> np.ndarray:
        """The order in which a window's rows are handed out: its runs of `run_rows` consecutive rows (the last
        one may be short) in an order that depends on the seed, the rank and the window."""
        entropy = [self.seed, WINDOW_STREAM, self.world_size, self.rank, window]
        generator = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
        rows = self.window_length(window)
        starts = generator.permutation(-(-rows // self.run_rows)) * self.run_rows
        order: np.ndarray = (starts[:, None] + np.arange(self.run_rows)).reshape(-1)  # every run whole ...
        return order if rows % self.run_rows == 0 else order[order < rows]  # ... but the last, which may be short


def consecutive_runs(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The integers [starts[k], starts[k] + lengths[k]) of every k, one run after the other (int64). One temporary of
    the result's size: a window's arrays are large enough for the C allocator to map them afresh each time."""
    ends = np.cumsum(lengths)
    runs: np.ndarray = np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64)
    runs += np.repeat(starts.astype(np.int64, copy=False) - (ends - lengths), lengths)
    return runs


def balanced_window_rows(rows: int, most: int, batch_size: int) -> int:
    """Rows of a window: as many windows as windows of `most` rows would take, made about equal in whole batches, so
    that the last one is never a small window, whose batches would draw from few blocks."""
    windows = max(1, -(-rows // most))
    return batch_size * max(1, -(-rows // (windows * batch_size)))


def run_rows_for(batch_size: int) -> int:
    """Rows of a run: MAX_RUN_ROWS, fewer for batches of under RUNS_PER_BATCH runs."""
    return max(1, min(MAX_RUN_ROWS, batch_size // RUNS_PER_BATCH))


def block_cuts(headers: Sequence[FileHeader], start: int, end: int) -> np.ndarray:
    """The sorted global row numbers where blocks of [start, end) begin, then `end`: every file's start, its row
    groups' starts or every BLOCK_BYTES of rows, clipped to the range."""
    file_starts = [0, *accumulate(header.count for header in headers)]
    check_block_count(headers, file_starts, start, end)
    cuts: List[np.ndarray] = [np.array([start, end], dtype=np.int64)]
    for header, file_start in zip(headers, file_starts):
        if file_start + header.count <= start or file_start >= end:
            continue
        if header.units:
            inner = np.cumsum(np.asarray(header.units[:-1], dtype=np.int64))
        else:
            inner = np.arange(0, header.count, max(1, BLOCK_BYTES // header.row_bytes), dtype=np.int64)
        cuts.append(file_start + inner)
    every = np.unique(np.concatenate(cuts))
    return every[(every >= start) & (every <= end)]


def check_block_count(headers: Sequence[FileHeader], file_starts: Sequence[int], start: int, end: int) -> None:
    """Refuse an order of more than MAX_BLOCKS blocks (files claiming absurd row counts) before building it."""
    blocks = 0
    for header, file_start in zip(headers, file_starts):
        rows = min(end, file_start + header.count) - max(start, file_start)
        if rows > 0:
            blocks += len(header.units) if header.units else -(-rows // max(1, BLOCK_BYTES // header.row_bytes)) + 1
    if blocks > MAX_BLOCKS:
        raise InvalidArgumentError(
            f"shuffle=True over rows [{start}, {end}): {blocks:,} blocks, more than {MAX_BLOCKS:,} "
            f"(the order would take {3 * 8 * blocks / 1e9:,.0f} GB): shuffle a smaller range at a time"
        )
