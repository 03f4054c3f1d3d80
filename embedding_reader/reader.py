"""EmbeddingReader: the facade that picks a format, reads the headers once, and plans and runs reads."""

import copy
import logging
import threading
from itertools import chain, islice
from typing import Any, Dict, Generator, Iterable, Iterator, List, Optional, Sequence, Tuple, Union, cast

import numpy as np
import pandas as pd

from .arguments import (
    as_folder_list,
    check_dataset,
    check_output_dtype,
    check_pattern,
    check_retry_policy,
    check_timeout,
    meta_column_list,
    usable_cores,
)
from .batches import PLACEMENT_BYTES_PER_ROW, BatchAssembler, RangeLayout, RowTarget, Slot
from .errors import InvalidArgumentError, check_int
from .formats import Format, format_class
from .header import FileHeader
from .legacy import FormatReaderView
from .pieces import Piece, iter_pieces, place_segments, split_first_batch
from .pipeline import Pipeline
from .progress import ReadProgress
from .retry import RetryPolicy
from .shuffle import BatchCutter, BatchPlan, ShuffleOptions, WindowLayout, refuse_shuffle_options
from .shuffle_order import EpochOrder, run_rows_for
from .storage import Storage, redact
from .storage.watchdog import DEFAULT_TIMEOUT_S

logger = logging.getLogger("embedding_reader")
DEFAULT_RAM_BUDGET = 2**32
MAX_DEFAULT_PARALLEL_LOCAL = 4  # local reads are memory-bound: a few threads saturate 2 to 8 cores
MAX_DEFAULT_PARALLEL_REMOTE = 16  # remote: 16 threads x 4 MB http parts = 64 connections (see README, Defaults)
FIRST_BATCH_MIN_PIECE = 2**20  # over http the first batch is cut into a piece per thread, not below 1 MB each
LOCAL_GROUP_BYTES = 4 * 2**20  # small local pieces (many small files) read as one task up to this many bytes
WINDOW_GROUP_BYTES = 16 * 2**20  # a shuffled read's local blocks go several to a task (fewer futures and wake-ups) ...
WINDOW_TASKS = 16  # ... a window being at least this many tasks, so that every thread has a share of it
WINDOW_SHARE_OF_BUDGET = 3  # a shuffled read holds one window of a third of the budget while reading the next
MAX_WINDOW_BYTES = 2**28  # ... and at most this much: larger windows mix no better and gather slower (cache misses)
COST_SAMPLE_PIECES = 8  # the default thread count is sized on the costliest of the first pieces

Batch = Tuple[np.ndarray, pd.DataFrame]


