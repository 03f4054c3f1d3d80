"""The `embedding-reader` command line: output and exit status of info, validate and bench, on good and broken data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from embedding_reader.cli import main
from embedding_reader.cli.common import byte_size, storage_option
from tests.support.collections import (
    Collection,
    sample_meta,
    write_meta_parquet,
    write_npy_collection,
    write_parquet_collection,
    write_parquet_npy_collection,
)
from tests.support.http_server import RangeHTTPServer

FORMATS = ["npy", "parquet", "parquet_npy"]
ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the command line run in this process."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    """(exit status, parsed JSON output) of a command run with --json."""
    code, out, _ = run(capsys, *argv, "--json")
    return code, json.loads(out)


def collection_args(collection: Collection) -> list[str]:
    """The PATH and options naming a written collection."""
    args = [str(collection.folder), "--format", collection.file_format]
    return args + (["--metadata-folder", collection.metadata_folder] if collection.metadata_folder else [])


def write_collection(file_format: str, root: Path) -> Collection:
    """A small good collection of the format: 80 rows of dimension 8, over several files (one empty for npy)."""
    if file_format == "npy":
        return write_npy_collection(root / "npy", [30, 0, 50], dim=8, dtype="float16")
    if file_format == "parquet":
        return write_parquet_collection(root / "parquet", [30, 50], dim=8, row_group_size=20)
    return write_parquet_npy_collection(root / "parquet_npy", [30, 50], dim=8)


@pytest.fixture(params=FORMATS)
def collection(request: pytest.FixtureRequest, tmp_path: Path) -> Collection:
    """A good collection of each format."""
    return write_collection(request.param, tmp_path)


def truncate(path: str, size: int) -> None:
    """Cut a file down to `size` bytes."""
    with open(path, "r+b") as file:
        file.truncate(size)


def corrupt_page_header(path: str, row_group: int) -> None:
    """Overwrite the first page header of a parquet row group's first column: the footer stays readable."""
    offset = pq.read_metadata(path).row_group(row_group).column(0).data_page_offset
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(b"\x07" * 32)


# ------------------------------------------------------------------------------------------------ info


def test_info_json_describes_the_collection(capsys: pytest.CaptureFixture[str], collection: Collection) -> None:
    code, report = run_json(capsys, "info", *collection_args(collection), "--files")
    assert code == 0
    itemsize = collection.embeddings.dtype.itemsize
    assert report["count"] == 80 and report["dimension"] == 8
    assert report["dtype"] == str(collection.embeddings.dtype)
    assert report["bytes_per_item"] == 8 * itemsize and report["total_size"] == 80 * 8 * itemsize
    assert report["nb_files"] == 2 and report["largest_file"]["bytes"] == max(f["bytes"] for f in report["files"])
    assert [f["rows"] for f in report["files"]] == [30, 50]
    assert [f["path"] for f in report["files"]] == collection.non_empty_paths
    assert all(f["bytes"] == os.path.getsize(f["path"]) for f in report["files"])
    if collection.file_format == "parquet":
        assert [f["row_groups"] for f in report["files"]] == [2, 3]
    if collection.file_format == "parquet_npy":
        assert [f["metadata_file"] for f in report["files"]] == collection.metadata_paths


