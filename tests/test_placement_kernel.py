"""Tests of the compiled placement kernel ``kaiwo_core._core.place_batch``.

The kernel is compared with the naive reference ``tests.naive.place_batch_ref`` on random clusters and
batches (every output and the in-place cluster update must be identical), checked for invariants
(no overcommit, exclusive devices hold one pod, determinism), and on hand-checked scenarios built
directly at the array level. Validation errors must be ValueErrors naming the offending key.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiwo_core import _core
from tests.naive import best_xcd_subset_ref, feasible_nodes_ref, node_scores_ref, place_batch_ref

STRATEGIES = [_core.STRATEGY_BINPACK, _core.STRATEGY_SPREAD, _core.STRATEGY_FRAG_AWARE,
              _core.STRATEGY_RANDOM, _core.STRATEGY_BEST_FIT, _core.STRATEGY_DOT_PRODUCT,
              _core.STRATEGY_GPU_PACKING, _core.STRATEGY_GPU_CLUSTERING, _core.STRATEGY_FGD,
              _core.STRATEGY_LOAD]
#: Strategies that choose the device of a one-device sharing pod themselves.
OWN_DEVICE_PICK = (_core.STRATEGY_RANDOM, _core.STRATEGY_FGD, _core.STRATEGY_FRAG_AWARE)
MUTABLE = ("node_cpu_free", "node_mem_free", "node_pods_free", "dev_milli_free", "dev_mem_free",
           "dev_xcd_free", "dev_state")
OUT_DTYPES = {"node": np.int32, "asg_start": np.int64, "asg_dev": np.int32, "asg_milli": np.int64,
              "asg_mem": np.int64, "asg_xcds": np.uint32, "reason_counts": np.int32,
              "best_share": np.int64, "gang_failed": np.uint8}

SPX_MEM = 196608  # MI300X, 192 GB in MiB
CPX_MEM = 24576


# ------------------------------------------------------------------------------------- builders

def make_cluster(nodes):
    """nodes: list of dicts {cpu_cap, cpu_free, mem_cap, mem_free, pods_free, devs: [dev dicts]}.

    dev dict: {gpu, mem_cap, mask, xpd, milli_free, mem_free, xcd_free, state} (defaults: idle).
    """
    devs = [d for n in nodes for d in n["devs"]]
    start = np.zeros(len(nodes) + 1, np.int64)
    start[1:] = np.cumsum([len(n["devs"]) for n in nodes])

    def col(seq, dtype):
        return np.array(list(seq), dtype=dtype)

    return {
        "node_cpu_free": col((n["cpu_free"] for n in nodes), np.int64),
        "node_mem_free": col((n["mem_free"] for n in nodes), np.int64),
        "node_pods_free": col((n["pods_free"] for n in nodes), np.int64),
        "node_cpu_cap": col((n["cpu_cap"] for n in nodes), np.int64),
        "node_mem_cap": col((n["mem_cap"] for n in nodes), np.int64),
        "node_dev_start": start,
        "dev_gpu": col((d.get("gpu", 0) for d in devs), np.int32),
        "dev_mem_cap": col((d["mem_cap"] for d in devs), np.int64),
        "dev_xcd_mask": col((d["mask"] for d in devs), np.uint32),
        "dev_xcds_per_domain": col((d["xpd"] for d in devs), np.int32),
        "dev_milli_free": col((d.get("milli_free", 1000) for d in devs), np.int64),
        "dev_mem_free": col((d.get("mem_free", d["mem_cap"]) for d in devs), np.int64),
        "dev_xcd_free": col((d.get("xcd_free", d["mask"]) for d in devs), np.uint32),
        "dev_state": col((d.get("state", 0) for d in devs), np.int8),
    }


def make_batch(pods, n_nodes, class_mask=None, extra_score=None):
    """pods: list of dicts {cpu, mem, kind, count, milli, gpu_mem, exclusive, cls} (defaults 0)."""
    def col(key, dtype, default=0):
        return np.array([p.get(key, default) for p in pods], dtype=dtype)

    b = {"cpu": col("cpu", np.int64), "mem": col("mem", np.int64), "kind": col("kind", np.int8),
         "count": col("count", np.int32), "milli": col("milli", np.int32),
         "gpu_mem": col("gpu_mem", np.int64), "exclusive": col("exclusive", np.uint8),
         "cls": col("cls", np.int32),
         "class_mask": np.ones((1, n_nodes), np.uint8) if class_mask is None
         else np.ascontiguousarray(class_mask, dtype=np.uint8)}
    if extra_score is not None:
        b["extra_score"] = np.ascontiguousarray(extra_score, dtype=np.float64)
    return b


def node(devs, cpu=256000, mem=2_000_000, pods=110):
    return {"cpu_cap": cpu, "cpu_free": cpu, "mem_cap": mem, "mem_free": mem, "pods_free": pods,
            "devs": devs}


def spx(gpu=0):
    return {"gpu": gpu, "mem_cap": SPX_MEM, "mask": 0xFF, "xpd": 8}


def cpx_node():
    """8 MI300X in CPX/NPS4: 64 logical GPUs of one XCD each; XCD pair (2k, 2k+1) shares quadrant k."""
    return node([{"gpu": g, "mem_cap": CPX_MEM, "mask": 1 << x, "xpd": 2}
                 for g in range(8) for x in range(8)])


def run_both(cluster, batch, strategy):
    """(kernel result, kernel cluster, reference result, reference cluster) on copies."""
    ck, cr = copy.deepcopy(cluster), copy.deepcopy(cluster)
    out = _core.place_batch(ck, batch, strategy)
    ref = place_batch_ref(cr, batch, strategy)
    return out, ck, ref, cr


def assert_same(out, ck, ref, cr):
    assert set(out) == set(OUT_DTYPES)
    for k, dt in OUT_DTYPES.items():
        assert out[k].dtype == dt, k
        assert ref[k].dtype == dt, k
        np.testing.assert_array_equal(out[k], ref[k], err_msg=k)
    for k in MUTABLE + ("node_gpu_kinds",):
        if k in ck:
            np.testing.assert_array_equal(ck[k], cr[k], err_msg=k)


# ------------------------------------------------------------------------- random inputs

# (mask, xcds per domain) of a logical GPU: generic, SPX (NPS1/NPS4-like), DPX halves, QPX pairs, CPX.
DEVICE_KINDS = [(0, 0), (0xFF, 8), (0xFF, 2), (0x0F, 4), (0xF0, 2), (0x03, 2), (0x0C, 1),
                (0x30, 2), (0x01, 2), (0x80, 1), (0x02, 2)]
MEM_CAPS = [1000, CPX_MEM, 81920, SPX_MEM]
MILLIS = [0, 100, 125, 250, 300, 375, 500, 600, 999, 1000]
GPU_MEMS = [0, 0, 0, 500, 4000, 30000]


@st.composite
def devices(draw):
    mask, xpd = draw(st.sampled_from(DEVICE_KINDS))
    mem_cap = draw(st.sampled_from(MEM_CAPS))
    state = draw(st.sampled_from([0, 0, 1, 1, 2]))
    d = {"gpu": draw(st.integers(0, 7)), "mem_cap": mem_cap, "mask": mask, "xpd": xpd, "state": state}
    if state == 2:
        d.update(milli_free=0, mem_free=0, xcd_free=0)
    elif state == 1:
        # Some XCDs held by XCD pods, some compute and memory used by time-sliced pods.
        taken = mask & draw(st.integers(0, 255))
        nx = bin(mask).count("1")
        taken_milli = (bin(taken).count("1") * 1000 // nx) if nx else 0
        d.update(xcd_free=mask & ~taken,
                 milli_free=draw(st.integers(0, 1000 - taken_milli)),
                 mem_free=draw(st.integers(0, mem_cap)))
    return d


@st.composite
def clusters(draw, max_nodes=8):
    n = draw(st.integers(1, max_nodes))
    nodes = []
    for _ in range(n):
        cpu_cap = draw(st.sampled_from([0, 8000, 32000]))
        mem_cap = draw(st.sampled_from([0, 16000, 128000]))
        nodes.append({"cpu_cap": cpu_cap, "cpu_free": draw(st.integers(0, cpu_cap)),
                      "mem_cap": mem_cap, "mem_free": draw(st.integers(0, mem_cap)),
                      "pods_free": draw(st.integers(0, 6)),
                      "devs": draw(st.lists(devices(), min_size=0, max_size=8))})
    return make_cluster(nodes)


@st.composite
def batches(draw, n_nodes, max_pods=25):
    n_cls = draw(st.integers(1, 3))
    pods = []
    for _ in range(draw(st.integers(1, max_pods))):
        kind = draw(st.sampled_from([0, 1, 2, 2, 3, 3]))
        pods.append({"cpu": draw(st.sampled_from([0, 500, 4000, 20000])),
                     "mem": draw(st.sampled_from([0, 1000, 64000])),
                     "kind": kind,
                     "count": draw(st.integers(1, 3)) if kind else draw(st.sampled_from([0, 0, 2])),
                     "milli": 1000 if kind == 1 else draw(st.sampled_from(MILLIS)),
                     "gpu_mem": draw(st.sampled_from(GPU_MEMS)) if kind in (2, 3) else 0,
                     "exclusive": draw(st.sampled_from([0, 0, 0, 1])) if kind in (2, 3) else 0,
                     "cls": draw(st.integers(0, n_cls - 1))})
    mask = np.array(draw(st.lists(st.sampled_from([1, 1, 1, 0]), min_size=n_cls * n_nodes,
                                  max_size=n_cls * n_nodes)), np.uint8).reshape(n_cls, n_nodes)
    extra = None
    if draw(st.booleans()):
        extra = np.array(draw(st.lists(st.sampled_from([0.0, 0.0, 0.25, -0.5, 1e-7, 2.0]),
                                       min_size=n_cls * n_nodes, max_size=n_cls * n_nodes)),
                         np.float64).reshape(n_cls, n_nodes)
    b = make_batch(pods, n_nodes, mask, extra)
    if draw(st.booleans()):  # gangs: runs of consecutive pods, each with a minimum
        gang = np.full(len(pods), -1, np.int32)
        need = np.zeros(len(pods), np.int32)
        p, gid = 0, 0
        while p < len(pods):
            size = draw(st.integers(1, 4))
            if draw(st.booleans()):
                gang[p:p + size] = gid
                need[p:p + size] = draw(st.integers(0, size))
                gid += 1
            p += size
        b["gang"], b["gang_need"] = gang, need
        if draw(st.booleans()):  # topology domains (zones, racks) of the nodes, some unlabelled
            b["node_domain"] = np.array(draw(st.lists(st.integers(-1, min(2, n_nodes - 1)), min_size=n_nodes,
                                                      max_size=n_nodes)), np.int32)
    return b


@st.composite
def policy_inputs(draw, cluster, batch, strategy):
    """The optional inputs of the FGD-paper policies: a seed, a target workload (or none: the
    batch's own shapes), GPU clustering's per-node kinds of GPU pods."""
    if draw(st.booleans()):
        batch["seed"] = np.array([draw(st.integers(0, 2**64 - 1))], np.uint64)
    if strategy in (_core.STRATEGY_FGD, _core.STRATEGY_FRAG_AWARE) and draw(st.booleans()):
        n_cls = batch["class_mask"].shape[0]
        rows = []
        for _ in range(draw(st.integers(1, 6))):
            kind = draw(st.sampled_from([0, 1, 2, 2, 3]))
            rows.append([draw(st.sampled_from([0, 500, 4000, 20000])), kind, draw(st.integers(1, 3)) if kind else 0,
                         (1000 if kind == 1 else draw(st.sampled_from(MILLIS))) if kind else 0,
                         draw(st.sampled_from(GPU_MEMS)) if kind in (2, 3) else 0,
                         draw(st.sampled_from([0, 0, 1])) if kind in (2, 3) else 0,
                         draw(st.integers(-1, n_cls - 1))])
        batch["workload_shapes"] = np.array(rows, np.int64)
        batch["workload_weights"] = np.array(draw(st.lists(st.sampled_from([0.0, 0.1, 0.25, 1 / 3, 0.5, 1.0]),
                                                           min_size=len(rows), max_size=len(rows))), np.float64)
    if strategy == _core.STRATEGY_LOAD and draw(st.booleans()):  # measured load and weights
        n = len(cluster["node_cpu_free"])
        batch["node_load"] = np.array(draw(st.lists(st.sampled_from([0.0, 0.0, 0.1, 0.5, 0.95, 1.0, 1.3]),
                                                    min_size=n, max_size=n)), np.float64)
        if draw(st.booleans()):
            batch["load_weights"] = np.array(draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=2,
                                                           max_size=2)), np.float64)
    if strategy == _core.STRATEGY_GPU_CLUSTERING and draw(st.booleans()):
        n = len(cluster["node_cpu_free"])
        cluster["node_gpu_kinds"] = np.array(draw(st.lists(st.sampled_from([0, 1, 2, 3, 1 << 63, 6]),
                                                            min_size=n, max_size=n)), np.uint64)


@st.composite
def device_reservations(draw, cluster, batch):
    """Optional device holds: each device held by one of R reservations or none, wholly or some of
    its XCDs; each class may use a random subset of the reservations."""
    if not draw(st.booleans()):
        return
    G, C = len(cluster["dev_gpu"]), batch["class_mask"].shape[0]
    R = draw(st.integers(1, 3))
    resv = np.array(draw(st.lists(st.integers(-1, R - 1), min_size=G, max_size=G)), np.int32)
    part = np.array(draw(st.lists(st.integers(0, 255), min_size=G, max_size=G)), np.uint32)
    batch["dev_resv"] = resv
    batch["dev_resv_xcds"] = np.where(resv >= 0, part & cluster["dev_xcd_mask"], 0).astype(np.uint32)
    batch["class_resv"] = np.array(draw(st.lists(st.integers(0, 1), min_size=C * R, max_size=C * R)),
                                   np.uint8).reshape(C, R)


@st.composite
def problems(draw, max_nodes=8, max_pods=25):
    c = draw(clusters(max_nodes))
    b = draw(batches(len(c["node_cpu_free"]), max_pods))
    strategy = draw(st.sampled_from(STRATEGIES))
    draw(policy_inputs(c, b, strategy))
    draw(device_reservations(c, b))
    return c, b, strategy


def check_invariants(cluster, batch, out, after):
    """No overcommit, consistent charges, exclusive devices hold one pod, sane reasons."""
    for k in ("node_cpu_free", "node_mem_free", "node_pods_free", "dev_milli_free", "dev_mem_free"):
        assert (after[k] >= 0).all(), k
    assert (after["dev_xcd_free"] & ~after["dev_xcd_mask"] == 0).all()
    per_dev = np.bincount(out["asg_dev"], minlength=len(after["dev_state"]))
    milli = np.bincount(out["asg_dev"], weights=out["asg_milli"], minlength=len(per_dev))
    np.testing.assert_array_equal(milli, cluster["dev_milli_free"] - after["dev_milli_free"])
    was_excl = cluster["dev_state"] == _core.STATE_EXCLUSIVE
    assert (per_dev[was_excl] == 0).all()
    became = (after["dev_state"] == _core.STATE_EXCLUSIVE) & ~was_excl
    assert (per_dev[became] == 1).all()
    assert (after["dev_milli_free"][after["dev_state"] == _core.STATE_EXCLUSIVE] == 0).all()
    # A pod that holds its devices alone still gets the GPU memory it names (issue 10, item 6).
    for p in np.flatnonzero(out["node"] >= 0):
        if batch["kind"][p] != _core.KIND_NO_GPU and (batch["kind"][p] == _core.KIND_WHOLE or batch["exclusive"][p]):
            devs = out["asg_dev"][out["asg_start"][p]:out["asg_start"][p + 1]]
            assert (cluster["dev_mem_free"][devs] >= batch["gpu_mem"][p]).all(), p
    # Each placed GPU pod got `count` distinct devices of its node; reasons only for unplaced pods.
    for p, n in enumerate(out["node"]):
        a, b = out["asg_start"][p], out["asg_start"][p + 1]
        devs = out["asg_dev"][a:b]
        if n < 0 or batch["kind"][p] == _core.KIND_NO_GPU:
            assert a == b
        else:
            assert len(set(devs.tolist())) == b - a == batch["count"][p]
            lo, hi = cluster["node_dev_start"][n], cluster["node_dev_start"][n + 1]
            assert ((devs >= lo) & (devs < hi)).all()
        rolled_back = n < 0 and out["gang_failed"][p] and out["reason_counts"][p].sum() == 0
        assert out["reason_counts"][p].sum() == (len(after["node_cpu_free"]) if n < 0 and not rolled_back else 0)
    # Nothing placed on a device (or XCDs) held by a reservation the pod's class may not use: a
    # wholly held device not at all, held XCDs only by XCD pods, on their other XCDs.
    if "dev_resv" in batch:
        for p in np.flatnonzero(out["node"] >= 0):
            for k in range(out["asg_start"][p], out["asg_start"][p + 1]):
                d = out["asg_dev"][k]
                r = batch["dev_resv"][d]
                if r < 0 or batch["class_resv"][batch["cls"][p]][r]:
                    continue
                held = int(batch["dev_resv_xcds"][d])
                assert held and batch["kind"][p] == _core.KIND_XCD and not batch["exclusive"][p], (p, d)
                assert int(out["asg_xcds"][k]) & held == 0, (p, d)
    # A gang short of its minimum holds nothing; one that reached it keeps its placed members.
    if "gang" in batch:
        for g in set(batch["gang"].tolist()) - {-1}:
            members = np.flatnonzero(batch["gang"] == g)
            placed = int((out["node"][members] >= 0).sum())
            failed = out["gang_failed"][members]
            assert failed.all() or not failed.any()
            if failed.any():
                assert placed == 0
            else:
                assert placed >= batch["gang_need"][members[0]]


def check_problem(problem):
    cluster, batch, strategy = problem
    out, ck, ref, cr = run_both(cluster, batch, strategy)
    assert_same(out, ck, ref, cr)
    check_invariants(cluster, batch, out, ck)
    # Determinism: a second run on a fresh copy gives the same result and state.
    c2 = copy.deepcopy(cluster)
    again = _core.place_batch(c2, batch, strategy)
    for k in out:
        np.testing.assert_array_equal(out[k], again[k], err_msg=k)
    for k in MUTABLE + ("node_gpu_kinds",):
        if k in ck:
            np.testing.assert_array_equal(ck[k], c2[k], err_msg=k)


# Generating a cluster costs more than placing it, so one generated problem serves the comparison
# with the reference, the invariants and determinism at once.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_kernel_matches_reference_and_keeps_invariants(problem):
    check_problem(problem)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(problems(max_nodes=24, max_pods=60))
def test_kernel_matches_reference_larger(problem):
    check_problem(problem)


# ---------------------------------------------------------------------- hand-checked scenarios

def test_shared_pods_pair_up_on_spx_devices():
    cluster = make_cluster([node([spx(g) for g in range(8)])])
    pods = [{"kind": _core.KIND_SHARED, "count": 1, "milli": 500} for _ in range(16)]
    pods.append({"kind": _core.KIND_SHARED, "count": 1, "milli": 600})
    for strategy in STRATEGIES:
        c = copy.deepcopy(cluster)
        out = _core.place_batch(c, make_batch(pods, 1), strategy)
        assert (out["node"][:16] == 0).all()
        if strategy in OWN_DEVICE_PICK:
            # These pick the device themselves (random, or by fragmentation): still two per device.
            np.testing.assert_array_equal(np.bincount(out["asg_dev"], minlength=8), np.full(8, 2))
        else:
            # Already-shared devices first: pods 2k and 2k+1 share device k.
            np.testing.assert_array_equal(out["asg_dev"], np.repeat(np.arange(8), 2))
        np.testing.assert_array_equal(out["asg_milli"], np.full(16, 500))
        np.testing.assert_array_equal(out["asg_mem"], np.full(16, SPX_MEM // 2))
        np.testing.assert_array_equal(out["asg_xcds"], np.full(16, 0xFF))  # time-sliced: all XCDs
        assert out["node"][16] == -1
        expected = np.zeros(_core.NUM_REASONS, np.int32)
        expected[_core.REASON_GPU_SHARE] = 1
        np.testing.assert_array_equal(out["reason_counts"][16], expected)
        assert out["best_share"][16] == 0
        assert out["best_share"][0] == 1000
        assert (c["dev_milli_free"] == 0).all() and (c["dev_mem_free"] == 0).all()
        assert (c["dev_state"] == _core.STATE_SHARED).all()
        assert c["node_pods_free"][0] == 110 - 16


def test_xcd_pods_take_whole_xcds():
    cluster = make_cluster([node([spx()])])
    pods = [{"kind": _core.KIND_XCD, "count": 1, "milli": 300} for _ in range(2)]
    out = _core.place_batch(cluster, make_batch(pods, 1), _core.STRATEGY_BINPACK)
    np.testing.assert_array_equal(out["node"], [0, 0])
    np.testing.assert_array_equal(out["asg_xcds"], [0b111, 0b111000])
    np.testing.assert_array_equal(out["asg_milli"], [375, 375])  # 3 of 8 XCDs
    np.testing.assert_array_equal(out["asg_mem"], [SPX_MEM * 3 // 8] * 2)
    assert cluster["dev_xcd_free"][0] == 0b11000000
    assert cluster["dev_milli_free"][0] == 250
    assert cluster["dev_state"][0] == _core.STATE_SHARED
    # Two XCDs left: a third 300-milli pod needs three -> XCD reason.
    out = _core.place_batch(cluster, make_batch(pods[:1], 1), _core.STRATEGY_BINPACK)
    assert out["node"][0] == -1
    assert out["reason_counts"][0][_core.REASON_XCD] == 1
    assert out["best_share"][0] == 250


def test_xcd_subset_prefers_one_memory_domain():
    # NPS4-like domains of two XCDs: free = {1, 2, 3}; two XCDs -> (2, 3), one domain, not (1, 2).
    dev = dict(spx(), xpd=2, state=_core.STATE_SHARED, xcd_free=0b1110, milli_free=375)
    cluster = make_cluster([node([dev])])
    out = _core.place_batch(cluster, make_batch([{"kind": _core.KIND_XCD, "count": 1, "milli": 250}], 1),
                            _core.STRATEGY_BINPACK)
    assert out["asg_xcds"][0] == 0b1100 == best_xcd_subset_ref(0b1110, 2, 2)
    assert out["asg_milli"][0] == 250


def test_cpx_nps4_node():
    cluster = make_cluster([cpx_node()])
    K = _core
    pods = ([{"kind": K.KIND_WHOLE, "count": 8, "milli": 1000}]
            + [{"kind": K.KIND_XCD, "count": 1, "milli": 500}]      # 1 of 1 XCD: whole partition
            + [{"kind": K.KIND_SHARED, "count": 2, "milli": 250}]   # 250 * 24576 / 1000 = 6144 MiB
            + [{"kind": K.KIND_WHOLE, "count": 65, "milli": 1000}])
    out = _core.place_batch(cluster, make_batch(pods, 1), K.STRATEGY_BINPACK)
    np.testing.assert_array_equal(out["node"], [0, 0, 0, -1])
    s = out["asg_start"]
    np.testing.assert_array_equal(out["asg_dev"][s[0]:s[1]], np.arange(8))
    np.testing.assert_array_equal(out["asg_mem"][s[0]:s[1]], np.full(8, CPX_MEM))
    np.testing.assert_array_equal(out["asg_xcds"][s[0]:s[1]], 1 << np.arange(8))
    assert out["asg_dev"][s[1]] == 8 and out["asg_xcds"][s[1]] == 1
    assert out["asg_milli"][s[1]] == 1000 and out["asg_mem"][s[1]] == CPX_MEM
    # Shared: both idle devices with the most... equal milli -> lowest indices 9, 10.
    np.testing.assert_array_equal(out["asg_dev"][s[2]:s[3]], [9, 10])
    np.testing.assert_array_equal(out["asg_mem"][s[2]:s[3]], [6144, 6144])
    assert out["reason_counts"][3][K.REASON_GPU_COUNT] == 1
    assert cluster["dev_state"][:9].tolist() == [K.STATE_EXCLUSIVE] * 8 + [K.STATE_SHARED]
    # 53 idle devices left; a 54-device whole pod is busy-rejected.
    out = _core.place_batch(cluster, make_batch([{"kind": K.KIND_WHOLE, "count": 54, "milli": 1000}], 1),
                            K.STRATEGY_BINPACK)
    assert out["reason_counts"][0][K.REASON_GPU_BUSY] == 1


def test_non_sharing_pod_gets_the_memory_it_names():
    """gpu-sharing false, fraction 0.1, 96 GiB: an idle 24 GiB CPX partition is not enough, however
    idle; the idle SPX device behind it is. With no such device the reason is GPU memory."""
    K = _core
    pod = {"kind": K.KIND_SHARED, "count": 1, "milli": 100, "gpu_mem": 98304, "exclusive": 1}
    small = {"gpu": 0, "mem_cap": CPX_MEM, "mask": 0x01, "xpd": 2}
    cluster = make_cluster([node([small, spx(1)])])
    for strategy in STRATEGIES:
        out, ck, ref, cr = run_both(cluster, make_batch([pod], 1), strategy)
        assert_same(out, ck, ref, cr)
        assert out["asg_dev"].tolist() == [1], strategy
        assert out["asg_mem"].tolist() == [SPX_MEM]
    cluster = make_cluster([node([small, dict(small, gpu=1)])])
    out, ck, ref, cr = run_both(cluster, make_batch([pod], 1), K.STRATEGY_BINPACK)
    assert_same(out, ck, ref, cr)
    assert out["node"][0] == -1
    assert out["reason_counts"][0, K.REASON_GPU_MEMORY] == 1
    assert (ck["dev_state"] == K.STATE_IDLE).all()


def test_reasons_follow_filter_order():
    K = _core
    nodes = [node([spx()]), node([spx()], cpu=1000), node([spx()], mem=10), dict(node([spx()]), pods_free=0),
             node([]), node([dict(spx(), state=K.STATE_EXCLUSIVE, milli_free=0, mem_free=0, xcd_free=0)]),
             node([dict(spx(), state=K.STATE_SHARED, milli_free=900, mem_free=100)])]
    cluster = make_cluster(nodes)
    mask = np.ones((1, len(nodes)), np.uint8)
    mask[0, 0] = 0
    pod = {"cpu": 2000, "mem": 100, "kind": K.KIND_SHARED, "count": 1, "milli": 500}
    out = _core.place_batch(cluster, make_batch([pod], len(nodes), mask), K.STRATEGY_BINPACK)
    assert out["node"][0] == -1
    assert out["reason_counts"][0].tolist() == [1, 1, 1, 1, 1, 0, 1, 1, 0, 0]
    assert out["best_share"][0] == 900  # the exclusive device does not count
    assert feasible_nodes_ref(cluster, make_batch([pod], len(nodes), mask), 0) == [
        K.REASON_NODE_FILTER, K.REASON_CPU, K.REASON_MEMORY, K.REASON_PODS, K.REASON_GPU_COUNT,
        K.REASON_GPU_SHARE, K.REASON_GPU_MEMORY]


def test_strategies_and_extra_score():
    K = _core
    busy = dict(spx(), state=K.STATE_SHARED, milli_free=500, mem_free=SPX_MEM // 2)
    cluster = make_cluster([node([spx(), spx()]), node([busy, spx()]), node([])])
    gpu_pod = {"kind": K.KIND_SHARED, "count": 1, "milli": 250}
    cpu_pod = {"cpu": 1000, "mem": 1000}
    b = make_batch([gpu_pod, cpu_pod], 3)
    for strategy, expect in [(K.STRATEGY_BINPACK, [1, 2]), (K.STRATEGY_SPREAD, [0, 2])]:
        out = _core.place_batch(copy.deepcopy(cluster), b, strategy)
        assert out["node"].tolist() == expect  # CPU-only pods stay off GPU nodes either way
        scores = node_scores_ref(cluster, b, 0, strategy)
        assert max(scores, key=lambda n: (scores[n], -n)) == expect[0]
    # An extra score overrides, and equal scores go to the lower index.
    tie = make_cluster([node([spx()]), node([spx()])])
    out = _core.place_batch(copy.deepcopy(tie), make_batch([gpu_pod], 2), K.STRATEGY_BINPACK)
    assert out["node"][0] == 0
    out = _core.place_batch(copy.deepcopy(tie), make_batch([gpu_pod], 2, extra_score=[[0.0, 1e-9]]),
                            K.STRATEGY_BINPACK)
    assert out["node"][0] == 1
    out = _core.place_batch(copy.deepcopy(cluster), make_batch([gpu_pod], 3, extra_score=[[5.0, 0.0, 0.0]]),
                            K.STRATEGY_BINPACK)
    assert out["node"][0] == 0


def test_frag_aware_leaves_usable_shares():
    # Node 0 has a shared GPU with 600 free, node 1 an idle GPU; the batch is one 400 pod then three
    # 600 pods. Binpack puts the 400 on the fuller GPU and strands 200 there, so only one 600 pod
    # fits; fragmentation-aware keeps both 600-shaped holes and places two.
    K = _core
    gpu = dict(spx(), mem_cap=10000)  # round MiB so that 400 + 600 of a GPU fit exactly
    shared = dict(gpu, state=K.STATE_SHARED, milli_free=600, mem_free=6000)
    cluster = make_cluster([node([shared]), node([gpu])])
    pods = [{"kind": K.KIND_SHARED, "count": 1, "milli": m} for m in (400, 600, 600, 600)]
    for strategy, expect in [(K.STRATEGY_BINPACK, [0, 1, -1, -1]), (K.STRATEGY_FRAG_AWARE, [1, 0, 1, -1])]:
        out, ck, ref, cr = run_both(cluster, make_batch(pods, 2), strategy)
        assert_same(out, ck, ref, cr)
        assert out["node"].tolist() == expect


def test_empty_inputs():
    cluster = make_cluster([])
    out = _core.place_batch(cluster, make_batch([{"kind": 1, "count": 1, "milli": 1000}], 0),
                            _core.STRATEGY_BINPACK)
    assert out["node"].tolist() == [-1] and out["reason_counts"].sum() == 0
    out = _core.place_batch(make_cluster([node([spx()])]), make_batch([], 1), _core.STRATEGY_FRAG_AWARE)
    assert out["node"].shape == (0,) and out["reason_counts"].shape == (0, _core.NUM_REASONS)
    assert out["asg_start"].tolist() == [0]


# ---------------------------------------------------------------------------------- validation

def _valid():
    cluster = make_cluster([node([spx(), spx()]), node([])])
    batch = make_batch([{"kind": 2, "count": 1, "milli": 500}, {"cpu": 10}], 2)
    return cluster, batch


def _mutate(which, key, value):
    def f(cluster, batch):
        d = cluster if which == "cluster" else batch
        if value is _DEL:
            del d[key]
        else:
            d[key] = value(d[key]) if callable(value) else value
    return f


_DEL = object()


def _readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a

VALIDATION_CASES = [
    ("cluster", "node_mem_free", _DEL, "missing"),
    ("batch", "class_mask", _DEL, "missing"),
    ("cluster", "node_cpu_free", lambda a: a.astype(np.int32), "int64"),
    ("cluster", "dev_state", lambda a: a.astype(np.int64), "int8"),
    ("cluster", "dev_xcd_mask", lambda a: a.astype(np.int32), "uint32"),
    ("batch", "class_mask", lambda a: a.astype(bool), "uint8"),
    ("batch", "cpu", lambda a: a.astype(">i8"), "byte order"),
    ("cluster", "dev_milli_free", lambda a: np.repeat(a, 2)[::2], "C-contiguous"),
    ("batch", "class_mask", lambda a: np.asfortranarray(np.vstack([a, a])), "C-contiguous"),
    ("cluster", "dev_mem_free", lambda a: a[:1], "length"),
    ("batch", "milli", lambda a: a[:1], "length"),
    ("cluster", "node_dev_start", lambda a: np.array([0, 2, 1], np.int64), "monotone"),
    ("cluster", "node_dev_start", lambda a: np.array([0, 1, 1], np.int64), "end"),
    ("cluster", "node_dev_start", lambda a: np.array([1, 2, 2], np.int64), "start at 0"),
    ("batch", "cls", lambda a: np.array([0, 1], np.int32), "out of range"),
    ("batch", "cls", lambda a: np.array([-1, 0], np.int32), "out of range"),
    ("batch", "kind", lambda a: np.array([4, 0], np.int8), "unknown kind"),
    ("batch", "count", lambda a: np.array([0, 0], np.int32), "count >= 1"),
    ("batch", "milli", lambda a: np.array([1001, 0], np.int32), "milli"),
    ("batch", "extra_score", np.zeros((2, 2)), "shape"),
    ("batch", "extra_scores", np.zeros((1, 2)), "unknown key"),
    ("batch", "class_mask", np.ones(2, np.uint8), "2-D"),
    ("batch", "class_mask", np.ones((1, 3), np.uint8), "shape"),
    ("cluster", "dev_state", lambda a: np.array([0, 3], np.int8), "unknown state"),
    ("cluster", "dev_xcd_free", lambda a: np.array([0x1FF, 0], np.uint32), "outside"),
    ("cluster", "dev_xcd_mask", lambda a: np.array([0x100, 0xFF], np.uint32), "XCD bits"),
    ("cluster", "dev_xcds_per_domain", lambda a: np.zeros(2, np.int32), ">= 1"),
    ("cluster", "node_pods_free", lambda a: _readonly(a), "read-only"),
    ("cluster", "dev_gpu", [0, 0], "numpy array"),
    ("batch", "cpu", lambda a: np.array([-1, 0], np.int64), "negative"),
    ("cluster", "node_cpu_cap", lambda a: np.array([-5, 0], np.int64), "negative"),
    ("cluster", "dev_mem_cap", lambda a: np.array([1 << 41, 0], np.int64), "out of range"),
]


@pytest.mark.parametrize("which,key,value,words", VALIDATION_CASES,
                         ids=[f"{w}.{k}-{m}" for w, k, _, m in VALIDATION_CASES])
def test_validation_errors_name_the_key(which, key, value, words):
    cluster, batch = _valid()
    _mutate(which, key, value)(cluster, batch)
    with pytest.raises(ValueError, match=key) as e:
        _core.place_batch(cluster, batch, _core.STRATEGY_BINPACK)
    assert words in str(e.value)


def test_validation_strategy_and_valid_baseline():
    cluster, batch = _valid()
    with pytest.raises(ValueError, match="strategy"):
        _core.place_batch(cluster, batch, 99)
    batch["extra_score"] = None  # None = no extra score
    out = _core.place_batch(cluster, batch, _core.STRATEGY_SPREAD)
    assert out["node"].tolist() == [0, 1]


def test_in_place_update_is_visible_through_views():
    # The caller keeps views of its state arrays; the kernel must write into them, not a copy.
    cluster, batch = _valid()
    view = cluster["dev_milli_free"]
    _core.place_batch(cluster, batch, _core.STRATEGY_BINPACK)
    assert view.tolist() == [500, 1000] and cluster["dev_milli_free"] is view


def test_module_constants():
    K = _core
    assert (K.KIND_NO_GPU, K.KIND_WHOLE, K.KIND_SHARED, K.KIND_XCD) == (0, 1, 2, 3)
    assert (K.STATE_IDLE, K.STATE_SHARED, K.STATE_EXCLUSIVE) == (0, 1, 2)
    assert (K.STRATEGY_BINPACK, K.STRATEGY_SPREAD, K.STRATEGY_FRAG_AWARE) == (0, 1, 2)
    assert (K.STRATEGY_RANDOM, K.STRATEGY_BEST_FIT, K.STRATEGY_DOT_PRODUCT, K.STRATEGY_GPU_PACKING,
            K.STRATEGY_GPU_CLUSTERING, K.STRATEGY_FGD, K.STRATEGY_LOAD, K.NUM_STRATEGIES) == (3, 4, 5, 6, 7, 8, 9, 10)
    assert (K.MAX_SPEC_CPU, K.MAX_SPEC_GPU) == (128000, 8000)
    assert K.NUM_REASONS == len(K.REASON_NAMES) == 10
    assert (K.REASON_NODE_FILTER, K.REASON_CPU, K.REASON_MEMORY, K.REASON_PODS, K.REASON_GPU_COUNT,
            K.REASON_GPU_BUSY, K.REASON_GPU_SHARE, K.REASON_GPU_MEMORY, K.REASON_XCD, K.REASON_RESERVED) == tuple(range(10))


def test_gang_that_does_not_fit_holds_nothing():
    """Three 4-GPU members on one 8-GPU node with a minimum of 3: two fit, so the gang rolls back
    and the whole-GPU pod after it gets the node; a minimum of 2 keeps two members."""
    cluster = make_cluster([node([spx(g) for g in range(8)])])
    pods = [{"kind": 1, "count": 4, "milli": 1000}] * 3 + [{"kind": 1, "count": 8, "milli": 1000}]
    for need, expect in ((3, [-1, -1, -1, 0]), (2, [0, 0, -1, -1])):
        batch = make_batch(pods, 1)
        batch["gang"] = np.array([7, 7, 7, -1], np.int32)
        batch["gang_need"] = np.array([need, need, need, 0], np.int32)
        out, ck, ref, cr = run_both(cluster, batch, _core.STRATEGY_BINPACK)
        assert_same(out, ck, ref, cr)
        assert out["node"].tolist() == expect
        assert out["gang_failed"].tolist() == ([1, 1, 1, 0] if need == 3 else [0, 0, 0, 0])


def test_gang_validation():
    cluster = make_cluster([node([spx()])])
    batch = make_batch([{"kind": 1, "count": 1, "milli": 1000}] * 3, 1)
    batch["gang"] = np.array([1, -1, 1], np.int32)
    batch["gang_need"] = np.array([1, 0, 1], np.int32)
    with pytest.raises(ValueError, match=r"batch\['gang'\].*not consecutive"):
        _core.place_batch(copy.deepcopy(cluster), batch, 0)
    del batch["gang_need"]
    with pytest.raises(ValueError, match="gang and gang_need come together"):
        _core.place_batch(copy.deepcopy(cluster), batch, 0)


# ------------------------------------------------------------- the FGD paper's policies and Kaiwo's

def _generic(n_gpus, cpu=128000, **dev):
    """A node of `n_gpus` generic GPUs (no XCDs, no memory limit)."""
    return node([dict({"gpu": g, "mem_cap": 0, "mask": 0, "xpd": 0}, **dev) for g in range(n_gpus)], cpu=cpu)


def _used(milli_free):
    return {"gpu": 0, "mem_cap": 0, "mask": 0, "xpd": 0, "state": _core.STATE_SHARED, "milli_free": milli_free,
            "mem_free": 0}


def test_best_fit_and_dot_product_by_hand():
    K = _core
    # Node 0: 2 idle GPUs, 64 free cores; node 1: 1 idle GPU + one with 200 free, 32 free cores.
    n0 = _generic(2)
    n0["cpu_free"] = 64000
    n1 = node([_generic(1)["devs"][0], _used(200)], cpu=128000)
    n1["cpu_free"] = 32000
    cluster = make_cluster([n0, n1])
    b = make_batch([{"cpu": 8000, "kind": K.KIND_WHOLE, "count": 1, "milli": 1000}], 2)
    # best fit: 100 (1 - (0.5 (free cpu - 8000) / 128000 + 0.5 (free GPU - 1000) / 8000)):
    # node 0: int(100 (1 - (0.21875 + 0.0625))) = 71; node 1: int(100 (1 - (0.09375 + 0.0125))) = 89.
    assert node_scores_ref(cluster, b, 0, K.STRATEGY_BEST_FIT) == {0: 71.0, 1: 89.0}
    out, ck, ref, cr = run_both(cluster, b, K.STRATEGY_BEST_FIT)
    assert_same(out, ck, ref, cr)
    assert out["node"].tolist() == [1]
    # dot product: int(100 (1 - ((cpu/128)(8/128) + (gpu/8000)(1000/8000)) / 2)):
    # node 0: 1 - (0.03125 + 0.03125)/2 -> 96; node 1: 1 - (0.015625 + 0.01875)/2 -> 98.
    assert node_scores_ref(cluster, b, 0, K.STRATEGY_DOT_PRODUCT) == {0: 96.0, 1: 98.0}


def test_gpu_packing_and_clustering_by_hand():
    K = _core
    idle8 = _generic(8)
    partly = node([_used(600)] + _generic(7)["devs"])
    cluster = make_cluster([idle8, partly])
    share = make_batch([{"kind": K.KIND_SHARED, "count": 1, "milli": 300}], 2)
    # Packing: the idle node scores max(33 - 8, 8) = 25; the used GPU (600 free) 100 - 60/10 = 94.
    assert node_scores_ref(cluster, share, 0, K.STRATEGY_GPU_PACKING) == {0: 25.0, 1: 94.0}
    whole = make_batch([{"kind": K.KIND_WHOLE, "count": 2, "milli": 1000}], 2)
    # Two idle GPUs of a used node: max(50 - 2, 33) = 48.
    assert node_scores_ref(cluster, whole, 0, K.STRATEGY_GPU_PACKING) == {0: 25.0, 1: 48.0}
    # Clustering: node 1 holds a sharing pod (kinds bit 0). 25 * used / 8 GPUs + kind bonus.
    c = dict(cluster, node_gpu_kinds=np.array([0, 1], np.uint64))
    assert node_scores_ref(c, share, 0, K.STRATEGY_GPU_CLUSTERING) == {0: 25.0, 1: 75.0 + 1}
    assert node_scores_ref(c, whole, 0, K.STRATEGY_GPU_CLUSTERING) == {0: 25.0, 1: 1.0}
    out, ck, ref, cr = run_both(c, whole, K.STRATEGY_GPU_CLUSTERING)
    assert_same(out, ck, ref, cr)
    assert out["node"].tolist() == [0] and ck["node_gpu_kinds"].tolist() == [1 << 2, 1]


def test_fgd_picks_the_gpu_that_keeps_shares_usable():
    # One node: GPU 0 has 600 free, GPU 1 400 free. Target workload: only 600-milli pods. A 400-milli
    # pod on GPU 0 strands 200 (F grows by 200) -> GPU 1 (F unchanged); binpack takes the fuller GPU 1
    # too, but a 200 pod (best fit: GPU 1, 400 free) is placed by FGD on GPU 1 as well: 600 stays.
    K = _core
    cluster = make_cluster([node([_used(600), _used(400)])])
    b = make_batch([{"kind": K.KIND_SHARED, "count": 1, "milli": 400}], 1)
    b["workload_shapes"] = np.array([[0, K.KIND_SHARED, 1, 600, 0, 0, -1]], np.int64)
    b["workload_weights"] = np.array([1.0])
    for strategy in (K.STRATEGY_FGD, K.STRATEGY_FRAG_AWARE):
        out, ck, ref, cr = run_both(cluster, b, strategy)
        assert_same(out, ck, ref, cr)
        assert out["asg_dev"].tolist() == [1]
    b["milli"] = np.array([500], np.int32)  # only GPU 0 fits: F grows by 100 -> score int(100 sigmoid(-0.1)) = 47
    assert node_scores_ref(cluster, b, 0, K.STRATEGY_FGD) == {0: 47.0}


def test_kaiwo_sends_cpu_pods_where_gpus_are_used_up():
    # FGD scores both nodes 50 (the CPU pod changes no fragmentation) and takes the first; Kaiwo takes
    # the node with no free GPU, keeping node 0's CPU for its idle GPUs.
    K = _core
    full = node([dict(_generic(1)["devs"][0], state=K.STATE_EXCLUSIVE, milli_free=0)])
    cluster = make_cluster([_generic(2), full])
    b = make_batch([{"cpu": 4000}], 2)
    b["workload_shapes"] = np.array([[4000, K.KIND_WHOLE, 1, 1000, 0, 0, -1]], np.int64)
    b["workload_weights"] = np.array([1.0])
    assert _core.place_batch(copy.deepcopy(cluster), b, K.STRATEGY_FGD)["node"].tolist() == [0]
    out, ck, ref, cr = run_both(cluster, b, K.STRATEGY_FRAG_AWARE)
    assert_same(out, ck, ref, cr)
    assert out["node"].tolist() == [1]


def test_random_is_seeded_and_counter_based():
    K = _core
    cluster = make_cluster([_generic(2) for _ in range(6)])
    pods = [{"kind": K.KIND_SHARED, "count": 1, "milli": 100} for _ in range(12)]
    b = make_batch(pods, 6)
    b["seed"] = np.array([12345], np.uint64)
    one = _core.place_batch(copy.deepcopy(cluster), b, K.STRATEGY_RANDOM)
    assert len(set(one["node"].tolist())) > 1  # not all on one node
    # The second half alone, on the state the first half left, with the seed moved by 2 x 6 draws.
    c = copy.deepcopy(cluster)
    first = {k: (v[:6] if k != "class_mask" else v) for k, v in b.items() if k != "seed"}
    first["seed"] = b["seed"]
    _core.place_batch(c, first, K.STRATEGY_RANDOM)
    second = {k: (v[6:] if k != "class_mask" else v) for k, v in b.items() if k != "seed"}
    second["seed"] = np.array([(12345 + 2 * 6 * 0x9E3779B97F4A7C15) % 2**64], np.uint64)
    out = _core.place_batch(c, second, K.STRATEGY_RANDOM)
    assert out["node"].tolist() == one["node"][6:].tolist()
    b["seed"] = np.array([54321], np.uint64)
    assert _core.place_batch(copy.deepcopy(cluster), b, K.STRATEGY_RANDOM)["node"].tolist() != one["node"].tolist()


POLICY_VALIDATION = [
    ("seed", np.array([1, 2], np.uint64), "length 1"),
    ("seed", np.array([1], np.int64), "uint64"),
    ("workload_shapes", np.zeros((1, 6), np.int64), "(shapes, 7)"),
    ("workload_shapes", np.array([[0, 5, 1, 0, 0, 0, -1]], np.int64), "unknown kind"),
    ("workload_shapes", np.array([[0, 2, 0, 500, 0, 0, -1]], np.int64), "count"),
    ("workload_shapes", np.array([[0, 2, 1, 1500, 0, 0, -1]], np.int64), "milli"),
    ("workload_shapes", np.array([[0, 2, 1, 500, 0, 0, 3]], np.int64), "cls 3 out of range"),
    ("workload_shapes", np.array([[-1, 0, 0, 0, 0, 0, -1]], np.int64), "cpu out of range"),
    ("workload_weights", np.array([np.nan]), "finite"),
]


@pytest.mark.parametrize("key,value,words", POLICY_VALIDATION, ids=[f"{k}-{w}" for k, _, w in POLICY_VALIDATION])
def test_policy_inputs_validated(key, value, words):
    cluster, batch = _valid()
    batch["workload_shapes"] = np.array([[0, 2, 1, 500, 0, 0, -1]], np.int64)
    batch["workload_weights"] = np.array([1.0])
    batch[key] = value
    with pytest.raises(ValueError, match=key) as e:
        _core.place_batch(cluster, batch, _core.STRATEGY_FGD)
    assert words in str(e.value)


def test_policy_inputs_come_together():
    cluster, batch = _valid()
    batch["workload_shapes"] = np.array([[0, 2, 1, 500, 0, 0, -1]], np.int64)
    with pytest.raises(ValueError, match="workload_weights.*come together"):
        _core.place_batch(cluster, batch, _core.STRATEGY_FGD)
    cluster, batch = _valid()
    cluster["node_gpu_kinds"] = np.zeros(3, np.uint64)
    with pytest.raises(ValueError, match="node_gpu_kinds.*length"):
        _core.place_batch(cluster, batch, _core.STRATEGY_GPU_CLUSTERING)
