"""Reclaim across queues and preemption within a queue: the step after placement in a cycle.

After placement, pending pods that did not fit (in placement order) may take capacity from running
pods. ``_core.plan_preemptions`` (csrc/preempt.hpp) decides, for each such pod in turn, which
running pods to evict and on which node, by three rules:

``within-queue``
    a running pod of the preemptor's own queue with strictly lower priority that has run at least
    the queue's ``preemptMinRuntime``;
``reclaim-conservative`` / ``reclaim-aggressive``
    a running pod of another queue that has run at least *its* queue's ``reclaimMinRuntime``, when
    the preemptor's queue (and its ancestors below the common ancestor) stays within its entitlement
    with the pod added, and the victim's queue (and its ancestors below the common ancestor) stays at
    or above its own with the victim gone -- the entitlement being the deserved quota for a
    ``conservative`` preemptor queue and the fair share for an ``aggressive`` one. So a queue only
    ever reclaims what it is owed, never pushes another below what that one is owed, and the victim's
    queue is never entitled to reclaim straight back (no ping-pong).

Never a non-preemptible pod (priority at or above :attr:`PreemptionConfig.nonpreemptible_priority`,
or the annotation ``kaiwo.ai/preemptible: "false"``), never a pod placed in this very cycle. Per
node, candidates are taken in (priority, runtime) order until the pod fits by placement's own
checks, then every victim that turns out not to be needed is dropped again; the node with the fewest
victims wins (then the lowest sum of their priorities, then the node order).

Gangs are all or nothing here too. The unplaced members of a gang are tried together, in order,
each as a pod alone but on the state the members before it left (their victims gone, counted as
freed capacity and as queue allocation given back; their own requests charged), so one member's
victims can make room for the next and the queue rules judge the gang's cumulative take. The gang
keeps its nodes and victims only if enough members got one: its ``kaiwo.ai/gang-min-members``
(default: every member) less the members running or placed this cycle; otherwise nothing is evicted
for it (the kernel's ``gang`` / ``gang_need``). A gang counts its members against
``max_preemptors`` and is never cut by it (:func:`preemptor_rows`). Its nominated members go first
next cycle, whole and consecutive (:mod:`.cycle`), so placement places the gang together once the
victims are gone.

A preemptor does not run at once: its victims must terminate first. It stays pending with a reason
that names the node and the victims (:meth:`PreemptionPlan.pending_reasons`), and
:meth:`PreemptionPlan.nominations` gives the node and devices it is nominated for. The evictions are
:meth:`PreemptionPlan.preemptions`, the ``preemptions`` entries of ``kaiwo schedule --output json``.

Integration (one call after placement, see :func:`plan_preemptions`)::

    decisions = Decisions(...)                                   # as the cycle builds it
    plan = plan_preemptions(decisions, state, class_mask=mask)  # state and mask from placement
    doc["preemptions"] = plan.preemptions()
    reasons = plan.pending_reasons()                             # override the preemptors' reasons
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import _core
from .accounting import assigned_gpu, held_vectors, request_vectors
from ..model.cluster import EXCLUSIVE, SHARED, ClusterState, kernel_view
from .fairness import subtree_sums
from .gangs import gang_id
from .placement import default_pipeline
from .reservations import device_holds
from ..plugins import CycleContext
from .podtable import PodTable, csr_rows
from . import model_columns
from .queues import RESOURCES, human
from ..model.requests import ANN_PREEMPTIBLE, KIND_NONE, KIND_WHOLE, KIND_XCD

#: Rule names, indexed by the kernel's rule codes (``_core.RULE_*``).
RULES = tuple(_core.RULE_NAMES)
RULE_WITHIN_QUEUE = _core.RULE_WITHIN_QUEUE
RULE_RECLAIM_CONSERVATIVE = _core.RULE_RECLAIM_CONSERVATIVE
RULE_RECLAIM_AGGRESSIVE = _core.RULE_RECLAIM_AGGRESSIVE
CHECK_RESOURCES = ("quota", "all")
_BATCH_KEYS = ("cpu", "mem", "kind", "count", "milli", "gpu_mem", "exclusive", "cls")


@dataclass(frozen=True)
class PreemptionConfig:
    """How preemption and reclaim behave.

    Attributes
    ----------
    enabled : bool
        False: plan nothing.
    nonpreemptible_priority : int
        Running pods with this priority or higher are never evicted (default: the
        ``system-cluster-critical`` PriorityClass value and above).
    check_resources : {"quota", "all"}
        Which resources the queue rules may look at; of those, they judge only the ones the pod
        lacks on the node being tried (its devices do not fit the free ones, its CPU or memory
        exceeds what is free; all of them if only a pod slot is missing): a queue far over its GPU
        entitlement gives up GPUs whatever its CPU use says. ``"all"``: every resource (GPU, CPU,
        memory). ``"quota"`` (default): the resources some queue has a positive quota for -- with
        quotas on GPUs only (CPU and memory 0, or unlimited everywhere), nobody deserves CPU, or
        everybody all it asks for, and either way CPU would block every reclaim on a node short
        of CPU. A pod that requests none of the looked-at resources it lacks on a node (no queue
        has a GPU quota, the node is short of GPUs) is judged on all it lacks there: no reclaim
        ever goes unjudged, or the victim's queue could take its GPUs straight back (ping-pong).
    max_preemptors : int
        Unplaced pods (the first, in placement order) that may look for victims in one cycle; the
        rest wait for the next cycle. A gang counts its unplaced members and is never split: one
        that would cross the limit waits whole (unless it comes first: then it alone is tried).
    """

    enabled: bool = True
    nonpreemptible_priority: int = 2_000_000_000
    check_resources: str = "quota"
    max_preemptors: int = 256

    def __post_init__(self):
        if self.check_resources not in CHECK_RESOURCES:
            raise ValueError(f"check_resources: {self.check_resources!r} is not one of "
                             f"{', '.join(CHECK_RESOURCES)}")


@dataclass
class PreemptionPlan:
    """What the preemption step decided, columnar inside, decoded on demand.

    Preemptor ``i`` is row ``rows[i]`` of the placement batch; ``node[i] >= 0`` when it got a node.
    Its victims are ``victims[vic_start[i]:vic_start[i+1]]`` (indices into ``snapshot.running``)
    with the rules ``vic_rule[...]``; its devices are ``asg_*[asg_start[i]:asg_start[i+1]]``.
    """

    snapshot: object                 #: the cycle's Snapshot
    batch: object                    #: the placement batch (PodBatch, in placement order)
    tree: object                     #: the QueueTree
    rows: np.ndarray                 #: int64[P] placement-batch rows tried, in order
    node: np.ndarray                 #: int32[P] node, -1 = nothing
    vic_start: np.ndarray            #: int64[P+1]
    victims: np.ndarray              #: int64 index into snapshot.running
    vic_rule: np.ndarray             #: int8 RULE_*
    asg_start: np.ndarray            #: int64[P+1]
    asg_dev: np.ndarray              #: int32
    asg_milli: np.ndarray            #: int64
    asg_mem: np.ndarray              #: int64
    asg_xcds: np.ndarray             #: uint32
    state: ClusterState | None       #: free state after the evictions and the preemptors
    allocated: np.ndarray            #: int64[Q, 3] queue use after the plan (internal rows = sums)
    queue_rows: np.ndarray | None = None  #: queue row of every placement-batch row
    warnings: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def placed(self) -> np.ndarray:
        return self.node >= 0

    def victims_of(self, i: int) -> list[int]:
        return self.victims[self.vic_start[i]:self.vic_start[i + 1]].tolist()

    def _names(self):
        return self.snapshot.cluster.names, self.batch.names, self.snapshot.running

    def preemptions(self) -> list[dict]:
        """``preemptions`` of ``kaiwo schedule --output json``: one entry per evicted pod,
        ``{pod, reason, preemptor, node, rule}``, in the order they were decided."""
        nodes, pending, running = self._names()
        out = []
        for i in np.flatnonzero(self.placed):
            pre = int(self.rows[i])
            for k in range(int(self.vic_start[i]), int(self.vic_start[i + 1])):
                v, rule = int(self.victims[k]), int(self.vic_rule[k])
                out.append({"pod": running[v].name, "reason": self._reason(pre, v, rule),
                            "preemptor": pending[pre], "node": nodes[int(self.node[i])],
                            "rule": RULES[rule]})
        return out

    def _reason(self, pre: int, v: int, rule: int) -> str:
        t, b, run = self.tree, self.batch, self.snapshot.running[v]
        pname = b.names[pre]
        qp = t.specs[int(self.queue_rows[pre])].name
        if rule == RULE_WITHIN_QUEUE:
            return (f"preempted by {pname} of the same queue {qp} (priority {int(b.priority[pre])} > "
                    f"{run.priority})")
        qv = run.queue or "default"
        ent = "deserved quota" if rule == RULE_RECLAIM_CONSERVATIVE else "fair share"
        strategy = "conservative" if rule == RULE_RECLAIM_CONSERVATIVE else "aggressive"
        return (f"reclaimed by queue {qp} for {pname}: {qp} stays within its {ent} and {qv} stays at "
                f"or above its own ({qp} reclaimStrategy {strategy})")

    def pending_reasons(self) -> dict:
        """Reason of every preemptor that got a node: it waits for its victims to terminate. A gang
        member's reason names its gang and how many members were nominated with it."""
        nodes, pending, running = self._names()
        b = self.batch
        gang = getattr(b, "gang", None)
        got = self.placed
        together = {}
        if gang is not None and got.any():
            g = gang[self.rows[got]]
            together = dict(zip(*np.unique(g[g >= 0], return_counts=True)))
        out = {}
        for i in np.flatnonzero(got):
            pre, n = int(self.rows[i]), nodes[int(self.node[i])]
            g = int(gang[pre]) if gang is not None else -1
            with_gang = (f" with gang {b.gang_names[g] if g < len(b.gang_names) else f'#{g}'} "
                         f"({int(together[g])} member(s) nominated together)") if g >= 0 else ""
            vs = self.victims_of(i)
            if vs:
                rules = sorted({RULES[int(r)] for r in self.vic_rule[self.vic_start[i]:self.vic_start[i + 1]]})
                names = ", ".join(running[v].name for v in vs)
                out[pending[pre]] = (f"nominated to {n}{with_gang}: preempting {len(vs)} pod(s) ({names}; "
                                     f"{', '.join(rules)}); waits for them to terminate")
            elif g >= 0:
                out[pending[pre]] = (f"nominated to {n}{with_gang}: fits without victims of its own; "
                                     "waits for the gang's preempted pods to terminate")
            else:
                out[pending[pre]] = (f"nominated to {n}: fits in capacity freed by this cycle's "
                                     "preemptions; waits for the preempted pods to terminate")
        return out

    def nominations(self) -> list[dict]:
        """``{pod, node, devices, victims}`` for every preemptor that got a node (devices as the
        ``kaiwo.ai/gpu-assignment`` entries)."""
        nodes, pending, running = self._names()
        c = self.snapshot.cluster
        out = []
        for i in np.flatnonzero(self.placed):
            pre = int(self.rows[i])
            devs = []
            for k in range(int(self.asg_start[i]), int(self.asg_start[i + 1])):
                d = int(self.asg_dev[k])
                frac = self.batch.milli[pre] if self.batch.kind[pre] != KIND_XCD else self.asg_milli[k]
                devs.append({"gpu": int(c.dev_gpu[d]), "partition": int(c.dev_partition[d]),
                             "xcds": [x for x in range(8) if int(self.asg_xcds[k]) >> x & 1],
                             "fraction": int(frac) / 1000, "memoryMiB": int(self.asg_mem[k])})
            out.append({"pod": pending[pre], "node": nodes[int(self.node[i])], "devices": devs,
                        "victims": [running[v].name for v in self.victims_of(i)]})
        return out

    def queue_allocated(self) -> list[dict]:
        """Per queue, what it uses after the plan, as users write amounts."""
        return [{"name": s.name, "allocated": {res: human(r, int(self.allocated[q, r]))
                                               for r, res in enumerate(RESOURCES)}}
                for q, s in enumerate(self.tree.specs)]


