"""Plain values describing a collection's files, as read once from their headers."""

import functools
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np


@functools.lru_cache(maxsize=64)
def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a dtype string (a handful of values: made once each)."""
    return np.dtype(name)


@dataclass(frozen=True)
class ParquetFooter:
    """Where a parquet file's metadata lives: enough to fetch it again with one exact range read."""

    path: str
    file_size: int
    footer_length: int
    row_groups: Tuple[int, ...]

    @property
    def footer_range(self) -> Tuple[int, int]:
        """Byte range [start, end) of the thrift footer plus its length field and magic."""
        return self.file_size - self.footer_length - 8, self.file_size


@dataclass(frozen=True)
class FileHeader:
    """One embedding file: its rows, their shape and type, and where they are stored.

    `units` are the row counts of the file's indivisible read units (parquet row groups); empty
    when any row range can be read on its own (npy). `parquet` is the footer of the parquet file
    holding this file's rows (format parquet) or its metadata (format parquet_npy).
    """

    path: str
    count: int
    dimension: int
    dtype: str
    file_size: Optional[int] = None
    data_offset: int = 0
    parquet: Optional[ParquetFooter] = None
    units: Tuple[int, ...] = ()
    meta_bytes_per_row: int = 0

    @functools.cached_property  # frozen: kept in the instance's __dict__ (a shuffled read asks for it per block)
    def numpy_dtype(self) -> np.dtype:
        """The stored element type."""
        return numpy_dtype(self.dtype)

    @property
    def stored_bytes(self) -> int:
        """Bytes of the embedding file: as listed, else as its header implies."""
        return self.file_size or self.data_offset + self.count * self.row_bytes

    @functools.cached_property
    def row_bytes(self) -> int:
        """Bytes of one stored embedding."""
        return self.dimension * self.numpy_dtype.itemsize
