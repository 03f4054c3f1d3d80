"""parquet_npy pairs each npy file with its metadata file by name (equal stems, else the last number in the name),
never by position; rows keep the npy files' sorted path order; `validate` reports what cannot be paired."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedding_reader import EmbeddingReader, InconsistentCollectionError
from embedding_reader.cli import main
from tests.support.collections import read_all

DIM = 3
CAPTION = "file {} row {}"


@dataclass
class Pairs:
    """A parquet_npy collection on disk, and the (file number, row number) of every row in reading order."""

    emb_folder: str
    meta_folder: str
    expected: list[tuple[int, int]]


def write_pairs(root: Path, npy_names: Sequence[str], parquet_names: Sequence[str], rows: Sequence[int]) -> Pairs:
    """npy_names[k] beside its metadata parquet_names[k], both of rows[k] rows (either list may be the longer):
    embedding row r of file k is [k, r, k * 1000 + r]; its metadata row holds file = k, row = r and a caption."""
    emb_folder, meta_folder = root / "emb", root / "meta"
    for k, name in enumerate(npy_names):
        row = np.arange(rows[k])
        (emb_folder / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(emb_folder / name, np.stack([np.full(rows[k], k), row, k * 1000 + row], axis=1).astype("float32"))
    for k, name in enumerate(parquet_names):
        row = np.arange(rows[k])
        (meta_folder / name).parent.mkdir(parents=True, exist_ok=True)
        captions = [CAPTION.format(k, r) for r in row]
        pd.DataFrame({"file": np.full(rows[k], k), "row": row, "caption": captions}).to_parquet(meta_folder / name)
    order = sorted(range(len(npy_names)), key=lambda k: str(emb_folder / npy_names[k]))  # 1.8.1's reading order
    expected = [(k, r) for k in order for r in range(rows[k])]
    return Pairs(str(emb_folder), str(meta_folder), expected)


def read_pairs(pairs: Pairs, batch_size: int = 4) -> tuple[np.ndarray, pd.DataFrame]:
    """Every row of the collection with its metadata (file, row, caption), in batches of batch_size."""
    reader = EmbeddingReader(
        pairs.emb_folder,
        file_format="parquet_npy",
        metadata_folder=pairs.meta_folder,
        meta_columns=["file", "row", "caption"],
    )
    result = read_all(reader(batch_size=batch_size, show_progress=False))
    return result.embeddings, result.meta


def assert_aligned(pairs: Pairs, batch_size: int = 4) -> None:
    """Rows come in the npy files' sorted path order, and each row's metadata is that row's, row for row."""
    embeddings, meta = read_pairs(pairs, batch_size)
    expected = np.array(pairs.expected)
    np.testing.assert_array_equal(embeddings[:, :2], expected)
    np.testing.assert_array_equal(embeddings[:, 2], expected[:, 0] * 1000 + expected[:, 1])
    assert meta["i"].tolist() == list(range(len(expected)))
    assert meta["file"].tolist() == expected[:, 0].tolist()
    assert meta["row"].tolist() == expected[:, 1].tolist()
    assert meta["caption"].tolist() == [CAPTION.format(k, r) for k, r in pairs.expected]


def test_unpadded_numbers_pair_with_padded_ones(tmp_path):
    """img_emb_0 ... img_emb_10 beside metadata_0000 ... metadata_0010: "img_emb_10" sorts before "img_emb_2", yet
    each npy file gets the metadata file of its number (0010 == 10), and rows keep the npy files' sorted order."""
    npy = [f"img_emb_{k}.npy" for k in range(11)]
    parquet = [f"metadata_{k:04d}.parquet" for k in range(11)]
    pairs = write_pairs(tmp_path, npy, parquet, [3] * 11)
    assert [k for k, r in pairs.expected if r == 0] == [0, 1, 10, 2, 3, 4, 5, 6, 7, 8, 9]
    assert_aligned(pairs)


def test_laion_layout(tmp_path):
    """img_emb_0000.npy beside metadata_0000.parquet, files of different sizes."""
    npy = [f"img_emb_{k:04d}.npy" for k in range(4)]
    parquet = [f"metadata_{k:04d}.parquet" for k in range(4)]
    assert_aligned(write_pairs(tmp_path, npy, parquet, [5, 2, 7, 4]), batch_size=3)


