"""inspect_collection and detect_format: every problem of a collection, file by file, and the format it holds."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from embedding_reader import (
    CollectionReport,
    EmbeddingReader,
    EmbeddingReaderError,
    InconsistentCollectionError,
    InvalidArgumentError,
    NoEmbeddingsFoundError,
    detect_format,
    inspect_collection,
)
from tests.support.collections import (
    Collection,
    sample_meta,
    write_meta_parquet,
    write_npy_collection,
    write_parquet_collection,
    write_parquet_npy_collection,
)


def truncate(path: str, size: int) -> None:
    """Cut a file down to `size` bytes."""
    with open(path, "r+b") as file:
        file.truncate(size)


def inspect(collection: Collection, file_format: str | None = None, **options: object) -> CollectionReport:
    """The report on a written collection, its format given (or detected with file_format=None)."""
    return inspect_collection(
        collection.folder, file_format, metadata_folder=collection.metadata_folder, **options  # type: ignore[arg-type]
    )


def test_good_npy_collection(tmp_path: Path) -> None:
    collection = write_npy_collection(tmp_path / "npy", [30, 0, 50], dim=8, dtype="float16")
    report = inspect(collection, "npy")
    assert report.ok and report.problems == () and report.collection_problems == ()
    assert report.file_format == "npy" and report.paths == (str(collection.folder),)
    assert (report.count, report.dimension, report.dtype) == (80, 8, np.dtype("float16"))
    assert [file.path for file in report.files] == collection.paths
    assert [file.count for file in report.files] == [30, 0, 50] and all(file.ok for file in report.files)
    assert [header.path for header in report.headers] == collection.non_empty_paths, "empty files dropped"
    assert list(report.headers) == EmbeddingReader(collection.folder, "npy").headers


def test_good_parquet_collection(tmp_path: Path) -> None:
    collection = write_parquet_collection(tmp_path / "parquet", [30, 50], dim=4, row_group_size=20)
    report = inspect(collection, "parquet", meta_columns=["caption"])
    assert report.ok and (report.count, report.dimension, report.dtype) == (80, 4, np.dtype("float32"))
    assert [file.header.parquet.row_groups for file in report.files if file.header and file.header.parquet] == [
        (20, 10),
        (20, 20, 10),
    ]
    assert [file.metadata_file for file in report.files] == [None, None]


def test_good_parquet_npy_collection(tmp_path: Path) -> None:
    collection = write_parquet_npy_collection(tmp_path, [10, 20, 30], dim=4)
    report = inspect(collection, "parquet_npy", meta_columns="caption")
    assert report.ok and report.count == 60
    assert [file.metadata_file for file in report.files] == collection.metadata_paths
    assert report.metadata_files == tuple(collection.metadata_paths) and report.unpaired_metadata_files == ()
    assert list(report.headers) == EmbeddingReader(collection.folder, "parquet_npy", **_meta(collection)).headers


def _meta(collection: Collection) -> dict[str, object]:
    return {"metadata_folder": collection.metadata_folder, "meta_columns": ["caption"]}


def test_corrupt_files_among_good_ones(tmp_path: Path) -> None:
    collection = write_npy_collection(tmp_path / "npy", [10] * 4, dim=8)
    truncate(collection.paths[1], 200)
    truncate(collection.paths[3], 5)
    report = inspect(collection, "npy")
    assert not report.ok and report.count is None and report.headers == ()
    assert [file.ok for file in report.files] == [True, False, True, False]
    assert [file.count for file in report.files] == [10, None, 10, None]
    assert report.files[1].problem == (
        f"{collection.paths[1]}: file has 200 bytes but its header (10, 8) float32 needs 448"
    )
    assert report.files[3].problem is not None and report.files[3].problem.startswith(f"{collection.paths[3]}: ")
    assert report.problems == (report.files[1].problem, report.files[3].problem)
    assert report.collection_problems == ()
    with pytest.raises(EmbeddingReaderError) as raised:
        EmbeddingReader(collection.folder, "npy")
    assert str(raised.value) in report.problems, "the reader raises the first of the same problems"


def test_dimension_and_dtype_mismatch(tmp_path: Path) -> None:
    collection = write_npy_collection(tmp_path / "npy", [10] * 4, dim=8)
    np.save(collection.paths[0], np.zeros((10, 16), dtype="float32"))
    np.save(collection.paths[2], np.zeros((10, 8), dtype="int8"))
    report = inspect(collection, "npy")
    assert all(file.ok for file in report.files) and [file.dimension for file in report.files] == [16, 8, 8, 8]
    assert report.collection_problems == (
        f"dimension 16 in {collection.paths[0]} differs from 8 in {collection.paths[1]}",
        f"dtype int8 in {collection.paths[2]} differs from float32 in {collection.paths[1]}",
    ), "compared with the most common kind of file"
    assert report.problems == report.collection_problems and not report.ok
    with pytest.raises(InconsistentCollectionError, match=r"dimension 8 in .* differs from 16 in"):
        EmbeddingReader(collection.folder, "npy")


def test_all_files_empty(tmp_path: Path) -> None:
    collection = write_npy_collection(tmp_path / "npy", [0, 0], dim=8)
    report = inspect(collection, "npy")
    assert report.collection_problems == (f"all 2 files are empty (0 rows), e.g. {collection.paths[0]}",)


def test_unpaired_parquet_npy_names(tmp_path: Path) -> None:
    collection = write_parquet_npy_collection(tmp_path, [10, 20, 30], dim=4)
    stray = os.path.join(str(collection.metadata_folder), "metadata_9999.parquet")
    write_meta_parquet(stray, sample_meta(0, 5))
    os.remove(collection.metadata_paths[1])
    write_meta_parquet(collection.metadata_paths[2], sample_meta(0, 29))
    report = inspect(collection, "parquet_npy")
    assert [file.metadata_file for file in report.files] == [
        collection.metadata_paths[0],
        None,
        collection.metadata_paths[2],
    ]
    assert report.files[0].ok and report.files[1].problem is None
    assert (
        report.files[1].metadata_problem == "no parquet file pairs with it, by name or by the last number in its name"
    )
    assert report.files[2].metadata_problem == (
        f"{collection.paths[2]} has 30 rows but its metadata {collection.metadata_paths[2]} has 29"
    )
    assert report.unpaired_metadata_files == (stray,)
    (pairing,) = report.collection_problems
    assert pairing.startswith("3 npy files in") and "unmatched: img_emb_0001.npy, metadata_9999.parquet" in pairing
    assert report.problems == (pairing, report.files[2].metadata_problem)


def test_missing_folders_are_each_a_problem(tmp_path: Path) -> None:
    good = write_npy_collection(tmp_path / "good", [10], dim=4)
    missing = [str(tmp_path / "missing_a"), str(tmp_path / "missing_b")]
    report = inspect_collection([missing[0], str(good.folder), missing[1]])
    assert report.file_format == "npy" and [file.path for file in report.files] == good.paths
    assert report.problems == (f"folder not found: {missing[0]}", f"folder not found: {missing[1]}")


def test_format_detection(tmp_path: Path) -> None:
    npy = write_npy_collection(tmp_path / "npy", [10], dim=4)
    parquet = write_parquet_collection(tmp_path / "parquet", [10], dim=4)
    pairs = write_parquet_npy_collection(tmp_path / "pairs", [10], dim=4)
    assert detect_format(npy.folder) == "npy" and detect_format(parquet.folder) == "parquet"
    assert detect_format(pairs.folder, metadata_folder=pairs.metadata_folder) == "parquet_npy"
    assert inspect(pairs).file_format == "parquet_npy" and inspect(pairs).ok
    assert inspect(parquet).file_format == "parquet" and inspect(parquet).count == 10


def test_ambiguous_or_empty_folders(tmp_path: Path) -> None:
    pairs = write_parquet_npy_collection(tmp_path / "pairs", [10, 20], dim=4)
    both = str(tmp_path / "pairs")
    message = f"both .npy (2) and .parquet (2) files found in {both}: give the format"
    with pytest.raises(InconsistentCollectionError, match=re.escape(message)):
        detect_format(both)
    report = inspect_collection(both)
    assert not report.ok and report.file_format is None and report.files == ()
    assert len(report.problems) == 1 and report.problems[0].startswith(message)
    assert inspect_collection(both, "npy").count == 30, "a format given is not detected"
    (tmp_path / "nothing").mkdir()
    with pytest.raises(NoEmbeddingsFoundError, match=r"no \.npy or \.parquet file found in"):
        detect_format(str(tmp_path / "nothing"))
    report = inspect_collection(str(tmp_path / "missing"))
    assert report.problems == (f"folder not found: {tmp_path / 'missing'}",)
    assert pairs.count == 30


def test_arguments_are_refused_not_reported(tmp_path: Path) -> None:
    collection = write_npy_collection(tmp_path / "npy", [10], dim=4)
    with pytest.raises(InvalidArgumentError, match="unknown file_format"):
        inspect_collection(collection.folder, "csv")
    with pytest.raises(InvalidArgumentError, match="needs metadata_folder"):
        inspect_collection(collection.folder, "parquet_npy")
    with pytest.raises(InvalidArgumentError, match="embeddings_folder"):
        inspect_collection([])
