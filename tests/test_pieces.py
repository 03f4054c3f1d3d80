"""The planner (`build_pieces`) against a brute-force oracle, over many random collections and reads."""

from __future__ import annotations

from itertools import accumulate, groupby

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedding_reader import EmbeddingReaderError, FileHeader, InvalidArgumentError, Piece, build_pieces
from embedding_reader.pieces import split_first_batch

PLANNER_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def header(index: int, count: int, units: tuple[int, ...] = ()) -> FileHeader:
    """A header for a file of `count` rows; `units` are its parquet-like row groups (empty for npy)."""
    return FileHeader(path=f"/data/file_{index:03d}", count=count, dimension=4, dtype="<f4", units=units)


@st.composite
def file_headers(draw) -> FileHeader:
    """One file: npy-like (any row range readable), parquet-like (row groups), or empty."""
    kind = draw(st.sampled_from(["npy", "parquet", "parquet", "empty"]))
    if kind == "empty":
        return header(0, 0)
    if kind == "npy":
        return header(0, draw(st.integers(1, 60)))
    units = tuple(draw(st.lists(st.integers(0, 25), min_size=1, max_size=6)))  # 0: an empty row group
    return header(0, sum(units), units)


@st.composite
def plans(draw) -> tuple[list[FileHeader], int, int, int | None, int]:
    """(headers, batch_size, start, end, max_piece_size) with 0 <= start <= end (end may pass the total)."""
    drawn = draw(st.lists(file_headers(), min_size=1, max_size=8))
    headers = [header(k, h.count, h.units) for k, h in enumerate(drawn)]
    total = sum(h.count for h in headers)
    batch_size = draw(st.integers(1, max(1, total + 5)))
    start = draw(st.integers(0, total))
    end = draw(st.one_of(st.none(), st.integers(start, total + 10)))
    max_piece_size = draw(st.integers(1, 40))
    return headers, batch_size, start, end, max_piece_size


def oracle_rows(headers: list[FileHeader], start: int, end: int) -> list[tuple[int, int]]:
    """(file index, row in file) of every global row in [start, end), by brute force."""
    rows = [(index, row) for index, h in enumerate(headers) for row in range(h.count)]
    return rows[start:end]


def file_offsets(headers: list[FileHeader]) -> list[int]:
    """Global index of the first row of each file."""
    return [0, *accumulate(h.count for h in headers)]


def unit_boundaries(h: FileHeader) -> set[int]:
    """File-local row positions where a read unit (row group) starts or ends."""
    return {0, *accumulate(h.units)}


def check_plan(pieces: list[Piece], headers: list[FileHeader], batch_size: int, start: int, end: int, size: int):
    """Assert every property a plan must have (see the module docstring of embedding_reader.pieces)."""
    offsets = file_offsets(headers)
    covered = [(p.file_index, row) for p in pieces for row in range(p.piece_start, p.piece_end)]
    assert covered == oracle_rows(headers, start, end)
    for piece in pieces:
        h = headers[piece.file_index]
        assert piece.path == h.path
        assert 0 <= piece.piece_start < piece.piece_end <= h.count, piece
        global_first = offsets[piece.file_index] + piece.piece_start
        assert piece.batch_id == (global_first - start) // batch_size, piece
        assert piece.batch_start == global_first - (start + piece.batch_id * batch_size), piece
        assert piece.batch_end - piece.batch_start == piece.rows, piece
        if h.units and piece.rows > size:
            inside = {b for b in unit_boundaries(h) if piece.piece_start < b < piece.piece_end}
            assert not inside, f"{piece} holds more than {size} rows and several units"
        if h.units:
            for cut in (piece.piece_start, piece.piece_end):
                position = offsets[piece.file_index] + cut
                allowed = cut in unit_boundaries(h) or (position - start) % batch_size == 0 or position in (start, end)
                assert allowed, f"{piece} splits a row group at {cut}"
        else:
            assert piece.rows <= size, piece
    check_batches(pieces, batch_size, end - start)


