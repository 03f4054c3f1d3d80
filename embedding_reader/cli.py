"""The `embedding-reader` command line: what a collection holds (info), whether it reads (validate), how fast (bench).

Exit status: 0 when all went well, 1 when `validate` found problems, 2 on a usage or library error (printed as
one `error: ...` line on stderr, without traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np
from tqdm import tqdm

from . import __version__
from .errors import EmbeddingReaderError, InvalidArgumentError
from .formats import FORMATS, Format, format_class
from .formats.base import check_consistent
from .formats.npy import NpyFormat
from .formats.parquet import ParquetFormat
from .formats.parquet_npy import ParquetNpyFormat, pair_files
from .header import FileHeader
from .progress import is_terminal
from .reader import DEFAULT_RAM_BUDGET, EmbeddingReader
from .retry import RetryPolicy
from .storage import HEADER_READ_THREADS, FileEntry, Storage, redact

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 1  # as Python itself exits when stdout is closed early
DEFAULT_BATCH_BYTES = 64 * 2**20  # stored bytes per batch when --batch-size is not given
SWEEP_BYTES = 512 * 2**20  # stored bytes read by each --sweep trial
SWEEP_PIECE_BYTES = (4 * 2**20, 16 * 2**20, 64 * 2**20)
SWEEP_PARALLEL = {"local": (1, 2, 4, 8), "remote": (4, 8, 16, 32)}
SWEPT = ("parallel_pieces", "max_piece_size")
DEFAULT_MAX_REPORTED = 20
_SIZE = re.compile(r"(\d+(?:\.\d+)?(?:e\d+)?)\s*(?:([kmgt])(i?))?b?", re.IGNORECASE)
_SIZE_PREFIXES = "kmgt"

T = TypeVar("T")
R = TypeVar("R")
Report = Dict[str, Any]
Field = Tuple[str, str]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]) and return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (ValueError, ImportError) as exc:  # EmbeddingReaderError, fsspec's unknown protocol, missing s3fs/gcsfs
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


# ---------------------------------------------------------------------------------------------- arguments


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="embedding-reader",
        description="Inspect, validate and benchmark a collection of embeddings (npy, parquet, parquet_npy) "
        "on any fsspec filesystem: local paths, s3://, gs://, https://, ...",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    collection = _collection_options()
    info = commands.add_parser(
        "info",
        parents=[collection],
        help="count, dimension, dtype and size of a collection",
        description="Read the headers of every file and describe the collection (empty files are skipped).",
    )
    info.add_argument("--files", action="store_true", help="add a table of the files")
    info.set_defaults(run=run_info)
    validate = commands.add_parser(
        "validate",
        parents=[collection],
        help="check every file of a collection and list all problems",
        description="Check every header, dimensions and dtypes across files, and for parquet_npy the pairing and "
        "row counts, without reading embeddings. Exit status 0 when clean, 1 with one line per problem.",
    )
    validate.add_argument("--deep", action="store_true", help="also read every row and report NaN/inf rows")
    validate.add_argument(
        "--max-reported",
        type=int,
        default=DEFAULT_MAX_REPORTED,
        metavar="N",
        help=f"list at most N rows with NaN/inf (default {DEFAULT_MAX_REPORTED}); all are counted",
    )
    validate.set_defaults(run=run_validate)
    bench = commands.add_parser(
        "bench",
        parents=[collection, _read_options()],
        help="measure how fast a collection reads from where it is",
        description="Read the collection (or rows [--start, --end)) and report throughput, latency and memory.",
    )
    bench.add_argument(
        "--sweep",
        action="store_true",
        help="try several --parallel-pieces x --max-piece-size on a prefix of the rows and recommend the fastest",
    )
    bench.set_defaults(run=run_bench)
    return parser


def _collection_options() -> argparse.ArgumentParser:
    """Options naming a collection, shared by every command."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("paths", nargs="+", metavar="PATH", help="folder(s) of embedding files, local or fsspec urls")
    options.add_argument("--format", "-f", required=True, choices=sorted(FORMATS), help="file format")
    options.add_argument("--metadata-folder", metavar="M", help="folder of the parquet metadata files (parquet_npy)")
    options.add_argument("--embedding-column", default="embedding", metavar="C", help="default: embedding")
    options.add_argument(
        "--meta-columns", type=comma_list, default=[], metavar="a,b", help="metadata columns to check / read"
    )
    options.add_argument(
        "--storage-option",
        type=storage_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec filesystem option, repeatable; VALUE is parsed as JSON when it can be (anon=true), else a string",
    )
    options.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return options


