"""`embedding-reader validate`: every problem of a collection (inspect_collection), and with --deep every row read."""

import argparse
import sys
from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import Any, List

import numpy as np

from .. import CollectionReport, EmbeddingReader, EmbeddingReaderError, inspect_collection, redact
from .common import EXIT_OK, EXIT_PROBLEMS, default_batch_size, is_terminal
from .render import Report, one_line, plural, to_json

DEFAULT_MAX_REPORTED = 20


def register(commands: Any, collection: argparse.ArgumentParser) -> None:
    """Add the `validate` command to the command parsers."""
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


def run_validate(args: argparse.Namespace) -> int:
    """`validate`: every problem of the collection, one line each; exit status 1 if any."""
    report = validation_report(args, collection_report(args))
    if report["deep"]:
        reader = EmbeddingReader(args.paths, file_format=report["format"], **_collection_arguments(args))
        scan = DeepScan(reader, default_batch_size(reader), args.max_reported).run()
        report["problems"] += [one_line(problem) for problem in scan.problems]
        report.update(ok=not report["problems"] and not scan.bad_total)
        report.update(nan_inf_rows=scan.bad_rows, nan_inf_total=scan.bad_total)
    print(to_json(report) if args.json else render_validation(report, args.deep))
    return EXIT_OK if report["ok"] else EXIT_PROBLEMS


def collection_report(args: argparse.Namespace) -> CollectionReport:
    """The library's report on the collection the options name."""
    return inspect_collection(args.paths, args.format, **_collection_arguments(args))


def _collection_arguments(args: argparse.Namespace) -> Report:
    """The options, as EmbeddingReader and inspect_collection take them (but the folders and the format)."""
    return {
        "embedding_column": args.embedding_column,
        "meta_columns": args.meta_columns,
        "metadata_folder": args.metadata_folder,
        "storage_options": dict(args.storage_option),
        "file_pattern": args.file_pattern,
        "hdf5_dataset": args.hdf5_dataset,
    }


def validation_report(args: argparse.Namespace, inspection: CollectionReport) -> Report:
    """What `validate` shows before any row is read, as JSON-ready values."""
    return {
        "ok": inspection.ok,
        "paths": list(inspection.paths),
        "format": inspection.file_format,
        "nb_files": len(inspection.headers) if inspection.ok else len(inspection.files),
        "count": inspection.count,
        "dimension": inspection.dimension,
        "dtype": None if inspection.dtype is None else str(inspection.dtype),
        "problems": [one_line(problem) for problem in inspection.problems],
        "deep": bool(args.deep and inspection.ok),
    }


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

    def run(self) -> "DeepScan":
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
    lines.append(summary_line(report, bad_total))
    if deep_asked and not report["deep"]:
        lines.append("--deep skipped: the collection does not open")
    return "\n".join(lines)


def summary_line(report: Report, bad_total: int) -> str:
    """'ok: ...' or 'invalid: ...': what was found, in how many files of which format."""
    files = f"{plural(report['nb_files'], 'file')} ({report['format'] or 'format unknown'})"
    if report["ok"]:
        finite = ", every value finite" if report["deep"] else ""
        embeddings = f"{report['count']:,} embeddings of dimension {report['dimension']} ({report['dtype']})"
        return f"ok: {files}, {embeddings}{finite}"
    found = [plural(len(report["problems"]), "problem")] if report["problems"] else []
    found += [f"{plural(bad_total, 'row')} with NaN or inf"] if bad_total else []
    return f"invalid: {', '.join(found)} in {files}"
