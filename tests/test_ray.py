"""Ray Data datasource on a real local cluster, and the pickle contract across a process boundary (spawn)."""

from __future__ import annotations

import multiprocessing
import pickle
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

if TYPE_CHECKING:
    from embedding_reader.ray import EmbeddingDatasource

ray = pytest.importorskip("ray")

from embedding_reader import EmbeddingReader, InvalidArgumentError, build_pieces  # noqa: E402
from embedding_reader.storage import Storage  # noqa: E402
from tests.support.collections import (  # noqa: E402
    META_COLUMNS,
    Collection,
    read_all,
    write_npy_collection,
    write_parquet_collection,
    write_parquet_npy_collection,
)

ROWS_PER_FILE = [700, 0, 450, 1300, 333]
DIM = 16


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray cluster (2 CPUs, no dashboard) for the whole session."""
    ray.init(num_cpus=2, include_dashboard=False, address="local", log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Collection]:
    """One small collection per format: float16 npy, parquet and parquet_npy with row groups and meta columns."""
    root = tmp_path_factory.mktemp("ray")
    return {
        "npy": write_npy_collection(root / "npy", ROWS_PER_FILE, DIM, "float16"),
        "parquet": write_parquet_collection(root / "parquet", ROWS_PER_FILE, DIM, row_group_size=128),
        "parquet_npy": write_parquet_npy_collection(root / "parquet_npy", ROWS_PER_FILE, DIM, row_group_size=200),
    }


def open_reader(collection: Collection) -> EmbeddingReader:
    """A reader over the collection, with its meta columns unless it is npy."""
    columns = None if collection.file_format == "npy" else META_COLUMNS
    return EmbeddingReader(collection.folder, **collection.reader_kwargs(columns))


def datasource(reader: EmbeddingReader, *args: Any, **kwargs: Any) -> EmbeddingDatasource:
    """The Ray datasource over a reader (imported here: spawned children of this module never load Ray Data)."""
    from embedding_reader.ray import EmbeddingDatasource

    return EmbeddingDatasource(reader, *args, **kwargs)


def collect(dataset: Any) -> dict[str, np.ndarray]:
    """Every column of a dataset as numpy arrays, rows sorted by `i`."""
    batches = list(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    columns = {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}
    order = np.argsort(columns["i"], kind="stable")
    return {name: values[order] for name, values in columns.items()}


def assert_same_rows(columns: dict[str, np.ndarray], embeddings: np.ndarray, meta: pd.DataFrame) -> None:
    """The dataset's columns hold exactly the rows of a plain read, metadata included."""
    assert columns["embedding"].shape == embeddings.shape
    assert columns["embedding"].dtype == embeddings.dtype
    np.testing.assert_array_equal(columns["embedding"], embeddings)
    assert sorted(columns) == sorted(["embedding", *meta.columns])
    for name in meta.columns:
        np.testing.assert_array_equal(columns[name], meta[name].to_numpy())


@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize("file_format", ["npy", "parquet", "parquet_npy"])
def test_dataset_equals_plain_read(collections: dict[str, Collection], file_format: str) -> None:
    reader = open_reader(collections[file_format])
    plain = read_all(reader(1000, show_progress=False))
    dataset = reader.to_ray_dataset(override_num_blocks=4, max_piece_size=250)
    assert dataset.count() == reader.count
    assert_same_rows(collect(dataset), plain.embeddings, plain.meta)


@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize("file_format", ["npy", "parquet_npy"])
def test_range_with_small_blocks(collections: dict[str, Collection], file_format: str) -> None:
    reader = open_reader(collections[file_format])
    start, end = 123, 2345
    plain = read_all(reader(500, start, end, show_progress=False))
    dataset = reader.to_ray_dataset(start, end, batch_size=97, override_num_blocks=5, max_piece_size=300)
    columns = collect(dataset)
    np.testing.assert_array_equal(columns["i"], np.arange(start, end))
    assert_same_rows(columns, plain.embeddings, plain.meta)


@pytest.mark.usefixtures("ray_cluster")
def test_empty_range_is_an_empty_dataset(collections: dict[str, Collection]) -> None:
    reader = open_reader(collections["npy"])
    assert list(reader(10, 5, 5, show_progress=False)) == []
    assert reader.to_ray_dataset(5, 5).count() == 0