def _read_options() -> argparse.ArgumentParser:
    """Options of a read, as EmbeddingReader.__call__ takes them."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--batch-size", type=int, metavar="B", help="rows per batch (default: about 64 MB of rows)")
    options.add_argument("--max-piece-size", type=int, metavar="P", help="rows per piece (default: about 50 MB)")
    options.add_argument("--parallel-pieces", type=int, metavar="N", help="pieces read at once (default: automatic)")
    options.add_argument(
        "--max-ram",
        type=byte_size,
        default=DEFAULT_RAM_BUDGET,
        metavar="BYTES",
        help="RAM budget of the read: 4000000000, 4GB, 4GiB (default 4GiB)",
    )
    options.add_argument("--start", type=int, default=0, help="first row (default 0)")
    options.add_argument("--end", type=int, help="row after the last (default: the count)")
    options.add_argument(
        "--output-dtype",
        type=output_dtype,
        default=np.dtype("float32"),
        metavar="D",
        help="dtype of the batches: float32 (default), float16, ..., or 'stored' to keep the stored dtype",
    )
    return options


def comma_list(text: str) -> List[str]:
    """'a,b' -> ['a', 'b'], empty items dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def storage_option(text: str) -> Tuple[str, Any]:
    """'KEY=VALUE' -> (KEY, VALUE parsed as JSON, or the string itself); the value is never echoed back."""
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise argparse.ArgumentTypeError("expected KEY=VALUE (the argument is not shown: it may hold a secret)")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def byte_size(text: str) -> int:
    """'4000000000', '4GB' (decimal), '4GiB' (binary), '1.5e9' -> bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r} (e.g. 4000000000, 4GB, 4GiB)")
    number, prefix, binary = match.groups()
    power = _SIZE_PREFIXES.index(prefix.lower()) + 1 if prefix else 0
    return int(float(number) * (1024 if binary else 1000) ** power)


def output_dtype(text: str) -> Optional[np.dtype]:
    """A numpy dtype, or None for 'stored' (keep the stored dtype)."""
    if text == "stored":
        return None
    try:
        return np.dtype(text)
    except TypeError:
        raise argparse.ArgumentTypeError(f"unknown dtype {text!r} (e.g. float32, float16, stored)") from None


def open_reader(args: argparse.Namespace) -> EmbeddingReader:
    """The EmbeddingReader the collection options describe (every header read and checked)."""
    return EmbeddingReader(
        args.paths,
        file_format=args.format,
        embedding_column=args.embedding_column,
        meta_columns=args.meta_columns,
        metadata_folder=args.metadata_folder,
        storage_options=dict(args.storage_option),
    )


# ---------------------------------------------------------------------------------------------- info


def run_info(args: argparse.Namespace) -> int:
    """`info`: describe the collection."""
    reader = open_reader(args)
    report = info_report(args, reader)
    print(to_json(report) if args.json else render_info(report))
    return EXIT_OK


def info_report(args: argparse.Namespace, reader: EmbeddingReader) -> Report:
    """What `info` shows, as JSON-ready values."""
    largest = max(reader.headers, key=lambda header: header.stored_bytes)
    report: Report = {
        "paths": [redact(path) for path in args.paths],
        "format": reader.file_format,
        "metadata_folder": redact(args.metadata_folder) if args.metadata_folder else None,
        "count": reader.count,
        "dimension": reader.dimension,
        "dtype": str(reader.dtype),
        "bytes_per_item": reader.byte_per_item,
        "total_size": reader.total_size,
        "nb_files": reader.nb_files,
        "file_bytes": sum(header.stored_bytes for header in reader.headers),
        "largest_file": {"path": redact(largest.path), "bytes": largest.stored_bytes},
    }
    if args.files:
        report["files"] = [file_row(header, reader.file_format) for header in reader.headers]
    return report


def file_row(header: FileHeader, file_format: str) -> Report:
    """One line of the `info --files` table."""
    row: Report = {
        "path": redact(header.path),
        "rows": header.count,
        "dimension": header.dimension,
        "dtype": str(header.numpy_dtype),
        "bytes": header.stored_bytes,
    }
    if file_format == "parquet" and header.parquet is not None:
        row["row_groups"] = len(header.parquet.row_groups)
    if file_format == "parquet_npy" and header.parquet is not None:
        row["metadata_file"] = redact(header.parquet.path)
    return row


def render_info(report: Report) -> str:
    """`info` for people: aligned fields, then the file table if asked."""
    fields = [("path", "\n".join(report["paths"])), ("format", report["format"])]
    if report["metadata_folder"]:
        fields.append(("metadata folder", report["metadata_folder"]))
    fields += [
        ("count", f"{report['count']:,}"),
        ("dimension", f"{report['dimension']:,}"),
        ("dtype", report["dtype"]),
        ("bytes per item", f"{report['bytes_per_item']:,}"),
        ("total size", f"{human_bytes(report['total_size'])} ({report['total_size']:,} bytes)"),
        ("files", f"{report['nb_files']:,} ({human_bytes(report['file_bytes'])} on storage)"),
        ("largest file", f"{report['largest_file']['path']} ({human_bytes(report['largest_file']['bytes'])})"),
    ]
    text = render_fields(fields)
    return f"{text}\n\n{render_table(report['files'])}" if "files" in report else text


# ---------------------------------------------------------------------------------------------- validate


def run_validate(args: argparse.Namespace) -> int:
    """`validate`: every problem of the collection, one line each; exit status 1 if any."""
    reader, problems, nb_files = check_structure(args)
    report: Report = {
        "ok": not problems,
        "paths": [redact(path) for path in args.paths],
        "format": args.format,
        "nb_files": nb_files,
        "count": reader.count if reader else None,
        "dimension": reader.dimension if reader else None,
        "dtype": str(reader.dtype) if reader else None,
        "problems": [one_line(problem) for problem in problems],
        "deep": bool(args.deep and reader),
    }
    if report["deep"]:
        assert reader is not None
        scan = DeepScan(reader, default_batch_size(reader), args.max_reported).run()
        report["problems"] += [one_line(problem) for problem in scan.problems]
        report.update(ok=not report["problems"] and not scan.bad_total)
        report.update(nan_inf_rows=scan.bad_rows, nan_inf_total=scan.bad_total)
    print(to_json(report) if args.json else render_validation(report, args.deep))
    return EXIT_OK if report["ok"] else EXIT_PROBLEMS


def check_structure(args: argparse.Namespace) -> Tuple[Optional[EmbeddingReader], List[str], int]:
    """(reader, [], files) when the collection opens; else (None, every problem found file by file, files).

    The reader stops at the first problem: on failure each file (or npy/parquet pair) is checked on its
    own with the format's header functions, then files are compared, so each problem gets its line.
    """
    try:
        reader = open_reader(args)
    except InvalidArgumentError:
        raise
    except EmbeddingReaderError as first:
        problems, nb_files = diagnose(args)
        return None, problems if str(first) in problems else [str(first), *problems], nb_files
    return reader, [], reader.nb_files


def diagnose(args: argparse.Namespace) -> Tuple[List[str], int]:
    """(problems, number of embedding files) of a collection checked file by file, as EmbeddingReader would."""
    storage = Storage(args.paths[0], dict(args.storage_option), RetryPolicy())
    metadata_folder = storage.strip(args.metadata_folder) if args.metadata_folder else None
    file_format = format_class(args.format)(storage, args.embedding_column, args.meta_columns, metadata_folder)
    problems: List[str] = []
    folders = [storage.strip(path) for path in args.paths]
    files = list_files(file_format, folders, file_format.extension, problems)
    if isinstance(file_format, ParquetNpyFormat):
        metadata_files = list_files(file_format, [str(file_format.metadata_folder)], ".parquet", problems)
        outcomes = pair_outcomes(file_format, files, metadata_files, folders)
    elif isinstance(file_format, ParquetFormat):
        outcomes = each_file(lambda file: parquet_header(file_format, file), files)
    else:
        assert isinstance(file_format, NpyFormat)
        outcomes = each_file(lambda file: npy_header(file_format, file), files)
    headers = [outcome for outcome in outcomes if isinstance(outcome, FileHeader)]
    problems += [outcome for outcome in outcomes if isinstance(outcome, str)]
    return problems + consistency_problems(headers), len(files)


def list_files(file_format: Format, folders: Sequence[str], extension: str, problems: List[str]) -> List[FileEntry]:
    """The (path, size) of the files of every folder, sorted together as the reader sorts them; a missing or empty
    folder adds a problem."""
    files: List[FileEntry] = []
    for folder in folders:
        found = attempt(file_format.list_files, [folder], extension)
        if isinstance(found, str):
            problems.append(found)
        else:
            files.extend(found)
    return sorted(set(files))


def npy_header(file_format: NpyFormat, file: FileEntry) -> FileHeader:
    """One npy file's header, parsed and checked on its own."""
    return file_format.read_npy_headers([file])[0]


