"""Tests of the compiled fair-share kernel ``kaiwo_core._core.fair_share`` (pod-granular dynamic H-DRF).

The kernel is compared with the plain-Python reference ``tests.naive_queues.fair_share_ref`` on
random trees (every output identical, shares only decide ties and are computed the same way in both),
checked for invariants (capacity, limits, deserved <= fair share, work conservation, determinism), run
on the hand-checked examples of DESIGN.md / issue 3 (DRF paper, H-DRF starvation and blocking,
weights, limits, priority bands, unlimited quota) built directly as arrays, and fed bad input, which
must raise ValueError naming the key.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiwo_core import _core
from tests.naive_queues import fair_share_ref

OUT_DTYPES = {"demand": np.int64, "deserved": np.int64, "fair_share": np.int64, "allocated": np.int64,
              "admitted": np.uint8, "phase": np.int8}
GPU, CPU, MEM = 0, 1, 2


# ------------------------------------------------------------------------------------- builders

def make_tree(parent, capacity, quota=None, limit=None, weight=None, priority=None):
    """Tree dict; quota/limit/weight may be None (0 / -1 / 1.0), a row for every queue, or per queue."""
    Q = len(parent)

    def rows(x, default, dtype):
        if x is None:
            x = [default] * 3
        a = np.array(x, dtype=dtype)
        if a.ndim == 1:
            a = np.tile(a, (Q, 1))
        return np.ascontiguousarray(a.reshape(Q, 3))

    return {"parent": np.array(parent, np.int32), "quota": rows(quota, 0, np.int64),
            "limit": rows(limit, -1, np.int64), "weight": rows(weight, 1.0, np.float64),
            "priority": np.array(priority if priority is not None else [0] * Q, np.int32),
            "capacity": np.array(capacity, np.int64)}


def make_pods(per_queue):
    """per_queue: one list of [gpu, cpu, mem] requests per queue (internal queues: [])."""
    start, req = [0], []
    for lst in per_queue:
        req.extend(lst)
        start.append(len(req))
    return {"pod_start": np.array(start, np.int64),
            "req": np.array(req, np.int64).reshape(len(req), 3)}


def admitted_per_queue(out, pods):
    s = pods["pod_start"]
    return [int(out["admitted"][s[q]:s[q + 1]].sum()) for q in range(len(s) - 1)]


def run_both(tree, pods):
    out = _core.fair_share(tree, pods)
    ref = fair_share_ref(tree, pods)
    assert set(out) == set(OUT_DTYPES) == set(ref)
    for k, dt in OUT_DTYPES.items():
        assert out[k].dtype == dt and ref[k].dtype == dt, k
        np.testing.assert_array_equal(out[k], ref[k], err_msg=k)
    return out


# ------------------------------------------------------------------------- random inputs
#
# Hypothesis draws the shape of a problem (queue count, how deep and how dense, which features are
# on, capacities) and a seed; numpy fills in the per-queue and per-pod values from that seed. Drawing
# every value through hypothesis cost ~150 ms per example, almost all of the test time.

def is_leaf(parent):
    leaf = [True] * len(parent)
    for p in parent:
        if p >= 0:
            leaf[p] = False
    return leaf


def random_parents(rng, n, p_top):
    """Parent array of a random tree, depth <= 3, parents before children."""
    parent, depth = [], []
    for q in range(n):
        eligible = [a for a in range(q) if depth[a] < 2]
        p = -1
        if eligible and rng.random() >= p_top:
            p = int(rng.choice(eligible))
        parent.append(p)
        depth.append(0 if p < 0 else depth[p] + 1)
    return parent


# Small value sets on purpose: equal requests and equal shares make ties, which is where the
# kernel and the reference could disagree.
GPU_REQ = [0, 0, 250, 500, 1000, 1000, 2000, 8000]
CPU_REQ = [0, 500, 1000, 1000, 4000, 16000]
MEM_REQ = [0, 0, 1024, 4096, 32768]
WEIGHTS = [0.5, 1.0, 1.0, 2.0, 3.0, 4.0]
SCALES = (1000, 2000, 8192)  # quota/limit units per column


def random_amounts(rng, Q, density, absent):
    """[Q,3] quotas or limits: `absent` (0 or -1) with probability 1 - density, else -1, 0, a
    multiple of the column's unit, or any amount up to 40 units."""
    out = np.full((Q, 3), absent, np.int64)
    for q in range(Q):
        for r, s in enumerate(SCALES):
            if rng.random() < density:
                kind = rng.integers(0, 4)
                out[q, r] = (-1, 0, int(rng.integers(1, 13)) * s, int(rng.integers(1, 40 * s + 1)))[kind]
    return out


