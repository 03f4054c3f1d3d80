"""parquet_npy: embeddings in npy files, metadata in parquet files of another folder, paired by name.

Each npy file pairs with the parquet file of the same stem (its name without extension, and its folder relative to
the root) when every stem has its match; else with the parquet file carrying the same last number in its name
(as an integer: img_emb_10.npy pairs with metadata_0010.parquet) when each side's numbers are unique. Otherwise
the collection is refused (InconsistentCollectionError naming the first unmatched files), never paired by
position. Rows keep the npy files' sorted path order (1.8.1's, which defines the global row index `i`).
"""

import re
import threading
from collections import Counter
from typing import Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..errors import InconsistentCollectionError, InvalidArgumentError
from ..header import FileHeader
from ..pieces import Piece
from ..storage import FileEntry, redact
from .base import check_consistent
from .npy import NpyFormat
from .parquet import meta_bytes_per_row
from .parquet_io import ParquetIO, check_columns

UNMATCHED_SHOWN = 6  # unmatched file names an error lists
_NUMBER = re.compile(r"\d+")

Pair = Tuple[FileEntry, FileEntry]


class ParquetNpyFormat(NpyFormat):
    """npy embeddings with aligned parquet metadata: each npy file pairs with its parquet file by name."""

    name = "parquet_npy"
    extension = ".npy"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.metadata_folder:
            raise InvalidArgumentError("file_format='parquet_npy' needs metadata_folder (the folder of parquet files)")
        self.parquet = ParquetIO(self.storage)

    def read_headers(self, folders: Sequence[str]) -> List[FileHeader]:
        metadata_folder = str(self.metadata_folder)
        pairs = pair_files(
            self.list_files(folders), folders, self.list_files([metadata_folder], ".parquet"), metadata_folder
        )
        headers = self.read_npy_headers([npy for npy, _ in pairs])
        footers = self.parquet.read_footers([parquet for _, parquet in pairs])
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


def pair_files(
    embedding_files: Sequence[FileEntry],
    folders: Sequence[str],
    metadata_files: Sequence[FileEntry],
    metadata_folder: str,
) -> List[Pair]:
    """Each npy file, in the given order, with its parquet file (the rule in the module docstring)."""
    npy_names = [_relative(path, folders) for path, _ in embedding_files]
    parquet_names = [_relative(path, [metadata_folder]) for path, _ in metadata_files]
    npy_keys, parquet_keys = _pairing_keys(_stems(npy_names, ".npy"), _stems(parquet_names, ".parquet"))
    matched = _match(npy_keys, parquet_keys)
    if matched is None:
        unmatched = _unmatched(npy_keys, parquet_keys, npy_names) + _unmatched(parquet_keys, npy_keys, parquet_names)
        shown = ", ".join(unmatched[:UNMATCHED_SHOWN]) + (" ..." if len(unmatched) > UNMATCHED_SHOWN else "")
        raise InconsistentCollectionError(
            f"{len(embedding_files)} npy files in {redact(str(list(folders)))} and {len(metadata_files)} parquet "
            f"files in {redact(metadata_folder)} pair neither by name nor by the last number in their names "
            f"(unmatched: {shown}): they must pair one to one"
        )
    return [(npy, metadata_files[k]) for npy, k in zip(embedding_files, matched)]


def _pairing_keys(npy_stems: List[str], parquet_stems: List[str]) -> Tuple[List[Hashable], List[Hashable]]:
    """The stems if they match; else the last numbers, if every name has one, unique on its side; else the stems."""
    if set(npy_stems) != set(parquet_stems):
        npy_numbers, parquet_numbers = _last_numbers(npy_stems), _last_numbers(parquet_stems)
        if npy_numbers is not None and parquet_numbers is not None:
            return list(npy_numbers), list(parquet_numbers)
    return list(npy_stems), list(parquet_stems)


def _match(left: Sequence[Hashable], right: Sequence[Hashable]) -> Optional[List[int]]:
    """For each left key, the index of the same key on the right; None unless the keys pair one to one."""
    where: Dict[Hashable, int] = {key: k for k, key in enumerate(right)}
    if len(where) != len(right) or len(set(left)) != len(left) or set(left) != set(where):
        return None
    return [where[key] for key in left]


def _unmatched(keys: Sequence[Hashable], other: Sequence[Hashable], names: Sequence[str]) -> List[str]:
    """The names whose key is missing on the other side or repeated on their own."""
    counts, others = Counter(keys), set(other)
    return [name for key, name in zip(keys, names) if counts[key] > 1 or key not in others]


def _relative(path: str, roots: Sequence[str]) -> str:
    """The path relative to the (longest) root holding it."""
    for root in sorted((root.rstrip("/") + "/" for root in roots), key=len, reverse=True):
        if path.startswith(root):
            return path[len(root) :]
    return path.rsplit("/", 1)[-1]


def _stems(names: Sequence[str], extension: str) -> List[str]:
    """The names without their extension."""
    return [name[: -len(extension)] if name.endswith(extension) else name for name in names]


def _last_numbers(stems: Sequence[str]) -> Optional[List[int]]:
    """The last number in each file name (not its folders), as an integer; None if one has none or two share one."""
    found = [_NUMBER.findall(stem.rsplit("/", 1)[-1]) for stem in stems]
    numbers = [int(digits[-1]) for digits in found if digits]
    return numbers if len(numbers) == len(stems) and len(set(numbers)) == len(numbers) else None
