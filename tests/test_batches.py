"""Batch arrays are recycled only once the caller has dropped them: kept batches, views and buffers stay intact."""

from __future__ import annotations

import numpy as np
import pytest

from embedding_reader import EmbeddingReader
from embedding_reader.batches import ArrayPool
from tests.support.collections import record_pieces, write_npy_collection

ROWS, BATCH = [900, 700, 400], 100  # 20 batches of 100 rows


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """A 2000-row npy collection in three files."""
    return write_npy_collection(tmp_path_factory.mktemp("npy"), ROWS, dim=8)


def batches(collection, **kwargs):
    """The batches of a whole read, 100 rows each, pieces of 30 rows."""
    reader = EmbeddingReader(collection.folder, file_format="npy")
    kwargs.setdefault("max_piece_size", 30)
    return reader(BATCH, show_progress=False, **kwargs)


def expected(collection, k: int) -> np.ndarray:
    """Rows of batch k."""
    return collection.embeddings[k * BATCH : (k + 1) * BATCH]


def owner(array: np.ndarray) -> int:
    """Address of the memory an array lives in."""
    return (array.base if array.base is not None else array).__array_interface__["data"][0]


def test_kept_batches_are_never_overwritten(collection):
    """Every batch kept by the caller still holds its own rows at the end of the read."""
    kept = [emb for emb, _ in batches(collection)]
    assert len(kept) == 20
    for k, emb in enumerate(kept):
        np.testing.assert_array_equal(emb, expected(collection, k))


@pytest.mark.parametrize("keep", ["view", "memoryview", "column"])
def test_kept_views_and_buffers_are_never_overwritten(collection, keep):
    """A numpy view, a memoryview or a column slice of a batch keeps the batch's memory from being reused."""
    make = {
        "view": lambda emb: emb[:3],
        "memoryview": memoryview,
        "column": lambda emb: emb[:, 2],
    }[keep]
    kept = [make(emb) for emb, _ in batches(collection)]
    for k, item in enumerate(kept):
        rows = expected(collection, k)
        want = {"view": rows[:3], "memoryview": rows, "column": rows[:, 2]}[keep]
        np.testing.assert_array_equal(np.asarray(item), want)


def test_dropped_batches_are_recycled(collection):
    """In the usual loop, later batches reuse the memory of dropped ones (and still hold the right rows)."""
    owners = []
    for k, (emb, _) in enumerate(batches(collection)):
        np.testing.assert_array_equal(emb, expected(collection, k))
        owners.append(owner(emb))
        del emb
    assert len(set(owners)) < len(owners) // 2, owners


def test_pool_reuses_only_unreferenced_buffers():
    """The pool itself: a handed-out array is taken again only after the last reference to it is gone."""
    pool = ArrayPool()
    first = pool.take((4, 2), np.dtype(np.float32))
    pool.handed_out(first)
    second = pool.take((4, 2), np.dtype(np.float32))
    assert owner(second) != owner(first)  # `first` is still held here
    address = owner(first)
    del first
    third = pool.take((3, 2), np.dtype(np.float32))  # smaller fits in the dropped buffer
    assert owner(third) == address and third.shape == (3, 2)


def test_small_batches_read_ahead_at_most_parallel_pieces(collection):
    """With one piece per batch, at most `parallel` later batches are read ahead of the one awaited, so a long read
    of dropped batches cycles through at most parallel + 2 arrays (those, the awaited one, the caller's)."""
    parallel = 4
    owners = set()
    for emb, _ in batches(collection, parallel_pieces=parallel, max_piece_size=BATCH):
        owners.add(owner(emb))
        del emb
    assert len(owners) <= parallel + 2


@pytest.mark.parametrize("parallel", [1, 4, 16])
def test_nothing_is_read_ahead_of_the_first_batch(collection, monkeypatch, parallel):
    """Until the first batch is handed over, only its own pieces are read: it has every thread to itself."""
    started = record_pieces(monkeypatch)
    read = batches(collection, parallel_pieces=parallel, max_piece_size=10)
    emb, _ = next(read)
    np.testing.assert_array_equal(emb, expected(collection, 0))
    assert sorted(started) == [(0, 10)] * 10
    emb, _ = next(read)
    np.testing.assert_array_equal(emb, expected(collection, 1))
    assert {batch_id for batch_id, _ in started} >= {0, 1}


