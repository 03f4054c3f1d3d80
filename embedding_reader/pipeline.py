"""The pipeline: pieces fetched by a thread pool in order of need, under a RAM budget, into batches.

Memory rule: a piece is submitted only while the bytes held by submitted-but-not-yet-handed-out
batches stay within the budget; the batch the caller waits for is always allowed to complete, so
a budget smaller than one batch slows the read down but never deadlocks it. Peak memory is thus
about the budget, plus the batch being assembled, plus the batch the caller holds.

Lookahead rule: nothing is read ahead of the first batch, which has every thread, core and connection
to itself. Afterwards pieces of later batches are read ahead of the oldest one by at most the oldest batch's
own bytes, or `parallel` pieces when that is more (small batches), so no worker idles; few batches are in
flight whatever the budget, so the batch pool can recycle the arrays the caller drops instead of faulting in
fresh pages. The figures behind both rules are in benchmarks/README.md (Design measurements).
"""

import queue
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Deque, Iterator, List, Optional, Tuple

import numpy as np
import pandas as pd

from .batches import BatchAssembler, Slot
from .errors import EmbeddingReaderError, ReadFailedError
from .pieces import Piece
from .storage import redact

ReadPiece = Callable[[Piece, Slot, threading.Event], Optional[pd.DataFrame]]
Metas = List[Optional[pd.DataFrame]]
THREAD_NAME_PREFIX = "embedding_reader"
MAX_GROUP_PIECES = 256  # pieces one task reads at most, so that a batch of tiny pieces still spreads over threads


@dataclass
class _PendingBatch:
    """A batch whose pieces are submitted: their futures in order, the bytes they hold, the futures as they finish
    (so that waiting costs O(1) per piece), and how many of the first ones are known to have succeeded."""

    batch_id: int
    futures: List["Future[Metas]"] = field(default_factory=list)
    cost: int = 0
    finished: "queue.SimpleQueue[Future[Metas]]" = field(default_factory=queue.SimpleQueue)
    checked: int = 0

    def add(self, future: "Future[Metas]", cost: int) -> None:
        self.futures.append(future)
        self.cost += cost
        future.add_done_callback(self.finished.put)

    def raise_first_error(self) -> None:
        """Raise the error of the first failed piece in reading order, once every piece before it is done; each
        piece is looked at once over the whole batch."""
        while self.checked < len(self.futures) and self.futures[self.checked].done():
            self.futures[self.checked].result()
            self.checked += 1


