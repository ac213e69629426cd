"""Replay benchmarks: the FGD experiment on the bundled openb trace, and kernel vs reference.

``test_replay`` times one whole replay (seed 42, 10,866 offers on 1,213 nodes) per policy: arrivals,
placement in the compiled kernel and the metrics. ``test_policy_kernel`` / ``test_policy_reference``
time ``_core.place_batch`` and the pure-Python ``tests.naive.place_batch_ref`` on the same slice of
that replay (its first offers on its first nodes: the reference is far too slow for the whole
trace) in one group per policy, so the report shows the ratio (DESIGN.md); they also check that
both place identically. Under the default ``--benchmark-disable`` each runs once.

Policies come from ``KAIWO_BENCH_POLICIES`` (comma list; default all seven). Timed run::

    python -m pytest tests/benchmarks/test_bench_simulate.py --benchmark-enable --benchmark-only
"""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest

from kaiwo.simulator import offline as S
from kaiwo_core import _core
from kaiwo_core.model.cluster import kernel_view
from kaiwo_core.scheduling.filters import STRATEGIES
from kaiwo_core.plugins import CycleContext, Pipeline
from tests.naive import place_batch_ref

POLICIES = [p.strip() for p in os.environ.get("KAIWO_BENCH_POLICIES", ",".join(S.POLICIES)).split(",") if p.strip()]
SLICE_PODS, SLICE_NODES = 120, 40


@pytest.fixture(scope="module")
def scenario():
    return S.load_scenario()


@pytest.mark.parametrize("policy", POLICIES)
def test_replay(benchmark, scenario, policy):
    benchmark.group = f"replay openb default {policy}"
    result = benchmark.pedantic(S.replay, args=(scenario, policy, 42), rounds=3, iterations=1)
    assert result.pods == 10866 and 80 < result.at(130) < 100


def _slice(scenario, policy):
    """Kernel inputs for the first SLICE_PODS offers of seed 42 on its first SLICE_NODES nodes."""
    cluster, batch, _ = S._cluster_and_batch(scenario, 42)
    keep = np.arange(SLICE_NODES)
    ndev = int(cluster.node_dev_start[SLICE_NODES])
    state = cluster.empty_state()
    pipeline = Pipeline(["gpu-model", (policy, S.strategy_config(scenario, policy, 42))])
    sub = batch.take(np.arange(SLICE_PODS))
    ctx = CycleContext(cluster, state, sub)
    for p in pipeline.plugins:
        p.on_cycle_start(ctx)
    kb = sub.kernel_view()
    kb["class_mask"] = np.ascontiguousarray(pipeline.class_mask(ctx)[:, keep])
    kb.update(pipeline.strategy.kernel_args(ctx))
    view = kernel_view(cluster, state)
    cut = {}
    for k, v in view.items():
        if k == "node_dev_start":
            cut[k] = np.ascontiguousarray(v[:SLICE_NODES + 1])
        elif k.startswith("node_"):
            cut[k] = np.ascontiguousarray(v[:SLICE_NODES])
        else:
            cut[k] = np.ascontiguousarray(v[:ndev])
    cut["node_gpu_kinds"] = np.zeros(SLICE_NODES, np.uint64)
    return cut, kb, STRATEGIES[policy]


@pytest.mark.parametrize("policy", POLICIES)
def test_policy_kernel(benchmark, scenario, policy):
    cluster, batch, code = _slice(scenario, policy)
    benchmark.group = f"policy slice {policy}"
    out = benchmark.pedantic(lambda: _core.place_batch(copy.deepcopy(cluster), batch, code), rounds=20, iterations=1)
    assert out["node"].shape == (SLICE_PODS,)


@pytest.mark.parametrize("policy", POLICIES)
def test_policy_reference(benchmark, scenario, policy):
    cluster, batch, code = _slice(scenario, policy)
    benchmark.group = f"policy slice {policy}"
    ref = benchmark.pedantic(lambda: place_batch_ref(copy.deepcopy(cluster), batch, code), rounds=1, iterations=1)
    out = _core.place_batch(copy.deepcopy(cluster), batch, code)
    for k in out:  # the same placements, bit for bit
        np.testing.assert_array_equal(out[k], ref[k], err_msg=k)
    assert (out["node"] >= 0).sum() > 0
