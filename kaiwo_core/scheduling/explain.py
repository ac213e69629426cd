"""``kaiwo explain``: why one pod is where it is, node by node.

For a pod the cycle could not place, every node is judged as the pod met it: the free capacity
after the pods placed before it in this cycle's order (the placement kernel replays that prefix of
the batch with the inputs it was given, so the state is exactly the one the pod was tried on; the
members of its own gang are not counted). Each node gets every reason it cannot take the pod, not
only the first: the filters that reject it (named, with the value: :func:`kaiwo_core.plugins.
filter_verdicts`), too little CPU, memory or pod slots, and the kernel's own verdict on its GPUs
(each node tried alone, by a copy of the pod that may only go there). Nodes are then grouped by what
the pod sees, and the node missing the least is shown as the best near miss.

Nothing here runs in a normal cycle: it is asked for one pod, after the cycle.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _core
from ..model.cluster import ClusterState, kernel_view
from ..model.requests import KIND_NONE
from ..plugins import filter_verdicts

#: Per-pod arrays of the kernel's batch (the rest -- class mask, scores, strategy arguments -- are
#: per class or per batch and are passed on as they are).
_POD_KEYS = ("cpu", "mem", "kind", "count", "milli", "gpu_mem", "exclusive", "cls", "gang", "gang_need")
#: Nodes tried at once when judging GPUs (the class mask of one chunk is CHUNK x nodes bytes).
CHUNK = 512


@dataclass
class NodeView:
    """What one node lacks for the pod: (what, detail) pairs; empty = it fits."""

    node: str
    missing: list = field(default_factory=list)

    @property
    def filtered(self) -> int:
        return sum(1 for what, _ in self.missing if what.startswith("filter "))

    def key(self) -> tuple:
        """What the pod sees, without the numbers: nodes with equal keys form one class."""
        return tuple(f"{what}: {detail}" if what.startswith("filter ") else f"insufficient {what}"
                     for what, detail in self.missing)


def state_met(placement, i: int, before: ClusterState) -> ClusterState:
    """The free capacity row ``i`` of ``placement`` was tried on: ``before`` (the cycle's state
    before the batch) with rows 0..i-1 placed again by the kernel, with the same inputs."""
    state = before.copy()
    if i > 0:
        kb = placement.kernel_batch
        prefix = {k: (v[:i] if k in _POD_KEYS else v) for k, v in kb.items()}
        _core.place_batch(kernel_view(placement.cluster, state), prefix, placement.strategy)
    return state


def _gpu_verdicts(placement, i: int, state: ClusterState) -> tuple[np.ndarray, np.ndarray]:
    """Per node: the kernel's first GPU reason for row ``i`` alone on that node (-1 = its GPUs can
    take it), and the largest free share there. CPU, memory and pod slots are left out (judged
    apart), so that the GPUs of every node are judged."""
    c, b = placement.cluster, placement.batch
    n = c.n_nodes
    reason = np.full(n, -1, dtype=np.int64)
    best = np.full(n, -1, dtype=np.int64)
    view_state = state.copy()
    np.maximum(view_state.node_pods_free, 1, out=view_state.node_pods_free)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        mask = np.zeros((m, n), dtype=np.uint8)
        mask[np.arange(m), start + np.arange(m)] = 1
        copies = {"cpu": np.zeros(m, np.int64), "mem": np.zeros(m, np.int64),
                  "kind": np.full(m, b.kind[i], np.int8), "count": np.full(m, b.count[i], np.int32),
                  "milli": np.full(m, b.milli[i], np.int32), "gpu_mem": np.full(m, b.gpu_mem[i], np.int64),
                  "exclusive": np.full(m, b.exclusive[i], np.uint8), "cls": np.arange(m, dtype=np.int32),
                  "class_mask": mask}
        kb = placement.kernel_batch or {}
        if "class_resv" in kb:  # devices held by reservations: the copies have the pod's access
            copies.update(dev_resv=kb["dev_resv"], dev_resv_xcds=kb["dev_resv_xcds"],
                          class_resv=np.repeat(kb["class_resv"][int(b.cls[i])][None, :], m, axis=0))
        # each copy may only use its own node, so one copy's placement never affects another's
        out = _core.place_batch(kernel_view(c, view_state.copy()), copies, 0)
        # the other nodes count as filtered: the copy's own node is the one other reason counted
        counts = out["reason_counts"][:, 1:]
        fails = out["node"] < 0
        reason[start:start + m] = np.where(fails, counts.argmax(axis=1) + 1, -1)
        best[start:start + m] = out["best_share"]
    return reason, best


def _gib(mib) -> str:
    return f"{int(mib) / 1024:.4g} GiB"


def node_views(placement, i: int, before: ClusterState) -> list[NodeView]:
    """Every node of the cluster and what it lacks for row ``i`` of ``placement``."""
    c, b = placement.cluster, placement.batch
    state = state_met(placement, i, before)
    verdicts = filter_verdicts(placement.ctx, int(b.cls[i]))
    gpu = b.kind[i] != KIND_NONE
    reason, best = _gpu_verdicts(placement, i, state) if gpu else (None, None)
    cpu, mem = int(b.cpu[i]), int(b.mem[i])
    count, milli = int(b.count[i]), int(b.milli[i])
    views = []
    for n, name in enumerate(c.names):
        v = NodeView(name, [(f"filter {plugin}", text) for plugin, text in verdicts[n]])
        if state.node_cpu_free[n] < cpu:
            v.missing.append(("CPU", f"CPU {state.node_cpu_free[n] / 1000:g} cores free < {cpu / 1000:g} needed"))
        if state.node_mem_free[n] < mem:
            v.missing.append(("memory", f"memory {_gib(state.node_mem_free[n])} free < {_gib(mem)} needed"))
        if state.node_pods_free[n] < 1:
            v.missing.append(("pods", "no free pod slot"))
        if gpu and reason[n] >= 0:
            v.missing.append(_gpu_detail(c, state, n, int(reason[n]), int(best[n]), b, i, count, milli))
        views.append(v)
    return views


def _gpu_detail(c, state, n, code, best, b, i, count, milli) -> tuple[str, str]:
    devs = slice(int(c.node_dev_start[n]), int(c.node_dev_start[n + 1]))
    total = devs.stop - devs.start
    if code == _core.REASON_GPU_COUNT:
        return "GPUs", f"{total} logical GPUs on the node < {count} needed"
    if code == _core.REASON_GPU_BUSY:
        idle = int(((state.dev_state[devs] == 0) & (state.dev_milli_free[devs] == 1000)).sum())
        return "idle GPUs", f"{idle} idle GPUs < {count} needed"
    if code == _core.REASON_GPU_SHARE:
        have = f"{best / 1000:.3g}" if best >= 0 else "none"
        each = f" on each of {count} GPUs" if count > 1 else ""
        return "GPU share", f"GPU share {have} free < {milli / 1000:.3g} needed{each}"
    if code == _core.REASON_GPU_MEMORY:
        free = int(state.dev_mem_free[devs].max()) if total else 0
        need = int(b.gpu_mem[i])
        return "GPU memory", (f"GPU memory {_gib(free)} free on the best GPU < {_gib(need)} needed" if need
                              else f"GPU memory {_gib(free)} free on the best GPU: less than the share needs")
    if code == _core.REASON_XCD:
        free = max((bin(int(x)).count("1") for x in state.dev_xcd_free[devs]), default=0)
        return "XCDs", f"{free} free XCDs on the best GPU: fewer than {milli / 1000:.3g} of a GPU needs"
    if code == getattr(_core, "REASON_RESERVED", -1):
        return "GPUs", "the GPUs that would do are held by a reservation"
    return "GPUs", _core.REASON_NAMES[code] if code < len(_core.REASON_NAMES) else f"reason {code}"


def classes(views: list[NodeView]) -> list[tuple[list[str], list[str]]]:
    """Nodes grouped by what the pod sees (the same filters with the same values, the same
    resources missing), largest group first, then by the first node's name."""
    groups: dict[tuple, list[NodeView]] = {}
    for v in views:
        groups.setdefault(v.key(), []).append(v)
    out = [([v.node for v in vs], list(key)) for key, vs in groups.items()]
    out.sort(key=lambda g: (-len(g[0]), g[0][0]))
    return out


