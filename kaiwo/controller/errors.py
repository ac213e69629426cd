"""Error policy of the controller: temporary errors are retried with backoff, permanent ones are
reported and the controller moves on (DESIGN.md, "The controller": errors carry policy).

Every API call the controller makes goes through :func:`classify`, which sorts a failure into

* ``RETRY``     -- the API server or the network failed us (timeouts, connection resets, 429,
                   5xx): the same request may well succeed later, so it is retried with exponential
                   backoff and jitter, honouring ``Retry-After``;
* ``CONFLICT``  -- 409: the object changed under us (optimistic concurrency), already exists, or a
                   pod is already bound. Only the caller knows what that means (re-read and compare,
                   adopt, or give up), so :func:`call_with_retry` hands it back;
* ``GONE``      -- 404 or 410: the object (or the version we watched from) no longer exists;
* ``PERMANENT`` -- anything else (400, 401, 403, 415, 422, programming errors): retrying cannot
                   help; the error is reported (log, metric, Event) and the work item is dropped.

Retrying is bounded (attempts and a deadline) and interruptible: the wait is an
:class:`threading.Event` wait, so a stopping controller does not sit out a backoff.
"""
from __future__ import annotations

import enum
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

T = TypeVar("T")

#: HTTP statuses worth retrying as is: timeouts, rate limiting, server-side failures.
RETRY_STATUSES = frozenset({0, 408, 425, 429, 500, 502, 503, 504})


class Disposition(enum.Enum):
    """What to do about a failed API call (see the module docstring)."""

    RETRY = "retry"
    CONFLICT = "conflict"
    GONE = "gone"
    PERMANENT = "permanent"


class ControllerError(Exception):
    """An API operation the controller gave up on.

    Parameters
    ----------
    operation : str
        What was attempted, e.g. ``bind default/train-0 to node-3``.
    cause : BaseException
        The last failure.
    disposition : Disposition
        How that failure was classified.
    attempts : int
        Calls made.
    """

    def __init__(self, operation: str, cause: BaseException, disposition: Disposition, attempts: int = 1):
        self.operation = operation
        self.cause = cause
        self.disposition = disposition
        self.attempts = attempts
        super().__init__(f"{operation}: {describe(cause)} ({disposition.value}, {attempts} attempt"
                         f"{'s' if attempts != 1 else ''})")

    @property
    def status(self) -> int | None:
        """HTTP status of the last failure, if it was an API answer."""
        return getattr(self.cause, "status", None)


class StoppedError(Exception):
    """The controller is stopping; pending retries were abandoned."""


class NotLeaderError(Exception):
    """A write was about to start on a replica that no longer holds the leader lease; classified
    PERMANENT, so a retry loop ends at once instead of writing on as a deposed leader."""


def status_of(exc: BaseException) -> int | None:
    """HTTP status of an ``ApiException`` (or anything with an integer ``status``), else None."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def describe(exc: BaseException) -> str:
    """A one-line description: the API's own message for ``ApiException``, else the exception."""
    status = status_of(exc)
    if status is not None:
        reason = getattr(exc, "reason", None) or ""
        body = getattr(exc, "body", None)
        message = ""
        if body:
            try:
                import json

                message = json.loads(body).get("message", "")
            except (ValueError, AttributeError, TypeError):
                message = str(body)[:200]
        return f"HTTP {status} {reason}".rstrip() + (f": {message}" if message else "")
    return f"{type(exc).__name__}: {exc}"


def classify(exc: BaseException) -> Disposition:
    """Sort a failure into :class:`Disposition` (see the module docstring)."""
    status = status_of(exc)
    if status is not None:
        if status == 409:
            return Disposition.CONFLICT
        if status in (404, 410):
            return Disposition.GONE
        if status in RETRY_STATUSES or status >= 500:
            return Disposition.RETRY
        return Disposition.PERMANENT
    try:
        import urllib3.exceptions as u3

        network = (u3.HTTPError,)  # timeouts, protocol errors, connection failures, pool errors
    except ImportError:  # pragma: no cover - urllib3 ships with the kubernetes client
        network = ()
    if isinstance(exc, (*network, ConnectionError, socket.timeout, TimeoutError)):
        return Disposition.RETRY
    return Disposition.PERMANENT


def retry_after(exc: BaseException) -> float | None:
    """Seconds from a ``Retry-After`` header (429/503 answers), if there is one."""
    headers = getattr(exc, "headers", None)
    if not headers:
        return None
    try:
        value = headers.get("Retry-After")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and by a deadline.

    Parameters
    ----------
    attempts : int
        Calls at most (the first included).
    initial, maximum : float
        First backoff and the cap, in seconds.
    factor : float
        Growth per attempt.
    deadline : float
        Seconds after the first call when no further attempt starts.
    seed : int | None
        Seed of the jitter (tests use one so the waits are reproducible).
    """

    attempts: int = 6
    initial: float = 0.05
    maximum: float = 5.0
    factor: float = 2.0
    deadline: float = 60.0
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self):
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts = {self.attempts}: must be at least 1")
        if self.initial < 0 or self.maximum < self.initial or self.factor < 1:
            raise ValueError(f"RetryPolicy: need 0 <= initial <= maximum and factor >= 1 "
                             f"(initial={self.initial}, maximum={self.maximum}, factor={self.factor})")
        self._rng = random.Random(self.seed)

    def backoff(self, attempt: int) -> float:
        """Wait before attempt ``attempt + 1`` (``attempt`` >= 1): full jitter, so a crowd of
        retrying workers spreads out instead of hitting the server in lockstep."""
        cap = min(self.maximum, self.initial * self.factor ** (attempt - 1))
        with self._lock:
            return self._rng.uniform(cap / 2, cap)


def call_with_retry(fn: Callable[[], T], operation: str, policy: RetryPolicy,
                    stop: threading.Event | None = None,
                    on_error: Callable[[BaseException, Disposition], None] | None = None) -> T:
    """Call ``fn`` until it succeeds, retrying only ``RETRY`` failures.

    Parameters
    ----------
    fn : callable
        The API call.
    operation : str
        Description for errors and logs.
    policy : RetryPolicy
        Attempts, backoff and deadline.
    stop : threading.Event, optional
        Set when the controller stops; the backoff wait ends early and :class:`StoppedError` is
        raised.
    on_error : callable, optional
        Called with every failure and its disposition (metrics, logs).

    Returns
    -------
    Whatever ``fn`` returns.

    Raises
    ------
    ControllerError
        On a CONFLICT, GONE or PERMANENT failure (at once), or when the RETRY budget is spent. The
        caller decides what a conflict means.
    StoppedError
        When ``stop`` is set while waiting.
    """
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below; nothing is swallowed
            disposition = classify(exc)
            if on_error is not None:
                on_error(exc, disposition)
            if disposition is not Disposition.RETRY:
                raise ControllerError(operation, exc, disposition, attempt) from exc
            if attempt >= policy.attempts or time.monotonic() - start >= policy.deadline:
                raise ControllerError(operation, exc, disposition, attempt) from exc
            wait = retry_after(exc)
            wait = policy.backoff(attempt) if wait is None else min(wait, policy.maximum)
            if stop is not None:
                if stop.wait(wait):
                    raise StoppedError(operation) from exc
            else:
                time.sleep(wait)
