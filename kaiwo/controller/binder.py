"""Binder: turns a cycle's bindings and preemptions into API writes, safely under failures.

For every binding, in this order:

1. **ConfigMap** ``kaiwo-gpu-<pod>`` (shared and XCD-isolated pods only; owned by the pod, so it is
   garbage-collected with it) with the variables that confine the pod to its share:
   ``ROCR_VISIBLE_DEVICES`` (the node's logical-GPU indices), ``HIP_VISIBLE_DEVICES`` (the same
   devices as HIP numbers them after ROCr's filter), ``HSA_CU_MASK`` (the compute units of the XCDs
   the pod may use) and ``HIP_DEVICE_MEMORY_LIMIT_<i>`` (its GPU memory, for an enforcer such as
   HAMi), plus ``KAIWO_GPU_ASSIGNMENT``. Pods read it with
   ``envFrom: [{configMapRef: {name: kaiwo-gpu-<pod>, optional: true}}]`` (the controller adds
   that to the pods it creates for KaiwoJobs). It is written before the binding so it exists
   when the kubelet starts the containers -- create-only when new; one that exists is replaced
   (with its version as a precondition) only while the pod is still unbound, so the ConfigMap of a
   pod someone else bound is never overwritten with our unconfirmed decision. When a pod turns out
   bound by someone else (a 409, or found so before the ConfigMap is written), the pod as read goes
   into the cache (its devices are charged where they really are) and its ConfigMap is brought
   back to its own annotation; :meth:`Binder.sync_config_map` does the same for any bound pod
   (the loop calls it on watch events and in its periodic resync).
2. **Binding** through ``pods/NAME/binding``, carrying the annotation ``kaiwo.ai/gpu-assignment``
   (JSON list of ``{gpu, partition, xcds, fraction, memoryMiB}``), with the pod's uid as a
   precondition. kube-apiserver applies a Binding's annotations in the same atomic update that sets
   ``spec.nodeName``, so a bound pod always carries its devices -- a controller restarted at any
   point rebuilds the exact device usage from annotations and never gives a GPU away twice -- and
   one request does both (a separate PATCH would double the API load and leave a window). The
   official client's response parsing problem is avoided in :mod:`kaiwo.controller.api`. A 409 is
   resolved by reading the pod: bound to our node with our devices means an earlier attempt
   succeeded and only its answer was lost (a timeout), so the binding is done; otherwise another
   writer won, and the cache is told where the pod is.
3. **Event** ``Scheduled`` on the pod.

Each step retries temporary failures with backoff (:mod:`kaiwo.controller.errors`); bindings run on
a bounded pool of workers; a pod already being bound is never submitted twice; every attempt of
every write first checks that the replica still holds the leader lease (inside the retried call, so
a retry loop never outlives the leadership it started under), and a replica that lost leadership
stops writing. Whatever the outcome, the cache is told
(:meth:`~kaiwo.controller.cache.ClusterCache.binding_done`): success, and a binding whose outcome
is unknown (the last attempt timed out or got a 5xx after the request went out), start the
assumption's TTL; a definite failure returns the capacity at once and backs the pod off.

Preemptions (``Decisions`` entries ``{pod, reason, preemptor, node, rule}``) go through the
Eviction API, which honours PodDisruptionBudgets (429: retried, then left for a later cycle), with a
``Preempted`` Event on the victim.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from kaiwo_core.model.requests import ANN_ASSIGNMENT, KIND_SHARED, KIND_XCD, assignment_text

from .errors import ControllerError, Disposition, NotLeaderError, RetryPolicy, StoppedError, call_with_retry
from .events import NORMAL, WARNING, EventRecorder

log = logging.getLogger("kaiwo.controller.binder")

CONFIGMAP_PREFIX = "kaiwo-gpu-"
MANAGED_BY = "app.kubernetes.io/managed-by"
MAX_NAME = 253


# -------------------------------------------------------------------- device environment

def config_map_name(pod_name: str) -> str:
    """``kaiwo-gpu-<pod>``; names that would exceed 253 characters are cut and suffixed with a
    hash so two long pod names never share a ConfigMap."""
    name = CONFIGMAP_PREFIX + pod_name
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(pod_name.encode()).hexdigest()[:10]
    return f"{name[:MAX_NAME - 11]}-{digest}"


def _ranges(bits: list[int]) -> str:
    """Sorted integers as ROCm's ID list: ``0-3,8,10-11``."""
    out, i = [], 0
    while i < len(bits):
        j = i
        while j + 1 < len(bits) and bits[j + 1] == bits[j] + 1:
            j += 1
        out.append(str(bits[i]) if i == j else f"{bits[i]}-{bits[j]}")
        i = j + 1
    return ",".join(out)