def parquet_header(file_format: ParquetFormat, file: FileEntry) -> FileHeader:
    """One parquet file's header (footer, columns, embedding type), checked on its own."""
    footer, metadata = file_format.parquet.read_footers([file])[0]
    return file_format.file_header(footer, metadata)


def pair_outcomes(
    file_format: ParquetNpyFormat,
    files: Sequence[FileEntry],
    metadata_files: Sequence[FileEntry],
    folders: Sequence[str],
) -> List[Union[FileHeader, str]]:
    """Each npy file and each parquet file checked alone, then paired as the reader pairs them (pair_files)."""
    pairs = attempt(pair_files, files, folders, metadata_files, str(file_format.metadata_folder))
    headers = each_file(lambda file: npy_header(file_format, file), files)
    footers = each_file(lambda file: file_format.parquet.read_footers([file])[0], metadata_files)
    footer_problems = [footer for footer in footers if isinstance(footer, str)]
    if isinstance(pairs, str):  # the npy headers are still compared; row counts of files that are not pairs are not
        return [pairs, *headers, *footer_problems]
    header_of = dict(zip(files, headers))
    footer_of = dict(zip(metadata_files, footers))
    paired = [
        attempt(file_format.pair, header_of[npy], *footer_of[parquet])
        for npy, parquet in pairs
        if isinstance(header_of[npy], FileHeader) and not isinstance(footer_of[parquet], str)
    ]
    return [*[header for header in headers if isinstance(header, str)], *footer_problems, *paired]