class Pipeline:
    """Iterates over (embeddings, meta) batches of a plan of pieces, reading `parallel` tasks at once. A task is one
    piece, or consecutive small pieces of one batch up to `group_bytes` (many small local files: one future, not
    one per file; remote pieces are not grouped, their latencies would add up)."""

    def __init__(
        self,
        pieces: Iterator[Piece],
        read_piece: ReadPiece,
        assembler: BatchAssembler,
        piece_cost: Callable[[Piece], int],
        parallel: int,
        budget: int,
        group_bytes: int = 0,
    ):
        self._pieces, self._piece_cost = pieces, piece_cost
        self._next: Optional[Tuple[Piece, int]] = self._next_piece()  # the next piece to submit, and its cost
        self._read_piece, self._assembler = read_piece, assembler
        self._parallel, self._budget, self._group_bytes = parallel, budget, group_bytes
        self._pending: Deque[_PendingBatch] = deque()
        self._in_flight = 0
        self._handed_over = 0
        self._cancel = threading.Event()

    def __iter__(self) -> Iterator[Tuple[np.ndarray, pd.DataFrame]]:
        executor = ThreadPoolExecutor(self._parallel, thread_name_prefix=THREAD_NAME_PREFIX)
        try:
            while True:
                self._submit(executor)
                if not self._pending:
                    return
                yield self._complete_oldest(executor)
        finally:
            self._cancel.set()
            executor.shutdown(wait=True, cancel_futures=True)
            self._assembler.discard()

    def _submit(self, executor: ThreadPoolExecutor) -> None:
        """Submit pieces in order while the budget allows; the oldest batch's pieces always go."""
        group: List[Tuple[Piece, Slot]] = []
        group_cost = 0
        while self._next is not None:
            piece, cost = self._next
            oldest = self._pending[0].batch_id if self._pending else piece.batch_id
            if piece.batch_id != oldest and not self._may_prefetch(cost):
                break
            if group and (not self._joins(group, group_cost, piece, cost)):
                self._pending[-1].add(executor.submit(self._run_group, group), group_cost)
                group, group_cost = [], 0
            if not self._pending or self._pending[-1].batch_id != piece.batch_id:
                self._pending.append(_PendingBatch(piece.batch_id))
            group.append((piece, self._assembler.slot(piece)))
            group_cost += cost
            self._in_flight += cost
            self._next = self._next_piece()
        if group:
            self._pending[-1].add(executor.submit(self._run_group, group), group_cost)

    def _next_piece(self) -> Optional[Tuple[Piece, int]]:
        """The plan's next piece and its cost (worked out once: a piece may wait for the budget several times)."""
        piece = next(self._pieces, None)
        return None if piece is None else (piece, self._piece_cost(piece))

    def _joins(self, group: List[Tuple[Piece, Slot]], group_cost: int, piece: Piece, cost: int) -> bool:
        """Whether a piece may join the task being gathered: same batch, and the task stays small."""
        same_batch = group[0][0].batch_id == piece.batch_id
        return same_batch and group_cost + cost <= self._group_bytes and len(group) < MAX_GROUP_PIECES

    def _run_group(self, group: List[Tuple[Piece, Slot]]) -> Metas:
        """Read a task's pieces one after the other in a worker thread."""
        return [self._run(piece, out) for piece, out in group]

    def _may_prefetch(self, cost: int) -> bool:
        """Whether a piece of a later batch may start now: not before the first batch is handed over, then
        within the budget and the lookahead rule."""
        if not self._handed_over or self._in_flight + cost > self._budget:
            return False
        oldest_cost = self._pending[0].cost
        if self._in_flight - oldest_cost + cost <= oldest_cost:
            return True
        pieces_ahead = sum(len(batch.futures) for batch in islice(self._pending, 1, None))  # tasks, in fact
        return pieces_ahead < self._parallel

    def _run(self, piece: Piece, out: Slot) -> Optional[pd.DataFrame]:
        """Read one piece in a worker thread; failures name the file and rows."""
        if self._cancel.is_set():
            return None
        try:
            return self._read_piece(piece, out, self._cancel)
        except EmbeddingReaderError as exc:
            where = _where(piece)
            if where in str(exc):
                raise
            raise type(exc)(f"{where}: {exc}") from exc
        except Exception as exc:
            raise ReadFailedError(f"{_where(piece)}: {type(exc).__name__}: {exc}") from exc

    def _complete_oldest(self, executor: ThreadPoolExecutor) -> Tuple[np.ndarray, pd.DataFrame]:
        """Wait for every piece of the oldest batch (submitting more as they finish), then hand the batch over
        and release its budget; a failed piece raises its error, the first in reading order."""
        batch = self._pending[0]
        for _ in batch.futures:  # every piece of the oldest batch is submitted before it is awaited
            batch.finished.get()
            batch.raise_first_error()
            self._submit(executor)
        metas = [meta for future in batch.futures for meta in future.result()]
        self._pending.popleft()
        self._in_flight -= batch.cost
        self._handed_over += 1
        return self._assembler.complete(batch.batch_id, metas)


def _where(piece: Piece) -> str:
    """How an error names a piece (made only on failure: a shuffled read runs thousands of pieces)."""
    return f"{redact(piece.path)} rows [{piece.piece_start}, {piece.piece_end})"
