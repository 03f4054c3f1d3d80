"""Batch assembly: one preallocated array per batch, filled in place by the pieces, plus its metadata."""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .errors import InconsistentCollectionError
from .pieces import Piece


class BatchAssembler:
    """Owns the output array of every batch being read; pieces write straight into their slice of it.

    Arrays come from np.empty, so the operating system commits their pages only as pieces fill them:
    a batch costs memory in step with the pieces read, not all at once.
    """

    def __init__(self, start: int, end: int, batch_size: int, dimension: int, dtype: np.dtype):
        self.start, self.end, self.batch_size = start, end, batch_size
        self.dimension, self.dtype = dimension, np.dtype(dtype)
        self._arrays: Dict[int, np.ndarray] = {}

    def batch_rows(self, batch_id: int) -> Tuple[int, int]:
        """Global rows [first, last) of a batch."""
        first = self.start + batch_id * self.batch_size
        return first, min(first + self.batch_size, self.end)

    def slot(self, piece: Piece) -> np.ndarray:
        """The slice of the piece's batch array that the piece fills (allocating the array on first use)."""
        array = self._arrays.get(piece.batch_id)
        if array is None:
            first, last = self.batch_rows(piece.batch_id)
            array = self._arrays[piece.batch_id] = np.empty((last - first, self.dimension), dtype=self.dtype)
        return array[piece.batch_start : piece.batch_end]

    def complete(self, batch_id: int, metas: Sequence[Optional[pd.DataFrame]]) -> Tuple[np.ndarray, pd.DataFrame]:
        """Hand over a finished batch: its array and a DataFrame of its meta columns plus global index `i`."""
        array = self._arrays.pop(batch_id)
        first, last = self.batch_rows(batch_id)
        return array, _batch_meta(metas, np.arange(first, last, dtype=np.int64))

    def discard(self) -> None:
        """Drop every unfinished batch (after an error or an early stop)."""
        self._arrays.clear()


def _batch_meta(metas: Sequence[Optional[pd.DataFrame]], index: np.ndarray) -> pd.DataFrame:
    """The pieces' meta frames stacked in order, with the global row index as column `i`."""
    frames: List[pd.DataFrame] = [meta for meta in metas if meta is not None]
    if not frames:
        return pd.DataFrame({"i": index})
    meta = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    if len(meta) != len(index):
        raise InconsistentCollectionError(
            f"metadata of rows [{index[0]}, {index[-1] + 1}) has {len(meta)} rows instead of {len(index)}"
        )
    meta = meta.reset_index(drop=True)
    meta["i"] = index
    return meta
