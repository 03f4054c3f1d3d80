"""Deterministic writers of sample embedding collections (npy, parquet, parquet_npy) and a reader helper.

Every writer returns a ``Collection`` holding what was written: the embeddings of the whole collection in
reading order (sorted path order), and the metadata of every row. Values are seeded random numbers drawn
for the whole collection at once, so a row read from the wrong position (a shifted file, a misplaced
piece) never matches; the metadata columns are functions of the global row index, so a misaligned
metadata row never matches either:

- ``caption``: the string ``f"caption {i}"``
- ``n``: the integer ``7 * i + 3``
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from embedding_reader import EmbeddingReader

META_COLUMNS = ["caption", "n"]
ALL_FORMATS = ["npy", "parquet", "parquet_npy"]
FIXED_SIZE_LIST = "fixed_size_list"
PANDAS_LIST = "pandas_list"
LIST_TYPES = (FIXED_SIZE_LIST, PANDAS_LIST)


@dataclass
class Collection:
    """A collection written to disk, and what a correct reader must return for it."""

    file_format: str
    folder: str | list[str]
    embeddings: np.ndarray
    meta: pd.DataFrame
    paths: list[str] = field(default_factory=list)
    rows_per_file: list[int] = field(default_factory=list)
    metadata_folder: str | None = None
    metadata_paths: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Number of rows in the collection."""
        return len(self.embeddings)

    @property
    def non_empty_paths(self) -> list[str]:
        """The embedding files holding at least one row."""
        return [path for path, rows in zip(self.paths, self.rows_per_file) if rows]

    def reader_kwargs(self, meta_columns: Sequence[str] | None = None) -> dict:
        """Keyword arguments of ``EmbeddingReader`` for this collection."""
        kwargs: dict = {"file_format": self.file_format}
        if self.metadata_folder is not None:
            kwargs["metadata_folder"] = self.metadata_folder
        if meta_columns is not None:
            kwargs["meta_columns"] = list(meta_columns)
        return kwargs


