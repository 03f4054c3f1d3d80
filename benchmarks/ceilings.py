"""The machine's ceilings over the same files: raw reads into a preallocated array, pyarrow decode, raw fetch.

Each function returns the seconds its timed region took; setup (allocation, header parsing) is untimed.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

SEGMENT_BYTES = 64 * 2**20


def npy_data_range(path: str) -> tuple[int, int]:
    """Return (offset, length) of the array data of a local .npy file."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        return f.tell(), int(np.prod(shape)) * np.dtype(dtype).itemsize


def byte_ranges(paths: list[str]) -> list[tuple[str, int, int]]:
    """(path, offset, length) of the bytes to read per file: the array data of npy files, whole other files."""
    ranges = []
    for path in paths:
        if path.endswith(".npy"):
            ranges.append((path, *npy_data_range(path)))
        else:
            ranges.append((path, 0, os.path.getsize(path)))
    return ranges


def _segments(ranges: list[tuple[str, int, int]]) -> list[tuple[str, int, int, int]]:
    """Split the ranges into (path, file offset, length, destination offset) segments of at most 64 MiB."""
    segments, dest = [], 0
    for path, offset, length in ranges:
        for lo in range(0, length, SEGMENT_BYTES):
            size = min(SEGMENT_BYTES, length - lo)
            segments.append((path, offset + lo, size, dest + lo))
        dest += length
    return segments


def _read_segments(segments: list[tuple[str, int, int, int]], view: memoryview) -> None:
    """Read segments with positional readinto (os.preadv) straight into their slice of view."""
    fds: dict[str, int] = {}
    try:
        for path, offset, size, dest in segments:
            fd = fds.get(path)
            if fd is None:
                fd = fds[path] = os.open(path, os.O_RDONLY)
            done = 0
            while done < size:
                n = os.preadv(fd, [view[dest + done : dest + size]], offset + done)
                if n <= 0:
                    raise OSError(f"short read in {path}")
                done += n
    finally:
        for fd in fds.values():
            os.close(fd)


def readinto(paths: list[str], threads: int, pretouch: bool = True) -> float:
    """Seconds to read the files' bytes into one preallocated array with `threads` threads.

    With pretouch the array's pages are faulted in before the clock starts (the pure copy ceiling);
    without, the read also pays for first-touch page faults, as a reader allocating fresh batches does.
    """
    ranges = byte_ranges(paths)
    total = sum(length for _, _, length in ranges)
    buffer = np.empty(total, dtype=np.uint8)
    if pretouch:
        buffer.fill(0)
    view = memoryview(buffer).cast("B")
    segments = _segments(ranges)
    started = time.perf_counter()
    if threads <= 1:
        _read_segments(segments, view)
    else:
        parts = [segments[k::threads] for k in range(threads)]
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda part: _read_segments(part, view), parts))
    return time.perf_counter() - started


def cast_float32(paths: list[str], threads: int) -> float:
    """Seconds for numpy to cast the npy files' values to float32, all cores, source already in memory.

    No read at all, into a pretouched array: what a float16 -> float32 read costs through numpy's cast,
    which converts one value at a time (0.6 to 1 GB/s of float16 per core here); the project's own cast
    (embedding_reader/casts.py) is about twice as fast.
    """
    arrays = [np.load(path, mmap_mode="r") for path in paths]
    sources = [np.array(array) for array in arrays]  # in memory, untimed
    outputs = [np.empty(source.shape, dtype=np.float32) for source in sources]
    for out in outputs:
        out.fill(0)
    blocks = [(k, lo) for k, source in enumerate(sources) for lo in range(0, len(source), 4096)]

    def cast(part: list[tuple[int, int]]) -> None:
        for k, lo in part:
            np.copyto(outputs[k][lo : lo + 4096], sources[k][lo : lo + 4096], casting="unsafe")

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(cast, [blocks[k::threads] for k in range(threads)]))
    return time.perf_counter() - started


def _decode_parquet(path: str, column: str) -> int:
    """Decode one parquet file's embedding column to a 2-D float numpy array; return its row count."""
    import pyarrow.parquet as pq  # imported (untimed) by pyarrow_decode first

    table = pq.read_table(path, columns=[column], use_threads=True)
    rows = 0
    for chunk in table.column(column).chunks:
        values = chunk.flatten().to_numpy(zero_copy_only=False)
        rows += values.reshape(len(chunk), -1).shape[0]
    return rows


def pyarrow_decode(paths: list[str], column: str = "embedding", threads: int | None = None) -> float:
    """Seconds for pyarrow to decode the embedding column of every file to numpy, files spread over all cores."""
    import pyarrow.dataset  # noqa: F401 - read_table's lazy imports, outside the timed region
    import pyarrow.parquet as pq

    pq.ParquetFile(paths[0]).read_row_group(0, columns=[column])  # warm up the decode path, untimed
    threads = threads or os.cpu_count() or 1
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda path: _decode_parquet(path, column), paths))
    return time.perf_counter() - started


def fsspec_fetch(urls: list[str], storage_options: dict[str, Any] | None = None) -> float:
    """Seconds for fsspec to fetch every remote file whole (concurrent `cat`): a client-side ceiling."""
    import fsspec

    fs, _ = fsspec.core.url_to_fs(urls[0], **(storage_options or {}))
    fs.info(urls[0])  # start the client (session, event loop) outside the timed region
    started = time.perf_counter()
    fs.cat(urls)
    return time.perf_counter() - started


def http_fetch_heads(urls: list[str], nbytes: int = 128, connections: int = 128) -> float:
    """Seconds for one aiohttp session to GET the first `nbytes` of every file (one ranged request each).

    The least a reader must do to read npy headers over HTTP: a ceiling for opening many small files.
    """
    import asyncio

    import aiohttp

    async def fetch_all() -> float:
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            headers = {"Range": f"bytes=0-{nbytes - 1}"}

            async def worker(todo: list[str]) -> None:
                for url in todo:
                    async with session.get(url, headers=headers) as response:
                        response.raise_for_status()
                        await response.read()

            await worker(urls[:1])  # start the session outside the timed region
            started = time.perf_counter()
            await asyncio.gather(*(worker(urls[k::connections]) for k in range(connections)))
            return time.perf_counter() - started

    return asyncio.run(fetch_all())


def open_read(paths: list[str], nbytes: int = 128) -> float:
    """Seconds for a bare loop of open() + read(nbytes) over every file, one thread: the floor of opening local files.

    An npy header is its first 128 bytes (np.save pads it so); a reader must also list the folder, which this
    does not count.
    """
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            f.read(nbytes)
    return time.perf_counter() - started