def random_weights(rng, Q, mode):
    if mode == "equal":
        return np.ones((Q, 3))
    if mode == "scalar":
        return np.repeat(rng.choice(WEIGHTS, size=(Q, 1)), 3, axis=1)
    if mode == "per-resource":
        return rng.choice(WEIGHTS, size=(Q, 3))
    return rng.uniform(0.5, 4.0, size=(Q, 3))


def random_requests(rng, n, uniform):
    if n == 0:
        return []
    pick = lambda vals: rng.choice(vals, size=1 if uniform else n)  # noqa: E731
    req = np.stack([pick(GPU_REQ), pick(CPU_REQ), pick(MEM_REQ)], axis=1)
    return np.broadcast_to(req, (n, 3)).tolist()


@st.composite
def knobs(draw, max_queues=40, max_pods=10):
    """Everything about a random problem except the values, which come from `seed`."""
    return {
        "Q": draw(st.integers(1, max_queues)),
        "p_top": draw(st.sampled_from([0.15, 0.35, 1.0])),
        "quota": draw(st.sampled_from([0.0, 0.3, 0.8])),
        "limit": draw(st.sampled_from([0.0, 0.15, 0.5])),
        "weights": draw(st.sampled_from(["equal", "scalar", "per-resource", "uniform"])),
        "priorities": draw(st.sampled_from([1, 3])),
        "max_pods": draw(st.integers(0, max_pods)),
        "uniform": draw(st.sampled_from([0.0, 0.5, 1.0])),  # share of queues of identical pods
        # Zero capacity is drawn rarely: a zero column blocks every pod that asks for it.
        "capacity": [draw(st.sampled_from([0, 4000, 8000, 8000, 16000, 16000, 64000, 64000])),
                     draw(st.sampled_from([0, 8000, 32000, 32000, 100000, 100000])),
                     draw(st.sampled_from([0, 65536, 262144, 262144, 1 << 20, 1 << 20]))],
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def random_problem(k):
    """(parent, quota, limit, weight, priority, per-queue requests) from `knobs`."""
    rng = np.random.default_rng(k["seed"])
    Q = k["Q"]
    parent = random_parents(rng, Q, k["p_top"])
    leaf = is_leaf(parent)
    quota = random_amounts(rng, Q, k["quota"], 0)
    limit = random_amounts(rng, Q, k["limit"], -1)
    weight = random_weights(rng, Q, k["weights"])
    priority = rng.integers(0, k["priorities"], size=Q)
    per_queue = [random_requests(rng, int(rng.integers(0, k["max_pods"] + 1)), rng.random() < k["uniform"])
                 if leaf[q] else [] for q in range(Q)]
    return parent, quota, limit, weight, priority, per_queue


@st.composite
def problems(draw, max_queues=40, max_pods=10):
    k = draw(knobs(max_queues, max_pods))
    parent, quota, limit, weight, priority, per_queue = random_problem(k)
    return make_tree(parent, k["capacity"], quota, limit, weight, priority), make_pods(per_queue)


def path(parent, q):
    out = []
    while q >= 0:
        out.append(q)
        q = int(parent[q])
    return out


def check_invariants(tree, pods, out):
    parent, cap, limit = tree["parent"], tree["capacity"], tree["limit"]
    Q = len(parent)
    leaf = is_leaf(parent.tolist())
    start, req = pods["pod_start"], pods["req"]
    alloc, des, fair, dem = out["allocated"], out["deserved"], out["fair_share"], out["demand"]
    admitted, phase = out["admitted"].astype(bool), out["phase"]
    assert ((phase > 0) == admitted).all()
    top = parent == -1
    total = alloc[top].sum(axis=0)
    assert (total <= cap).all()
    has_limit = limit >= 0
    assert (alloc[has_limit] <= limit[has_limit]).all()
    # The fair share is the virtual allocation itself (issue 11: never above capacity); a queue
    # below its deserved there was stopped by capacity or a limit (work conservation, below).
    assert (fair == alloc).all()
    assert (des >= 0).all() and (des <= dem).all()
    for q in range(Q):
        if parent[q] >= 0:
            assert (des[q] <= des[parent[q]]).all()
        if not leaf[q]:
            kids = np.flatnonzero(parent == q)
            np.testing.assert_array_equal(alloc[q], alloc[kids].sum(axis=0))
            np.testing.assert_array_equal(dem[q], dem[kids].sum(axis=0))
            continue
        a, b = start[q], start[q + 1]
        np.testing.assert_array_equal(alloc[q], req[a:b][admitted[a:b]].sum(axis=0))
        np.testing.assert_array_equal(dem[q], req[a:b].sum(axis=0))
        # Head of line: admitted pods are a prefix of the queue, phase-1 pods a prefix of those.
        k = int(admitted[a:b].sum())
        assert admitted[a:a + k].all()
        assert (np.diff(phase[a:a + k]) >= 0).all()
        # Work conservation: a queue left with demand is blocked by capacity or by a limit on its path.
        if k < b - a:
            p = a + k
            over_cap = (total + req[p] > cap).any()
            over_limit = any(((limit[n] >= 0) & (alloc[n] + req[p] > limit[n])).any() for n in path(parent, q))
            assert over_cap or over_limit, f"queue {q} left pod {p} that fits"
    # Phase 1 stays within deserved everywhere.
    p1 = np.zeros_like(alloc)
    for q in range(Q):
        if leaf[q]:
            a, b = start[q], start[q + 1]
            x = req[a:b][phase[a:b] == _core.PHASE_DESERVED].sum(axis=0)
            for n in path(parent, q):
                p1[n] += x
    assert (p1 <= des).all()


def check_problem(problem):
    tree, pods = problem
    out = run_both(tree, pods)
    check_invariants(tree, pods, out)
    again = _core.fair_share(tree, pods)
    for k in out:
        np.testing.assert_array_equal(out[k], again[k], err_msg=k)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(problems())
def test_kernel_matches_reference_and_keeps_invariants(problem):
    check_problem(problem)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.data_too_large])
