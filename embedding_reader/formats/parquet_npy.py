"""parquet_npy: embeddings in npy files, metadata in parquet files of another folder, paired in sorted order."""

import threading
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import InconsistentCollectionError, InvalidArgumentError
from ..header import FileHeader
from ..pieces import Piece
from ..storage import redact
from .base import check_consistent
from .npy import NpyFormat
from .parquet import meta_bytes_per_row
from .parquet_io import ParquetIO, check_columns


class ParquetNpyFormat(NpyFormat):
    """npy embeddings with aligned parquet metadata: the i-th npy file pairs with the i-th parquet file."""

    name = "parquet_npy"
    extension = ".npy"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.metadata_folder:
            raise InvalidArgumentError("file_format='parquet_npy' needs metadata_folder (the folder of parquet files)")
        self.parquet = ParquetIO(self.storage)

    def read_headers(self, folders: Sequence[str]) -> List[FileHeader]:
        embedding_files = self.list_files(folders)
        metadata_files = self.list_files([self.metadata_folder], ".parquet")  # type: ignore[list-item]
        if len(embedding_files) != len(metadata_files):
            raise InconsistentCollectionError(
                f"{len(embedding_files)} npy files in {redact(str(folders))} but {len(metadata_files)} parquet "
                f"files in {redact(str(self.metadata_folder))}: they must pair one to one"
            )
        headers = self.read_npy_headers(embedding_files)
        footers = self.parquet.read_footers(metadata_files)
        return check_consistent([self.pair(header, *footer) for header, footer in zip(headers, footers)])

    def pair(self, header: FileHeader, footer, metadata) -> FileHeader:
        """The npy header joined with its metadata file's footer, after checking they hold the same rows."""
        if metadata.num_rows != header.count:
            raise InconsistentCollectionError(
                f"{redact(header.path)} has {header.count} rows but its metadata {redact(footer.path)} "
                f"has {metadata.num_rows}"
            )
        check_columns(footer.path, metadata, self.meta_columns)
        return FileHeader(
            path=header.path,
            count=header.count,
            dimension=header.dimension,
            dtype=header.dtype,
            file_size=header.file_size,
            data_offset=header.data_offset,
            parquet=footer,
            meta_bytes_per_row=meta_bytes_per_row(metadata, self.meta_columns),
        )

    def read_finished(self) -> None:
        self.parquet.drop_shared()

    def read_piece(
        self, piece: Piece, header: FileHeader, out: np.ndarray, cancel: Optional[threading.Event] = None
    ) -> Optional[pd.DataFrame]:
        self.read_rows(header, piece.piece_start, out, cancel)
        if not self.meta_columns:
            return None
        assert header.parquet is not None
        table = self.parquet.read_rows(header.parquet, piece.piece_start, piece.piece_end, self.meta_columns, cancel)
        return table.to_pandas()
