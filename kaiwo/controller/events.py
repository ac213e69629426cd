"""Kubernetes Events: what the controller tells users about their pods, queues and jobs.

Events are written as ``core/v1`` Events (``kubectl describe`` and ``kubectl get events`` show
them) from a small thread pool, so a slow API server delays no binding. They are best effort: two
attempts, then a log line -- an Event is never worth holding up scheduling.

Repeated events are throttled per (object, reason): a pod that stays unschedulable for an hour gets
one ``FailedScheduling`` per interval (the latest reason), not one per cycle, which is what keeps a
1-second cycle from flooding etcd.
"""
from __future__ import annotations

import concurrent.futures as cf
import datetime
import logging
import threading
import time
from typing import Callable

from .errors import ControllerError, RetryPolicy, StoppedError, call_with_retry

log = logging.getLogger("kaiwo.controller.events")

NORMAL, WARNING = "Normal", "Warning"
MAX_MESSAGE = 1024      #: kube-apiserver refuses longer event messages
MAX_NAME = 253


def rfc3339(ts: float | None = None) -> str:
    """Seconds since the epoch as the RFC 3339 UTC time Kubernetes writes."""
    dt = datetime.datetime.fromtimestamp(time.time() if ts is None else ts, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_ref(obj: dict) -> dict:
    """``involvedObject`` of a Pod object."""
    meta = obj.get("metadata") or {}
    return {"apiVersion": "v1", "kind": "Pod", "namespace": meta.get("namespace") or "default",
            "name": meta.get("name"), "uid": meta.get("uid")}


def custom_ref(kind: str, obj: dict) -> dict:
    """``involvedObject`` of a KaiwoQueue or KaiwoJob."""
    meta = obj.get("metadata") or {}
    ref = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": kind, "name": meta.get("name"), "uid": meta.get("uid")}
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return ref


class EventRecorder:
    """Writes Events asynchronously, throttled per (object, reason).

    Parameters
    ----------
    api : kaiwo.controller.api.KubeApi
    component : str
        ``source.component`` / ``reportingComponent`` (``kaiwo``).
    instance : str
        ``reportingInstance``: this replica's identity.
    stop : threading.Event
        Ends retries early when the controller stops.
    workers : int
        Threads writing events.
    clock : callable
        Monotonic clock for the throttling.
    """

    def __init__(self, api, component: str = "kaiwo", instance: str = "", stop: threading.Event | None = None,
                 workers: int = 2, clock: Callable[[], float] = time.monotonic):
        self.api = api
        self.component = component
        self.instance = instance
        self.stop = stop or threading.Event()
        self.clock = clock
        self._pool = cf.ThreadPoolExecutor(workers, thread_name_prefix="kaiwo-events")
        self._last: dict[tuple, float] = {}
        self._lock = threading.Lock()
        self._futures: set[cf.Future] = set()
        self._seq = 0
        self.policy = RetryPolicy(attempts=2, initial=0.1, maximum=0.5, deadline=5.0)
        self.written = 0
        self.failed = 0

    def emit(self, ref: dict, type_: str, reason: str, message: str, throttle: float = 0.0) -> bool:
        """Queue one Event; returns False if it was throttled.

        Parameters
        ----------
        ref : dict
            ``involvedObject`` (see :func:`pod_ref`, :func:`custom_ref`).
        type_ : str
            ``Normal`` or ``Warning``.
        reason : str
            CamelCase reason (``Scheduled``, ``FailedScheduling``...).
        message : str
            Human text (cut to 1,024 characters).
        throttle : float
            Seconds during which another event with the same object and reason is dropped.
        """
        key = (ref.get("kind"), ref.get("namespace"), ref.get("name"), ref.get("uid"), reason)
        now = self.clock()
        with self._lock:
            if throttle > 0:
                last = self._last.get(key)
                if last is not None and now - last < throttle:
                    return False
            self._last[key] = now
            self._seq += 1
            seq = self._seq
            if len(self._last) > 100_000:  # forget the oldest half (objects long gone)
                for k, _ in sorted(self._last.items(), key=lambda kv: kv[1])[:50_000]:
                    del self._last[k]
        body = self._body(ref, type_, reason, message, seq)
        fut = self._pool.submit(self._write, body)
        with self._lock:
            self._futures.add(fut)
        fut.add_done_callback(self._done)
        return True

    def forget(self, ref: dict, reason: str) -> None:
        """Let the next event with this object and reason through at once (its cause changed)."""
        key = (ref.get("kind"), ref.get("namespace"), ref.get("name"), ref.get("uid"), reason)
        with self._lock:
            self._last.pop(key, None)

    def _done(self, fut: cf.Future) -> None:
        with self._lock:
            self._futures.discard(fut)

    def _body(self, ref: dict, type_: str, reason: str, message: str, seq: int) -> dict:
        ns = ref.get("namespace") or "default"  # events of cluster-scoped objects live in default
        stamp = f"{time.time_ns():x}{seq:x}"
        name = f"{(ref.get('name') or 'kaiwo')[:MAX_NAME - len(stamp) - 1]}.{stamp}"
        now = rfc3339()
        return {"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {k: v for k, v in ref.items() if v},
                "reason": reason, "message": message[:MAX_MESSAGE], "type": type_,
                "source": {"component": self.component},
                "reportingComponent": self.component, "reportingInstance": self.instance or self.component,
                "firstTimestamp": now, "lastTimestamp": now, "count": 1}

    def _write(self, body: dict) -> None:
        ns = body["metadata"]["namespace"]
        try:
            call_with_retry(lambda: self.api.create_event(ns, body),
                            f"event {body['reason']} for {body['involvedObject'].get('name')}",
                            self.policy, self.stop)
            self.written += 1
        except (ControllerError, StoppedError) as e:
            self.failed += 1
            log.info("event not written: %s", e)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for queued events; True if all were written (or failed) in time."""
        with self._lock:
            futures = list(self._futures)
        done, not_done = cf.wait(futures, timeout=timeout)
        return not not_done

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