def sample_embeddings(rows: int, dim: int, dtype: str | np.dtype = "float32", seed: int = 0) -> np.ndarray:
    """Seeded random embeddings of the given dtype: integers spread over the type's range, floats ~ N(0, 10)."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = max(int(info.min), -(2**20)), min(int(info.max), 2**20)
        return rng.integers(low, high, size=(rows, dim), endpoint=True).astype(dtype)
    return (rng.standard_normal((rows, dim)) * 10).astype(dtype)


def sample_meta(first_row: int, rows: int) -> pd.DataFrame:
    """The metadata of global rows [first_row, first_row + rows): ``i``, ``caption`` and ``n``."""
    index = np.arange(first_row, first_row + rows, dtype=np.int64)
    return pd.DataFrame({"i": index, "caption": [f"caption {i}" for i in index], "n": 7 * index + 3})


def default_names(pattern: str, count: int, nested: bool = False) -> list[str]:
    """Relative file names in sorted order: ``pattern`` formatted with 0..count-1, optionally in nested folders.

    Nested layouts spread the files over ``part_<k // 2>/sub`` folders, so that the sorted order of the
    full paths is still the numbering order.
    """
    names = [pattern.format(k) for k in range(count)]
    if nested:
        names = [os.path.join(f"part_{k // 2:02d}", "sub" if k % 2 else "", name) for k, name in enumerate(names)]
    return names


def _write_files(
    folder: str,
    names: Sequence[str],
    rows_per_file: Sequence[int],
    write_one: Callable[[str, slice], None],
) -> list[str]:
    """Call ``write_one(path, rows)`` for each file, in sorted path order; return the paths in that order."""
    if len(names) != len(rows_per_file):
        raise ValueError("one name per file is needed")
    paths = [os.path.join(folder, name) for name in names]
    order = sorted(range(len(paths)), key=lambda k: paths[k])
    bounds = np.cumsum([0, *[rows_per_file[k] for k in order]])
    for position, k in enumerate(order):
        os.makedirs(os.path.dirname(paths[k]), exist_ok=True)
        write_one(paths[k], slice(int(bounds[position]), int(bounds[position + 1])))
    return [paths[k] for k in order]


def _sorted_rows(names: Sequence[str], rows_per_file: Sequence[int]) -> list[int]:
    """Row counts reordered to the sorted order of the names."""
    return [rows for _, rows in sorted(zip(names, rows_per_file))]


def write_npy_collection(
    folder: str | os.PathLike,
    rows_per_file: Sequence[int],
    dim: int = 8,
    dtype: str | np.dtype = "float32",
    nested: bool = False,
    names: Sequence[str] | None = None,
    first_row: int = 0,
    seed: int = 0,
) -> Collection:
    """Write one .npy file per entry of ``rows_per_file`` (0 allowed) under ``folder``, plus an unrelated .txt file.

    ``first_row`` offsets the global index of the metadata (for collections spread over several folders).
    """
    folder = os.fspath(folder)
    names = list(names or default_names("emb_{:04d}.npy", len(rows_per_file), nested))
    embeddings = sample_embeddings(sum(rows_per_file), dim, dtype, seed)
    paths = _write_files(folder, names, rows_per_file, lambda path, rows: np.save(path, embeddings[rows]))
    _write_distractor(folder)
    return Collection(
        file_format="npy",
        folder=folder,
        embeddings=embeddings,
        meta=sample_meta(first_row, len(embeddings)),
        paths=paths,
        rows_per_file=_sorted_rows(names, rows_per_file),
    )


def embedding_array(embeddings: np.ndarray, list_type: str = FIXED_SIZE_LIST) -> pa.Array:
    """The embeddings as an arrow ``fixed_size_list`` or ``list`` array of their dtype."""
    dim = embeddings.shape[1]
    values = pa.array(np.ascontiguousarray(embeddings).reshape(-1))
    if list_type == FIXED_SIZE_LIST:
        return pa.FixedSizeListArray.from_arrays(values, dim)
    offsets = pa.array(np.arange(0, len(embeddings) * dim + 1, dim, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values)


def write_parquet_file(
    path: str,
    embeddings: np.ndarray,
    meta: pd.DataFrame,
    list_type: str = FIXED_SIZE_LIST,
    row_group_size: int | None = None,
) -> None:
    """One parquet file: column ``embedding`` plus the meta columns ``caption`` and ``n``.

    ``pandas_list`` writes through ``DataFrame.to_parquet`` from a column of numpy rows (what pandas users
    produce: a ``list<element: float>`` column); ``fixed_size_list`` writes an arrow table directly.
    """
    if list_type == PANDAS_LIST and len(embeddings):
        columns = {"caption": meta["caption"].to_numpy(), "n": meta["n"].to_numpy()}
        frame = pd.DataFrame({"embedding": list(embeddings), **columns})
        frame.to_parquet(path, row_group_size=row_group_size)
        return
    table = pa.table(
        {
            "embedding": embedding_array(embeddings, list_type),
            "caption": pa.array(meta["caption"].tolist(), type=pa.string()),
            "n": pa.array(meta["n"].to_numpy(), type=pa.int64()),
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)


def write_meta_parquet(path: str, meta: pd.DataFrame, row_group_size: int | None = None) -> None:
    """A metadata-only parquet file (columns ``caption`` and ``n``), as parquet_npy collections pair with npy files."""
    table = pa.table(
        {
            "caption": pa.array(meta["caption"].tolist(), type=pa.string()),
            "n": pa.array(meta["n"].to_numpy(), type=pa.int64()),
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)


def write_parquet_collection(
    folder: str | os.PathLike,
    rows_per_file: Sequence[int],
    dim: int = 8,
    dtype: str | np.dtype = "float32",
    list_type: str = FIXED_SIZE_LIST,
    row_group_size: int | None = None,
    nested: bool = False,
    first_row: int = 0,
    seed: int = 0,
) -> Collection:
    """Write one .parquet file per entry of ``rows_per_file`` (embedding, caption, n), plus an unrelated .txt file."""
    folder = os.fspath(folder)
    names = default_names("part_{:04d}.parquet", len(rows_per_file), nested)
    embeddings = sample_embeddings(sum(rows_per_file), dim, dtype, seed)
    meta = sample_meta(first_row, len(embeddings))

    def write_one(path: str, rows: slice) -> None:
        write_parquet_file(path, embeddings[rows], meta.iloc[rows], list_type, row_group_size)

    paths = _write_files(folder, names, rows_per_file, write_one)
    _write_distractor(folder)
    return Collection(
        file_format="parquet",
        folder=folder,
        embeddings=embeddings,
        meta=meta,
        paths=paths,
        rows_per_file=_sorted_rows(names, rows_per_file),
    )


def write_parquet_npy_collection(
    root: str | os.PathLike,
    rows_per_file: Sequence[int],
    dim: int = 8,
    dtype: str | np.dtype = "float32",
    row_group_size: int | None = None,
    seed: int = 0,
) -> Collection:
    """LAION-style layout: ``root/emb/img_emb_0000.npy`` ... beside ``root/meta/metadata_0000.parquet`` ..."""
    root = os.fspath(root)
    emb_folder, meta_folder = os.path.join(root, "emb"), os.path.join(root, "meta")
    count = len(rows_per_file)
    embeddings = sample_embeddings(sum(rows_per_file), dim, dtype, seed)
    meta = sample_meta(0, len(embeddings))

    def write_one(path: str, rows: slice) -> None:
        write_meta_parquet(path, meta.iloc[rows], row_group_size)

    paths = _write_files(
        emb_folder, default_names("img_emb_{:04d}.npy", count), rows_per_file, lambda p, r: np.save(p, embeddings[r])
    )
    metadata_paths = _write_files(
        meta_folder, default_names("metadata_{:04d}.parquet", count), rows_per_file, write_one
    )
    return Collection(
        file_format="parquet_npy",
        folder=emb_folder,
        embeddings=embeddings,
        meta=meta,
        paths=paths,
        rows_per_file=list(rows_per_file),
        metadata_folder=meta_folder,
        metadata_paths=metadata_paths,
    )


def write_collection(
    file_format: str, folder: str | os.PathLike, rows_per_file: Sequence[int], dim: int, row_group_size: int
) -> Collection:
    """A collection of any format (parquet files in row groups of `row_group_size` rows), no nesting."""
    if file_format == "npy":
        return write_npy_collection(folder, rows_per_file, dim=dim)
    if file_format == "parquet":
        return write_parquet_collection(folder, rows_per_file, dim=dim, row_group_size=row_group_size)
    return write_parquet_npy_collection(folder, rows_per_file, dim=dim, row_group_size=row_group_size)


def concat_collections(collections: Sequence[Collection]) -> Collection:
    """One collection read from several folders, in the given order (their ``first_row`` must follow on)."""
    first = collections[0]
    return Collection(
        file_format=first.file_format,
        folder=[c.folder for c in collections],  # type: ignore[misc]
        embeddings=np.concatenate([c.embeddings for c in collections]),
        meta=pd.concat([c.meta for c in collections], ignore_index=True),
        paths=[p for c in collections for p in c.paths],
        rows_per_file=[r for c in collections for r in c.rows_per_file],
    )


def _write_distractor(folder: str) -> None:
    """A file of another extension, which readers must ignore."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "README.txt"), "w", encoding="utf-8") as file:
        file.write("not an embedding file\n")


