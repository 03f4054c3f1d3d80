"""Listings the reader can trust: hidden and non-regular entries skipped, symlinked folders followed (loop-safe),
and folder listings cut short over http retried, never taken."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from embedding_reader import EmbeddingReader, ReadFailedError, RetryPolicy
from embedding_reader.storage import Storage
from tests.support.collections import read_all, sample_embeddings
from tests.support.faults import FaultKind

pytestmark = pytest.mark.timeout(90)

FAST_RETRIES = RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.01)
OPEN_DEADLINE_S = 30  # opening a reader over a handful of local files takes well under a second
DIM = 4


def save(path: Path, first: int, rows: int) -> np.ndarray:
    """Write rows [first, first + rows) of one seeded sequence to `path`; return them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    embeddings = sample_embeddings(first + rows, DIM)[first:]
    np.save(path, embeddings)
    return embeddings


def read_rows(folder: str | Path, **kwargs) -> np.ndarray:
    """Every row of the npy collection in `folder`, in reading order."""
    reader = EmbeddingReader(str(folder), file_format="npy", **kwargs)
    return read_all(reader(batch_size=1000, show_progress=False)).embeddings


def found(folder: str | Path, extension: str = ".npy") -> list[str]:
    """The paths Storage.find lists under a local folder, relative to it."""
    storage = Storage(str(folder), None, RetryPolicy())
    root = storage.strip(str(folder))
    return [os.path.relpath(path, root) for path, _ in storage.find(root, extension)]


def within_deadline(action: Callable[[], object], unblock: Callable[[], None]) -> object:
    """`action()` run in a thread; a failure (not a hang) if it has not returned within OPEN_DEADLINE_S."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = action()
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(OPEN_DEADLINE_S)
    if thread.is_alive():
        unblock()
        thread.join(5)
        pytest.fail(f"still blocked after {OPEN_DEADLINE_S} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


# ---------------------------------------------------------------- names pyarrow.dataset skips


def test_hidden_and_underscore_entries_are_skipped(tmp_path, caplog):
    """Names starting with `.` or `_` below the root are skipped, folders and files alike, as pyarrow.dataset skips
    them: notebook checkpoints, Spark's _temporary and _SUCCESS, macOS `._` files (garbage, never opened)."""
    root = tmp_path / "emb"
    kept = [save(root / "a.npy", 0, 3), save(root / "part" / "b.npy", 3, 4)]
    save(root / ".ipynb_checkpoints" / "a-checkpoint.npy", 0, 3)
    save(root / "_temporary" / "0" / "task.npy", 7, 2)
    save(root / "part" / "_c.npy", 9, 2)
    (root / "._a.npy").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "_SUCCESS").write_bytes(b"")
    with caplog.at_level(logging.DEBUG, logger="embedding_reader"):
        assert found(root) == ["a.npy", os.path.join("part", "b.npy")]
    skipped = " ".join(record.getMessage() for record in caplog.records if record.levelno == logging.DEBUG)
    for name in (".ipynb_checkpoints", "_temporary", "_c.npy", "._a.npy", "_SUCCESS"):
        assert name in skipped
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [f"{root}: skipped 2 .npy files whose names start with '.' or '_'"]
    np.testing.assert_array_equal(read_rows(root), np.concatenate(kept))


@pytest.mark.parametrize("root_name", ["_emb", ".emb", "_a/.b/emb"])
def test_root_and_folders_above_it_may_start_with_dot_or_underscore(tmp_path, root_name):
    """The folder the user names, and the folders above it, are never filtered: only entries below the root are."""
    root = tmp_path / root_name
    rows = [save(root / "a.npy", 0, 2), save(root / "sub" / "b.npy", 2, 3)]
    assert found(root) == ["a.npy", os.path.join("sub", "b.npy")]
    np.testing.assert_array_equal(read_rows(root), np.concatenate(rows))


# ---------------------------------------------------------------- symlinks


