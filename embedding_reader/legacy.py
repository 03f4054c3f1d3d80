"""1.8.1's shapes of the reader's own facts, for scripts written against it: its headers DataFrame and the
format reader it kept as `EmbeddingReader.reader`. Views only: the headers read at open stay the truth."""

from typing import TYPE_CHECKING, Any, List, Sequence

import pandas as pd

from .header import FileHeader
from .storage import Storage

if TYPE_CHECKING:
    from .reader import EmbeddingReader

NPY_COLUMNS = ["filename", "count", "count_before", "dimension", "dtype", "header_offset", "byte_per_item"]
PARQUET_COLUMNS = ["filename", "count", "count_before"]
SHARED_ATTRIBUTES = {
    "embeddings_folder",
    "count",
    "dimension",
    "dtype",
    "byte_per_item",
    "total_size",
    "nb_files",
    "max_file_size",
}


def user_path(storage: Storage, path: str) -> str:
    """A path as 1.8.1 named it: local paths as they are, remote ones with their protocol (s3://bucket/key)."""
    return path if storage.is_local else storage.fs.unstrip_protocol(path)


def headers_frame(storage: Storage, file_format: str, headers: Sequence[FileHeader]) -> pd.DataFrame:
    """One row per non-empty file, with 1.8.1's columns for the format (parquet_npy and the formats of fixed-size
    rows: npy's)."""
    count_before = 0
    rows: List[List[Any]] = []
    for header in headers:
        row: List[Any] = [user_path(storage, header.path), header.count, count_before]
        if file_format != "parquet":
            row += [header.dimension, header.numpy_dtype.str, header.data_offset, header.row_bytes]
        if file_format == "parquet_npy":
            assert header.parquet is not None
            row.append(user_path(storage, header.parquet.path))
        rows.append(row)
        count_before += header.count
    columns = {"parquet": PARQUET_COLUMNS, "parquet_npy": [*NPY_COLUMNS, "metadata_path"]}.get(file_format, NPY_COLUMNS)
    return pd.DataFrame(rows, columns=columns)


class FormatReaderView:
    """What 1.8.1 exposed as `EmbeddingReader.reader`: the collection's sizes and a headers DataFrame."""

    def __init__(self, reader: "EmbeddingReader"):
        self._reader = reader
        self.headers = headers_frame(reader.storage, reader.file_format, reader.headers)

    @property
    def fs(self) -> Any:
        """The fsspec filesystem the files are read from."""
        return self._reader.storage.fs

    def __getattr__(self, name: str) -> Any:
        if name in SHARED_ATTRIBUTES:
            return getattr(self._reader, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._reader(*args, **kwargs)
