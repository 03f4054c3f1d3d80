"""GCS through gcsfs: the same aiohttp socket timeouts as http. gcsfs's own retries cannot be turned off per
filesystem (its retry count is fixed when its class is defined): see README, Faults."""

from typing import Any, Dict

from .http import aiohttp_timeout

NAMES = ("gs", "gcs")


def client_options(options: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """The storage options with socket timeouts on gcsfs's aiohttp session, under what the user set."""
    session = {"timeout": aiohttp_timeout(timeout), **(options.get("session_kwargs") or {})}
    return {**options, "session_kwargs": session}
