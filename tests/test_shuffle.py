"""Shuffled, sharded, resumable reads: every row once, the order fixed by the seed, meta aligned, resume exact."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedding_reader import EmbeddingReader, InvalidArgumentError

DIM = 4


def write_npy(folder: Path, counts: list[int]) -> int:
    """npy files of float32 rows (global index, file number, 2 * index, -index); the row count."""
    folder.mkdir(parents=True, exist_ok=True)
    first = 0
    for k, count in enumerate(counts):
        index = np.arange(first, first + count, dtype=np.float32)
        rows = np.stack([index, np.full(count, k, np.float32), 2 * index, -index], axis=1)
        np.save(folder / f"emb_{k:04d}.npy", rows)
        first += count
    return first


def write_parquet(folder: Path, counts: list[int], group_rows: int) -> int:
    """parquet files with an embedding list column like write_npy's and a meta column `id` = 7 * index."""
    folder.mkdir(parents=True, exist_ok=True)
    first = 0
    for k, count in enumerate(counts):
        index = np.arange(first, first + count)
        embedding = [[float(i), float(k), 2.0 * i, -float(i)] for i in index]
        table = pa.table({"embedding": pa.array(embedding, pa.list_(pa.float32())), "id": 7 * index})
        pq.write_table(table, folder / f"part_{k:04d}.parquet", row_group_size=group_rows)
        first += count
    return first


def check_rows(emb: np.ndarray, meta: pd.DataFrame) -> None:
    """Each returned row is the one its meta `i` names."""
    i = meta["i"].to_numpy()
    np.testing.assert_array_equal(emb[:, 0], i.astype(np.float32))
    np.testing.assert_array_equal(emb[:, 2], 2 * i.astype(np.float32))
    if "id" in meta:
        np.testing.assert_array_equal(meta["id"].to_numpy(), 7 * i)


def read_all(reader: EmbeddingReader, batch_size: int, **kwargs) -> list[np.ndarray]:
    """The `i` of every batch of a read, each batch checked row for row."""
    batches = []
    for emb, meta in reader(batch_size, show_progress=False, **kwargs):
        check_rows(emb, meta)
        batches.append(meta["i"].to_numpy())
    return batches


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> tuple[EmbeddingReader, int]:
    folder = tmp_path_factory.mktemp("shuffle") / "npy"
    total = write_npy(folder, [700, 1, 3000, 250, 1200, 33])
    return EmbeddingReader(str(folder)), total


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**64),
    bounds=st.tuples(st.integers(0, 5183), st.integers(0, 5183)).map(sorted),
    batch_size=st.integers(1, 3000),
    world_size=st.integers(1, 4),
    budget=st.sampled_from([1, 3000, 40_000, 2**32]),
    max_piece_size=st.sampled_from([None, 7, 97]),
    parallel=st.sampled_from([None, 1, 3]),
)
def test_every_row_of_the_range_once_over_all_ranks(
    collection, seed, bounds, batch_size, world_size, budget, max_piece_size, parallel
):
    reader, total = collection
    start, end = bounds[0], bounds[1] + 1
    seen = []
    for rank in range(world_size):
        batches = read_all(
            reader,
            batch_size,
            start=start,
            end=end,
            shuffle=True,
            seed=seed,
            rank=rank,
            world_size=world_size,
            max_ram_usage_in_bytes=budget,
            max_piece_size=max_piece_size,
            parallel_pieces=parallel,
        )
        assert all(len(batch) == batch_size for batch in batches[:-1])
        seen.extend(batches)
    every = np.sort(np.concatenate(seen))
    np.testing.assert_array_equal(every, np.arange(start, min(end, total)))


def test_the_order_depends_on_the_seed_not_on_threads_or_pieces(collection):
    reader, _ = collection
    base = np.concatenate(read_all(reader, 500, shuffle=True, seed=3, max_ram_usage_in_bytes=50_000))
    for options in ({"parallel_pieces": 1}, {"parallel_pieces": 7}, {"max_piece_size": 13}, {"max_piece_size": 5000}):
        again = np.concatenate(read_all(reader, 500, shuffle=True, seed=3, max_ram_usage_in_bytes=50_000, **options))
        np.testing.assert_array_equal(again, base)
    other = np.concatenate(read_all(reader, 500, shuffle=True, seed=4, max_ram_usage_in_bytes=50_000))
    assert not np.array_equal(other, base)
    np.testing.assert_array_equal(np.sort(other), np.sort(base))
    assert not np.array_equal(base, np.sort(base))  # shuffled indeed