def consistency_problems(headers: Sequence[FileHeader]) -> List[str]:
    """One line per file whose dimension or dtype differs from the most common one (check_consistent, pairwise)."""
    non_empty = [header for header in headers if header.count > 0]
    if not non_empty:
        outcomes = [attempt(check_consistent, headers)] if headers else []
    else:
        usual = Counter((header.dimension, header.dtype) for header in non_empty).most_common(1)[0][0]
        reference = next(header for header in non_empty if (header.dimension, header.dtype) == usual)
        outcomes = [attempt(check_consistent, [reference, header]) for header in non_empty]
    return [outcome for outcome in outcomes if isinstance(outcome, str)]


def attempt(function: Callable[..., R], *args: Any) -> Union[R, str]:
    """function(*args), or the message of the library error it raised."""
    try:
        return function(*args)
    except EmbeddingReaderError as exc:
        return str(exc)


def each_file(function: Callable[[T], R], items: Sequence[T]) -> List[Union[R, str]]:
    """attempt(function, item) for every item, concurrently (remote header reads are latency-bound)."""
    if not items:
        return []
    with ThreadPoolExecutor(min(HEADER_READ_THREADS, len(items))) as pool:
        return list(pool.map(lambda item: attempt(function, item), items))


class DeepScan:
    """Reads every row of a reader, listing rows holding NaN or inf (up to `limit`) and every read error.

    The whole collection is read at once; when a batch fails, its files are read again one by one to
    report each file's error, and the scan goes on after them.
    """

    def __init__(self, reader: EmbeddingReader, batch_size: int, limit: int):
        self.reader, self.batch_size, self.limit = reader, batch_size, limit
        self.starts = [0, *accumulate(header.count for header in reader.headers)]
        self.position = 0
        self.problems: List[str] = []
        self.bad_rows: List[Report] = []
        self.bad_total = 0

    def run(self) -> DeepScan:
        """Scan every row; returns self."""
        while self.position < self.reader.count:
            try:
                self._read(self.reader.count, show_progress=is_terminal(sys.stderr))
            except EmbeddingReaderError:
                self._isolate()
        return self

    def _read(self, end: int, show_progress: bool) -> None:
        """Scan rows [position, end) in their stored dtype."""
        batches = self.reader(
            self.batch_size, start=self.position, end=end, show_progress=show_progress, output_dtype=None
        )
        for embeddings, _ in batches:
            self._check(embeddings)
            self.position += len(embeddings)

    def _isolate(self) -> None:
        """Read the files of the failed batch one by one, noting each one's error, and move past them."""
        batch_end = min(self.position + self.batch_size, self.reader.count)
        for index in range(bisect_right(self.starts, self.position) - 1, bisect_left(self.starts, batch_end)):
            try:
                self._read(self.starts[index + 1], show_progress=False)
            except EmbeddingReaderError as exc:
                self.problems.append(str(exc))
            self.position = self.starts[index + 1]

    def _check(self, embeddings: np.ndarray) -> None:
        """Count the batch's rows holding NaN or inf; remember where the first `limit` of them are."""
        if embeddings.dtype.kind != "f":
            return
        bad = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
        self.bad_total += len(bad)
        for row in bad[: max(0, self.limit - len(self.bad_rows))]:
            index = bisect_right(self.starts, self.position + row) - 1
            value = "NaN" if np.isnan(embeddings[row]).any() else "inf"
            path = redact(self.reader.headers[index].path)
            self.bad_rows.append({"path": path, "row": int(self.position + row - self.starts[index]), "value": value})


