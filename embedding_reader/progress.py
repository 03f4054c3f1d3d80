"""The read's progress bar, by tqdm's conventions: a terminal bar, a notebook bar in Jupyter or Colab (tqdm.auto's
choice), and on any other stderr (a log file, a pipe) a text bar redrawn rarely so that logs stay short."""

import sys
import time
from typing import Any, Optional

from tqdm import tqdm

LOG_REFRESH_S = 10.0  # a log file gets a line at most this often


class ReadProgress:
    """Counts the rows handed over, on a bar made when the first batch is counted (after it is out, so that
    making the bar never delays it)."""

    def __init__(self, total_rows: int, byte_per_item: int, enabled: bool):
        self.total_rows, self.byte_per_item = total_rows, byte_per_item
        self.enabled = enabled and sys.stderr is not None
        self.started = time.time()
        self.bar: Optional[tqdm] = None

    def advance(self, rows: int) -> None:
        """Count `rows` more rows, with the read rate in MB/s of stored bytes."""
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = make_bar(self.total_rows)
            self.bar.start_t = self.bar.last_print_t = self.started  # the bar's clock starts with the read
        self.bar.update(rows)
        elapsed = time.time() - self.started
        if elapsed > 0:
            self.bar.set_postfix_str(f"{self.bar.n * self.byte_per_item / elapsed / 1e6:.0f} MB/s", refresh=False)

    def close(self) -> None:
        """Draw the final state and release the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def make_bar(total_rows: int) -> tqdm:
    """A bar of `total_rows` rows on stderr, of the kind that suits where stderr goes."""
    options: Any = {"total": total_rows, "unit": " rows", "unit_scale": True, "file": sys.stderr}
    if is_terminal(sys.stderr):
        return tqdm(**options)
    auto = _auto_bar_class()
    if auto is not tqdm:  # a notebook widget
        return auto(**options)
    return tqdm(mininterval=LOG_REFRESH_S, **options)


def _auto_bar_class() -> Any:
    """tqdm.autonotebook's bar class: the notebook one inside a Jupyter kernel with ipywidgets, else the text one."""
    if "ipykernel" not in sys.modules:
        return tqdm  # not in a kernel: no need to import IPython to find out
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tqdm warns when ipywidgets is missing, then falls back to the text bar
        from tqdm.autonotebook import tqdm as auto_tqdm
    return auto_tqdm


def is_terminal(stream: Any) -> bool:
    """Whether a stream is an open terminal (stderr may be None, closed or a plain file)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (ValueError, AttributeError):  # closed, or not a real stream
        return False
