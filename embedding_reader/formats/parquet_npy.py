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
from dataclasses import dataclass
from typing import Any, Dict, Hashable, List, Optional, Sequence, Tuple

import pandas as pd
import pyarrow.parquet as pq

from ..errors import InconsistentCollectionError, InvalidArgumentError
from ..header import FileHeader, ParquetFooter
from ..pieces import Piece
from ..storage import FileEntry, redact
from .base import check_consistent
from .checks import HEADER, METADATA, PAIRING, Checks, Survey
from .npy import NpyFormat
from .parquet import meta_bytes_per_row
from .parquet_footer import check_columns
from .parquet_io import ParquetIO

UNMATCHED_SHOWN = 6  # unmatched file names an error lists
_NUMBER = re.compile(r"\d+")

Pair = Tuple[FileEntry, FileEntry]
Footer = Tuple[ParquetFooter, pq.FileMetaData]


class ParquetNpyFormat(NpyFormat):
    """npy embeddings with aligned parquet metadata: each npy file pairs with its parquet file by name."""

    name = "parquet_npy"
    extension = ".npy"
    holds_metadata = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.metadata_folder:
            raise InvalidArgumentError("file_format='parquet_npy' needs metadata_folder (the folder of parquet files)")
        self.parquet = ParquetIO(self.storage)

    def survey(self, folders: Sequence[str], checks: Checks) -> Survey:
        metadata_folder = str(self.metadata_folder)
        files = self.list_files(folders, checks=checks)
        metadata_files = self.list_files([metadata_folder], ".parquet", checks)
        pairing = match_files(files, folders, metadata_files, metadata_folder)
        if pairing.error is not None:
            checks.report(pairing.error)
        headers = checks.each(self.read_npy_headers, files, HEADER)
        metadata_of = {npy: metadata_files[k] for (npy, _), k in zip(files, pairing.matched) if k is not None}
        footers = self._footers([*metadata_of.values(), *(metadata_files[k] for k in pairing.unmatched)], checks)
        paired = [self._paired(header, metadata_of, footers, checks) for header in headers]
        survey = Survey(files, paired, check_consistent([h for h in paired if h is not None], checks), metadata_files)
        survey.metadata_of = {npy: path for npy, (path, _) in metadata_of.items()}
        return survey

    def _footers(self, metadata_files: Sequence[FileEntry], checks: Checks) -> Dict[str, Footer]:
        """The footers of the metadata files (paired ones first, in the npy files' order), by path."""
        footers = checks.each(self.parquet.read_footers, metadata_files, METADATA)
        return {path: footer for (path, _), footer in zip(metadata_files, footers) if footer is not None}

    def _paired(
        self,
        header: Optional[FileHeader],
        metadata_of: Dict[str, FileEntry],
        footers: Dict[str, Footer],
        checks: Checks,
    ) -> Optional[FileHeader]:
        """The npy header joined with its metadata file's footer when both read well; else what there is of it."""
        if header is None or header.path not in metadata_of or metadata_of[header.path][0] not in footers:
            return header
        footer = footers[metadata_of[header.path][0]]
        return checks.attempt(self.pair, header, *footer, step=PAIRING, path=header.path) or header

    def pair(self, header: FileHeader, footer: ParquetFooter, metadata: pq.FileMetaData) -> FileHeader:
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

    def read_piece_meta(
        self, piece: Piece, header: FileHeader, cancel: Optional[threading.Event] = None
    ) -> Optional[pd.DataFrame]:
        """The piece's meta columns, from its paired parquet file."""
        if not self.meta_columns:
            return None
        assert header.parquet is not None
        table = self.parquet.read_rows(header.parquet, piece.piece_start, piece.piece_end, self.meta_columns, cancel)
        meta: pd.DataFrame = table.to_pandas()
        return meta


@dataclass(frozen=True)
class Pairing:
    """For each npy file the index of its parquet file (None: unmatched), the parquet files no npy file pairs with,
    and the error refusing the collection when any file is unmatched."""

    matched: List[Optional[int]]
    unmatched: List[int]
    error: Optional[InconsistentCollectionError]


def pair_files(
    embedding_files: Sequence[FileEntry],
    folders: Sequence[str],
    metadata_files: Sequence[FileEntry],
    metadata_folder: str,
) -> List[Pair]:
    """Each npy file, in the given order, with its parquet file (the rule in the module docstring)."""
    pairing = match_files(embedding_files, folders, metadata_files, metadata_folder)
    if pairing.error is not None:
        raise pairing.error
    return [(npy, metadata_files[k]) for npy, k in zip(embedding_files, pairing.matched) if k is not None]


def match_files(
    embedding_files: Sequence[FileEntry],
    folders: Sequence[str],
    metadata_files: Sequence[FileEntry],
    metadata_folder: str,
) -> Pairing:
    """Which parquet file each npy file pairs with, by the rule in the module docstring; every file that does not
    pair one to one is named in the error (the first UNMATCHED_SHOWN of them)."""
    npy_names = [_relative(path, folders) for path, _ in embedding_files]
    parquet_names = [_relative(path, [metadata_folder]) for path, _ in metadata_files]
    npy_keys, parquet_keys = _pairing_keys(_stems(npy_names, ".npy"), _stems(parquet_names, ".parquet"))
    matched, unmatched_parquet = _match(npy_keys, parquet_keys), _unmatched(parquet_keys, npy_keys)
    unmatched = [npy_names[i] for i, k in enumerate(matched) if k is None] + [
        parquet_names[k] for k in unmatched_parquet
    ]
    if not unmatched:
        return Pairing(matched, [], None)
    shown = ", ".join(unmatched[:UNMATCHED_SHOWN]) + (" ..." if len(unmatched) > UNMATCHED_SHOWN else "")
    error = InconsistentCollectionError(
        f"{len(embedding_files)} npy files in {redact(str(list(folders)))} and {len(metadata_files)} parquet "
        f"files in {redact(metadata_folder)} pair neither by name nor by the last number in their names "
        f"(unmatched: {shown}): they must pair one to one"
    )
    return Pairing(matched, unmatched_parquet, error)


def _pairing_keys(npy_stems: List[str], parquet_stems: List[str]) -> Tuple[List[Hashable], List[Hashable]]:
    """The stems if they match; else the last numbers, if every name has one, unique on its side; else the stems."""
    if set(npy_stems) != set(parquet_stems):
        npy_numbers, parquet_numbers = _last_numbers(npy_stems), _last_numbers(parquet_stems)
        if npy_numbers is not None and parquet_numbers is not None:
            return list(npy_numbers), list(parquet_numbers)
    return list(npy_stems), list(parquet_stems)


def _match(left: Sequence[Hashable], right: Sequence[Hashable]) -> List[Optional[int]]:
    """For each left key, the index of the same key on the right if it is on each side once; else None."""
    where: Dict[Hashable, int] = {key: k for k, key in enumerate(right)}
    left_counts, right_counts = Counter(left), Counter(right)
    return [where[key] if left_counts[key] == 1 and right_counts.get(key) == 1 else None for key in left]


def _unmatched(keys: Sequence[Hashable], other: Sequence[Hashable]) -> List[int]:
    """The indices of the keys missing on the other side or repeated on their own."""
    counts, others = Counter(keys), set(other)
    return [k for k, key in enumerate(keys) if counts[key] > 1 or key not in others]


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
