"""asv benchmarks of the queue kernels: fair shares (``_core.fair_share``) and ordering
(``_core.order_pending``) at the DESIGN.md scales, for 100 and 1,000 queues in 3 levels.

Workload (:func:`queue_workload`, seeded; ``tests/benchmarks/test_bench_queues.py`` uses the same
function so pytest-benchmark and asv time identical inputs):

* Tree: ``b`` top-level queues, ``b * b`` in the middle, the rest leaves spread over the middle
  (100 queues: 4 + 16 + 80; 1,000: 10 + 100 + 890). Top-level GPU quotas add up to ~80 % of the
  cluster and are split down with jitter; CPU and memory quotas follow GPU at the cluster's ratio,
  a few are unlimited (-1); 10 % of the queues have a limit of twice their quota; weights 1-3;
  top-level priorities 0-1.
* Pods: the scale's running and pending pods (:mod:`kaiwo.simulator.synth` shapes: S 2,000 + 1,000,
  M 20,000 + 10,000), requests as (GPU milli-units = devices x milli, CPU, memory), assigned to
  leaves with skewed (log-normal) popularity.
* Capacity: the scale's nodes x (8 GPUs, 192 cores, 2 TiB).
* ``fair_share`` runs over running + pending pods; ``order_pending`` orders the pending pods with
  ``allocated`` = the running pods per leaf and ``deserved``/``fair_share`` from the fair-share
  kernel; keys from priority and creation order, uid ranks as tiebreaks, 5 % of pods in gangs of 4.

Neither kernel mutates its input, so the inputs are built once per process (``lru_cache``) and every
sample reuses them. The pure-Python references (``tests/naive_queues.py``) are timed by
pytest-benchmark in the same run; ``asv_bench/ratio.py`` turns that into ratios.
"""
from __future__ import annotations

import functools

import numpy as np

from kaiwo.simulator import synth
from kaiwo_core import _core

SCALES = ["S", "M"]
QUEUES = [100, 1000]
SEED = 0
NODE_GPU_MILLI = 8 * 1000


def tree_parents(n_queues: int) -> np.ndarray:
    """Parents of a 3-level tree: b top-level, b*b middle, the rest leaves round-robin."""
    b = max(1, int(n_queues ** (1 / 3) + 1e-9))
    while b + b * b >= n_queues and b > 1:
        b -= 1
    parent = [-1] * b + [i % b for i in range(b * b)]
    parent += [b + i % (b * b) for i in range(n_queues - len(parent))]
    return np.array(parent[:n_queues], np.int32)


