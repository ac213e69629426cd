"""Watch cache: Kubernetes objects in memory, and the columnar snapshot built from them.

Informers
    One thread per watched kind (and per namespace for KaiwoJobs when the controller is scoped;
    Pods are always watched in every namespace, since all of them use the nodes): *list* (paged),
    then *watch from the list's resourceVersion*, with bookmarks; a stream that ends (server
    timeout, dropped connection) is resumed from the last version seen (or a newer one a relist or
    bookmark gave the cache), so no event is lost; a stream silent for longer than the server's
    timeout plus a margin is taken for dead and resumed (``stalled``); ``410 Gone`` (the version
    was compacted away) means *relist*; temporary failures back off; a missing CRD (404) counts as
    "no objects", is logged once and is looked for again with a growing wait (30 s to 5 min), so
    the scheduler keeps working without KaiwoJobs or KaiwoReservations.

ClusterCache
    The objects by kind and key, plus what a scheduling cycle needs, kept up to date
    incrementally instead of rebuilt from the objects every cycle:

    * **nodes**: each Node is decoded once per change of the fields placement reads (labels,
      allocatable, taints, unschedulable), not per heartbeat; the :class:`~kaiwo_core.Cluster`
      arrays are rebuilt only when one of those changes;
    * **pods**: each Pod is decoded (requests, annotations, constraints) once per change;
    * **running pods** are charged into a :class:`~kaiwo_core.ClusterState` by
      :class:`ChargeBook` with :meth:`kaiwo_core.Snapshot.charge_running` itself: pods that start
      running are charged on top of the current state; a pod that stops gives back its node
      resources and each device it used is recomputed from the pods still on it -- so a cycle
      copies one state instead of re-charging tens of thousands of pods, and the result equals a
      full ``Snapshot.from_objects`` (tested). When exactness is lost (overcommitted input, devices
      used twice, running GPU pods without an assignment) the next change rebuilds it from scratch;
    * **columns**: the PodTables of a snapshot's running and pending pods are built on the last
      snapshot's (:meth:`kaiwo_core.scheduling.podtable.PodTable.build` with ``reuse``): only pods decoded
      or charged anew since are read;
    * **versions and currency**: an object never goes back to an older version, whichever of the
      streams feeding the cache (watches, relists, single reads) is behind; each scope knows the
      resourceVersion it reflects and when it was last listed, so the loop can tell whether the
      cache is current as of a moment -- a leader's takeover -- before it decides anything
      (:meth:`ClusterCache.stale_scopes`);
    * **assumptions**: a binding decided by a cycle is *assumed* -- charged as if the pod ran there
      with the decided devices -- from the moment it is decided until the API confirms it (the pod
      shows up bound) so the next cycle, which may run before the binder is done, never gives the
      same GPU to another pod. A binding that definitely failed (4xx, bound by someone else,
      not leader) drops its assumption at once; a successful one, or one whose outcome is unknown
      (timeouts, 5xx: the API may have bound the pod after all), that the watch has not confirmed
      within the TTL is checked against the API (:meth:`ClusterCache.expired_assumptions`) and
      dropped only if the pod is not bound. A pod that check (or a 409 on its binding) finds
      bound is cached as read, so it stays charged where it really is;
    * **ConfigMap checks**: a pod that shows up bound other than this replica decided is noted
      for a check of its GPU ConfigMap against its annotation (:meth:`take_config_map_checks`);
    * **backoff**: a pod whose binding failed is not placed again before a per-pod exponential
      backoff ends (a permanent error must not re-bind every cycle), and neither is the rest of
      its gang; nor are pods with scheduling gates (kube-apiserver refuses to bind them).

:meth:`ClusterCache.snapshot` gives a :class:`~kaiwo_core.Snapshot` equal to
``Snapshot.from_objects`` on the cached objects (with assumed pods running), plus the KaiwoJob pods
that still have to be created.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from kaiwo_core.model.cluster import IDLE, NodeError, build_cluster, decode_node
from kaiwo_core.scheduling.gangs import LABEL_JOB, expand_jobs, hold_waiting_gangs
from kaiwo_core.model.requests import (ANN_ASSIGNMENT, KIND_NONE, KIND_SHARED, KIND_XCD, SCHEDULER_NAME, PodError,
                                 PodRequest, class_errors, decode_pod, priority_classes, waiting_reason)
from kaiwo_core.scheduling.snapshot import FINISHED_PHASES, Snapshot

from .api import WATCHED_KINDS
from .errors import Disposition, RetryPolicy, classify, describe

log = logging.getLogger("kaiwo.controller.cache")

MAX_WARNINGS = 200


def object_key(kind: str, obj: dict) -> str:
    """``namespace/name`` for namespaced kinds, ``name`` for cluster-scoped ones."""
    meta = obj.get("metadata") or {}
    if kind in ("Pod", "KaiwoJob"):
        return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
    return str(meta.get("name"))


def _rv(obj: dict) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _version(rv: str) -> int | None:
    """A resourceVersion as an integer, or None. resourceVersions are opaque in general; they are
    compared only when both are integers (etcd's revisions are: one counter for every object of the
    cluster, which is what makes "newer than the lease takeover" meaningful)."""
    return int(rv) if rv.isdigit() else None


def _older(rv: str, than: str, or_equal: bool = False) -> bool:
    """True only if ``rv`` is known to be older than ``than`` (or the same, with ``or_equal``)."""
    a, b = _version(rv), _version(than)
    return a is not None and b is not None and (a <= b if or_equal else a < b)


def _bound(obj: dict) -> bool:
    return bool((obj.get("spec") or {}).get("nodeName"))


def _uid(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("uid") or ""


@dataclass
class Scope:
    """How current the cache is for one informer's scope (a kind, or a kind in one namespace)."""

    version: str = ""                   #: resourceVersion the cache reflects (list, event or bookmark)
    listed_at: float = float("-inf")    #: clock() when the request of the newest list held started


