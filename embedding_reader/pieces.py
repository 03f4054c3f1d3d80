"""The planner: which rows of which file go into which batch, cut into pieces of bounded size.

A piece is the unit of work of the pipeline: one contiguous row range of one file that lands in
one contiguous row range of one batch. Pieces never cross a file or a batch boundary, never split
a file's read unit (a parquet row group) unless a batch boundary forces it, and hold at most
`max_piece_size` rows unless a single read unit is larger.
"""

import bisect
import numbers
from dataclasses import dataclass
from itertools import accumulate
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

from .errors import InvalidArgumentError
from .header import FileHeader


@dataclass(frozen=True)
class Piece:
    """Rows [piece_start, piece_end) of file `file_index` (`path`) go to rows [batch_start, batch_end) of `batch_id`."""

    file_index: int
    path: str
    piece_start: int
    piece_end: int
    batch_id: int
    batch_start: int
    batch_end: int
    last_piece: bool

    @property
    def rows(self) -> int:
        """Number of rows in the piece."""
        return self.piece_end - self.piece_start


def build_pieces(
    headers: Sequence[FileHeader],
    batch_size: int,
    start: int = 0,
    end: Optional[int] = None,
    max_piece_size: int = 100_000,
) -> List[Piece]:
    """Plan the read of global rows [start, end) of the files in `headers` (in order) into batches.

    Returns the pieces in reading order; `last_piece` marks the piece that completes its batch.
    """
    return list(iter_pieces(headers, batch_size, start, end, max_piece_size))


def iter_pieces(
    headers: Sequence[FileHeader],
    batch_size: int,
    start: int = 0,
    end: Optional[int] = None,
    max_piece_size: int = 100_000,
) -> Iterator[Piece]:
    """Lazy form of build_pieces, so billions of rows never need a list of every piece."""
    total = sum(header.count for header in headers)
    _check_plan_arguments(batch_size, start, end, max_piece_size)
    end = total if end is None else min(end, total)
    if start > end:
        raise InvalidArgumentError(f"start must be in [0, end={end}], got start={start}")
    return place_segments(headers, [(start, end)], batch_size, max_piece_size, end - start)


def place_segments(
    headers: Sequence[FileHeader],
    segments: Iterable[Tuple[int, int]],
    batch_size: int,
    max_piece_size: int,
    total: int,
    first_position: int = 0,
) -> Iterator[Piece]:
    """Pieces reading the global row ranges `segments`, one after the other, into consecutive positions of batches
    of `batch_size` rows (position p is row p % batch_size of batch p // batch_size), from `first_position` on;
    `total` is the last position of the whole plan (its last batch may be short). A sequential read is the single
    segment [start, end); a shuffled one places permuted blocks."""
    file_starts = [0, *accumulate(header.count for header in headers)]
    layout = _Layout(batch_size, total)
    position = first_position
    for first, last in segments:
        row, index = first, bisect.bisect_right(file_starts, first) - 1
        while row < last:
            stop = min(last, file_starts[index + 1])
            yield from _file_pieces(
                index, headers[index], file_starts[index], row, stop, position, layout, max_piece_size
            )
            position += stop - row
            row, index = stop, index + 1