def test_info_for_people(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    collection = write_collection("parquet", tmp_path)
    code, out, err = run(capsys, "info", *collection_args(collection), "--files")
    assert code == 0 and err == ""
    assert "count           80\n" in out and "dtype           float32\n" in out
    assert "total size      2.56 kB (2,560 bytes)" in out
    assert f"largest file    {collection.paths[1]} (" in out
    table = out.split("\n\n")[1].splitlines()
    assert table[0].split() == ["path", "rows", "dimension", "dtype", "bytes", "row", "groups"]
    assert table[2].split()[:5] == [
        collection.paths[1],
        "50",
        "8",
        "float32",
        f"{os.path.getsize(collection.paths[1]):,}",
    ]


# ------------------------------------------------------------------------------------------------ validate


def test_validate_accepts_good_collections(capsys: pytest.CaptureFixture[str], collection: Collection) -> None:
    code, out, _ = run(capsys, "validate", *collection_args(collection), "--deep")
    assert code == 0
    dtype = collection.embeddings.dtype
    assert (
        out == f"ok: 2 files ({collection.file_format}), 80 embeddings of dimension 8 ({dtype}), every value finite\n"
    )
    code, report = run_json(capsys, "validate", *collection_args(collection))
    assert code == 0 and report["ok"] and report["problems"] == [] and report["count"] == 80


def test_validate_lists_every_broken_npy_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    collection = write_npy_collection(tmp_path / "npy", [10] * 5, dim=8)
    truncate(collection.paths[1], 200)  # body cut short
    truncate(collection.paths[2], 50)  # header cut short
    np.save(collection.paths[4], np.zeros((10, 16), dtype="float32"))  # another dimension
    code, out, _ = run(capsys, "validate", *collection_args(collection), "--deep")
    lines = out.splitlines()
    assert code == 1 and len(lines) == 5, out
    assert lines[0].startswith(f"{collection.paths[1]}: file has 200 bytes but its header (10, 8) float32 needs")
    assert lines[1].startswith(f"{collection.paths[2]} bytes [50, ") and "file ends early" in lines[1]
    assert lines[2] == f"dimension 16 in {collection.paths[4]} differs from 8 in {collection.paths[0]}"
    assert lines[3:] == ["invalid: 3 problems in 5 files (npy)", "--deep skipped: the collection does not open"]


def test_validate_parquet_npy_row_counts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    collection = write_parquet_npy_collection(tmp_path, [10, 20, 30], dim=4)
    write_meta_parquet(collection.metadata_paths[0], sample_meta(0, 9))
    write_meta_parquet(collection.metadata_paths[2], sample_meta(0, 31))
    code, report = run_json(capsys, "validate", *collection_args(collection))
    assert code == 1 and not report["ok"] and report["count"] is None
    assert report["problems"] == [
        f"{collection.paths[0]} has 10 rows but its metadata {collection.metadata_paths[0]} has 9",
        f"{collection.paths[2]} has 30 rows but its metadata {collection.metadata_paths[2]} has 31",
    ]


def test_validate_parquet_npy_unpaired_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    collection = write_parquet_npy_collection(tmp_path, [10, 20], dim=4)
    write_meta_parquet(os.path.join(str(collection.metadata_folder), "metadata_9999.parquet"), sample_meta(0, 5))
    truncate(collection.paths[1], 200)
    code, out, _ = run(capsys, "validate", *collection_args(collection))
    lines = out.splitlines()
    assert code == 1 and len(lines) == 3, out
    assert lines[0].startswith("2 npy files in") and lines[0].endswith("they must pair one to one")
    assert lines[1].startswith(f"{collection.paths[1]}: file has 200 bytes")


def test_validate_missing_folders(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = write_npy_collection(tmp_path / "good", [10], dim=4)
    missing = [str(tmp_path / "missing_a"), str(tmp_path / "missing_b")]
    code, out, _ = run(capsys, "validate", missing[0], str(good.folder), missing[1], "--format", "npy")
    assert code == 1
    assert out.splitlines() == [
        f"folder not found: {missing[0]}",
        f"folder not found: {missing[1]}",
        "invalid: 2 problems in 1 file (npy)",
    ]


def test_validate_deep_finds_nan_and_inf_rows(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    collection = write_npy_collection(tmp_path / "npy", [20, 20], dim=4)
    embeddings = np.load(collection.paths[1])
    embeddings[3, 1], embeddings[7, 0], embeddings[9, 2] = np.nan, np.inf, -np.inf
    np.save(collection.paths[1], embeddings)
    code, out, _ = run(capsys, "validate", *collection_args(collection))
    assert code == 0, "without --deep the values are not read"
    code, out, _ = run(capsys, "validate", *collection_args(collection), "--deep", "--max-reported", "2")
    assert code == 1
    assert out.splitlines() == [
        f"{collection.paths[1]} row 3: NaN",
        f"{collection.paths[1]} row 7: inf",
        "... and 1 more row with NaN or inf",
        "invalid: 3 rows with NaN or inf in 2 files (npy)",
    ]
    code, report = run_json(capsys, "validate", *collection_args(collection), "--deep")
    assert code == 1 and report["nan_inf_total"] == 3
    assert [(row["row"], row["value"]) for row in report["nan_inf_rows"]] == [(3, "NaN"), (7, "inf"), (9, "inf")]


def test_validate_deep_reports_each_unreadable_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    collection = write_parquet_collection(tmp_path / "parquet", [40] * 5, dim=4, row_group_size=20)
    corrupt_page_header(collection.paths[1], 1)
    corrupt_page_header(collection.paths[3], 0)
    code, out, _ = run(capsys, "validate", *collection_args(collection))
    assert code == 0, "the footers are intact"
    code, out, _ = run(capsys, "validate", *collection_args(collection), "--deep")
    lines = out.splitlines()
    assert code == 1 and len(lines) == 3, out
    assert lines[0].startswith(f"{collection.paths[1]} rows [") and "cannot decode" in lines[0]
    assert lines[1].startswith(f"{collection.paths[3]} rows [") and "cannot decode" in lines[1]
    assert lines[2] == "invalid: 2 problems in 5 files (parquet)"


def test_format_is_detected_when_not_given(capsys: pytest.CaptureFixture[str], collection: Collection) -> None:
    args = [str(collection.folder)]
    args += ["--metadata-folder", collection.metadata_folder] if collection.metadata_folder else []
    code, report = run_json(capsys, "info", *args)
    assert code == 0 and report["format"] == collection.file_format and report["count"] == 80
    code, out, _ = run(capsys, "validate", *args)
    assert code == 0 and out.startswith(f"ok: 2 files ({collection.file_format}), 80 embeddings")


def test_ambiguous_folder_needs_a_format(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_parquet_npy_collection(tmp_path / "both", [10, 20], dim=4)
    code, out, err = run(capsys, "info", str(tmp_path / "both"))
    assert code == 2 and out == ""
    assert err.startswith(f"error: both .npy (2) and .parquet (2) files found in {tmp_path / 'both'}: give the format")
    code, out, _ = run(capsys, "validate", str(tmp_path / "both"))
    assert code == 1 and out.splitlines()[-1] == "invalid: 1 problem in 0 files (format unknown)"
    code, out, _ = run(capsys, "validate", str(tmp_path / "both"), "--format", "npy")
    assert code == 0 and out.startswith("ok: 2 files (npy), 30 embeddings")


# ------------------------------------------------------------------------------------------------ bench


def test_bench_reads_everything(capsys: pytest.CaptureFixture[str], collection: Collection) -> None:
    code, out, err = run(capsys, "bench", *collection_args(collection), "--json")
    report = json.loads(out)
    assert code == 0 and err == "", "no progress bar when stderr is not a terminal"
    read = report["read"]
    assert read["rows"] == 80 and read["bytes"] == 80 * 8 * collection.embeddings.dtype.itemsize
    assert read["gb_per_s"] > 0 and read["rows_per_s"] > 0 and 0 < read["first_batch_s"] <= read["seconds"]
    assert report["peak_rss"] >= report["rss_before"] > 0 and report["remote"] is False
    assert report["settings"]["output_dtype"] == "float32" and report["settings"]["parallel_pieces"] is None


def test_bench_range_and_read_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    collection = write_collection("npy", tmp_path)
    options = ["--start", "10", "--end", "70", "--batch-size", "7", "--max-piece-size", "5", "--parallel-pieces", "2"]
    code, report = run_json(capsys, "bench", *collection_args(collection), *options, "--max-ram", "1MiB")
    assert code == 0 and report["read"]["rows"] == 60
    assert report["settings"] == {
        "batch_size": 7,
        "start": 10,
        "end": 70,
        "max_piece_size": 5,
        "parallel_pieces": 2,
        "max_ram_usage_in_bytes": 2**20,
        "output_dtype": "float32",
    }
    code, out, _ = run(capsys, "bench", *collection_args(collection), "--end", "40", "--output-dtype", "stored")
    assert code == 0 and "read         40 rows [0, 40), 640 B in " in out and "output_dtype=stored" in out


def test_bench_sweep_recommends_the_fastest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    collection = write_collection("parquet", tmp_path)
    code, report = run_json(capsys, "bench", *collection_args(collection), "--sweep")
    assert code == 0 and report["sweep_rows"] == [0, 80]
    assert {trial["parallel_pieces"] for trial in report["sweep"]} == {1, 2, 4, 8}
    assert all(trial["rows"] == 80 for trial in report["sweep"])
    assert report["recommended"] == max(report["sweep"], key=lambda trial: trial["gb_per_s"])
    code, out, _ = run(capsys, "bench", *collection_args(collection), "--sweep")
    assert code == 0 and "\nrecommended for this storage: --parallel-pieces " in out


def test_bench_shuffle_reports_both_reads(capsys: pytest.CaptureFixture[str], collection: Collection) -> None:
    code, report = run_json(capsys, "bench", *collection_args(collection), "--shuffle", "--batch-size", "16")
    assert code == 0 and report["read"]["rows"] == report["shuffled"]["rows"] == 80
    assert report["shuffled"]["gb_per_s"] > 0
    code, out, _ = run(capsys, "bench", *collection_args(collection), "--shuffle")
    assert code == 0 and "\nshuffled     " in out and "% of sequential), first batch " in out
    code, _, err = run(capsys, "bench", *collection_args(collection), "--shuffle", "--sweep")
    assert code == 2 and "--sweep and --shuffle" in err


def test_bench_counts_remote_requests(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, http_server_factory: Callable[..., RangeHTTPServer]
) -> None:
    collection = write_npy_collection(tmp_path / "npy", [30, 50], dim=8)
    server = http_server_factory(tmp_path)
    args = [f"{server.url}/npy", "--format", "npy", "--max-piece-size", "20"]
    code, report = run_json(capsys, "bench", *args)
    assert code == 0 and report["remote"] is True
    assert report["read"]["rows"] == collection.count
    assert report["read"]["requests"] == 5 and report["read"]["bytes_fetched"] == collection.embeddings.nbytes
    code, out, _ = run(capsys, "bench", *args)
    assert code == 0 and "requests     5 range reads, 2.56 kB fetched\n" in out


# ------------------------------------------------------------------------------------------------ errors and options


def test_library_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = write_collection("npy", tmp_path / "good")
    for argv in (
        ["info", str(tmp_path / "good" / "npy" / "emb_0001.npy"), "--format", "npy"],
        ["bench", str(good.folder), "--format", "npy", "--batch-size", "0"],
        ["validate", str(good.folder), "--format", "parquet_npy"],
        ["info", "nosuchprotocol://bucket/key", "--format", "npy"],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1, (argv, err)


def test_secrets_are_never_printed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    collection = write_collection("npy", tmp_path)
    secret = "--storage-option=secret_token=hunter2"
    for command in ("info", "validate", "bench"):
        code, out, err = run(capsys, command, *collection_args(collection), secret, "--json")
        assert code == 0 and "hunter2" not in out + err
    with pytest.raises(SystemExit) as exit_info:
        main(["info", str(collection.folder), "--format", "npy", "--storage-option", "hunter2"])
    assert exit_info.value.code == 2 and "hunter2" not in capsys.readouterr().err


def test_argument_parsers() -> None:
    assert storage_option("anon=true") == ("anon", True)
    assert storage_option('client_kwargs={"region_name": "eu"}') == ("client_kwargs", {"region_name": "eu"})
    assert storage_option("token=abc=def") == ("token", "abc=def")
    assert [byte_size(text) for text in ("123", "4GB", "4GiB", "1.5e3", "2 kb")] == [
        123,
        4 * 10**9,
        4 * 2**30,
        1500,
        2000,
    ]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv in ([], ["info", str(tmp_path), "-f", "csv"], ["bench", str(tmp_path), "-f", "npy", "--max-ram", "lots"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "usage: embedding-reader" in capsys.readouterr().err


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("info", "validate", "bench"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0 and capsys.readouterr().out.startswith(f"usage: embedding-reader {command}")
    result = subprocess.run(
        [sys.executable, "-m", "embedding_reader", "--help"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: embedding-reader"), result.stderr
    assert all(command in result.stdout for command in ("info", "validate", "bench"))
