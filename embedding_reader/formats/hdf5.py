"""hdf5 (ann-benchmarks' files: `train`, `test`, `neighbors`, `distances`): one named 2-D dataset of each file.

Needs h5py (the `hdf5` extra). The open reads each file's metadata through h5py (over a RangeFile remotely). A
contiguous dataset (h5py's default, and ann-benchmarks') is then read as npy's are, by exact byte ranges from its
offset in the file; a chunked one (compressed, or written in chunks) piece by piece through h5py, pieces cut at chunk
boundaries.
"""

import gc
import threading
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Sequence

import numpy as np
import pandas as pd

from ..batches import RowTarget
from ..casts import cast_into
from ..errors import (
    CorruptFileError,
    InvalidArgumentError,
    MissingColumnError,
    UnsupportedFileError,
)
from ..header import FileHeader
from ..pieces import Piece
from ..retry import call_with_retries
from ..storage import FileEntry, redact
from ..storage.range_file import READ_AHEAD_BYTES, RangeFile
from .base import Format
from .checks import Checks, Survey
from .npy import NpyFormat, check_shape

NUMERIC_KINDS = "fiu"
NAMES_SHOWN = 6  # dataset names an error lists


def _h5py() -> Any:
    """The h5py module, or a clear error naming the extra to install."""
    try:
        import h5py
    except ImportError:
        raise InvalidArgumentError("file_format='hdf5' needs h5py: pip install 'embedding_reader[hdf5]'") from None
    return h5py


def describe_dataset(path: str, file: Any, name: str, size: Optional[int]) -> FileHeader:
    """The FileHeader of dataset `name` of an open h5py file: its offset if contiguous, its chunks' rows if not."""
    h5py = _h5py()
    dataset = file.get(name)
    if not isinstance(dataset, h5py.Dataset):
        found = ", ".join(sorted(file)[:NAMES_SHOWN])
        raise MissingColumnError(f"{redact(path)}: no dataset {name!r} (found: {found or 'none'})")
    dtype, shape = np.dtype(dataset.dtype), dataset.shape
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or len(shape) != 2:
        raise UnsupportedFileError(f"{redact(path)}: dataset {name!r} is {shape} {dtype}, not 2-D numeric")
    count, dimension = (int(n) for n in shape)
    if dataset.chunks is not None:
        rows = int(dataset.chunks[0])
        units = tuple(min(rows, count - first) for first in range(0, count, rows))
        return FileHeader(path=path, count=count, dimension=dimension, dtype=dtype.str, file_size=size, units=units)
    offset = dataset.id.get_offset()
    if offset is None:  # never written: no storage allocated
        if count * dimension:
            raise UnsupportedFileError(f"{redact(path)}: dataset {name!r} has no data written")
        offset = 0
    check_shape(path, count, dimension, dtype, int(offset), size)
    return FileHeader(
        path=path, count=count, dimension=dimension, dtype=dtype.str, file_size=size, data_offset=int(offset)
    )