def render_validation(report: Report, deep_asked: bool) -> str:
    """`validate` for people: one line per problem or NaN/inf row, then a summary line."""
    shown_rows = report.get("nan_inf_rows", [])
    bad_total = report.get("nan_inf_total", 0)
    lines = [*report["problems"], *(f"{row['path']} row {row['row']}: {row['value']}" for row in shown_rows)]
    if bad_total > len(shown_rows):
        lines.append(f"... and {plural(bad_total - len(shown_rows), 'more row')} with NaN or inf")
    files = f"{plural(report['nb_files'], 'file')} ({report['format']})"
    if report["ok"]:
        finite = ", every value finite" if report["deep"] else ""
        embeddings = f"{report['count']:,} embeddings of dimension {report['dimension']} ({report['dtype']})"
        lines.append(f"ok: {files}, {embeddings}{finite}")
    else:
        found = [plural(len(report["problems"]), "problem")] if report["problems"] else []
        found += [f"{plural(bad_total, 'row')} with NaN or inf"] if bad_total else []
        lines.append(f"invalid: {', '.join(found)} in {files}")
    if deep_asked and not report["deep"]:
        lines.append("--deep skipped: the collection does not open")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- bench


def run_bench(args: argparse.Namespace) -> int:
    """`bench`: read the collection (or a range of it) and report speed and memory."""
    began = time.perf_counter()
    reader = open_reader(args)
    report: Report = {"open_s": time.perf_counter() - began, "remote": not reader.storage.is_local}
    read_args = read_arguments(args, reader)
    if args.sweep:
        report.update(sweep(reader, read_args))
    else:
        report["rss_before"] = peak_rss()
        report["read"] = measure(reader, read_args, show_progress=is_terminal(sys.stderr))
    report.update(peak_rss=peak_rss(), settings=settings_report(read_args))
    print(to_json(report) if args.json else render_bench(report))
    return EXIT_OK


