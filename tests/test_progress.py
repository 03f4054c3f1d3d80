"""show_progress=True draws a bar wherever 1.8.1 drew one: a terminal, a notebook, a log file (rarely redrawn)."""

import io
import sys

import pytest

from embedding_reader import EmbeddingReader
from embedding_reader import progress as progress_module
from tests.support.collections import read_all, write_npy_collection
from tests.test_formats import check_result


class FakeTerminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def collection(tmp_path):
    return write_npy_collection(tmp_path, [12, 7])


def read_with_stderr(monkeypatch, collection, stderr, **kwargs):
    """A full read of the collection in batches of 6 with `stderr` as sys.stderr; the rows are checked."""
    monkeypatch.setattr(sys, "stderr", stderr)
    result = read_all(EmbeddingReader(collection.folder)(batch_size=6, **kwargs))
    check_result(result, collection, 6)
    return stderr.getvalue() if stderr is not None else ""


def test_terminal_bar_counts_rows_and_rate(monkeypatch, collection):
    monkeypatch.setattr(progress_module, "LOG_REFRESH_S", 0)  # not used on a terminal; proves it by staying redrawn
    err = read_with_stderr(monkeypatch, collection, FakeTerminal())
    assert "19.0/19.0" in err and "MB/s" in err and "100%" in err


def test_log_file_bar_is_drawn_rarely(monkeypatch, collection):
    """stderr sent to a file: a text bar, drawn when made and when closed, not at every batch."""
    err = read_with_stderr(monkeypatch, collection, io.StringIO())
    frames = [frame for frame in err.replace("\n", "\r").split("\r") if frame.strip()]
    assert "19.0/19.0" in frames[-1] and "100%" in frames[-1]
    assert len(frames) == 2, frames  # the first batch's frame and the final one; 4 batches would draw 5


def test_log_file_bar_redrawn_as_often_as_allowed(monkeypatch, collection):
    """With no minimum interval every batch is drawn: the rare redraw above is the interval's doing."""
    monkeypatch.setattr(progress_module, "LOG_REFRESH_S", 0)
    err = read_with_stderr(monkeypatch, collection, io.StringIO(), max_piece_size=3)
    frames = [frame for frame in err.replace("\n", "\r").split("\r") if frame.strip()]
    assert len(frames) >= 4, frames


def test_no_bar_when_asked(monkeypatch, collection):
    assert read_with_stderr(monkeypatch, collection, FakeTerminal(), show_progress=False) == ""


def test_no_stderr_at_all(monkeypatch, collection):
    """pythonw and some services run with sys.stderr None: the read works, nothing is drawn."""
    read_with_stderr(monkeypatch, collection, None)


def test_bar_made_after_the_first_batch(monkeypatch, collection):
    """Making the bar (tqdm's locks, a monitor thread) never delays the first batch: none exists until it is out."""
    made = []
    real = progress_module.make_bar
    monkeypatch.setattr(progress_module, "make_bar", lambda total: made.append(total) or real(total))
    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    batches = EmbeddingReader(collection.folder)(batch_size=6)
    first = next(batches)
    assert made == [] and len(first[0]) == 6
    next(batches)
    assert made == [19]
    batches.close()
