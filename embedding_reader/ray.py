"""Ray Data over an EmbeddingReader: read tasks made of planned pieces, blocks with a true (n, dim) tensor column.

Imported only by `EmbeddingReader.to_ray_dataset` (the core never imports ray). Each read task owns a
contiguous global row range whose ends are piece boundaries, carries a copy of the reader holding only
the headers of its own files, and reads with the reader itself (same planner, pipeline and formats).
Blocks have the columns `embedding` (an (n, dim) tensor), `i` (global row index) and the meta columns.

Only public or DeveloperAPI parts of Ray are used: `Datasource`, `ReadTask(read_fn, metadata)`,
`BlockMetadata` built by keyword, `BlockAccessor.batch_to_block` and `read_datasource`.
Supported Ray versions: 2.40 to 2.60 (see SUPPORTED_RAY).
"""

import copy
import dataclasses
import functools
from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import ray.data
from ray.data.block import Block, BlockAccessor, BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from .errors import check_int
from .header import FileHeader
from .pieces import iter_pieces
from .reader import EmbeddingReader

SUPPORTED_RAY = ">=2.40, <=2.60 (tested: 2.40.0, 2.48.0, 2.60.0)"
INDEX_BYTES = np.dtype(np.int64).itemsize
# BlockMetadata has a `schema` field in Ray 2.40, not in 2.48 and later
_METADATA_HAS_SCHEMA = "schema" in {field.name for field in dataclasses.fields(BlockMetadata)}


