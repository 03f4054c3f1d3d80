"""Fault configuration, seeded fault decisions and request statistics shared by the loopback test servers."""

from __future__ import annotations

import enum
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

SMALL_REQUEST_BYTES = 4096


class FaultKind(str, enum.Enum):
    """The kinds of injected faults; also the keys of ``ServerStats.faults``."""

    ERROR_500 = "error_500"
    ERROR_503 = "error_503"
    STATUS_429 = "status_429"
    RESET = "reset"
    TRUNCATE = "truncate"
    SHORT_206 = "short_206"
    ALWAYS_FAIL = "always_fail"


STATUS_OF_FAULT = {
    FaultKind.ERROR_500: 500,
    FaultKind.ERROR_503: 503,
    FaultKind.STATUS_429: 429,
    FaultKind.ALWAYS_FAIL: 503,
}
BODY_FAULTS = frozenset({FaultKind.RESET, FaultKind.TRUNCATE})


@dataclass
class FaultConfig:
    """What a test server should break, and how often (each rate is a probability per request).

    ``error_rate`` answers 500 or 503 (picked at random), ``status_429_rate`` answers 429, ``reset_rate`` sends the
    headers and half the body then resets the TCP connection, ``truncate_rate`` sends the full Content-Length but
    only half the body then closes cleanly, ``short_206_rate`` answers a self-consistent 206 covering half the asked
    range. ``fault_small_requests=False`` spares responses under 4096 body bytes (HEAD counts as 0 bytes).
    ``always_fail`` answers 503 to every GET/HEAD. ``paths_only`` limits faults to URL paths containing it.
    """

    error_rate: float = 0.0
    reset_rate: float = 0.0
    truncate_rate: float = 0.0
    short_206_rate: float = 0.0
    status_429_rate: float = 0.0
    fault_small_requests: bool = True
    always_fail: bool = False
    seed: int = 0
    paths_only: str | None = None


@dataclass(frozen=True)
class ResponsePlan:
    """What the server is about to answer, as far as fault decisions need to know."""

    path: str
    body_len: int
    is_head: bool = False
    is_partial: bool = False
    exempt: bool = False  # listings and error answers: only ``always_fail`` applies


class FaultInjector:
    """Draws fault decisions from one ``random.Random(seed)`` under a lock, so sequential runs are reproducible."""

    def __init__(self, config: FaultConfig | None) -> None:
        """Keep the config (None means never fault) and seed the generator."""
        self.config = config
        self._rng = random.Random(config.seed if config else 0)
        self._lock = threading.Lock()

    def decide(self, plan: ResponsePlan) -> FaultKind | None:
        """Return the fault to inject into the planned response, or None to answer it normally."""
        config = self.config
        if config is None:
            return None
        if config.always_fail:
            return FaultKind.ALWAYS_FAIL
        if plan.exempt or (config.paths_only is not None and config.paths_only not in plan.path):
            return None
        sent_bytes = 0 if plan.is_head else plan.body_len
        if not config.fault_small_requests and sent_bytes < SMALL_REQUEST_BYTES:
            return None
        kind = self._draw(config)
        return kind if kind is not None and _applies(kind, plan) else None

    def _draw(self, config: FaultConfig) -> FaultKind | None:
        """Pick a fault kind by walking the cumulative rates with one uniform draw."""
        with self._lock:
            draw = self._rng.random()
            coin = self._rng.random()
        error = FaultKind.ERROR_500 if coin < 0.5 else FaultKind.ERROR_503
        threshold = 0.0
        for kind, rate in (
            (error, config.error_rate),
            (FaultKind.STATUS_429, config.status_429_rate),
            (FaultKind.RESET, config.reset_rate),
            (FaultKind.TRUNCATE, config.truncate_rate),
            (FaultKind.SHORT_206, config.short_206_rate),
        ):
            threshold += rate
            if draw < threshold:
                return kind
        return None


def _applies(kind: FaultKind, plan: ResponsePlan) -> bool:
    """Tell whether a fault kind can be played on the planned response (body faults need a body to cut)."""
    if kind in BODY_FAULTS:
        return not plan.is_head and plan.body_len > 0
    if kind is FaultKind.SHORT_206:
        return plan.is_partial and plan.body_len >= 2
    return True


@dataclass
class ServerStats:
    """Thread-safe counters of one server: requests by method, body bytes sent and faults by kind."""

    requests: int = 0
    get_requests: int = 0
    head_requests: int = 0
    bytes_sent: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_request(self, method: str) -> None:
        """Count one request of the given HTTP method."""
        with self._lock:
            self.requests += 1
            self.get_requests += method == "GET"
            self.head_requests += method == "HEAD"

    def count_bytes(self, n: int) -> None:
        """Count body bytes written to a client."""
        with self._lock:
            self.bytes_sent += n

    def count_fault(self, kind: FaultKind) -> None:
        """Count one injected fault."""
        with self._lock:
            self.faults[kind] += 1

    def reset(self) -> None:
        """Zero every counter in place."""
        with self._lock:
            self.requests = self.get_requests = self.head_requests = self.bytes_sent = 0
            self.faults.clear()