@given(problems(max_queues=12, max_pods=60))
def test_kernel_matches_reference_many_pods(problem):
    check_problem(problem)


def test_large_random_tree_matches_reference():
    """300 queues in 3 levels, 6,000 pods of the mixed shapes: exercises saturation and deep ties."""
    rng = np.random.default_rng(7)
    parent = [-1] * 5 + [int(rng.integers(0, 5)) for _ in range(40)]
    parent += [int(rng.integers(5, 45)) for _ in range(255)]
    Q = len(parent)
    leaf = is_leaf(parent)
    unit = np.array([1, 4, 64])
    quota = rng.choice([0, 0, 1000, 4000, -1], size=(Q, 3))
    quota = np.where(quota < 0, -1, quota * unit)
    limit = rng.choice([-1, -1, -1, 16000, 64000], size=(Q, 3))
    limit = np.where(limit < 0, -1, limit * unit)
    weight = rng.choice([0.5, 1.0, 2.0, 3.0], size=(Q, 3))
    shapes = np.array([[1000, 16000, 131072], [500, 4000, 32768], [0, 4000, 8192], [8000, 128000, 1048576]])
    per_queue = [shapes[rng.integers(0, 4, size=int(rng.integers(0, 40)))].tolist() if leaf[q] else []
                 for q in range(Q)]
    tree = make_tree(parent, [800_000, 19_200_000, 200 * 1024 * 1024], quota, limit, weight,
                     rng.integers(0, 3, size=Q))
    pods = make_pods(per_queue)
    check_problem((tree, pods))


# ---------------------------------------------------------------------- hand-checked scenarios

