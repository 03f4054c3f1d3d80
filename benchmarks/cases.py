"""The benchmark cases: which dataset, how it is read, what it is compared with, and the targets it must meet."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasets import DatasetSpec, spec_for_bytes

MB = 10**6
GB = 10**9
DIM = 768
THROTTLE_LATENCY_S = 0.030
THROTTLE_BYTES_PER_S = 10 * MB


@dataclass(frozen=True)
class Settings:
    """Sizes and read parameters shared by all cases (from the command line)."""

    size_gb: float = 1.5
    remote_size_gb: float = 1.0
    batch_size: int = 100_000
    remote_batch_size: int = 25_000
    max_ram_mb: int = 4096  # the library's default budget (the targets are for default arguments)
    small_files: int = 10_000
    many_files: int = 10_000  # small_files_10k: files of many_files_rows rows (30 x 768 float32: 92 KB)
    many_files_rows: int = 30
    open_files: int = 100_000  # open_100k_local: files of open_files_rows rows (3 x 768 float32: 9 KB)
    open_files_rows: int = 3
    rss_case_mb: int = 800
    rss_case_batch: int = 10_000
    rss_case_max_ram_mb: int = 256


@dataclass(frozen=True)
class Target:
    """One target the project must meet in a case: a kind and a threshold."""

    kind: str  # ref_ratio | ceiling | wire | open_ratio | rss_below | contender_ratio | open_below
    threshold: float
    label: str
    against: str = ""  # contender_ratio: the contender compared with


@dataclass(frozen=True)
class Case:
    """One benchmark case."""

    name: str
    title: str
    dataset_kind: str
    dtype: str = "float32"
    file_format: str = "npy"
    meta_columns: tuple[str, ...] = ()
    remote: str | None = None  # None (local page cache) | http | http_slow | s3
    project_call_kwargs: dict[str, Any] = field(default_factory=dict)
    project_dtype: str = "float32"
    run_reference: bool = True
    open_only: bool = False
    show_progress: bool = False  # both implementations draw their bar (the runner's stderr is a log file)
    rss_case: bool = False
    whole_job: bool = False  # compared by job_s (numpy and library import, open, every batch in a fresh process)
    ceilings: tuple[str, ...] = ("readinto_1t", "readinto_all", "readinto_1t_fresh", "readinto_all_fresh")
    main_ceiling: str | None = "readinto_1t"
    # What users would pick instead (run_one.run_contender), measured in the same rounds: npload | mmap | pyarrow
    contenders: tuple[str, ...] = ()
    targets: tuple[Target, ...] = ()
    layout: Callable[[Settings], DatasetSpec] | None = None  # the dataset, when not derived from the sizes

    @property
    def timed(self) -> str:
        """The run field a case compares: job_s, open_s or read_s."""
        return "job_s" if self.whole_job else "open_s" if self.open_only else "read_s"

    @property
    def is_remote(self) -> bool:
        """True for the cases served over loopback."""
        return self.remote is not None

    def dataset(self, s: Settings) -> DatasetSpec:
        """The dataset this case reads, for these settings."""
        if self.layout is not None:
            return self.layout(s)
        if self.open_only:
            return DatasetSpec("npy_small_files", rows=4 * s.small_files, dim=DIM, files=s.small_files)
        if self.rss_case:
            rows = s.rss_case_mb * MB // (DIM * 4)
            return DatasetSpec("parquet_single", rows=rows, dim=DIM, row_group_rows=16384)
        size = (s.remote_size_gb if self.is_remote else s.size_gb) * GB
        return spec_for_bytes(self.dataset_kind, size, DIM, self.dtype)

    def batch_size(self, s: Settings) -> int:
        """Rows per batch."""
        if self.rss_case:
            return s.rss_case_batch
        return s.remote_batch_size if self.is_remote else s.batch_size

    def max_ram(self, s: Settings) -> int:
        """max_ram_usage_in_bytes passed to both implementations."""
        return (s.rss_case_max_ram_mb if self.rss_case else s.max_ram_mb) * MB


PARQUET_CEILINGS = ("readinto_1t", "readinto_all", "pyarrow_all")
NPY_CONTENDERS = ("npload", "mmap")


def _even_files(files: str, rows_per_file: str) -> Callable[[Settings], DatasetSpec]:
    """A layout of Settings.<files> npy files of exactly Settings.<rows_per_file> rows each."""

    def layout(s: Settings) -> DatasetSpec:
        count = getattr(s, files)
        return DatasetSpec("npy_even_files", rows=count * getattr(s, rows_per_file), dim=DIM, files=count)

    return layout


def _parquet_case(name: str, title: str) -> Case:
    """A parquet case over the dataset of the same name, with the parquet targets of issue 3."""
    return Case(
        name,
        title,
        name,
        file_format="parquet",
        ceilings=PARQUET_CEILINGS,
        main_ceiling="pyarrow_all",
        contenders=("pyarrow",),
        targets=(Target("ref_ratio", 3, "3x ref"), Target("ceiling", 0.8, "80% of pyarrow decode")),
    )


CASES: tuple[Case, ...] = (
    Case(
        "npy_f32",
        "npy float32",
        "npy",
        contenders=NPY_CONTENDERS,
        targets=(Target("ceiling", 0.75, "75% of readinto 1t"), Target("ref_ratio", 4, "4x ref")),
    ),
    Case(
        "npy_f32_progress",
        "npy float32, show_progress=True (bar in a log file)",
        "npy",
        show_progress=True,
        targets=(Target("ceiling", 0.75, "75% of readinto 1t"), Target("ref_ratio", 4, "4x ref")),
    ),
    Case(
        "npy_f16_f32",
        "npy float16 read as float32",
        "npy",
        dtype="float16",
        ceilings=("readinto_1t", "readinto_all", "cast_all"),
        main_ceiling="cast_all",
        contenders=NPY_CONTENDERS,
        targets=(Target("ref_ratio", 3, "3x ref"),),
    ),
    Case(
        "npy_f16_keep",
        "npy float16 kept as float16 (output_dtype=None; ref n/a)",
        "npy",
        dtype="float16",
        project_call_kwargs={"output_dtype": None},
        project_dtype="float16",
        run_reference=False,
        contenders=NPY_CONTENDERS,
        targets=(Target("ceiling", 0.75, "75% of readinto 1t"),),
    ),
    _parquet_case("parquet_fsl", "parquet fixed_size_list<float32>"),
    _parquet_case("parquet_pandas", "parquet list<float> written by pandas"),
    Case(
        "parquet_npy",
        "parquet_npy, metadata caption+url",
        "parquet_npy",
        file_format="parquet_npy",
        meta_columns=("caption", "url"),
        targets=(Target("ref_ratio", 3, "3x ref"),),
    ),
    Case(
        "http",
        "npy float32 over http (loopback, unthrottled)",
        "npy",
        remote="http",
        ceilings=("fetch",),
        main_ceiling="fetch",
        targets=(Target("ref_ratio", 2, "2x ref"), Target("wire", 1.05, "wire<=1.05x")),
    ),
    Case(
        "http_slow",
        "npy float32 over http, 30 ms/request, 10 MB/s/connection",
        "npy",
        remote="http_slow",
        ceilings=(),
        main_ceiling="connections",
        targets=(Target("ref_ratio", 2, "2x ref"), Target("wire", 1.05, "wire<=1.05x")),
    ),
    Case(
        "s3",
        "npy float32 over S3 (moto server + s3fs)",
        "npy",
        remote="s3",
        ceilings=("fetch",),
        main_ceiling="fetch",
        targets=(Target("wire", 1.05, "wire<=1.05x"),),
    ),
    Case(
        "open_10k",
        "open 10,000 small npy files over http, 30 ms/request",
        "npy_small_files",
        remote="http_slow_open",
        open_only=True,
        ceilings=("fetch_heads",),
        main_ceiling="fetch_heads",
        targets=(Target("open_ratio", 5, "open 5x faster"),),
    ),
    Case(
        "parquet_rss",
        "800 MB single-file parquet, 16k-row groups, batch 10k, max_ram 256 MB",
        "parquet_single",
        file_format="parquet",
        rss_case=True,
        ceilings=PARQUET_CEILINGS,
        main_ceiling="pyarrow_all",
        contenders=("pyarrow",),
        targets=(Target("rss_below", 600 * MB, "RSS<600MB"),),
    ),
    Case(
        "small_files_10k",
        "10,000 npy files of 30 x 768 float32 (92 KB), whole job in a fresh process",
        "npy_even_files",
        layout=_even_files("many_files", "many_files_rows"),
        whole_job=True,
        ceilings=("readinto_1t",),
        contenders=("npload",),
        targets=(Target("contender_ratio", 1.5, "1.5x np.load loop", against="npload"),),
    ),
    Case(
        "open_100k_local",
        "open 100,000 local npy files of 9 KB (3 x 768 float32)",
        "npy_even_files",
        layout=_even_files("open_files", "open_files_rows"),
        open_only=True,
        ceilings=("open_read",),
        main_ceiling="open_read",
        targets=(Target("open_below", 1.0, "open<1s"),),
    ),
)

CASE_NAMES = tuple(case.name for case in CASES)


def select(names: str | None) -> list[Case]:
    """The cases named in a comma-separated list (all when None); unknown names raise ValueError."""
    if not names:
        return list(CASES)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(CASE_NAMES))
    if unknown:
        raise ValueError(f"unknown case(s) {unknown}; choose from {', '.join(CASE_NAMES)}")
    return [case for case in CASES if case.name in wanted]
