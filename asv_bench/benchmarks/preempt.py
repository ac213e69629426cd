"""asv benchmarks of the reclaim/preemption kernel ``_core.plan_preemptions`` at the DESIGN.md scales.

Workload (:func:`preempt_workload`, seeded; ``tests/benchmarks/test_bench_preempt.py`` uses the same
function so pytest-benchmark and asv time identical inputs):

* Cluster and running pods: :func:`kaiwo.simulator.synth.scale_arrays`'s cluster (S 100, M 1,000 nodes x 8
  MI300X) with the scale's running pods (S 2,000, M 20,000; :data:`kaiwo.simulator.synth.RUNNING_SHAPES`)
  placed by the placement kernel (binpack), so every device charge is placement's own.
* Queues: 100 queues in 3 levels (:func:`asv_bench.benchmarks.queues.tree_parents`), GPU quotas
  top-down adding up to ~80 % of the cluster, CPU and memory at the cluster's ratio; running and
  pending pods on the leaves with skewed (log-normal) popularity; half the queues conservative;
  preemptMinRuntime 0-10 min, reclaimMinRuntime 0-5 min. Deserved and fair shares come from
  ``_core.fair_share`` over running + pending pods.
* The cycle before preemption: the scale's pending pods (S 1,000, M 10,000; :data:`synth.SHAPES`)
  are placed first; the ones that did not fit, in order, are the preemptors (the first S 100,
  M 1,000 of them). The pods just placed join the running pods as non-preemptible rows (runtime 0)
  so device holders are complete; ``allocated`` counts both.
* Running pods: runtimes uniform in 0-1 h, priorities 0/100/200 (synth), 5 % non-preemptible.

The kernel does not modify its inputs, so they are built once per process (``lru_cache``) and every
sample reuses them. The pure-Python reference (``tests/naive_preempt.py``) is timed by
pytest-benchmark in the same run (S only by default: it takes minutes at M); ``asv_bench/ratio.py``
turns that into ratios.
"""
from __future__ import annotations

import functools

import numpy as np

import kaiwo_core as kc
from kaiwo.simulator import synth
from kaiwo_core import _core
from kaiwo_core.model.cluster import kernel_view

from .queues import tree_parents

SCALES = ["S", "M"]
SEED = 0
N_QUEUES = 100
PREEMPTORS = {"S": 100, "M": 1000, "L": 10000}


def _batch_dict(batch, n_nodes):
    b = dict(batch.kernel_view())
    b["cls"] = np.zeros(len(batch.names), np.int32)
    b["class_mask"] = np.ones((1, n_nodes), np.uint8)
    return b