def test_drf_paper_example():
    """9 CPU / 18 GiB; A <1 CPU, 4 GiB>, B <3 CPU, 1 GiB>, no quota, equal weights -> A 3, B 2."""
    tree = make_tree([-1, -1], [0, 9000, 18 * 1024])
    pods = make_pods([[[0, 1000, 4096]] * 10, [[0, 3000, 1024]] * 10])
    out = run_both(tree, pods)
    assert admitted_per_queue(out, pods) == [3, 2]
    np.testing.assert_array_equal(out["allocated"], [[0, 3000, 12288], [0, 6000, 2048]])
    assert (out["phase"][out["admitted"] == 1] == _core.PHASE_OVER_QUOTA).all()


def test_hdrf_starvation_example():
    """root -> n1 (GPU pods), n2 -> {n2_1 (CPU pods), n2_2 (GPU pods)}; 10 GPUs, 10 CPUs.

    Once n2_1 holds all CPU it is blocked on a saturated resource and, being blocked, is added raw to
    n2 while the saturated CPU is ignored: n2's share is n2_2's GPU share, so n1 and n2_2 split the
    GPUs evenly instead of n1 taking them all (naive hierarchical DRF would starve n2_2).
    """
    n1, n2, n2_1, n2_2 = range(4)
    tree = make_tree([-1, -1, n2, n2], [10_000, 10_000, 0])
    pods = make_pods([[[1000, 0, 0]] * 20, [], [[0, 1000, 0]] * 20, [[1000, 0, 0]] * 20])
    out = run_both(tree, pods)
    assert admitted_per_queue(out, pods) == [5, 0, 10, 5]
    np.testing.assert_array_equal(out["allocated"][n2], [5000, 10_000, 0])


def test_hdrf_blocking_example():
    """root -> n1, n2 (CPU pods), n3 -> {n3_1 (CPU), n3_2 (GPU)}, n4 (GPU); 30 CPUs, 30 GPUs.

    All five leaves rise together to 10 units, where CPU saturates and n1, n2, n3_1 are blocked. n3_1
    (blocked) is then added raw to n3 and CPU is ignored, so n3's share is n3_2's GPU share and n3_2
    and n4 split the remaining GPUs evenly: 15 each (rescaling every child, blocked ones included,
    would pin n3 at 1/3 and give n3_2 20, n4 10). The pod-granular dynamic allocation lands exactly
    on the H-DRF answer in both index layouts (n4 before or after n3's children).
    """
    cpu, gpu = [[0, 1000, 0]] * 40, [[1000, 0, 0]] * 40
    # n1, n2, n3, n3_1, n3_2, n4
    tree = make_tree([-1, -1, -1, 2, 2, -1], [30_000, 30_000, 0])
    pods = make_pods([cpu, cpu, [], cpu, gpu, gpu])
    assert admitted_per_queue(run_both(tree, pods), pods) == [10, 10, 0, 10, 15, 15]
    # n1, n2, n3, n4, n3_1, n3_2
    tree = make_tree([-1, -1, -1, -1, 2, 2], [30_000, 30_000, 0])
    pods = make_pods([cpu, cpu, [], gpu, cpu, gpu])
    assert admitted_per_queue(run_both(tree, pods), pods) == [10, 10, 0, 15, 10, 15]


def test_weights_divide_over_quota():
    """8 GPUs; A quota 2 weight 1, B quota 2 weight 3, 10 one-GPU pods each -> A 3, B 5."""
    gpu = [[1000, 0, 0]] * 10
    tree = make_tree([-1, -1], [8000, 0, 0], quota=[[2000, 0, 0]] * 2, weight=[[1.0] * 3, [3.0] * 3])
    pods = make_pods([gpu, gpu])
    out = run_both(tree, pods)
    assert admitted_per_queue(out, pods) == [3, 5]
    np.testing.assert_array_equal(out["deserved"][:, GPU], [2000, 2000])
    np.testing.assert_array_equal(out["fair_share"][:, GPU], [3000, 5000])
    np.testing.assert_array_equal(out["phase"][:10], [1, 1, 2] + [0] * 7)
    np.testing.assert_array_equal(out["phase"][10:], [1, 1, 2, 2, 2] + [0] * 5)


