"""Client settings for http(s) and s3: connection pools as large as the requests the library keeps in flight,
timeouts, and the clients' own retries turned off, so that the library's retry policy is the only retry loop and
its documented worst case (attempts x (timeout + back-off)) holds. The user's own settings always win.
"""

from typing import Any, Dict

import fsspec

MAX_CONNECTIONS = 256  # requests in flight at once (header reads; data reads use at most 16 pieces x 4 parts)


def pooled_http_client(timeout: float) -> Any:
    """A `get_client` for fsspec's http: an aiohttp session with MAX_CONNECTIONS connections and socket timeouts
    (unless `client_kwargs` brings its own connector or timeout)."""

    async def get_client(**client_kwargs: Any) -> Any:
        import aiohttp  # pylint: disable=import-outside-toplevel  # only http reads need it (an optional extra)

        client_kwargs.setdefault("connector", aiohttp.TCPConnector(limit=MAX_CONNECTIONS))
        client_kwargs.setdefault("timeout", _aiohttp_timeout(timeout))
        return aiohttp.ClientSession(**client_kwargs)

    return get_client


def client_options(protocol: str, options: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """The storage options for `protocol`, completed with the pool, the timeouts and no client-side retries."""
    if protocol in ("http", "https") and "get_client" not in options:
        return {**options, "get_client": pooled_http_client(timeout)}
    if protocol in ("s3", "s3a"):
        defaults = {
            "max_pool_connections": MAX_CONNECTIONS,
            "connect_timeout": timeout,
            "read_timeout": timeout,
            "retries": {"total_max_attempts": 1},
        }
        return {**options, "config_kwargs": {**defaults, **(options.get("config_kwargs") or {})}}
    if protocol in ("gs", "gcs"):
        return {
            **options,
            "session_kwargs": {"timeout": _aiohttp_timeout(timeout), **options.get("session_kwargs", {})},
        }
    return options


def _aiohttp_timeout(timeout: float) -> Any:
    """aiohttp's socket timeouts: connecting, and waiting for the next bytes (not a total, which a large slow but
    progressing read would exceed)."""
    import aiohttp  # pylint: disable=import-outside-toplevel  # only remote reads need it (an optional extra)

    return aiohttp.ClientTimeout(sock_connect=timeout, sock_read=timeout)


def tuned_filesystem(fs: fsspec.AbstractFileSystem) -> fsspec.AbstractFileSystem:
    """The filesystem with its own retry loop turned off where it has one (s3fs retries 5 times by default, with
    back-off, inside each of the library's attempts)."""
    if "s3" in (fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)) and hasattr(fs, "retries"):
        fs.retries = 1  # s3fs.S3FileSystem.retries: the attempts of its own _error_wrapper
    return fs