@pytest.mark.usefixtures("ray_cluster")
def test_map_batches_sees_matrices(collections: dict[str, Collection]) -> None:
    reader = open_reader(collections["parquet"])
    projection = np.random.default_rng(0).standard_normal((DIM, 3)).astype(np.float32)

    def probe(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert batch["embedding"].ndim == 2 and batch["embedding"].shape[1] == DIM
        return {"i": batch["i"], "label": np.argmax(batch["embedding"] @ projection, axis=1)}

    labels = collect(reader.to_ray_dataset(override_num_blocks=3).map_batches(probe, batch_format="numpy"))
    expected = np.argmax(collections["parquet"].embeddings @ projection, axis=1)
    np.testing.assert_array_equal(labels["label"], expected)


def test_task_metadata_matches_plan(collections: dict[str, Collection]) -> None:
    reader = open_reader(collections["parquet"])
    source = datasource(reader, 100, 2500, max_piece_size=128)
    tasks = source.get_read_tasks(6)
    assert 4 <= len(tasks) <= 6
    rows = [task.metadata.num_rows or 0 for task in tasks]
    sizes = [task.metadata.size_bytes or 0 for task in tasks]
    assert sum(rows) == 2400
    assert sum(sizes) == source.estimate_inmemory_data_size()
    for task, task_rows, size in zip(tasks, rows, sizes):
        assert size >= task_rows * (DIM * 4 + 8)
        assert set(task.metadata.input_files or ()) <= set(collections["parquet"].paths)
        assert sum(ray.data.block.BlockAccessor.for_block(block).num_rows() for block in task()) == task_rows


def test_tasks_never_split_a_piece(collections: dict[str, Collection]) -> None:
    reader = open_reader(collections["parquet_npy"])
    source = datasource(reader, 50, reader.count, max_piece_size=150)
    file_starts = np.cumsum([0, *[header.count for header in reader.headers]])
    pieces = build_pieces(reader.headers, reader.count, 50, reader.count, 150)
    piece_starts = {int(file_starts[piece.file_index]) + piece.piece_start for piece in pieces}
    for parallelism in (1, 3, 7, 1000):
        ranges = source.task_ranges(parallelism)
        assert ranges[0][0] == 50 and ranges[-1][1] == reader.count
        assert all(last == first for (_, last), (first, _) in zip(ranges, ranges[1:]))
        assert {last for _, last in ranges[:-1]} <= piece_starts
        assert len(ranges) <= parallelism


def test_row_limit_shortens_tasks(collections: dict[str, Collection]) -> None:
    source = datasource(open_reader(collections["npy"]), max_piece_size=100)
    tasks = source.get_read_tasks(4, per_task_row_limit=5, data_context=None, a_future_argument=True)
    assert [task.metadata.num_rows for task in tasks] == [5] * len(tasks)
    assert all(sum(len(block) for block in task()) == 5 for task in tasks)


@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize(("output_dtype", "expected"), [(None, np.float16), (np.float32, np.float32)])
def test_embedding_dtype(collections: dict[str, Collection], output_dtype: object, expected: type) -> None:
    dataset = open_reader(collections["npy"]).to_ray_dataset(0, 500, output_dtype=output_dtype)
    batch = dataset.take_batch(10, batch_format="numpy")
    assert batch["embedding"].dtype == expected and batch["embedding"].shape == (10, DIM)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": -1},
        {"start": 10**6},
        {"start": 20, "end": 10},
        {"end": 1.5},
        {"batch_size": 0},
        {"max_piece_size": 0},
        {"parallel_pieces": True},
    ],
)
def test_bad_arguments_raise_like_reader(collections: dict[str, Collection], kwargs: dict) -> None:
    reader = open_reader(collections["npy"])
    with pytest.raises(InvalidArgumentError) as plain:
        reader(**{"batch_size": 10, **kwargs})
    with pytest.raises(InvalidArgumentError) as ray_error:
        reader.to_ray_dataset(**kwargs)
    assert str(ray_error.value) == str(plain.value)


@pytest.mark.parametrize("blocks", [0, -2, 2.5, True])
def test_bad_block_count_is_refused_by_name(collections: dict[str, Collection], blocks: object) -> None:
    with pytest.raises(InvalidArgumentError, match="override_num_blocks must be an integer >= 1"):
        open_reader(collections["npy"]).to_ray_dataset(override_num_blocks=blocks)


def test_read_tasks_pickle_small(tmp_path: Path) -> None:
    reader = EmbeddingReader(str(write_npy_collection(tmp_path, [10] * 200, DIM).folder))
    tasks = datasource(reader).get_read_tasks(100)
    assert len(tasks) == 100
    assert max(len(pickle.dumps(task)) for task in tasks) * 20 < len(pickle.dumps(reader))
    assert len(pickle.dumps(datasource(reader))) < 2 * len(pickle.dumps(reader))


def test_core_never_imports_ray(collections: dict[str, Collection]) -> None:
    folder = collections["npy"].folder
    code = (
        "import sys\nfrom embedding_reader import EmbeddingReader\n"
        f"reader = EmbeddingReader({folder!r})\nnext(reader(10, show_progress=False))\n"
        "assert 'ray' not in sys.modules, 'the core imported ray'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _read_range_in_child(pickled_reader: bytes, start: int, end: int) -> tuple[np.ndarray, pd.DataFrame]:
    """In a spawned process: unpickle the reader (listing forbidden) and read rows [start, end)."""

    def forbidden(*_args: object) -> None:
        raise AssertionError("an unpickled reader must not list folders")

    Storage.find = forbidden  # type: ignore[method-assign,assignment]
    reader = pickle.loads(pickled_reader)
    result = read_all(reader(256, start, end, show_progress=False))
    return result.embeddings, result.meta


def test_split_ranges_read_in_spawned_processes(collections: dict[str, Collection]) -> None:
    reader = open_reader(collections["parquet_npy"])
    plain = read_all(reader(1000, show_progress=False))
    pickled = pickle.dumps(reader)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_read_range_in_child, pickled, start, end) for start, end in reader.split(3)]
        parts = [future.result() for future in futures]
    np.testing.assert_array_equal(np.concatenate([emb for emb, _ in parts]), plain.embeddings)
    pd.testing.assert_frame_equal(pd.concat([meta for _, meta in parts], ignore_index=True), plain.meta)
