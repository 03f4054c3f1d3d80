"""Remote reads on fsspec's async filesystems: run on the filesystem's event loop (abandoned when the read is
cancelled), many small reads at once, and a range streamed as concurrent parts where the protocol wants them.
One attempt each: the retries are the caller's (Storage)."""

import asyncio
import threading
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, List, Optional, Sequence, Tuple

from ..errors import ReadFailedError, ShortReadError, StalledReadError
from ..retry import is_transient
from .identity import FileIdentities
from .names import byte_range
from .watchdog import CLIENT_TIMEOUT_MARGIN_S, PROGRESS_BYTES

CANCEL_POLL_S = 0.05  # how soon a cancelled read gives up its request
DEFAULT_CONCURRENCY = 128  # small reads in flight on an async filesystem without a streamer of its own
PARTS_PER_RANGE = 4  # a smaller range (a first-batch piece, cut finer to arrive sooner) still gets parts ...
MIN_PART_BYTES = 2**20  # ... down to 1 MB


@dataclass(frozen=True)
class ReadContext:
    """What every streamed read checks against: the identities of the files, and the seconds without progress
    after which a request is abandoned."""

    identities: FileIdentities
    timeout: float


StreamInto = Callable[[Any, str, int, memoryview, ReadContext], Awaitable[int]]
Fetch = Callable[[str, int, int], Awaitable[bytes]]


@dataclass(frozen=True)
class Streamer:
    """How a protocol streams ranges into arrays: the coroutine, the part size (None: one request per range), the
    piece size that suits it, and how many requests its connection pool carries at once."""

    read_into: StreamInto
    part_bytes: Optional[int]
    piece_bytes: int
    connections: int

    def part_size(self, nbytes: int) -> int:
        """Bytes per request for a range of `nbytes`: about PARTS_PER_RANGE parts of at most part_bytes and,
        unless part_bytes is smaller, at least MIN_PART_BYTES; the whole range if the protocol wants no parts."""
        if self.part_bytes is None:
            return max(1, nbytes)
        return max(1, min(self.part_bytes, max(MIN_PART_BYTES, -(-nbytes // PARTS_PER_RANGE))))


class RemoteIO:
    """One attempt at remote reads of an async filesystem, counted by `count(nbytes)`."""

    def __init__(self, fs: Any, streamer: Optional[Streamer], context: ReadContext, count: Callable[[int], None]):
        self.fs, self.streamer, self.context, self.count = fs, streamer, context, count

    def run(self, coroutine: Any, where: str, cancel: Optional[threading.Event]) -> Any:
        """Run a coroutine on the filesystem's loop; abandon it (aborting its request) once `cancel` is set, so that a
        worker blocked on a slow server does not hold up the end of a read."""
        request = asyncio.run_coroutine_threadsafe(coroutine, self.fs.loop)
        try:
            while not wait_futures([request], timeout=CANCEL_POLL_S).done:
                if cancel is not None and cancel.is_set():
                    raise ReadFailedError(f"{where}: read cancelled")
        except BaseException:  # cancelled, or interrupted (KeyboardInterrupt) while waiting
            request.cancel()
            raise
        return request.result()

    def fetcher(self) -> Fetch:
        """A coroutine function giving bytes [start, end) of a file, or fewer if it ends first: streamed and
        checked where the protocol has a streamer, else fsspec's `_cat_file`."""
        fs, streamer, context = self.fs, self.streamer, self.context
        if streamer is None:
            return lambda path, start, end: within_deadline(
                fs._cat_file(path, start=start, end=end), context.timeout, end - start, byte_range(path, start, end)
            )  # pylint: disable=W0212

        async def streamed(path: str, start: int, end: int) -> bytes:
            buffer = bytearray(end - start)
            filled = await streamer.read_into(fs, path, start, memoryview(buffer), context)
            return bytes(buffer[:filled])

        return streamed

    def cat(self, path: str, start: int, end: int, cancel: Optional[threading.Event]) -> bytes:
        """Bytes [start, end) of a file, or fewer if it ends first."""
        return bytes(self.run(self.fetcher()(path, start, end), byte_range(path, start, end), cancel))

    def cat_many(self, requests: Sequence[Tuple[str, int, int]]) -> List[Any]:
        """Every request's bytes or the exception it met, in order, as many at once as the pool carries."""
        concurrency = self.streamer.connections if self.streamer else DEFAULT_CONCURRENCY
        where = f"{len(requests)} range reads ({byte_range(*requests[0])}, ...)"
        return list(self.run(_read_all(self.fetcher(), requests, concurrency), where, None))

    def parts(self, path: str, start: int, out: memoryview, cancel: Optional[threading.Event]) -> "Parts":
        """The streamed read of bytes [start, start + len(out)) into `out`, one attempt per call of its `attempt`."""
        assert self.streamer is not None
        return Parts(self, path, start, out, cancel)


class Parts:
    """A range as concurrent parts (more connections without more threads); each attempt fetches the parts still
    missing, so a fault costs one part's request, and a permanent failure of any part ends the attempts."""

    def __init__(self, io: RemoteIO, path: str, start: int, out: memoryview, cancel: Optional[threading.Event]):
        assert io.streamer is not None
        self.io, self.path, self.start, self.out, self.cancel = io, path, start, out, cancel
        self.where = byte_range(path, start, start + out.nbytes)
        step = io.streamer.part_size(out.nbytes)
        self.missing = [(lo, min(lo + step, out.nbytes)) for lo in range(0, out.nbytes, step)]

    def attempt(self) -> None:
        """Fetch the missing parts at once; raise the first permanent failure, else the first transient one."""
        parts = [self._part(self.start + lo, self.out[lo:hi]) for lo, hi in self.missing]
        results = self.io.run(_gather(parts), self.where, self.cancel)
        failures = [(part, result) for part, result in zip(self.missing, results) if isinstance(result, BaseException)]
        self.missing = [part for part, _ in failures]
        if failures:
            raise next((error for _, error in failures if not is_transient(error)), failures[0][1])

    async def _part(self, start: int, out: memoryview) -> None:
        """One streamed part, which must come back whole."""
        assert self.io.streamer is not None
        received = await self.io.streamer.read_into(self.io.fs, self.path, start, out, self.io.context)
        self.io.count(received)
        if received != out.nbytes:
            raise ShortReadError(f"{byte_range(self.path, start, start + out.nbytes)}: got {received} bytes")


def deadline(timeout: float, nbytes: int) -> float:
    """The longest a read of `nbytes` may take as a whole when it cannot be watched chunk by chunk (fsspec's
    `cat_file`, and whatever requests, retries or probes its client makes inside): as long as a watched read making
    the least progress allowed (PROGRESS_BYTES per timeout), plus the clients' margin."""
    return (timeout + CLIENT_TIMEOUT_MARGIN_S) * (1 + nbytes / PROGRESS_BYTES)


async def within_deadline(coroutine: Awaitable[Any], timeout: float, nbytes: int, where: str) -> Any:
    """The coroutine's result, or StalledReadError (transient) once `deadline(timeout, nbytes)` has passed."""
    seconds = deadline(timeout, nbytes)
    try:
        return await asyncio.wait_for(coroutine, seconds)
    except asyncio.TimeoutError:
        raise StalledReadError(f"{where}: not done in {seconds:.3g} s (timeout {timeout:g} s)") from None


async def _read_all(fetch: Fetch, requests: Sequence[Tuple[str, int, int]], concurrency: int) -> List[Any]:
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