def test_symlinked_folder_and_file_are_followed(tmp_path):
    """A symlink to a folder is walked into, and a symlink to a file is read, under the link's own path."""
    root = tmp_path / "emb"
    first = save(root / "a.npy", 0, 2)
    linked_folder = save(tmp_path / "elsewhere" / "b.npy", 2, 3)
    linked_file = save(tmp_path / "other" / "c.npy", 5, 4)
    (root / "b_link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (root / "c_link.npy").symlink_to(tmp_path / "other" / "c.npy")
    assert found(root) == ["a.npy", os.path.join("b_link", "b.npy"), "c_link.npy"]
    np.testing.assert_array_equal(read_rows(root), np.concatenate([first, linked_folder, linked_file]))


def test_symlink_loops_end(tmp_path):
    """A link back to the root and a link to a sibling folder: each real folder is listed once, so the walk ends
    and no file is read twice."""
    root = tmp_path / "emb"
    rows = [save(root / "a" / "x.npy", 0, 2), save(root / "b" / "y.npy", 2, 3)]
    (root / "b" / "loop").symlink_to(root, target_is_directory=True)
    (root / "c").symlink_to(root / "a", target_is_directory=True)
    listed = within_deadline(lambda: found(root), lambda: None)
    assert listed == [os.path.join("a", "x.npy"), os.path.join("b", "y.npy")]
    np.testing.assert_array_equal(read_rows(root), np.concatenate(rows))


def test_broken_symlink_is_skipped(tmp_path):
    """A link to nothing is not a file of the collection."""
    root = tmp_path / "emb"
    rows = save(root / "a.npy", 0, 3)
    (root / "gone.npy").symlink_to(tmp_path / "missing.npy")
    assert found(root) == ["a.npy"]
    np.testing.assert_array_equal(read_rows(root), rows)


# ---------------------------------------------------------------- what is not a regular file


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_named_pipe_is_never_opened(tmp_path, caplog):
    """A named pipe called x.npy is skipped without being opened (its open would block forever), with a warning."""
    root = tmp_path / "emb"
    rows = save(root / "a.npy", 0, 3)
    fifo = root / "x.npy"
    os.mkfifo(fifo)

    def unblock() -> None:
        """Open the pipe's other end, so a reader blocked on it gets EOF and its thread ends."""
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    with caplog.at_level(logging.WARNING, logger="embedding_reader"):
        read = within_deadline(lambda: read_rows(root), unblock)
    np.testing.assert_array_equal(read, rows)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any(str(fifo) in message and "not a regular file" in message for message in warnings), warnings


# ---------------------------------------------------------------- over http


def test_http_listing_skips_hidden_names_below_the_root_only(tmp_path, http_server_factory):
    """Over http the same names are skipped, and a root folder starting with `_` is still read."""
    root = tmp_path / "_emb"
    rows = [save(root / "a.npy", 0, 2), save(root / "sub" / "b.npy", 2, 3)]
    save(root / "_temporary" / "t.npy", 5, 2)
    save(root / ".ipynb_checkpoints" / "a-checkpoint.npy", 0, 2)
    (root / "._a.npy").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    server = http_server_factory(tmp_path)
    np.testing.assert_array_equal(read_rows(f"{server.url}/_emb/", retry_policy=FAST_RETRIES), np.concatenate(rows))


@pytest.mark.parametrize("cut", [FaultKind.TRUNCATE, FaultKind.RESET])
def test_cut_listings_are_retried_not_taken(tmp_path, http_server_factory, cut):
    """8 files through a server that cuts its first two listing answers (full Content-Length, half the page):
    the cut pages are retried, and all 8 files are read."""
    root = tmp_path / "emb"
    rows = [save(root / f"img_emb_{k}.npy", 3 * k, 3) for k in range(8)]
    server = http_server_factory(tmp_path, cut_listings=2, cut_listing_fault=cut)
    np.testing.assert_array_equal(read_rows(f"{server.url}/emb/", retry_policy=FAST_RETRIES), np.concatenate(rows))
    assert server.stats.faults[cut] == 2


def test_listings_always_cut_fail_clearly(tmp_path, http_server_factory):
    """A server that cuts every listing: a clear error naming the listing and the attempts, not a short collection."""
    root = tmp_path / "emb"
    for k in range(8):
        save(root / f"img_emb_{k}.npy", 3 * k, 3)
    server = http_server_factory(tmp_path, cut_listings=10**6)
    with pytest.raises(ReadFailedError, match=r"listing .*/emb.* failed after 6 attempts: ClientPayloadError"):
        EmbeddingReader(f"{server.url}/emb/", file_format="npy", retry_policy=FAST_RETRIES)
