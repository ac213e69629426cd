"""Status the controller writes back: KaiwoQueue and KaiwoJob status, and pods it cannot place.

KaiwoQueue ``status`` (units as in ``kaiwo schedule --output json``: GPUs, CPU cores, MiB)::

    deserved:   {gpu, cpu, memory}   # quota the queue is owed, capped by its demand and limit
    fairShare:  {gpu, cpu, memory}   # deserved plus its share of what is left (H-DRF)
    allocated:  {gpu, cpu, memory}   # running pods plus this cycle's bindings
    # each with gpuModels: {MI300X: 8, ...} when some queue sets per-GPU-model amounts
    pendingPods: 3
    conditions: [{type: Valid, status: "True"|"False", reason, message, lastTransitionTime}]

KaiwoJob ``status``: ``phase`` (Pending, Running, Succeeded, Failed, Invalid), ``replicas``,
``minMembers``, counts of pods ``created``/``scheduled``/``running``/``succeeded``/``failed``/
``pending``, and conditions ``Valid`` and ``Scheduled`` (the gang's pending reason when it is not).

Pods: a pod left pending gets the ``PodScheduled=False`` condition (reason ``Unschedulable``, the
cycle's reason as message) and a ``FailedScheduling`` Event; a pod rejected for a malformed request
gets the same condition with the field, the value and why, and a ``FailedScheduling`` Event -- so it
stays visible in ``kubectl get pods`` / ``describe`` instead of silently waiting. Both are throttled
per pod (see :class:`StatusWriter`).

Every status is written only when it differs from what the object already shows (conditions keep
their ``lastTransitionTime`` while their status does not change), so a steady cluster causes no
writes. Status is written with JSON merge patches, which keep keys the patch does not mention: keys
the object shows that the new status no longer has (``deserved`` of a queue that became invalid)
are sent as ``null``, which deletes them, so the object ends up equal to the status computed. Writes run on a small pool of their own and are best effort: a failed status write is
logged and retried by a later cycle, because the next cycle recomputes it anyway.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from typing import Callable

from kaiwo_core.scheduling.gangs import LABEL_JOB

from .errors import ControllerError, Disposition, RetryPolicy, StoppedError, call_with_retry
from .events import WARNING, EventRecorder, custom_ref, pod_ref, rfc3339

log = logging.getLogger("kaiwo.controller.status")


def _condition(type_: str, ok: bool, reason: str, message: str, previous: list | None) -> dict:
    """A condition that keeps its lastTransitionTime while its status stays the same."""
    status = "True" if ok else "False"
    since = None
    for c in previous or []:
        if c.get("type") == type_ and c.get("status") == status:
            since = c.get("lastTransitionTime")
    return {"type": type_, "status": status, "reason": reason, "message": message[:1024],
            "lastTransitionTime": since or rfc3339()}


def _message(entry: dict) -> str | None:
    """An ``invalidQueues`` / ``invalidJobs`` entry as a condition or Event says it: the field,
    then the value and why (``spec.minMembers: 5: larger than spec.replicas (2)``)."""
    return f"{entry['field']}: {entry.get('error')}" if entry.get("field") else entry.get("error")


def queue_status(q: dict, error: str | None, previous: dict | None) -> dict:
    """Status of one KaiwoQueue from a ``Decisions.to_dict()["queues"]`` entry (None if the queue
    was rejected) and the error that rejected it."""
    prev_conditions = (previous or {}).get("conditions")
    if q is None:
        return {"conditions": [_condition("Valid", False, "InvalidQueue", error or "rejected", prev_conditions)]}
    return {"deserved": q["deserved"], "fairShare": q["fairShare"], "allocated": q["allocated"],
            "pendingPods": q["pendingPods"],
            "conditions": [_condition("Valid", True, "Accepted", "the queue is part of the tree",
                                      prev_conditions)]}


def job_status(job: dict, pods: list[dict], error: str | None, pending_reason: str | None,
               previous: dict | None) -> dict:
    """Status of one KaiwoJob from its pods (label ``kaiwo.ai/job``)."""
    spec = job.get("spec") or {}
    prev_conditions = (previous or {}).get("conditions")
    if error:
        return {"phase": "Invalid",
                "conditions": [_condition("Valid", False, "InvalidJob", error, prev_conditions)]}
    replicas = spec.get("replicas", 1)
    minimum = spec.get("minMembers", replicas)
    counts = {"created": len(pods), "scheduled": 0, "running": 0, "succeeded": 0, "failed": 0, "pending": 0}
    for p in pods:
        phase = (p.get("status") or {}).get("phase", "")
        bound = bool((p.get("spec") or {}).get("nodeName"))
        if phase == "Succeeded":
            counts["succeeded"] += 1
        elif phase == "Failed":
            counts["failed"] += 1
        elif bound:
            counts["scheduled"] += 1
            if phase == "Running":
                counts["running"] += 1
        else:
            counts["pending"] += 1
    if counts["succeeded"] >= replicas:
        phase = "Succeeded"
    elif replicas - counts["failed"] < minimum:
        phase = "Failed"
    elif counts["scheduled"] + counts["succeeded"] >= minimum:
        phase = "Running"
    else:
        phase = "Pending"
    scheduled = counts["scheduled"] + counts["succeeded"] + counts["failed"] >= minimum
    conditions = [
        _condition("Valid", True, "Accepted", "the job expands into a gang of pods", prev_conditions),
        _condition("Scheduled", scheduled, "GangScheduled" if scheduled else "Pending",
                   f"{counts['scheduled']} of the {minimum} members needed are bound" if scheduled
                   else (pending_reason or f"{counts['scheduled']} of the {minimum} members needed are bound"),
                   prev_conditions),
    ]
    return {"phase": phase, "replicas": replicas, "minMembers": minimum, **counts, "conditions": conditions}


def _same(a: dict | None, b: dict) -> bool:
    """Equal statuses (conditions carry their preserved transition times, so a steady state
    compares equal)."""
    return (a or {}) == b


class StatusWriter:
    """Writes queue, job and pod status, only when it changed, on its own small pool.

    Parameters
    ----------
    api : kaiwo.controller.api.KubeApi
    events : EventRecorder
    stop : threading.Event
    pod_interval : float
        Seconds between two ``FailedScheduling`` events (and condition updates) for one pod while
        its reason keeps changing; an unchanged reason is never written again.
    workers : int
        Threads writing status.
    """

    def __init__(self, api, events: EventRecorder, stop: threading.Event | None = None,
                 pod_interval: float = 60.0, workers: int = 4,
                 clock: Callable[[], float] = time.monotonic):
        self.api = api
        self.events = events
        self.stop = stop or threading.Event()
        self.pod_interval = pod_interval
        self.clock = clock
        self.policy = RetryPolicy(attempts=3, initial=0.1, maximum=1.0, deadline=10.0)
        self._pool = cf.ThreadPoolExecutor(workers, thread_name_prefix="kaiwo-status")
        self._lock = threading.Lock()
        self._futures: set[cf.Future] = set()
        self._written: dict[tuple, tuple] = {}    # (kind, key) -> (status last written, when)
        self.resync = 10.0
        self._pod_notes: dict[str, tuple] = {}    # pod uid -> (message, time written)
        self.failures = 0

    # ------------------------------------------------------------------------- queues/jobs
    def queues(self, queues: dict, doc: dict) -> None:
        """Status of every KaiwoQueue object from the cycle's ``to_dict()`` document."""
        by_name = {q["name"]: q for q in doc.get("queues", [])}
        errors = {e.get("kaiwoqueue"): _message(e) for e in doc.get("invalidQueues", [])}
        for name, obj in queues.items():
            status = queue_status(by_name.get(name), errors.get(name, "not part of the queue tree"),
                                  obj.get("status"))
            if by_name.get(name) is None:
                self.events.emit(custom_ref("KaiwoQueue", obj), WARNING, "InvalidQueue",
                                 errors.get(name) or "not part of the queue tree", throttle=600.0)
            self._submit(("KaiwoQueue", name), obj, status, lambda s, n=name: self.api.patch_queue_status(n, s))

    def jobs(self, jobs: dict, pods: dict, doc: dict) -> None:
        """Status of every KaiwoJob from its pods and the cycle's pending reasons."""
        by_job: dict[str, list] = {}
        for p in pods.values():
            meta = p.get("metadata") or {}
            job = (meta.get("labels") or {}).get(LABEL_JOB)
            if job:
                by_job.setdefault(f"{meta.get('namespace') or 'default'}/{job}", []).append(p)
        errors = {e.get("kaiwojob"): _message(e) for e in doc.get("invalidJobs", [])}
        reasons = {p["pod"]: p["reason"] for p in doc.get("pending", [])}
        for key, obj in jobs.items():
            ns = key.split("/", 1)[0]
            members = by_job.get(key, [])
            # The gang's reason: the first member's (they share the gang's verdict).
            names = sorted(f"{ns}/{(m.get('metadata') or {}).get('name')}" for m in members)
            reason = next((reasons[n] for n in names if n in reasons), None)
            status = job_status(obj, members, errors.get(key), reason, obj.get("status"))
            if errors.get(key):
                self.events.emit(custom_ref("KaiwoJob", obj), WARNING, "InvalidJob", errors[key], throttle=600.0)
            ns, name = key.split("/", 1)
            self._submit(("KaiwoJob", key), obj, status,
                         lambda s, ns=ns, name=name: self.api.patch_job_status(ns, name, s))

    # -------------------------------------------------------------------------------- pods
    def unschedulable(self, pod: dict, message: str, rejected: bool = False, nominated: str = "") -> None:
        """``PodScheduled=False`` and a ``FailedScheduling`` event, throttled per pod: written when
        the message first appears, and at most once per ``pod_interval`` while it keeps changing.
        ``nominated``: the node a preemptor waits on, written to ``status.nominatedNodeName`` (so
        the next cycles place it first) and cleared once the pod is no longer nominated."""
        ref = pod_ref(pod)
        uid = ref.get("uid") or f"{ref['namespace']}/{ref['name']}"
        now = self.clock()
        with self._lock:
            last = self._pod_notes.get(uid)
            if last is not None and (last[0] == message or now - last[1] < self.pod_interval):
                return
            self._pod_notes[uid] = (message, now)
        self.events.forget(ref, "FailedScheduling")
        self.events.emit(ref, WARNING, "FailedScheduling", message)
        condition = {"type": "PodScheduled", "status": "False",
                     "reason": "Unschedulable" if not rejected else "SchedulerError",
                     "message": message[:1024], "lastTransitionTime": rfc3339()}
        patch = {"status": {"conditions": [condition]}}
        if nominated:
            patch["status"]["nominatedNodeName"] = nominated
        elif (pod.get("status") or {}).get("nominatedNodeName"):
            patch["status"]["nominatedNodeName"] = None  # strategic merge: null deletes the key
        self._run(lambda: self.api.patch_pod_status(ref["namespace"], ref["name"], patch),
                  f"condition of {ref['namespace']}/{ref['name']}")

    def forget_pods(self, live_uids: set) -> None:
        """Drop throttling state of pods that no longer exist."""
        with self._lock:
            for uid in [u for u in self._pod_notes if u not in live_uids]:
                del self._pod_notes[uid]

    # ----------------------------------------------------------------------------- writing
    def _submit(self, key: tuple, obj: dict, status: dict, write: Callable[[dict], object]) -> None:
        """Write ``status`` unless the object shows it already, or we wrote it moments ago and the
        watch has not delivered it yet (after ``resync`` seconds it is written again: someone
        else may have overwritten it)."""
        current = obj.get("status") or {}
        if _same(current, status):
            return
        now = self.clock()
        with self._lock:
            last = self._written.get(key)
            if last is not None and last[0] == status and now - last[1] < self.resync:
                return
            self._written[key] = (status, now)
        patch = {**{k: None for k in current if k not in status}, **status}  # null deletes a key
        self._run(lambda: write(patch), f"status of {key[0]} {key[1]}", key)

    def _run(self, fn: Callable[[], object], what: str, key: tuple | None = None) -> None:
        def task():
            try:
                call_with_retry(fn, what, self.policy, self.stop)
            except StoppedError:
                pass
            except ControllerError as e:
                self.failures += 1
                if key is not None:
                    with self._lock:
                        self._written.pop(key, None)  # write it again next cycle
                if e.disposition is not Disposition.GONE:
                    log.warning("%s", e)
        fut = self._pool.submit(task)
        with self._lock:
            self._futures.add(fut)
        fut.add_done_callback(lambda f: self._discard(f))

    def _discard(self, fut) -> None:
        with self._lock:
            self._futures.discard(fut)

    def flush(self, timeout: float | None = None) -> bool:
        with self._lock:
            futures = list(self._futures)
        _, not_done = cf.wait(futures, timeout=timeout)
        return not not_done

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
