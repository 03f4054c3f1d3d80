"""parquet: embeddings in a list or fixed_size_list column, metadata in the other columns of the same file."""

import threading
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..casts import cast_into
from ..errors import CorruptFileError, UnsupportedFileError
from ..header import FileHeader, ParquetFooter
from ..pieces import Piece
from ..storage import FileEntry, redact
from .base import Format, decoded_rows
from .checks import Checks, Survey
from .parquet_footer import check_columns, leaf_columns
from .parquet_io import ParquetIO
from .parquet_pages import max_rows

DECODE_OVERHEAD = 2  # compressed chunk + decoded arrays, while a row group is being decoded
STRING_OVERHEAD_BYTES = 64  # a pandas object cell (a Python str) costs about this beyond its characters


def copy_embeddings(column: pa.ChunkedArray, out: np.ndarray, where: str) -> None:
    """Write a list/fixed_size_list column into `out` (n, dimension), one chunk at a time, never row by row."""
    row = 0
    for chunk in column.chunks:
        cast_into(out[row : row + len(chunk)], embedding_matrix(chunk, out.shape[1], where))
        row += len(chunk)


def embedding_matrix(array: pa.Array, dimension: int, where: str) -> np.ndarray:
    """A list/fixed_size_list array as an (n, dimension) numpy view of arrow's flat values buffer."""
    if array.null_count:
        raise CorruptFileError(f"{where}: {array.null_count} null embeddings")
    if not pa.types.is_fixed_size_list(array.type):
        lengths = np.diff(np.asarray(array.offsets))
        if len(lengths) and (lengths.min() != dimension or lengths.max() != dimension):
            raise CorruptFileError(
                f"{where}: ragged embeddings, lengths {lengths.min()} to {lengths.max()}, expected {dimension}"
            )
    values = array.flatten()
    if values.null_count:
        raise CorruptFileError(f"{where}: {values.null_count} null values inside embeddings")
    if len(values) != len(array) * dimension:
        raise CorruptFileError(f"{where}: {len(values)} values for {len(array)} embeddings of dimension {dimension}")
    matrix: np.ndarray = values.to_numpy(zero_copy_only=False).reshape(len(array), dimension)
    return matrix


def meta_bytes_per_row(metadata: pq.FileMetaData, columns: Sequence[str]) -> int:
    """Estimated RAM per row of the meta columns once in pandas, from the footer's uncompressed sizes."""
    if not columns or metadata.num_rows == 0:
        return 0
    leaves = leaf_columns(metadata, columns)
    total = sum(
        metadata.row_group(g).column(j).total_uncompressed_size for g in range(metadata.num_row_groups) for j in leaves
    )
    return int(total / metadata.num_rows) + STRING_OVERHEAD_BYTES * len(columns)


def check_embedding_chunks(path: str, metadata: pq.FileMetaData, column: str, dimension: int) -> None:
    """Refuse row groups whose embedding chunk cannot hold their rows: `dimension` values a row in the footer's
    count, and no more rows than its uncompressed bytes can encode (see parquet_pages.max_rows); checked before
    any buffer is sized from the rows claimed."""
    leaf = leaf_columns(metadata, [column])[0]
    for group in range(metadata.num_row_groups):
        rows, chunk = metadata.row_group(group).num_rows, metadata.row_group(group).column(leaf)
        where = f"{redact(path)}: row group {group} column {column!r}"
        if chunk.num_values != rows * dimension:
            raise CorruptFileError(f"{where}: {chunk.num_values} values for {rows} rows of dimension {dimension}")
        if rows > max_rows(dimension, chunk.total_uncompressed_size):
            raise CorruptFileError(f"{where}: {chunk.total_uncompressed_size} bytes cannot hold {rows} rows")