@dataclass
class ReadResult:
    """Everything a pass over a reader produced: the batches joined, and each batch's size."""

    embeddings: np.ndarray
    meta: pd.DataFrame
    batch_sizes: list[int]
    dtypes: set


def read_all(batches: Iterable[tuple[np.ndarray, pd.DataFrame]]) -> ReadResult:
    """Join the (embeddings, meta) batches of one pass, remembering batch sizes and embedding dtypes."""
    embs, metas, sizes, dtypes = [], [], [], set()
    for emb, meta in batches:
        assert emb.ndim == 2 and len(emb) == len(meta), (emb.shape, len(meta))
        embs.append(emb)
        metas.append(meta)
        sizes.append(len(emb))
        dtypes.add(emb.dtype)
    if not embs:
        return ReadResult(np.empty((0, 0)), pd.DataFrame(), [], set())
    return ReadResult(np.concatenate(embs), pd.concat(metas, ignore_index=True), sizes, dtypes)


def expected_batch_sizes(rows: int, batch_size: int) -> list[int]:
    """Sizes of the batches of a read of ``rows`` rows: ``batch_size`` each but a shorter last one."""
    full, rest = divmod(rows, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


def record_pieces(monkeypatch) -> list[tuple[int, int]]:
    """A list that fills with (batch_id, rows) of every piece readers read from now on (until the test ends)."""
    pieces: list[tuple[int, int]] = []
    real_read_piece = EmbeddingReader._read_piece

    def recording_read_piece(self, piece, out, cancel):
        pieces.append((piece.batch_id, piece.rows))
        return real_read_piece(self, piece, out, cancel)

    monkeypatch.setattr(EmbeddingReader, "_read_piece", recording_read_piece)
    return pieces