def read_arguments(args: argparse.Namespace, reader: EmbeddingReader) -> Report:
    """Keyword arguments of the reader's call, from the read options."""
    return {
        "batch_size": default_batch_size(reader) if args.batch_size is None else args.batch_size,
        "start": args.start,
        "end": reader.count if args.end is None else min(args.end, reader.count),
        "max_piece_size": args.max_piece_size,
        "parallel_pieces": args.parallel_pieces,
        "max_ram_usage_in_bytes": args.max_ram,
        "output_dtype": args.output_dtype,
    }


def default_batch_size(reader: EmbeddingReader) -> int:
    """Rows of about DEFAULT_BATCH_BYTES stored bytes."""
    return max(1, DEFAULT_BATCH_BYTES // reader.byte_per_item)


def measure(reader: EmbeddingReader, read_args: Report, show_progress: bool = False) -> Report:
    """Read rows [start, end) once; rows, stored bytes, timings and the range requests it took."""
    stats = reader.storage.stats
    requests, fetched = stats.requests, stats.bytes_read
    began = time.perf_counter()
    first_batch, rows = None, 0
    for embeddings, _ in reader(**read_args, show_progress=show_progress):
        first_batch = time.perf_counter() - began if first_batch is None else first_batch
        rows += len(embeddings)
    seconds = max(time.perf_counter() - began, 1e-9)
    return {
        "rows": rows,
        "bytes": rows * reader.byte_per_item,
        "seconds": seconds,
        "first_batch_s": first_batch,
        "gb_per_s": rows * reader.byte_per_item / seconds / 1e9,
        "rows_per_s": rows / seconds,
        "requests": stats.requests - requests,
        "bytes_fetched": stats.bytes_read - fetched,
    }


def sweep(reader: EmbeddingReader, read_args: Report) -> Report:
    """Read a prefix of the range once per parallel_pieces x max_piece_size setting (after a warm-up read)."""
    end = min(read_args["end"], read_args["start"] + max(1, SWEEP_BYTES // reader.byte_per_item))
    prefix = {**read_args, "end": end}
    measure(reader, prefix)  # warm-up: page cache, connections, footers
    kind = "remote" if not reader.storage.is_local else "local"
    pieces = sorted({min(end - prefix["start"], max(1, size // reader.byte_per_item)) for size in SWEEP_PIECE_BYTES})
    trials = []
    settings = [(parallel, piece) for parallel in SWEEP_PARALLEL[kind] for piece in pieces]
    for parallel, piece in tqdm(settings, desc="sweep", file=sys.stderr, disable=None):
        trial = measure(reader, {**prefix, "parallel_pieces": parallel, "max_piece_size": piece})
        trials.append({"parallel_pieces": parallel, "max_piece_size": piece, **trial})
    best = max(trials, key=lambda trial: trial["gb_per_s"])
    return {"sweep_rows": [prefix["start"], end], "sweep": trials, "recommended": best}


def settings_report(read_args: Report) -> Report:
    """The read settings as JSON values (None: the reader's automatic choice)."""
    dtype = read_args["output_dtype"]
    return {**read_args, "output_dtype": "stored" if dtype is None else str(dtype)}


def peak_rss() -> Optional[int]:
    """Peak resident memory of this process in bytes (ru_maxrss, or psutil on Windows), None if unknown."""
    if sys.platform != "win32":
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)
    try:
        import psutil
    except ImportError:
        return None
    return getattr(psutil.Process().memory_info(), "peak_wset", None)


def render_bench(report: Report) -> str:
    """`bench` for people: the measured read, or the sweep table and its recommendation."""
    swept = "sweep" in report
    fields: List[Field] = [("open", f"{report['open_s']:.3f} s")]
    if swept:
        first, end = report["sweep_rows"]
        fields.append(("sweep", f"rows [{first:,}, {end:,}) read once per setting, after a warm-up read"))
    else:
        fields += read_fields(report["read"], report["settings"], report["remote"])
    before = f" ({human_bytes(report['rss_before'])} before reading)" if "rss_before" in report else ""
    fields.append(("peak RSS", human_bytes(report["peak_rss"]) + before))
    fields.append(("settings", settings_line(report["settings"], hidden=SWEPT if swept else ())))
    return f"{render_fields(fields)}\n\n{render_sweep(report)}" if swept else render_fields(fields)


def render_sweep(report: Report) -> str:
    """The sweep table and the fastest setting."""
    best = report["recommended"]
    advice = f"--parallel-pieces {best['parallel_pieces']} --max-piece-size {best['max_piece_size']}"
    table = render_table([sweep_row(trial, report["remote"]) for trial in report["sweep"]])
    return f"{table}\n\nrecommended for this storage: {advice} ({best['gb_per_s']:.3f} GB/s)"


def read_fields(read: Report, settings: Report, remote: bool) -> List[Field]:
    """The fields describing one measured read."""
    rows = f"{read['rows']:,} rows [{settings['start']:,}, {settings['end']:,}), {human_bytes(read['bytes'])}"
    first = "-" if read["first_batch_s"] is None else f"{read['first_batch_s']:.3f} s"
    fields = [
        ("read", f"{rows} in {read['seconds']:.3f} s"),
        ("throughput", f"{read['gb_per_s']:.3f} GB/s, {read['rows_per_s']:,.0f} rows/s"),
        ("first batch", first),
    ]
    if remote:
        fields.append(("requests", f"{read['requests']:,} range reads, {human_bytes(read['bytes_fetched'])} fetched"))
    return fields


def settings_line(settings: Report, hidden: Sequence[str]) -> str:
    """The read settings as `name=value` words ('auto': the reader's choice), but rows and `hidden` ones."""
    shown = {key: value for key, value in settings.items() if key not in ("start", "end", *hidden)}
    shown["max_ram_usage_in_bytes"] = human_bytes(shown["max_ram_usage_in_bytes"])
    return " ".join(f"{key}={'auto' if value is None else value}" for key, value in shown.items())


def sweep_row(trial: Report, remote: bool) -> Report:
    """One line of the sweep table."""
    row = {
        "parallel_pieces": trial["parallel_pieces"],
        "max_piece_size": trial["max_piece_size"],
        "GB/s": trial["gb_per_s"],
        "rows/s": round(trial["rows_per_s"]),
        "first batch s": trial["first_batch_s"] or 0.0,
    }
    return {**row, "requests": trial["requests"]} if remote else row


# ---------------------------------------------------------------------------------------------- output


def to_json(report: Report) -> str:
    """The report as indented JSON."""
    return json.dumps(report, indent=2)


def one_line(message: object) -> str:
    """A message on one line (pyarrow and fsspec messages may span several)."""
    return " ".join(str(message).split())


def plural(count: int, noun: str) -> str:
    """'1 problem', '3 problems'."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def human_bytes(size: Optional[float]) -> str:
    """1536000000 -> '1.54 GB' (decimal units, as GB/s)."""
    if size is None:
        return "unknown"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            break
        size /= 1000
    return f"{size:.0f} B" if unit == "B" else f"{size:.2f} {unit}"


def render_fields(fields: Sequence[Field]) -> str:
    """'name   value' lines, values aligned; multi-line values indented."""
    width = max(len(name) for name, _ in fields) + 2
    return "\n".join(f"{name:<{width}}" + value.replace("\n", "\n" + " " * width) for name, value in fields)


def render_table(rows: Sequence[Report]) -> str:
    """Rows of equal keys as an aligned table: numbers right-aligned, with thousands separators."""
    columns = list(rows[0])
    cells = [[table_cell(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    numeric = [isinstance(rows[0][column], (int, float)) for column in columns]
    lines = [[column.replace("_", " ") for column in columns], *cells]
    return "\n".join(
        "  ".join(
            cell.rjust(width) if right else cell.ljust(width) for cell, width, right in zip(line, widths, numeric)
        ).rstrip()
        for line in lines
    )


def table_cell(value: Any) -> str:
    """A table cell: 12,345 for integers, 1.234 for other numbers, else the value as text."""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.3f}" if isinstance(value, float) else str(value)