def check_batches(pieces: list[Piece], batch_size: int, rows: int) -> None:
    """Batches 0..k-1 in order, each tiled exactly by its pieces, full but the last, last_piece on the last piece."""
    batches = [(batch_id, list(group)) for batch_id, group in groupby(pieces, key=lambda p: p.batch_id)]
    assert [batch_id for batch_id, _ in batches] == list(range(-(-rows // batch_size)))
    for batch_id, group in batches:
        expected = min(batch_size, rows - batch_id * batch_size)
        assert [p.batch_start for p in group] == [0, *[p.batch_end for p in group[:-1]]]
        assert group[-1].batch_end == expected
        assert [p.last_piece for p in group] == [False] * (len(group) - 1) + [True]


@PLANNER_SETTINGS
@given(plans())
def test_plan_matches_oracle(plan):
    """Random collections and reads: every row once, in order, in the right batch, in well-formed pieces."""
    headers, batch_size, start, end, max_piece_size = plan
    pieces = build_pieces(headers, batch_size, start, end, max_piece_size)
    total = sum(h.count for h in headers)
    check_plan(pieces, headers, batch_size, start, total if end is None else min(end, total), max_piece_size)


@PLANNER_SETTINGS
@given(plans(), st.integers(1, 40))
def test_first_batch_split_finer(plan, first_rows):
    """split_first_batch cuts only the first batch's pieces, to at most `first_rows` rows (row-group files: at row
    group boundaries only), and the plan keeps every property; later batches are untouched."""
    headers, batch_size, start, end, max_piece_size = plan
    first_rows = min(first_rows, max_piece_size)
    plain = build_pieces(headers, batch_size, start, end, max_piece_size)
    pieces = list(split_first_batch(plain, headers, first_rows))
    total = sum(h.count for h in headers)
    check_plan(pieces, headers, batch_size, start, total if end is None else min(end, total), max_piece_size)
    assert [p for p in pieces if p.batch_id > 0] == [p for p in plain if p.batch_id > 0]
    for piece in (p for p in pieces if p.batch_id == 0):
        h = headers[piece.file_index]
        if not h.units:
            assert piece.rows <= first_rows, piece
        elif piece.rows > first_rows:
            assert not {b for b in unit_boundaries(h) if piece.piece_start < b < piece.piece_end}, piece
    first_files = {p.file_index for p in pieces if p.batch_id == 0}
    if first_files and not any(headers[k].units for k in first_files):  # npy: each file's share cut evenly
        first_batch_rows = sum(p.rows for p in pieces if p.batch_id == 0)
        assert sum(p.batch_id == 0 for p in pieces) <= -(-first_batch_rows // first_rows) + len(first_files) - 1


def test_first_batch_recut_evenly_across_planned_pieces():
    """One 100-row file planned in 30-row pieces, one 100-row batch cut for 4 threads: four 25-row pieces, not
    25, 5, 25, 5, 25, 5, 10 (the planned pieces cut one by one)."""
    headers = [header(0, 100)]
    pieces = list(split_first_batch(build_pieces(headers, 100, max_piece_size=30), headers, 25))
    assert [(p.piece_start, p.piece_end, p.batch_start, p.batch_end, p.last_piece) for p in pieces] == [
        (0, 25, 0, 25, False),
        (25, 50, 25, 50, False),
        (50, 75, 50, 75, False),
        (75, 100, 75, 100, True),
    ]


def test_first_batch_split_known():
    """Two npy files, batches of 10, pieces of 8: the first batch (8 + 2 rows) cut to pieces of 3 rows."""
    headers = [header(0, 8), header(1, 20)]
    pieces = list(split_first_batch(build_pieces(headers, 10, max_piece_size=8), headers, 3))
    first = [(p.file_index, p.piece_start, p.piece_end, p.batch_start, p.last_piece) for p in pieces if p.batch_id == 0]
    assert first == [(0, 0, 3, 0, False), (0, 3, 6, 3, False), (0, 6, 8, 6, False), (1, 0, 2, 8, True)]
    later = [(p.batch_id, p.piece_start, p.piece_end) for p in pieces if p.batch_id]
    assert later == [(1, 2, 8), (1, 8, 12), (2, 12, 16), (2, 16, 20)]  # as planned: 8-row chunks cut by batches


@PLANNER_SETTINGS
@given(
    counts=st.lists(st.integers(0, 30), min_size=1, max_size=6),
    batch_size=st.integers(1, 40),
    max_piece_size=st.integers(1, 50),
)
def test_whole_collection_by_default(counts, batch_size, max_piece_size):
    """Without start/end the plan covers the whole collection; empty files get no piece."""
    headers = [header(k, count) for k, count in enumerate(counts)]
    pieces = build_pieces(headers, batch_size, max_piece_size=max_piece_size)
    check_plan(pieces, headers, batch_size, 0, sum(counts), max_piece_size)
    assert {p.file_index for p in pieces} == {k for k, count in enumerate(counts) if count}


def test_known_plan():
    """A small plan spelled out: pieces stop at files, batches, and max_piece_size."""
    headers = [header(0, 5), header(1, 0), header(2, 4)]
    pieces = build_pieces(headers, batch_size=4, start=1, end=9, max_piece_size=3)
    described = [(p.file_index, p.piece_start, p.piece_end, p.batch_id, p.batch_start, p.batch_end, p.last_piece)
                 for p in pieces]  # fmt: skip
    assert described == [
        (0, 1, 4, 0, 0, 3, False),
        (0, 4, 5, 0, 3, 4, True),
        (2, 0, 3, 1, 0, 3, False),
        (2, 3, 4, 1, 3, 4, True),
    ]


def test_row_groups_are_kept_whole():
    """Row groups are grouped up to max_piece_size, a larger one stays whole, and only a batch boundary cuts one."""
    headers = [header(0, 30, (4, 4, 12, 10))]
    pieces = build_pieces(headers, batch_size=25, max_piece_size=9)
    assert [(p.piece_start, p.piece_end, p.batch_id) for p in pieces] == [
        (0, 8, 0),
        (8, 20, 0),
        (20, 25, 0),
        (25, 30, 1),
    ]


def test_large_row_group_split_only_by_start_and_end():
    """A read inside one big row group is one piece, whatever max_piece_size."""
    pieces = build_pieces([header(0, 100, (100,))], batch_size=1000, start=10, end=70, max_piece_size=5)
    assert [(p.piece_start, p.piece_end, p.last_piece) for p in pieces] == [(10, 70, True)]


def test_empty_range_gives_no_piece():
    """start == end (anywhere up to the total) plans nothing."""
    headers = [header(0, 3), header(1, 4)]
    assert build_pieces(headers, 2, start=7, end=7) == []
    assert build_pieces(headers, 2, start=3, end=3) == []
    assert build_pieces([header(0, 0)], 2) == []


def test_end_past_total_is_clamped():
    """end beyond the collection stops at its last row."""
    pieces = build_pieces([header(0, 3), header(1, 4)], batch_size=10, start=2, end=1000)
    assert [(p.file_index, p.piece_start, p.piece_end) for p in pieces] == [(0, 2, 3), (1, 0, 4)]
    assert pieces[-1].batch_end == 5 and pieces[-1].last_piece


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "3", None])
@pytest.mark.parametrize("argument", ["batch_size", "max_piece_size"])
def test_bad_sizes(argument, value):
    """batch_size and max_piece_size must be integers >= 1; the error names the argument."""
    kwargs = {"batch_size": 2, "max_piece_size": 10, argument: value}
    with pytest.raises(InvalidArgumentError, match=argument):
        build_pieces([header(0, 10)], **kwargs)


@pytest.mark.parametrize(
    ("start", "end"),
    [(-1, None), (5, 4), (11, None), (11, 20), (-3, -1), (1.5, None), (True, None), (0, 2.5), ("1", None)],
)
def test_bad_ranges(start, end):
    """start must be an integer in [0, end], end an integer; the error names start or end."""
    with pytest.raises(EmbeddingReaderError, match=r"start|end"):
        build_pieces([header(0, 10)], 2, start=start, end=end)
