"""The interface every file format implements, and the checks shared by all of them."""

import threading
from abc import ABC, abstractmethod
from collections import Counter
from typing import Callable, List, Optional, Sequence, Set

import numpy as np
import pandas as pd

from ..batches import RowTarget
from ..errors import EmbeddingReaderError, InconsistentCollectionError, NoEmbeddingsFoundError
from ..header import FileHeader
from ..pieces import Piece, units_covering
from ..scratch import side_buffer
from ..storage import FileEntry, Storage, redact
from ..storage.listing import extension_pattern, pattern_label
from .checks import HEADER, Checks, Survey


class Format(ABC):
    """A file format: finds its files, reads their headers, and reads one piece into a batch slice.

    Subclasses set `name` and `extension` and implement `survey` (the open's steps, against a Checks) and
    `read_piece`; listing, planning, parallel fetching, the RAM budget, retries and batch assembly live elsewhere.
    `file_pattern` (a glob of file names) chooses the files instead of the extension.
    """

    name: str = ""
    extension: str = ""
    holds_metadata: bool = False  # whether meta columns can be read from its files

    def __init__(
        self,
        storage: Storage,
        embedding_column: str = "embedding",
        meta_columns: Optional[Sequence[str]] = None,
        metadata_folder: Optional[str] = None,
        file_pattern: Optional[str] = None,
        hdf5_dataset: str = "train",
    ):
        self.storage = storage
        self.hdf5_dataset = hdf5_dataset
        self.file_pattern = file_pattern or extension_pattern(self.extension)
        self.embedding_column = embedding_column
        self.meta_columns = list(meta_columns or [])
        self.metadata_folder = metadata_folder

    def read_headers(self, folders: Sequence[str]) -> List[FileHeader]:
        """Headers of every file of the collection, in reading order, validated and consistent."""
        return self.survey(folders, Checks()).consistent

    @abstractmethod
    def survey(self, folders: Sequence[str], checks: Checks) -> Survey:
        """List, read and check the collection's files, every problem sent to `checks` (see checks.py)."""

    @abstractmethod
    def read_piece(
        self, piece: Piece, header: FileHeader, out: np.ndarray, cancel: Optional[threading.Event] = None
    ) -> Optional[pd.DataFrame]:
        """Write the piece's embeddings into `out` (its batch slice) and return its meta columns, if any."""

    def read_piece_into_rows(
        self, piece: Piece, header: FileHeader, target: RowTarget, cancel: Optional[threading.Event] = None
    ) -> Optional[pd.DataFrame]:
        """Like read_piece, but row k of the piece goes to row target.rows[k] of target.array (a shuffled read's
        window): read into a side buffer, then copied to its places. Formats that can read into places override it."""
        array = target.array
        with side_buffer(self.placement_bytes(piece, header, array.dtype), cancel) as raw:
            rows = raw.view(array.dtype).reshape(piece.rows, array.shape[1])
            meta = self.read_piece(piece, header, rows, cancel)
            target.place(rows)
        return meta

    def placement_bytes(self, piece: Piece, header: FileHeader, out_dtype: np.dtype) -> int:
        """Memory a shuffled read's piece needs beyond transient_bytes on its way to its rows' places: the side
        buffer read_piece_into_rows reads it into."""
        return piece.rows * header.dimension * out_dtype.itemsize

    def read_finished(self) -> None:
        """A read ended (done, stopped or failed): drop what its pieces shared, so the reader holds nothing."""
        return None  # npy pieces share nothing

    def transient_bytes(self, piece: Piece, header: FileHeader, out_dtype: np.dtype) -> int:
        """Memory a piece needs beyond its batch slice while being read (decode buffers, metadata)."""
        metadata_groups = header.parquet.row_groups if header.parquet else ()
        return decoded_rows(piece, metadata_groups) * header.meta_bytes_per_row

    def survey_files(
        self, folders: Sequence[str], checks: Checks, read: Callable[[Sequence[FileEntry]], List[FileHeader]]
    ) -> Survey:
        """The survey of self-contained files: list them, read each one's header with `read`, compare them."""
        files = self.list_files(folders, checks=checks)
        headers = checks.each(read, files, HEADER)
        consistent = check_consistent([header for header in headers if header is not None], checks)
        return Survey(files, headers, consistent)

    def list_files(
        self, folders: Sequence[str], extension: str = "", checks: Optional[Checks] = None
    ) -> List[FileEntry]:
        """(path, size) of every file matching the file pattern (or with `extension`) under the folders, all paths
        sorted together (as 1.8.1 orders them: a row's global index does not depend on the order of the folders)."""
        checks = checks or Checks()
        pattern = extension_pattern(extension) if extension else self.file_pattern
        files: Set[FileEntry] = set()
        for folder in folders:
            files.update(checks.attempt(self.find_files, folder, pattern) or [])
        return sorted(files)

    def find_files(self, folder: str, pattern: str) -> List[FileEntry]:
        """The files of one folder (or the folder itself, a file); a missing folder, or one without any such file,
        is refused."""
        found = self.storage.find(folder, pattern=pattern)
        if not found:
            raise NoEmbeddingsFoundError(f"no {pattern_label(pattern)} file found in {redact(folder)}")
        return found


def check_consistent(headers: Sequence[FileHeader], checks: Optional[Checks] = None) -> List[FileHeader]:
    """Drop empty files and make sure every other file has the same dimension and dtype (float widths may mix:
    each file is cast into the output dtype, as 1.8.1 reads them). Compared with the first file when strict, with
    the most common kind of file when collecting (so that the odd file out is the one reported)."""
    checks = checks or Checks()
    non_empty = [header for header in headers if header.count > 0]
    if not non_empty:
        if headers:
            checks.report(
                NoEmbeddingsFoundError(f"all {len(headers)} files are empty (0 rows), e.g. {redact(headers[0].path)}")
            )
        return []
    reference = _most_common(non_empty) if checks.collect else non_empty[0]
    for header in non_empty:
        mismatch = _mismatch(header, reference)
        if mismatch is not None:
            checks.report(mismatch)
    return non_empty


def _mismatch(header: FileHeader, reference: FileHeader) -> Optional[EmbeddingReaderError]:
    """Why a file cannot be read with the reference file, if it cannot."""
    if header.dimension != reference.dimension:
        return InconsistentCollectionError(
            f"dimension {header.dimension} in {redact(header.path)} differs from "
            f"{reference.dimension} in {redact(reference.path)}"
        )
    if header.dtype != reference.dtype and not _both_floats(header, reference):
        return InconsistentCollectionError(
            f"dtype {np.dtype(header.dtype)} in {redact(header.path)} differs from "
            f"{np.dtype(reference.dtype)} in {redact(reference.path)}"
        )
    return None


def _most_common(headers: Sequence[FileHeader]) -> FileHeader:
    """The first file of the most common (dimension, dtype)."""
    usual = Counter((header.dimension, header.dtype) for header in headers).most_common(1)[0][0]
    return next(header for header in headers if (header.dimension, header.dtype) == usual)


def _both_floats(header: FileHeader, other: FileHeader) -> bool:
    return header.numpy_dtype.kind == other.numpy_dtype.kind == "f"


def decoded_rows(piece: Piece, row_groups: Sequence[int]) -> int:
    """Rows decoded to read a piece: those of the whole row groups it touches (none given: its own)."""
    if not row_groups:
        return piece.rows
    covering, _ = units_covering(row_groups, piece.piece_start, piece.piece_end)
    return sum(row_groups[group] for group in covering)