class Hdf5Format(NpyFormat):
    """One 2-D dataset (`hdf5_dataset`, default "train") of each HDF5 file."""

    name = "hdf5"
    extension = ".hdf5"

    def survey(self, folders: Sequence[str], checks: Checks) -> Survey:
        _h5py()
        return self.survey_files(folders, checks, self.read_hdf5_headers)

    def read_hdf5_headers(self, files: Sequence[FileEntry]) -> List[FileHeader]:
        """Each file's dataset, described through h5py (metadata only)."""
        return [self._header(path, size) for path, size in files]

    def _header(self, path: str, listed: Optional[int]) -> FileHeader:
        """One file's header (its size asked if the listing did not give it), read again on transient errors."""
        size = listed if listed is not None else self.storage.size(path)
        header: FileHeader = self._with_file(
            path, size, lambda file: describe_dataset(path, file, self.hdf5_dataset, size)
        )
        return header

    def read_piece(
        self, piece: Piece, header: FileHeader, out: np.ndarray, cancel: Optional[threading.Event] = None
    ) -> Optional[pd.DataFrame]:
        if not header.units:  # contiguous: exact byte ranges, as npy
            return super().read_piece(piece, header, out, cancel)
        self.storage.check_unchanged(header.path)
        read = lambda file: _read_rows(file[self.hdf5_dataset], piece, out)  # noqa: E731
        self._with_file(header.path, header.stored_bytes, read, cancel)
        return None

    def read_piece_into_rows(
        self, piece: Piece, header: FileHeader, target: RowTarget, cancel: Optional[threading.Event] = None
    ) -> Optional[pd.DataFrame]:
        """Contiguous: as npy; chunked: through h5py into a side buffer, then to the rows' places (a chunked dataset's
        rows are not at a byte range of the file, so npy's straight reads must not be used)."""
        if not header.units:
            return super().read_piece_into_rows(piece, header, target, cancel)
        return Format.read_piece_into_rows(self, piece, header, target, cancel)

    def _open(self, path: str, size: int, cancel: Optional[threading.Event]) -> Any:
        """The file as h5py reads it: local through fsspec, remote as a RangeFile, whose reads are the storage's own
        (checked, retried, bounded by the timeout); fsspec's remote files wait on socket timeouts only."""
        if self.storage.is_local:
            return self.storage.fs.open(path, "rb")
        return RangeFile(path, size, self.storage, cancel)

    def placement_bytes(self, piece: Piece, header: FileHeader, out_dtype: np.dtype) -> int:
        if not header.units:
            return super().placement_bytes(piece, header, out_dtype)
        return Format.placement_bytes(self, piece, header, out_dtype)

    def _with_file(self, path: str, size: int, action: Any, cancel: Optional[threading.Event] = None) -> Any:
        """action(h5py file), the file of `size` bytes opened through fsspec or as a RangeFile (whose reads retry
        themselves); an unreadable file refused."""
        h5py = _h5py()

        def attempt() -> Any:
            try:
                with self._open(path, size, cancel) as raw, collection_paused(not self.storage.is_local):
                    try:
                        file = h5py.File(raw, "r")
                    except OSError as exc:
                        if self.storage.is_local or "signature" in str(exc):
                            raise CorruptFileError(f"{redact(path)}: not a readable HDF5 file ({exc})") from exc
                        raise
                    with file:
                        return action(file)
            except Exception as exc:
                _drop_tracebacks(exc)
                raise

        return call_with_retries(attempt, f"reading {redact(path)} through h5py", self.storage.retry_policy, cancel)

    def transient_bytes(self, piece: Piece, header: FileHeader, out_dtype: np.dtype) -> int:
        """Contiguous: as npy; chunked: the chunks h5py decodes for the piece (and a cast copy), and remotely a
        RangeFile's block (a chunk and the read-ahead) twice while it is fetched."""
        if not header.units:
            return super().transient_bytes(piece, header, out_dtype)
        fetched = 0 if self.storage.is_local else 2 * (READ_AHEAD_BYTES + header.units[0] * header.row_bytes)
        return 2 * piece.rows * header.row_bytes + fetched


_PAUSE_LOCK = threading.Lock()
_pause = {"calls": 0, "was_enabled": False}  # remote h5py calls under way; whether the collector ran before them


@contextmanager
def collection_paused(pause: bool) -> Iterator[None]:
    """No automatic garbage collection while h5py reads a remote file (`pause`): h5py holds its global lock while it
    calls the file object, whose reads wait on the event loop's thread; a collection in that thread reaching an h5py
    object (whose dealloc takes the lock) deadlocks both. Counted, so that concurrent reads resume it once."""
    if not pause:
        yield
        return
    with _PAUSE_LOCK:
        if not _pause["calls"]:
            _pause["was_enabled"] = gc.isenabled()
            gc.disable()
        _pause["calls"] += 1
    try:
        yield
    finally:
        with _PAUSE_LOCK:
            _pause["calls"] -= 1
            if not _pause["calls"] and _pause["was_enabled"]:
                gc.enable()


def _drop_tracebacks(exc: BaseException) -> None:
    """Forget the tracebacks of an error out of h5py and of those it chains: they hold h5py's frames, and h5py
    crashes the interpreter at exit when such frames outlive it (a caller keeping the error)."""
    seen: Optional[BaseException] = exc
    visited = set()
    while seen is not None and id(seen) not in visited:  # a chain set by hand may loop
        visited.add(id(seen))
        seen.__traceback__ = None
        seen = seen.__cause__ or seen.__context__


def _read_rows(dataset: Any, piece: Piece, out: np.ndarray) -> None:
    """The piece's rows of a chunked dataset, through h5py (cast into `out` if dtypes differ)."""
    rows = np.s_[piece.piece_start : piece.piece_end]
    if out.dtype == dataset.dtype:
        dataset.read_direct(out, rows)
    else:
        cast_into(out, dataset[rows])
