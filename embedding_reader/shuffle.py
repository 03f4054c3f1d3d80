"""Shuffled batches: the windows of an epoch's order (shuffle_order.py), read by the pipeline, cut into batches.

Each window arrives as one array with its meta; its rows are handed out in the window's permutation, batch_size
at a time (a batch may span two windows). A read that resumes at batch k starts at the window holding position
k * batch_size and skips the positions before it. With remainder="pad" the last batch is completed with the
share's first rows, as torch's DistributedSampler does.
"""

from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Tuple

import numpy as np
import pandas as pd

from .batches import ArrayPool
from .errors import InvalidArgumentError, check_int
from .shuffle_order import EpochOrder

Batch = Tuple[np.ndarray, pd.DataFrame]
Windows = Callable[[int], Iterator[Batch]]  # the windows of the order from window w on, read
REMAINDERS = ("keep", "drop", "pad")


@dataclass(frozen=True)
class ShuffleOptions:
    """The call's shuffle arguments, checked."""

    seed: int
    rank: int
    world_size: int
    start_batch: int
    remainder: str

    @classmethod
    def of(
        cls, shuffle: Any, seed: Any, rank: Any, world_size: Any, start_batch: Any, remainder: Any
    ) -> "ShuffleOptions":
        """Checked options; seed=None draws a seed, which only a single process reading from the start may do."""
        if shuffle is not True:
            raise InvalidArgumentError(f"shuffle must be True or False, got {shuffle!r}")
        world_size = check_int("world_size", world_size, 1)
        rank = check_int("rank", rank, 0)
        if rank >= world_size:
            raise InvalidArgumentError(f"rank={rank} must be < world_size={world_size}")
        start_batch = check_int("start_batch", start_batch, 0)
        if seed is None and (world_size > 1 or start_batch):
            raise InvalidArgumentError("seed=None: ranks and resumed reads need the same seed as the rest of the run")
        seed = int(np.random.SeedSequence().entropy) if seed is None else check_int("seed", seed, 0)  # type: ignore
        if remainder not in REMAINDERS:
            raise InvalidArgumentError(f"remainder must be one of {', '.join(REMAINDERS)}, got {remainder!r}")
        return cls(seed, rank, world_size, start_batch, remainder)


def refuse_shuffle_options(seed: Any, rank: Any, world_size: Any, start_batch: Any, remainder: Any) -> None:
    """A sequential read takes none of the shuffle's arguments (reader.split(n) and start/end share it out)."""
    given = {"seed": seed is not None, "rank": rank != 0, "world_size": world_size != 1}
    given.update({"start_batch": start_batch != 0, "remainder": remainder != "keep"})
    named = [name for name, set_ in given.items() if set_]
    if named:
        raise InvalidArgumentError(
            f"{', '.join(named)} need shuffle=True; a sequential read is shared out with reader.split(n) and start/end"
        )


@dataclass(frozen=True)
class WindowLayout:
    """The windows of an order as the batch assembler's batches."""

    order: EpochOrder

    def length(self, batch_id: int) -> int:
        return self.order.window_length(batch_id)

    def index(self, batch_id: int) -> np.ndarray:
        return self.order.window_index(batch_id)


