"""Storage: every byte the library reads goes through here, as exact, length-checked, retried range reads.

Remote filesystems are asked for exactly the bytes needed (a checked, streamed GET over http and s3, else
`cat_file`): no read-ahead block, no HEAD per read. Local files are read straight into the caller's buffer with
`readinto`. Every read checks that the file is still what it was at open (see identity.py).
"""

import asyncio
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import fsspec
from fsspec.implementations.local import LocalFileSystem

from .connections import MAX_CONNECTIONS, client_options, tuned_filesystem
from .errors import (
    CorruptFileError,
    InvalidArgumentError,
    ReadFailedError,
    ShortReadError,
)
from .identity import FileIdentities, local_identity
from .retry import RetryPolicy, call_with_retries, is_own_permanent, is_transient
from .streaming import ReadContext, Streamer, StreamInto, stream_reader
from .watchdog import DEFAULT_TIMEOUT_S

LOCAL_PIECE_BYTES = 50 * 2**20  # one readinto or row-group read per 50 MB, small enough to spread over threads
REMOTE_PIECE_BYTES = 16 * 2**20  # other remote filesystems (one joined cat_file per piece): latency amortised
HEADER_READ_THREADS = 32  # header reads are latency-bound: many in flight
HEADER_READ_CONCURRENCY = MAX_CONNECTIONS  # header reads in flight on async filesystems: one per pooled connection
CANCEL_POLL_S = 0.05  # how soon a cancelled read gives up its request

FileEntry = Tuple[str, Optional[int]]  # (path, size in bytes if the listing gave it)

_USERINFO = re.compile(r"(?<=://)[^/@]+@")


def redact(url: str) -> str:
    """The url with any `user:password@` part removed, safe for messages and logs."""
    return _USERINFO.sub("***@", url)


def byte_range(path: str, start: int, end: int) -> str:
    """How messages name a byte range of a file."""
    return f"{redact(path)} bytes [{start}, {end})"


@dataclass
class StorageStats:
    """Thread-safe counters of the range reads a Storage got answered (`cat_file`, `cat_ranges`) and their bytes.

    That is every read of a remote file; local files count only their headers and footers, since
    their bodies are read in place.
    """

    requests: int = 0
    bytes_read: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, nbytes: int) -> None:
        """Count one answered request of `nbytes` bytes."""
        with self._lock:
            self.requests += 1
            self.bytes_read += nbytes