def _check_plan_arguments(batch_size: int, start: int, end: Optional[int], max_piece_size: int) -> None:
    """Reject arguments that would make an empty, endless or negative plan."""
    for name, value in (("batch_size", batch_size), ("max_piece_size", max_piece_size)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
    for name, value in (("start", start), ("end", 0 if end is None else end)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
            raise InvalidArgumentError(f"{name} must be an integer >= 0, got {value!r}")


@dataclass(frozen=True)
class _Layout:
    """Batches of `batch_size` positions over [0, total)."""

    batch_size: int
    total: int

    def batch_end(self, position: int) -> int:
        """The first position after the batch holding `position`."""
        return min(position - position % self.batch_size + self.batch_size, self.total)


def _file_pieces(
    index: int,
    header: FileHeader,
    file_offset: int,
    first: int,
    last: int,
    position: int,
    layout: _Layout,
    max_piece_size: int,
) -> Iterator[Piece]:
    """Pieces for global rows [first, last) of one file placed from `position` on, cut at chunk and batch ends."""
    chunk_ends = _chunk_ends(header, first - file_offset, last - file_offset, max_piece_size)
    row = first
    for chunk_end in (file_offset + end for end in chunk_ends):
        while row < chunk_end:
            batch_end = layout.batch_end(position)
            stop = min(chunk_end, row + batch_end - position)
            offset = position % layout.batch_size
            yield Piece(
                file_index=index,
                path=header.path,
                piece_start=row - file_offset,
                piece_end=stop - file_offset,
                batch_id=position // layout.batch_size,
                batch_start=offset,
                batch_end=offset + stop - row,
                last_piece=position + stop - row == batch_end,
            )
            position += stop - row
            row = stop


def _chunk_ends(header: FileHeader, first: int, last: int, max_piece_size: int) -> Iterator[int]:
    """File-local ends of the chunks covering [first, last): read units grouped up to max_piece_size rows.

    Lazy: a file claiming billions of rows costs no memory until its pieces are actually read.
    """
    if not header.units:
        yield from range(min(first + max_piece_size, last), last, max_piece_size)
        yield last
        return
    chunk_start = chunk_end = first
    for unit_end in (min(end, last) for end in accumulate(header.units) if end > first):
        if chunk_end > chunk_start and unit_end - chunk_start > max_piece_size:
            yield chunk_end
            chunk_start = chunk_end
        chunk_end = unit_end
        if unit_end == last:
            break
    yield last


def split_first_batch(pieces: Iterable[Piece], headers: Sequence[FileHeader], max_rows: int) -> Iterator[Piece]:
    """The plan with the first batch re-cut into pieces of at most `max_rows` rows (parquet files: at row-group
    boundaries only), so that every thread works on the first batch and it arrives sooner; later batches keep
    their pieces. Each file's share of the batch is cut afresh, not each planned piece: pieces of 5461 rows cut
    to 1563 would leave a 772-row remainder each and more pieces than threads. `max_rows` must not exceed the
    plan's own piece size. Only the first and last piece of each file's share are held, never the whole batch."""
    head: Optional[Piece] = None
    tail: Optional[Piece] = None
    plan = iter(pieces)
    for piece in plan:
        if head is not None and tail is not None and (piece.batch_id != 0 or piece.file_index != head.file_index):
            yield from _recut(head, tail, headers, max_rows)
            head = None
        if piece.batch_id != 0:
            yield piece
            yield from plan
            return
        head, tail = head or piece, piece
    if head is not None and tail is not None:
        yield from _recut(head, tail, headers, max_rows)


def _recut(head: Piece, tail: Piece, headers: Sequence[FileHeader], max_rows: int) -> Iterator[Piece]:
    """One file's consecutive rows of a batch (pieces `head` to `tail`) cut again into chunks of <= `max_rows` rows."""
    piece_first = head.piece_start
    for end in _chunk_ends(headers[head.file_index], head.piece_start, tail.piece_end, max_rows):
        yield Piece(
            file_index=head.file_index,
            path=head.path,
            piece_start=piece_first,
            piece_end=end,
            batch_id=head.batch_id,
            batch_start=head.batch_start + piece_first - head.piece_start,
            batch_end=head.batch_start + end - head.piece_start,
            last_piece=tail.last_piece and end == tail.piece_end,
        )
        piece_first = end


def units_covering(units: Sequence[int], first: int, last: int) -> Tuple[List[int], int]:
    """Indices of the read units (row groups) overlapping rows [first, last), and the first row of the first."""
    ends = list(accumulate(units))
    covering = [u for u, end in enumerate(ends) if end > first and end - units[u] < last]
    return covering, ends[covering[0]] - units[covering[0]]
