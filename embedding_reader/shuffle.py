"""Shuffled batches: the windows of an epoch's order (shuffle_order.py), read by the pipeline, cut into batches.

A window holds a whole number of batches. Its pieces are read into their rows' places in the window (a RowTarget,
batches.py), so that a window arrives already permuted and its batches are views of it.
A read that resumes at batch k starts at the window holding it. With remainder="pad" the last batch is completed
with the share's first rows, as torch's DistributedSampler does.
"""

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Tuple

import numpy as np
import pandas as pd

from .errors import InvalidArgumentError, check_int
from .shuffle_order import EpochOrder

Batch = Tuple[np.ndarray, pd.DataFrame]
Windows = Callable[[int], Iterator[Batch]]  # the windows of the order from window w on, read in their rows' order
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

    epoch: EpochOrder

    def length(self, batch_id: int) -> int:
        return self.epoch.window_length(batch_id)

    def index(self, batch_id: int) -> np.ndarray:
        return self.epoch.window_index(batch_id)

    def order(self, batch_id: int) -> Optional[np.ndarray]:
        return self.epoch.window_permutation(batch_id)


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
        if start_batch > batches:
            raise InvalidArgumentError(f"start_batch={start_batch} is past the {batches} batches of this share")
        if remainder == "pad" and batches and not order.rows:
            raise InvalidArgumentError(
                f'remainder="pad": rank {order.rank} of world_size={order.world_size} has no row of the {total} to '
                "pad with (fewer rows than ranks)"
            )
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
    """Cuts the windows of an order, read with their rows already permuted, into the batches of a plan: views of
    the window arrays (a window holds a whole number of batches), the padded last batch a copy."""

    def __init__(self, order: EpochOrder, plan: BatchPlan):
        if order.window_rows % plan.batch_size:
            raise ValueError(f"windows of {order.window_rows} rows do not hold whole batches of {plan.batch_size}")
        self.order, self.plan = order, plan
        self._pad: Optional[Batch] = None  # the share's first rows, for the padding
        self._tail: Optional[Batch] = None  # the real rows of the padded batch

    def batches(self, windows: Windows) -> Iterator[Batch]:
        """The plan's batches, reading the windows they need (and the first one again to pad, after a resume)."""
        plan, per_window = self.plan, self.order.window_rows // self.plan.batch_size
        if plan.first_batch >= plan.batches:
            return
        first_window = plan.first_batch // per_window
        stream = windows(first_window)
        try:
            window = first_window
            for rows, meta in stream:  # not enumerate: it would hold the last window until the next one is read
                yield from self._window_batches(window, rows, meta, per_window)
                del rows, meta  # so that the batch pool can reuse the window's array for the one after next
                window += 1
                if window * per_window >= plan.batches:
                    break
        finally:
            _close(stream)
        if plan.padding:
            yield self._padded_batch(windows)

    def _window_batches(self, window: int, rows: np.ndarray, meta: pd.DataFrame, per_window: int) -> Iterator[Batch]:
        """The plan's batches that lie in one window; the padded one is kept for the end."""
        plan, window_start = self.plan, window * self.order.window_rows
        if window == 0 and plan.padding:
            self._pad = self._first_rows(rows, meta)
        last_batch = min(plan.batches, (window + 1) * per_window)
        for batch in range(max(plan.first_batch, window * per_window), last_batch):
            first = batch * plan.batch_size - window_start
            last = min(first + plan.batch_size, plan.real_end - window_start)
            if plan.padding and batch == plan.batches - 1:
                self._tail = rows[first:last].copy(), meta.iloc[first:last]
            else:
                yield rows[first:last], meta.iloc[first:last].reset_index(drop=True)

    def _first_rows(self, rows: np.ndarray, meta: pd.DataFrame) -> Batch:
        """Copies of the share's first rows, as many as the padding takes (repeated if the share is smaller)."""
        chosen = np.arange(self.plan.padding) % self.order.rows
        return np.take(rows, chosen, axis=0), meta.take(chosen)

    def _padded_batch(self, windows: Windows) -> Batch:
        """The last batch: its real rows, then the share's first rows (read again if this read skipped them)."""
        if self._pad is None:
            stream = windows(0)
            try:
                self._pad = self._first_rows(*next(iter(stream)))
            finally:
                _close(stream)
        parts = [part for part in (self._tail, self._pad) if part is not None and len(part[0])]
        rows = np.concatenate([part[0] for part in parts])
        meta = pd.concat([part[1] for part in parts], ignore_index=True)
        return rows, meta


def _close(stream: Iterator[Batch]) -> None:
    """Stop a window stream's pipeline now (its threads and buffers), not when it is collected."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()
