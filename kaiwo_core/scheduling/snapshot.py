"""Snapshot: the cluster with what its running pods already use, ready for a scheduling cycle.

Built once per cycle from Kubernetes objects (:meth:`Snapshot.from_objects`) or from arrays
(:meth:`Snapshot.from_arrays`). Running pods are charged to their nodes: devices named in their
``kaiwo.ai/gpu-assignment`` annotation are charged exactly; a running GPU pod without one (placed by
another scheduler, or a hand-written dump) is placed by the kernel on its own node, which picks the
devices it must be using.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..model.cluster import EXCLUSIVE, SHARED, Cluster, ClusterState, cluster_from_arrays, cluster_from_nodes
from ..model.errors import ObjectError, show
from .gangs import expand_jobs, hold_waiting_gangs
from ..plugins import Plugin
from .podtable import PodTable
from .queues import QueueTree, build_tree
from ..model.requests import (
    FINISHED_PHASES,
    KIND_NONE,
    KIND_WHOLE,
    KIND_XCD,
    SCHEDULER_NAME,
    PodError,
    PodRequest,
    batch_from_requests,
    class_errors,
    decode_pod,
    pod_name,
    pod_phase,
    priority_classes,
    waiting_reason,
)


@dataclass
class Snapshot:
    """Cluster, free state after running pods, and the pods of the input sorted by role."""

    cluster: Cluster
    state: ClusterState
    running: list = field(default_factory=list)    #: PodRequest of running pods (charged)
    pending: list = field(default_factory=list)    #: PodRequest of pods for Kaiwo to place
    rejected: list = field(default_factory=list)   #: PodError
    ignored: list = field(default_factory=list)    #: (pod name, reason): pending, not Kaiwo's
    finished: list = field(default_factory=list)   #: PodRequest of Succeeded/Failed pods
    warnings: list = field(default_factory=list)   #: str
    objects: dict = field(default_factory=dict)    #: other kinds by kind (KaiwoQueue, ...)
    job_errors: list = field(default_factory=list)  #: JobError for KaiwoJobs that could not expand
    class_errors: list = field(default_factory=list)  #: PriorityClassError for classes left out
    #: uint32[G] XCDs held exclusively by running XCD-isolated pods (time-sliced pods' CU masks
    #: are the partition's XCDs minus these)
    dev_xcd_held: np.ndarray | None = None
    #: PodTable of ``running`` and of ``pending`` by role, read once and reused while the lists
    #: still hold the same pods (see :mod:`kaiwo_core.scheduling.podtable`); and the queue tree (``queue_tree``)
    tables: dict = field(default_factory=dict, repr=False, compare=False)

    def copy(self) -> "Snapshot":
        return Snapshot(self.cluster, self.state.copy(), list(self.running), list(self.pending),
                        list(self.rejected), list(self.ignored), list(self.finished),
                        list(self.warnings), dict(self.objects), list(self.job_errors),
                        list(self.class_errors),
                        None if self.dev_xcd_held is None else self.dev_xcd_held.copy(),
                        dict(self.tables))

    def running_table(self) -> PodTable:
        """The running pods as columns (read on first use, then reused)."""
        return self._table("running", self.running)

    def pending_table(self) -> PodTable:
        """The pending pods as columns (read on first use, then reused)."""
        return self._table("pending", self.pending)

    def queue_tree(self) -> QueueTree:
        """The tree of ``objects["KaiwoQueue"]``, built on first use and reused while that list is
        the same object of the same length (like pods, queue objects in a snapshot are not changed
        in place: a replay that keeps one snapshot builds its tree once)."""
        objs = self.objects.get("KaiwoQueue", [])
        hit = self.tables.get("queues")
        if hit is None or hit[0] is not objs or hit[1] != len(objs):
            hit = self.tables["queues"] = (objs, len(objs), build_tree(objs))
        return hit[2]

    def _table(self, role: str, reqs: list) -> PodTable:
        table = self.tables.get(role)
        if table is None or not table.describes(reqs):  # changed: read only the pods it lacks
            table = self.tables[role] = PodTable.build(reqs, self.cluster, reuse=table)
        return table

    # ------------------------------------------------------------------------------ builders
    @classmethod
    def from_arrays(cls, names, cpu, memory, gpus, model="MI300X", partition="spx_nps1",
                    pods=None, gpu_memory_mib=None) -> "Snapshot":
        """An empty cluster from arrays (see :func:`kaiwo_core.model.cluster.cluster_from_arrays`)."""
        cluster = cluster_from_arrays(names, cpu, memory, gpus, model, partition, pods,
                                      gpu_memory_mib)
        return cls(cluster, cluster.empty_state())

    @classmethod
    def from_objects(cls, objs: list[dict], scheduler_name: str = SCHEDULER_NAME) -> "Snapshot":
        """Nodes, Pods, PriorityClasses (and other kinds, kept in ``objects``) as Kubernetes
        objects. Bound pods are running; unbound pods with ``schedulerName: kaiwo`` are pending.

        Every object is decoded inside :func:`kaiwo_core.model.errors.guarded`: a bad pod is rejected, a
        bad node, PriorityClass, KaiwoQueue, KaiwoJob or KaiwoReservation is left out with its error
        (object, field, value), and everything else is scheduled as usual."""
        by_kind: dict[str, list] = {}
        warnings = []
        for i, o in enumerate(objs):
            kind = o.get("kind", "") if isinstance(o, dict) else None
            if not isinstance(kind, str):
                warnings.append(f"objects[{i}] = {show(o)}: " + (f"kind {show(kind)} is not a string"
                                if isinstance(o, dict) else f"a {type(o).__name__}, not a Kubernetes "
                                "object (a map)") + "; left out")
                continue
            by_kind.setdefault(kind, []).append(o)
        cluster = cluster_from_nodes(by_kind.pop("Node", []))
        classes = priority_classes(by_kind.pop("PriorityClass", []))
        pods = by_kind.pop("Pod", [])
        created, job_errors = expand_jobs(by_kind.get("KaiwoJob", []), pods, scheduler_name)
        snap = cls(cluster, cluster.empty_state(), objects=by_kind, job_errors=job_errors,
                   class_errors=class_errors(classes), warnings=warnings)
        waiting = [w for obj in pods + created if (w := snap.add_pod(obj, classes, scheduler_name))]
        snap.pending, held = hold_waiting_gangs(snap.pending, waiting)
        snap.ignored += held
        snap.charge_running()
        # Columns now, while the snapshot is built, so that every cycle on it only selects rows.
        snap.running_table()
        snap.pending_table()
        return snap

    def add_pod(self, obj: dict, classes: dict, scheduler_name: str = SCHEDULER_NAME):
        """Sort one Pod object into running / pending / rejected / ignored / finished. A bound,
        unfinished pod is never rejected (decoded leniently, problems become warnings). Returns
        (PodRequest, reason) for a Kaiwo pod that must wait (scheduling gates), whose gang waits too."""
        phase = pod_phase(obj)
        req, problems = decode_pod(obj, classes)
        self.warnings += problems
        if isinstance(req, PodError):
            self.rejected.append(req)
        elif phase in FINISHED_PHASES:
            self.finished.append(req)
        elif req.node:
            self.running.append(req)
        else:
            why, waits = waiting_reason(obj, scheduler_name)
            if why is None:
                self.pending.append(req)
                return None
            self.ignored.append((req.name, why))
            return (req, why) if waits else None
        return None

    # ------------------------------------------------------------------------ running pods
    def charge_running(self) -> None:
        """Charge every running pod to its node: exactly where annotated, else let the kernel
        choose devices on that node. Problems become warnings; running pods are never dropped."""
        c, s = self.cluster, self.state
        self.dev_xcd_held = np.zeros(c.n_devices, dtype=np.uint32)
        unannotated = []
        for j, req in enumerate(self.running):
            n = c.index(req.node)
            if n < 0:
                self.warnings.append(f"pod {req.name}: runs on node {req.node!r}, which is not in "
                                     "the cluster (or could not be read); charged to no node, but "
                                     "still to its queue (it runs somewhere, so it uses its quota)")
                continue
            if req.kind != KIND_NONE and req.assignment is None:
                unannotated.append((j, req, n))
                continue
            s.node_cpu_free[n] -= req.cpu
            s.node_mem_free[n] -= req.memory
            s.node_pods_free[n] -= 1
            if req.kind != KIND_NONE:
                self.charge_devices(req, n)
        if unannotated:  # placed in turn: by name and uid, so that list order does not pick devices
            self._place_unannotated(sorted(unannotated, key=lambda t: (t[1].name, t[1].uid)))
        self._clamp()

    def charge_devices(self, req: PodRequest, n: int) -> None:
        """Charge the devices of ``req.assignment`` on node index ``n`` to the state (a conflict
        with another pod's charge becomes a warning, never an error). The controller's cache calls
        this to re-charge one device at a time, so it must not touch node CPU or memory."""
        c, s = self.cluster, self.state
        for d in req.assignment:
            dev = c.device_index(n, d["gpu"], d["partition"])
            if dev < 0:
                self.warnings.append(f"pod {req.name}: assignment names gpu {d['gpu']} partition "
                                     f"{d['partition']}, which node {req.node} does not have")
                continue
            foreign = [x for x in d["xcds"] if not int(c.dev_xcd_mask[dev]) >> x & 1]
            if foreign:  # charged without them (PodTable drops them too): say so
                self.warnings.append(f"pod {req.name}: assignment names xcds {foreign} on {req.node} gpu "
                                     f"{d['gpu']} partition {d['partition']}, which has xcds "
                                     f"{[x for x in range(32) if int(c.dev_xcd_mask[dev]) >> x & 1]}; "
                                     "ignored")
                d = dict(d, xcds=[x for x in d["xcds"] if x not in foreign])
            if req.kind == KIND_WHOLE or req.exclusive:
                if s.dev_state[dev] != 0:
                    self.warnings.append(f"pod {req.name}: device gpu {d['gpu']} partition "
                                         f"{d['partition']} on {req.node} is also used by another pod")
                s.dev_milli_free[dev] = 0
                s.dev_mem_free[dev] = 0
                s.dev_xcd_free[dev] = 0
                s.dev_state[dev] = EXCLUSIVE
                continue
            mask = 0
            for x in d["xcds"]:
                mask |= 1 << x
            if req.kind == KIND_XCD:
                if mask & ~int(s.dev_xcd_free[dev]):
                    self.warnings.append(f"pod {req.name}: XCDs {d['xcds']} on {req.node} gpu "
                                         f"{d['gpu']} are held by another pod too")
                self.dev_xcd_held[dev] |= np.uint32(mask)
            # A time-sliced pod runs on the XCDs of its CU mask: no XCD-isolated pod may take them
            # later (they can still be time-shared), so they leave the pool of free XCDs too.
            s.dev_xcd_free[dev] &= np.uint32(~mask & 0xFFFFFFFF)
            milli = round(d["fraction"] * 1000)
            nx = bin(int(c.dev_xcd_mask[dev])).count("1")
            if req.kind == KIND_XCD and nx:  # it holds its XCDs' share, whatever the fraction says
                milli = max(milli, bin(mask & int(c.dev_xcd_mask[dev])).count("1") * 1000 // nx)
            s.dev_milli_free[dev] -= milli
            s.dev_mem_free[dev] -= d["memoryMiB"]
            if s.dev_state[dev] == EXCLUSIVE:
                self.warnings.append(f"pod {req.name}: shares gpu {d['gpu']} on {req.node} with a "
                                     "pod that holds it exclusively")
            else:
                s.dev_state[dev] = SHARED

    def _place_unannotated(self, items) -> None:
        """Running GPU pods without an assignment (``items``: their index in ``running``, the pod,
        its node): the kernel picks their devices, restricted to their own node (one constraint
        class per node). Each placed pod is replaced in ``running`` by a copy with the devices as
        its assignment -- pods are never changed in place, so columns read from them stay true."""
        from .placement import place  # local: placement imports the compiled module
        from ..plugins import Pipeline

        reqs = [r for _, r, _ in items]
        batch = batch_from_requests(reqs)
        nodes = np.array([n for _, _, n in items], dtype=np.int64)
        uniq, cls = np.unique(nodes, return_inverse=True)
        batch.cls = cls.astype(np.int32)
        batch.constraints = [("node", int(u)) for u in uniq]
        pin = _PinToNode(uniq)
        result = place(self.cluster, self.state, batch, Pipeline([pin, "binpack"]),
                       xcd_held=self.dev_xcd_held)
        for i in np.flatnonzero(~result.placed):
            _, req, n = items[i]
            # It runs there anyway: charge what we know, say what we could not.
            self.state.node_cpu_free[n] -= req.cpu
            self.state.node_mem_free[n] -= req.memory
            self.state.node_pods_free[n] -= 1
            self.warnings.append(f"pod {req.name}: runs on {req.node} but its GPU request does not "
                                 f"fit the free devices there ({result.reason(i)}); CPU and memory "
                                 "charged, devices unknown")
        for i in np.flatnonzero(result.placed):
            reqs[i] = self.running[items[i][0]] = replace(reqs[i], assignment=result.devices(i))
            for k in range(int(result.asg_start[i]), int(result.asg_start[i + 1])):
                d, x = int(result.asg_dev[k]), np.uint32(result.asg_xcds[k])
                if reqs[i].kind == KIND_XCD:
                    self.dev_xcd_held[d] |= x
                elif reqs[i].kind != KIND_WHOLE and not reqs[i].exclusive:  # time-sliced: claim
                    mask = 0
                    for xcd in reqs[i].assignment[k - int(result.asg_start[i])]["xcds"]:
                        mask |= 1 << xcd
                    self.state.dev_xcd_free[d] &= np.uint32(~mask & 0xFFFFFFFF)

    def _clamp(self) -> None:
        """Input that overcommits (two schedulers, stale dumps) must not break kernel invariants."""
        s = self.state
        for name, what in (("node_cpu_free", "CPU on nodes"), ("node_mem_free", "memory on nodes"),
                           ("node_pods_free", "pod slots on nodes"),
                           ("dev_milli_free", "GPU share on devices"),
                           ("dev_mem_free", "GPU memory on devices")):
            arr = getattr(s, name)
            neg = arr < 0
            if neg.any():
                self.warnings.append(f"running pods overcommit {what}: {int(neg.sum())} of them")
                arr[neg] = 0


class _PinToNode(Plugin):
    """Filter (not registered): constraint class k may only use node ``nodes[k]``."""

    name = "pin-to-node"

    def __init__(self, nodes):
        super().__init__()
        self.nodes = nodes

    def filter(self, ctx):
        mask = np.zeros(ctx.shape, dtype=np.uint8)
        mask[np.arange(len(self.nodes)), self.nodes] = 1
        return mask


__all__ = ["Snapshot", "ObjectError", "pod_name"]
