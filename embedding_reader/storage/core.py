"""Storage: every byte the library reads goes through here, as exact, checked range reads, each wrapped once in
the retry policy. What differs per protocol lives in its module (local.py, http.py, s3.py, gcs.py; protocols.py
says which), listing in listing.py, what a file was at open in identity.py."""

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..errors import CorruptFileError, InvalidArgumentError, ShortReadError
from ..retry import RetryPolicy, call_with_retries, is_own_permanent
from . import local, protocols
from .identity import FileIdentities
from .names import FileEntry, byte_range, redact
from .remote import ReadContext, RemoteIO, Streamer
from .watchdog import DEFAULT_TIMEOUT_S

REMOTE_PIECE_BYTES = 16 * 2**20  # filesystems read by cat_file: one joined request per piece, latency amortised
HEADER_READ_THREADS = 32  # small reads of filesystems without async reads: many in flight

Request = Tuple[str, int, int]  # (path, start, end)


@dataclass
class StorageStats:
    """Thread-safe counters of the range reads a Storage got answered and their bytes: every read of a remote
    file; local files count only their headers and footers, since their bodies are read in place."""

    requests: int = 0
    bytes_read: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, nbytes: int) -> None:
        """Count one answered request of `nbytes` bytes."""
        with self._lock:
            self.requests += 1
            self.bytes_read += nbytes


