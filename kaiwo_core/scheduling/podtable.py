"""Pods as columns: a snapshot's running or pending pods read once into arrays.

A cycle needs the same per-pod facts many times: requests for the queue shares and again for
preemption, queue labels, gang annotations, start times, the devices running pods hold. Read from
the :class:`~kaiwo_core.model.requests.PodRequest` objects one pod at a time, that Python glue cost more
than every kernel of a cycle together at scale M (20,000 running and 10,000 pending pods). A
:class:`PodTable` reads a list of pods once -- when the Snapshot is built -- and a cycle then only
selects rows with numpy and looks up the few *distinct* values (queue names) itself.

A table belongs to the pods it was read from: :meth:`PodTable.describes` checks that a list still
holds those pods (in order) before a Snapshot reuses its table. Pods in a snapshot are
not changed in place once read; code that needs a different pod makes a new one
(``dataclasses.replace``, as :func:`kaiwo_core.scheduling.reservations.grant_access` does).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .gangs import ANN_GANG, ANN_GANG_MIN, unit_of
from .queues import DEFAULT_QUEUE
from ..model.requests import PodBatch, batch_from_requests, first_use, merged_names


@dataclass(frozen=True)
class PodTable:
    """Columns of a list of decoded pods (rows in list order). Arrays are shared: never write them.

    Device charges are a CSR: row ``i`` holds devices ``asg_dev[asg_start[i]:asg_start[i+1]]``
    (from its ``kaiwo.ai/gpu-assignment``; only pods on a node of the cluster hold any). Names
    (queues, units, the batch's constraints) are numbered in order of first use.
    """

    reqs: tuple               #: the PodRequest objects
    cluster: object           #: the Cluster the node and device indices refer to
    batch: PodBatch           #: ``batch_from_requests(reqs)``: requests, priorities, constraint classes
    queue_names: list         #: distinct queue names (the label, or the default queue)
    queue: np.ndarray         #: int32 index into ``queue_names`` per row
    in_gang: np.ndarray       #: bool: has a gang annotation (all other rows are in no gang)
    unit_names: list          #: distinct scheduling units (:func:`kaiwo_core.scheduling.gangs.unit_of`)
    unit: np.ndarray          #: int32 index into ``unit_names`` per row
    start: np.ndarray         #: float64 ``status.startTime``, or the creation time when unknown
    preemptible: np.ndarray   #: bool ``kaiwo.ai/preemptible`` (priority thresholds not applied)
    nominated: np.ndarray     #: bool ``status.nominatedNodeName`` set (a preemptor of an earlier cycle)
    node: np.ndarray          #: int32 node index, -1 = unbound or not in the cluster
    asg_start: np.ndarray     #: int64[P+1]
    asg_dev: np.ndarray       #: int32 device
    asg_milli: np.ndarray     #: int64 compute share charged
    asg_mem: np.ndarray       #: int64 GPU memory charged (MiB)
    asg_xcds: np.ndarray      #: uint32 XCD mask (within the device's own XCDs)

    def __len__(self) -> int:
        return len(self.reqs)

    @classmethod
    def build(cls, reqs: list, cluster, reuse: "PodTable | None" = None) -> "PodTable":
        """Read ``reqs`` (PodRequest) against ``cluster`` (node names, device indices).

        ``reuse``: an earlier table of the same cluster. Rows of the pods it holds (the very same
        objects: pods are not changed in place) are copied from it and only the other pods are
        read -- a controller whose pods mostly stay the same between cycles reads only what
        changed. The result is the table a full read gives.
        """
        reqs = tuple(reqs)
        if reuse is not None and reuse.cluster is cluster and len(reuse) and reqs:
            where = {id(r): i for i, r in enumerate(reuse.reqs)}
            src = np.fromiter((where.get(id(r), -1) for r in reqs), np.int64, count=len(reqs))
            new = np.flatnonzero(src < 0)
            if len(new) < len(reqs):
                fresh = cls._read(tuple(reqs[i] for i in new.tolist()), cluster)
                src[new] = len(reuse) + np.arange(len(new))
                return _joined(reuse, fresh).rows(src)
        return cls._read(reqs, cluster)

    @classmethod
    def _read(cls, reqs: tuple, cluster) -> "PodTable":
        names: dict[str, int] = {}
        queue = np.fromiter((names.setdefault(r.queue or DEFAULT_QUEUE, len(names)) for r in reqs),
                            np.int32, count=len(reqs))
        in_gang = np.fromiter((ANN_GANG in r.annotations or ANN_GANG_MIN in r.annotations for r in reqs),
                              np.bool_, count=len(reqs))
        units: dict[str, int] = {}
        unit = np.fromiter((units.setdefault(unit_of(r), len(units)) for r in reqs), np.int32,
                           count=len(reqs))
        node = np.fromiter((cluster.index(r.node) for r in reqs), np.int32, count=len(reqs))
        return cls(reqs, cluster, batch_from_requests(list(reqs)), list(names), queue, in_gang,
                   list(units), unit,
                   np.fromiter(((r.started or r.created) for r in reqs), np.float64, count=len(reqs)),
                   np.fromiter((r.preemptible for r in reqs), np.bool_, count=len(reqs)),
                   np.fromiter((bool(r.nominated_node) for r in reqs), np.bool_, count=len(reqs)),
                   node, *_charges(cluster, reqs, node))

    def rows(self, idx: np.ndarray) -> "PodTable":
        """The table of the pods ``idx`` (in that order)."""
        idx = np.asarray(idx, dtype=np.int64)
        queue, used_q = first_use(self.queue[idx])
        unit, used_u = first_use(self.unit[idx])
        asg_start, entries = csr_rows(self.asg_start, idx)
        return PodTable(tuple(self.reqs[i] for i in idx.tolist()), self.cluster, self.batch.subset(idx),
                        [self.queue_names[c] for c in used_q], queue, self.in_gang[idx],
                        [self.unit_names[c] for c in used_u], unit, self.start[idx],
                        self.preemptible[idx], self.nominated[idx], self.node[idx], asg_start,
                        self.asg_dev[entries], self.asg_milli[entries], self.asg_mem[entries],
                        self.asg_xcds[entries])

    @cached_property
    def rank(self) -> np.ndarray:
        """int64 rank of each row by (namespace/name, uid): the tie-break of last resort wherever
        decisions are ordered, so that they never depend on the order pods were listed in. Computed
        once per table (frozen dataclass: cached_property writes the instance dict directly)."""
        reqs = self.reqs
        order = sorted(range(len(reqs)), key=lambda i: (reqs[i].name, reqs[i].uid))
        rank = np.empty(len(reqs), dtype=np.int64)
        rank[order] = np.arange(len(reqs), dtype=np.int64)
        return rank

    @cached_property
    def held(self) -> np.ndarray:
        """int64[P, 3] what each pod is charged to its queue: GPU held by its assignment, CPU and
        memory asked (:func:`kaiwo_core.scheduling.accounting.held_vectors`); shared by the cycle's fair shares
        and preemption. Never write it."""
        from .accounting import held_vectors  # local: accounting sits above the tables
        return held_vectors(self, self.cluster)

    @property
    def gang_rows(self) -> np.ndarray:
        """int64 rows with a gang annotation."""
        return np.flatnonzero(self.in_gang)

    def describes(self, reqs: list) -> bool:
        """Whether ``reqs`` holds the pods this table was read from (the same or equal objects), in
        the same order. Tuple comparison tries identity first, so an unchanged list costs one
        C-level pass."""
        return len(reqs) == len(self.reqs) and tuple(reqs) == self.reqs

    def charges(self, rows: np.ndarray) -> tuple:
        """Device charges of ``rows`` (in that order): (asg_start, dev, milli, mem, xcds)."""
        start, idx = csr_rows(self.asg_start, rows)
        return start, self.asg_dev[idx], self.asg_milli[idx], self.asg_mem[idx], self.asg_xcds[idx]


def _joined(a: PodTable, b: PodTable) -> PodTable:
    """Rows of ``a`` then rows of ``b`` in one table (names merged; not compacted)."""
    queue_names, q = merged_names(a.queue_names, b.queue_names)
    unit_names, u = merged_names(a.unit_names, b.unit_names)

    def cat(k):
        return np.concatenate([getattr(a, k), getattr(b, k)])
    return PodTable(a.reqs + b.reqs, a.cluster, a.batch.join(b.batch), queue_names,
                    np.concatenate([a.queue, q[b.queue]]), cat("in_gang"), unit_names,
                    np.concatenate([a.unit, u[b.unit]]), cat("start"), cat("preemptible"), cat("nominated"),
                    cat("node"),
                    np.concatenate([a.asg_start, a.asg_start[-1] + b.asg_start[1:]]), cat("asg_dev"),
                    cat("asg_milli"), cat("asg_mem"), cat("asg_xcds"))


def csr_rows(start: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Select ``rows`` of a CSR with offsets ``start``: the new offsets and the entry indices."""
    rows = np.asarray(rows, dtype=np.int64)
    lo = start[rows]
    lens = start[rows + 1] - lo
    new = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lens, out=new[1:])
    idx = np.repeat(lo - new[:-1], lens) + np.arange(new[-1], dtype=np.int64)
    return new, idx


def _charges(cluster, reqs, nodes) -> tuple:
    """Device charges of pods from their assignments (entries naming a device the node lacks, or a
    device twice, are left out; XCDs outside the device are dropped)."""
    start = np.zeros(len(reqs) + 1, np.int64)
    dev, milli, mem, xcds = [], [], [], []
    for i, (r, n) in enumerate(zip(reqs, nodes.tolist())):
        seen = set()
        for d in (r.assignment or ()) if n >= 0 else ():
            g = cluster.device_index(n, int(d.get("gpu", -1)), int(d.get("partition", 0)))
            if g < 0 or g in seen:
                continue
            seen.add(g)
            mask = 0
            for x in d.get("xcds") or ():
                mask |= 1 << int(x)
            dev.append(g)
            milli.append(max(0, round(float(d.get("fraction", 0)) * 1000)))
            mem.append(max(0, int(d.get("memoryMiB", 0))))
            xcds.append(mask & int(cluster.dev_xcd_mask[g]))
        start[i + 1] = len(dev)
    return (start, np.array(dev, np.int32), np.array(milli, np.int64), np.array(mem, np.int64),
            np.array(xcds, np.uint32))


__all__ = ["PodTable", "csr_rows"]
