"""A drop-in for 1.8.1: its module paths, its `reader.headers` frame, and the inputs it read rightly."""

from __future__ import annotations

import logging
import os
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from embedding_reader import EmbeddingReader, InvalidArgumentError
from embedding_reader.get_file_list import get_file_list
from embedding_reader.piece_builder import PIECE_COLUMNS, build_pieces
from tests.support.collections import read_all, write_npy_collection, write_parquet_npy_collection


def read(reader: EmbeddingReader, batch_size: int = 7, **kwargs):
    return read_all(reader(batch_size, show_progress=False, **kwargs))


def save_parquet(path, columns: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=5)


# ------------------------------------------------------------------ module paths of 1.8.1


def test_get_file_list_one_folder_nested_and_several(tmp_path):
    for sub in ["a", "a/1", "a/1/2", "b"]:
        for k in range(2):
            save_parquet(str(tmp_path / sub / f"{k}.parquet"), {"x": [1]})
    (tmp_path / "a" / "notes.txt").write_text("not a parquet file")
    fs, paths = get_file_list(str(tmp_path / "a"), "parquet")
    assert isinstance(fs, LocalFileSystem)
    assert paths == sorted(str(tmp_path / sub / f"{k}.parquet") for sub in ["a", "a/1", "a/1/2"] for k in range(2))
    _, both = get_file_list([str(tmp_path / "b"), str(tmp_path / "a")], "parquet")
    assert both == sorted([*paths, str(tmp_path / "b" / "0.parquet"), str(tmp_path / "b" / "1.parquet")])


def headers_frame(counts, **metadata) -> pd.DataFrame:
    counts = np.asarray(counts)
    frame = pd.DataFrame({"filename": [f"{k}.npy" for k in range(len(counts))], "count": counts})
    frame["count_before"] = np.cumsum(counts) - counts
    return frame.assign(**metadata)


@pytest.mark.parametrize(
    ("batch_size", "start", "end", "max_piece_size"), [(10, 0, 95, 4), (7, 13, 60, 100), (1, 5, 9, 1)]
)
def test_build_pieces_frame_covers_each_row_once(batch_size, start, end, max_piece_size):
    """Every row of [start, end) is in exactly one piece, at its place in its batch; metadata follows the file."""
    counts = [10, 0, 23, 5, 0, 40, 17]
    headers = headers_frame(counts, custommeta=[f"m{k}" for k in range(len(counts))])
    pieces = build_pieces(
        headers, batch_size, start, end, max_piece_size=max_piece_size, metadata_columns=["custommeta"]
    )
    assert list(pieces.columns) == [*PIECE_COLUMNS, "custommeta"]
    file_of_row = np.repeat(np.arange(len(counts)), counts)
    seen = []
    for piece in pieces.itertuples():
        index = int(piece.filename.split(".")[0])
        assert 0 < piece.piece_length == piece.piece_end - piece.piece_start <= max_piece_size
        assert piece.custommeta == f"m{index}" and piece.piece_end <= counts[index]
        assert piece.batch_start == start + piece.batch_id * batch_size
        assert piece.batch_length == piece.batch_end - piece.batch_start == min(batch_size, end - piece.batch_start)
        rows = headers["count_before"][index] + np.arange(piece.piece_start, piece.piece_end)
        assert (file_of_row[rows] == index).all() and piece.batch_start <= rows[0] and rows[-1] < piece.batch_end
        seen.extend(rows)
    assert seen == list(range(start, end))
    assert pieces.groupby("batch_id")["last_piece"].sum().eq(1).all()
    assert pieces["last_piece"].tolist() == (pieces["batch_id"] != pieces["batch_id"].shift(-1)).tolist()


def test_build_pieces_refuses_a_wrong_count_before():
    headers = headers_frame([3, 4]).assign(count_before=[0, 2])
    with pytest.raises(InvalidArgumentError, match="count_before"):
        build_pieces(headers, 2, 0, 7)


# ------------------------------------------------------------------ reader.reader.headers


def test_npy_headers_frame(tmp_path):
    collection = write_npy_collection(tmp_path, [4, 0, 6], dim=8, dtype="float16")
    reader = EmbeddingReader(collection.folder)
    frame = reader.reader.headers
    assert list(frame.columns) == [
        "filename",
        "count",
        "count_before",
        "dimension",
        "dtype",
        "header_offset",
        "byte_per_item",
    ]
    non_empty = [path for path, rows in zip(collection.paths, collection.rows_per_file) if rows]
    assert frame["filename"].tolist() == non_empty and frame["count"].tolist() == [4, 6]
    assert frame["count_before"].tolist() == [0, 4] and frame["dimension"].tolist() == [8, 8]
    assert frame["dtype"].tolist() == ["<f2", "<f2"] and frame["byte_per_item"].tolist() == [16, 16]
    assert frame["header_offset"].tolist() == [128, 128]
    with open(non_empty[1], "rb") as file:  # the header offset is where np.load finds the data
        file.seek(128)
        np.testing.assert_array_equal(np.frombuffer(file.read(), "<f2").reshape(6, 8), np.load(non_empty[1]))
    assert (reader.reader.count, reader.reader.dimension, reader.reader.nb_files) == (10, 8, 2)
    assert pickle.loads(pickle.dumps(reader)).reader.headers.equals(frame)


