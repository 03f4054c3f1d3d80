"""Shuffled reads, every format x storage x output dtype, row for row against the data written here.

Each case writes (numpy, pyarrow, h5py) a small collection whose rows are seeded random values and whose meta
columns are functions of the global row index, then reads it with shuffle=True and checks: each row of
[start, end) handed out exactly once over all ranks, every embedding equal to the row its meta["i"] names (in the
asked dtype), the meta columns present and aligned with their rows, batch sizes, a resumed read (start_batch=k)
equal to the tail of the full one, the padding of remainder="pad", and the same order (and rows) whatever the
pieces, the threads or where the files live.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedding_reader import EmbeddingReader, ReadFailedError
from tests.support.faults import FaultConfig, FaultKind
from tests.support.remote import FAST_RETRIES

h5py = pytest.importorskip("h5py")
pytestmark = pytest.mark.timeout(120)

DIM = 8
COUNTS = [61, 0, 97, 45, 1, 130, 90, 36]  # 460 rows over 7 non-empty files, an empty one among them
TOTAL = sum(COUNTS)
START, END = 5, 440  # cut inside the first and the last file
SEED = 12345
BUCKET = "shuffle-matrix"
META = ["id", "caption"]


@dataclass(frozen=True)
class Kind:
    """A collection variant: its file format, stored dtype, and how its files are written (values "a|b": file k
    takes the k % 2-th, e.g. float widths mixed across files)."""

    file_format: str
    dtype: str
    meta: bool = False  # parquet meta columns `id` and `caption` are read beside `i`
    list_type: str = "list"  # parquet: "list" or "fixed_size_list"
    row_group: int = 0  # parquet / parquet_npy metadata: rows per row group
    chunks: str = "0"  # hdf5: rows per chunk (0: contiguous)
    compression: str | None = None  # hdf5

    def of(self, field: str, number: int) -> str:
        choices = str(getattr(self, field)).split("|")
        return choices[number % len(choices)]


KINDS = {
    "npy_f32": Kind("npy", "<f4"),
    "npy_f16": Kind("npy", "<f2"),
    "parquet": Kind("parquet", "<f4", meta=True, row_group=40),
    "parquet_fsl_f64": Kind("parquet", "<f8", meta=True, list_type="fixed_size_list", row_group=64),
    "parquet_npy": Kind("parquet_npy", "<f4", meta=True, row_group=50),
    "fvecs": Kind("fvecs", "<f4"),
    "ivecs": Kind("ivecs", "<i4"),
    "bvecs": Kind("bvecs", "u1"),
    "fbin": Kind("fbin", "<f4"),
    "ibin": Kind("ibin", "<i4"),
    "u8bin": Kind("u8bin", "u1"),
    "i8bin": Kind("i8bin", "i1"),
    "hdf5_contiguous": Kind("hdf5", "<f4"),
    "hdf5_chunked": Kind("hdf5", "<f4", chunks="32"),
    "hdf5_gzip_f8be": Kind("hdf5", ">f8", chunks="24", compression="gzip"),
    # big-endian rows (never straight to their places: cast to native order), float widths mixed across files
    "npy_f4be": Kind("npy", ">f4"),
    "hdf5_contiguous_f4be": Kind("hdf5", ">f4"),
    "npy_mixed_f2_f4": Kind("npy", "<f2|<f4"),
    "parquet_mixed_f4_f8": Kind("parquet", "<f4|<f8", meta=True, list_type="list|fixed_size_list", row_group=30),
    "hdf5_mixed_f8_chunked_f4": Kind("hdf5", "<f8|<f4", chunks="0|16"),
}
S3_KINDS = ["npy_f32", "parquet", "parquet_npy", "u8bin"]
OUTPUT_DTYPES = {"stored": None, "float32": np.float32, "float64": np.float64}
EXTENSIONS = {"hdf5": "hdf5", "parquet_npy": "npy"}


def ids_of(index: np.ndarray) -> np.ndarray:
    return 1_000_003 * index.astype(np.int64) + 17


def captions_of(index: np.ndarray) -> list[str]:
    return [f"row {i}" for i in index]


def sample(rows: int, dtype: str, seed: int, dim: int = DIM) -> np.ndarray:
    """Seeded random rows: floats ~ N(0, 10), integers over the dtype's range (within +-2**20, exact in float32)."""
    kind = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    if kind.kind == "f":
        return (rng.standard_normal((rows, dim)) * 10).astype(kind)
    info = np.iinfo(kind)
    return rng.integers(max(info.min, -(2**20)), min(info.max, 2**20), (rows, dim), endpoint=True).astype(kind)