class ParquetFormat(Format):
    """Embeddings in a parquet column, plus any other columns as metadata; read by row groups."""

    name = "parquet"
    extension = ".parquet"
    holds_metadata = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parquet = ParquetIO(self.storage)

    def survey(self, folders: Sequence[str], checks: Checks) -> Survey:
        return self.survey_files(folders, checks, self.read_file_headers)

    def read_file_headers(self, files: Sequence[FileEntry]) -> List[FileHeader]:
        """Headers of the parquet files, their footers read concurrently, each checked (see file_header)."""
        return [self.file_header(footer, metadata) for footer, metadata in self.parquet.read_footers(files)]

    def file_header(self, footer: ParquetFooter, metadata: pq.FileMetaData) -> FileHeader:
        """One file's header from its footer, after checking its columns and embedding type."""
        path = footer.path
        check_columns(path, metadata, [self.embedding_column, *self.meta_columns])
        value_type, dimension = self._embedding_type(path, metadata)
        if metadata.num_rows and not dimension:
            raise UnsupportedFileError(f"{redact(path)}: embeddings of dimension 0 ({metadata.num_rows} empty lists)")
        check_embedding_chunks(path, metadata, self.embedding_column, dimension)
        return FileHeader(
            path=path,
            count=metadata.num_rows,
            dimension=dimension,
            dtype=np.dtype(value_type.to_pandas_dtype()).str,
            file_size=footer.file_size,
            parquet=footer,
            units=footer.row_groups,
            meta_bytes_per_row=meta_bytes_per_row(metadata, self.meta_columns),
        )

    def _embedding_type(self, path: str, metadata: pq.FileMetaData) -> Tuple[pa.DataType, int]:
        """(value type, dimension) of the embedding column, the dimension read from the footer alone."""
        column_type = metadata.schema.to_arrow_schema().field(self.embedding_column).type
        is_list = pa.types.is_list(column_type) or pa.types.is_large_list(column_type)
        if not (is_list or pa.types.is_fixed_size_list(column_type)):
            raise UnsupportedFileError(f"{redact(path)}: column {self.embedding_column!r} is {column_type}, not a list")
        value_type = column_type.value_type
        if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
            raise UnsupportedFileError(f"{redact(path)}: embedding values are {value_type}, not numbers")
        if pa.types.is_fixed_size_list(column_type):
            return value_type, column_type.list_size
        return value_type, self._list_dimension(path, metadata)

    def _list_dimension(self, path: str, metadata: pq.FileMetaData) -> int:
        """Dimension of a variable-size list column: leaf values per row, which must be the same in every row group."""
        leaf = leaf_columns(metadata, [self.embedding_column])[0]
        dimensions = set()
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            if row_group.num_rows:
                values, rows = row_group.column(leaf).num_values, row_group.num_rows
                if values % rows:
                    raise CorruptFileError(
                        f"{redact(path)}: row group {group} has {values} values for {rows} rows (ragged)"
                    )
                dimensions.add(values // rows)
        if len(dimensions) > 1:
            raise CorruptFileError(f"{redact(path)}: embeddings of dimensions {sorted(dimensions)} in one file")
        return dimensions.pop() if dimensions else 0

    def read_piece(
        self, piece: Piece, header: FileHeader, out: np.ndarray, cancel: Optional[threading.Event] = None
    ) -> Optional[pd.DataFrame]:
        footer = header.parquet
        assert footer is not None
        first, last = piece.piece_start, piece.piece_end
        dtype = np.dtype(header.dtype)
        direct = self.parquet.read_embeddings(footer, first, self.embedding_column, dtype, out, cancel)
        columns = self.meta_columns if direct else [self.embedding_column, *self.meta_columns]
        if not columns:
            return None
        table = self.parquet.read_rows(footer, first, last, columns, cancel, 0 if direct else header.dimension)
        if not direct:
            copy_embeddings(table.column(self.embedding_column), out, f"{redact(header.path)} rows [{first}, {last})")
        return table.select(self.meta_columns).to_pandas() if self.meta_columns else None

    def read_finished(self) -> None:
        self.parquet.drop_shared()

    def transient_bytes(self, piece: Piece, header: FileHeader, out_dtype: np.dtype) -> int:
        """The compressed column chunks and the decoded row groups, about twice their stored bytes."""
        embeddings = DECODE_OVERHEAD * decoded_rows(piece, header.units) * header.row_bytes
        return embeddings + super().transient_bytes(piece, header, out_dtype)
