"""The queue kernels with more than three resource columns (``_core.fair_share``,
``_core.order_pending``): gpu, cpu, memory, then one column per GPU model (R = 3 .. 64).

The random problems of the three-column tests are widened with model columns -- each pod's GPU
request charged again in the column of one model, or in none (a pod not tied to a model); per-model
quotas, limits, weights and capacities drawn like the others -- and every output compared with the
references in tests/naive_queues.py, which take R from the arrays. Metamorphic check tying the R > 3
copy of each kernel to the three-column one: columns nobody asks for (zero requests, no quota
limit) change nothing.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiwo_core import _core
from tests.test_fairshare_kernel import check_invariants
from tests.test_fairshare_kernel import problems as share_problems
from tests.test_fairshare_kernel import run_both as share_both
from tests.test_ordering_kernel import problems as order_problems
from tests.test_ordering_kernel import run_both as order_both

SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]


def model_columns(rng, pods, models: int, p_free: float) -> np.ndarray:
    """[P, models]: each pod's GPU request in the column of one model, or (probability p_free) none."""
    req = pods["req"]
    which = rng.integers(0, models, size=len(req))
    free = rng.random(len(req)) < p_free
    out = np.zeros((len(req), models), np.int64)
    out[np.arange(len(req)), which] = np.where(free, 0, req[:, 0])
    return out


def widen_tree(rng, tree, models: int, keys=("quota", "limit", "weight")):
    """Adds `models` columns to the tree matrices: per model, quotas/limits up to the GPU column's
    scale (or -1), weights as drawn for GPUs, capacity a share of the GPU capacity."""
    t = dict(tree)
    Q = len(tree["parent"])
    for key in keys:
        if key not in tree:
            continue
        if key == "weight":
            extra = rng.choice([0.5, 1.0, 1.0, 2.0, 4.0], size=(Q, models))
        else:
            base = -1 if key == "limit" else 0
            extra = np.where(rng.random((Q, models)) < 0.5, base,
                             rng.choice([-1, 0, 1000, 2000, 4000, 8000, 16000], size=(Q, models)))
        t[key] = np.ascontiguousarray(np.concatenate([tree[key], extra], axis=1).astype(tree[key].dtype))
    if "capacity" in tree:
        cap = tree["capacity"]
        split = rng.choice([0, 1000, 4000, 8000, int(cap[0])], size=models)
        t["capacity"] = np.concatenate([cap, split]).astype(np.int64)
    return t


@settings(max_examples=80, deadline=None, suppress_health_check=SLOW)
@given(share_problems(), st.integers(1, 4), st.sampled_from([0.0, 0.4, 1.0]), st.integers(0, 2**32 - 1))
def test_fair_share_with_model_columns_matches_reference(problem, models, p_free, seed):
    tree, pods = problem
    rng = np.random.default_rng(seed)
    wide_pods = {"pod_start": pods["pod_start"],
                 "req": np.ascontiguousarray(np.concatenate([pods["req"], model_columns(rng, pods, models, p_free)],
                                                            axis=1))}
    wide = widen_tree(rng, tree, models)
    out = share_both(wide, wide_pods)
    assert out["allocated"].shape == (len(tree["parent"]), 3 + models)
    check_invariants(wide, wide_pods, out)


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW)
@given(order_problems(), st.integers(1, 4), st.sampled_from([0.0, 0.4, 1.0]), st.integers(0, 2**32 - 1))
def test_order_pending_with_model_columns_matches_reference(problem, models, p_free, seed):
    tree, state, pods = problem
    rng = np.random.default_rng(seed)
    Q = len(tree["parent"])
    wide_pods = dict(pods, req=np.ascontiguousarray(
        np.concatenate([pods["req"], model_columns(rng, pods, models, p_free)], axis=1)))
    wide = widen_tree(rng, tree, models, keys=("limit",))
    des = rng.choice([0, 1000, 4000, 8000], size=(Q, models))
    wide["deserved"] = np.ascontiguousarray(np.concatenate([tree["deserved"], des], axis=1))
    wide["fair_share"] = np.ascontiguousarray(np.concatenate(
        [tree["fair_share"], des + rng.choice([0, 0, 1000, 4000], size=(Q, models))], axis=1))
    leaf = np.ones(Q, bool)
    leaf[tree["parent"][tree["parent"] >= 0]] = False
    alloc = np.where(leaf[:, None], rng.choice([0, 1000, 2000, 8000], size=(Q, models)), 0)
    wide_state = {"allocated": np.ascontiguousarray(np.concatenate(
        [np.where(leaf[:, None], state["allocated"], 0), alloc], axis=1))}
    if models == 2:  # with the capacity (saturated model columns) too
        wide["capacity"] = np.array([8000, 32000, 65536] + [4000, 16000], np.int64)
    order_both(wide, wide_state, wide_pods)