def cu_mask_bits(partition_mask: int, xcds: list[int], cus_per_xcd: int) -> list[int]:
    """Compute-unit bits of ``HSA_CU_MASK`` that confine a pod to ``xcds`` of one logical GPU.

    Parameters
    ----------
    partition_mask : int
        Physical XCDs the logical GPU (compute partition) owns, as a bit mask.
    xcds : list of int
        Physical XCDs the pod may use (a subset of the partition's).
    cus_per_xcd : int
        Compute units per XCD of the model (38 on MI300X/MI325X, 32 on MI350X/MI355X).

    Notes
    -----
    On multi-XCD CDNA3/4 devices the runtime interleaves CU-mask bits across the XCDs of the
    logical device: bit ``i`` is a CU of XCD ``i mod X`` (X = XCDs in the partition), not of XCD
    ``i // cus_per_xcd``. A contiguous range would leave most XCDs unmasked (a mask fails *open*),
    so the bits of local XCD ``j`` are ``j, j + X, j + 2X, ...``.
    """
    part = [b for b in range(32) if partition_mask >> b & 1]
    x = len(part)
    local = sorted(part.index(v) for v in xcds if v in part)
    return sorted(j + x * m for j in local for m in range(cus_per_xcd))


def _partitioning(cluster, node: int, gpu: int):
    for group in cluster.nodes[node].gpus:
        if gpu < group.count:
            return group.part
        gpu -= group.count
    return None


def device_env(cluster, node: int, kind: int, devices: list[dict]) -> dict[str, str] | None:
    """The ConfigMap data of a shared or XCD-isolated pod (None for other pods).

    Parameters
    ----------
    cluster : kaiwo_core.Cluster
    node : int
        Node index in ``cluster``.
    kind : int
        ``KIND_*`` of the pod's request.
    devices : list of dict
        Its assignment (``Placement.devices``).

    Whole-GPU pods get no ConfigMap: the device plugin mounts only their devices and renumbers
    them, so node-level indices would point past what the container sees.
    """
    if kind not in (KIND_SHARED, KIND_XCD) or not devices:
        return None
    start = int(cluster.node_dev_start[node])
    visible, masks, env_mem = [], [], {}
    for k, d in enumerate(devices):
        dev = cluster.device_index(node, d["gpu"], d["partition"])
        if dev < 0:
            raise ValueError(f"assignment names gpu {d['gpu']} partition {d['partition']}, which node "
                             f"{cluster.nodes[node].name} does not have")
        visible.append(str(dev - start))
        part_mask = int(cluster.dev_xcd_mask[dev])
        part = _partitioning(cluster, node, d["gpu"])
        xcds = [x for x in d.get("xcds") or [] if part_mask >> x & 1]
        if part is not None and part.model.xcds and xcds:
            held = sum(1 << x for x in xcds)
            if held != part_mask:  # a subset of the partition: confine it
                per = part.model.cus // part.model.xcds
                masks.append(f"{k}:{_ranges(cu_mask_bits(part_mask, xcds, per))}")
        if d.get("memoryMiB", 0) > 0:
            env_mem[f"HIP_DEVICE_MEMORY_LIMIT_{k}"] = f"{int(d['memoryMiB'])}m"
    env = {"ROCR_VISIBLE_DEVICES": ",".join(visible),
           # HIP numbers the devices ROCr exposes from 0; naming them keeps HIP from re-filtering.
           "HIP_VISIBLE_DEVICES": ",".join(str(k) for k in range(len(devices)))}
    if masks:
        # Device numbers in HSA_CU_MASK are taken after ROCR_VISIBLE_DEVICES reordering.
        env["HSA_CU_MASK"] = ";".join(masks)
    env.update(env_mem)
    env["KAIWO_GPU_ASSIGNMENT"] = assignment_text(devices)
    return env


# ------------------------------------------------------------------------------ work items