def _order_in_child(payload: bytes) -> list[int]:
    reader = pickle.loads(payload)
    return [int(i) for batch in read_all(reader, 300, shuffle=True, seed=11) for i in batch]


def test_a_pickled_reader_in_another_process_gives_the_same_order(collection):
    reader, _ = collection
    here = [int(i) for batch in read_all(reader, 300, shuffle=True, seed=11) for i in batch]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        there = pool.apply_async(_order_in_child, (pickle.dumps(reader),)).get(timeout=80)
    assert there == here


def test_batches_mix_rows_from_across_the_collection(tmp_path):
    """100 files, file k holding label k: under the default budget a batch of 10,000 rows holds rows of nearly every
    file (measured: 98 to 100), as a perfect shuffle's does (about 100); sequential batches hold 5."""
    write_npy(tmp_path / "labelled", [2000] * 100)
    reader = EmbeddingReader(str(tmp_path / "labelled"))
    shuffled = [len(np.unique(emb[:, 1])) for emb, _ in reader(10_000, shuffle=True, seed=0, show_progress=False)]
    sequential = [len(np.unique(emb[:, 1])) for emb, _ in reader(10_000, show_progress=False)]
    assert min(shuffled) >= 95 and max(sequential) <= 6, (shuffled, sequential)


def test_ranks_may_differ_in_budget_and_batch_size(tmp_path):
    """The epoch's sequence, which ranks share out, depends on the seed and the files only: ranks reading with other
    budgets, batch sizes and output dtypes still cover the range exactly once."""
    total = write_npy(tmp_path / "npy", [70_000, 45_000, 90_000])  # 16-byte rows: files of 1.1 to 1.4 MB
    reader = EmbeddingReader(str(tmp_path / "npy"))
    options = [(100, 30_000, np.float32), (333, 10**9, np.float64), (4096, 2_000_000, np.float32)]
    seen = []
    for rank, (batch_size, budget, dtype) in enumerate(options):
        kwargs = dict(rank=rank, world_size=3, max_ram_usage_in_bytes=budget, output_dtype=dtype)
        seen += read_all(reader, batch_size, shuffle=True, seed=4, **kwargs)
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(total))


def test_the_last_window_mixes_as_well_as_the_others(tmp_path):
    """Windows are made about equal: 200,000 rows in windows of at most 90,000 are read as three of 70,000 (35 files
    each), not 90,000 + 90,000 + 20,000, whose last two batches would hold rows of 10 files only."""
    write_npy(tmp_path / "labelled", [2000] * 100)
    reader = EmbeddingReader(str(tmp_path / "labelled"))
    budget = 4_400_000  # a third of it holds 9 batches of 10,000 rows of 16 bytes
    batches = reader(10_000, shuffle=True, seed=0, show_progress=False, max_ram_usage_in_bytes=budget)
    files = [len(np.unique(emb[:, 1])) for emb, _ in batches]
    assert len(files) == 20 and min(files) >= 30, files


@pytest.mark.parametrize("remainder", ["keep", "drop", "pad"])
@pytest.mark.parametrize("world_size", [1, 3])
def test_resume_gives_the_tail_of_a_full_run(collection, remainder, world_size):
    reader, _ = collection
    options = dict(shuffle=True, seed=5, world_size=world_size, remainder=remainder, max_ram_usage_in_bytes=20_000)
    for rank in range(world_size):
        full = read_all(reader, 400, rank=rank, **options)
        for k in (0, 1, 2, len(full) // 2, len(full) - 1, len(full)):
            tail = read_all(reader, 400, rank=rank, start_batch=k, **options)
            assert len(tail) == len(full) - k
            for mine, theirs in zip(tail, full[k:]):
                np.testing.assert_array_equal(mine, theirs)


def test_drop_and_pad_give_every_rank_as_many_full_batches(collection):
    reader, total = collection  # 5184 rows: 1728 a rank, 4 batches of 400 and 128 left
    for remainder, batches in (("drop", 4), ("pad", 5)):
        shares = []
        for rank in range(3):
            share = read_all(reader, 400, shuffle=True, seed=2, rank=rank, world_size=3, remainder=remainder)
            assert [len(batch) for batch in share] == [400] * batches
            shares.append(np.concatenate(share))
        if remainder == "pad":
            for share in shares:  # the padding repeats the share's first rows, the rest is the share once
                np.testing.assert_array_equal(share[1728:], share[: 5 * 400 - 1728])
                assert len(np.unique(share)) == 1728
            assert len(np.unique(np.concatenate(shares))) == total
        else:
            assert len(np.unique(np.concatenate(shares))) == 3 * 1600


def test_keep_shares_differ_by_at_most_one_row(tmp_path):
    reader = EmbeddingReader(str(tmp_path / "npy")) if write_npy(tmp_path / "npy", [10, 11]) else None
    sizes = [sum(map(len, read_all(reader, 4, shuffle=True, seed=0, rank=r, world_size=4))) for r in range(4)]
    assert sorted(sizes) == [5, 5, 5, 6]


def test_parquet_meta_follows_its_rows(tmp_path):
    total = write_parquet(tmp_path / "pq", [500, 333, 1000], group_rows=64)
    reader = EmbeddingReader(str(tmp_path / "pq"), file_format="parquet", meta_columns=["id"])
    for budget in (2**32, 5000):
        batches = read_all(reader, 256, shuffle=True, seed=9, max_ram_usage_in_bytes=budget)
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(total))