def meta_table(first: int, rows: int) -> dict:
    index = np.arange(first, first + rows)
    return {"id": pa.array(ids_of(index), pa.int64()), "caption": pa.array(captions_of(index), pa.string())}


def write_file(folder: Path, kind: Kind, number: int, first: int, rows: np.ndarray) -> None:
    """One file of the kind holding `rows`, global rows [first, first + len(rows))."""
    stem = f"part_{number:02d}"
    dim = rows.shape[1]
    fmt = kind.file_format
    if fmt in ("npy", "parquet_npy"):
        np.save(folder / f"{stem}.npy", rows)
        if fmt == "parquet_npy":
            meta_folder = folder.parent / f"{folder.name}_meta"
            meta_folder.mkdir(exist_ok=True)
            pq.write_table(
                pa.table(meta_table(first, len(rows))), meta_folder / f"{stem}.parquet", row_group_size=kind.row_group
            )
    elif fmt == "parquet":
        values = pa.array(rows.reshape(-1))
        if kind.of("list_type", number) == "fixed_size_list":
            embedding = pa.FixedSizeListArray.from_arrays(values, dim)
        else:
            embedding = pa.ListArray.from_arrays(pa.array(np.arange(0, rows.size + 1, dim, dtype=np.int32)), values)
        table = pa.table({"embedding": embedding, **meta_table(first, len(rows))})
        pq.write_table(table, folder / f"{stem}.parquet", row_group_size=kind.row_group)
    elif fmt.endswith("vecs"):
        with open(folder / f"{stem}.{fmt}", "wb") as file:
            for row in rows:
                np.array([dim], dtype="<i4").tofile(file)
                row.tofile(file)
    elif fmt.endswith("bin"):
        with open(folder / f"{stem}.{fmt}", "wb") as file:
            np.array(rows.shape, dtype="<u4").tofile(file)
            rows.tofile(file)
    else:
        assert fmt == "hdf5"
        with h5py.File(folder / f"{stem}.hdf5", "w") as file:
            options: dict = {}
            chunks = int(kind.of("chunks", number))
            if chunks:  # resizable: chunks may be larger than a small file's rows
                options = {"chunks": (chunks, dim), "compression": kind.compression, "maxshape": (None, dim)}
            file.create_dataset("train", data=rows, **options)
            file.create_dataset("test", data=rows[:3] + 1)


def write_kind(folder: Path, kind: Kind, counts: list[int] = COUNTS, dim: int = DIM) -> np.ndarray:
    """The kind's files under `folder`; all their rows in reading order (in the widest dtype, if they mix)."""
    folder.mkdir(parents=True)
    parts, first = [], 0
    for number, count in enumerate(counts):
        rows = sample(count, kind.of("dtype", number), seed=100 + number, dim=dim)
        write_file(folder, kind, number, first, rows)
        parts.append(rows)
        first += count
    return np.concatenate([part.astype(np.result_type(*parts)) for part in parts])


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("shuffle_matrix")
    return root, {name: write_kind(root / name, kind) for name, kind in KINDS.items()}


@pytest.fixture(scope="module")
def bases(tree, request) -> dict:
    """storage -> (base URL of the tree, storage options); remote servers started on first use."""
    root = tree[0]
    found: dict = {"local": (str(root), None)}

    class Lazy(dict):
        def __missing__(self, storage):
            if storage == "http":
                server = request.getfixturevalue("http_server_factory")(root)
                self[storage] = (server.url, None)
            else:
                moto = request.getfixturevalue("moto_s3")
                moto.upload_folder(root, BUCKET, "tree")
                self[storage] = (f"s3://{BUCKET}/tree", moto.storage_options())
            return self[storage]

    return Lazy(found)