def _requests(b):
    gpu = np.where(b["kind"] == 0, 0, b["milli"].astype(np.int64) * b["count"])
    mem_only = (b["kind"] != 0) & (b["milli"] == 0)
    gpu = np.where(mem_only, np.minimum(1000, -(-b["gpu_mem"] * 1000 // 196608)) * b["count"], gpu)
    return np.ascontiguousarray(np.stack([gpu, b["cpu"], b["mem"]], axis=1), dtype=np.int64)


@functools.lru_cache(maxsize=None)
def preempt_workload(scale: str, seed: int = SEED) -> dict:
    """Inputs of ``_core.plan_preemptions`` at ``scale`` (see the module docstring):
    ``{"cluster", "running", "pending", "queues"}``."""
    rng = np.random.default_rng(seed)
    sz = synth.sizes(scale)
    n = sz["nodes"]
    snap = kc.Snapshot.from_arrays([f"node-{i:05d}" for i in range(n)], cpu=[synth.NODE_CPU] * n,
                                         memory=[synth.NODE_MEM_MIB] * n, gpus=[8] * n, pods=[250] * n)
    cluster = kernel_view(snap.cluster, snap.state)
    run_batch = synth.batch(synth.pod_columns(sz["running"], seed + 1, synth.RUNNING_SHAPES), "running")
    run_b = _batch_dict(run_batch, n)
    run_out = _core.place_batch(cluster, run_b, _core.STRATEGY_BINPACK)
    pend_batch = synth.batch(synth.pod_columns(sz["pending"], seed), "pending")
    pend_b = _batch_dict(pend_batch, n)
    pend_out = _core.place_batch(cluster, pend_b, _core.STRATEGY_BINPACK)

    # Queues.
    parent = tree_parents(N_QUEUES)
    Q = len(parent)
    leaf = np.ones(Q, bool)
    leaf[parent[parent >= 0]] = False
    leaves = np.flatnonzero(leaf)
    capacity = np.array([n * 8000, n * synth.NODE_CPU, n * synth.NODE_MEM_MIB], np.int64)
    gpu_quota = np.zeros(Q)
    top = parent < 0
    gpu_quota[top] = 0.8 * capacity[0] / top.sum() * rng.uniform(0.5, 1.5, top.sum())
    for q in range(Q):
        if parent[q] >= 0:
            gpu_quota[q] = gpu_quota[parent[q]] / (parent == parent[q]).sum() * rng.uniform(0.6, 1.0)
    quota = np.stack([gpu_quota, gpu_quota * capacity[1] / capacity[0],
                      gpu_quota * capacity[2] / capacity[0]], axis=1).astype(np.int64)
    popularity = rng.lognormal(0.0, 1.0, len(leaves))
    popularity /= popularity.sum()

    # Running rows: the scale's running pods, then this cycle's placements (non-preemptible).
    run_ok = np.flatnonzero(run_out["node"] >= 0)
    pend_ok = np.flatnonzero(pend_out["node"] >= 0)
    run_req, pend_req = _requests(run_b), _requests(pend_b)
    run_q = leaves[rng.choice(len(leaves), size=len(run_b["cpu"]), p=popularity)].astype(np.int32)
    pend_q = leaves[rng.choice(len(leaves), size=len(pend_b["cpu"]), p=popularity)].astype(np.int32)

    def charges(out, rows):
        s = out["asg_start"]
        idx = np.concatenate([np.arange(s[i], s[i + 1]) for i in rows]) if len(rows) else np.zeros(0, np.int64)
        start = np.zeros(len(rows) + 1, np.int64)
        start[1:] = np.cumsum(s[rows + 1] - s[rows])
        return start, idx

    rs, ridx = charges(run_out, run_ok)
    ps, pidx = charges(pend_out, pend_ok)
    V1, V2 = len(run_ok), len(pend_ok)
    kind = np.concatenate([run_b["kind"][run_ok], pend_b["kind"][pend_ok]])
    excl = np.concatenate([run_b["exclusive"][run_ok], pend_b["exclusive"][pend_ok]])
    running = {
        "node": np.concatenate([run_out["node"][run_ok], pend_out["node"][pend_ok]]).astype(np.int32),
        "queue": np.concatenate([run_q[run_ok], pend_q[pend_ok]]).astype(np.int32),
        "priority": np.concatenate([run_batch.priority[run_ok], pend_batch.priority[pend_ok]]).astype(np.int64),
        "preemptible": np.concatenate([(rng.random(V1) >= 0.05), np.zeros(V2, bool)]).astype(np.uint8),
        "runtime": np.concatenate([rng.uniform(0, 3600, V1), np.zeros(V2)]),
        "req": np.ascontiguousarray(np.concatenate([run_req[run_ok], pend_req[pend_ok]])),
        "cpu": np.concatenate([run_b["cpu"][run_ok], pend_b["cpu"][pend_ok]]),
        "mem": np.concatenate([run_b["mem"][run_ok], pend_b["mem"][pend_ok]]),
        "asg_start": np.concatenate([rs, rs[-1] + ps[1:]]),
        "asg_dev": np.concatenate([run_out["asg_dev"][ridx], pend_out["asg_dev"][pidx]]),
        "asg_milli": np.concatenate([run_out["asg_milli"][ridx], pend_out["asg_milli"][pidx]]),
        "asg_mem": np.concatenate([run_out["asg_mem"][ridx], pend_out["asg_mem"][pidx]]),
        "asg_xcds": np.concatenate([run_out["asg_xcds"][ridx], pend_out["asg_xcds"][pidx]]),
        "exclusive": ((kind == _core.KIND_WHOLE) | (excl == 1)).astype(np.uint8),
        "xcd": ((kind == _core.KIND_XCD) & (excl == 0)).astype(np.uint8),
    }

    # Preemptors: the first unplaced pending pods, in order.
    rows = np.flatnonzero(pend_out["node"] < 0)[:PREEMPTORS[scale]]
    pending = {k: np.ascontiguousarray(v[rows]) for k, v in pend_b.items() if k != "class_mask"}
    pending["class_mask"] = pend_b["class_mask"]
    pending["queue"] = pend_q[rows]
    pending["priority"] = np.ascontiguousarray(pend_batch.priority[rows], dtype=np.int64)
    pending["req"] = np.ascontiguousarray(pend_req[rows])

    # Shares over running + pending pods; allocated = running + placed.
    all_q = np.concatenate([run_q[run_ok], pend_q]).astype(np.int64)
    all_req = np.concatenate([run_req[run_ok], pend_req])
    order = np.argsort(all_q, kind="stable")
    start = np.zeros(Q + 1, np.int64)
    start[1:] = np.cumsum(np.bincount(all_q, minlength=Q))
    tree = {"parent": parent, "quota": quota, "limit": np.full((Q, 3), -1, np.int64),
            "weight": np.ones((Q, 3)), "priority": np.zeros(Q, np.int32), "capacity": capacity}
    fs = _core.fair_share(tree, {"pod_start": start, "req": np.ascontiguousarray(all_req[order])})
    allocated = np.zeros((Q, 3), np.int64)
    np.add.at(allocated, running["queue"], running["req"])
    queues = {
        "parent": parent, "deserved": fs["deserved"], "fair_share": fs["fair_share"], "allocated": allocated,
        "strategy": (rng.random(Q) < 0.5).astype(np.int8),
        "preempt_min_runtime": rng.choice([0.0, 60.0, 600.0], size=Q),
        "reclaim_min_runtime": rng.choice([0.0, 60.0, 300.0], size=Q),
    }
    frozen = {"cluster": cluster, "running": running, "pending": pending, "queues": queues}
    for d in frozen.values():
        for a in d.values():
            a.flags.writeable = False
    return frozen


class PlanPreemptions:
    """``_core.plan_preemptions`` for the scale's first unplaced pending pods (S 100, M 1,000)."""

    params = (SCALES,)
    param_names = ["scale"]
    timeout = 300

    def setup(self, scale):
        self.w = preempt_workload(scale)

    def time_plan_preemptions(self, scale):
        _core.plan_preemptions(self.w["cluster"], self.w["running"], self.w["pending"], self.w["queues"])

    def peakmem_plan_preemptions(self, scale):
        _core.plan_preemptions(self.w["cluster"], self.w["running"], self.w["pending"], self.w["queues"])