def test_parquet_npy_meta_follows_its_rows(tmp_path):
    counts = [300, 450, 120]
    write_npy(tmp_path / "emb", counts)
    write_parquet(tmp_path / "meta", counts, group_rows=50)
    for k in range(len(counts)):
        (tmp_path / "meta" / f"part_{k:04d}.parquet").rename(tmp_path / "meta" / f"emb_{k:04d}.parquet")
    reader = EmbeddingReader(
        str(tmp_path / "emb"), file_format="parquet_npy", metadata_folder=str(tmp_path / "meta"), meta_columns="id"
    )
    for output_dtype in (np.float32, np.float64):  # rows read straight to their places, and through a cast
        metas = [meta for _, meta in reader(100, shuffle=True, seed=1, output_dtype=output_dtype, show_progress=False)]
        assert all(list(meta.columns) == ["id", "i"] for meta in metas)
        batches = read_all(reader, 100, shuffle=True, seed=1, output_dtype=output_dtype)
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(sum(counts)))


def test_over_http(collection, http_server_factory, tmp_path):
    total = write_npy(tmp_path / "npy", [800, 1500, 7])
    server = http_server_factory(tmp_path)
    reader = EmbeddingReader(f"{server.url}/npy/")
    batches = read_all(reader, 333, shuffle=True, seed=8, max_ram_usage_in_bytes=30_000, output_dtype=np.float64)
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(total))
    local = read_all(
        EmbeddingReader(str(tmp_path / "npy")),
        333,
        shuffle=True,
        seed=8,
        max_ram_usage_in_bytes=30_000,
        output_dtype=np.float64,
    )
    for remote_batch, local_batch in zip(batches, local):
        np.testing.assert_array_equal(remote_batch, local_batch)


def test_on_s3(moto_s3, tmp_path):
    total = write_npy(tmp_path / "npy", [640, 900])
    moto_s3.upload_folder(tmp_path / "npy", "shuffle-bucket", "npy")
    reader = EmbeddingReader("s3://shuffle-bucket/npy", storage_options=moto_s3.storage_options())
    batches = read_all(reader, 250, shuffle=True, seed=4, rank=1, world_size=2)
    assert sum(map(len, batches)) == total // 2


def test_windows_are_recycled_once_dropped(collection):
    """With windows of one batch and a loop that drops each batch, two window arrays serve the whole read: the one
    being cut and the one being read (a third would be fresh memory, whose first touches at random places are slow)."""
    reader, total = collection
    owners = []
    for emb, meta in reader(500, shuffle=True, seed=2, max_ram_usage_in_bytes=30_000, show_progress=False):
        check_rows(emb, meta)
        owners.append((emb.base if emb.base is not None else emb).__array_interface__["data"][0])
        del emb, meta
    assert len(owners) == -(-total // 500) and len(set(owners)) <= 2, owners


def test_an_early_stop_ends_the_threads(collection):
    reader, _ = collection
    batches = reader(100, shuffle=True, seed=0, max_ram_usage_in_bytes=10_000, show_progress=False)
    next(batches)
    batches.close()
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("embedding_reader")]


