"""Deterministic benchmark datasets, generated once into a work dir and reused while their manifest matches."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import synth

GENERATOR_VERSION = 1
TARGET_FILE_BYTES = 200 * 10**6
MIN_FILES = 3
# Uneven file sizes, so that batch and piece boundaries fall at irregular places inside files.
_FILE_WEIGHTS = (1.0, 1.13, 0.87, 1.21, 0.79, 1.05, 0.95, 1.17, 0.83, 1.0)


@dataclass(frozen=True)
class DatasetSpec:
    """What to generate: a layout kind, the number of rows and files, dim and stored dtype."""

    kind: str  # npy | parquet_fsl | parquet_pandas | parquet_npy | npy_small_files | npy_even_files | parquet_single
    rows: int
    dim: int
    dtype: str = "float32"
    files: int = 1
    row_group_rows: int | None = None

    @property
    def name(self) -> str:
        """Folder name of this dataset under the work dir."""
        return f"{self.kind}_{self.dtype}_{self.rows}r_{self.dim}d_{self.files}f"

    @property
    def data_bytes(self) -> int:
        """Stored embedding bytes (rows * dim * itemsize)."""
        return self.rows * self.dim * np.dtype(self.dtype).itemsize


@dataclass
class Dataset:
    """A generated dataset: where its embeddings (and metadata) are and which files hold them."""

    spec: DatasetSpec
    root: Path
    embedding_files: list[str] = field(default_factory=list)
    metadata_files: list[str] = field(default_factory=list)

    @property
    def embeddings_dir(self) -> Path:
        """Folder holding the embedding files."""
        return self.root / "embeddings"

    @property
    def metadata_dir(self) -> Path:
        """Folder holding the metadata parquet files (parquet_npy only)."""
        return self.root / "metadata"


def spec_for_bytes(kind: str, size_bytes: float, dim: int, dtype: str = "float32", **extra: int) -> DatasetSpec:
    """Return the spec of about `size_bytes` of stored embeddings, split into files of about 200 MB."""
    rows = max(MIN_FILES, int(size_bytes // (dim * np.dtype(dtype).itemsize)))
    files = max(MIN_FILES, round(size_bytes / TARGET_FILE_BYTES))
    return DatasetSpec(kind=kind, rows=rows, dim=dim, dtype=dtype, files=min(files, rows), **extra)


def file_row_counts(rows: int, files: int) -> list[int]:
    """Split `rows` into `files` uneven, non-empty, deterministic parts."""
    if files <= 1:
        return [rows]
    weights = np.array([_FILE_WEIGHTS[k % len(_FILE_WEIGHTS)] for k in range(files)])
    cuts = np.round(np.cumsum(weights) / weights.sum() * rows).astype(np.int64)
    counts = np.diff(np.concatenate([[0], cuts])).tolist()
    if min(counts) <= 0 or sum(counts) != rows:
        return [rows // files + (k < rows % files) for k in range(files)]
    return counts


def ensure(spec: DatasetSpec, work_dir: Path, log=print) -> Dataset:
    """Return the dataset, generating it first unless its manifest already matches the spec and files.

    A new dataset is generated in a temporary folder beside its final one, manifest last, then renamed into
    place: an interrupted generation (or one running at the same time in another bench) never leaves a folder
    that looks complete.
    """
    root = work_dir / spec.name
    dataset = _load_manifest(spec, root)
    if dataset is not None:
        return dataset
    tmp = work_dir / f".{spec.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    log(f"  generating {spec.name} ({spec.data_bytes / 1e9:.2f} GB) in {root}")
    staged = Dataset(spec, tmp)
    staged.embeddings_dir.mkdir(parents=True)
    _GENERATORS[spec.kind](staged)
    _write_manifest(staged)
    if root.exists():
        shutil.rmtree(root)  # stale: its manifest did not match
    try:
        tmp.rename(root)
    except OSError:  # another bench renamed its copy first: use it if complete
        shutil.rmtree(tmp)
        dataset = _load_manifest(spec, root)
        if dataset is None:
            raise
        return dataset
    return Dataset(spec, root, staged.embedding_files, staged.metadata_files)


def _load_manifest(spec: DatasetSpec, root: Path) -> Dataset | None:
    """Return the dataset described by root/manifest.json if it matches spec and every file has its size."""
    path = root / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError:  # a manifest cut short (older benches wrote it in place): regenerate
        return None
    if manifest.get("generator_version") != GENERATOR_VERSION or manifest.get("spec") != asdict(spec):
        return None
    for rel, size in manifest["sizes"].items():
        file = root / rel
        if not file.exists() or file.stat().st_size != size:
            return None
    return Dataset(spec, root, manifest["embedding_files"], manifest["metadata_files"])


def _write_manifest(dataset: Dataset) -> None:
    """Record the spec and every file's size, written last so that an interrupted generation is redone."""
    rels = dataset.embedding_files + dataset.metadata_files
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "spec": asdict(dataset.spec),
        "embedding_files": dataset.embedding_files,
        "metadata_files": dataset.metadata_files,
        "sizes": {rel: (dataset.root / rel).stat().st_size for rel in rels},
    }
    tmp = dataset.root / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(dataset.root / "manifest.json")


