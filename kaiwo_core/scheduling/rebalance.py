"""Rebalancing plan: which running pods to move, and where, in the compiled planner (csrc/rebalance.hpp).

Read-only: a plan names moves, it evicts nothing. The plan is made on the state a cycle leaves: one
scheduling cycle runs first (preemption off), its bindings hold their devices and are never moved,
and the pending pods it could not place -- in its order, gangs together -- are the ones moves may
make room for (goal a, *consolidation*). With a measured load per node (``load``, 0..1, e.g.
:func:`kaiwo_core.monitoring.node_load.node_load`'s ``load`` column) nodes above ``hot_threshold``
are relieved (goal c, *hot-spot*); without metrics nothing is hot. With ``defrag_min_gain`` set,
after consolidation, single moves that lower the cluster's fragmentation F (the ``frag``
strategy's measure: free GPU milli the typical pod -- the running and pending pods' shapes by
frequency -- cannot use) by at least that many milli are planned, best first (goal b,
*defragmentation*; off by default: each round tries every movable pod on every node).

Which pods may move: ``kaiwo.ai/migratable: "true"`` on the pod, or ``spec.migratable: true`` on
the KaiwoJob it belongs to; never a non-preemptible pod (``kaiwo.ai/preemptible: "false"`` or a
priority at or above the threshold, as for preemption), never before it has run ``min_runtime``
seconds (and its queue's preemptMinRuntime / reclaimMinRuntime), never beyond a
PodDisruptionBudget, at most ``max_moves`` moves and ``max_moves_per_queue`` per queue, never taking
a queue (or a parent) below its deserved quota.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import _core
from ..model.cluster import kernel_view
from ..model.errors import ObjectError, field_map, guarded, metadata, show
from ..model.requests import KIND_NONE, KIND_WHOLE, KIND_XCD
from ..plugins import CycleContext, Pipeline
from .cycle import schedule
from .disruption import coverage, read_budgets
from .gangs import LABEL_JOB
from .placement import _bits, default_pipeline
from .podtable import csr_rows
from .preemption import PreemptionConfig, preemptible_flags, runtimes, state_after_placement
from .reservations import Reservations

ANN_MIGRATABLE = "kaiwo.ai/migratable"
REASONS = {_core.MOVE_CONSOLIDATION: "consolidation", _core.MOVE_HOT_SPOT: "hot-spot",
           _core.MOVE_DEFRAGMENTATION: "defragmentation"}
_BATCH_KEYS = ("cpu", "mem", "kind", "count", "milli", "gpu_mem", "exclusive", "cls")


@dataclass(frozen=True)
class RebalanceConfig:
    """Limits of a plan (see the module docstring)."""

    max_moves: int = 16
    max_moves_per_queue: int = 8
    max_units: int = 64            #: blocked pending units (pods or gangs) examined, in cycle order
    min_runtime: float = 0.0       #: seconds a pod must have run before it may move
    hot_threshold: float = 0.9     #: measured load above which a node is hot
    defrag_min_gain: float | None = None  #: F (GPU milli) a defragmentation move must recover; None = off
    nonpreemptible_priority: int = PreemptionConfig.nonpreemptible_priority

    def __post_init__(self):
        for name in ("max_moves", "max_moves_per_queue", "max_units"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 1_000_000:
                raise ValueError(f"{name}: {show(v)} must be an integer between 0 and 1000000")
        if not (isinstance(self.min_runtime, (int, float)) and 0 <= self.min_runtime < float("inf")):
            raise ValueError(f"min_runtime: {show(self.min_runtime)} must be a finite number >= 0")
        if not (isinstance(self.hot_threshold, (int, float)) and 0 <= self.hot_threshold < float("inf")):
            raise ValueError(f"hot_threshold: {show(self.hot_threshold)} must be a finite number >= 0")
        g = self.defrag_min_gain
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g < float("inf")):
            raise ValueError(f"defrag_min_gain: {show(g)} must be a finite number >= 0 (or None: off)")


class JobError(ObjectError):
    kind = "KaiwoJob"


@dataclass
class RebalancePlan:
    """The moves, what they unlock, and the numbers behind them."""

    moves: list = field(default_factory=list)       #: dicts of the JSON contract
    unlocks: list = field(default_factory=list)     #: pending pods given room by the moves
    stats: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    errors: list = field(default_factory=list)      #: ObjectError of PDBs / jobs left out

    def to_dict(self) -> dict:
        return {"moves": self.moves, "unlocks": self.unlocks, "stats": self.stats,
                "warnings": self.warnings, "invalidObjects": [e.to_dict() for e in self.errors]}


def _migratable_jobs(snapshot, warnings, errors) -> set:
    """namespace/name of KaiwoJobs with ``spec.migratable: true``."""
    out = set()

    def decode(obj):
        meta = metadata(JobError, "?", obj, "KaiwoJob")
        name = f"{meta.get('namespace') or 'default'}/{meta['name']}"
        spec = field_map(JobError, name, obj.get("spec"), "spec")
        v = spec.get("migratable", False)
        if not isinstance(v, bool):
            raise JobError(name, "spec.migratable", v, "must be true or false; its pods do not move")
        return name, v
    for obj in snapshot.objects.get("KaiwoJob", []):
        got = guarded(JobError, obj, decode, namespaced=True)
        if isinstance(got, ObjectError):
            if got.field == "spec.migratable":
                errors.append(got)
            continue  # a job that cannot be read is reported by the cycle already
        if got[1]:
            out.add(got[0])
    return out


def migratable(reqs, jobs: set, warnings: list) -> np.ndarray:
    """bool per pod: annotated migratable, or of a migratable KaiwoJob. A value other than
    "true"/"false" is a warning naming the pod and counts as "false" (moving is never the default)."""
    out = np.zeros(len(reqs), bool)
    for i, r in enumerate(reqs):
        v = r.annotations.get(ANN_MIGRATABLE)
        if v is not None and v not in ("true", "false"):
            warnings.append(f"pod {r.name}: {ANN_MIGRATABLE} = {show(v)}: must be \"true\" or \"false\"; "
                            "the pod is not moved")
            continue
        ns = r.name.split("/", 1)[0]
        job = r.labels.get(LABEL_JOB)
        out[i] = v == "true" or (v is None and isinstance(job, str) and f"{ns}/{job}" in jobs)
    return out


@dataclass
class KernelInputs:
    """The four dicts ``_core.plan_rebalance`` takes, and what names their rows."""

    cluster: dict
    running: dict
    pending: dict
    config: dict
    reqs: list            #: PodRequest per running row (the movable ones first; bindings follow)
    pending_names: list
    warnings: list
    errors: list
    cycle_seconds: float

    def args(self) -> tuple:
        return self.cluster, self.running, self.pending, self.config


def kernel_inputs(snapshot, config: RebalanceConfig = RebalanceConfig(), load=None, now: float | None = None,
                  pipeline: Pipeline | None = None) -> KernelInputs:
    """Run the cycle (preemption off) and build the planner's inputs (see the module docstring)."""
    t0 = time.perf_counter()
    cluster = snapshot.cluster
    warnings, errors = [], []
    pipeline = pipeline or default_pipeline("binpack")
    decisions = schedule(snapshot, pipeline=pipeline, now=now, preempting=PreemptionConfig(enabled=False))
    t1 = time.perf_counter()
    run = snapshot.running_table()
    if now is None:
        created = np.concatenate([snapshot.pending_table().batch.created, run.batch.created])
        now = float(created.max()) if created.size else 0.0
    tree = decisions.tree

    # Running rows: running pods on known nodes by namespace/name (never list order), then the
    # cycle's bindings (they hold devices, never move).
    idx = np.flatnonzero(run.node >= 0)
    idx = idx[np.argsort(run.rank[idx], kind="stable")]
    reqs = [run.reqs[i] for i in idx.tolist()]
    jobs = _migratable_jobs(snapshot, warnings, errors)
    budgets, pdb_errors = read_budgets(snapshot.objects.get("PodDisruptionBudget", []))
    errors += pdb_errors
    cover, allowed = coverage(budgets, reqs)
    queue = np.asarray(decisions.running_rows, np.int32)[idx]
    min_rt = np.full(len(idx), float(config.min_runtime))
    if len(tree):
        per_q = np.array([max(s.preempt_min_runtime, s.reclaim_min_runtime) for s in tree.specs])
        has_q = queue >= 0
        min_rt[has_q] = np.maximum(min_rt[has_q], per_q[queue[has_q]])
    movable = (migratable(reqs, jobs, warnings)
               & preemptible_flags(run, PreemptionConfig(nonpreemptible_priority=config.nonpreemptible_priority))[idx].astype(bool)
               & (runtimes(run, now)[idx] >= min_rt))
    a_start, a_dev, a_milli, a_mem, a_xcds = run.charges(idx)
    rb = run.batch.subset(idx)
    exclusive = (rb.kind == KIND_WHOLE) | ((rb.kind != KIND_NONE) & (rb.exclusive == 1))

    place = decisions.placement
    reservations = decisions.reservations
    pipe = Pipeline([*pipeline.plugins, Reservations(reservations=reservations)]) if reservations else pipeline
    run_mask = pipe.class_mask(CycleContext(cluster, snapshot.state, rb))
    running = {k: np.ascontiguousarray(getattr(rb, k)) for k in _BATCH_KEYS}
    running.update(
        class_mask=np.ascontiguousarray(run_mask, np.uint8), node=run.node[idx].astype(np.int32),
        movable=movable.astype(np.uint8), xcd=((rb.kind != KIND_NONE) & ~exclusive).astype(np.uint8),
        queue=queue, req=np.ascontiguousarray(run.held[idx], np.int64),
        asg_start=a_start, asg_dev=a_dev.astype(np.int32), asg_milli=a_milli.astype(np.int64),
        asg_mem=a_mem.astype(np.int64), asg_xcds=a_xcds.astype(np.uint32),
        pdb_start=np.concatenate([[0], np.cumsum([len(c) for c in cover])]).astype(np.int64),
        pdb=np.array([i for c in cover for i in c], np.int32))
    if place is not None and place.placed.any():
        # The cycle's bindings join as running pods that never move.
        got = np.flatnonzero(place.placed)
        b = place.batch
        p_start, p_idx = csr_rows(place.asg_start, got)
        mask_b = pipe.class_mask(CycleContext(cluster, snapshot.state, b))
        C = running["class_mask"].shape[0]
        running["class_mask"] = np.ascontiguousarray(np.vstack([running["class_mask"], mask_b]), np.uint8)
        for k in _BATCH_KEYS:
            extra = getattr(b, k)[got] + (C if k == "cls" else 0)
            running[k] = np.ascontiguousarray(np.concatenate([running[k], extra.astype(running[k].dtype)]))
        n_got = len(got)
        running["node"] = np.concatenate([running["node"], place.node[got].astype(np.int32)])
        running["movable"] = np.concatenate([running["movable"], np.zeros(n_got, np.uint8)])
        running["xcd"] = np.concatenate([running["xcd"], ((b.kind[got] == KIND_XCD) & (b.exclusive[got] == 0)).astype(np.uint8)])
        running["queue"] = np.concatenate([running["queue"], np.asarray(decisions.pending_rows, np.int32)[got]])
        running["req"] = np.zeros((len(running["node"]), 3), np.int64)
        running["req"][:len(idx)] = run.held[idx]
        running["asg_start"] = np.concatenate([a_start, a_start[-1] + p_start[1:]])
        for k in ("asg_dev", "asg_milli", "asg_mem", "asg_xcds"):
            running[k] = np.ascontiguousarray(np.concatenate([running[k], getattr(place, k)[p_idx].astype(running[k].dtype)]))
        running["pdb_start"] = np.concatenate([running["pdb_start"], np.full(n_got, running["pdb_start"][-1])])
    # The state the cycle left: the snapshot's, with every binding charged.
    state = state_after_placement(decisions) if place is not None else snapshot.state

    # Pending: the rows the cycle could not place, in its order, gangs together.
    if place is not None:
        rows = np.flatnonzero(~place.placed)
        b = place.batch
        pending = {k: np.ascontiguousarray(getattr(b, k)[rows]) for k in _BATCH_KEYS}
        pending["class_mask"] = np.ascontiguousarray(pipe.class_mask(CycleContext(cluster, snapshot.state, b)), np.uint8)
        if getattr(b, "gang", None) is not None:
            pending["gang"] = np.ascontiguousarray(b.gang[rows], np.int32)
            pending["gang_need"] = np.ascontiguousarray(b.gang_need[rows], np.int32)
        pend_names = [b.names[i] for i in rows.tolist()]
    else:
        pending = {k: np.zeros(0, dt) for k, dt in zip(_BATCH_KEYS, (np.int64, np.int64, np.int8, np.int32, np.int32, np.int64, np.uint8, np.int32))}
        pending["class_mask"] = np.ones((1, cluster.n_nodes), np.uint8)
        pend_names = []

    slack = np.zeros((len(tree), 3), np.int64)
    if len(tree):
        slack = decisions.queue_allocated().astype(np.int64) - np.asarray(decisions.shares.deserved, np.int64)
    cfg = {
        "max_moves": np.array([config.max_moves], np.int64),
        "max_moves_per_queue": np.array([config.max_moves_per_queue], np.int64),
        "max_units": np.array([config.max_units], np.int64),
        "parent": np.ascontiguousarray(tree.parent if len(tree) else np.zeros(0), np.int32),
        "slack": np.ascontiguousarray(slack.reshape(-1, 3)),
        "pdb_allowed": np.array(allowed, np.int64),
        "hot_threshold": np.array([float(config.hot_threshold)]),
    }
    if config.defrag_min_gain is not None:
        cfg["defrag_min_gain"] = np.array([float(config.defrag_min_gain)])
    if load is not None:
        load = np.asarray(load, np.float64)
        if load.shape != (cluster.n_nodes,):
            raise ValueError(f"load: expected one value per node ({cluster.n_nodes}), got shape {load.shape}")
        cfg["load"] = np.ascontiguousarray(np.where(np.isfinite(load), load, 0.0))  # unmeasured: neutral
    return KernelInputs(kernel_view(cluster, state), running, pending, cfg, reqs, pend_names, warnings, errors,
                        t1 - t0)


