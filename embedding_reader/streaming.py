"""Ranged reads that stream a response body into the caller's array, for http(s) and s3 through fsspec.

fsspec's `cat_file` joins the body into one new bytes object, which the reader then copies into the
batch: a second copy, and fresh memory (a page fault per 4 KiB, which on 2 cores cost more CPU than
the whole download). Here the body is copied chunk by chunk, as it arrives, into the batch array
itself. Errors are those `cat_file` raises (404 is FileNotFoundError, other statuses the client's
error), so retries treat both paths alike. Other filesystems keep `cat_file`.
"""

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

from .errors import ReadFailedError, ShortReadError

StreamInto = Callable[[Any, str, int, memoryview], Awaitable[int]]
S3_READ_BYTES = 256 * 1024  # per body read: what a socket read gives at most, so nothing is joined
# http: a piece is fetched as concurrent parts of this size. Servers often cap each connection's rate;
# measured by hand with 30 ms + 10 MB/s per connection, 4 MB parts read 0.35-0.39 GB/s, whole 16 MB pieces 0.24-0.26.
HTTP_PART_BYTES = 4 * 2**20
# a smaller range (a piece of the first batch, cut finer so that it arrives sooner) still gets parts, down to 1 MB
PARTS_PER_RANGE = 4
MIN_PART_BYTES = 2**20
HTTP_PIECE_BYTES = 16 * 2**20  # four concurrent parts per piece: 16 threads make 64 connections
# s3: one GET per piece. Each request pays its first-byte latency (tens of ms) and a request fee, and through moto a
# copy of the whole object; a 64 MB range at ~90 MB/s per connection spends about 95% of its time transferring.
S3_PIECE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Streamer:
    """How to stream ranges of one filesystem: the coroutine, the part size (None: one request per range) and
    the piece size that suits it.

    S3 gets one request per range: it bills per request, and measured through moto, 4 MB parts read at
    a third of the speed of whole pieces, 64 MB pieces at twice the speed of 16 MB ones.
    """

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


def _append(out: memoryview, filled: int, chunk: bytes, where: str) -> int:
    """Copy a chunk of the body after the `filled` bytes already in `out`; refuse a body longer than asked."""
    end = filled + len(chunk)
    if end > len(out):
        raise ShortReadError(f"{where}: the answer is longer than the {len(out)} bytes asked")
    out[filled:end] = chunk
    return end


async def _http_into(fs: Any, url: str, start: int, out: memoryview) -> int:
    """GET bytes [start, start + len(out)) of `url` into `out`; the number of bytes received."""
    kwargs = dict(fs.kwargs)
    headers = dict(kwargs.pop("headers", None) or {})
    headers["Range"] = f"bytes={start}-{start + len(out) - 1}"
    session = await fs.set_session()
    async with session.get(fs.encode_url(url), headers=headers, **kwargs) as response:
        if response.status == 404:
            raise FileNotFoundError(url)
        response.raise_for_status()
        if response.status != 206 and (start != 0 or (response.content_length or 0) > len(out)):
            raise ReadFailedError(
                f"{url} bytes [{start}, {start + len(out)}): status {response.status} to a range request: "
                "the server ignores Range"
            )
        filled = 0
        async for chunk in response.content.iter_any():  # chunks as received: no joining
            filled = _append(out, filled, chunk, url)
        return filled


async def _s3_into(fs: Any, path: str, start: int, out: memoryview) -> int:
    """GetObject with a Range into `out`, through s3fs's client (its error translation included)."""
    bucket, key, version = fs.split_path(path)
    version_kw = {"VersionId": version} if version else {}
    response = await fs._call_s3(  # pylint: disable=protected-access
        "get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{start + len(out) - 1}", **version_kw
    )
    body = response["Body"]
    try:
        filled = 0
        while chunk := await body.read(S3_READ_BYTES):
            filled = _append(out, filled, chunk, path)
        return filled
    finally:
        body.close()