@pytest.mark.parametrize(
    "options, named",
    [
        ({"seed": 1}, "seed"),
        ({"rank": 1, "world_size": 2}, "rank, world_size"),
        ({"start_batch": 2}, "start_batch"),
        ({"remainder": "drop"}, "remainder"),
        ({"shuffle": True, "rank": 2, "world_size": 2, "seed": 0}, "rank=2"),
        ({"shuffle": True, "world_size": 0, "seed": 0}, "world_size"),
        ({"shuffle": True, "world_size": 2}, "seed=None"),
        ({"shuffle": True, "start_batch": 1}, "seed=None"),
        ({"shuffle": True, "seed": -1}, "seed"),
        ({"shuffle": True, "seed": 1.5}, "seed"),
        ({"shuffle": True, "seed": 0, "remainder": "wrap"}, "remainder"),
        ({"shuffle": True, "seed": 0, "start_batch": 10_000}, "start_batch=10000"),
        ({"shuffle": "yes"}, "shuffle"),
    ],
)
def test_bad_shuffle_arguments_are_refused_by_name(collection, options, named):
    reader, _ = collection
    with pytest.raises(InvalidArgumentError, match=named.replace("=", "=").replace("(", r"\(")):
        reader(100, show_progress=False, **options)


def test_pad_refuses_a_rank_without_rows(tmp_path):
    """2 rows over 3 ranks: rank 0's share is empty, so it has nothing to pad its batch with: refused by name (it
    was a RuntimeError from inside a generator); the other ranks pad from their own row."""
    write_npy(tmp_path / "npy", [2])
    reader = EmbeddingReader(str(tmp_path / "npy"))
    options = dict(shuffle=True, seed=0, world_size=3, remainder="pad", show_progress=False)
    with pytest.raises(InvalidArgumentError, match='remainder="pad": rank 0 of world_size=3'):
        list(reader(4, rank=0, **options))
    for rank in (1, 2):
        ((emb, meta),) = list(reader(4, rank=rank, **options))
        assert meta["i"].tolist() == [rank - 1] * 4 and len(emb) == 4


def test_seed_none_draws_a_fresh_order(collection):
    reader, total = collection
    first, second = (np.concatenate(read_all(reader, 1000, shuffle=True)) for _ in range(2))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first), np.arange(total))


def _share_in_child(payload: bytes, rank: int, world_size: int) -> list[int]:
    reader = pickle.loads(payload)
    options = dict(shuffle=True, seed=21, rank=rank, world_size=world_size, remainder="drop")
    return [int(i) for batch in read_all(reader, 256, **options) for i in batch]


def test_ranks_in_separate_processes_share_the_epoch(collection):
    """Each rank a process with its own copy of the reader, as in data-parallel training: the shares are disjoint,
    equally many full batches, and with remainder="drop" all but fewer than world_size x batch_size rows read."""
    reader, total = collection
    payload = pickle.dumps(reader)
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        shares = pool.starmap_async(_share_in_child, [(payload, rank, 3) for rank in range(3)]).get(timeout=80)
    assert [len(share) for share in shares] == [total // 3 // 256 * 256] * 3
    every = np.concatenate(shares)
    assert len(np.unique(every)) == len(every) > total - 3 * 256
    assert set(every.tolist()) <= set(range(total))


@pytest.mark.parametrize("block_bytes", [DIM * 8, DIM * 8 * 7, 2**20])  # 1 and 7 rows of float64 a block, and all
def test_a_cast_is_placed_a_block_at_a_time(collection, monkeypatch, block_bytes):
    """Rows read through a cast reach their places a block of rows at a time (batches.PLACE_BLOCK_BYTES): every
    block lands where its rows belong, the same order as a read without a cast."""
    import embedding_reader.batches as batches_module

    reader, total = collection
    monkeypatch.setattr(batches_module, "PLACE_BLOCK_BYTES", block_bytes)
    cast = read_all(reader, 250, shuffle=True, seed=3, output_dtype=np.float64, max_piece_size=97)
    assert [list(batch) for batch in cast] == [list(batch) for batch in read_all(reader, 250, shuffle=True, seed=3)]
    np.testing.assert_array_equal(np.sort(np.concatenate(cast)), np.arange(total))


def test_the_order_of_a_seed_is_pinned(collection):
    """The order of (seed, range, batch size, window) is part of the contract: a job resumed after an upgrade of the
    library must get the batches it would have got. A change of this digest changes every user's epochs."""
    import hashlib

    reader, _ = collection
    batches = read_all(reader, 1000, shuffle=True, seed=7, max_ram_usage_in_bytes=40_000)
    assert [list(batch[:3]) for batch in batches[:2]] == [[1028, 1029, 1030], [2418, 2419, 2420]]
    digest = hashlib.sha256(np.concatenate(batches).astype("<i8").tobytes()).hexdigest()[:16]
    assert digest == "4052f060921bd3fa"