def _empty_plan(decisions, state, allocated, warnings, t0) -> PreemptionPlan:
    z64 = np.zeros(0, np.int64)
    p = decisions.placement
    plan = PreemptionPlan(decisions.snapshot, p.batch if p is not None else None, decisions.tree,
                          z64, np.zeros(0, np.int32), np.zeros(1, np.int64), z64, np.zeros(0, np.int8),
                          np.zeros(1, np.int64), np.zeros(0, np.int32), z64, z64, np.zeros(0, np.uint32),
                          state, allocated, np.asarray(decisions.pending_rows), warnings=warnings,
                          timings={"preempt": time.perf_counter() - t0})
    return plan


def preemptible_flags(running: PodTable, config: PreemptionConfig) -> np.ndarray:
    """uint8 per running pod: 0 at or above the priority threshold or annotated
    ``kaiwo.ai/preemptible: "false"`` (decoded into ``PodRequest.preemptible``; a malformed value
    rejects the pod when it is read)."""
    return ((running.batch.priority < config.nonpreemptible_priority) & running.preemptible).astype(np.uint8)


def runtimes(running: PodTable, now: float) -> np.ndarray:
    """Seconds each running pod has run: since ``status.startTime`` (``PodRequest.started``), or
    since its creation when the start time is unknown; never negative."""
    return np.maximum(0.0, now - running.start)


