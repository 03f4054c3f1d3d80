"""S3 through s3fs: a pool as large as the requests in flight, botocore's timeouts set and its retries and s3fs's
off (the library's retry policy is the only loop), and checked ranged GetObject calls streamed into the array."""

from typing import Any, Dict, Optional, Tuple

import fsspec

from ..errors import ReadFailedError
from .answers import append, check_complete, check_length, checked_range
from .identity import FileIdentity, etag
from .remote import ReadContext, Streamer
from .watchdog import CLIENT_TIMEOUT_MARGIN_S, Watchdog

NAMES = ("s3", "s3a")
MAX_CONNECTIONS = 256
READ_BYTES = 256 * 1024  # per body read: what a socket read gives at most, so nothing is joined
PIECE_BYTES = 64 * 2**20  # one GET per piece, each paying its first-byte latency and a request fee: large ranges


def client_options(options: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """The storage options with botocore's pool, timeouts and no retries, under what the user set."""
    defaults = {
        "max_pool_connections": MAX_CONNECTIONS,
        "connect_timeout": timeout + CLIENT_TIMEOUT_MARGIN_S,
        "read_timeout": timeout + CLIENT_TIMEOUT_MARGIN_S,
        "retries": {"total_max_attempts": 1},
    }
    return {**options, "config_kwargs": {**defaults, **(options.get("config_kwargs") or {})}}


def tune(fs: fsspec.AbstractFileSystem, timeout: float) -> fsspec.AbstractFileSystem:  # pylint: disable=W0613
    """s3fs retries 5 times with back-off inside each of the library's attempts: once is enough."""
    if hasattr(fs, "retries"):
        fs.retries = 1  # s3fs.S3FileSystem.retries: the attempts of its own _error_wrapper
    return fs


def streamer(fs: fsspec.AbstractFileSystem) -> Optional[Streamer]:
    """Streamed ranges for s3fs (the hooks it is known to have), else None; one request per range."""
    if getattr(fs, "async_impl", False) and hasattr(fs, "_call_s3") and hasattr(fs, "split_path"):
        return Streamer(read_into, None, PIECE_BYTES, MAX_CONNECTIONS)
    return None


async def read_into(fs: Any, path: str, start: int, out: memoryview, context: ReadContext) -> int:
    """GetObject with a Range into `out`, checked, through s3fs's client (its error translation included).

    `_call_s3` is private s3fs API, used only here: the public way (`open`) adds a HEAD and read-ahead per read
    (tests/test_remote.py fails if s3fs drops it)."""
    where = f"s3://{path} bytes [{start}, {start + len(out)})"
    bucket, key, version = fs.split_path(path)
    version_kw = {"VersionId": version} if version else {}
    async with Watchdog(context.timeout, where) as watchdog:
        response = await fs._call_s3(  # pylint: disable=protected-access
            "get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{start + len(out) - 1}", **version_kw
        )
        body = response["Body"]
        try:
            expected, total = _checked_answer(where, response, start, len(out))
            context.identities.observe(path, FileIdentity(total, etag(response.get("ETag"))), path)
            target, filled = out[:expected], 0
            while chunk := await body.read(READ_BYTES):
                filled = append(target, filled, chunk, where)
                watchdog.progress(len(chunk))
            return check_complete(where, filled, expected)
        finally:
            body.close()


def _checked_answer(where: str, response: Any, start: int, length: int) -> Tuple[int, Optional[int]]:
    """(bytes the body must hold, the object's size), after checking ContentRange and ContentLength (S3 returns the
    stored bytes whatever ContentEncoding the object carries)."""
    content_length = response.get("ContentLength")
    if response.get("ContentRange"):
        expected, total = checked_range(where, response["ContentRange"], start, length)
    elif start == 0 and isinstance(content_length, int) and content_length <= length:
        expected, total = content_length, content_length
    else:
        raise ReadFailedError(f"{where}: an answer without ContentRange to a range request")
    check_length(where, content_length if isinstance(content_length, int) else None, expected)
    return expected, total