def near_miss(views: list[NodeView]) -> NodeView | None:
    """The node that lacks least: fewest filters against the pod, then fewest resources missing,
    then by name."""
    return min(views, key=lambda v: (v.filtered, len(v.missing), v.node), default=None)


def explain(decisions, pod: str) -> dict:
    """Why ``pod`` ("namespace/name") is where this cycle left it, as a dict (``kaiwo explain``
    prints it): ``status`` (bound, running, finished, rejected, pending or unknown) and, for a
    pod the cycle tried and could not place, ``nodeClasses`` and ``nearMiss``."""
    doc = decisions.to_dict()
    for b in doc["bindings"]:
        if b["pod"] == pod:
            return {"pod": pod, "status": "bound", "node": b["node"], "devices": b["devices"]}
    for r in doc["running"]:
        if r["pod"] == pod:
            return {"pod": pod, "status": r.get("phase", "running"), "node": r["node"], "devices": r["devices"]}
    errors = [r for r in doc["rejected"] if r["pod"] == pod]
    if errors:
        return {"pod": pod, "status": "rejected", "field": errors[0]["field"], "error": errors[0]["error"]}
    reasons = [p["reason"] for p in doc["pending"] if p["pod"] == pod]
    if not reasons:
        return {"pod": pod, "status": "unknown", "reason": "no such pod in the input"}
    out = {"pod": pod, "status": "pending", "reason": reasons[0]}
    p = decisions.placement
    rows = [] if p is None else [i for i in np.flatnonzero(~p.placed).tolist() if p.batch.names[i] == pod]
    if not rows:
        out["note"] = "not tried this cycle (see the reason)"
        return out
    i = rows[0]
    views = node_views(p, i, decisions.snapshot.state)
    out["nodeClasses"] = [{"nodes": nodes, "missing": missing} for nodes, missing in classes(views)]
    best = near_miss(views)
    if best is not None:
        out["nearMiss"] = {"node": best.node, "missing": [f"{what}: {detail}" if what.startswith("filter ")
                                                          else detail for what, detail in best.missing]}
    if p.gang_failed[i]:
        out["note"] = "member of a gang that could not be placed whole; nodes are judged without its gang"
    return out