class EmbeddingReader:
    """A collection of embedding files (npy, parquet, parquet_npy, *vecs, *bin) read as numpy batches with metadata.

    Headers are read once, in parallel, when the reader is built; the reader pickles small and the
    copy reads without listing folders or reading headers again.
    """

    def __init__(
        self,
        embeddings_folder: Union[str, Sequence[str]],
        file_format: str = "npy",
        embedding_column: str = "embedding",
        meta_columns: Union[str, Sequence[str], None] = None,
        metadata_folder: Optional[str] = None,
        storage_options: Optional[Dict[str, Any]] = None,
        retry_policy: Optional[RetryPolicy] = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        file_pattern: Optional[str] = None,
        hdf5_dataset: str = "train",
    ):
        """List the folders and read every file's header (in parallel), checking the collection is consistent.

        Args:
            embeddings_folder: a folder, a file, or a list of them (paths or fsspec URLs); folders are searched
                recursively, a file is read whatever its name; the paths found are sorted together.
            file_format: "npy", "parquet", "parquet_npy", "fvecs", "ivecs", "bvecs", "fbin", "ibin", "u8bin" or
                "i8bin", or "hdf5" (see README, ANN benchmark formats).
            embedding_column: parquet: the list / fixed_size_list column holding the embeddings.
            meta_columns: parquet and parquet_npy: columns returned in `meta` beside `i` (one name or a list);
                ignored, with a warning, for formats without metadata.
            metadata_folder: parquet_npy: the folder of parquet metadata files paired with the npy files by name.
            storage_options: handed to fsspec (credentials, endpoint, ...); never shown.
            retry_policy: how transient remote failures are retried (default RetryPolicy(): 8 attempts).
            timeout: seconds a remote request may go without progress before it is abandoned and retried.
            file_pattern: a glob the names of the files in the folders must match (e.g. "base.1B.u8bin*");
                default: the format's extension ("*.npy", ...).
            hdf5_dataset: hdf5: the 2-D dataset read from each file ("train", "test", ...; needs h5py).

        Raises an EmbeddingReaderError (a ValueError) naming the file or argument at fault.
        """
        folders = as_folder_list(embeddings_folder)
        format_class(file_format)  # an unknown format fails here, before any listing
        check_retry_policy(retry_policy)
        self.embeddings_folder = embeddings_folder
        self.file_format = file_format
        self.embedding_column = embedding_column
        self.meta_columns = meta_column_list(meta_columns, file_format)
        self.metadata_folder = metadata_folder
        self.file_pattern = check_pattern(file_pattern)
        self.hdf5_dataset = check_dataset(hdf5_dataset)
        self._storage = Storage(folders[0], storage_options, retry_policy or RetryPolicy(), check_timeout(timeout))
        self._format: Format = self._make_format()
        self.headers: List[FileHeader] = self._format.read_headers([self._storage.strip(f) for f in folders])

    def _make_format(self) -> Format:
        """The format object (rebuilt after unpickling: it holds per-process caches, not state)."""
        metadata_folder = self._storage.strip(self.metadata_folder) if self.metadata_folder else None
        cls = format_class(self.file_format)
        options = (self.embedding_column, self.meta_columns, metadata_folder, self.file_pattern, self.hdf5_dataset)
        return cls(self._storage, *options)

    @property
    def storage(self) -> Storage:
        """Where the files live: the fsspec filesystem, the retry policy, and counters of the reads made."""
        return self._storage

    @property
    def reader(self) -> FormatReaderView:
        """1.8.1's format reader, for scripts written against it: `reader.reader.headers` is its headers DataFrame
        (filename, count, count_before, and for npy dimension, dtype, header_offset, byte_per_item)."""
        view = self.__dict__.get("_legacy_view")
        if view is None:
            view = self.__dict__["_legacy_view"] = FormatReaderView(self)
        return view

    @property
    def count(self) -> int:
        """Number of embeddings in the collection."""
        return sum(header.count for header in self.headers)

    @property
    def dimension(self) -> int:
        """Length of one embedding."""
        return self.headers[0].dimension

    @property
    def dtype(self) -> np.dtype:
        """The stored element type (float16, float32, int8, ...); the widest one when float widths mix."""
        dtypes = {header.numpy_dtype for header in self.headers}
        return dtypes.pop() if len(dtypes) == 1 else np.result_type(*dtypes)

    @property
    def byte_per_item(self) -> int:
        """Bytes of one stored embedding: 2*dim for float16, 4*dim for float32, dim for int8."""
        return self.headers[0].row_bytes

    @property
    def total_size(self) -> int:
        """Bytes of all stored embeddings (count * byte_per_item)."""
        return self.count * self.byte_per_item

    @property
    def nb_files(self) -> int:
        """Number of non-empty embedding files."""
        return len(self.headers)

    @property
    def max_file_size(self) -> int:
        """Bytes of the largest embedding file."""
        return max(header.stored_bytes for header in self.headers)

    def __repr__(self) -> str:
        return (
            f"EmbeddingReader({redact(str(self.embeddings_folder))!r}, file_format={self.file_format!r}, "
            f"count={self.count}, dimension={self.dimension}, dtype={self.dtype.name}, nb_files={self.nb_files})"
        )

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        del state["_format"]
        state.pop("_legacy_view", None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._format = self._make_format()

    def _template_for(self, headers: Sequence[FileHeader]) -> "EmbeddingReader":
        """A copy without headers whose storage knows only these files: what a task shipped to a worker carries."""
        template = copy.copy(self)
        template.headers = []
        template.__dict__.pop("_legacy_view", None)
        paths = [path for header in headers for path in (header.path, header.parquet and header.parquet.path) if path]
        template._storage = self._storage.for_files(paths)
        template._format = template._make_format()  # on the template's own storage
        return template

    def split(self, n: int) -> List[Tuple[int, int]]:
        """n contiguous, balanced (start, end) ranges covering [0, count), for spreading a read over workers."""
        check_int("n", n, 1)
        bounds = [self.count * k // n for k in range(n + 1)]
        return list(zip(bounds[:-1], bounds[1:]))

    def __call__(
        self,
        batch_size: int,
        start: int = 0,
        end: Optional[int] = None,
        max_piece_size: Optional[int] = None,
        parallel_pieces: Optional[int] = None,
        show_progress: bool = True,
        max_ram_usage_in_bytes: int = DEFAULT_RAM_BUDGET,
        output_dtype: Any = np.float32,
        *,
        shuffle: bool = False,
        seed: Optional[int] = None,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        remainder: str = "keep",
    ) -> Iterator[Batch]:
        """Yield (embeddings, meta) for rows [start, min(end, count)), `batch_size` rows per batch but the last.

        Args:
            batch_size: rows per batch (>= 1).
            start, end: the global row range; `end=None` means `count`, a larger `end` is clamped.
            max_piece_size: rows one thread reads at a time (default: about 50 MB locally, 64 MB on S3, 16 MB
                over http and other remote storage).
            parallel_pieces: pieces read at once (default: what the RAM budget holds, at most 4 locally, 16
                remotely).
            show_progress: a tqdm bar of rows and MB/s on stderr (terminal, notebook or log file).
            max_ram_usage_in_bytes: the budget for the bytes in flight (default 4 GB).
            output_dtype: the dtype of `embeddings` (default float32); None keeps the stored one.
            shuffle: hand out the rows in a random order fixed by `seed` (README, Shuffled reads); the arguments
                below need it.
            seed: an integer >= 0 (for epoch e of a training run: base + e); None draws one, for one process only.
            rank, world_size: this process's share of the shuffled epoch (shares disjoint, together the range).
            start_batch: resume at this batch of the share, exactly as a full read would have gone on.
            remainder: "keep" (every row once; shares may differ by one row), "drop" (every rank the same number
                of full batches, the rest unread) or "pad" (full batches, the last padded with the share's first rows).

        `embeddings` is a numpy array (n, dimension); `meta` a pandas DataFrame with the meta columns and `i`, each
        row's global index. Bad arguments raise InvalidArgumentError naming them.
        """
        batch_size = check_int("batch_size", batch_size, 1)
        max_ram_usage_in_bytes = check_int("max_ram_usage_in_bytes", max_ram_usage_in_bytes, 1)
        start, end = self._resolve_range(start, end)
        out_dtype = self._resolve_output_dtype(output_dtype)
        piece_rows = self._piece_rows(max_piece_size)
        if shuffle is not False:
            order_options = ShuffleOptions.of(shuffle, seed, rank, world_size, start_batch, remainder)
            return self._shuffled(
                batch_size, start, end, piece_rows, parallel_pieces, show_progress, max_ram_usage_in_bytes, out_dtype,
                order_options,
            )  # fmt: skip
        refuse_shuffle_options(seed, rank, world_size, start_batch, remainder)
        plan = iter_pieces(self.headers, batch_size, start, end, piece_rows)
        first_pieces = list(islice(plan, COST_SAMPLE_PIECES))
        costliest = max((self._piece_cost(piece, out_dtype) for piece in first_pieces), default=1)
        parallel = self._parallel_pieces(parallel_pieces, costliest, max_ram_usage_in_bytes, out_dtype)
        pieces: Iterator[Piece] = chain(first_pieces, plan)
        if self._storage.cuts_first_batch:
            first_piece_rows = -(-min(batch_size, end - start) // parallel)
            min_rows = FIRST_BATCH_MIN_PIECE // self.byte_per_item
            pieces = split_first_batch(pieces, self.headers, min(piece_rows, max(first_piece_rows, min_rows)))
        assembler = BatchAssembler(RangeLayout(start, end, batch_size), self.dimension, out_dtype)
        pipeline = Pipeline(
            pieces,
            self._read_piece,
            assembler,
            lambda piece: self._piece_cost(piece, out_dtype),
            parallel,
            max_ram_usage_in_bytes,
            LOCAL_GROUP_BYTES if self._storage.is_local else 0,
        )
        return self._with_progress(pipeline, end - start, show_progress)

    def _shuffled(
        self,
        batch_size: int,
        start: int,
        end: int,
        piece_rows: int,
        parallel_pieces: Optional[int],
        show_progress: bool,
        budget: int,
        out_dtype: np.dtype,
        options: ShuffleOptions,
    ) -> Iterator[Batch]:
        """The batches of a shuffled read: windows of the epoch's order read by the pipeline, then cut (shuffle.py).
        A window is a whole number of batches in a third of the budget (at least one batch, at most
        MAX_WINDOW_BYTES); the pipeline reads the next one in the rest."""
        row_bytes = self.dimension * out_dtype.itemsize
        batches_per_window = min(budget // WINDOW_SHARE_OF_BUDGET, MAX_WINDOW_BYTES) // row_bytes // batch_size
        window_rows = max(1, batches_per_window) * batch_size
        order = EpochOrder(
            self.headers,
            start,
            end,
            options.seed,
            window_rows,
            options.rank,
            options.world_size,
            run_rows_for(batch_size),
            batch_size,
        )
        plan = BatchPlan.of(order, end - start, batch_size, options.start_batch, options.remainder)
        # the consumer's window, and the order arrays of the two windows being read
        pipeline_budget = max(1, budget - order.window_rows * (row_bytes + 2 * PLACEMENT_BYTES_PER_ROW))
        task_bytes = max(LOCAL_GROUP_BYTES, min(WINDOW_GROUP_BYTES, order.window_rows * row_bytes // WINDOW_TASKS))
        group_bytes = task_bytes if self._storage.is_local else 0  # remote pieces are not grouped (see Pipeline)
        parallel: List[int] = []

        def cost(piece: Piece) -> int:  # a piece's rows may pass through a side buffer on their way to their places
            placement = self._format.placement_bytes(piece, self.headers[piece.file_index], out_dtype)
            return self._piece_cost(piece, out_dtype) + placement

        def windows(first_window: int) -> Iterator[Batch]:
            first = first_window * order.window_rows
            pieces = place_segments(
                self.headers, order.segments(first, order.rows), order.window_rows, piece_rows, order.rows, first
            )
            if not parallel:
                sample = list(islice(pieces, COST_SAMPLE_PIECES))
                costliest = max((cost(piece) for piece in sample), default=1)
                parallel.append(self._parallel_pieces(parallel_pieces, costliest, pipeline_budget, out_dtype))
                pieces = chain(sample, pieces)
            assembler = BatchAssembler(WindowLayout(order), self.dimension, out_dtype)
            return iter(Pipeline(pieces, self._read_piece, assembler, cost, parallel[0], pipeline_budget, group_bytes))

        cutter = BatchCutter(order, plan)
        return self._with_progress(cutter.batches(windows), plan.rows_handed_out, show_progress)

    def to_ray_dataset(
        self,
        start: int = 0,
        end: Optional[int] = None,
        *,
        batch_size: Optional[int] = None,
        output_dtype: Any = np.float32,
        max_piece_size: Optional[int] = None,
        parallel_pieces: Optional[int] = None,
        override_num_blocks: Optional[int] = None,
        **ray_args: Any,
    ) -> Any:
        """Rows [start, min(end, count)) as a `ray.data.Dataset` with columns `embedding` (n, dim), `i`, meta columns.

        One read task per group of whole pieces, about `override_num_blocks` of them (default: Ray's choice);
        `batch_size` rows per block (default: Ray's target block size). Blocks come in no fixed order
        unless Ray's `preserve_order` is set: sort or join on `i`. Other keyword arguments go to
        `ray.data.read_datasource` (`concurrency`, `num_cpus`, ...). Needs the `ray` extra;
        supported Ray versions: 2.40 to 2.60 (`embedding_reader.ray.SUPPORTED_RAY`).
        """
        from .ray import EmbeddingDatasource, read_datasource

        datasource = EmbeddingDatasource(self, start, end, batch_size, output_dtype, max_piece_size, parallel_pieces)
        return read_datasource(datasource, override_num_blocks, **ray_args)

    def _resolve_range(self, start: int, end: Optional[int]) -> Tuple[int, int]:
        """The global row range [start, min(end, count)) a read covers, after checking the arguments."""
        start = check_int("start", start, 0)
        end = self.count if end is None else check_int("end", end, 0)
        if start >= self.count or start > end:
            raise InvalidArgumentError(f"start={start} must be < count={self.count} and <= end={end}")
        return start, min(end, self.count)

    def _resolve_output_dtype(self, output_dtype: Any) -> np.dtype:
        """The dtype of the returned embeddings: as asked, or the stored one (in native byte order) for None.

        Only real numbers are returned, and never floats cast into integers (which would turn them into zeros).
        """
        if output_dtype is None:
            return self.dtype.newbyteorder("=")
        return check_output_dtype(output_dtype, self.dtype)

    def _piece_rows(self, max_piece_size: Optional[int]) -> int:
        """Rows per piece: as asked, else about the storage's piece size of data (local 50 MB, s3 64 MB, else 16)."""
        if max_piece_size is None:
            return max(1, self._storage.piece_bytes // self.byte_per_item)
        return check_int("max_piece_size", max_piece_size, 1)

    def _parallel_pieces(
        self, parallel_pieces: Optional[int], piece_cost: int, budget: int, out_dtype: np.dtype
    ) -> int:
        """Threads reading pieces: as asked, else as many pieces as the RAM budget holds, capped per storage kind
        (local reads that cast are CPU-bound: one thread per core; more only wait for the GIL in between)."""
        if parallel_pieces is not None:
            return check_int("parallel_pieces", parallel_pieces, 1)
        cap = MAX_DEFAULT_PARALLEL_LOCAL if self._storage.is_local else MAX_DEFAULT_PARALLEL_REMOTE
        if self._storage.is_local and out_dtype != self.dtype:
            cap = min(cap, usable_cores())
        return max(1, min(cap, budget // max(1, piece_cost)))

    def _piece_cost(self, piece: Piece, out_dtype: np.dtype) -> int:
        """Bytes a piece holds until its batch is handed over: its batch slice plus transient buffers."""
        header = self.headers[piece.file_index]
        return piece.rows * self.dimension * out_dtype.itemsize + self._format.transient_bytes(piece, header, out_dtype)

    def _read_piece(self, piece: Piece, out: Slot, cancel: threading.Event) -> Optional[pd.DataFrame]:
        if isinstance(out, RowTarget):
            return self._format.read_piece_into_rows(piece, self.headers[piece.file_index], out, cancel)
        return self._format.read_piece(piece, self.headers[piece.file_index], out, cancel)

    def _with_progress(self, batches: Iterable[Batch], total_rows: int, show_progress: bool) -> Iterator[Batch]:
        """The batches, counted on a progress bar (see progress.py) when `show_progress` is set."""
        iterator = cast(Generator[Batch, None, None], iter(batches))
        progress = ReadProgress(total_rows, self.byte_per_item, show_progress)
        try:
            for batch in iterator:
                rows = len(batch[0])
                yield batch
                del batch  # so that the batch pool can reuse its array once the caller drops it too
                progress.advance(rows)  # after the yield: the bar is never made before the first batch is out
        finally:
            progress.close()
            iterator.close()  # stop the workers now, not whenever the generator is collected
            self._format.read_finished()