def plan_rebalance(snapshot, config: RebalanceConfig = RebalanceConfig(), load=None, now: float | None = None,
                   pipeline: Pipeline | None = None) -> RebalancePlan:
    """Plan moves on ``snapshot`` (not changed). ``load``: float per node of the snapshot's cluster
    (NaN = not measured, neutral), or None without metrics."""
    t1 = time.perf_counter()
    ki = kernel_inputs(snapshot, config, load, now, pipeline)
    t2 = time.perf_counter()
    out = _core.plan_rebalance(*ki.args())
    t3 = time.perf_counter()
    cluster, reqs, pending, pend_names = snapshot.cluster, ki.reqs, ki.pending, ki.pending_names
    movable = ki.running["movable"]
    names = [r.name for r in reqs]
    node_names = cluster.names

    def devices(k):
        devs = []
        for j in range(int(out["asg_start"][k]), int(out["asg_start"][k + 1])):
            d = int(out["asg_dev"][j])
            devs.append({"gpu": int(cluster.dev_gpu[d]), "partition": int(cluster.dev_partition[d]),
                         "xcds": _bits(int(out["asg_xcds"][j])), "fraction": round(int(out["asg_milli"][j]) / 1000, 3),
                         "memoryMiB": int(out["asg_mem"][j])})
        return devs

    unit_members: dict[int, list] = {}
    for r in out["unlocked"].tolist():
        first = r
        if "gang" in pending and pending["gang"][r] >= 0:
            g = pending["gang"][r]
            while first > 0 and pending["gang"][first - 1] == g:
                first -= 1
        unit_members.setdefault(first, []).append(pend_names[r])
    moves = []
    for k, v in enumerate(out["pod"].tolist()):
        req = reqs[v]
        u = int(out["unit"][k])
        moves.append({"pod": names[v],
                      "from": {"node": node_names[int(out["from"][k])], "devices": list(req.assignment or [])},
                      "to": {"node": node_names[int(out["to"][k])], "devices": devices(k)},
                      "reason": REASONS[int(out["reason"][k])],
                      "unlocks": sorted(unit_members.get(u, [])) if u >= 0 else []})
    unlocks = sorted(pend_names[r] for r in out["unlocked"].tolist())
    stats = {"moves": len(moves), "movable": int(movable.sum()), "running": len(reqs),
             "blockedUnits": int(out["units_blocked"]), "unitsTried": int(out["units_tried"]),
             "hotNodes": int(out["hot_nodes"]), "metrics": load is not None,
             "timingsMs": {"cycle": round(ki.cycle_seconds * 1e3, 3), "inputs": round((t2 - t1 - ki.cycle_seconds) * 1e3, 3),
                           "plan": round((t3 - t2) * 1e3, 3)}}
    if config.defrag_min_gain is not None:
        stats["fragmentation"] = {"before": round(float(out["frag_before"]), 3), "after": round(float(out["frag_after"]), 3)}
    return RebalancePlan(moves, unlocks, stats, ki.warnings + list(snapshot.warnings), ki.errors)


def apply_plan(objects: list[dict], plan: RebalancePlan) -> list[dict]:
    """The objects with every move carried out as a migration would: the pod on its new node with
    its new devices (``spec.nodeName`` and ``kaiwo.ai/gpu-assignment``). Copies; the input is kept."""
    import copy
    import json
    where = {m["pod"]: m["to"] for m in plan.moves}
    out = []
    for o in objects:
        if isinstance(o, dict) and o.get("kind") == "Pod":
            meta = o.get("metadata") or {}
            key = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
            if key in where:
                o = copy.deepcopy(o)
                o["spec"]["nodeName"] = where[key]["node"]
                o["metadata"].setdefault("annotations", {})
                if o["metadata"]["annotations"] is None:
                    o["metadata"]["annotations"] = {}
                o["metadata"]["annotations"]["kaiwo.ai/gpu-assignment"] = json.dumps(where[key]["devices"])
        out.append(o)
    return out


__all__ = ["ANN_MIGRATABLE", "KernelInputs", "RebalanceConfig", "kernel_inputs", "RebalancePlan", "apply_plan", "migratable", "plan_rebalance"]
