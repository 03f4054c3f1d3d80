"""fvecs, ivecs, bvecs (TEXMEX: SIFT1M, GIST1M, SIFT1B): each row a little-endian int32 dimension, then its values.

The header read is the first row's dimension (4 bytes); the rows are the file size over the row size, which must
divide it exactly. A piece is read with its rows' prefixes into a side buffer (locally a small reused one, so the
bytes stay in the CPU cache, placed on the file's own position in the page so the kernel's copy is never aliased:
see storage/local.py), every prefix is checked against the dimension, and only the values are copied (or cast)
into the batch.
"""

import threading
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from ..casts import cast_into
from ..errors import CorruptFileError, ReadFailedError
from ..header import FileHeader
from ..pieces import Piece
from ..storage import FileEntry, byte_range, redact
from ..storage.local import PAGE, page_congruent
from .base import Format
from .checks import Checks, Survey
from .npy import CAST_BLOCK_BYTES, MAX_DIMENSION

PREFIX_BYTES = 4  # each row's dimension: int32, little-endian


def row_layout(dimension: int, dtype: np.dtype) -> np.dtype:
    """One stored row: its dimension prefix, then its values (packed, as the files hold them)."""
    return np.dtype([("dimension", "<i4"), ("values", dtype, (dimension,))])


def parse_vecs_header(path: str, prefix: bytes, file_size: int, dtype: np.dtype) -> FileHeader:
    """A FileHeader from a vecs file's first 4 bytes and its size, which must be a whole number of rows."""
    if file_size == 0:
        return FileHeader(path=path, count=0, dimension=0, dtype=dtype.str, file_size=0)
    if len(prefix) < PREFIX_BYTES:
        raise CorruptFileError(f"{redact(path)}: {file_size} bytes, shorter than a row's 4-byte dimension")
    dimension = int.from_bytes(prefix[:PREFIX_BYTES], "little", signed=True)
    if not 0 < dimension <= MAX_DIMENSION:
        raise CorruptFileError(f"{redact(path)}: row 0 has dimension {dimension}, not in [1, {MAX_DIMENSION}]")
    row_bytes = PREFIX_BYTES + dimension * dtype.itemsize
    if file_size % row_bytes:
        raise CorruptFileError(
            f"{redact(path)}: {file_size} bytes is not a whole number of rows of {row_bytes} bytes "
            f"(4 + {dimension} x {dtype.itemsize})"
        )
    count = file_size // row_bytes
    return FileHeader(path=path, count=count, dimension=dimension, dtype=dtype.str, file_size=file_size)


def check_prefixes(header: FileHeader, prefixes: np.ndarray, first_row: int) -> None:
    """CorruptFileError naming the file and the first row whose dimension prefix is not the file's."""
    wrong = np.flatnonzero(prefixes != header.dimension)
    if wrong.size:
        row = first_row + int(wrong[0])
        stride = PREFIX_BYTES + header.row_bytes
        raise CorruptFileError(
            f"{byte_range(header.path, row * stride, (row + 1) * stride)}: row {row} has dimension "
            f"{int(prefixes[wrong[0]])}, the file's is {header.dimension}"
        )


class VecsFormat(Format):
    """Rows of one dtype, each after its own dimension; subclasses name the dtype."""

    stored_dtype = ""

    def survey(self, folders: Sequence[str], checks: Checks) -> Survey:
        return self.survey_files(folders, checks, self.read_vecs_headers)

    def read_vecs_headers(self, files: Sequence[FileEntry]) -> List[FileHeader]:
        """Headers of the files: one 4-byte read each, in parallel; sizes as listed, else as the answer gave them
        (http), else asked. A read refused for a file of unknown size (an empty file over http: 416) is made again
        once every size is known, empty files skipped."""
        try:
            return self._vecs_headers(files)
        except ReadFailedError:
            if all(size is not None for _, size in files):
                raise
            return self._vecs_headers(list(zip([path for path, _ in files], self.storage.sizes(files))))

    def _vecs_headers(self, files: Sequence[FileEntry]) -> List[FileHeader]:
        """The headers, one 4-byte read per file not known to be empty."""
        requests = [(path, 0, PREFIX_BYTES if size is None else min(PREFIX_BYTES, size)) for path, size in files]
        answers = iter(self.storage.read_ranges([request for request in requests if request[2]], allow_short=True))
        prefixes = [next(answers) if length else b"" for _, _, length in requests]
        learnt = [(path, size if size is not None else self.storage.identities.size(path)) for path, size in files]
        sizes = self.storage.sizes(learnt)
        dtype = np.dtype(self.stored_dtype)
        return [parse_vecs_header(path, prefix, size, dtype) for (path, _), prefix, size in zip(files, prefixes, sizes)]

    def read_piece(
        self, piece: Piece, header: FileHeader, out: np.ndarray, cancel: Optional[threading.Event] = None
    ) -> Optional[pd.DataFrame]:
        layout = row_layout(header.dimension, header.numpy_dtype)
        block_rows = self._block_rows(piece, layout)
        buffer = np.empty(self.transient_bytes(piece, header, out.dtype), dtype=np.uint8)
        for first in range(0, piece.rows, block_rows):
            rows = min(block_rows, piece.rows - first)
            offset = (piece.piece_start + first) * layout.itemsize
            if self.storage.is_local:
                raw = page_congruent(buffer, offset, rows * layout.itemsize)
            else:
                raw = buffer[: rows * layout.itemsize]
            self.storage.read_into(header.path, offset, raw.data, cancel)
            block = raw.view(layout)
            check_prefixes(header, block["dimension"], piece.piece_start + first)
            cast_into(out[first : first + rows], block["values"])
        return None

    def _block_rows(self, piece: Piece, layout: np.dtype) -> int:
        """Rows read at a time: locally a cache-sized block, remotely the whole piece (one ranged request)."""
        if not self.storage.is_local:
            return max(1, piece.rows)
        return max(1, min(piece.rows, CAST_BLOCK_BYTES // layout.itemsize))

    def transient_bytes(self, piece: Piece, header: FileHeader, out_dtype: np.dtype) -> int:
        """The side buffer of stored rows, prefixes included (locally with room to sit where the file's bytes sit in
        their page)."""
        layout = row_layout(header.dimension, header.numpy_dtype)
        return self._block_rows(piece, layout) * layout.itemsize + (PAGE if self.storage.is_local else 0)


class FvecsFormat(VecsFormat):
    """float32 rows (SIFT1M, GIST1M base and query vectors)."""

    name = "fvecs"
    extension = ".fvecs"
    stored_dtype = "<f4"


class IvecsFormat(VecsFormat):
    """int32 rows (ground truth ids)."""

    name = "ivecs"
    extension = ".ivecs"
    stored_dtype = "<i4"


class BvecsFormat(VecsFormat):
    """uint8 rows (SIFT1B / BIGANN in TEXMEX's layout)."""

    name = "bvecs"
    extension = ".bvecs"
    stored_dtype = "|u1"