def test_limit_caps_a_heavier_queue():
    """Same as above with B limit 4 GPUs -> A 4, B 4."""
    gpu = [[1000, 0, 0]] * 10
    tree = make_tree([-1, -1], [8000, 0, 0], quota=[[2000, 0, 0]] * 2, weight=[[1.0] * 3, [3.0] * 3],
                     limit=[[-1, -1, -1], [4000, -1, -1]])
    pods = make_pods([gpu, gpu])
    out = run_both(tree, pods)
    assert admitted_per_queue(out, pods) == [4, 4]
    np.testing.assert_array_equal(out["fair_share"][:, GPU], [4000, 4000])


def test_limit_on_an_ancestor_caps_its_subtree():
    """A parent limit binds its children together; the sibling subtree takes the rest."""
    gpu = [[1000, 0, 0]] * 10
    # 0: team (limit 3 GPUs) -> 1, 2 ; 3: other
    tree = make_tree([-1, 0, 0, -1], [8000, 0, 0], limit=[[3000, -1, -1], [-1] * 3, [-1] * 3, [-1] * 3])
    pods = make_pods([[], gpu, gpu, gpu])
    out = run_both(tree, pods)
    assert admitted_per_queue(out, pods) == [0, 2, 1, 5]
    assert out["allocated"][0, GPU] == 3000


def test_priority_bands():
    """The higher-priority queue takes all over-quota before the lower one gets any."""
    gpu = [[1000, 0, 0]] * 10
    tree = make_tree([-1, -1], [8000, 0, 0], priority=[0, 1])
    pods = make_pods([gpu, gpu])
    assert admitted_per_queue(run_both(tree, pods), pods) == [0, 8]
    # Deserved quota still comes first: A keeps its 2 GPUs, B takes all the rest.
    tree = make_tree([-1, -1], [8000, 0, 0], quota=[[2000, 0, 0], [0, 0, 0]], priority=[0, 1])
    out = run_both(tree, pods)
    assert admitted_per_queue(out, pods) == [2, 6]
    # Bands apply among siblings at every level: inside a subtree too.
    tree = make_tree([-1, 0, 0, -1], [8000, 0, 0], priority=[0, 0, 5, 0])
    pods = make_pods([[], gpu, gpu, gpu])
    assert admitted_per_queue(run_both(tree, pods), pods) == [0, 0, 4, 4]


def test_unlimited_quota_deserves_demand():
    tree = make_tree([-1, -1], [8000, 64000, 65536], quota=[[-1, -1, -1], [0, 0, 0]])
    pods = make_pods([[[1000, 4000, 1024]] * 5, [[1000, 4000, 1024]] * 5])
    out = run_both(tree, pods)
    np.testing.assert_array_equal(out["deserved"][0], out["demand"][0])
    np.testing.assert_array_equal(out["deserved"][0], [5000, 20000, 5120])
    np.testing.assert_array_equal(out["phase"][:5], [_core.PHASE_DESERVED] * 5)
    assert admitted_per_queue(out, pods) == [5, 3]


def test_deserved_is_capped_by_demand_limit_and_parent():
    # 0: parent quota 4 GPUs -> 1 (quota 3), 2 (quota -1, limit 2); 3: limit below quota.
    tree = make_tree([-1, 0, 0, -1], [100_000, 0, 0],
                     quota=[[4000, 0, 0], [3000, 0, 0], [-1, 0, 0], [5000, 0, 0]],
                     limit=[[-1] * 3, [-1] * 3, [2000, -1, -1], [1000, -1, -1]])
    pods = make_pods([[], [[1000, 0, 0]] * 2, [[1000, 0, 0]] * 6, [[1000, 0, 0]] * 6])
    out = run_both(tree, pods)
    np.testing.assert_array_equal(out["demand"][:, GPU], [8000, 2000, 6000, 6000])
    # parent: min(4000, 8000); 1: min(3000, demand 2000); 2: min(demand, limit 2000); 3: limit 1000
    np.testing.assert_array_equal(out["deserved"][:, GPU], [4000, 2000, 2000, 1000])
    # Everyone fits in capacity; limits stop queue 2 at 2 and queue 3 at 1.
    assert admitted_per_queue(out, pods) == [0, 2, 2, 1]


