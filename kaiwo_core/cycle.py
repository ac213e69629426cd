"""One scheduling cycle on a snapshot: check, order, place, decide.

The steps follow the pattern of the best schedulers: snapshot -> order -> allocate -> decisions.
Queues, fair shares, gangs and reclaim slot in between as they land; the output contract
(:meth:`Decisions.to_dict`, the ``kaiwo schedule --output json`` shape) does not change.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .placement import Placement, default_pipeline, place
from .plugins import CycleContext, Pipeline
from .requests import KIND_NONE, ANN_MEMORY, PodError, batch_from_requests
from .snapshot import Snapshot


@dataclass
class Decisions:
    """What a cycle decided, columnar inside, decoded on demand."""

    snapshot: Snapshot
    placement: Placement | None
    rejected: list = field(default_factory=list)   #: PodError (snapshot's and the cycle's)
    timings: dict = field(default_factory=dict)    #: seconds per step

    def bindings(self) -> list[dict]:
        p = self.placement
        if p is None:
            return []
        names = self.snapshot.cluster.names
        return [{"pod": p.batch.names[i], "node": names[p.node[i]], "devices": p.devices(i)}
                for i in np.flatnonzero(p.placed)]

    def pending(self) -> list[dict]:
        out = [{"pod": name, "reason": why} for name, why in self.snapshot.ignored]
        p = self.placement
        if p is not None:
            out += [{"pod": p.batch.names[i], "reason": p.reason(i)}
                    for i in np.flatnonzero(~p.placed)]
        return out

    def running(self) -> list[dict]:
        out = [{"pod": r.name, "node": r.node, "devices": r.assignment or []}
               for r in self.snapshot.running]
        out += [{"pod": r.name, "node": r.node, "devices": [], "phase": "finished"}
                for r in self.snapshot.finished]
        return out

    def to_dict(self) -> dict:
        """The ``kaiwo schedule --output json`` document (DESIGN.md, stable interface)."""
        bindings, pending, running = self.bindings(), self.pending(), self.running()
        rejected = [e.to_dict() for e in self.rejected]
        snap = self.snapshot
        return {
            "bindings": bindings,
            "preemptions": [],
            "pending": pending,
            "rejected": rejected,
            "running": running,
            "queues": [],
            "invalidNodes": [e.to_dict() for e in snap.cluster.errors],
            "warnings": list(snap.warnings),
            "stats": {
                "nodes": snap.cluster.n_nodes, "gpus": snap.cluster.n_devices,
                "pods": len(bindings) + len(pending) + len(rejected) + len(running),
                "bound": len(bindings), "pending": len(pending), "rejected": len(rejected),
                "running": len(running),
                "timingsMs": {k: round(v * 1e3, 3) for k, v in self.timings.items()},
            },
        }


def impossible(snapshot: Snapshot, reqs: list) -> tuple[list, list]:
    """Split off requests no node of this cluster could ever satisfy (as opposed to pods that
    merely wait): GPU memory beyond the largest device."""
    cap = int(snapshot.cluster.dev_mem_cap.max()) if snapshot.cluster.n_devices else None
    ok, bad = [], []
    for r in reqs:
        if cap is not None and r.kind != KIND_NONE and r.gpu_memory > cap:
            bad.append(PodError(r.name, f"metadata.annotations.{ANN_MEMORY}", r.gpu_memory,
                                f"larger than any GPU in the cluster (largest: {cap} MiB)"))
        else:
            ok.append(r)
    return ok, bad


def order(batch, keys=()) -> np.ndarray:
    """Row order: extra plugin keys first, then priority (high first), creation time, name."""
    names = np.array(batch.names, dtype=object)
    return np.lexsort((names, batch.created, -batch.priority, *reversed(list(keys))))


def schedule(snapshot: Snapshot, strategy: str = "binpack",
             pipeline: Pipeline | None = None) -> Decisions:
    """Run one cycle on a copy of the snapshot's state; the snapshot itself is not changed."""
    t0 = time.perf_counter()
    pipeline = pipeline or default_pipeline(strategy)
    reqs, bad = impossible(snapshot, snapshot.pending)
    rejected = list(snapshot.rejected) + bad
    state = snapshot.state.copy()
    placement = None
    timings = {}
    if reqs:
        batch = batch_from_requests(reqs)
        keys = pipeline.order_keys(CycleContext(snapshot.cluster, state, batch))
        batch = batch.take(order(batch, keys))
        t1 = time.perf_counter()
        timings["order"] = t1 - t0
        placement = place(snapshot.cluster, state, batch, pipeline)
        timings["place"] = time.perf_counter() - t1
    timings["cycle"] = time.perf_counter() - t0
    return Decisions(snapshot, placement, rejected, timings)