def test_small_local_pieces_are_read_as_grouped_tasks(tmp_path, monkeypatch):
    """Many small local files: consecutive pieces of a batch share one task (one future, not one per file), up to
    LOCAL_GROUP_BYTES; rows and their order are exact."""
    from embedding_reader import pipeline as pipeline_module
    from embedding_reader import reader as reader_module
    from tests.support.collections import read_all

    collection = write_npy_collection(tmp_path, [3] * 200, dim=8)
    sizes = []
    real = pipeline_module.Pipeline._run_group
    monkeypatch.setattr(
        pipeline_module.Pipeline, "_run_group", lambda self, group: sizes.append(len(group)) or real(self, group)
    )
    monkeypatch.setattr(reader_module, "LOCAL_GROUP_BYTES", 40 * 3 * 8 * 4)  # 40 files' worth of rows a task
    result = read_all(EmbeddingReader(collection.folder)(batch_size=250, show_progress=False, parallel_pieces=3))
    np.testing.assert_array_equal(result.embeddings, collection.embeddings)
    assert result.meta["i"].tolist() == list(range(600))
    assert sum(sizes) == 200 + 2 and max(sizes) == 40 and len(sizes) < 30, sizes  # 2 files cut by batch ends


@pytest.mark.parametrize("rows, run_rows", [(1, 1), (7, 3), (100, 16), (257, 5), (64, 64)])
def test_placement_runs_cover_every_piece_exactly(rows, run_rows):
    """A shuffled window's placement: the runs it gives for any read range [first, last) are that range's places,
    in order, merged where consecutive (what a local read scatters into)."""
    from embedding_reader.batches import Placement
    from embedding_reader.shuffle_order import consecutive_runs

    rng = np.random.default_rng(rows * 100 + run_rows)
    starts = rng.permutation(-(-rows // run_rows)) * run_rows
    order = consecutive_runs(starts, np.minimum(run_rows, rows - starts))
    placement = Placement.of(order)
    assert (placement.places[order] == np.arange(rows)).all()
    for first in range(rows):
        for last in {first + 1, min(rows, first + run_rows + 1), rows}:
            places, stops = placement.byte_runs(first, last, 1)
            spelled = [place for start, stop in zip(places, stops) for place in range(start, stop)]
            assert spelled == placement.places[first:last].tolist()
            assert all(start < stop for start, stop in zip(places, stops))
            assert all(stop != start for stop, start in zip(stops, places[1:]))  # consecutive runs are merged
            starts, ends = placement.byte_runs(first, last, 12)  # in bytes of 12-byte rows: the same runs
            assert (starts, ends) == ([12 * place for place in places], [12 * stop for stop in stops])
    assert placement.byte_runs(3 % rows, 3 % rows, 12) == ([], [])


def test_a_placement_costs_at_most_its_counted_bytes_a_row():
    """Batches under 128 rows permute single rows, so a window has about one run a row: the placement keeps them in
    int64 arrays, within PLACEMENT_BYTES_PER_ROW (the budget's count), not in Python lists (about 80 bytes a run)."""
    from embedding_reader.batches import PLACEMENT_BYTES_PER_ROW, Placement

    rows = 100_000
    placement = Placement.of(np.random.default_rng(0).permutation(rows))
    runs = placement.run_starts.nbytes + placement.run_places.nbytes + placement.run_place_ends.nbytes
    assert len(placement.run_places) > rows // 2
    assert placement.places.nbytes + runs + 2 * 8 * rows <= PLACEMENT_BYTES_PER_ROW * rows  # with the order, `i`


def test_place_refuses_a_side_buffer_smaller_than_a_block():
    """A cast's side buffer must hold a block: a smaller one would leave rows unwritten, so it is refused."""
    from embedding_reader.batches import Placement, RowTarget

    array = np.zeros((10, 3), np.float32)
    target = RowTarget(array, Placement.of(np.arange(10)[::-1].copy()), 0, 10)
    values = np.arange(30, dtype=np.float16).reshape(10, 3)
    with pytest.raises(ValueError, match="cannot hold a block of 10 rows"):
        target.place(values, np.empty(3 * 3 * 4, np.uint8))
    target.place(values, np.empty(10 * 3 * 4, np.uint8))
    np.testing.assert_array_equal(array, values[::-1].astype(np.float32))
    target.place(values[:0])  # no rows, no block