@settings(max_examples=40, deadline=None, suppress_health_check=SLOW)
@given(share_problems(), order_problems(), st.integers(1, 5))
def test_columns_nobody_asks_for_change_nothing(share_problem, order_problem, extra):
    """Zero requests, unlimited quota, no limit, any capacity: the wide copy of each kernel gives
    the three-column result (and the extra columns stay zero)."""
    tree, pods = share_problem
    Q = len(tree["parent"])

    def pad(a, value, dtype=np.int64):
        return np.ascontiguousarray(np.concatenate([a, np.full((len(a), extra), value, dtype)], axis=1))

    wide = dict(tree, quota=pad(tree["quota"], -1), limit=pad(tree["limit"], -1),
                weight=pad(tree["weight"], 1.0, np.float64),
                capacity=np.concatenate([tree["capacity"], np.arange(extra) * 1000]).astype(np.int64))
    narrow, out = _core.fair_share(tree, pods), _core.fair_share(wide, dict(pods, req=pad(pods["req"], 0)))
    for k in ("demand", "deserved", "fair_share", "allocated"):
        np.testing.assert_array_equal(out[k][:, :3], narrow[k], err_msg=k)
        assert (out[k][:, 3:] == 0).all(), k
    for k in ("admitted", "phase"):
        np.testing.assert_array_equal(out[k], narrow[k], err_msg=k)
    assert Q == len(out["demand"])

    tree, state, pods = order_problem
    wide = dict(tree, limit=pad(tree["limit"], -1), deserved=pad(tree["deserved"], 0),
                fair_share=pad(tree["fair_share"], 0))
    narrow = _core.order_pending(tree, state, pods)
    out = _core.order_pending(wide, {"allocated": pad(state["allocated"], 0)}, dict(pods, req=pad(pods["req"], 0)))
    np.testing.assert_array_equal(out["order"], narrow["order"])
    np.testing.assert_array_equal(out["status"], narrow["status"])


def test_model_columns_by_hand():
    """Two top-level queues, 16 GPUs: 8 MI300X (column 3) and 8 MI355X (column 4). A: gpu quota 8,
    MI300X quota 8; B: gpu quota 8, MI355X quota 8, MI355X limit 8. Both ask for 12 pods of one GPU
    each, A's on MI300X, B's on MI355X, plus B 4 more on MI300X. Deserved A (8 gpu, 8 MI300X),
    B (8 gpu, 8 MI355X; MI300X quota 0). Phase 1: A 8 (its MI300X quota), B's first 8 pods are
    on MI355X (its pods in order: 12 MI355X, then 4 MI300X) -- 8, then the 9th MI355X pod is over the
    MI355X limit. Phase 2: the MI300X and MI355X capacities are used up (8 + 8), so nothing more:
    A 8, B 8, each on its own model."""
    parent = np.array([-1, -1], np.int32)
    quota = np.array([[8000, -1, -1, 8000, -1], [8000, -1, -1, 0, 8000]], np.int64)
    limit = np.array([[-1] * 5, [-1, -1, -1, -1, 8000]], np.int64)
    tree = {"parent": parent, "quota": quota, "limit": limit, "weight": np.ones((2, 5)),
            "priority": np.zeros(2, np.int32), "capacity": np.array([16000, 10**6, 10**6, 8000, 8000], np.int64)}
    a = [[1000, 1000, 1024, 1000, 0]] * 12
    b = [[1000, 1000, 1024, 0, 1000]] * 12 + [[1000, 1000, 1024, 1000, 0]] * 4
    pods = {"pod_start": np.array([0, 12, 28], np.int64), "req": np.array(a + b, np.int64)}
    out = share_both(tree, pods)
    np.testing.assert_array_equal(out["deserved"][:, [0, 3, 4]], [[8000, 8000, 0], [8000, 0, 8000]])
    np.testing.assert_array_equal(out["fair_share"][:, [0, 3, 4]], [[8000, 8000, 0], [8000, 0, 8000]])


@pytest.mark.parametrize("cols, match", [(2, "3 to 64 resource columns"), (65, "3 to 64 resource columns")])
def test_resource_count_out_of_range_is_refused(cols, match):
    tree = {"parent": np.array([-1], np.int32), "quota": np.zeros((1, cols), np.int64),
            "limit": np.full((1, cols), -1, np.int64), "weight": np.ones((1, cols)),
            "priority": np.zeros(1, np.int32), "capacity": np.zeros(cols, np.int64)}
    pods = {"pod_start": np.array([0, 0], np.int64), "req": np.zeros((0, cols), np.int64)}
    with pytest.raises(ValueError, match=match):
        _core.fair_share(tree, pods)


def test_columns_must_agree():
    tree = {"parent": np.array([-1], np.int32), "quota": np.zeros((1, 4), np.int64),
            "limit": np.full((1, 4), -1, np.int64), "weight": np.ones((1, 4)),
            "priority": np.zeros(1, np.int32), "capacity": np.zeros(4, np.int64)}
    pods = {"pod_start": np.array([0, 0], np.int64), "req": np.zeros((0, 3), np.int64)}
    with pytest.raises(ValueError, match=r"pods\['req'\].*\(pods, 4\)"):
        _core.fair_share(tree, pods)
    with pytest.raises(ValueError, match=r"tree\['quota'\].*\(1, 4\)"):
        _core.fair_share(dict(tree, quota=np.zeros((1, 3), np.int64)), dict(pods, req=np.zeros((0, 4), np.int64)))
    with pytest.raises(ValueError, match=r"tree\['capacity'\].*length 4"):
        _core.fair_share(dict(tree, capacity=np.zeros(3, np.int64)), dict(pods, req=np.zeros((0, 4), np.int64)))