def test_parquet_npy_headers_frame_names_the_metadata_file(tmp_path):
    collection = write_parquet_npy_collection(tmp_path, [3, 5])
    reader = EmbeddingReader(collection.folder, file_format="parquet_npy", metadata_folder=collection.metadata_folder)
    assert reader.reader.headers["metadata_path"].tolist() == collection.metadata_paths


# ------------------------------------------------------------------ inputs 1.8.1 read


def test_meta_columns_with_npy_are_ignored_with_a_warning(tmp_path, caplog):
    collection = write_npy_collection(tmp_path, [5, 4])
    with caplog.at_level(logging.WARNING, logger="embedding_reader"):
        reader = EmbeddingReader(collection.folder, meta_columns=["id"], metadata_folder=str(tmp_path))
    assert "meta_columns ['id'] ignored" in caplog.text
    result = read(reader, 4)
    np.testing.assert_array_equal(result.embeddings, collection.embeddings)
    assert list(result.meta.columns) == ["i"] and result.meta["i"].tolist() == list(range(9))


def test_one_meta_column_name_is_one_column(tmp_path):
    """meta_columns="caption" means the column caption, not its letters."""
    collection = write_parquet_npy_collection(tmp_path, [3, 5])
    reader = EmbeddingReader(
        collection.folder, file_format="parquet_npy", metadata_folder=collection.metadata_folder, meta_columns="caption"
    )
    assert reader.meta_columns == ["caption"]
    assert read(reader).meta["caption"].tolist() == collection.meta["caption"].tolist()


@pytest.mark.parametrize("output_dtype", [np.float32, np.float16, None])
def test_parquet_mixing_float_widths(tmp_path, output_dtype):
    """float32 files beside float64 and float16 ones: each file cast into the output dtype (None: the widest)."""
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((6, 4)).astype(dtype) for dtype in ("float32", "float64", "float16")]
    for k, part in enumerate(parts):
        save_parquet(str(tmp_path / f"{k}.parquet"), {"embedding": list(part), "id": np.arange(6) + 6 * k})
    reader = EmbeddingReader(str(tmp_path), file_format="parquet", meta_columns=["id"])
    assert reader.dtype == np.float64
    result = read(reader, 4, output_dtype=output_dtype)
    expected = np.concatenate([part.astype(output_dtype or np.float64) for part in parts])
    np.testing.assert_array_equal(result.embeddings, expected)
    assert result.meta["id"].tolist() == list(range(18)) == result.meta["i"].tolist()


def test_npy_mixing_float_widths(tmp_path):
    parts = [np.arange(12, dtype=dtype).reshape(3, 4) / 7 for dtype in ("float16", "float32")]
    for k, part in enumerate(parts):
        np.save(tmp_path / f"{k}.npy", part.astype(("float16", "float32")[k]))
    result = read(EmbeddingReader(str(tmp_path)), 2)
    expected = np.concatenate([part.astype(("float16", "float32")[k]) for k, part in enumerate(parts)])
    np.testing.assert_array_equal(result.embeddings, expected.astype(np.float32))


@pytest.mark.parametrize("column", ["clip.embedding", "embedding", "a.b.c"])
def test_column_names_with_dots_and_shared_prefixes(tmp_path, column):
    """A column is found by its whole name: dots inside it, and other columns named like it before it."""
    rng = np.random.default_rng(1)
    embeddings = rng.standard_normal((9, 6)).astype(np.float32)
    columns = {
        "embedding.norm": np.linalg.norm(embeddings, axis=1),
        "embedding.pca": list(rng.standard_normal((9, 2)).astype(np.float32)),
        column: list(embeddings),
        "clip": list(rng.standard_normal((9, 3)).astype(np.float32)),
        "id": np.arange(9),
    }
    save_parquet(str(tmp_path / "part.parquet"), columns)
    reader = EmbeddingReader(str(tmp_path), file_format="parquet", embedding_column=column, meta_columns=["id"])
    assert reader.dimension == 6
    result = read(reader, 4)
    np.testing.assert_array_equal(result.embeddings, embeddings)
    assert result.meta["id"].tolist() == list(range(9))


def test_help_documents_the_constructor_and_the_call():
    """help(EmbeddingReader) shows what every argument of the constructor and of the call means."""
    import pydoc

    text = pydoc.render_doc(EmbeddingReader, renderer=pydoc.plaintext)
    for argument in ["embeddings_folder:", "meta_columns:", "timeout:", "batch_size:", "output_dtype:"]:
        assert argument in text, argument
    assert "Initialize self" not in text