@pytest.fixture(scope="module")
def readers(bases) -> dict:
    cache: dict = {}

    def reader(name: str, storage: str) -> EmbeddingReader:
        if (name, storage) not in cache:
            base, options = bases[storage]
            kind = KINDS[name]
            extra: dict = {}
            if kind.file_format == "parquet_npy":
                extra["metadata_folder"] = f"{base}/{name}_meta"
            if kind.meta:
                extra["meta_columns"] = META
            if storage != "local":
                extra.update(storage_options=options, retry_policy=FAST_RETRIES)
            cache[name, storage] = EmbeddingReader(f"{base}/{name}", file_format=kind.file_format, **extra)
        return cache[name, storage]

    return reader


def wanted_dtype(reader: EmbeddingReader, output_dtype) -> np.dtype:
    return reader.dtype.newbyteorder("=") if output_dtype is None else np.dtype(output_dtype)


def check_batch(name: str, expected: np.ndarray, out: np.dtype, emb: np.ndarray, meta: pd.DataFrame) -> np.ndarray:
    kind = KINDS[name] if name in KINDS else WIDE[name][0]
    """One batch checked row for row: dtype, shape, each row the one its `i` names, meta columns aligned; its `i`."""
    index = meta["i"].to_numpy()
    assert emb.dtype == out, (emb.dtype, out)
    assert emb.shape == (len(index), expected.shape[1]) and len(meta) == len(index)
    assert ((index >= 0) & (index < len(expected))).all(), index
    np.testing.assert_array_equal(emb, expected[index].astype(out), err_msg=f"{name}: rows not the ones `i` names")
    if kind.meta:
        assert list(meta.columns) == [*META, "i"], list(meta.columns)
        np.testing.assert_array_equal(meta["id"].to_numpy(), ids_of(index), err_msg=f"{name}: id not aligned")
        assert meta["caption"].tolist() == captions_of(index), f"{name}: caption not aligned"
    else:
        assert list(meta.columns) == ["i"], list(meta.columns)
    return index


def small_budget(reader: EmbeddingReader, output_dtype, batch_size: int, batches_per_window: int = 2) -> int:
    """A RAM budget whose window holds `batches_per_window` batches (a third of the budget is the window)."""
    row_bytes = reader.dimension * wanted_dtype(reader, output_dtype).itemsize
    return 3 * batches_per_window * batch_size * row_bytes + 2


def read(reader, batch_size, **options) -> list[tuple[np.ndarray, pd.DataFrame]]:
    return list(reader(batch_size, show_progress=False, shuffle=True, seed=SEED, **options))


def read_checked(name, expected, reader, batch_size, out, **options) -> tuple[list, list[np.ndarray]]:
    """The batches of a shuffled read (kept until the end: a held batch is never overwritten), then each checked;
    the batches and their `i`."""
    batches = read(reader, batch_size, **options)
    return batches, [check_batch(name, expected, out, emb, meta) for emb, meta in batches]


