"""http(s) through fsspec's HTTPFileSystem: a pooled aiohttp session with socket timeouts, and checked ranged GETs
streamed into the caller's array.

fsspec's `cat_file` joins a body into one new bytes object, copied again into the batch: a second copy and fresh
memory. Here the body is copied chunk by chunk, as it arrives, into the batch array itself, after the answer's
status, range, length, encoding and identity (total size, ETag) are checked. 404 is FileNotFoundError and other
statuses aiohttp's errors, as with `cat_file`, so retries treat both paths alike.
"""

import functools
from typing import Any, Dict, Optional, Tuple

import fsspec

from ..errors import ReadFailedError
from .answers import append, check_complete, check_encoding, check_length, checked_range
from .identity import FileIdentity, etag, modified
from .remote import ReadContext, Streamer
from .watchdog import CLIENT_TIMEOUT_MARGIN_S, Watchdog

NAMES = ("http", "https")
MAX_CONNECTIONS = 256  # requests in flight at once (header reads; data reads use at most 16 pieces x 4 parts)
PART_BYTES = 4 * 2**20  # a piece is fetched as concurrent parts: servers often cap each connection's rate
PIECE_BYTES = 16 * 2**20  # four concurrent parts per piece: 16 threads make 64 connections


def client_options(options: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """The storage options with a pooled session and socket timeouts, unless the user brings a `get_client`."""
    return options if "get_client" in options else {**options, "get_client": pooled_client(timeout)}


def pooled_client(timeout: float) -> Any:
    """A `get_client` for fsspec's http: an aiohttp session with MAX_CONNECTIONS connections and socket timeouts
    (unless `client_kwargs` brings its own connector or timeout)."""

    async def get_client(**client_kwargs: Any) -> Any:
        import aiohttp  # pylint: disable=import-outside-toplevel  # only http reads need it (an optional extra)

        client_kwargs.setdefault("connector", aiohttp.TCPConnector(limit=MAX_CONNECTIONS))
        client_kwargs.setdefault("timeout", aiohttp_timeout(timeout))
        return aiohttp.ClientSession(**client_kwargs)

    return get_client


def aiohttp_timeout(timeout: float) -> Any:
    """aiohttp's socket timeouts: connecting, and waiting for the next bytes (not a total, which a large slow but
    progressing read would exceed)."""
    import aiohttp  # pylint: disable=import-outside-toplevel

    seconds = timeout + CLIENT_TIMEOUT_MARGIN_S
    return aiohttp.ClientTimeout(sock_connect=seconds, sock_read=seconds)


@functools.lru_cache(maxsize=8)
def _watched_timeout(timeout: float) -> Any:
    """A streamed read's own aiohttp timeout: connecting only, since the watchdog bounds the waits for data (an
    aiohttp read timer rescheduled at every chunk costs a tenth of the CPU of opening many small files)."""
    import aiohttp  # pylint: disable=import-outside-toplevel

    return aiohttp.ClientTimeout(sock_connect=timeout + CLIENT_TIMEOUT_MARGIN_S)


def streamer(fs: fsspec.AbstractFileSystem) -> Optional[Streamer]:
    """Streamed ranges for fsspec's async HTTPFileSystem (the hooks it is known to have), else None."""
    if getattr(fs, "async_impl", False) and hasattr(fs, "set_session") and hasattr(fs, "encode_url"):
        return Streamer(read_into, PART_BYTES, PIECE_BYTES, MAX_CONNECTIONS)
    return None


async def read_into(fs: Any, url: str, start: int, out: memoryview, context: ReadContext) -> int:
    """GET bytes [start, start + len(out)) of `url` into `out`, checked; the number of bytes received."""
    where = f"{url} bytes [{start}, {start + len(out)})"
    kwargs = dict(fs.kwargs)
    kwargs.setdefault("timeout", _watched_timeout(context.timeout))
    headers = dict(kwargs.pop("headers", None) or {})
    headers.update({"Range": f"bytes={start}-{start + len(out) - 1}", "Accept-Encoding": "identity"})
    async with Watchdog(context.timeout, where) as watchdog:
        session = await fs.set_session()
        async with session.get(fs.encode_url(url), headers=headers, **kwargs) as response:
            expected, total = _checked_answer(where, response, start, len(out))
            context.identities.observe(url, FileIdentity(total, _version(response.headers)), url)
            body, filled = out[:expected], 0
            async for chunk in response.content.iter_any():  # chunks as received: no joining
                filled = append(body, filled, chunk, where)
                watchdog.progress(len(chunk))
            return check_complete(where, filled, expected)


def _checked_answer(where: str, response: Any, start: int, length: int) -> Tuple[int, Optional[int]]:
    """(bytes the body must hold, the file's size if told), after checking status, range, length and encoding."""
    if response.status == 404:
        raise FileNotFoundError(where)
    response.raise_for_status()
    check_encoding(where, response.headers.get("Content-Encoding"))
    content_length = response.content_length
    if response.status == 206:
        expected, total = checked_range(where, response.headers.get("Content-Range"), start, length)
    elif start == 0 and content_length is not None and content_length <= length:
        expected, total = content_length, content_length  # the whole file, smaller than the range asked
    else:
        raise ReadFailedError(f"{where}: status {response.status} to a range request: the server ignores Range")
    check_length(where, content_length, expected)
    return expected, total


def _version(headers: Any) -> Optional[str]:
    """The version tag an http answer carries: its ETag, else its Last-Modified date."""
    return etag(headers.get("ETag")) or modified(headers.get("Last-Modified"))
