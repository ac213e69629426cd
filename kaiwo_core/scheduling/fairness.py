"""Fair shares and the order of pending pods: the queue side of a cycle, on the compiled kernels.

``_core.fair_share`` computes, over the whole queue tree, what every queue deserves (quota capped by
demand and limit) and its fair share: a virtual allocation of all pods (running and pending) from
zero, deserved quota first, then the rest by hierarchical DRF (over-quota weights, priority bands,
limits, blocked children and saturated resources handled the H-DRF way). See
``csrc/fairshare.hpp``.

``_core.order_pending`` then orders the pending pods: at every level of the tree the child most
entitled to the next pod (below deserved first, then queue priority, then the lowest share relative
to its fair share, saturated resources ignored), and within a leaf by effective priority -- the
PriorityClass value plus an age boost plus a GPU-demand factor -- then creation time and uid. Gangs
move as one unit. See ``csrc/ordering.hpp``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _core
from .queues import QueueTree

ORDER_HELD_LIMIT = _core.ORDER_HELD_LIMIT


@dataclass(frozen=True)
class OrderingConfig:
    """How a pod's effective priority within its queue is made.

    effective = PriorityClass value + min(age_boost_per_hour * hours waiting, age_boost_max)
                + gpu_demand_factor * GPUs requested
    A positive ``gpu_demand_factor`` favours large GPU jobs (against starvation by small ones); a
    negative one favours small jobs (throughput).
    """

    age_boost_per_hour: float = 10.0
    age_boost_max: float = 100.0
    gpu_demand_factor: float = 0.0

    def __post_init__(self):
        for name in ("age_boost_per_hour", "age_boost_max", "gpu_demand_factor"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise ValueError(f"{name} = {v!r}: must be a finite number")


@dataclass
class Shares:
    """Per-queue vectors [Q, R] in kernel units (gpu milli, cpu milli, memory MiB, then GPU milli
    per GPU model with a column: :mod:`~kaiwo_core.scheduling.model_columns`)."""

    demand: np.ndarray
    deserved: np.ndarray
    fair_share: np.ndarray
    running: np.ndarray     #: what running pods use, per queue (internal rows = sum of children)


def _csr(rows: np.ndarray, n_queues: int, *keys) -> tuple[np.ndarray, np.ndarray]:
    """Permutation grouping pods by queue row (then by ``keys``), and CSR offsets [Q+1]."""
    perm = np.lexsort((*reversed(keys), rows)) if keys else np.argsort(rows, kind="stable")
    start = np.zeros(n_queues + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_queues), out=start[1:])
    return perm.astype(np.int64), start


def tree_arrays(tree: QueueTree, capacity: np.ndarray) -> dict:
    return {"parent": tree.parent, "quota": tree.wide("quota"), "limit": tree.wide("limit"),
            "weight": tree.wide("weight"),
            "priority": tree.priority, "capacity": np.ascontiguousarray(capacity, dtype=np.int64)}


def subtree_sums(tree: QueueTree, per_leaf: np.ndarray) -> np.ndarray:
    """Leaf rows summed up the tree (rows are parents-before-children)."""
    out = per_leaf.copy()
    for q in range(len(tree) - 1, -1, -1):
        p = tree.parent[q]
        if p >= 0:
            out[p] += out[q]
    return out


def compute_shares(tree: QueueTree, capacity, run_rows, run_req, pend_rows, pend_req,
                   pend_key, run_tiebreak=None, pend_tiebreak=None) -> Shares:
    """Deserved and fair shares over running + pending pods (running first within each queue,
    then pending by their within-queue key); ties within a queue by ``run_tiebreak`` /
    ``pend_tiebreak`` (stable ranks, e.g. by name: the virtual allocation is pod by pod, so the
    order of tied pods must not be the order they were listed in), then by position."""
    q = len(tree)
    rows = np.concatenate([run_rows, pend_rows]).astype(np.int64)
    req = np.ascontiguousarray(np.concatenate([run_req, pend_req]), dtype=np.int64).reshape(-1, tree.n_res)
    phase = np.concatenate([np.zeros(len(run_rows)), np.ones(len(pend_rows))])
    key = np.concatenate([np.zeros(len(run_rows)), pend_key])
    tie = np.concatenate([np.zeros(len(run_rows), np.int64) if run_tiebreak is None else run_tiebreak,
                          np.zeros(len(pend_rows), np.int64) if pend_tiebreak is None else pend_tiebreak])
    perm, start = _csr(rows, q, phase, key, tie)
    out = _core.fair_share(tree_arrays(tree, capacity), {"pod_start": start, "req": req[perm]})
    running = np.zeros((q, tree.n_res), dtype=np.int64)
    np.add.at(running, run_rows, run_req)
    return Shares(out["demand"], out["deserved"], out["fair_share"], subtree_sums(tree, running))


def order_pending(tree: QueueTree, capacity, shares: Shares, rows, req, key, tiebreak, gang):
    """Placement order of pending pods (indices into the given arrays) and per-pod status
    (``ORDER_HELD_LIMIT`` = held back by a queue limit)."""
    perm, start = _csr(np.asarray(rows, dtype=np.int64), len(tree))
    t = tree_arrays(tree, capacity)
    t.update(deserved=shares.deserved, fair_share=shares.fair_share)
    leaf_running = np.where(tree.is_leaf[:, None], shares.running, 0)
    out = _core.order_pending(
        t, {"allocated": np.ascontiguousarray(leaf_running)},
        {"pod_start": start, "req": np.ascontiguousarray(req[perm], dtype=np.int64),
         "key": np.ascontiguousarray(key[perm], dtype=np.float64),
         "tiebreak": np.ascontiguousarray(tiebreak[perm], dtype=np.int64),
         "gang": np.ascontiguousarray(gang[perm], dtype=np.int32)})
    status = np.empty(len(perm), dtype=np.int8)
    status[perm] = out["status"]
    return perm[out["order"]], status


def within_queue_key(priority, created, gpus, now: float, cfg: OrderingConfig) -> np.ndarray:
    """Smaller first: minus the effective priority."""
    hours = np.maximum(0.0, now - np.asarray(created, dtype=np.float64)) / 3600.0
    boost = np.minimum(hours * cfg.age_boost_per_hour, cfg.age_boost_max)
    return -(np.asarray(priority, dtype=np.float64) + boost + cfg.gpu_demand_factor * gpus)
