"""1.8.1's `build_pieces` over a headers DataFrame, planned by this library's own planner."""

from typing import Any, List, Optional, Sequence

import pandas as pd

from .errors import InvalidArgumentError
from .header import FileHeader
from .pieces import iter_pieces

PIECE_COLUMNS = [
    "filename",
    "piece_start",
    "piece_end",
    "piece_length",
    "batch_id",
    "batch_start",
    "batch_end",
    "batch_length",
    "last_piece",
]


def build_pieces(
    headers: pd.DataFrame,
    batch_size: int,
    start: int,
    end: int,
    max_piece_size: int = 100_000,
    metadata_columns: Optional[Sequence[str]] = None,
) -> pd.DataFrame:
    """The pieces reading rows [start, end) of the files in `headers` (columns filename, count, count_before and
    the metadata columns), one row per piece: file-local piece rows, global batch rows, and the file's metadata."""
    metadata_columns = list(metadata_columns or [])
    _check_headers(headers, metadata_columns)
    files = [
        FileHeader(path=str(name), count=int(count), dimension=1, dtype="<f4")
        for name, count in zip(headers["filename"], headers["count"])
    ]
    end = min(sum(file.count for file in files), end)
    count_before = headers["count_before"].to_numpy(dtype="int64")
    rows: List[List[Any]] = []
    for piece in iter_pieces(files, batch_size, start, end, max_piece_size):
        batch_first = piece.piece_start + int(count_before[piece.file_index]) - piece.batch_start
        batch_length = min(batch_size, end - batch_first)
        metadata = [headers[column].iat[piece.file_index] for column in metadata_columns]
        rows.append(
            [
                piece.path,
                piece.piece_start,
                piece.piece_end,
                piece.rows,
                piece.batch_id,
                batch_first,
                batch_first + batch_length,
                batch_length,
                piece.last_piece,
                *metadata,
            ]
        )
    return pd.DataFrame(rows, columns=[*PIECE_COLUMNS, *metadata_columns])


def _check_headers(headers: pd.DataFrame, metadata_columns: Sequence[str]) -> None:
    """The columns must be there and count_before must be the running total of count."""
    missing = [column for column in ["filename", "count", "count_before", *metadata_columns] if column not in headers]
    if missing:
        raise InvalidArgumentError(f"headers: missing columns {missing}")
    counts = headers["count"].astype("int64")
    expected = counts.cumsum() - counts
    if (counts < 0).any() or not (headers["count_before"].astype("int64").to_numpy() == expected.to_numpy()).all():
        raise InvalidArgumentError("headers: count_before must be the sum of the counts of the files before each")