def state_after_placement(decisions) -> ClusterState:
    """The free state the cycle's placement left: the snapshot's state charged with every binding
    exactly as placement charged it."""
    snap, p = decisions.snapshot, decisions.placement
    s = snap.state.copy()
    if p is None:
        return s
    b = p.batch
    for i in np.flatnonzero(p.placed):
        n = int(p.node[i])
        s.node_cpu_free[n] -= b.cpu[i]
        s.node_mem_free[n] -= b.mem[i]
        s.node_pods_free[n] -= 1
        whole = b.kind[i] == KIND_WHOLE or (b.kind[i] != KIND_NONE and b.exclusive[i])
        for k in range(int(p.asg_start[i]), int(p.asg_start[i + 1])):
            d = int(p.asg_dev[k])
            if whole:
                s.dev_milli_free[d], s.dev_mem_free[d], s.dev_xcd_free[d], s.dev_state[d] = 0, 0, 0, EXCLUSIVE
                continue
            s.dev_milli_free[d] -= p.asg_milli[k]
            s.dev_mem_free[d] -= p.asg_mem[k]
            if b.kind[i] == KIND_XCD:
                s.dev_xcd_free[d] &= ~p.asg_xcds[k]
            s.dev_state[d] = SHARED
    return s


def preemptor_rows(placement, rows, limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The placement-batch rows the kernel tries, in order, and the kernel's ``gang_need`` per row
    (None when no row is a gang member).

    ``rows`` (unplaced rows, in the order to try) with a gang's members moved together to its first
    member's place. A gang's need is its members still to place (``batch.gang_need``, running
    members already counted) less those placement placed this cycle; a gang whose rows here cannot
    reach it is left out. ``limit``: at most that many rows, the first ones, a gang counted by its
    members and never cut: one that would cross the limit waits whole, unless it is the first (a
    gang larger than the limit would otherwise never preempt)."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    rows = rows[~placement.placed[rows]]
    gang = getattr(placement.batch, "gang", None)
    if gang is None or not (gang[rows] >= 0).any():
        return (rows if limit is None else rows[:limit]), None
    g = np.asarray(gang, dtype=np.int64)
    n_gangs = int(g.max()) + 1
    placed = np.bincount(g[placement.placed & (g >= 0)], minlength=n_gangs)
    mine = g[rows]
    here = np.bincount(mine[mine >= 0], minlength=n_gangs)
    need = np.zeros(n_gangs, np.int64)
    need[g[g >= 0]] = placement.batch.gang_need[g >= 0]
    need = np.maximum(0, need - placed)
    keep = (mine < 0) | (here[np.maximum(mine, 0)] >= need[np.maximum(mine, 0)])
    rows, mine = rows[keep], mine[keep]
    # Members together at the first one's place: sort by (position of the unit's first row, position).
    pos = np.arange(len(rows))
    first = pos.copy()
    if len(rows):
        ids, at = np.unique(mine[mine >= 0], return_index=True)
        first_of = np.zeros(n_gangs, np.int64)
        first_of[ids] = pos[mine >= 0][at]
        first[mine >= 0] = first_of[mine[mine >= 0]]
    order = np.lexsort((pos, first))
    rows, mine, first = rows[order], mine[order], first[order]
    if limit is not None and len(rows) > limit:
        # Cut at the limit; a gang the cut splits waits whole -- unless it comes first, so a gang
        # larger than the limit is not shut out of preemption for good.
        cut = max(limit, 0)
        if cut > 0 and mine[cut] >= 0 and mine[cut - 1] == mine[cut]:
            start = int(np.searchsorted(first, first[cut], side="left"))
            cut = start if start > 0 else int(np.searchsorted(first, first[cut], side="right"))
        rows, mine = rows[:cut], mine[:cut]
    return rows, np.where(mine >= 0, need[np.maximum(mine, 0)], 0).astype(np.int32)


def plan_preemptions(decisions, state: ClusterState | None = None, *, class_mask: np.ndarray | None = None,
                     pipeline=None, config: PreemptionConfig = PreemptionConfig(),
                     now: float | None = None, rows=None) -> PreemptionPlan:
    """Plan evictions for the pods placement could not place.

    Parameters
    ----------
    decisions : Decisions
        The cycle's decisions so far (:class:`kaiwo_core.scheduling.cycle.Decisions`): ``snapshot``,
        ``placement``, ``tree``, ``shares``, ``pending_rows`` (queue row per placement-batch row),
        ``running_rows`` (queue row per ``snapshot.running`` pod, -1 = none) and
        ``queue_allocated()`` (running + this cycle's bindings, per queue).
    state : ClusterState, optional
        The free state after this cycle's placements (the state ``place`` updated); not modified.
        Default: rebuilt from the snapshot and the placement (:func:`state_after_placement`).
    class_mask : uint8[C, N], optional
        The class mask placement used for ``placement.batch`` (nodeSelector, taints, GPU model...).
        Default: ``pipeline.class_mask`` on the current state.
    pipeline : Pipeline, optional
        Used only when ``class_mask`` is not given (default: the built-in filters).
    config : PreemptionConfig
    now : float, optional
        Epoch seconds for running pods' runtimes (since ``status.startTime``, or since creation
        when unknown); default the newest creation time among the snapshot's pods, as the cycle
        does.
    rows : array of int, optional
        Placement-batch rows to try, in order (a gang's members are tried together, at its first
        member's place). Default: the rows placement left unplaced, the first
        ``config.max_preemptors`` of them (see :func:`preemptor_rows`).

    Returns
    -------
    PreemptionPlan
    """
    t0 = time.perf_counter()
    snap, placement, tree, shares = decisions.snapshot, decisions.placement, decisions.tree, decisions.shares
    cluster = snap.cluster
    if state is None:
        state = state_after_placement(decisions)
    allocated = np.ascontiguousarray(decisions.queue_allocated(), dtype=np.int64)
    warnings: list = []
    if not config.enabled or placement is None or len(placement.batch) == 0 or len(tree) == 0:
        return _empty_plan(decisions, state, allocated, warnings, t0)
    batch = placement.batch
    # Only the first few in placement order by default: they are the most entitled, and each
    # preemptor costs a search over nodes and victims (at scale M thousands of unplaced pods
    # otherwise make this step dominate the cycle).
    rows, gang_need = preemptor_rows(placement, np.flatnonzero(~placement.placed) if rows is None else rows,
                                     config.max_preemptors if rows is None else None)
    if len(rows) == 0:
        return _empty_plan(decisions, state, allocated, warnings, t0)
    run = snap.running_table()
    if now is None:
        created = np.concatenate([snap.pending_table().batch.created, run.batch.created])
        now = float(created.max()) if created.size else 0.0

    # Which resources the queue rules may judge: an unlimited quota (-1) says nothing about who is
    # over, so only a positive one counts. The kernel judges a reclaim on the checked resources the
    # pod lacks on the node, or on all it lacks when it requests none of those.
    if config.check_resources == "all" or not len(tree):
        keep = np.ones(3, np.uint8)
    else:
        keep = (tree.quota > 0).any(axis=0).astype(np.uint8)

    # Running rows: the snapshot's running pods on known nodes (selected from the snapshot's
    # columns), then this cycle's placements (they hold devices but are never victims).
    run_idx = np.flatnonzero(run.node >= 0)
    # By namespace/name and uid, not list order: the kernel breaks victim ties by row.
    run_idx = run_idx[np.argsort(run.rank[run_idx], kind="stable")]
    rb = {k: getattr(run.batch, k)[run_idx] for k in ("kind", "exclusive", "priority", "cpu", "mem")}
    run_req = run.held[run_idx]  # what they hold: what evicting them frees
    flags = preemptible_flags(run, config)[run_idx]
    flags = _protect_started_gangs(flags, run, run_idx, placement)
    queue = np.asarray(decisions.running_rows, np.int32)[run_idx]
    a_start, a_dev, a_milli, a_mem, a_xcds = run.charges(run_idx)
    placed = np.flatnonzero(placement.placed)
    pend_req = request_vectors(batch, cluster)  # preemptors: estimated (accounting.py)
    placed_req = held_vectors(placement, cluster)[placed]
    p_start, p_idx = csr_rows(placement.asg_start, placed)
    node_res = model_columns.node_columns(tree, cluster)
    if tree.models:  # GPUs also in their node's model column; preemptors in their fixed model's
        run_req = model_columns.widen(tree, run_req, node_res[run.node[run_idx]])
        placed_req = model_columns.widen(tree, placed_req, node_res[placement.node[placed]])
        pend_req = model_columns.widen(tree, pend_req, model_columns.pending_columns(tree, batch))
    kind = np.concatenate([rb["kind"], batch.kind[placed]])
    excl = np.concatenate([rb["exclusive"], batch.exclusive[placed]])
    req_all = np.ascontiguousarray(np.concatenate([run_req, placed_req]), dtype=np.int64)
    exclusive = ((kind == KIND_WHOLE) | ((kind != KIND_NONE) & (excl == 1))).astype(np.uint8)
    running_arrays = {
        "node": np.concatenate([run.node[run_idx], placement.node[placed].astype(np.int32)]),
        "queue": np.concatenate([queue, np.asarray(decisions.pending_rows, np.int32)[placed]]),
        "priority": np.concatenate([rb["priority"], batch.priority[placed]]).astype(np.int64),
        "preemptible": np.concatenate([flags, np.zeros(len(placed), np.uint8)]),
        "runtime": np.concatenate([runtimes(run, now)[run_idx], np.zeros(len(placed))]),
        "req": req_all,
        "cpu": np.concatenate([rb["cpu"], batch.cpu[placed]]).astype(np.int64),
        "mem": np.concatenate([rb["mem"], batch.mem[placed]]).astype(np.int64),
        "asg_start": np.concatenate([a_start, a_start[-1] + p_start[1:]]),
        "asg_dev": np.concatenate([a_dev, placement.asg_dev[p_idx]]).astype(np.int32),
        "asg_milli": np.concatenate([a_milli, placement.asg_milli[p_idx]]).astype(np.int64),
        "asg_mem": np.concatenate([a_mem, placement.asg_mem[p_idx]]).astype(np.int64),
        "asg_xcds": np.concatenate([a_xcds, placement.asg_xcds[p_idx]]).astype(np.uint32),
        "exclusive": exclusive,
        # Claimed XCDs: the snapshot takes every non-exclusive running GPU pod's XCDs (XCD pods' own,
        # time-sliced pods' CU masks) out of the free XCDs; placement claims XCD pods' only.
        "xcd": np.concatenate([(rb["kind"] != KIND_NONE) & ~exclusive[:len(run_idx)].astype(bool),
                               (batch.kind[placed] == KIND_XCD) & (batch.exclusive[placed] == 0)]).astype(np.uint8),
    }

    # Pending rows: the placement batch's rows, with their class mask.
    if class_mask is None:
        pipeline = pipeline or default_pipeline()
        class_mask = pipeline.class_mask(CycleContext(cluster, state, batch))
    pending = {k: np.ascontiguousarray(getattr(batch, k)[rows]) for k in _BATCH_KEYS}
    pending["class_mask"] = np.ascontiguousarray(class_mask, dtype=np.uint8)
    # Devices held by reservations: the fit check follows placement's (held devices, per class).
    pending.update(device_holds(cluster, batch.constraints, decisions.reservations))
    pending["queue"] = np.asarray(decisions.pending_rows, np.int32)[rows]
    pending["priority"] = np.ascontiguousarray(batch.priority[rows], dtype=np.int64)
    pending["req"] = np.ascontiguousarray(pend_req[rows], dtype=np.int64)
    if gang_need is not None:
        pending["gang"] = np.ascontiguousarray(batch.gang[rows], dtype=np.int32)
        pending["gang_need"] = gang_need

    queues = {
        "parent": tree.parent, "deserved": shares.deserved, "fair_share": shares.fair_share,
        "allocated": allocated,
        "strategy": np.array([_core.RECLAIM_CONSERVATIVE if s.reclaim == "conservative"
                              else _core.RECLAIM_AGGRESSIVE for s in tree.specs], np.int8),
        "preempt_min_runtime": np.array([s.preempt_min_runtime for s in tree.specs], np.float64),
        "reclaim_min_runtime": np.array([s.reclaim_min_runtime for s in tree.specs], np.float64),
        "checked": keep,
    }
    if tree.models:
        queues["node_res"] = node_res
    out = _core.plan_preemptions(kernel_view(cluster, state), running_arrays, pending, queues)
    if out["fit_mismatch"]:
        warnings.append(f"{out['fit_mismatch']} pod(s) left pending: placement refused a node the "
                        "preemption kernel's fit check accepted (csrc/preempt.cpp must follow placement)")

    # Queue use after the plan, in every resource.
    vic = out["vic"]
    delta = np.zeros_like(allocated)
    leaf_q = running_arrays["queue"][vic]
    ok = leaf_q >= 0
    np.subtract.at(delta, leaf_q[ok], np.concatenate([run_req, placed_req])[vic][ok])
    got = out["node"] >= 0
    got_req = pend_req[rows].copy()  # a preemptor that got devices is charged what it holds
    got_req[:, 0] = assigned_gpu(batch.kind[rows], batch.exclusive[rows], out["asg_start"], out["asg_dev"],
                                 out["asg_milli"], out["asg_mem"], out["asg_xcds"], cluster, got_req[:, 0])
    if tree.models:
        got_req = model_columns.widen(tree, got_req[:, :3], np.where(got, node_res[np.maximum(out["node"], 0)], -1))
    np.add.at(delta, pending["queue"][got], got_req[got])
    after = allocated + subtree_sums(tree, delta)

    new_state = ClusterState(out["node_cpu_free"], out["node_mem_free"], out["node_pods_free"],
                             out["dev_milli_free"], out["dev_mem_free"], out["dev_xcd_free"], out["dev_state"])
    plan = PreemptionPlan(snap, batch, tree, rows, out["node"], out["vic_start"],
                          np.asarray(run_idx, np.int64)[vic] if len(vic) else np.zeros(0, np.int64),
                          out["vic_rule"], out["asg_start"], out["asg_dev"], out["asg_milli"], out["asg_mem"],
                          out["asg_xcds"], new_state, after, np.asarray(decisions.pending_rows),
                          warnings=warnings, timings={"preempt": time.perf_counter() - t0})
    return plan


def _protect_started_gangs(flags: np.ndarray, run, run_idx: np.ndarray, placement) -> np.ndarray:
    """Running gang members whose gang has members pending in this cycle are no victims in it.

    Placement and the gang's remaining need count them toward the gang's minimum: evicting one in
    the same cycle -- for another queue, or for a gang-mate, which would evict its own gang -- would
    leave the gang started or nominated with fewer members than it needs (all or nothing, across
    running, bound and nominated members)."""
    batch = placement.batch
    gang = getattr(batch, "gang", None)
    if gang is None or not len(run.gang_rows):
        return flags
    gang = np.asarray(gang)
    active = {batch.gang_names[g] for g in np.unique(gang[gang >= 0])}
    if not active:
        return flags
    out = flags.copy()
    member = np.zeros(len(run), bool)
    for i in run.gang_rows.tolist():
        member[i] = gang_id(run.reqs[i]) in active
    out[member[run_idx]] = 0
    return out


__all__ = ["ANN_PREEMPTIBLE", "RULES", "PreemptionConfig", "PreemptionPlan", "plan_preemptions",
           "preemptible_flags", "preemptor_rows", "runtimes", "state_after_placement"]