def _node_fingerprint(obj: dict) -> str:
    """The fields of a Node that placement reads; heartbeats and conditions are left out."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return json.dumps([meta.get("labels") or {}, spec.get("taints") or [], bool(spec.get("unschedulable")),
                       status.get("allocatable") or {}, status.get("capacity") or {}], sort_keys=True)


# ----------------------------------------------------------------------------- charge book

class ChargeBook:
    """Running pods charged into a free-state, kept in step incrementally.

    Charging is :meth:`kaiwo_core.Snapshot.charge_running` itself (on a Snapshot that shares this
    book's arrays), so the semantics cannot drift from ``kaiwo schedule``:

    * pods that start running are charged on top of the current state;
    * a pod that stops is uncharged from the node (CPU, memory, pod slot) and each device it used
      is *recomputed* from the pods still on it (reset, then charged again per device) -- exact
      even where pods share a device (a time-sliced pod's XCDs return to the free pool only when
      no other pod uses them);
    * whatever cannot be done exactly this way -- new running GPU pods without an assignment (the
      kernel picks their devices, which depends on everything else), or input with warnings
      (overcommit, devices used twice, unknown devices) -- makes the next change a full rebuild.

    Parameters
    ----------
    cluster : kaiwo_core.Cluster
        The cluster the state belongs to (a new cluster needs a new book).
    """

    def __init__(self, cluster):
        self.cluster = cluster
        self.state = cluster.empty_state()
        self.held = np.zeros(cluster.n_devices, dtype=np.uint32)  #: XCDs held by XCD-isolated pods
        self.charged: dict[str, tuple] = {}   #: key -> (signature, PodRequest), in charge order
        self.on_device: dict[int, dict] = {}  #: device -> {key: None} of pods charged on it
        self.exact = True
        self.warnings: list[str] = []
        self.rebuilds = 0

    def sync(self, running: dict[str, tuple]) -> None:
        """Make the charged set equal ``running`` (key -> (signature, PodRequest)): uncharge pods
        that left or changed, charge the new ones."""
        removed = {k for k, (sig, _) in self.charged.items()
                   if k not in running or running[k][0] != sig}
        added = [(k, v) for k, v in running.items() if k not in self.charged or k in removed]
        guess = any(v[1].kind != KIND_NONE and v[1].assignment is None for _, v in added)
        if (removed and not self.exact) or (guess and self.charged):
            self.rebuild(running)
            return
        for k in removed:
            self._uncharge(k)
        if added:
            self._charge(added)

    def rebuild(self, running: dict[str, tuple]) -> None:
        """Charge every running pod on an empty state."""
        self.state = self.cluster.empty_state()
        self.held = np.zeros(self.cluster.n_devices, dtype=np.uint32)
        self.charged = {}
        self.on_device = {}
        self.exact = True
        self.warnings = []
        self.rebuilds += 1
        self._charge(list(running.items()))

    def _charge(self, items: list) -> None:
        snap = Snapshot(self.cluster, self.state, running=[req for _, (_, req) in items])
        snap.charge_running()  # the very code Snapshot.from_objects runs, on our arrays
        self.held |= snap.dev_xcd_held
        if snap.warnings:
            self._inexact(snap.warnings)
        c = self.cluster
        # charge_running hands back a copy of each pod whose devices it had to pick: keep that one.
        for (k, (sig, _)), req in zip(items, snap.running):
            self.charged[k] = (sig, req)
            n = c.index(req.node)
            for d in (req.assignment or []) if n >= 0 and req.kind != KIND_NONE else []:
                dev = c.device_index(n, d["gpu"], d["partition"])
                if dev >= 0:
                    self.on_device.setdefault(dev, {})[k] = None

    def _inexact(self, warnings: list) -> None:
        self.exact = False
        self.warnings.extend(warnings)
        del self.warnings[:-MAX_WARNINGS]

    def _uncharge(self, key: str) -> None:
        """Take one pod out: node resources back, its devices recomputed from the others."""
        _, req = self.charged.pop(key)
        c, s = self.cluster, self.state
        n = c.index(req.node)
        if n < 0:  # never charged (that made the book inexact; unreachable while exact)
            return
        s.node_cpu_free[n] += req.cpu
        s.node_mem_free[n] += req.memory
        s.node_pods_free[n] += 1
        devices = [dev for dev, keys in self.on_device.items() if key in keys] \
            if req.kind != KIND_NONE else []
        for dev in devices:
            del self.on_device[dev][key]
            self._recompute(dev, n)

    def _recompute(self, dev: int, n: int) -> None:
        """Reset device ``dev`` and charge the pods still on it again (in charge order)."""
        c, s = self.cluster, self.state
        s.dev_milli_free[dev] = 1000
        s.dev_mem_free[dev] = c.dev_mem_cap[dev]
        s.dev_xcd_free[dev] = c.dev_xcd_mask[dev]
        s.dev_state[dev] = IDLE
        self.held[dev] = 0
        # A Snapshot sharing our arrays; its per-device charge is the one charge_running applies.
        snap = Snapshot(c, s, dev_xcd_held=self.held)
        for key in self.on_device[dev]:
            req = self.charged[key][1]
            entries = [d for d in req.assignment if c.device_index(n, d["gpu"], d["partition"]) == dev]
            snap.charge_devices(dataclasses.replace(req, assignment=entries), n)
        if snap.warnings:
            self._inexact(snap.warnings)


def _signature(req, annotated: str | None) -> tuple:
    """What a running pod's charge depends on; a change means uncharge and charge again."""
    return (req.node, annotated, req.cpu, req.memory, req.kind, req.count, req.milli,
            req.gpu_memory, req.exclusive)


# ----------------------------------------------------------------------------------- cache

@dataclass
class Assumption:
    """A binding decided but not yet seen in the API."""

    node: str
    devices: list
    uid: str
    since: float
    deadline: float | None = None   #: None while the binder is still working on it


@dataclass
class Backoff:
    """A pod whose binding failed: not placed again before ``until``."""

    until: float
    failures: int
    error: str


@dataclass
class CacheSnapshot:
    """What one cycle works on."""

    snapshot: Snapshot
    pods: dict                       #: key -> Pod object (as cached)
    jobs: dict                       #: key -> KaiwoJob object
    queues: dict                     #: name -> KaiwoQueue object
    missing_job_pods: list = field(default_factory=list)  #: Pod dicts to create for KaiwoJobs
    assumed: set = field(default_factory=set)             #: pod keys running by assumption


class ClusterCache:
    """Objects by kind, decoded pods and nodes, charged running pods and assumptions.

    Parameters
    ----------
    scheduler_name : str
        Pending pods with this ``spec.schedulerName`` are Kaiwo's.
    assume_ttl : float
        Seconds a *successful* binding may stay unconfirmed by the watch before it is checked.
    clock : callable
        Monotonic clock (tests pass a fake one).
    namespaces : tuple
        Pending pods of these namespaces only are placed (() = all). Pods of every namespace are
        cached and charged all the same: they use the nodes too.
    backoff : tuple
        (first, longest) seconds a pod waits after a failed binding; doubles per failure.
    """

    def __init__(self, scheduler_name: str = SCHEDULER_NAME, assume_ttl: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, namespaces: tuple = (),
                 backoff: tuple = (1.0, 60.0)):
        self.scheduler_name = scheduler_name
        self.assume_ttl = assume_ttl
        self.clock = clock
        self.namespaces = tuple(namespaces)
        self.backoff = backoff
        self._lock = threading.RLock()
        self.changed = threading.Event()
        self.generation = 0
        self._objects: dict[str, dict[str, dict]] = {k: {} for k in WATCHED_KINDS}
        self._node_specs: dict[str, tuple] = {}      # name -> (fingerprint, NodeSpec | NodeError)
        self._nodes_dirty = True
        self._cluster = None
        self._book: ChargeBook | None = None
        self._classes: dict | None = None
        self._decoded: dict[str, tuple] = {}         # pod key -> (PodRequest | PodError, warnings)
        self._assumed: dict[str, Assumption] = {}
        self._scopes: dict[tuple, Scope] = {}         # (kind, namespace | None) -> how current
        self._config_map_checks: dict[str, None] = {}  # bound pods whose ConfigMap may be wrong
        self._backoff: dict[str, Backoff] = {}
        self._expected: dict[str, float] = {}        # job pods created, not yet seen -> deadline
        self._tables: dict = {}                      # the last snapshot's PodTables (filled by its cycle)

    # ------------------------------------------------------------------ informer updates
    #
    # Versions. The cache is fed by several streams that may be behind one another: each informer's
    # watch (possibly stalled, delivering late), relists (the informer's own, and the resync's and
    # the takeover check's from the loop) and single reads (the binder's, after a 409 or an expiry
    # check). Whatever the order, an object never goes back to an older version: a version known to
    # be older than the cached one is ignored, and so is an unbound version of a pod cached bound
    # (nodeName is never unset, whatever the versions look like). Each scope remembers the version
    # the cache reflects for it; a watch event at or below it for an object the cache does not
    # hold is about an object deleted since (a relist already showed it gone).

    def track(self, kind: str, namespace: str | None = None) -> None:
        """Register an informer's scope: :meth:`stale_scopes` reports it until it is listed."""
        with self._lock:
            self._scopes.setdefault((kind, namespace), Scope())

    def _scope(self, kind: str, obj: dict) -> Scope | None:
        ns = (obj.get("metadata") or {}).get("namespace")
        return self._scopes.get((kind, ns)) or self._scopes.get((kind, None))

    def replace(self, kind: str, items: list[dict], namespace: str | None = None, version: str = "",
                started: float | None = None) -> int:
        """The full list of ``kind`` (in ``namespace``) at resourceVersion ``version``, whose request
        started at ``started`` (``clock()``): upserts, and deletes what the list no longer has.
        A list older than what the cache already reflects is ignored. Returns how many cached
        objects it changed (added, updated or deleted)."""
        with self._lock:
            scope = self._scopes.setdefault((kind, namespace), Scope())
            if _older(version, scope.version):
                return 0
            changed = 0
            keys = set()
            for obj in items:
                keys.add(object_key(kind, obj))
                changed += self._upsert(kind, obj)
            for key in [k for k in self._objects[kind] if k not in keys]:
                if namespace is None or key.split("/", 1)[0] == namespace:
                    if _older(version, _rv(self._objects[kind][key])):
                        continue  # read after the list was taken (a 409's or an expiry check's read)
                    self._delete(kind, key)
                    changed += 1
            scope.version = version or scope.version
            if started is not None:
                scope.listed_at = max(scope.listed_at, started)
            return changed

    def apply_event(self, kind: str, namespace: str | None, event: dict) -> None:
        """One watch event of the scope (``kind``, ``namespace``), bookmarks included."""
        typ, obj = event.get("type"), event.get("object") or {}
        with self._lock:
            scope = self._scopes.setdefault((kind, namespace), Scope())
            if typ in ("ADDED", "MODIFIED"):
                self._upsert(kind, obj, scope)
            elif typ == "DELETED":
                key = object_key(kind, obj)
                old = self._objects[kind].get(key)
                if old is None or not _older(_rv(obj), _rv(old)):  # else: re-created since, cached
                    self._delete(kind, key)
            elif typ != "BOOKMARK":
                log.warning("%s: unexpected watch event type %r", kind, typ)
            rv = _rv(obj)
            if rv and not _older(rv, scope.version):
                scope.version = rv

    def upsert(self, kind: str, obj: dict) -> None:
        """An object read outside the watch (a single GET): kept unless the cache is newer."""
        with self._lock:
            self._upsert(kind, obj, self._scope(kind, obj))

    def delete(self, kind: str, obj: dict) -> None:
        with self._lock:
            self._delete(kind, object_key(kind, obj))

    def _upsert(self, kind: str, obj: dict, scope: Scope | None = None) -> bool:
        """Store ``obj`` unless it is not newer than what is cached (see above); ``scope``: the
        scope's version applies too (watch events and single reads, not lists). True if stored."""
        key = object_key(kind, obj)
        store = self._objects[kind]
        old = store.get(key)
        if old is not None:
            if _rv(old) and _rv(old) == _rv(obj):
                return False  # the same version again (a relist): nothing changed
            if _older(_rv(obj), _rv(old)):
                return False  # a late event or read: the cache has a newer version
            if kind == "Pod" and _bound(old) and not _bound(obj) and _uid(old) == _uid(obj):
                return False  # a replayed version from before the binding (nodeName is never unset)
        elif scope is not None and _older(_rv(obj), scope.version, or_equal=True):
            return False  # the scope is past this version and the object is not cached: deleted since
        store[key] = obj
        relevant = True
        if kind == "Node":
            fp = _node_fingerprint(obj)
            cached = self._node_specs.get(key)
            if cached is None or cached[0] != fp:
                self._node_specs[key] = (fp, decode_node(obj))  # NodeSpec, or the node's NodeError
                self._nodes_dirty = True
            else:
                relevant = False
        elif kind == "Pod":
            self._decoded.pop(key, None)
            self._expected.pop(key, None)
            spec = obj.get("spec") or {}
            if spec.get("nodeName"):
                self._backoff.pop(key, None)
                a = self._assumed.pop(key, None)  # confirmed (or bound by someone else: the API wins)
                ours = a is not None and a.node == spec["nodeName"] and \
                    _annotation(obj) == json.dumps(a.devices, separators=(",", ":"))
                if ours:
                    relevant = False  # exactly as assumed: no capacity changed, no new cycle needed
                elif (old is None or not _bound(old)) and scope is not None and \
                        spec.get("schedulerName") == self.scheduler_name:
                    # Bound, but not as this replica decided (another writer, an earlier leader,
                    # or a binding of ours that failed in the end): the GPU ConfigMap may be
                    # someone else's decision -- check it against the annotation.
                    self._config_map_checks[key] = None
            # A running pod's status heartbeat does not change what can be scheduled.
            if old is not None and (old.get("spec") or {}).get("nodeName") == spec.get("nodeName") \
                    and spec.get("nodeName") and _phase(old) == _phase(obj) \
                    and _annotation(old) == _annotation(obj):
                relevant = False
        elif kind == "PriorityClass":
            self._classes = None
            self._decoded.clear()
        self.generation += 1
        if relevant:
            self.changed.set()
        return True

    def _delete(self, kind: str, key: str) -> None:
        if self._objects[kind].pop(key, None) is None:
            return
        if kind == "Node":
            self._node_specs.pop(key, None)
            self._nodes_dirty = True
        elif kind == "Pod":
            self._decoded.pop(key, None)
            self._assumed.pop(key, None)
            self._backoff.pop(key, None)
            self._config_map_checks.pop(key, None)
        elif kind == "PriorityClass":
            self._classes = None
            self._decoded.clear()
        self.generation += 1
        self.changed.set()

    # ------------------------------------------------------------------------- currency
    def stale_scopes(self, version: str, since: float) -> list[str]:
        """The scopes the cache is not known to reflect as of resourceVersion ``version`` (e.g.
        the lease takeover's) nor listed by a request started at or after ``since`` (``clock()``);
        empty when the cache is current -- the gate every cycle passes before deciding."""
        with self._lock:
            return [f"{kind}{'/' + ns if ns else ''}" for (kind, ns), sc in self._scopes.items()
                    if not (sc.listed_at >= since or (version and _older(version, sc.version, or_equal=True)))]

    def scope_version(self, kind: str, namespace: str | None) -> str:
        """The resourceVersion the cache reflects for a scope ("" if unknown)."""
        with self._lock:
            sc = self._scopes.get((kind, namespace))
            return sc.version if sc else ""

    def take_config_map_checks(self, limit: int) -> list[str]:
        """Up to ``limit`` bound pods whose ConfigMap is to be checked against their annotation."""
        with self._lock:
            keys = list(self._config_map_checks)[:limit]
            for k in keys:
                del self._config_map_checks[k]
            return keys

    # ------------------------------------------------------------------------ assumptions
    def assume(self, key: str, uid: str, node: str, devices: list) -> None:
        """Charge ``key`` on ``node`` with ``devices`` until the API confirms the binding."""
        with self._lock:
            self._assumed[key] = Assumption(node, devices, uid, self.clock())

    def binding_done(self, key: str, ok: bool, unknown: bool = False, error: str | None = None) -> None:
        """The binder finished with ``key``.

        ``ok``: start the assumption's TTL. ``unknown`` (the last attempt timed out or got a
        5xx: the API may have bound the pod all the same): keep the assumption with a TTL too, so
        its devices are not given away before the expiry check reads the pod. Otherwise the
        binding definitely failed: forget the assumption now. ``error`` (a failure of the pod's
        own binding) starts or lengthens the pod's backoff.
        """
        with self._lock:
            now = self.clock()
            cached = self._objects["Pod"].get(key)
            if ok or (cached is not None and _bound(cached)):
                self._backoff.pop(key, None)  # done, or bound by someone else: nothing to retry
            elif error is not None:
                b = self._backoff.get(key)
                failures = (b.failures if b else 0) + 1
                first, longest = self.backoff
                self._backoff[key] = Backoff(now + min(longest, first * 2 ** (failures - 1)), failures, error)
            a = self._assumed.get(key)
            if a is None:
                return
            pod = cached
            if ok or unknown:
                if pod is not None and _bound(pod):
                    self._assumed.pop(key, None)  # the watch was faster than the binder
                else:
                    a.deadline = now + self.assume_ttl
            else:
                self._assumed.pop(key, None)
                self.changed.set()  # the pod is pending again

    def expired_assumptions(self) -> list[str]:
        """Keys of successful bindings the watch has not confirmed within the TTL."""
        with self._lock:
            now = self.clock()
            return [k for k, a in self._assumed.items() if a.deadline is not None and now > a.deadline]

    def resolve_assumption(self, key: str, obj: dict | None) -> bool:
        """Settle an expired assumption with the pod as the API has it now (None: gone).

        A bound pod replaces the cached one (the watch was behind); the older, unbound versions
        the watch may deliver afterwards are ignored (see "Versions" above), so it stays charged.
        An unbound or missing pod drops the assumption and its capacity returns. Returns True if
        the capacity returned.
        """
        with self._lock:
            if key not in self._assumed:
                return False
            if obj is not None and _bound(obj):
                self._upsert("Pod", obj, self._scope("Pod", obj))  # drops the assumption
                self._assumed.pop(key, None)
                return False
            self._assumed.pop(key, None)
            self.changed.set()
            return True

    def extend_assumption(self, key: str) -> None:
        """Keep an assumption for another TTL (its check could not reach the API)."""
        with self._lock:
            a = self._assumed.get(key)
            if a is not None and a.deadline is not None:
                a.deadline = self.clock() + self.assume_ttl

    @property
    def assumed_count(self) -> int:
        with self._lock:
            return len(self._assumed)

    def expect_created(self, key: str, ttl: float = 60.0) -> None:
        """A KaiwoJob pod was just created: do not create it again until the watch shows it."""
        with self._lock:
            self._expected[key] = self.clock() + ttl

    def creation_failed(self, key: str) -> None:
        with self._lock:
            self._expected.pop(key, None)

    # ------------------------------------------------------------------------- reading
    def counts(self) -> dict[str, int]:
        with self._lock:
            return {k: len(v) for k, v in self._objects.items()}

    def get(self, kind: str, key: str) -> dict | None:
        with self._lock:
            return self._objects[kind].get(key)

    def invalid_nodes(self) -> dict[str, NodeError]:
        """Nodes left out of the cluster, with the field and value that made them invalid."""
        with self._lock:
            return {name: spec for name, (_, spec) in self._node_specs.items() if isinstance(spec, NodeError)}

    def _current(self) -> tuple:
        """The cluster (rebuilt if a node changed) and the priority classes (caller holds the lock)."""
        if self._nodes_dirty or self._cluster is None:
            specs, errors = [], []
            for _, spec in self._node_specs.values():
                (errors if isinstance(spec, NodeError) else specs).append(spec)
            self._cluster = build_cluster(specs, errors)
            self._book = ChargeBook(self._cluster)
            self._nodes_dirty = False
        if self._classes is None:
            self._classes = priority_classes(list(self._objects["PriorityClass"].values()))
        return self._cluster, self._classes

    def config_map_data(self, pod: dict) -> dict | None:
        """What the GPU ConfigMap of ``pod`` (bound) must hold according to its own
        ``kaiwo.ai/gpu-assignment`` -- :func:`~kaiwo.controller.binder.device_env` of those devices
        -- or None if it should have none (not a shared or XCD-isolated pod, no or an unreadable
        assignment). Raises LookupError when that cannot be told (its node is unknown or invalid):
        a ConfigMap is then left as it is."""
        with self._lock:
            cluster, classes = self._current()
            key = object_key("Pod", pod)
            cached = self._objects["Pod"].get(key)
            return self._config_map_data(key, pod, cluster, classes, cached is pod)

    def config_maps_due(self) -> list[tuple[dict, dict | None]]:
        """(pod, :meth:`config_map_data`) of every bound, unfinished pod of this scheduler (in its
        namespaces) whose ConfigMap can be judged."""
        out = []
        with self._lock:
            cluster, classes = self._current()
            for key, obj in self._objects["Pod"].items():
                spec = obj.get("spec") or {}
                if not spec.get("nodeName") or spec.get("schedulerName") != self.scheduler_name \
                        or _phase(obj) in FINISHED_PHASES:
                    continue
                if self.namespaces and key.split("/", 1)[0] not in self.namespaces:
                    continue
                try:
                    out.append((obj, self._config_map_data(key, obj, cluster, classes, True)))
                except LookupError:
                    continue
        return out

    def _config_map_data(self, key: str, obj: dict, cluster, classes: dict, cached: bool) -> dict | None:
        from .binder import device_env

        node = cluster.index((obj.get("spec") or {}).get("nodeName") or "")
        if node < 0:
            raise LookupError(f"{key}: node {(obj.get('spec') or {}).get('nodeName')!r} is not in the cluster")
        req = self._decode(key, obj, obj, classes)[0] if cached else decode_pod(obj, classes)[0]
        raw = _annotation(obj)
        if isinstance(req, PodError) or req.kind not in (KIND_SHARED, KIND_XCD) or raw is None:
            return None
        try:
            return device_env(cluster, node, req.kind, json.loads(raw))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return None  # an assignment that names nothing real: no ConfigMap can match it

    def snapshot(self) -> CacheSnapshot:
        """The cycle's view: a Snapshot equal to ``Snapshot.from_objects`` on the cached objects
        (assumed pods as running), plus the KaiwoJob pods to create."""
        with self._lock:
            self._current()
            cluster, book, classes = self._cluster, self._book, self._classes
            pods = dict(self._objects["Pod"])
            jobs = dict(self._objects["KaiwoJob"])
            queues = dict(self._objects["KaiwoQueue"])
            reservations = list(self._objects["KaiwoReservation"].values())
            # KaiwoJobs: replicas without a pod, and gang marks on the existing ones (on copies:
            # the cached objects stay exactly what the API sent).
            job_pods = {k: _own_annotations(p) for k, p in pods.items()
                        if ((p.get("metadata") or {}).get("labels") or {}).get(LABEL_JOB)}
            created, job_errors = expand_jobs(list(jobs.values()), list(job_pods.values()), self.scheduler_name)
            now = self.clock()
            for k in [k for k, t in self._expected.items() if t < now]:
                del self._expected[k]
            missing = [p for p in created if object_key("Pod", p) not in self._expected]

            running: dict[str, tuple] = {}
            pending, rejected, ignored, finished, waiting, warnings = [], [], [], [], [], []
            assumed = set()
            for key in sorted(pods):
                obj = pods[key]
                src = job_pods.get(key, obj)
                req, problems = self._decode(key, obj, src, classes)
                warnings += problems
                if isinstance(req, PodError):
                    rejected.append(req)
                    continue
                if _phase(obj) in FINISHED_PHASES:
                    finished.append(req)
                elif req.node:
                    running[key] = (_signature(req, (_annotations(obj)).get(ANN_ASSIGNMENT)), req)
                elif key in self._assumed:
                    a = self._assumed[key]
                    areq = dataclasses.replace(req, node=a.node, assignment=a.devices)
                    running[key] = (_signature(areq, "assumed:" + json.dumps(a.devices)), areq)
                    assumed.add(key)
                else:
                    why, waits = waiting_reason(src, self.scheduler_name, self.namespaces)
                    b = self._backoff.get(key)
                    if why is None and b is not None and b.until > now:
                        why, waits = (f"binding failed {b.failures} time{'s' if b.failures > 1 else ''}, "
                                      f"next attempt in {b.until - now:.1f} s: {b.error}"), True
                    if why is None:
                        pending.append(req)
                    else:
                        ignored.append((req.name, why))
                        if waits:
                            waiting.append((req, why))
            pending, held = hold_waiting_gangs(pending, waiting)
            ignored += held
            book.sync(running)
            snap = Snapshot(cluster, book.state.copy(), running=[v[1] for v in book.charged.values()],
                            pending=pending, rejected=rejected, ignored=ignored, finished=finished,
                            warnings=warnings + book.warnings,
                            objects={"KaiwoQueue": list(queues.values()), "KaiwoJob": list(jobs.values()),
                                     "KaiwoReservation": reservations},
                            job_errors=job_errors, class_errors=class_errors(classes),
                            dev_xcd_held=book.held.copy(),
                            # Decoded pods are cached objects: the columns of those the last
                            # cycle read are copied, only new and changed pods are read again.
                            tables=dict(self._tables))
            self._tables = snap.tables
            return CacheSnapshot(snap, pods, jobs, queues, missing, assumed)

    def _decode(self, key: str, obj: dict, src: dict, classes: dict) -> tuple:
        """Decoded ``src`` (the pod, or its copy with KaiwoJob gang marks) and its warnings
        (:func:`kaiwo_core.model.requests.decode_pod`: a bound pod is never rejected), cached until the
        pod changes; a copy whose marks differ from the pod's annotations is decoded every time."""
        same = src is obj or _annotations(src) == _annotations(obj)
        if same:
            hit = self._decoded.get(key)
            if hit is not None:
                return hit
        out = decode_pod(src, classes)
        if self.namespaces and isinstance(out[0], PodRequest) and \
                ((obj.get("metadata") or {}).get("namespace") or "default") not in self.namespaces:
            # Charged (it uses the nodes) but outside the namespaces this controller was given:
            # never evicted by it either.
            out[0].preemptible = False
        if same:
            self._decoded[key] = out
        return out


def _phase(obj: dict) -> str:
    return (obj.get("status") or {}).get("phase", "")


def _annotations(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _annotation(obj: dict) -> str | None:
    return _annotations(obj).get(ANN_ASSIGNMENT)


def _own_annotations(pod: dict) -> dict:
    """A shallow copy of a pod whose annotations may be changed without touching the original."""
    meta = dict(pod.get("metadata") or {})
    meta["annotations"] = dict(meta.get("annotations") or {})
    return dict(pod, metadata=meta)


# -------------------------------------------------------------------------------- informer

class Informer(threading.Thread):
    """List, then watch, one kind into the cache; resumes, relists on 410, backs off on errors.

    Parameters
    ----------
    api : kaiwo.controller.api.KubeApi
    cache : ClusterCache
    kind : str
        One of ``api.WATCHED_KINDS``.
    namespace : str, optional
        Scope (namespaced kinds only); None = all namespaces.
    stop : threading.Event
        Set to end the thread.
    watch_timeout : int
        Seconds the server keeps one watch open (``timeoutSeconds``).
    read_timeout : float, optional
        Seconds without a byte after which the stream is taken for dead and resumed; default
        ``watch_timeout`` + 10 (the server ends a live stream at ``watch_timeout``, and
        kube-apiserver sends a bookmark just before that).
    policy : RetryPolicy
        Backoff between failed attempts.
    on_restart : callable, optional
        ``on_restart(kind, reason)`` for metrics: reason is ``closed``, ``gone``, ``stalled`` (no
        byte within the read timeout) or ``error``.
    """

    def __init__(self, api, cache: ClusterCache, kind: str, namespace: str | None, stop: threading.Event,
                 watch_timeout: int = 30, policy: RetryPolicy | None = None,
                 on_restart: Callable[[str, str], None] | None = None, read_timeout: float | None = None):
        super().__init__(name=f"informer-{kind}{'-' + namespace if namespace else ''}", daemon=True)
        self.api = api
        self.cache = cache
        self.kind = kind
        self.namespace = namespace
        self.stop_event = stop
        self.watch_timeout = watch_timeout
        self.read_timeout = watch_timeout + 10.0 if read_timeout is None else read_timeout
        cache.track(kind, namespace)
        self.policy = policy or RetryPolicy(attempts=1_000_000, initial=0.2, maximum=10.0)
        self.on_restart = on_restart or (lambda kind, reason: None)
        self.synced = threading.Event()
        self.resource_version: str | None = None
        self.relists = 0
        self.last_error: str | None = None
        #: Seconds before a kind whose list answered 404 (CRD not installed) is listed again: the
        #: first wait, doubled per further 404 up to the second.
        self.missing_wait = (30.0, 300.0)
        self.missing = 0  #: 404s in a row

    def run(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            started = self.cache.clock()
            try:
                if self.resource_version is None:
                    items, rv = self.api.list(self.kind, self.namespace)
                    if self.missing:
                        log.info("%s: the resource is available now (%d objects)", self.kind, len(items))
                        self.missing = 0
                    self.cache.replace(self.kind, items, self.namespace, rv, started)
                    self.resource_version = rv or None
                    self.relists += 1
                    self.synced.set()
                # A relist by the loop (resync, takeover check) or a bookmark may have taken the
                # cache past our stream: resume from there, not from events it no longer needs.
                ahead = self.cache.scope_version(self.kind, self.namespace)
                if ahead and _older(self.resource_version or "", ahead):
                    self.resource_version = ahead
                for event in self.api.watch(self.kind, self.namespace, self.resource_version,
                                            self.watch_timeout, self.read_timeout):
                    if self.stop_event.is_set():
                        return
                    self._apply(event)
                failures = 0
                self.last_error = None
                self.on_restart(self.kind, "closed")
            except Exception as exc:  # noqa: BLE001 - classified; the informer must survive
                if self.stop_event.is_set():
                    return
                disposition = classify(exc)
                self.last_error = describe(exc)
                status = getattr(exc, "status", None)
                if status == 410:
                    # Our version was compacted away: only a fresh list is consistent.
                    self.resource_version = None
                    self.on_restart(self.kind, "gone")
                    continue
                if _read_timeout(exc):
                    # Nothing, not even the server's end of the stream, within the read timeout:
                    # a dead connection or a stalled server. Resume at once from the last version.
                    log.warning("%s: watch silent for %.0f s, taken for dead; resuming from %s",
                                self.kind, self.read_timeout, self.resource_version)
                    self.on_restart(self.kind, "stalled")
                    continue
                failures += 1
                self.on_restart(self.kind, "error")
                if disposition is Disposition.GONE:
                    # 404: the resource itself is missing (CRD not installed, or deleted while we
                    # watched): no objects of it, and look again later -- said once, not every
                    # time, since an optional CRD may well stay uninstalled.
                    first, longest = self.missing_wait
                    wait = min(longest, first * 2 ** min(self.missing, 16))
                    self.missing += 1
                    (log.warning if self.missing == 1 else log.debug)(
                        "%s: cannot list (%s): is its CRD installed? Treating it as empty; "
                        "looking again in %.0f s, then less often (up to every %.0f s)",
                        self.kind, self.last_error, wait, longest)
                    self.resource_version = None
                    # Known empty as of the request that got the 404.
                    self.cache.replace(self.kind, [], self.namespace, started=started)
                    self.synced.set()
                    self.stop_event.wait(wait)
                    continue
                wait = self.policy.backoff(min(failures, 10))
                if disposition is Disposition.PERMANENT:
                    log.error("%s: %s (retrying in %.1f s)", self.kind, self.last_error, max(wait, 5.0))
                    wait = max(wait, 5.0)
                else:
                    log.info("%s: watch interrupted: %s (retrying in %.2f s)", self.kind, self.last_error, wait)
                self.stop_event.wait(wait)

    def _apply(self, event: dict) -> None:
        self.cache.apply_event(self.kind, self.namespace, event)
        rv = _rv(event.get("object") or {})
        if rv:
            self.resource_version = rv


def _read_timeout(exc: BaseException) -> bool:
    """True for a client-side read timeout (urllib3 raises ``ReadTimeoutError`` for a socket
    timeout while a streamed response is read)."""
    import socket

    import urllib3.exceptions as u3

    return any(isinstance(e, (u3.ReadTimeoutError, socket.timeout))
               for e in (exc, exc.__cause__, exc.__context__) if e is not None)


__all__ = ["Assumption", "CacheSnapshot", "ChargeBook", "ClusterCache", "Informer", "object_key"]
