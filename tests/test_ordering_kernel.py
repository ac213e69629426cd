"""Tests of the compiled ordering kernel ``kaiwo_core._core.order_pending`` (keyed heaps per tree node).

The kernel is compared with the plain-Python reference ``tests.naive_queues.order_pending_ref`` (which
rescans siblings with ``min()``) on random trees, allocations and pending pods with gangs and many
ties; checked for invariants (every pod exactly once, gangs consecutive, queue order kept, limits
respected, held pods really over a limit, determinism); run on hand-checked scenarios built as arrays;
and fed bad input, which must raise ValueError naming the key.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiwo_core import _core
from tests.naive_queues import order_pending_ref, queue_units_ref
from tests.test_fairshare_kernel import is_leaf, knobs, make_pods, make_tree, random_problem

GPU, CPU, MEM = 0, 1, 2


# ------------------------------------------------------------------------------------- builders

def make_inputs(parent, deserved, fair_share, allocated, per_queue, limit=None, priority=None,
                keys=None, tiebreak=None, gang=None):
    """(tree, state, pods) dicts. per_queue: requests per queue; keys/tiebreak/gang: flat per pod
    (defaults: key 0, tiebreak = index, no gang). Matrices may be given as one row for all queues."""
    Q = len(parent)
    tree = make_tree(parent, [0, 0, 0], limit=limit, priority=priority)
    del tree["capacity"], tree["quota"], tree["weight"]

    def rows(x):
        a = np.array(x, np.int64)
        return np.ascontiguousarray(np.tile(a, (Q, 1)) if a.ndim == 1 else a.reshape(Q, 3))

    tree["deserved"], tree["fair_share"] = rows(deserved), rows(fair_share)
    pods = make_pods(per_queue)
    P = len(pods["req"])
    pods["key"] = np.array(keys if keys is not None else [0.0] * P, np.float64)
    pods["tiebreak"] = np.array(tiebreak if tiebreak is not None else range(P), np.int64)
    pods["gang"] = np.array(gang if gang is not None else [-1] * P, np.int32)
    return tree, {"allocated": rows(allocated)}, pods


def run_both(tree, state, pods):
    out = _core.order_pending(tree, state, pods)
    ref = order_pending_ref(tree, state, pods)
    assert set(out) == set(ref) == {"order", "status"}
    assert out["order"].dtype == ref["order"].dtype == np.int64
    assert out["status"].dtype == ref["status"].dtype == np.int8
    np.testing.assert_array_equal(out["order"], ref["order"], err_msg="order")
    np.testing.assert_array_equal(out["status"], ref["status"], err_msg="status")
    return out


def pods_of(pods, q):
    return list(range(int(pods["pod_start"][q]), int(pods["pod_start"][q + 1])))


# ------------------------------------------------------------------------- random inputs

KEYS = [0.0, 0.0, 1.0, -1.0, 2.5, 100.0, 1e-9, -0.0]


@st.composite
def problems(draw, max_queues=40, max_pods=10):
    """A random tree (as in the fair-share tests) with random deserved/fair-share/allocated rows and
    pending pods with colliding keys and tiebreaks and some gangs."""
    k = draw(knobs(max_queues, max_pods))
    parent, _quota, limit, _weight, priority, per_queue = random_problem(k)
    Q = len(parent)
    leaf = is_leaf(parent)
    rng = np.random.default_rng(k["seed"] ^ 0x5EED)
    scale = np.array([1000, 2000, 8192])

    def amounts(p_zero):
        a = rng.integers(0, 12, size=(Q, 3)) * scale
        return np.where(rng.random((Q, 3)) < p_zero, 0, a)

    deserved = amounts(draw(st.sampled_from([0.2, 0.5, 1.0])))
    fair = np.maximum(deserved, amounts(draw(st.sampled_from([0.0, 0.3, 0.6]))))
    allocated = np.where(np.array(leaf)[:, None], amounts(draw(st.sampled_from([0.3, 0.7]))), 0)
    if draw(st.booleans()):  # internal rows filled in: must be the sum of their children
        for q in reversed(range(Q)):
            if parent[q] >= 0:
                allocated[parent[q]] += allocated[q]
    tree, state, pods = make_inputs(parent, deserved, fair, allocated, per_queue, limit=limit,
                                    priority=priority)
    P = len(pods["req"])
    pods["key"] = rng.choice(KEYS, size=P) if draw(st.booleans()) else rng.normal(size=P)
    pods["tiebreak"] = rng.integers(0, max(1, P // 2 if draw(st.booleans()) else 10 * P), size=P)
    gang = np.full(P, -1, np.int32)
    p_gang = draw(st.sampled_from([0.0, 0.3, 0.8]))
    for q in range(Q):
        for p in pods_of(pods, q):
            if rng.random() < p_gang:
                gang[p] = 1000 * q + int(rng.integers(0, 3))  # up to 3 gangs per queue
    pods["gang"] = gang
    return tree, state, pods


def path(parent, q):
    out = []
    while q >= 0:
        out.append(q)
        q = int(parent[q])
    return out


def check_invariants(tree, state, pods, out):
    parent, limit = tree["parent"], tree["limit"]
    Q, P = len(parent), len(pods["req"])
    leaf = is_leaf(parent.tolist())
    order, status = out["order"], out["status"]
    # Every pod exactly once: ordered or held.
    assert sorted(order.tolist() + np.flatnonzero(status == _core.ORDER_HELD_LIMIT).tolist()) == list(range(P))
    assert (status[order] == _core.ORDER_OK).all()
    assert set(np.unique(status).tolist()) <= {_core.ORDER_OK, _core.ORDER_HELD_LIMIT}
    # Gang members are consecutive in `order` and share one status.
    pos = {int(p): i for i, p in enumerate(order)}
    gang = pods["gang"]
    for gid in set(gang[gang >= 0].tolist()):
        members = np.flatnonzero(gang == gid)
        assert len(set(status[members].tolist())) == 1
        if status[members[0]] == _core.ORDER_OK:
            idx = sorted(pos[int(m)] for m in members)
            assert idx == list(range(idx[0], idx[0] + len(idx)))
    # Within a queue, the ordered units keep the queue's own order.
    queue_of = np.repeat(np.arange(Q), np.diff(pods["pod_start"]))
    for q in range(Q):
        if leaf[q]:
            expect = [p for u in queue_units_ref(pods, q) for p in u if status[p] == _core.ORDER_OK]
            assert [int(p) for p in order if queue_of[p] == q] == expect
    # Limits: ordering never pushes a queue over a limit it was within; held units really overflow.
    start = np.where(np.array(leaf, bool)[:, None], state["allocated"], 0)
    for q in reversed(range(Q)):
        if parent[q] >= 0:
            start[parent[q]] += start[q]
    final = start.copy()
    for p in order:
        for a in path(parent, queue_of[p]):
            final[a] += pods["req"][p]
    has = limit >= 0
    within = has & (start <= limit)
    assert (final[within] <= limit[within]).all()
    for q in range(Q):
        if not leaf[q]:
            continue
        for unit in queue_units_ref(pods, q):
            if status[unit[0]] == _core.ORDER_HELD_LIMIT:
                need = pods["req"][unit].sum(axis=0)
                assert any(((limit[a] >= 0) & (need > 0) & (final[a] + need > limit[a])).any()
                           for a in path(parent, q))


def check_problem(problem):
    tree, state, pods = problem
    out = run_both(tree, state, pods)
    check_invariants(tree, state, pods, out)
    again = _core.order_pending(tree, state, pods)
    for k in out:
        np.testing.assert_array_equal(out[k], again[k], err_msg=k)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(problems())
def test_kernel_matches_reference_and_keeps_invariants(problem):
    check_problem(problem)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.data_too_large])
@given(problems(max_queues=12, max_pods=60))
def test_kernel_matches_reference_many_pods(problem):
    check_problem(problem)


def test_fed_by_fair_share_on_a_large_tree():
    """fair_share's output drives order_pending: 300 queues in 3 levels, 5,000 pending pods."""
    rng = np.random.default_rng(11)
    parent = [-1] * 5 + [int(rng.integers(0, 5)) for _ in range(40)]
    parent += [int(rng.integers(5, 45)) for _ in range(255)]
    Q = len(parent)
    leaf = is_leaf(parent)
    shapes = np.array([[1000, 16000, 131072], [500, 4000, 32768], [0, 4000, 8192], [8000, 128000, 1048576]])
    per_queue = [shapes[rng.integers(0, 4, size=int(rng.integers(0, 35)))].tolist() if leaf[q] else []
                 for q in range(Q)]
    quota = np.where(rng.random((Q, 3)) < 0.5, 0, rng.integers(0, 8, size=(Q, 3)) * [1000, 16000, 131072])
    limit = np.where(rng.random((Q, 3)) < 0.9, -1, rng.integers(1, 20, size=(Q, 3)) * [1000, 16000, 131072])
    ftree = make_tree(parent, [400_000, 9_600_000, 100 * 1024 * 1024], quota, limit,
                      rng.choice([1.0, 2.0], size=(Q, 3)), rng.integers(0, 2, size=Q))
    fs = _core.fair_share(ftree, make_pods(per_queue))
    allocated = np.where(np.array(leaf)[:, None], fs["allocated"] // 2, 0)
    tree, state, pods = make_inputs(parent, fs["deserved"], fs["fair_share"], allocated, per_queue,
                                    limit=limit, priority=ftree["priority"])
    P = len(pods["req"])
    pods["key"] = -rng.integers(0, 3, size=P) * 100.0
    pods["tiebreak"] = rng.permutation(P)
    gang = np.full(P, -1, np.int32)
    for q in range(Q):
        idx = pods_of(pods, q)
        if len(idx) >= 4 and rng.random() < 0.3:
            gang[idx[:4]] = q
    pods["gang"] = gang
    check_problem((tree, state, pods))


# ---------------------------------------------------------------------- hand-checked scenarios

ONE_GPU = [1000, 0, 0]


def test_below_deserved_goes_first_then_priority():
    """A (priority 0) is below its deserved 2 GPUs: its first two pods go before any of B's
    (priority 5); once A is at deserved, both are in class 1 and B's higher priority wins."""
    tree, state, pods = make_inputs([-1, -1], [[2000, 0, 0], [0, 0, 0]], [[2000, 0, 0], [0, 0, 0]],
                                    [0, 0, 0], [[ONE_GPU] * 4, [ONE_GPU] * 3], priority=[0, 5])
    out = run_both(tree, state, pods)
    assert out["order"].tolist() == [0, 1, 4, 5, 6, 2, 3]


def test_smallest_share_of_fair_share_first():
    """Same class and priority: the lower allocated/fair_share goes first, ties to the lower index.
    A's fair share is 4 GPUs and B's 2, so A gets two pods for each of B's."""
    tree, state, pods = make_inputs([-1, -1], [0, 0, 0], [[4000, 0, 0], [2000, 0, 0]], [0, 0, 0],
                                    [[ONE_GPU] * 6, [ONE_GPU] * 3])
    out = run_both(tree, state, pods)
    # shares A/B: 0/0 -> A; .25/0 -> B; .25/.5 -> A; .5/.5 -> A; .75/.5 -> B; .75/1 -> A; 1/1 -> A; ...
    assert out["order"].tolist() == [0, 6, 1, 2, 7, 3, 4, 8, 5]


def test_running_allocation_counts_and_zero_fair_share_is_infinite():
    """Allocated by running pods counts in the share; using a resource with no fair share = +inf
    (when the pending pods ask for it: a resource they do not ask for is left out of the share)."""
    tree, state, pods = make_inputs([-1, -1, -1], [0, 0, 0],
                                    [[4000, 8000, 0], [4000, 8000, 0], [4000, 8000, 0]],
                                    [[3000, 0, 0], [1000, 0, 0], [0, 0, 1]],
                                    [[ONE_GPU], [ONE_GPU], [[1000, 0, 1]]])
    out = run_both(tree, state, pods)
    assert out["order"].tolist() == [1, 0, 2]
    # The same running memory, but the pending pod asks only for a GPU: memory does not count.
    tree, state, pods = make_inputs([-1, -1, -1], [0, 0, 0],
                                    [[4000, 8000, 0], [4000, 8000, 0], [4000, 8000, 0]],
                                    [[3000, 0, 0], [1000, 0, 0], [0, 0, 1]],
                                    [[ONE_GPU], [ONE_GPU], [ONE_GPU]])
    assert run_both(tree, state, pods)["order"].tolist() == [2, 1, 0]


def test_internal_nodes_compare_their_subtree_aggregate():
    """team (two leaves) against solo: the team's share is its children's total."""
    # 0: team -> 1, 2 ; 3: solo. Fair shares 4 GPUs each at the top, 2 per team leaf.
    fair = [[4000, 0, 0], [2000, 0, 0], [2000, 0, 0], [4000, 0, 0]]
    tree, state, pods = make_inputs([-1, 0, 0, -1], [0, 0, 0], fair, [0, 0, 0],
                                    [[], [ONE_GPU] * 2, [ONE_GPU] * 2, [ONE_GPU] * 4])
    out = run_both(tree, state, pods)
    # team 0 vs solo 0 -> team (leaf 1); team .25 vs solo 0 -> solo; team .25 = solo .25 -> team (leaf 2)...
    assert out["order"].tolist() == [0, 4, 2, 5, 1, 6, 3, 7]


def test_within_queue_key_then_tiebreak_then_index():
    tree, state, pods = make_inputs([-1], [0, 0, 0], [0, 0, 0], [0, 0, 0], [[ONE_GPU] * 5],
                                    keys=[1.0, -2.0, 1.0, 1.0, -0.0], tiebreak=[7, 9, 3, 3, 5])
    out = run_both(tree, state, pods)
    assert out["order"].tolist() == [1, 4, 2, 3, 0]


def test_gang_is_one_unit_at_its_best_member():
    # Queue 0: pods 0..5; gang 7 = {1, 3, 5}; its best member (pod 3, key -1) puts it first.
    tree, state, pods = make_inputs([-1, -1], [0, 0, 0], [[8000, 0, 0]] * 2, [0, 0, 0],
                                    [[ONE_GPU] * 6, [ONE_GPU] * 2],
                                    keys=[0, 5, 1, -1, 2, 3, 0, 0], gang=[-1, 7, -1, 7, -1, 7, -1, -1])
    out = run_both(tree, state, pods)
    # The gang (members in key order: 3, 5, 1; 3 GPUs) first, then queue 1 (share 0 < 3/8) twice, then the rest of queue 0.
    assert out["order"].tolist() == [3, 5, 1, 6, 7, 0, 2, 4]


def test_limit_holds_back_pods_and_whole_gangs():
    # Queue 0: limit 3 GPUs, running 1. Pods: 1 GPU, a gang of 2 x 1 GPU, 1 GPU, a CPU-only pod.
    tree, state, pods = make_inputs(
        [-1], [0, 0, 0], [[3000, 0, 0]], [[1000, 0, 0]],
        [[ONE_GPU, ONE_GPU, ONE_GPU, ONE_GPU, [0, 1000, 0]]], limit=[[3000, -1, -1]],
        keys=[0, 1, 1, 2, 3], gang=[-1, 4, 4, -1, -1])
    out = run_both(tree, state, pods)
    # pod 0 brings the queue to 2 GPUs; the gang would make it 4 > 3 (both held); pod 3 fits (3);
    # the CPU-only pod asks for no GPU, so the GPU limit does not hold it back.
    assert out["order"].tolist() == [0, 3, 4]
    assert out["status"].tolist() == [0, 1, 1, 0, 0]


def test_ancestor_limit_holds_back_pods_of_every_child():
    tree, state, pods = make_inputs([-1, 0, 0], [0, 0, 0], [[4000, 0, 0]] * 3, [0, 0, 0],
                                    [[], [ONE_GPU] * 2, [ONE_GPU] * 2], limit=[[3000, -1, -1], [-1] * 3, [-1] * 3])
    out = run_both(tree, state, pods)
    assert out["order"].tolist() == [0, 2, 1]
    assert out["status"].tolist() == [0, 0, 0, 1]


def test_internal_allocated_rows_zero_or_sum():
    args = ([-1, 0, 0], [0, 0, 0], [[4000, 0, 0]] * 3)
    lists = [[], [ONE_GPU], [ONE_GPU]]
    zero = run_both(*make_inputs(*args, [[0, 0, 0], [2000, 0, 0], [1000, 0, 0]], lists))
    summed = run_both(*make_inputs(*args, [[3000, 0, 0], [2000, 0, 0], [1000, 0, 0]], lists))
    np.testing.assert_array_equal(zero["order"], summed["order"])
    assert zero["order"].tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"state\['allocated'\].*queue 0"):
        _core.order_pending(*make_inputs(*args, [[2000, 0, 0], [2000, 0, 0], [1000, 0, 0]], lists))