def test_phase_one_fills_leaves_in_index_order_within_the_parent_quota():
    """Children's quotas summing above the parent's: earlier leaves take the parent's deserved first."""
    tree = make_tree([-1, 0, 0], [2000, 0, 0], quota=[[2000, 0, 0], [2000, 0, 0], [2000, 0, 0]])
    pods = make_pods([[], [[1000, 0, 0]] * 3, [[1000, 0, 0]] * 3])
    out = run_both(tree, pods)
    assert admitted_per_queue(out, pods) == [0, 2, 0]
    np.testing.assert_array_equal(out["phase"], [1, 1, 0, 0, 0, 0])


def test_head_of_line_pod_blocks_its_queue():
    """A queue's order is kept: a pod that does not fit blocks the smaller ones behind it."""
    tree = make_tree([-1, -1], [4000, 0, 0])
    pods = make_pods([[[1000, 0, 0], [8000, 0, 0], [1000, 0, 0]], [[1000, 0, 0]] * 5])
    out = run_both(tree, pods)
    assert admitted_per_queue(out, pods) == [1, 3]


def test_empty_tree_and_queues_without_pods():
    out = run_both(make_tree([], [1, 1, 1]), make_pods([]))
    assert out["allocated"].shape == (0, 3) and out["admitted"].shape == (0,)
    out = run_both(make_tree([-1, 0], [1000, 0, 0]), make_pods([[], []]))
    assert (out["fair_share"] == 0).all()


def test_zero_requests_and_zero_capacity_columns():
    """Pods asking for nothing always fit; a resource with zero capacity never enters a share."""
    tree = make_tree([-1, -1], [0, 4000, 0])
    pods = make_pods([[[0, 0, 0]] * 3 + [[0, 1000, 0]] * 5, [[0, 1000, 0]] * 5])
    out = run_both(tree, pods)
    assert admitted_per_queue(out, pods) == [5, 2]


# ------------------------------------------------------------------------------------ validation

def good():
    tree = make_tree([-1, 0, 0], [8000, 64000, 65536], quota=[[1000, 0, 0]] * 3)
    pods = make_pods([[], [[1000, 0, 0]], [[0, 1000, 0]]])
    return tree, pods


def _with(d, key, value):
    d = dict(d)
    if value is None:
        del d[key]
    else:
        d[key] = value
    return d


@pytest.mark.parametrize("key,value,match", [
    ("parent", np.array([-1, 0, 2], np.int32), r"tree\['parent'\].*smaller index"),
    ("parent", np.array([-1, 2, 1], np.int32), r"tree\['parent'\].*smaller index"),  # a cycle 1 <-> 2
    ("parent", np.array([-2, 0, 0], np.int32), r"tree\['parent'\]"),
    ("parent", np.array([-1, 0, 0], np.int64), r"tree\['parent'\].*int32"),
    ("parent", [-1, 0, 0], r"tree\['parent'\].*numpy array"),
    ("quota", np.zeros((3, 2), np.int64), r"tree\['quota'\].*shape"),
    ("quota", np.full((3, 3), -2, np.int64), r"tree\['quota'\].*-1"),
    ("quota", np.zeros((3, 3), np.int32), r"tree\['quota'\].*int64"),
    ("limit", np.zeros((2, 3), np.int64), r"tree\['limit'\].*shape"),
    ("limit", np.full((3, 3), -5, np.int64), r"tree\['limit'\]"),
    ("weight", np.zeros((3, 3)), r"tree\['weight'\].*> 0"),
    ("weight", np.full((3, 3), -1.0), r"tree\['weight'\].*> 0"),
    ("weight", np.full((3, 3), np.nan), r"tree\['weight'\]"),
    ("weight", np.full((3, 3), np.inf), r"tree\['weight'\]"),
    ("weight", np.ones((3, 3), np.float32), r"tree\['weight'\].*float64"),
    ("priority", np.zeros(2, np.int32), r"tree\['priority'\].*length"),
    ("capacity", np.zeros(2, np.int64), r"tree\['capacity'\].*length"),
    ("capacity", np.array([-1, 0, 0], np.int64), r"tree\['capacity'\]"),
    ("capacity", None, r"tree\['capacity'\].*missing"),
    ("bogus", np.zeros(3), r"tree\['bogus'\].*unknown"),
])
def test_bad_tree_raises_value_error_naming_the_key(key, value, match):
    tree, pods = good()
    with pytest.raises(ValueError, match=match):
        _core.fair_share(_with(tree, key, value), pods)


