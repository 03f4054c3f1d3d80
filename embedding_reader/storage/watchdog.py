"""A watchdog on a request's progress: abandoned when `timeout` seconds pass without PROGRESS_BYTES more of its
answer (or the first byte, or the connection), so that a server that never answers, stalls mid-body or trickles a
byte a second costs one timeout, not the client's own limits (aiohttp: 5 minutes per request)."""

import asyncio
from types import TracebackType
from typing import Optional, Type

from ..errors import StalledReadError

PROGRESS_BYTES = 64 * 1024  # a trickle below this many bytes per timeout is no progress
DEFAULT_TIMEOUT_S = 60.0
# the clients' own socket timeouts wait this much longer, so that on a streamed read the watchdog speaks first
# (one error for every stall); they still bound the requests it does not watch (listings, sizes)
CLIENT_TIMEOUT_MARGIN_S = 1.0


class Watchdog:
    """`async with Watchdog(timeout, where) as dog:` runs the block, calling `dog.progress(n)` per chunk received;
    the block's task is cancelled once `timeout` s pass without progress, and StalledReadError raised instead."""

    def __init__(self, timeout: float, where: str):
        self.timeout, self.where = timeout, where
        self._task: Optional[asyncio.Task[object]] = None
        self._timer: Optional[asyncio.TimerHandle] = None
        self._deadline = 0.0
        self._since_mark = 0
        self.expired = False

    async def __aenter__(self) -> "Watchdog":
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._deadline = loop.time() + self.timeout
        self._timer = loop.call_at(self._deadline, self._check)
        return self

    def progress(self, nbytes: int) -> None:
        """Count received bytes; every PROGRESS_BYTES of them push the deadline back to `timeout` from now."""
        self._since_mark += nbytes
        if self._since_mark >= PROGRESS_BYTES:
            self._since_mark = 0
            self._deadline = asyncio.get_running_loop().time() + self.timeout

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._check)
        elif self._task is not None:
            self.expired = True
            self._task.cancel()

    async def __aexit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.expired and kind is not None and issubclass(kind, asyncio.CancelledError):
            if self._task is not None and hasattr(self._task, "uncancel"):
                self._task.uncancel()  # the cancel was ours, not the caller's (Python 3.11+)
            raise StalledReadError(f"{self.where}: no progress for {self.timeout:g} s (timeout)") from None