@dataclass(frozen=True)
class BatchPlan:
    """The batches of a rank's share a read hands out: batches [first_batch, batches) of batch_size rows, made of
    share positions [first_batch * batch_size, real_end) and then, with remainder="pad", `padding` repeats of the
    share's first rows. Only the last batch may be short (remainder="keep")."""

    batch_size: int
    first_batch: int
    batches: int
    real_end: int
    padding: int

    @classmethod
    def of(cls, order: EpochOrder, total: int, batch_size: int, start_batch: int, remainder: str) -> "BatchPlan":
        """The plan of one rank's share of an epoch over `total` rows shared by order.world_size ranks: as many
        batches on every rank with "drop" (full ones) and "pad" (full, padded), every row once with "keep"."""
        shortest, longest = total // order.world_size, -(-total // order.world_size)
        batches = {"keep": -(-order.rows // batch_size), "drop": shortest // batch_size}.get(
            remainder, -(-longest // batch_size)
        )
        start_batch = check_int("start_batch", start_batch, 0)
        if start_batch > batches:
            raise InvalidArgumentError(f"start_batch={start_batch} is past the {batches} batches of this share")
        real_end = min(order.rows, batches * batch_size)
        padding = batches * batch_size - real_end if remainder == "pad" else 0
        return cls(batch_size, start_batch, batches, real_end, padding)

    @property
    def first_position(self) -> int:
        """The share position of the first row handed out."""
        return self.first_batch * self.batch_size

    @property
    def end(self) -> int:
        """Positions handed out end here (padding counted as positions after the share's own)."""
        return self.real_end + self.padding

    @property
    def rows_handed_out(self) -> int:
        """Rows the read hands out, padding included."""
        return max(0, self.end - self.first_position)


class BatchCutter:
    """Cuts the permuted windows of an order into the batches of a plan."""

    def __init__(self, order: EpochOrder, plan: BatchPlan, dimension: int, dtype: np.dtype):
        self.order, self.plan = order, plan
        self.dimension, self.dtype = dimension, dtype
        self._pool = ArrayPool()
        self._batch: Optional[np.ndarray] = None
        self._metas: List[pd.DataFrame] = []
        self._filled = 0
        self._position = plan.first_position  # positions handed out or in the batch being filled end here
        self._pad: List[Batch] = []  # the share's first rows, kept while they pass, for the padding

    def batches(self, windows: Windows) -> Iterator[Batch]:
        """The plan's batches, reading the windows they need (and the first ones again to pad, after a resume)."""
        plan, order = self.plan, self.order
        if self._position >= plan.end:
            return
        first_window = self._position // order.window_rows
        stream = windows(first_window)
        try:
            for window, (rows, meta) in enumerate(stream, first_window):
                window_start = window * order.window_rows
                permutation = order.window_permutation(window)
                self._keep_for_padding(window_start, rows, meta, permutation)
                last = min(plan.real_end, window_start + len(rows))
                while self._position < last:
                    take = min(last - self._position, plan.batch_size - self._filled)
                    offset = self._position - window_start
                    done = self._add(rows, meta, permutation[offset : offset + take])
                    if done is not None:
                        yield done
                del rows, meta
                if self._position >= plan.real_end:
                    break
        finally:
            _close(stream)
        yield from self._padded(windows)

    def _keep_for_padding(
        self, window_start: int, rows: np.ndarray, meta: pd.DataFrame, permutation: np.ndarray
    ) -> None:
        """Copy the share's first rows (positions [0, padding)) as they pass, if the padding needs them."""
        wanted = min(self.plan.padding - window_start, len(rows))
        if wanted > 0:
            chosen = permutation[:wanted]
            self._pad.append((np.take(rows, chosen, axis=0, mode="clip"), meta.take(chosen)))

    def _padded(self, windows: Windows) -> Iterator[Batch]:
        """The padding rows, after re-reading the share's first windows if this read resumed past them."""
        if self.plan.padding <= 0:
            return
        if sum(len(rows) for rows, _ in self._pad) < self.plan.padding:
            self._pad = []
            stream = windows(0)
            try:
                for window, (rows, meta) in enumerate(stream):
                    permutation = self.order.window_permutation(window)
                    self._keep_for_padding(window * self.order.window_rows, rows, meta, permutation)
                    if window * self.order.window_rows + len(rows) >= self.plan.padding:
                        break
            finally:
                _close(stream)
        for rows, meta in self._pad:
            done = self._add(rows, meta, np.arange(len(rows)))
            if done is not None:
                yield done

    def _add(self, rows: np.ndarray, meta: pd.DataFrame, chosen: np.ndarray) -> Optional[Batch]:
        """Gather rows `chosen` of a window into the batch being filled; the batch, once it is full or the last."""
        if self._batch is None:
            self._batch = self._pool.take((self.plan.batch_size, self.dimension), self.dtype)
        np.take(rows, chosen, axis=0, out=self._batch[self._filled : self._filled + len(chosen)], mode="clip")
        self._metas.append(meta.take(chosen))
        self._filled += len(chosen)
        self._position += len(chosen)
        if self._filled < self.plan.batch_size and self._position < self.plan.end:
            return None
        batch = self._batch[: self._filled]
        metas = self._metas[0] if len(self._metas) == 1 else pd.concat(self._metas)
        self._batch, self._metas, self._filled = None, [], 0
        self._pool.handed_out(batch)
        return batch, metas.reset_index(drop=True)


def _close(stream: Iterator[Batch]) -> None:
    """Stop a window stream's pipeline now (its threads and buffers), not when it is collected."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()
