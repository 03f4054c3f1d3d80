"""retry.py: which errors are transient, backoff bounds, attempts and messages, and cancellation of the backoff."""

from __future__ import annotations

import errno
import random
import threading
import time

import aiohttp
import pytest
from botocore import exceptions as boto
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from embedding_reader import CorruptFileError, NoEmbeddingsFoundError, ReadFailedError, RetryPolicy, ShortReadError
from embedding_reader.retry import NO_RETRY, call_with_retries, http_status, is_transient

pytestmark = pytest.mark.timeout(30)

INSTANT = RetryPolicy(max_attempts=5, base_delay=0, max_delay=0)


def http_error(status: int) -> aiohttp.ClientResponseError:
    """What fsspec's http filesystem raises for an error status (other than 404)."""
    url = URL("http://127.0.0.1/f.npy")
    request = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)
    return aiohttp.ClientResponseError(request, (), status=status, message="injected")


def boto_error(status: int, code: str) -> boto.ClientError:
    """What botocore raises for an S3 error answer."""
    response = {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return boto.ClientError(response, "GetObject")


TRANSIENT = {
    "http 500": http_error(500),
    "http 502": http_error(502),
    "http 503": http_error(503),
    "http 504": http_error(504),
    "http 429": http_error(429),
    "http 408": http_error(408),
    "payload cut": aiohttp.ClientPayloadError("Response payload is not completed"),
    "server disconnected": aiohttp.ServerDisconnectedError(),
    "server timeout": aiohttp.ServerTimeoutError("read timeout"),
    "connection refused": aiohttp.ClientConnectorError(None, ConnectionRefusedError(errno.ECONNREFUSED, "refused")),
    "s3 500": boto_error(500, "InternalError"),
    "s3 503": boto_error(503, "SlowDown"),
    "boto endpoint": boto.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    "boto read timeout": boto.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    "boto closed": boto.ConnectionClosedError(endpoint_url="http://127.0.0.1:1"),
    "s3fs EREMOTEIO": OSError(errno.EREMOTEIO, "Remote I/O error"),
    "s3fs EBUSY": OSError(errno.EBUSY, "Device or resource busy"),
    "reset": ConnectionResetError(errno.ECONNRESET, "reset by peer"),
    "timeout": TimeoutError("timed out"),
    "short read": ShortReadError("got 10 bytes"),
}
PERMANENT = {
    "http 400": http_error(400),
    "http 403": http_error(403),
    "http 404": http_error(404),
    "http 416": http_error(416),
    "s3 403": boto_error(403, "AccessDenied"),
    "s3 404": boto_error(404, "NoSuchKey"),
    "not found": FileNotFoundError(errno.ENOENT, "gone"),
    "permission": PermissionError(errno.EACCES, "denied"),
    "is a directory": IsADirectoryError(errno.EISDIR, "folder"),
    "not a directory": NotADirectoryError(errno.ENOTDIR, "file"),
    "corrupt": CorruptFileError("bad header"),
    "no embeddings": NoEmbeddingsFoundError("no folder"),
    "read failed": ReadFailedError("already given up"),
    "value": ValueError("bad value"),
    "key": KeyError("column"),
}


class Flaky:
    """An action that raises the given errors in turn, then returns "done"; counts its calls."""

    def __init__(self, *errors: BaseException):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


class AlwaysFailing:
    """An action that raises the same error on every call; counts its calls."""

    def __init__(self, error: BaseException):
        self.error = error
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        raise self.error


class FixedDelay(RetryPolicy):
    """A policy waiting exactly `base_delay` seconds between attempts (no jitter)."""

    def delay(self, attempt: int) -> float:
        return self.base_delay


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize("name", sorted(TRANSIENT))
def test_transient(name):
    """5xx, 429, 408, cut bodies, resets, disconnects and timeouts (aiohttp, botocore, s3fs's OSErrors) are retried."""
    assert is_transient(TRANSIENT[name])


@pytest.mark.parametrize("name", sorted(PERMANENT))
def test_permanent(name):
    """4xx other than 408/429, missing files, permissions, corrupt files and the library's own errors are not."""
    assert not is_transient(PERMANENT[name])


def test_http_status_read_from_each_library():
    """The status comes from aiohttp's .status and botocore's response metadata; none for plain errors."""
    assert http_status(http_error(503)) == 503
    assert http_status(boto_error(404, "NoSuchKey")) == 404
    assert http_status(OSError(errno.EREMOTEIO, "x")) is None
    assert http_status(ValueError("x")) is None


# ---------------------------------------------------------------- attempts and messages


def test_transient_errors_are_retried_until_success():
    """Two transient failures, then success: three calls, the value returned."""
    action = Flaky(http_error(503), aiohttp.ClientPayloadError("cut"))
    assert call_with_retries(action, "f bytes [0, 10)", INSTANT) == "done"
    assert action.calls == 3


def test_permanent_error_fails_at_once_with_clear_message():
    """A 404 is tried once and reported as permanent, naming what was read, with the cause chained."""
    error = FileNotFoundError(errno.ENOENT, "gone")
    action = AlwaysFailing(error)
    with pytest.raises(ReadFailedError) as info:
        call_with_retries(action, "http://h/f.npy bytes [128, 256)", INSTANT)
    assert action.calls == 1
    assert str(info.value).startswith("http://h/f.npy bytes [128, 256): FileNotFoundError")
    assert "permanent" in str(info.value) and info.value.__cause__ is error


def test_attempts_exhausted_message_names_range_attempts_and_error():
    """A transient error on every attempt: exactly max_attempts calls, then the range, the count and the error."""
    action = AlwaysFailing(http_error(500))
    with pytest.raises(ReadFailedError) as info:
        call_with_retries(action, "s3://b/f.npy bytes [0, 64)", INSTANT)
    assert action.calls == INSTANT.max_attempts
    message = str(info.value)
    assert message.startswith("s3://b/f.npy bytes [0, 64): failed after 5 attempts: ClientResponseError: 500"), message


def test_library_errors_pass_through_unchanged():
    """A CorruptFileError raised inside the action is neither retried nor wrapped."""
    error = CorruptFileError("bad header")
    action = AlwaysFailing(error)
    with pytest.raises(CorruptFileError) as info:
        call_with_retries(action, "f", INSTANT)
    assert info.value is error and action.calls == 1


def test_no_retry_policy_tries_once():
    """NO_RETRY: one attempt, and a transient error is reported after it."""
    action = AlwaysFailing(TimeoutError("slow"))
    with pytest.raises(ReadFailedError, match="after 1 attempts"):
        call_with_retries(action, "f", NO_RETRY)
    assert action.calls == 1


# ---------------------------------------------------------------- backoff


def test_backoff_stays_within_its_bounds():
    """Delay after attempt k is within [0, min(max_delay, base * 2**k)], spread over that range (full jitter)."""
    policy = RetryPolicy(max_attempts=12, base_delay=0.1, max_delay=1.0)
    random.seed(1234)
    for attempt in range(12):
        cap = min(policy.max_delay, policy.base_delay * 2**attempt)
        delays = [policy.delay(attempt) for _ in range(300)]
        assert all(0 <= delay <= cap for delay in delays)
        assert max(delays) > 0.9 * cap and min(delays) < 0.1 * cap


def test_default_policy_gives_up_within_bounded_time():
    """The default policy's worst case, every delay at its cap, stays under 15 seconds of waiting."""
    policy = RetryPolicy()
    worst = sum(min(policy.max_delay, policy.base_delay * 2**k) for k in range(policy.max_attempts - 1))
    assert worst < 15


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"base_delay": -1}, {"max_delay": -0.5}])
def test_invalid_policies_refused(kwargs):
    """Fewer than one attempt, or a negative delay, is refused."""
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


# ---------------------------------------------------------------- cancellation


def test_cancel_during_backoff_ends_it_promptly():
    """An Event set while the retry loop sleeps a long backoff ends the loop at once with 'read cancelled'."""
    cancel = threading.Event()
    action = AlwaysFailing(http_error(503))
    timer = threading.Timer(0.1, cancel.set)
    timer.start()
    started = time.monotonic()
    with pytest.raises(ReadFailedError, match="cancelled"):
        call_with_retries(action, "f", FixedDelay(max_attempts=5, base_delay=30), cancel)
    assert time.monotonic() - started < 1.0 and action.calls == 1
    timer.join()


def test_cancel_already_set_stops_after_first_failure():
    """A read cancelled before it failed does not wait at all."""
    cancel = threading.Event()
    cancel.set()
    action = AlwaysFailing(http_error(500))
    started = time.monotonic()
    with pytest.raises(ReadFailedError, match="cancelled"):
        call_with_retries(action, "f", FixedDelay(max_attempts=5, base_delay=30), cancel)
    assert time.monotonic() - started < 0.5 and action.calls == 1