class Storage:
    """One fsspec filesystem, the retry policy, the timeout and what each file was at open; picklable (the
    filesystem is rebuilt on demand, one per Storage: no client outlives it).

    `storage_options` may hold secrets: they are kept out of repr and of every message.
    `stats` counts this instance's range reads (a copy starts from zero).
    """

    def __init__(
        self,
        url: str,
        storage_options: Optional[Dict[str, Any]],
        retry_policy: RetryPolicy,
        timeout: float = DEFAULT_TIMEOUT_S,
    ):
        self._options = dict(storage_options or {})
        self.retry_policy = retry_policy
        self.timeout = timeout
        self.protocol = _protocol(url)
        self.identities = FileIdentities()
        self._fs: Optional[fsspec.AbstractFileSystem] = None
        self._lock = threading.Lock()
        self.stats = StorageStats()

    def __repr__(self) -> str:
        return f"Storage(protocol={self.protocol!r}, options=<{len(self._options)} hidden>)"

    def __getstate__(self) -> Dict[str, Any]:
        keys = ("_options", "retry_policy", "timeout", "protocol", "identities")
        return {key: self.__dict__[key] for key in keys}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.pop("_is_local", None)
        self._fs = None
        self._lock = threading.Lock()
        self.stats = StorageStats()

    def for_files(self, paths: Iterable[str]) -> "Storage":
        """A copy (same filesystem and settings) that knows the identities of these files only."""
        copy = Storage.__new__(Storage)
        copy.__setstate__({**self.__getstate__(), "identities": self.identities.only(paths)})
        return copy

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem, created on first use (and again after unpickling)."""
        with self._lock:
            if self._fs is None:
                self._fs = self._make_filesystem()
            return self._fs

    def _make_filesystem(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem for the protocol; an unknown protocol or a missing package is a clear error."""
        try:
            options = protocols.client_options(self.protocol, self._options, self.timeout)
            fs = fsspec.filesystem(self.protocol, skip_instance_cache=True, **options)
        except ImportError as exc:
            raise InvalidArgumentError(
                f"reading {self.protocol}:// needs a package that is not installed: {exc}"
            ) from exc
        except ValueError as exc:
            raise InvalidArgumentError(f"unknown protocol {self.protocol!r}: {exc}") from exc
        return protocols.tuned(self.protocol, fs, self.timeout)

    @property
    def is_local(self) -> bool:
        """True when reads can go straight from a local file into a numpy buffer."""
        local = self.__dict__.get("_is_local")
        if local is None:
            local = self.__dict__["_is_local"] = isinstance(self.fs, LocalFileSystem)
        return bool(local)

    @property
    def streamer(self) -> Optional[Streamer]:
        """How remote ranges are streamed into arrays (http, s3), or None (local files; others use cat_file)."""
        return None if self.is_local else protocols.streamer(self.protocol, self.fs)

    @property
    def piece_bytes(self) -> int:
        """Stored bytes per piece that suit this storage."""
        if self.is_local:
            return local.PIECE_BYTES
        streamer = self.streamer
        return REMOTE_PIECE_BYTES if streamer is None else streamer.piece_bytes

    @property
    def cuts_first_batch(self) -> bool:
        """Whether the first batch should be cut into a piece per thread: where a range is fetched as concurrent
        parts (http), smaller pieces bring more connections; not locally or on S3 (see benchmarks/README.md)."""
        streamer = self.streamer
        return streamer is not None and streamer.part_bytes is not None

    @property
    def streams_into_arrays(self) -> bool:
        """Whether read_into fills the caller's array without a whole-range buffer on the side."""
        return self.is_local or self.streamer is not None

    def strip(self, url: str) -> str:
        """The path in the filesystem's own form (s3://b/k -> b/k; local paths made absolute)."""
        if _protocol(url) != self.protocol:
            raise InvalidArgumentError(
                f"all folders must be on one filesystem: {redact(url)} is not on {self.protocol!r}"
            )
        return str(self.fs._strip_protocol(url))  # pylint: disable=protected-access

    def find(self, folder: str, extension: str = "", pattern: Optional[str] = None) -> List[FileEntry]:
        """Files under `folder` (in the filesystem's own form) ending with `extension`, or whose names match the glob
        `pattern`, sorted, with their sizes when known; `folder` itself if it is a file. See listing.py."""
        from .listing import extension_pattern, find_files  # listing.py uses this module

        return find_files(self, folder, extension_pattern(extension) if pattern is None else pattern)

    def read_range(self, path: str, start: int, end: int, cancel: Optional[threading.Event] = None) -> bytes:
        """Exactly bytes [start, end) of a file, retried on transient errors; a short answer is never used."""
        return call_with_retries(
            lambda: self._read_exact(path, start, end, cancel), byte_range(path, start, end), self.retry_policy, cancel
        )

    def read_ranges(self, requests: Sequence[Request], allow_short: bool = False) -> List[bytes]:
        """Many exact range reads at once (file headers and footers): concurrent for remote filesystems.

        With `allow_short`, an answer shorter than asked is returned as is (the caller checks it against what the
        file says of itself); every failed or too-long answer is retried alone.
        """
        if self.is_local or len(requests) <= 1:
            return [self._read_checked(request, allow_short) for request in requests]
        if getattr(self.fs, "async_impl", False):
            answers = self._remote().cat_many(requests)
            return [self._accept(answer, request, allow_short) for answer, request in zip(answers, requests)]
        with ThreadPoolExecutor(min(HEADER_READ_THREADS, len(requests))) as pool:
            return list(pool.map(lambda request: self._read_checked(request, allow_short), requests))

    def read_into(self, path: str, start: int, out: memoryview, cancel: Optional[threading.Event] = None) -> None:
        """Fill `out` with the file's bytes from `start`: straight from disk locally, else streamed into `out` as it
        arrives (http, s3) or one ranged read, retried like `read_range`."""
        if self.is_local:
            local.read_into(path, start, out, self.identities)
        elif self.streamer is None:
            out[:] = self.read_range(path, start, start + out.nbytes, cancel)
        else:
            parts = self._remote().parts(path, start, out, cancel)
            call_with_retries(parts.attempt, parts.where, self.retry_policy, cancel)

    @property
    def scatters(self) -> bool:
        """Whether `read_scattered` can read into many buffers at once (local files, where os.preadv exists)."""
        return self.is_local and local.CAN_SCATTER

    def read_scattered(self, path: str, start: int, views: List[memoryview]) -> None:
        """Fill `views` one after the other with the file's bytes from `start` (see `scatters`)."""
        local.read_scattered(path, start, views, self.identities)

    def check_unchanged(self, path: str) -> None:
        """FileChangedError if a local file is no longer what it was at open (remote answers are checked as they
        come); for reads that bypass `read_into`, such as pyarrow opening the file itself."""
        if self.is_local:
            local.check_unchanged(path, self.identities)

    def sizes(self, files: Sequence[FileEntry]) -> List[int]:
        """Sizes of the files, asking storage (concurrently) only for those the listing did not give."""
        unknown = [path for path, size in files if size is None]
        if not unknown:
            return [int(size) for _, size in files]  # type: ignore[arg-type]
        with ThreadPoolExecutor(min(HEADER_READ_THREADS, len(unknown))) as pool:
            found = dict(zip(unknown, pool.map(self.size, unknown)))
        return [found[path] if size is None else size for path, size in files]

    def size(self, path: str) -> int:
        """Size in bytes of a file just listed (one metadata request for remote files). fsspec's http `info` turns
        every failure into FileNotFoundError, so a remote "not found" for a file just listed is retried."""

        def size() -> int:
            try:
                return int(self.fs.size(path))
            except FileNotFoundError as exc:
                if self.is_local:
                    raise
                raise ShortReadError(f"size of {redact(path)}: {type(exc).__name__}: {exc}") from exc

        return call_with_retries(size, f"size of {redact(path)}", self.retry_policy)

    def _remote(self) -> RemoteIO:
        return RemoteIO(self.fs, self.streamer, ReadContext(self.identities, self.timeout), self.stats.add)

    def _read_exact(self, path: str, start: int, end: int, cancel: Optional[threading.Event] = None) -> bytes:
        data = self._counted_cat(path, start, end, cancel)
        if len(data) != end - start:
            if self.is_local:
                raise CorruptFileError(f"{byte_range(path, start, end)}: file ends early, got {len(data)} bytes")
            raise ShortReadError(f"{byte_range(path, start, end)}: got {len(data)} bytes")
        return data

    def _accept(self, answer: Any, request: Request, allow_short: bool) -> bytes:
        """A concurrent read's answer if it has the right length, else the same read again, alone and retried;
        a permanent error of the library's own (a server ignoring Range) is raised at once."""
        _, start, end = request
        if isinstance(answer, BaseException) and is_own_permanent(answer):
            raise answer
        if isinstance(answer, bytes):
            self.stats.add(len(answer))
            if len(answer) == end - start or (allow_short and len(answer) < end - start):
                return answer
        return self._read_checked(request, allow_short)

    def _read_checked(self, request: Request, allow_short: bool) -> bytes:
        """One retried range read, exact unless `allow_short`."""
        path, start, end = request
        if not allow_short:
            return self.read_range(path, start, end)
        return call_with_retries(
            lambda: self._counted_cat(path, start, end), byte_range(path, start, end), self.retry_policy
        )

    def _counted_cat(self, path: str, start: int, end: int, cancel: Optional[threading.Event] = None) -> bytes:
        """Bytes [start, end), or fewer if the file ends first; never more."""
        fs = self.fs
        if self.is_local:
            data = local.cat(path, start, end)
        elif getattr(fs, "async_impl", False):
            data = self._remote().cat(path, start, end, cancel)
        else:
            data = bytes(fs.cat_file(path, start=start, end=end))
        self.stats.add(len(data))
        if len(data) > end - start:
            raise ShortReadError(f"{byte_range(path, start, end)}: got {len(data)} bytes, more than asked")
        return data


def _protocol(url: str) -> str:
    """The fsspec protocol of a url ('file' for plain paths)."""
    protocol = fsspec.core.split_protocol(url)[0] or "file"
    return "file" if protocol == "local" else protocol
