"""asv benchmarks of the rebalancing planner ``_core.plan_rebalance`` at the DESIGN.md scales.

Workload (:func:`rebalance_workload`, seeded; ``tests/benchmarks/test_bench_rebalance.py`` uses the
same function so pytest-benchmark and asv time identical inputs): ``kaiwo generate --scale <S|M>
--running`` objects (M: 1,000 nodes x 8 MI300X, 100 queues, 20,000 running pods placed by Kaiwo,
10,000 pending, of which only those of 4 or more whole GPUs are kept: 1,157 at M), 90 % of the running pods annotated ``kaiwo.ai/migratable: "true"`` (seeded), and a
measured load per node with 2 % of the nodes above the 0.9 threshold. The planner's inputs are
what :func:`kaiwo_core.scheduling.rebalance.kernel_inputs` builds: the state after one cycle
(preemption off), its bindings as unmovable holders, and the pending pods it could not place, in its
order. Defaults of :class:`RebalanceConfig` (16 moves, 8 per queue, 64 blocked units examined).

Only the kernel is timed here (the cycle and the input building are the cycle's benchmark); the
plain-Python reference (``tests/naive_rebalance.py``) is timed by pytest-benchmark at S.
"""
from __future__ import annotations

import functools

import numpy as np

import kaiwo_core as kc
from kaiwo.simulator import synth
from kaiwo_core import _core
from kaiwo_core.scheduling.rebalance import RebalanceConfig, kernel_inputs

SCALES = ["S", "M"]
SEED = 5
MIGRATABLE = 0.9
HOT = 0.02


@functools.lru_cache(maxsize=None)
def rebalance_workload(scale: str, seed: int = SEED) -> tuple:
    """The four dicts ``_core.plan_rebalance`` takes at ``scale`` (see the module docstring)."""
    objs = synth.dump_objects(scale, seed=seed, running=True)
    rng = np.random.default_rng(seed)
    # Pending: only the pods of 4 or more whole GPUs -- the ones a packed cluster keeps waiting
    # while it has idle GPUs scattered over its nodes (the rest would just fill those GPUs).
    objs = [o for o in objs if o["kind"] != "Pod" or o["spec"].get("nodeName") or _gpus(o) >= 4]
    for o in objs:
        if o["kind"] == "Pod" and o["spec"].get("nodeName") and rng.random() < MIGRATABLE:
            o["metadata"].setdefault("annotations", {})["kaiwo.ai/migratable"] = "true"
    snap = kc.Snapshot.from_objects(objs)
    n = snap.cluster.n_nodes
    load = rng.uniform(0.2, 0.85, n)
    load[rng.random(n) < HOT] = 0.97
    return kernel_inputs(snap, RebalanceConfig(), load=load).args()


def _gpus(pod: dict) -> int:
    limits = pod["spec"]["containers"][0].get("resources", {}).get("limits", {})
    return int(limits.get("amd.com/gpu", 0))


class PlanRebalance:
    """``_core.plan_rebalance`` (it does not modify its inputs: built once, reused)."""

    params = (SCALES,)
    param_names = ["scale"]
    timeout = 600

    def setup(self, scale):
        self.args = rebalance_workload(scale)

    def time_plan_rebalance(self, scale):
        _core.plan_rebalance(*self.args)

    def peakmem_plan_rebalance(self, scale):
        _core.plan_rebalance(*self.args)