def test_equal_stems_pair_even_where_numbers_repeat(tmp_path):
    """Equal stems (name and sub-folder relative to the root) pair, though the last numbers repeat (v1 in two
    folders) and the metadata files would sort in another order than the npy files."""
    stems = ["2021/shard_v1", "2022/shard_v1", "2022/extra", "b", "b.o"]
    npy = [f"{stem}.npy" for stem in stems]
    parquet = [f"{stem}.parquet" for stem in stems]
    assert sorted(npy) != [f"{name[: -len('.parquet')]}.npy" for name in sorted(parquet)]  # not paired by position
    assert_aligned(write_pairs(tmp_path, npy, parquet, [2, 3, 4, 5, 6]))


@pytest.mark.parametrize(
    ("npy", "parquet", "unmatched"),
    [
        (["emb_0", "emb_1", "emb_2"], ["meta_0", "meta_1", "meta_5"], ["emb_2.npy", "meta_5.parquet"]),
        (["cats", "dogs"], ["meta_a", "meta_b"], ["cats.npy", "dogs.npy", "meta_a.parquet", "meta_b.parquet"]),
        (["a_1", "b_1"], ["m_1", "m_2"], ["a_1.npy", "b_1.npy", "m_1.parquet", "m_2.parquet"]),
        (["emb_0", "emb_1"], ["meta_0", "meta_1", "meta_2"], ["meta_2.parquet"]),
    ],
)
def test_unpairable_names_are_refused_by_name(tmp_path, npy, parquet, unmatched):
    """Names that pair neither by stem nor by a unique last number: an error naming the unmatched files."""
    npy_names, parquet_names = [f"{name}.npy" for name in npy], [f"{name}.parquet" for name in parquet]
    pairs = write_pairs(tmp_path, npy_names, parquet_names, [2] * max(len(npy), len(parquet)))
    with pytest.raises(InconsistentCollectionError) as info:
        read_pairs(pairs)
    message = str(info.value)
    assert f"{len(npy)} npy files in" in message and f"{len(parquet)} parquet files in" in message
    assert pairs.emb_folder in message and pairs.meta_folder in message
    for name in npy_names + parquet_names:
        assert (name in message) == (name in unmatched), name


def validate(capsys: pytest.CaptureFixture[str], pairs: Pairs) -> tuple[int, list[str]]:
    """Exit status and output lines of `embedding-reader validate` on the collection."""
    code = main(["validate", pairs.emb_folder, "--format", "parquet_npy", "--metadata-folder", pairs.meta_folder])
    return code, capsys.readouterr().out.splitlines()


def test_validate_reports_unpairable_names(capsys, tmp_path):
    """validate names the files that pair with nothing, with the reader's own message, once, and checks no row
    counts of files that are not pairs (img_emb_2.npy has 4 rows, metadata_7.parquet 5)."""
    pairs = write_pairs(
        tmp_path, [f"img_emb_{k}.npy" for k in range(3)], ["metadata_0.parquet", "metadata_1.parquet"], [2, 3, 4]
    )
    pd.DataFrame({"file": np.full(5, 7), "row": np.arange(5)}).to_parquet(
        Path(pairs.meta_folder) / "metadata_7.parquet"
    )
    with pytest.raises(InconsistentCollectionError) as info:
        read_pairs(pairs)
    code, lines = validate(capsys, pairs)
    assert code == 1
    assert lines == [str(info.value), "invalid: 1 problem in 3 files (parquet_npy)"]
    assert "img_emb_2.npy" in lines[0] and "metadata_7.parquet" in lines[0] and "img_emb_1" not in lines[0]


def test_validate_pairs_as_the_reader_does(capsys, tmp_path):
    """img_emb_0 ... img_emb_10 of different sizes beside metadata_0000 ... metadata_0010: validate pairs them by
    number too, so a broken file is the one problem reported (paired by position, every pair after img_emb_1 would
    disagree on its row count)."""
    npy = [f"img_emb_{k}.npy" for k in range(11)]
    parquet = [f"metadata_{k:04d}.parquet" for k in range(11)]
    pairs = write_pairs(tmp_path, npy, parquet, [k + 1 for k in range(11)])
    assert validate(capsys, pairs) == (0, ["ok: 11 files (parquet_npy), 66 embeddings of dimension 3 (float32)"])
    broken = Path(pairs.emb_folder) / "img_emb_3.npy"
    os.truncate(broken, os.path.getsize(broken) - 4)
    code, lines = validate(capsys, pairs)
    assert code == 1 and len(lines) == 2, lines
    assert lines[0].startswith(f"{broken}: file has") and lines[1] == "invalid: 1 problem in 11 files (parquet_npy)"