def share_sizes(rows: int, rank: int, world_size: int, batch_size: int) -> list[int]:
    """The batch sizes of a rank's share with remainder="keep"."""
    share = (rank + 1) * rows // world_size - rank * rows // world_size
    return [batch_size] * (share // batch_size) + ([share % batch_size] if share % batch_size else [])


LOCAL_CASES = list(KINDS)
REMOTE_CASES = [(kind, "http") for kind in KINDS] + [(kind, "s3") for kind in S3_KINDS]
# (batch size, world size, small windows): runs of one row and many windows; runs of 2 rows in one window
PLANS = {"b13_w3_windows": (13, 3, True), "b130_w2_one_window": (130, 2, False)}


@pytest.mark.parametrize("output", OUTPUT_DTYPES)
@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("name", LOCAL_CASES)
def test_local_each_row_once_over_all_ranks(tree, readers, name, plan, output):
    """Each row of [START, END) once over the ranks, each rank's share its positions' size in full batches but the
    last, each row the one its `i` names, meta aligned, shuffled indeed."""
    expected, reader = tree[1][name], readers(name, "local")
    output_dtype = OUTPUT_DTYPES[output]
    batch_size, world_size, small = PLANS[plan]
    out = wanted_dtype(reader, output_dtype)
    budget = small_budget(reader, output_dtype, batch_size) if small else 2**32
    options = dict(start=START, end=END, output_dtype=output_dtype, max_ram_usage_in_bytes=budget)
    seen = []
    for rank in range(world_size):
        batches, indices = read_checked(
            name, expected, reader, batch_size, out, rank=rank, world_size=world_size, **options
        )
        assert [len(emb) for emb, _ in batches] == share_sizes(END - START, rank, world_size, batch_size)
        seen.append(np.concatenate(indices))
    every = np.concatenate(seen)
    np.testing.assert_array_equal(np.sort(every), np.arange(START, END))
    assert not np.array_equal(every, np.sort(every))  # shuffled indeed


VARIANTS = [
    {"max_piece_size": 3, "parallel_pieces": 1},
    {"max_piece_size": 10_000, "parallel_pieces": 8},
]


@pytest.mark.parametrize("output", OUTPUT_DTYPES)
@pytest.mark.parametrize("name", LOCAL_CASES)
def test_local_same_order_whatever_the_pieces_or_threads(tree, readers, name, output):
    """The order (and every row) of a shuffled read does not depend on max_piece_size or parallel_pieces: each
    variant as the read with default pieces; each batch checked as soon as it is handed out (arrays recycled)."""
    expected, reader = tree[1][name], readers(name, "local")
    output_dtype = OUTPUT_DTYPES[output]
    out = wanted_dtype(reader, output_dtype)
    budget = small_budget(reader, output_dtype, 20, batches_per_window=3)
    options = dict(start=START, end=END, output_dtype=output_dtype, max_ram_usage_in_bytes=budget, rank=1, world_size=2)
    _, base = read_checked(name, expected, reader, 20, out, **options)
    assert [len(batch) for batch in base] == share_sizes(END - START, 1, 2, 20)
    for variant in VARIANTS:
        got = []
        for emb, meta in reader(20, show_progress=False, shuffle=True, seed=SEED, **options, **variant):
            got.append(check_batch(name, expected, out, emb, meta).copy())
        assert [len(batch) for batch in got] == [len(batch) for batch in base], variant
        for mine, theirs in zip(got, base):
            np.testing.assert_array_equal(mine, theirs, err_msg=f"order differs with {variant}")


# every remainder, each with another output dtype (and every output dtype once)
RESUMES = [("keep", "float32"), ("drop", "stored"), ("pad", "float64"), ("pad", "stored")]


def check_resume(name, expected, reader, out, output_dtype, remainder, ks) -> None:
    """Rank 2 of 3, batches of 16 in windows of 2: the full read's sizes (and padding), then each read resumed
    at batch k equal to the full read's batches k... (rows and meta)."""
    batch_size = 16
    budget = small_budget(reader, output_dtype, batch_size, batches_per_window=2)
    options = dict(
        start=START,
        end=END,
        output_dtype=output_dtype,
        max_ram_usage_in_bytes=budget,
        rank=2,
        world_size=3,
        remainder=remainder,
    )
    full, indices = read_checked(name, expected, reader, batch_size, out, **options)
    share = np.concatenate(indices)  # shares of 145 rows: 9 full batches and 1 row
    sizes = {"keep": [batch_size] * 9 + [1], "drop": [batch_size] * 9, "pad": [batch_size] * 10}[remainder]
    assert [len(batch) for batch in indices] == sizes
    if remainder == "pad":
        np.testing.assert_array_equal(share[145:], share[: 10 * batch_size - 145])  # the padding: the first rows
    assert len(np.unique(share)) == min(145, len(share))
    for k in ks(len(full)):
        tail = read(reader, batch_size, start_batch=k, **options)
        assert len(tail) == len(full) - k, k
        for (emb, meta), (full_emb, full_meta) in zip(tail, full[k:]):
            check_batch(name, expected, out, emb, meta)
            np.testing.assert_array_equal(emb, full_emb, err_msg=f"resumed at {k}: rows differ")
            pd.testing.assert_frame_equal(meta, full_meta, obj=f"meta resumed at {k}")


@pytest.mark.parametrize("remainder, output", RESUMES)
@pytest.mark.parametrize("name", LOCAL_CASES)
def test_local_resume_is_the_tail_of_the_full_run(tree, readers, name, remainder, output):
    expected, reader = tree[1][name], readers(name, "local")
    out = wanted_dtype(reader, OUTPUT_DTYPES[output])
    check_resume(name, expected, reader, out, OUTPUT_DTYPES[output], remainder, lambda n: (1, 5, n - 1, n))


@pytest.mark.parametrize("output", OUTPUT_DTYPES)
@pytest.mark.parametrize("name, storage", REMOTE_CASES)
def test_remote_rows_and_order_as_local(tree, readers, name, storage, output):
    """Over http and from S3: both ranks' batches row for row, each row of [START, END) once, the order the local
    read's (with other pieces and threads: an order never depends on where the files live). http: windows of 4
    batches; S3 (a GET per piece, slow through moto): the whole share in one window."""
    expected, reader, local = tree[1][name], readers(name, storage), readers(name, "local")
    output_dtype = OUTPUT_DTYPES[output]
    out = wanted_dtype(reader, output_dtype)
    budget = small_budget(reader, output_dtype, 20, batches_per_window=4) if storage == "http" else 2**32
    options = dict(start=START, end=END, output_dtype=output_dtype, max_ram_usage_in_bytes=budget, world_size=2)
    seen = []
    for rank, variant in ((0, {}), (1, {"max_piece_size": 50, "parallel_pieces": 3})):
        _, indices = read_checked(name, expected, reader, 20, out, rank=rank, **options, **variant)
        _, local_indices = read_checked(name, expected, local, 20, out, rank=rank, **options)
        assert [len(batch) for batch in indices] == share_sizes(END - START, rank, 2, 20)
        for mine, theirs in zip(indices, local_indices):
            np.testing.assert_array_equal(mine, theirs, err_msg=f"order on {storage} differs from local")
        seen.extend(indices)
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(START, END))


