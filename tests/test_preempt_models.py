"""The reclaim kernel with GPU-model columns (per-GPU-model quotas, issue 11).

Random problems of tests/test_preempt_kernel.py widened with 1-3 model columns: each node's GPUs
belong to one model column or none (``node_res``), a running pod's GPUs count in its node's column,
deserved / fair shares get random model entries, and some preemptors are of a fixed model (a
model column > 0 in their row: the rules judge their GPUs in the column of the node they are tried
on) while the rest are not. Kernel and reference (tests/naive_preempt.py) must agree exactly; model columns of models no
node has change nothing.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiwo_core import _core
from tests.naive_preempt import plan_preemptions_ref
from tests.test_preempt_kernel import assert_same, random_problem, run_kernel

def widen(seed, problem, loose=False):
    """The problem with model columns; ``loose``: no node has GPUs of a model with a column."""
    empty, cluster, running, pending, queues = problem
    rng = np.random.default_rng(seed ^ 0x5EED)
    M = int(rng.integers(1, 4))
    N = len(cluster["node_cpu_free"])
    node_res = rng.integers(2, 3 + M, size=N).astype(np.int32)
    node_res[(node_res == 2) | loose] = -1
    run_m = np.zeros((len(running["node"]), M), np.int64)
    for v, n in enumerate(running["node"].tolist()):
        if node_res[n] >= 0:
            run_m[v, node_res[n] - 3] = running["req"][v, 0]
    running = dict(running, req=np.ascontiguousarray(np.hstack([running["req"], run_m])))
    P = len(pending["queue"])
    pending = dict(pending, req=np.ascontiguousarray(
        np.hstack([pending["req"], rng.integers(0, 5000, size=(P, M)) * (rng.random((P, 1)) < 0.5)]), dtype=np.int64))
    Q = len(queues["parent"])
    des_m = rng.choice([0, 1000, 2000, 4000, 8000], size=(Q, M)).astype(np.int64)
    fair_m = des_m + rng.choice([0, 0, 1000, 4000], size=(Q, M))
    parent = queues["parent"]
    leaf = np.ones(Q, bool)
    leaf[parent[parent >= 0]] = False
    alloc_m = np.zeros((Q, M), np.int64)
    in_q = running["queue"] >= 0
    np.add.at(alloc_m, running["queue"][in_q], run_m[in_q])
    internal_zero = (queues["allocated"][~leaf] == 0).all() if (~leaf).any() else False
    if not internal_zero:
        for q in range(Q - 1, -1, -1):
            if parent[q] >= 0:
                alloc_m[parent[q]] += alloc_m[q]
    queues = dict(queues, node_res=node_res,
                  deserved=np.ascontiguousarray(np.hstack([queues["deserved"], des_m])),
                  fair_share=np.ascontiguousarray(np.hstack([queues["fair_share"], fair_m])),
                  allocated=np.ascontiguousarray(np.hstack([queues["allocated"], alloc_m])))
    return empty, cluster, running, pending, queues


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_model_columns_match_reference(seed):
    _, cluster, running, pending, queues = widen(seed, random_problem(seed, max_nodes=5, max_running=14))
    out = run_kernel(cluster, running, pending, queues)
    assert_same(out, plan_preemptions_ref(cluster, running, pending, queues))
    assert_same(_core.plan_preemptions(cluster, running, pending, queues), out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_model_columns_no_node_has_change_nothing(seed):
    problem = random_problem(seed, max_nodes=5, max_running=14)
    base = run_kernel(*problem[1:])
    _, cluster, running, pending, queues = widen(seed, copy.deepcopy(problem), loose=True)
    out = run_kernel(cluster, running, pending, queues)
    for k in base:
        if k == "allocated":
            np.testing.assert_array_equal(out[k][:, :3], base[k])
        elif k != "fit_mismatch":
            np.testing.assert_array_equal(out[k], base[k], err_msg=k)


def test_node_res_is_checked():
    _, cluster, running, pending, queues = widen(7, random_problem(7))
    bad = dict(queues, node_res=np.full(len(cluster["node_cpu_free"]), 2, np.int32))
    with pytest.raises(ValueError, match=r"queues\['node_res'\].*GPU-model column"):
        _core.plan_preemptions(cluster, running, pending, bad)
    short = dict(pending, req=np.ascontiguousarray(pending["req"][:, :3]))
    with pytest.raises(ValueError, match=r"pending\['req'\]"):
        _core.plan_preemptions(cluster, running, short, queues)