@dataclass
class BindTask:
    """One binding to carry out."""

    namespace: str
    name: str
    uid: str
    node: str
    devices: list
    env: dict | None = None          #: ConfigMap data, None = no ConfigMap
    summary: str = ""                #: device text for the event

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class ConfigMapTask:
    """A bound pod's GPU ConfigMap to bring in line with its annotation."""

    namespace: str
    name: str
    uid: str
    data: dict | None                #: what it should hold; None: it should not exist

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class EvictTask:
    """One preemption to carry out."""

    namespace: str
    name: str
    uid: str
    reason: str = ""
    preemptor: str = ""
    node: str = ""
    rule: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Outcome:
    """How one binding or eviction ended."""

    key: str
    ok: bool
    result: str          #: bound, already-bound, conflict, gone, failed, not-leader, stopped, evicted, blocked
    error: str = ""
    seconds: float = 0.0


class _Blocked(Exception):
    """An eviction refused with 429 (a PodDisruptionBudget); not retried on the spot."""


@dataclass
class BinderStats:
    results: dict = field(default_factory=dict)   #: result -> count

    def add(self, result: str) -> None:
        self.results[result] = self.results.get(result, 0) + 1


class Binder:
    """Carries out bindings and evictions on a bounded pool of workers.

    Parameters
    ----------
    api : kaiwo.controller.api.KubeApi
    cache : kaiwo.controller.cache.ClusterCache
        Told how every binding ended.
    events : EventRecorder
    policy : RetryPolicy
        Retries of each API call.
    concurrency : int
        Workers (bindings in flight at once).
    is_leader : callable
        Fencing: no write starts unless this returns True.
    stop : threading.Event
        Abandons retries when the controller stops.
    on_outcome : callable, optional
        ``on_outcome(kind, Outcome)`` with kind ``bind`` or ``evict`` (metrics).
    """

    def __init__(self, api, cache, events: EventRecorder, policy: RetryPolicy | None = None,
                 concurrency: int = 16, is_leader: Callable[[], bool] = lambda: True,
                 stop: threading.Event | None = None,
                 on_outcome: Callable[[str, Outcome], None] | None = None):
        if concurrency < 1:
            raise ValueError(f"binder concurrency = {concurrency}: must be at least 1")
        self.api = api
        self.cache = cache
        self.events = events
        self.policy = policy or RetryPolicy()
        self.is_leader = is_leader
        self.stop = stop or threading.Event()
        self.on_outcome = on_outcome or (lambda kind, outcome: None)
        self._pool = cf.ThreadPoolExecutor(concurrency, thread_name_prefix="kaiwo-bind")
        self._lock = threading.Lock()
        self._inflight: dict[str, cf.Future] = {}
        self._evicting: dict[str, float] = {}
        #: Seconds before an eviction that did not go through (a PodDisruptionBudget said no, the
        #: API failed) may be tried again; a successful one waits out the full cooldown.
        self.eviction_retry = 5.0
        self.stats = BinderStats()

    # ------------------------------------------------------------------------- interface
    def busy(self, key: str) -> bool:
        """True while a binding or eviction of ``key`` is in flight."""
        with self._lock:
            return key in self._inflight

    def submit(self, tasks: list[BindTask]) -> list[cf.Future]:
        """Queue bindings; a pod already in flight is skipped (idempotence within a replica)."""
        return [f for f in (self._submit(t.key, self._bind, t) for t in tasks) if f is not None]

    def evict(self, tasks: list[EvictTask], cooldown: float = 30.0) -> list[cf.Future]:
        """Queue evictions; a victim evicted less than ``cooldown`` seconds ago is skipped (the
        pod takes a while to go away, and cycles keep seeing it until then), one whose eviction
        did not go through is skipped for ``eviction_retry`` seconds."""
        now = time.monotonic()
        out = []
        for t in tasks:
            with self._lock:
                if self._evicting.get(t.key, 0.0) > now:
                    continue
                self._evicting[t.key] = now + cooldown
            f = self._submit(t.key, self._evict, t)
            if f is not None:
                out.append(f)
        return out

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until nothing is in flight; True if that happened within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                futures = list(self._inflight.values())
            if not futures:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            cf.wait(futures, timeout=left)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, key: str, fn, task):
        with self._lock:
            if key in self._inflight:
                return None
            fut = self._pool.submit(fn, task)
            self._inflight[key] = fut

        def done(_f, key=key):
            with self._lock:
                if self._inflight.get(key) is _f:
                    del self._inflight[key]
        fut.add_done_callback(done)
        return fut

    # --------------------------------------------------------------------------- binding
    def _call(self, fn, operation: str):
        """``fn`` with retries, each attempt fenced: it starts only while we hold the lease (else
        NotLeaderError, which is not retried)."""
        def fenced():
            if not self.is_leader():
                raise NotLeaderError(f"{operation}: this replica no longer holds the leader lease")
            return fn()
        return call_with_retry(fenced, operation, self.policy, self.stop)

    def _bind(self, task: BindTask) -> Outcome:
        t0 = time.monotonic()
        ok, result, error, unknown = False, "failed", "", False
        sent = []  # non-empty once a binding request went out: its outcome may be unknown
        ref = {"apiVersion": "v1", "kind": "Pod", "namespace": task.namespace, "name": task.name,
               "uid": task.uid}

        def bind():
            sent.append(1)
            return self.api.bind(task.namespace, task.name, task.uid, task.node, annotations)
        try:
            annotations = {ANN_ASSIGNMENT: assignment_text(task.devices)}
            written, found = self._write_config_map(task) if task.env is not None else (True, None)
            if not written:  # the pod is bound already (or gone): no binding to send
                ok, result, error = self._settle(task, found)
            else:
                try:
                    self._call(bind, f"bind {task.key} to {task.node}")
                    ok, result = True, "bound"
                except ControllerError as e:
                    if e.disposition is not Disposition.CONFLICT:
                        raise
                    ok, result, error = self._resolve_conflict(task, e)
            if ok:
                self.events.emit(ref, NORMAL, "Scheduled",
                                 f"Successfully assigned {task.key} to {task.node}"
                                 + (f" ({task.summary})" if task.summary else ""))
        except StoppedError:
            result, unknown = "stopped", True
        except ControllerError as e:
            error = str(e)
            # Retries spent on timeouts/5xx: the request may have been carried out anyway.
            unknown = e.disposition is Disposition.RETRY
            if isinstance(e.cause, NotLeaderError):
                result = "not-leader"
            else:
                result = "gone" if e.disposition is Disposition.GONE else "failed"
            if result == "failed":
                log.warning("binding failed: %s", e)
                self.events.emit(ref, WARNING, "FailedBinding", f"Binding to {task.node} failed: {e}",
                                 throttle=60.0)
        except Exception as e:  # noqa: BLE001 - a bug must not kill the worker or leak the assumption
            log.exception("binding %s crashed", task.key)
            error = f"{type(e).__name__}: {e}"
            unknown = True
        return self._finish("bind", task, ok, result, error, t0, unknown=unknown and bool(sent))

    def _read_pod(self, task: BindTask) -> dict | None:
        """The pod as the API has it now; None if it is gone."""
        try:
            return self._call(lambda: self.api.get_pod(task.namespace, task.name), f"read {task.key}")
        except ControllerError as e:
            if e.disposition is Disposition.GONE:
                return None
            raise

    def _resolve_conflict(self, task: BindTask, exc: ControllerError) -> tuple[bool, str, str]:
        """A 409 on the binding: read the pod to learn whether it is already ours."""
        pod = self._read_pod(task)
        if pod is not None and (pod.get("metadata") or {}).get("uid") == task.uid and \
                not (pod.get("spec") or {}).get("nodeName"):
            raise exc  # 409 on an unbound pod with our uid: not a state we can reason about
        return self._settle(task, pod)

    def _settle(self, task: BindTask, pod: dict | None) -> tuple[bool, str, str]:
        """The binding cannot be (or need not be) sent: ``pod`` (as read; None: gone) is bound
        already or is another pod now. The cache learns where the pod really is -- dropping that
        would leave its devices looking free -- and a GPU ConfigMap we wrote for it is brought
        back to the pod's own annotation at once."""
        if pod is None:
            return False, "gone", f"{task.key} no longer exists"
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        if task.uid and meta.get("uid") != task.uid:
            return False, "gone", f"{task.key} was deleted and re-created"
        self.cache.upsert("Pod", pod)
        node = spec.get("nodeName")
        ours = assignment_text(task.devices)
        if node == task.node and (meta.get("annotations") or {}).get(ANN_ASSIGNMENT) == ours:
            return True, "already-bound", ""  # our earlier attempt went through; its answer was lost
        log.warning("%s is bound to %s by someone else (we chose %s)", task.key, node, task.node)
        if task.env is not None:
            try:
                data = self.cache.config_map_data(pod)
            except LookupError as e:  # its node is unknown here: leave the ConfigMap to the resync
                log.info("%s: ConfigMap not checked: %s", task.key, e)
            else:
                self._sync_config_map(ConfigMapTask(task.namespace, task.name, task.uid, data))
        return False, "conflict", f"already bound to {node}"

    def _config_map_body(self, namespace: str, pod_name: str, uid: str, data: dict) -> dict:
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": config_map_name(pod_name), "namespace": namespace,
                             "labels": {MANAGED_BY: "kaiwo"},
                             "annotations": {"kaiwo.ai/pod": pod_name},
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod_name,
                                                  "uid": uid}] if uid else None},
                "data": data}

    def _write_config_map(self, task: BindTask) -> tuple[bool, dict | None]:
        """Write the pod's GPU ConfigMap before its binding, never over someone else's decision.

        Create-only when new. One that exists is left over from an earlier attempt or an earlier
        leader -- or belongs to a binding someone else made while our cache was behind. So read
        the ConfigMap, then the pod: a bound pod (or one that is gone) is returned and nothing is
        written; for an unbound pod the ConfigMap is replaced whole, with the version read as a
        precondition (409 if anyone wrote it since: read both again). Returns (True, None) once
        written, (False, the pod as read or None if gone) when it must not be written.
        """
        name = config_map_name(task.name)
        body = self._config_map_body(task.namespace, task.name, task.uid, task.env)
        for _ in range(3):
            try:
                self._call(lambda: self.api.create_config_map(task.namespace, body), f"create ConfigMap {name}")
                return True, None
            except ControllerError as e:
                if e.disposition is not Disposition.CONFLICT:
                    raise
            current = self._read_config_map(task.namespace, name)
            pod = self._read_pod(task)
            if pod is None or (pod.get("spec") or {}).get("nodeName") or \
                    (task.uid and (pod.get("metadata") or {}).get("uid") != task.uid):
                return False, pod
            if current is None:
                continue  # deleted in between: create it
            meta = dict(body["metadata"], resourceVersion=(current.get("metadata") or {}).get("resourceVersion"))
            try:
                self._call(lambda: self.api.replace_config_map(task.namespace, name, dict(body, metadata=meta)),
                           f"replace ConfigMap {name}")
                return True, None
            except ControllerError as e:
                if e.disposition is not Disposition.CONFLICT:
                    raise
        raise ControllerError(f"write ConfigMap {name}", RuntimeError("it keeps changing under us"),
                              Disposition.RETRY, 3)

    def _read_config_map(self, namespace: str, name: str) -> dict | None:
        try:
            return self._call(lambda: self.api.get_config_map(namespace, name), f"read ConfigMap {name}")
        except ControllerError as e:
            if e.disposition is Disposition.GONE:
                return None
            raise

    # ------------------------------------------------------------------ ConfigMap repair
    def sync_config_map(self, task: "ConfigMapTask") -> cf.Future | None:
        """Queue a check of a bound pod's GPU ConfigMap against ``task.data`` (what its
        annotation says; None: it should have none); skipped while one for the pod is in flight."""
        return self._submit(f"configmap:{task.key}", self._sync_config_map, task)

    def _sync_config_map(self, task: "ConfigMapTask") -> str:
        """Make the ConfigMap equal ``task.data`` (create, replace or delete it), each write with
        the version read as a precondition; a conflict means it changed: read it again."""
        name = config_map_name(task.name)
        result = "failed"
        try:
            for _ in range(3):
                current = self._read_config_map(task.namespace, name)
                if current is not None and ((current.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY) != "kaiwo":
                    result = "not-ours"  # a ConfigMap of that name Kaiwo did not write: not ours to touch
                    break
                if (current or {}).get("data") == task.data or (current is None and task.data is None):
                    result = "in-sync"
                    break
                rv = (current or {}).get("metadata", {}).get("resourceVersion")
                try:
                    if task.data is None:
                        self._call(lambda: self.api.delete_config_map(task.namespace, name, rv),
                                   f"delete ConfigMap {name}")
                        result = "deleted"
                    elif current is None:
                        body = self._config_map_body(task.namespace, task.name, task.uid, task.data)
                        self._call(lambda: self.api.create_config_map(task.namespace, body), f"create ConfigMap {name}")
                        result = "created"
                    else:
                        body = self._config_map_body(task.namespace, task.name, task.uid, task.data)
                        body["metadata"]["resourceVersion"] = rv
                        self._call(lambda: self.api.replace_config_map(task.namespace, name, body),
                                   f"replace ConfigMap {name}")
                        result = "replaced"
                    log.warning("ConfigMap %s/%s did not match the pod's %s: %s", task.namespace, name,
                                ANN_ASSIGNMENT, result)
                    break
                except ControllerError as e:
                    if e.disposition not in (Disposition.CONFLICT, Disposition.GONE):
                        raise
        except (ControllerError, StoppedError) as e:
            log.info("ConfigMap %s/%s not checked: %s", task.namespace, name, e)
        except Exception:  # noqa: BLE001 - a bug must not kill the worker
            log.exception("ConfigMap check of %s crashed", task.key)
        with self._lock:
            self.stats.add(f"configmap-{result}")
        try:
            self.on_outcome("configmap", Outcome(task.key, result not in ("failed", "not-ours"), result))
        except Exception:  # noqa: BLE001 - metrics must not break the repair
            log.exception("outcome callback failed")
        return result

    # -------------------------------------------------------------------------- eviction
    def _evict(self, task: EvictTask) -> Outcome:
        t0 = time.monotonic()
        ok, result, error = False, "failed", ""
        try:
            def attempt():
                try:
                    return self.api.evict(task.namespace, task.name, task.uid)
                except Exception as exc:  # noqa: BLE001 - only 429 is singled out
                    if getattr(exc, "status", None) == 429:
                        # A PodDisruptionBudget forbids it now; retrying within seconds will not
                        # change that. A later cycle decides again (after eviction_retry).
                        raise _Blocked(str(exc)) from exc
                    raise

            try:
                self._call(attempt, f"evict {task.key}")
                ok, result = True, "evicted"
            except ControllerError as e:
                if isinstance(e.cause, NotLeaderError):
                    return self._finish("evict", task, False, "not-leader", "", t0)
                if e.disposition is Disposition.GONE:
                    ok, result = True, "gone"  # already gone: what we wanted
                elif isinstance(e.cause, _Blocked):
                    result, error = "blocked", str(e.cause)
                else:
                    raise
            if result == "evicted":
                text = f"Preempted by {task.preemptor or 'a higher-priority pod'}"
                if task.node:
                    text += f" on {task.node}"
                if task.reason:
                    text += f": {task.reason}"
                if task.rule:
                    text += f" (rule: {task.rule})"
                self.events.emit({"apiVersion": "v1", "kind": "Pod", "namespace": task.namespace,
                                  "name": task.name, "uid": task.uid}, WARNING, "Preempted", text)
        except StoppedError:
            result = "stopped"
        except ControllerError as e:
            error = str(e)
            log.warning("eviction failed: %s", e)
        except Exception as e:  # noqa: BLE001
            log.exception("eviction of %s crashed", task.key)
            error = f"{type(e).__name__}: {e}"
        return self._finish("evict", task, ok, result, error, t0)

    def _finish(self, kind: str, task, ok: bool, result: str, error: str, t0: float,
                unknown: bool = False) -> Outcome:
        outcome = Outcome(task.key, ok, result, error, time.monotonic() - t0)
        if kind == "bind":
            # Not being leader, or stopping, says nothing about the pod: no backoff for those.
            failed = not ok and result not in ("not-leader", "stopped")
            self.cache.binding_done(task.key, ok, unknown=unknown, error=(error or result) if failed else None)
        with self._lock:
            self.stats.add(result)
            if kind == "evict" and not ok:
                self._evicting[task.key] = min(self._evicting.get(task.key, 0.0),
                                               time.monotonic() + self.eviction_retry)
        try:
            self.on_outcome(kind, outcome)
        except Exception:  # noqa: BLE001 - metrics must not break binding
            log.exception("outcome callback failed")
        return outcome