@functools.lru_cache(maxsize=None)
def queue_workload(scale: str, n_queues: int, seed: int = SEED) -> dict:
    """Inputs of both kernels at ``scale`` with ``n_queues`` queues (see the module docstring)."""
    rng = np.random.default_rng(seed)
    sz = synth.sizes(scale)
    capacity = np.array([sz["nodes"] * NODE_GPU_MILLI, sz["nodes"] * synth.NODE_CPU,
                         sz["nodes"] * synth.NODE_MEM_MIB], np.int64)
    parent = tree_parents(n_queues)
    Q = len(parent)
    leaf = np.ones(Q, bool)
    leaf[parent[parent >= 0]] = False
    leaves = np.flatnonzero(leaf)

    # Quotas: GPU top-down with jitter, CPU and memory at the cluster's ratio to GPU.
    gpu_quota = np.zeros(Q)
    top = parent < 0
    gpu_quota[top] = 0.8 * capacity[0] / top.sum() * rng.uniform(0.5, 1.5, top.sum())
    for q in range(Q):
        if parent[q] >= 0:
            siblings = (parent == parent[q]).sum()
            gpu_quota[q] = gpu_quota[parent[q]] / siblings * rng.uniform(0.6, 1.3)
    quota = np.stack([gpu_quota, gpu_quota * capacity[1] / capacity[0],
                      gpu_quota * capacity[2] / capacity[0]], axis=1).astype(np.int64)
    quota[rng.random((Q, 3)) < 0.03] = -1
    limit = np.where((rng.random((Q, 1)) < 0.1) & (quota > 0), quota * 2, -1).astype(np.int64)
    weight = np.repeat(rng.integers(1, 4, size=(Q, 1)).astype(np.float64), 3, axis=1)
    priority = np.where(top, rng.integers(0, 2, size=Q), 0).astype(np.int32)
    tree = {"parent": parent, "quota": quota, "limit": limit, "weight": weight, "priority": priority,
            "capacity": capacity}

    def pods(n, pod_seed, shapes):
        cols = synth.pod_columns(n, pod_seed, shapes)
        req = np.stack([cols["devices"] * cols["milli"], cols["cpu"], cols["mem"]], axis=1).astype(np.int64)
        popularity = rng.lognormal(0.0, 1.0, len(leaves))
        queue = leaves[rng.choice(len(leaves), size=n, p=popularity / popularity.sum())]
        return req, queue, cols["priority"]

    run_req, run_q, _ = pods(sz["running"], seed + 1, synth.RUNNING_SHAPES)
    pend_req, pend_q, pend_prio = pods(sz["pending"], seed, synth.SHAPES)

    def csr(queue, *columns):
        order = np.argsort(queue, kind="stable")
        start = np.zeros(Q + 1, np.int64)
        start[1:] = np.cumsum(np.bincount(queue, minlength=Q))
        return start, [np.ascontiguousarray(c[order]) for c in columns]

    # Fair shares over running + pending pods (running first in each queue, then pending).
    all_q = np.concatenate([run_q, pend_q])
    fs_start, (fs_req,) = csr(all_q, np.concatenate([run_req, pend_req]))
    fs_pods = {"pod_start": fs_start, "req": fs_req}
    fs = _core.fair_share(tree, fs_pods)

    # Ordering: pending pods, running pods as the allocation.
    allocated = np.zeros((Q, 3), np.int64)
    np.add.at(allocated, run_q, run_req)
    n = len(pend_q)
    created = rng.permutation(n)
    key = -pend_prio.astype(np.float64) + created / n  # higher priority first, then older
    gang = np.full(n, -1, np.int32)
    in_gang = rng.random(n) < 0.05 / 4  # gang leaders; each pulls 3 more pods of its queue
    start, (o_req, o_key, o_q, o_gang) = csr(pend_q, pend_req, key, pend_q, gang)
    for g, i in enumerate(np.flatnonzero(in_gang[np.argsort(pend_q, kind="stable")])):
        q = o_q[i]
        j = np.arange(i, min(i + 4, start[q + 1]))
        o_gang[j[o_gang[j] < 0]] = g
    order_tree = {"parent": parent, "limit": limit, "priority": priority,
                  "deserved": fs["deserved"], "fair_share": fs["fair_share"]}
    order_pods = {"pod_start": start, "req": o_req, "key": o_key,
                  "tiebreak": rng.permutation(n).astype(np.int64), "gang": o_gang}
    return {"tree": tree, "fs_pods": fs_pods, "order_tree": order_tree,
            "state": {"allocated": allocated}, "order_pods": order_pods}


class FairShare:
    """``_core.fair_share`` over the scale's running + pending pods."""

    params = (SCALES, QUEUES)
    param_names = ["scale", "queues"]
    timeout = 300

    def setup(self, scale, queues):
        w = queue_workload(scale, queues)
        self.tree, self.pods = w["tree"], w["fs_pods"]

    def time_fair_share(self, scale, queues):
        _core.fair_share(self.tree, self.pods)

    def peakmem_fair_share(self, scale, queues):
        _core.fair_share(self.tree, self.pods)


class OrderPending:
    """``_core.order_pending`` of the scale's pending pods (M: 10,000)."""

    params = (SCALES, QUEUES)
    param_names = ["scale", "queues"]
    timeout = 300

    def setup(self, scale, queues):
        w = queue_workload(scale, queues)
        self.tree, self.state, self.pods = w["order_tree"], w["state"], w["order_pods"]

    def time_order_pending(self, scale, queues):
        _core.order_pending(self.tree, self.state, self.pods)

    def peakmem_order_pending(self, scale, queues):
        _core.order_pending(self.tree, self.state, self.pods)