@pytest.mark.parametrize("key,value,match", [
    ("pod_start", np.array([0, 1, 1, 2], np.int64), r"pods\['pod_start'\].*not a leaf"),
    ("pod_start", np.array([0, 0, 2, 1], np.int64), r"pods\['pod_start'\].*monotone"),
    ("pod_start", np.array([1, 1, 1, 2], np.int64), r"pods\['pod_start'\].*start at 0"),
    ("pod_start", np.array([0, 0, 1, 3], np.int64), r"pods\['pod_start'\].*end"),
    ("pod_start", np.array([0, 0, 2], np.int64), r"pods\['pod_start'\].*length"),
    ("req", np.array([[1, 0, 0], [-1, 0, 0]], np.int64), r"pods\['req'\].*negative"),
    ("req", np.zeros((2, 2), np.int64), r"pods\['req'\].*shape"),
    ("req", np.zeros((2, 6), np.int64)[:, ::2], r"pods\['req'\].*C-contiguous"),
    ("req", np.full((2, 3), 2**62, np.int64), r"pods\['req'\].*2\^62"),
    ("extra", np.zeros(1), r"pods\['extra'\].*unknown"),
])
def test_bad_pods_raise_value_error_naming_the_key(key, value, match):
    tree, pods = good()
    with pytest.raises(ValueError, match=match):
        _core.fair_share(tree, _with(pods, key, value))


def test_good_input_passes_validation():
    tree, pods = good()
    run_both(tree, pods)


def test_parent_over_its_deserved_is_charged_as_over_quota():
    """Issue 11, parent-level charging. team (quota 2) -> c1, c2 (quota 2 each) against B (no
    quota), 6 GPUs. Phase 1 gives c1 2 GPUs (team's deserved is then used up). Phase 2, by hand
    (equal weights and priorities, ties to the lower index): team and B both at g 0 -> team, c1
    (index) takes one (c1 3, team over by 1); B 0 < 1/6 takes one; tie 1/6 -> team, where c2 (g 0,
    within its own quota) takes one -- but team is now 2 over its deserved, g 2/6; B takes the last.
    Team 4 (2 over), B 2 (2 over): the excess is split evenly. Before, c2's GPUs within c2's own
    quota counted as zero over-quota for team, and team ended with 5 against B's 1."""
    gpu = [[1000, 0, 0]] * 10
    tree = make_tree([-1, 0, 0, -1], [6000, 0, 0], quota=[[2000, 0, 0]] * 3 + [[0, 0, 0]])
    pods = make_pods([[], gpu, gpu, gpu])
    out = run_both(tree, pods)
    np.testing.assert_array_equal(out["deserved"][:, GPU], [2000, 2000, 2000, 0])
    assert admitted_per_queue(out, pods) == [0, 3, 1, 2]
    np.testing.assert_array_equal(out["fair_share"][:, GPU], [4000, 3000, 1000, 2000])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(problems())
def test_fair_shares_never_sum_above_capacity(problem):
    """Issue 11: per resource, the fair shares of the top-level queues, and of the leaves, add up to
    at most the capacity (before: a queue ahead by priority took over quota what another still
    deserved, and that queue's fair share, max(deserved, allocated), came on top: 26 GPUs on 24)."""
    tree, pods = problem
    out = _core.fair_share(tree, pods)
    parent = tree["parent"]
    leaf = np.asarray(is_leaf(parent.tolist()), bool)
    cap = tree["capacity"]
    for rows in (parent == -1, leaf):
        assert (out["fair_share"][rows].sum(axis=0) <= cap).all()