class EmbeddingDatasource(Datasource):
    """The rows [start, end) of a reader as a Ray datasource: one read task per group of whole pieces.

    `batch_size` is the number of rows per block (default: as many as fit Ray's target block size);
    `max_piece_size`, `parallel_pieces` and `output_dtype` mean what they mean for `reader(...)`.
    """

    def __init__(
        self,
        reader: EmbeddingReader,
        start: int = 0,
        end: Optional[int] = None,
        batch_size: Optional[int] = None,
        output_dtype: Any = np.float32,
        max_piece_size: Optional[int] = None,
        parallel_pieces: Optional[int] = None,
    ):
        super().__init__()  # type: ignore[no-untyped-call]  # ray's Datasource.__init__ has no annotations
        for name, value in (("batch_size", batch_size), ("parallel_pieces", parallel_pieces)):
            if value is not None:
                check_int(name, value, 1)
        self.reader = reader
        self.start, self.end = reader._resolve_range(start, end)
        self.batch_size, self.parallel_pieces = batch_size, parallel_pieces
        self.output_dtype = output_dtype
        self.out_dtype = reader._resolve_output_dtype(output_dtype)
        self.piece_rows = reader._piece_rows(max_piece_size)
        self.file_starts = [0, *accumulate(header.count for header in reader.headers)]

    def get_name(self) -> str:
        """The name Ray gives the read operator."""
        return f"EmbeddingReader({self.reader.file_format})"

    def estimate_inmemory_data_size(self) -> Optional[int]:
        """Bytes of every block of the read, from the headers alone."""
        return self.range_bytes(self.start, self.end)

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: Optional[int] = None,
        data_context: Any = None,
        **_ignored: Any,
    ) -> List[ReadTask]:
        """About `parallelism` read tasks over whole pieces, with exact row counts and sizes before any read.

        `per_task_row_limit` (a pushed-down `limit`) shortens each task's range, so fewer bytes are read;
        keyword arguments added by later Ray releases are accepted and ignored.
        """
        target = getattr(data_context or ray.data.DataContext.get_current(), "target_max_block_size", None)
        limit = per_task_row_limit
        return [
            self._read_task(first, last if limit is None else min(last, first + limit), target)
            for first, last in self.task_ranges(parallelism)
        ]

    def task_ranges(self, parallelism: int) -> List[Tuple[int, int]]:
        """Contiguous global ranges covering [start, end), cut only at piece ends, about `parallelism` of them.

        A piece goes to the group its middle row falls in when [start, end) is cut into `parallelism`
        equal parts, so groups are balanced to within one piece and never split a piece.
        """
        total, parallelism = self.end - self.start, max(1, parallelism)
        bounds, group = [self.start], 0
        starts = self.piece_starts
        for first, last in zip(starts, [*starts[1:], self.end]):
            piece_group = (first + last - 2 * self.start) * parallelism // (2 * total)
            if piece_group != group and first > bounds[-1]:
                bounds.append(first)
            group = piece_group
        return [(first, last) for first, last in zip(bounds, [*bounds[1:], self.end]) if first < last]

    @functools.cached_property
    def piece_starts(self) -> List[int]:
        """Global first row of every piece of the plan, computed once (Ray asks for tasks several times)."""
        pieces = iter_pieces(self.reader.headers, max(1, self.end - self.start), self.start, self.end, self.piece_rows)
        return [self.file_starts[piece.file_index] + piece.piece_start for piece in pieces]

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("piece_starts", None)  # recomputed on demand: the datasource pickles as small as the reader
        return state

    def range_bytes(self, first: int, last: int) -> int:
        """In-memory bytes of global rows [first, last): embeddings in the output dtype, `i`, and meta estimates."""
        row_bytes = self.reader.dimension * self.out_dtype.itemsize + INDEX_BYTES
        first_file, last_file = self._file_span(first, last)
        meta = sum(
            (min(last, self.file_starts[index + 1]) - max(first, self.file_starts[index]))
            * self.reader.headers[index].meta_bytes_per_row
            for index in range(first_file, last_file)
        )
        return (last - first) * row_bytes + meta

    def _file_span(self, first: int, last: int) -> Tuple[int, int]:
        """Indices [first_file, last_file) of the files holding rows of the non-empty global range [first, last)."""
        return bisect_right(self.file_starts, first) - 1, bisect_left(self.file_starts, last)

    def _read_task(self, first: int, last: int, target_block_bytes: Optional[int]) -> ReadTask:
        """The read task of global rows [first, last): a small picklable callable plus its exact metadata."""
        first_file, last_file = self._file_span(first, last)
        headers = self.reader.headers[first_file:last_file]
        offset = self.file_starts[first_file]
        read = _TaskRead(
            template=self.reader._template_for(headers),  # pylint: disable=protected-access
            headers=headers,
            start=first - offset,
            end=last - offset,
            offset=offset,
            block_rows=self._block_rows(last - first, target_block_bytes),
            max_piece_size=self.piece_rows,
            parallel_pieces=self.parallel_pieces,
            output_dtype=self.output_dtype,
        )
        metadata = _block_metadata(
            num_rows=last - first,
            size_bytes=self.range_bytes(first, last),
            input_files=_input_files(headers),
            exec_stats=None,
        )
        return ReadTask(read, metadata)

    def _block_rows(self, task_rows: int, target_block_bytes: Optional[int]) -> int:
        """Rows per block: `batch_size`, else as many as Ray's target block size holds, else the whole task."""
        if self.batch_size is not None:
            return self.batch_size
        if not target_block_bytes:
            return task_rows
        row_bytes = self.reader.dimension * self.out_dtype.itemsize + INDEX_BYTES
        return max(1, min(task_rows, target_block_bytes // row_bytes))


def read_datasource(
    datasource: EmbeddingDatasource, override_num_blocks: Optional[int] = None, **ray_args: Any
) -> "ray.data.Dataset":
    """`ray.data.read_datasource` of the datasource, about `override_num_blocks` read tasks if given."""
    if override_num_blocks is not None:
        ray_args["override_num_blocks"] = check_int("override_num_blocks", override_num_blocks, 1)
    dataset: ray.data.Dataset = ray.data.read_datasource(datasource, **ray_args)
    return dataset


@dataclasses.dataclass(frozen=True)
class _TaskRead:
    """One read task's work, run in a Ray worker: local rows [start, end) of its files, in blocks of `block_rows`.

    `template` is the reader without headers; `offset` is the global index of the first row of `headers[0]`.
    """

    template: EmbeddingReader
    headers: List[FileHeader]
    start: int
    end: int
    offset: int
    block_rows: int
    max_piece_size: int
    parallel_pieces: Optional[int]
    output_dtype: Any

    def __call__(self) -> Iterator[Block]:
        """Read with the reader itself (planner, pipeline, format) and turn each batch into a block."""
        reader = copy.copy(self.template)
        reader.headers = self.headers
        batches = reader(
            self.block_rows,
            self.start,
            self.end,
            max_piece_size=self.max_piece_size,
            parallel_pieces=self.parallel_pieces,
            show_progress=False,
            output_dtype=self.output_dtype,
        )
        for embeddings, meta in batches:
            columns = {column: meta[column].to_numpy() for column in reader.meta_columns}
            index = meta["i"].to_numpy() + self.offset
            yield BlockAccessor.batch_to_block({"embedding": embeddings, "i": index, **columns})


def _input_files(headers: Sequence[FileHeader]) -> List[str]:
    """Paths a task reads: its embedding files and, for parquet_npy, their metadata files."""
    paths: Dict[str, None] = {}
    for header in headers:
        paths[header.path] = None
        if header.parquet is not None:
            paths[header.parquet.path] = None
    return list(paths)


def _block_metadata(**fields: Any) -> BlockMetadata:
    """BlockMetadata by keyword only; `schema=None` is added for the Ray releases whose BlockMetadata has it."""
    if _METADATA_HAS_SCHEMA:
        fields["schema"] = None
    return BlockMetadata(**fields)
