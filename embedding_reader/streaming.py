"""Ranged reads that stream a response body into the caller's array, for http(s) and s3 through fsspec.

fsspec's `cat_file` joins the body into one new bytes object, which the reader then copies into the
batch: a second copy, and fresh memory (a page fault per 4 KiB, which on 2 cores cost more CPU than
the whole download). Here the body is copied chunk by chunk, as it arrives, into the batch array
itself. Every answer is checked before its body is read: the status, the range it says it holds
(Content-Range), its length, its encoding and the file's identity (total size, ETag). Errors are those
`cat_file` raises (404 is FileNotFoundError, other statuses the client's error), so retries treat both paths
alike. Other filesystems keep `cat_file`.
"""

import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional, Tuple

from .errors import ReadFailedError, ShortReadError
from .identity import FileIdentities, FileIdentity
from .watchdog import Watchdog


@dataclass(frozen=True)
class ReadContext:
    """What every streamed read checks against: the identities of the files, and the seconds without progress
    after which a request is abandoned."""

    identities: FileIdentities
    timeout: float


StreamInto = Callable[[Any, str, int, memoryview, ReadContext], Awaitable[int]]
S3_READ_BYTES = 256 * 1024  # per body read: what a socket read gives at most, so nothing is joined
# http: a piece is fetched as concurrent parts of this size: servers often cap each connection's rate
# (benchmarks/README.md, Design measurements).
HTTP_PART_BYTES = 4 * 2**20
# a smaller range (a piece of the first batch, cut finer so that it arrives sooner) still gets parts, down to 1 MB
PARTS_PER_RANGE = 4
MIN_PART_BYTES = 2**20
HTTP_PIECE_BYTES = 16 * 2**20  # four concurrent parts per piece: 16 threads make 64 connections
# s3: one GET per piece, each paying its first-byte latency and a request fee: large ranges.
S3_PIECE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Streamer:
    """How to stream ranges of one filesystem: the coroutine, the part size (None: one request per range) and
    the piece size that suits it. S3 gets one request per range: it bills per request."""

    read_into: StreamInto
    part_bytes: Optional[int]
    piece_bytes: int

    def part_size(self, nbytes: int) -> int:
        """Bytes per request for a range of `nbytes`: about PARTS_PER_RANGE parts of at most part_bytes and,
        unless part_bytes is smaller, at least MIN_PART_BYTES; the whole range if the filesystem wants no parts."""
        if self.part_bytes is None:
            return max(1, nbytes)
        return max(1, min(self.part_bytes, max(MIN_PART_BYTES, -(-nbytes // PARTS_PER_RANGE))))


def stream_reader(fs: Any) -> Optional[Streamer]:
    """The streaming read for this filesystem, or None if it has none (then use `cat_file`)."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if not getattr(fs, "async_impl", False):
        return None
    if "http" in protocols and hasattr(fs, "set_session") and hasattr(fs, "encode_url"):
        return Streamer(_http_into, HTTP_PART_BYTES, HTTP_PIECE_BYTES)
    if "s3" in protocols and hasattr(fs, "_call_s3") and hasattr(fs, "split_path"):
        return Streamer(_s3_into, None, S3_PIECE_BYTES)
    return None


_CONTENT_RANGE = re.compile(r"bytes (\d{1,20})-(\d{1,20})/(\d{1,20}|\*)")


def checked_range(where: str, content_range: Optional[str], start: int, length: int) -> Tuple[int, Optional[int]]:
    """(bytes the answer holds, the file's total size) from a 206 answer's Content-Range, after checking that it
    is the range asked, or its part before the end of the file; any other range is a transient ShortReadError."""
    match = _CONTENT_RANGE.fullmatch((content_range or "").strip())
    if match is None:
        raise ShortReadError(f"{where}: a 206 answer without a valid Content-Range ({str(content_range)[:80]!r})")
    first, last = int(match[1]), int(match[2])
    total = None if match[3] == "*" else int(match[3])
    asked_last = start + length - 1
    at_end = total is not None and last == total - 1
    if first != start or last < first or last > asked_last or (last < asked_last and not at_end):
        raise ShortReadError(f"{where}: the answer holds bytes {first}-{last}/{match[3]}, not the range asked")
    return last - first + 1, total


def _check_encoding(where: str, encoding: Optional[str]) -> None:
    """A compressed answer to a range request: its bytes are not the file's bytes (permanent)."""
    if encoding not in (None, "", "identity"):
        raise ReadFailedError(f"{where}: the server compressed a range answer ({encoding[:40]}): refused")


def _append(out: memoryview, filled: int, chunk: bytes, where: str) -> int:
    """Copy a chunk of the body after the `filled` bytes already in `out`; refuse a body longer than expected."""
    end = filled + len(chunk)
    if end > len(out):
        raise ShortReadError(f"{where}: the answer is longer than the {len(out)} bytes expected")
    out[filled:end] = chunk
    return end


async def _http_into(fs: Any, url: str, start: int, out: memoryview, context: ReadContext) -> int:
    """GET bytes [start, start + len(out)) of `url` into `out`, checked; the number of bytes received."""
    where = f"{url} bytes [{start}, {start + len(out)})"
    kwargs = dict(fs.kwargs)
    headers = dict(kwargs.pop("headers", None) or {})
    headers.update({"Range": f"bytes={start}-{start + len(out) - 1}", "Accept-Encoding": "identity"})
    async with Watchdog(context.timeout, where) as watchdog:
        session = await fs.set_session()
        async with session.get(fs.encode_url(url), headers=headers, **kwargs) as response:
            expected, total = _http_answer(where, response, start, len(out))
            context.identities.observe(url, FileIdentity(total, _http_version(response.headers)), url)
            body, filled = out[:expected], 0
            async for chunk in response.content.iter_any():  # chunks as received: no joining
                filled = _append(body, filled, chunk, where)
                watchdog.progress(len(chunk))
            return filled


def _http_answer(where: str, response: Any, start: int, length: int) -> Tuple[int, Optional[int]]:
    """(bytes the body must hold, the file's size if told), after checking status, range, length and encoding."""
    if response.status == 404:
        raise FileNotFoundError(where)
    response.raise_for_status()
    _check_encoding(where, response.headers.get("Content-Encoding"))
    content_length = response.content_length
    if response.status == 206:
        expected, total = checked_range(where, response.headers.get("Content-Range"), start, length)
    elif start == 0 and content_length is not None and content_length <= length:
        expected, total = content_length, content_length  # the whole file, smaller than the range asked
    else:
        raise ReadFailedError(f"{where}: status {response.status} to a range request: the server ignores Range")
    if content_length is not None and content_length != expected:
        raise ShortReadError(f"{where}: Content-Length {content_length} for a range of {expected} bytes")
    return expected, total


def _http_version(headers: Any) -> Optional[str]:
    """The version tag an http answer carries: its ETag, else its Last-Modified date."""
    tag = headers.get("ETag") or headers.get("Last-Modified")
    return None if tag is None else str(tag)


async def _s3_into(fs: Any, path: str, start: int, out: memoryview, context: ReadContext) -> int:
    """GetObject with a Range into `out`, checked, through s3fs's client (its error translation included).

    `_call_s3` is private s3fs API: the one public way (`open`) adds a HEAD and read-ahead per read."""
    where = f"s3://{path} bytes [{start}, {start + len(out)})"
    bucket, key, version = fs.split_path(path)
    version_kw = {"VersionId": version} if version else {}
    async with Watchdog(context.timeout, where) as watchdog:
        response = await fs._call_s3(  # pylint: disable=protected-access
            "get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{start + len(out) - 1}", **version_kw
        )
        body = response["Body"]
        try:
            expected, total = _s3_answer(where, response, start, len(out))
            context.identities.observe(path, FileIdentity(total, response.get("ETag")), path)
            target, filled = out[:expected], 0
            while chunk := await body.read(S3_READ_BYTES):
                filled = _append(target, filled, chunk, where)
                watchdog.progress(len(chunk))
            return filled
        finally:
            body.close()


def _s3_answer(where: str, response: Any, start: int, length: int) -> Tuple[int, Optional[int]]:
    """(bytes the body must hold, the object's size), after checking ContentRange and ContentLength (S3 returns the
    stored bytes whatever ContentEncoding the object carries)."""
    content_length = response.get("ContentLength")
    if response.get("ContentRange"):
        expected, total = checked_range(where, response["ContentRange"], start, length)
    elif start == 0 and isinstance(content_length, int) and content_length <= length:
        expected, total = content_length, content_length
    else:
        raise ReadFailedError(f"{where}: an answer without ContentRange to a range request")
    if isinstance(content_length, int) and content_length != expected:
        raise ShortReadError(f"{where}: ContentLength {content_length} for a range of {expected} bytes")
    return expected, total
