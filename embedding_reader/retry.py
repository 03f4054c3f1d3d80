"""Retries with exponential backoff and jitter, and the rule telling transient errors from permanent ones."""

import logging
import math
import numbers
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from .errors import (
    EmbeddingReaderError,
    InvalidArgumentError,
    ReadFailedError,
    ShortReadError,
    StalledReadError,
    check_int,
)

T = TypeVar("T")
logger = logging.getLogger("embedding_reader")

_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_TRANSIENT_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed remote read is tried again.

    The delay before attempt k+1 is uniform in [0, min(max_delay, base_delay * 2**k)] ("full jitter"),
    so many readers hitting one overloaded server spread out instead of retrying in lockstep.
    """

    max_attempts: int = 8
    base_delay: float = 0.1
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        check_int("RetryPolicy.max_attempts", self.max_attempts, 1)
        for name in ("base_delay", "max_delay"):
            _check_delay(name, getattr(self, name))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the given failed attempt (0-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def _check_delay(name: str, value: Any) -> None:
    """A delay must be a finite real number of seconds >= 0 (NaN or infinity would never or always wait)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) < math.inf:
        raise InvalidArgumentError(f"RetryPolicy.{name} must be a finite number of seconds >= 0, got {value!r}")


NO_RETRY = RetryPolicy(max_attempts=1)


def http_status(exc: BaseException) -> Optional[int]:
    """The HTTP status carried by an exception from aiohttp, botocore or requests, if any."""
    for name in ("status", "status_code", "code"):
        value = getattr(exc, name, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status if isinstance(status, int) else None
    return None


def is_own_permanent(exc: BaseException) -> bool:
    """True for the library's own errors that no new attempt can change (all but ShortReadError): raised as is."""
    return isinstance(exc, EmbeddingReaderError) and not isinstance(exc, ShortReadError)


def is_transient(exc: BaseException) -> bool:
    """True for failures that may pass on a new attempt: 5xx, 429, resets, timeouts, short bodies."""
    if isinstance(exc, ShortReadError):
        return True
    if isinstance(exc, (EmbeddingReaderError, *_PERMANENT_OS_ERRORS)):
        return False
    status = http_status(exc)
    if status is not None:
        return status >= 500 or status in _TRANSIENT_STATUSES
    if isinstance(exc, (OSError, TimeoutError, ConnectionError, EOFError)):
        return True
    # aiohttp / botocore client errors without a status: connection and payload problems.
    module = type(exc).__module__ or ""
    return module.startswith(("aiohttp", "botocore", "urllib3", "requests", "s3fs", "gcsfs"))


def call_with_retries(
    action: Callable[[], T],
    describe: str,
    policy: RetryPolicy,
    cancel: Optional[threading.Event] = None,
) -> T:
    """Run `action`, retrying transient failures per `policy`; raise ReadFailedError naming `describe`."""
    for attempt in range(policy.max_attempts):
        try:
            return action()
        except Exception as exc:  # pylint: disable=broad-except
            if is_own_permanent(exc):
                raise
            if not is_transient(exc):
                raise ReadFailedError(f"{describe}: {_summary(exc)} (permanent error, not retried)") from exc
            if attempt + 1 == policy.max_attempts:
                raise ReadFailedError(
                    f"{describe}: failed after {policy.max_attempts} attempts: {_summary(exc)}"
                ) from exc
            delay = policy.delay(attempt)
            _log_retry(describe, attempt, policy, exc, delay)
            _sleep(delay, cancel)
    raise AssertionError("unreachable")


def _log_retry(describe: str, attempt: int, policy: RetryPolicy, exc: BaseException, delay: float) -> None:
    """A stall (a whole timeout spent waiting) is worth a WARNING; the other transient faults are routine: DEBUG."""
    level = logging.WARNING if isinstance(exc, StalledReadError) else logging.DEBUG
    logger.log(
        level,
        "%s: attempt %d of %d failed (%s), retrying in %.2f s",
        describe,
        attempt + 1,
        policy.max_attempts,
        _summary(exc),
        delay,
    )


def _sleep(seconds: float, cancel: Optional[threading.Event]) -> None:
    """Sleep, waking early (and giving up) when the read was cancelled."""
    if cancel is None:
        time.sleep(seconds)
    elif cancel.wait(seconds):
        raise ReadFailedError("read cancelled")


def _summary(exc: BaseException) -> str:
    """A one-line description of an exception: its type and first line of message."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