class Storage:
    """One fsspec filesystem plus the retry policy; picklable (the filesystem is rebuilt on demand).

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
        return {
            "_options": self._options,
            "retry_policy": self.retry_policy,
            "timeout": self.timeout,
            "protocol": self.protocol,
            "identities": self.identities,
        }

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fs = None
        self._lock = threading.Lock()
        self.stats = StorageStats()

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
            options = client_options(self.protocol, self._options, self.timeout)
            return tuned_filesystem(fsspec.filesystem(self.protocol, skip_instance_cache=True, **options))
        except ImportError as exc:
            raise InvalidArgumentError(
                f"reading {self.protocol}:// needs a package that is not installed: {exc}"
            ) from exc
        except ValueError as exc:
            raise InvalidArgumentError(f"unknown protocol {self.protocol!r}: {exc}") from exc

    @property
    def is_local(self) -> bool:
        """True when reads can go straight from a local file into a numpy buffer."""
        return isinstance(self.fs, LocalFileSystem)

    def for_files(self, paths: Iterable[str]) -> "Storage":
        """A copy (same filesystem and settings) that knows the identities of these files only."""
        copy = Storage.__new__(Storage)
        copy.__setstate__({**self.__getstate__(), "identities": self.identities.only(paths)})
        return copy

    @property
    def context(self) -> ReadContext:
        """What streamed reads check their answers against (file identities) and how long they wait (timeout)."""
        return ReadContext(self.identities, self.timeout)

    @property
    def streamer(self) -> Optional[Streamer]:
        """How remote ranges are streamed into arrays (http, s3), or None (local files; others use cat_file)."""
        return None if self.is_local else stream_reader(self.fs)

    @property
    def piece_bytes(self) -> int:
        """Stored bytes per piece that suit this storage (see LOCAL_PIECE_BYTES and streaming.py)."""
        if self.is_local:
            return LOCAL_PIECE_BYTES
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

    def find(self, folder: str, extension: str) -> List[FileEntry]:
        """Files under `folder` (recursively) ending with `extension`, sorted, with their sizes when known.

        `folder` is in the filesystem's own form (what `strip` returns: `bucket/key` for s3). What is listed and
        what is skipped: see listing.py.
        """
        from .listing import find_files  # listing.py uses this module

        return find_files(self, folder, extension)

    def read_range(self, path: str, start: int, end: int, cancel: Optional[threading.Event] = None) -> bytes:
        """Exactly bytes [start, end) of a file, retried on transient errors; a short answer is never used."""
        return call_with_retries(
            lambda: self._read_exact(path, start, end, cancel), byte_range(path, start, end), self.retry_policy, cancel
        )

    def _read_exact(self, path: str, start: int, end: int, cancel: Optional[threading.Event] = None) -> bytes:
        data = self._counted_cat(path, start, end, cancel)
        if len(data) != end - start:
            if self.is_local:
                raise CorruptFileError(f"{byte_range(path, start, end)}: file ends early, got {len(data)} bytes")
            raise ShortReadError(f"{byte_range(path, start, end)}: got {len(data)} bytes")
        return data

    def read_ranges(self, requests: Sequence[Tuple[str, int, int]], allow_short: bool = False) -> List[bytes]:
        """Many exact range reads at once (file headers and footers): concurrent for remote filesystems.

        With `allow_short`, an answer shorter than asked is returned as is (the caller checks it
        against what the file says of itself); every failed or too-long answer is retried alone.
        """
        if self.is_local or len(requests) <= 1:
            return [self._read_checked(request, allow_short) for request in requests]
        if getattr(self.fs, "async_impl", False):
            where = f"{len(requests)} range reads ({redact(requests[0][0])}, ...)"
            answers = self._run_async(self._fetch_all(requests), where, None)
            return [self._accept(answer, request, allow_short) for answer, request in zip(answers, requests)]
        with ThreadPoolExecutor(min(HEADER_READ_THREADS, len(requests))) as pool:
            return list(pool.map(lambda request: self._read_checked(request, allow_short), requests))

    async def _fetch_all(self, requests: Sequence[Tuple[str, int, int]]) -> List[Any]:
        """Every request's bytes (or the exception it met), HEADER_READ_CONCURRENCY at a time, on the fs's loop."""
        return await _read_all(self._range_fetcher(), requests, HEADER_READ_CONCURRENCY)

    def _range_fetcher(self) -> Callable[[str, int, int], Awaitable[bytes]]:
        """A coroutine function giving bytes [start, end) of a remote file, or fewer if it ends first: streamed
        over http and s3 (a lighter request than `cat_file`'s), else `_cat_file`."""
        fs, streamer = self.fs, self.streamer
        if streamer is None:
            return lambda path, start, end: fs._cat_file(path, start=start, end=end)  # pylint: disable=W0212

        context = self.context

        async def streamed(path: str, start: int, end: int) -> bytes:
            buffer = bytearray(end - start)
            filled = await streamer.read_into(fs, path, start, memoryview(buffer), context)
            return bytes(buffer[:filled])

        return streamed

    def _accept(self, answer: Any, request: Tuple[str, int, int], allow_short: bool) -> bytes:
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

    def _read_checked(self, request: Tuple[str, int, int], allow_short: bool) -> bytes:
        """One retried range read, exact unless `allow_short`."""
        path, start, end = request
        if not allow_short:
            return self.read_range(path, start, end)
        return call_with_retries(
            lambda: self._counted_cat(path, start, end), byte_range(path, start, end), self.retry_policy
        )

    def _counted_cat(self, path: str, start: int, end: int, cancel: Optional[threading.Event] = None) -> bytes:
        data = self._cat(path, start, end, cancel)
        self.stats.add(len(data))
        if len(data) > end - start:
            raise ShortReadError(f"{byte_range(path, start, end)}: got {len(data)} bytes, more than asked")
        return data

    def _cat(self, path: str, start: int, end: int, cancel: Optional[threading.Event]) -> bytes:
        """Bytes [start, end) or fewer if the file ends first: a checked streamed read over http and s3, else
        `fs.cat_file`; on an async filesystem, abandoned (its request aborted) soon after `cancel` is set."""
        fs = self.fs
        if not getattr(fs, "async_impl", False):
            return bytes(fs.cat_file(path, start=start, end=end))
        coroutine = self._range_fetcher()(path, start, end)
        return bytes(self._run_async(coroutine, byte_range(path, start, end), cancel))

    def _run_async(self, coroutine: Any, where: str, cancel: Optional[threading.Event]) -> Any:
        """Run a coroutine on the filesystem's event loop; abandon it (aborting its request) once `cancel` is set.

        A worker blocked in a long request to a slow server would otherwise hold up the end of a read
        (a break out of the caller's loop) until the whole response arrived.
        """
        request = asyncio.run_coroutine_threadsafe(coroutine, self.fs.loop)
        try:
            while not wait_futures([request], timeout=CANCEL_POLL_S).done:
                if cancel is not None and cancel.is_set():
                    raise ReadFailedError(f"{where}: read cancelled")
        except BaseException:  # cancelled, or interrupted (KeyboardInterrupt) while waiting
            request.cancel()
            raise
        return request.result()

    def _stream_exact(
        self, streamer: Streamer, path: str, start: int, out: memoryview, cancel: Optional[threading.Event]
    ) -> None:
        """Stream bytes [start, start + len(out)) into `out`, as concurrent parts if the filesystem wants them.

        Parts multiply the connections a piece uses without more threads. Each attempt fetches the parts
        still missing, so a fault costs one part's request.
        """
        where = byte_range(path, start, start + out.nbytes)
        step = streamer.part_size(out.nbytes)
        missing = [(lo, min(lo + step, out.nbytes)) for lo in range(0, out.nbytes, step)]

        def attempt() -> None:
            parts = [self._stream_part(streamer.read_into, path, start + lo, out[lo:hi]) for lo, hi in missing]
            results = self._run_async(_gather(parts), where, cancel)
            failures = [(part, result) for part, result in zip(missing, results) if isinstance(result, BaseException)]
            missing[:] = [part for part, _ in failures]
            if failures:  # a permanent failure of any part ends the piece's attempts
                raise next((error for _, error in failures if not is_transient(error)), failures[0][1])

        call_with_retries(attempt, where, self.retry_policy, cancel)

    async def _stream_part(self, stream: StreamInto, path: str, start: int, out: memoryview) -> None:
        """One streamed range read, which must come back whole."""
        received = await stream(self.fs, path, start, out, self.context)
        self.stats.add(received)
        if received != out.nbytes:
            raise ShortReadError(f"{byte_range(path, start, start + out.nbytes)}: got {received} bytes")

    def sizes(self, files: Sequence[FileEntry]) -> List[int]:
        """Sizes of the files, asking storage (concurrently) only for those the listing did not give."""
        unknown = [path for path, size in files if size is None]
        if not unknown:
            return [int(size) for _, size in files]  # type: ignore[arg-type]
        with ThreadPoolExecutor(min(HEADER_READ_THREADS, len(unknown))) as pool:
            found = dict(zip(unknown, pool.map(self.size, unknown)))
        return [found[path] if size is None else size for path, size in files]

    def read_into(self, path: str, start: int, out: memoryview, cancel: Optional[threading.Event] = None) -> None:
        """Fill `out` with the file's bytes from `start`: straight from disk locally, else one ranged read
        (streamed into `out` as it arrives over http and s3, retried like `read_range`)."""
        if not self.is_local:
            streamer = self.streamer
            if streamer is None:
                out[:] = self.read_range(path, start, start + out.nbytes, cancel)
                return
            self._stream_exact(streamer, path, start, out, cancel)
            return
        with open(path, "rb") as file:
            self.identities.observe(path, local_identity(os.fstat(file.fileno())), redact(path))
            file.seek(start)
            filled = 0
            while filled < out.nbytes:
                got = file.readinto(out[filled:])
                if not got:
                    end = start + out.nbytes
                    raise CorruptFileError(f"{byte_range(path, start, end)}: file ends early, after {filled} bytes")
                filled += got

    def check_unchanged(self, path: str) -> None:
        """FileChangedError if a local file is no longer what it was at open (remote answers are checked as they
        come); for reads that bypass `read_into`, such as pyarrow opening the file itself."""
        if self.is_local:
            self.identities.observe(path, local_identity(os.stat(path)), redact(path))

    def size(self, path: str) -> int:
        """Size in bytes of a file just listed (one metadata request for remote files).

        fsspec's http `info` turns every failure of its HEAD and GET into FileNotFoundError, so a
        remote "not found" for a file the listing gave a moment ago is retried like a transient error.
        """

        def size() -> int:
            try:
                return int(self.fs.size(path))
            except FileNotFoundError as exc:
                if self.is_local:
                    raise
                raise ShortReadError(f"size of {redact(path)}: {type(exc).__name__}: {exc}") from exc

        return call_with_retries(size, f"size of {redact(path)}", self.retry_policy)


async def _read_all(
    fetch: Callable[[str, int, int], Awaitable[bytes]], requests: Sequence[Tuple[str, int, int]], concurrency: int
) -> List[Any]:
    """`fetch(path, start, end)` of every request, `concurrency` at a time; answers or exceptions, in order.

    A fixed set of workers takes the next request as each answer arrives: O(1) per answer, where fsspec's
    `cat_ranges` re-waits on its whole in-flight set.
    """
    answers: List[Any] = [None] * len(requests)
    todo = iter(enumerate(requests))

    async def worker() -> None:
        for k, (path, start, end) in todo:
            try:
                answers[k] = await fetch(path, start, end)
            except Exception as exc:  # pylint: disable=broad-except  # each read is checked and retried alone
                answers[k] = exc

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
    return answers


async def _gather(coroutines: List[Any]) -> List[Any]:
    """Run coroutines at once on the running loop; their results or exceptions, in order."""
    return await asyncio.gather(*coroutines, return_exceptions=True)


def _protocol(url: str) -> str:
    """The fsspec protocol of a url ('file' for plain paths)."""
    protocol = fsspec.core.split_protocol(url)[0] or "file"
    return "file" if protocol == "local" else protocol