def test_empty_inputs():
    out = run_both(*make_inputs([], [0, 0, 0], [0, 0, 0], [0, 0, 0], []))
    assert out["order"].shape == (0,) and out["status"].shape == (0,)
    out = run_both(*make_inputs([-1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [[], []]))
    assert out["order"].shape == (0,)


def test_accepts_the_fair_share_tree_dict():
    """quota, weight and capacity are accepted (and validated) so one tree dict serves both calls."""
    ftree = make_tree([-1, -1], [4000, 0, 0], quota=[[1000, 0, 0]] * 2)
    pods = make_pods([[ONE_GPU] * 3, [ONE_GPU] * 3])
    fs = _core.fair_share(ftree, pods)
    tree = dict(ftree, deserved=fs["deserved"], fair_share=fs["fair_share"])
    pods.update(key=np.zeros(6), tiebreak=np.arange(6), gang=np.full(6, -1, np.int32))
    out = run_both(tree, {"allocated": np.zeros((2, 3), np.int64)}, pods)
    assert out["order"].tolist() == [0, 3, 1, 4, 2, 5]
    with pytest.raises(ValueError, match=r"tree\['weight'\]"):
        _core.order_pending(dict(tree, weight=np.zeros((2, 3))), {"allocated": np.zeros((2, 3), np.int64)}, pods)


# ------------------------------------------------------------------------------------ validation

def good():
    return make_inputs([-1, 0, 0], [[1000, 0, 0]] * 3, [[2000, 0, 0]] * 3, [0, 0, 0],
                       [[], [ONE_GPU] * 2, [ONE_GPU]], gang=[3, 3, -1])


def _with(d, key, value):
    d = dict(d)
    if value is None:
        del d[key]
    else:
        d[key] = value
    return d


@pytest.mark.parametrize("which,key,value,match", [
    ("tree", "parent", np.array([-1, 0, 3], np.int32), r"tree\['parent'\].*smaller index"),
    ("tree", "parent", np.array([-1, 2, 1], np.int32), r"tree\['parent'\].*smaller index"),
    ("tree", "deserved", None, r"tree\['deserved'\].*missing"),
    ("tree", "deserved", np.full((3, 3), -1, np.int64), r"tree\['deserved'\].*>= 0"),
    ("tree", "fair_share", np.zeros((3, 3), np.int32), r"tree\['fair_share'\].*int64"),
    ("tree", "fair_share", np.zeros((3, 4), np.int64), r"tree\['fair_share'\].*shape"),
    ("tree", "limit", np.full((3, 3), -2, np.int64), r"tree\['limit'\]"),
    ("tree", "priority", np.zeros(3, np.int64), r"tree\['priority'\].*int32"),
    ("tree", "quota", np.full((3, 3), -3, np.int64), r"tree\['quota'\]"),
    ("tree", "capacity", np.zeros(4, np.int64), r"tree\['capacity'\]"),
    ("tree", "colour", np.zeros(3), r"tree\['colour'\].*unknown"),
    ("state", "allocated", np.full((3, 3), -1, np.int64), r"state\['allocated'\].*>= 0"),
    ("state", "allocated", np.zeros((2, 3), np.int64), r"state\['allocated'\].*shape"),
    ("state", "allocated", None, r"state\['allocated'\].*missing"),
    ("state", "running", np.zeros(3), r"state\['running'\].*unknown"),
    ("pods", "pod_start", np.array([0, 1, 2, 3], np.int64), r"pods\['pod_start'\].*not a leaf"),
    ("pods", "req", np.array([[1, 0, 0], [0, -1, 0], [0, 0, 0]], np.int64), r"pods\['req'\].*negative"),
    ("pods", "key", np.array([0.0, np.nan, 1.0]), r"pods\['key'\].*finite"),
    ("pods", "key", np.array([0.0, np.inf, 1.0]), r"pods\['key'\].*finite"),
    ("pods", "key", np.zeros(2), r"pods\['key'\].*length"),
    ("pods", "key", np.zeros(3, np.float32), r"pods\['key'\].*float64"),
    ("pods", "tiebreak", np.zeros(3, np.int32), r"pods\['tiebreak'\].*int64"),
    ("pods", "gang", np.array([-2, -1, -1], np.int32), r"pods\['gang'\].*-1"),
    ("pods", "gang", np.array([3, -1, 3], np.int32), r"pods\['gang'\].*one queue"),
    ("pods", "gang", None, r"pods\['gang'\].*missing"),
])
def test_bad_input_raises_value_error_naming_the_key(which, key, value, match):
    tree, state, pods = good()
    args = {"tree": tree, "state": state, "pods": pods}
    args[which] = _with(args[which], key, value)
    with pytest.raises(ValueError, match=match):
        _core.order_pending(args["tree"], args["state"], args["pods"])


def test_good_input_passes_validation():
    out = run_both(*good())
    assert out["order"].tolist() == [0, 1, 2]