@pytest.mark.parametrize("name, storage", REMOTE_CASES)
def test_remote_resume_with_padding(tree, readers, name, storage):
    expected, reader = tree[1][name], readers(name, storage)
    out = wanted_dtype(reader, np.float32)
    check_resume(name, expected, reader, out, np.float32, "pad", lambda n: (3,))


# Rows wide enough for several 1 MB blocks per file (blocks cut inside files, side buffers of several cast blocks,
# bounced local reads), and a long file of narrow rows read in single-row runs (more than IOV_MAX places a piece).
WIDE = {
    "npy_f4_wide": (Kind("npy", "<f4"), [400, 333, 0, 250], 1536),
    "npy_f2_wide": (Kind("npy", "<f2"), [400, 333, 0, 250], 1536),
    "fvecs_wide": (Kind("fvecs", "<f4"), [400, 333, 0, 250], 1536),
    "u8bin_wide": (Kind("u8bin", "u1"), [1500, 1400], 1536),
    "hdf5_wide": (Kind("hdf5", "<f4|<f2", chunks="0|100"), [400, 333, 250], 1536),
    "parquet_npy_wide": (Kind("parquet_npy", "<f4", meta=True, row_group=90), [400, 333, 0, 250], 1536),
    "npy_long": (Kind("npy", "<f4"), [5000, 3001], DIM),
    "u8bin_long": (Kind("u8bin", "u1"), [5000, 3001], DIM),
}


