"""What the pieces of one row group share while a read runs: a file object over the column chunks fetched once
(for pyarrow), and decodes made once and handed to every piece that needs them."""

import threading
from collections import OrderedDict
from typing import Any, Callable, Dict, Hashable, Optional

from ..storage import Storage, byte_range
from ..storage.range_file import StorageFile

Cancel = Optional[threading.Event]


class KnownRangesFile(StorageFile):
    """A read-only file over prefetched byte ranges; a read outside them is fetched (exact, retried)."""

    def __init__(self, path: str, size: int, parts: Dict[int, bytes], storage: Storage, cancel: Cancel = None):
        super().__init__(path, size, storage, cancel)
        self.parts = sorted(parts.items())

    def _bytes(self, start: int, end: int) -> bytes:
        for part_start, data in self.parts:
            if part_start <= start and end <= part_start + len(data):
                return memoryview(data)[start - part_start : end - part_start]  # type: ignore[return-value]
        return self.storage.read_range(self.path, start, end, self.cancel)

    def __repr__(self) -> str:
        return f"KnownRangesFile({byte_range(self.path, 0, self.size)})"


class SharedDecodes:
    """Decoded tables (or fetched chunks) shared by concurrent pieces: the first asker makes it, the others reuse.

    Each asker says how many of the entry's rows it takes; the entry leaves once its rows are all
    taken, in whatever order the pieces came (a piece delayed by a retry still finds it), or when more
    than `size` are held (a read that stopped early), so memory stays bounded.
    """

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[Hashable, _Decode] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, decode: Callable[[], Any], rows: int, total_rows: int) -> Any:
        """The value for `key`, made by `decode` unless another thread has or is making it; the asker
        takes `rows` of its `total_rows` rows."""
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if entry is None:
                entry = self._entries[key] = _Decode()
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
            entry.rows_taken += rows
            if entry.rows_taken >= total_rows:
                del self._entries[key]  # every row is spoken for: no later piece needs it
        if owner:
            return entry.run(decode, lambda: self._forget(key, entry))
        return entry.wait(decode)

    def clear(self) -> None:
        """Drop every entry (their current holders keep theirs)."""
        with self._lock:
            self._entries.clear()

    def _forget(self, key: Hashable, entry: "_Decode") -> None:
        """Drop a failed entry, so that later askers make the value afresh."""
        with self._lock:
            if self._entries.get(key) is entry:
                del self._entries[key]


class _Decode:
    """One decode, in progress or done; a thread that waited on a failed decode tries it itself."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.table: Any = None
        self.rows_taken = 0

    def run(self, decode: Callable[[], Any], on_error: Callable[[], None]) -> Any:
        """Decode as the owner; on failure forget the entry so later askers decode afresh."""
        try:
            self.table = decode()
            return self.table
        except BaseException:
            on_error()
            raise
        finally:
            self.done.set()

    def wait(self, decode: Callable[[], Any]) -> Any:
        """The owner's table once it is done, or a decode of our own if the owner failed."""
        self.done.wait()
        return self.table if self.table is not None else decode()
