"""GCS through gcsfs: the same aiohttp socket timeouts as http, set per request (gcsfs passes its own
`requests_timeout` to every request, and None there means no timeout at all), gcsfs's 6 retries per call off (the
library's retry policy is the only loop), and its bucket-type probe (gRPC, 60 s of its own retries) bounded by the
timeout. Reads go through `cat_file`, bounded as a whole by remote.py's deadline."""

import asyncio
import logging
from typing import Any, Dict

import fsspec

from .http import aiohttp_timeout

NAMES = ("gs", "gcs")
logger = logging.getLogger("embedding_reader")


def client_options(options: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """The storage options with socket timeouts on each of gcsfs's requests and on its session, and the bucket
    probe's retries bounded by `timeout`, under what the user set."""
    session = {"timeout": aiohttp_timeout(timeout), **(options.get("session_kwargs") or {})}
    defaults = {"requests_timeout": aiohttp_timeout(timeout), "retry_timeout": timeout}
    return {**defaults, **options, "session_kwargs": session}


def tune(fs: fsspec.AbstractFileSystem, timeout: float) -> fsspec.AbstractFileSystem:
    """One attempt per gcsfs request, and its bucket-type probe bounded by `timeout`."""
    return _bounded_probe(_single_attempt(fs), timeout)


def _single_attempt(fs: fsspec.AbstractFileSystem) -> fsspec.AbstractFileSystem:
    """gcsfs's `_request` is wrapped in a 6-attempt retry decorator when its class is defined: this filesystem gets
    the undecorated method (tests/test_remote_limits.py fails if gcsfs drops it)."""
    undecorated = getattr(getattr(type(fs), "_request", None), "__wrapped__", None)
    if undecorated is not None:
        fs._request = undecorated.__get__(fs)  # pylint: disable=protected-access
    return fs


def _bounded_probe(fs: Any, timeout: float) -> Any:
    """gcsfs 2026.10 asks the bucket's type over gRPC before reads and listings (its first connection to a stalled
    endpoint waits about 20 s whatever its own retry deadline): after `timeout` s the type is taken as unknown,
    which is what gcsfs itself does on a failed probe (plain JSON API requests), and that bucket is not probed
    again by this filesystem, so a stalled endpoint costs one probe, not one per attempt."""
    probe = getattr(fs, "_get_bucket_type", None)
    try:
        from gcsfs.extended_gcsfs import BucketType  # pylint: disable=import-outside-toplevel
    except ImportError:
        return fs
    if probe is None:
        return fs

    timed_out = set()

    async def bounded(bucket: str) -> Any:
        if bucket in timed_out:
            return BucketType.UNKNOWN
        try:
            return await asyncio.wait_for(probe(bucket), timeout)
        except asyncio.TimeoutError:
            timed_out.add(bucket)
            logger.debug("gs://%s: no bucket type after %g s (timeout), read as a plain bucket", bucket, timeout)
            return BucketType.UNKNOWN

    fs._get_bucket_type = bounded  # pylint: disable=protected-access
    return fs