def _file_ranges(spec: DatasetSpec) -> list[tuple[int, int]]:
    """(start, end) global rows of each file (npy_even_files: the same count in every file)."""
    if spec.kind == "npy_even_files":
        counts = [spec.rows // spec.files + (k < spec.rows % spec.files) for k in range(spec.files)]
    else:
        counts = file_row_counts(spec.rows, spec.files)
    bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()
    return list(zip(bounds[:-1], bounds[1:]))


def _gen_npy(dataset: Dataset, prefix: str = "emb") -> None:
    """Write one .npy file per part."""
    spec = dataset.spec
    width = max(4, len(str(spec.files)))
    for k, (lo, hi) in enumerate(_file_ranges(spec)):
        rel = f"embeddings/{prefix}_{k:0{width}d}.npy"
        np.save(dataset.root / rel, synth.embedding_range(lo, hi, spec.dim, spec.dtype))
        dataset.embedding_files.append(rel)


def _fsl_table(lo: int, hi: int, dim: int) -> pa.Table:
    """Table with one `embedding` column of fixed_size_list<float32>[dim]."""
    values = pa.array(synth.embedding_range(lo, hi, dim, "float32").ravel())
    return pa.table({"embedding": pa.FixedSizeListArray.from_arrays(values, dim)})


def _gen_parquet_fsl(dataset: Dataset) -> None:
    """Write parquet files with a fixed_size_list<float32> column through pyarrow (default row groups)."""
    spec = dataset.spec
    for k, (lo, hi) in enumerate(_file_ranges(spec)):
        rel = f"embeddings/part_{k:04d}.parquet"
        pq.write_table(_fsl_table(lo, hi, spec.dim), dataset.root / rel, row_group_size=spec.row_group_rows)
        dataset.embedding_files.append(rel)


def _gen_parquet_pandas(dataset: Dataset) -> None:
    """Write parquet files the way pandas users do: a column of 1-D arrays, `DataFrame.to_parquet`."""
    spec = dataset.spec
    for k, (lo, hi) in enumerate(_file_ranges(spec)):
        rel = f"embeddings/part_{k:04d}.parquet"
        frame = pd.DataFrame({"embedding": list(synth.embedding_range(lo, hi, spec.dim, "float32"))})
        frame.to_parquet(dataset.root / rel, index=False)
        dataset.embedding_files.append(rel)


def _gen_parquet_npy(dataset: Dataset) -> None:
    """Write LAION-style pairs: embeddings/img_emb_K.npy beside metadata/metadata_K.parquet (caption, url)."""
    _gen_npy(dataset, prefix="img_emb")
    dataset.metadata_dir.mkdir()
    for k, (lo, hi) in enumerate(_file_ranges(dataset.spec)):
        rel = f"metadata/metadata_{k:04d}.parquet"
        rows = range(lo, hi)
        frame = pd.DataFrame({"caption": [synth.caption(i) for i in rows], "url": [synth.url(i) for i in rows]})
        frame.to_parquet(dataset.root / rel, index=False)
        dataset.metadata_files.append(rel)


def _gen_parquet_single(dataset: Dataset) -> None:
    """Write one parquet file (fixed_size_list<float32>) with row groups of spec.row_group_rows."""
    spec = dataset.spec
    rel = "embeddings/collection.parquet"
    with pq.ParquetWriter(dataset.root / rel, pa.schema([("embedding", pa.list_(pa.float32(), spec.dim))])) as writer:
        for lo in range(0, spec.rows, spec.row_group_rows or spec.rows):
            hi = min(spec.rows, lo + (spec.row_group_rows or spec.rows))
            writer.write_table(_fsl_table(lo, hi, spec.dim), row_group_size=spec.row_group_rows)
    dataset.embedding_files.append(rel)


_GENERATORS = {
    "npy": _gen_npy,
    "npy_small_files": _gen_npy,
    "npy_even_files": _gen_npy,
    "parquet_fsl": _gen_parquet_fsl,
    "parquet_pandas": _gen_parquet_pandas,
    "parquet_npy": _gen_parquet_npy,
    "parquet_single": _gen_parquet_single,
}


def warm_page_cache(dataset: Dataset) -> None:
    """Read every file of the dataset once (untimed), so that no measurement pays for disk reads."""
    for rel in dataset.embedding_files + dataset.metadata_files:
        with open(dataset.root / rel, "rb", buffering=0) as f:
            while f.read(8 * 2**20):
                pass
