"""Which module knows a protocol family: its client settings, its tuning and its streamed range reads. A protocol
not listed here is read through fsspec's `cat_file`, with the library's retries around it."""

from types import ModuleType
from typing import Any, Dict, Optional

import fsspec

from . import gcs, http, s3
from .remote import Streamer

FAMILIES = (
    http,
    s3,
    gcs,
)  # each module: NAMES, client_options(options, timeout), optional tune(fs, timeout), streamer(fs)


def family(protocol: str) -> Optional[ModuleType]:
    """The module of the protocol's family, or None for the protocols read by `cat_file` alone."""
    return next((module for module in FAMILIES if protocol in module.NAMES), None)


def client_options(protocol: str, options: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """The user's storage options completed with the family's settings (the user's own always win)."""
    module = family(protocol)
    return options if module is None else dict(module.client_options(options, timeout))


def tuned(protocol: str, fs: fsspec.AbstractFileSystem, timeout: float) -> fsspec.AbstractFileSystem:
    """The filesystem after its family's tuning (client-side retries off, its own waits bounded), if it has any."""
    module = family(protocol)
    tune = getattr(module, "tune", None)
    return fs if tune is None else tune(fs, timeout)


def streamer(protocol: str, fs: fsspec.AbstractFileSystem) -> Optional[Streamer]:
    """How the family streams ranges into arrays, or None (then `cat_file`)."""
    module = family(protocol)
    make = getattr(module, "streamer", None)
    return None if make is None else make(fs)