@pytest.fixture(scope="module")
def wide_tree(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("shuffle_matrix_wide")
    return {
        name: (root / name, write_kind(root / name, kind, counts, dim)) for name, (kind, counts, dim) in WIDE.items()
    }


@pytest.mark.parametrize("output", ["stored", "float64"])
@pytest.mark.parametrize("name", WIDE)
def test_local_blocks_inside_files_and_long_pieces(wide_tree, name, output):
    """Blocks cut inside files, windows of a few batches in runs of 3 rows (wide) or the whole share in single rows
    (long): each row once over both ranks, row for row, meta aligned, and the same order with other pieces."""
    kind = WIDE[name][0]
    folder, expected = wide_tree[name]
    extra = {"meta_columns": META, "metadata_folder": str(folder) + "_meta"} if kind.meta else {}
    reader = EmbeddingReader(str(folder), file_format=kind.file_format, **extra)
    output_dtype = OUTPUT_DTYPES[output]
    out = wanted_dtype(reader, output_dtype)
    wide = reader.dimension > DIM
    batch_size = 200 if wide else 100
    budget = small_budget(reader, output_dtype, batch_size, batches_per_window=2) if wide else 2**32
    start, end = 4, len(expected) - 2  # an even start: npy pieces of narrow rows start on a cache line
    options = dict(start=start, end=end, output_dtype=output_dtype, max_ram_usage_in_bytes=budget, world_size=2)
    seen = []
    for rank in range(2):
        _, indices = read_checked(name, expected, reader, batch_size, out, rank=rank, **options)
        assert [len(batch) for batch in indices] == share_sizes(end - start, rank, 2, batch_size)
        again = [
            check_batch(name, expected, out, emb, meta).copy()
            for emb, meta in read(reader, batch_size, rank=rank, max_piece_size=37, parallel_pieces=3, **options)
        ]
        np.testing.assert_array_equal(np.concatenate(again), np.concatenate(indices))
        seen.extend(indices)
    every = np.concatenate(seen)
    np.testing.assert_array_equal(np.sort(every), np.arange(start, end))
    assert not np.array_equal(every, np.sort(every))


FAULTY_KINDS = ["npy_f32", "npy_f16", "parquet", "parquet_npy", "fvecs", "u8bin"]


@pytest.mark.parametrize(
    "name, output, seed", [(name, ["stored", "float64"][k % 2], 7) for k, name in enumerate(FAULTY_KINDS)]
)
def test_faulty_http_rows_and_order_as_local(tree, readers, http_server_factory, name, output, seed):
    """Over http with 500s, 503s, resets, truncated bodies and short 206 answers on about a third of the answers
    (seeded), retried: the rows are still the ones written, the order the local read's (a retried part lands where
    its bytes belong). hdf5 is left out: see test_hdf5_open_over_http_retries_a_transient_error."""
    faults = FaultConfig(error_rate=0.1, reset_rate=0.05, truncate_rate=0.05, short_206_rate=0.1, seed=seed)
    base = str(http_server_factory(tree[0], faults=faults).url)
    kind, expected = KINDS[name], tree[1][name]
    extra: dict = {"meta_columns": META} if kind.meta else {}
    if kind.file_format == "parquet_npy":
        extra["metadata_folder"] = f"{base}/{name}_meta"
    reader = EmbeddingReader(f"{base}/{name}", file_format=kind.file_format, retry_policy=FAST_RETRIES, **extra)
    output_dtype = OUTPUT_DTYPES[output]
    out = wanted_dtype(reader, output_dtype)
    budget = small_budget(reader, output_dtype, 20, batches_per_window=4)
    options = dict(start=START, end=END, output_dtype=output_dtype, max_ram_usage_in_bytes=budget, world_size=2)
    local = readers(name, "local")
    for rank in range(2):
        _, indices = read_checked(name, expected, reader, 20, out, rank=rank, max_piece_size=9, **options)
        _, local_indices = read_checked(name, expected, local, 20, out, rank=rank, **options)
        np.testing.assert_array_equal(np.concatenate(indices), np.concatenate(local_indices))


@pytest.mark.parametrize("name", ["hdf5_contiguous", "hdf5_chunked"])
def test_hdf5_open_over_http_retries_a_transient_error(tree, http_server_factory, name):
    """A file answering 500 to every request: opening it through h5py (its header, and every chunked piece) is
    retried as any transient error is, and fails only once the attempts are spent, not at the first 500 as if the
    file were missing. (Under random faults a shuffled hdf5 read over http was seen to fail with a FileNotFoundError
    "permanent error, not retried", and once to hang in h5py's open: not reproducible on demand, so hdf5 is not in
    test_faulty_http_rows_and_order_as_local.)"""
    faults = FaultConfig(error_rate=1.0, paths_only=f"/{name}/part_06.hdf5")
    server = http_server_factory(tree[0], faults=faults)
    with pytest.raises(ReadFailedError) as failure:
        EmbeddingReader(f"{server.url}/{name}", file_format="hdf5", retry_policy=FAST_RETRIES)
    assert "not retried" not in str(failure.value), str(failure.value)
    assert server.stats.faults[FaultKind.ERROR_500] + server.stats.faults[FaultKind.ERROR_503] >= 12
