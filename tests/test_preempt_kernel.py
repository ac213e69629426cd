"""Tests of the compiled reclaim/preemption kernel ``kaiwo_core._core.plan_preemptions``.

* Random problems (hypothesis): small clusters (1-6 nodes of SPX, DPX, CPX or generic GPUs, or none)
  whose running pods were placed by the placement kernel itself (so their device charges are
  consistent), random queue trees with deserved and fair shares from the fair-share kernel, and
  random pending pods. The kernel must equal the plain-Python reference
  ``tests.naive_preempt.plan_preemptions_ref`` exactly, and its plan is re-checked independently:
  every victim allowed by its rule (replayed against the queue allocation at its time), the final
  state equal to the state rebuilt from scratch from the surviving pods and the preemptors (so
  nothing is overcommitted or leaked), inputs untouched, deterministic.
* Hand-checked scenarios built at the array level (conservative vs aggressive reclaim,
  non-preemptible and too-young pods, within-queue preemption, fewest victims, dropping victims
  that are not needed, no ping-pong).
* Validation: ValueError naming the dict and key.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiwo_core import _core
from tests.naive_preempt import lacking, plan_preemptions_ref

R_WITHIN, R_CONS, R_AGGR = _core.RULE_WITHIN_QUEUE, _core.RULE_RECLAIM_CONSERVATIVE, _core.RULE_RECLAIM_AGGRESSIVE
AGGRESSIVE, CONSERVATIVE = _core.RECLAIM_AGGRESSIVE, _core.RECLAIM_CONSERVATIVE
WHOLE, SHARED, XCD, NONE = _core.KIND_WHOLE, _core.KIND_SHARED, _core.KIND_XCD, _core.KIND_NO_GPU
IDLE, SHARED_DEV, EXCL = _core.STATE_IDLE, _core.STATE_SHARED, _core.STATE_EXCLUSIVE
SPX_MEM, CPX_MEM, GEN_MEM = 196608, 24576, 81920
STATE_KEYS = ("node_cpu_free", "node_mem_free", "node_pods_free", "dev_milli_free", "dev_mem_free",
              "dev_xcd_free", "dev_state")
OUT_DTYPES = {"node": np.int32, "vic_start": np.int64, "vic": np.int64, "vic_rule": np.int8,
              "asg_start": np.int64, "asg_dev": np.int32, "asg_milli": np.int64, "asg_mem": np.int64,
              "asg_xcds": np.uint32, "node_cpu_free": np.int64, "node_mem_free": np.int64,
              "node_pods_free": np.int64, "dev_milli_free": np.int64, "dev_mem_free": np.int64,
              "dev_xcd_free": np.uint32, "dev_state": np.int8, "allocated": np.int64}
BATCH_DTYPES = {"cpu": np.int64, "mem": np.int64, "kind": np.int8, "count": np.int32, "milli": np.int32,
                "gpu_mem": np.int64, "exclusive": np.uint8}


# ------------------------------------------------------------------------------------- builders

def spx(n=8):
    return [dict(mem_cap=SPX_MEM, mask=0xFF, xpd=8) for _ in range(n)]


def empty_cluster(nodes):
    """nodes: list of {cpu, mem, pods, devs: [{mem_cap, mask, xpd}]}; everything free."""
    devs = [d for n in nodes for d in n["devs"]]
    start = np.zeros(len(nodes) + 1, np.int64)
    start[1:] = np.cumsum([len(n["devs"]) for n in nodes])

    def col(xs, dt):
        return np.array(list(xs), dtype=dt)

    return {
        "node_cpu_free": col((n["cpu"] for n in nodes), np.int64),
        "node_mem_free": col((n["mem"] for n in nodes), np.int64),
        "node_pods_free": col((n["pods"] for n in nodes), np.int64),
        "node_cpu_cap": col((n["cpu"] for n in nodes), np.int64),
        "node_mem_cap": col((n["mem"] for n in nodes), np.int64),
        "node_dev_start": start,
        "dev_gpu": col(range(len(devs)), np.int32),
        "dev_mem_cap": col((d["mem_cap"] for d in devs), np.int64),
        "dev_xcd_mask": col((d["mask"] for d in devs), np.uint32),
        "dev_xcds_per_domain": col((d["xpd"] for d in devs), np.int32),
        "dev_milli_free": np.full(len(devs), 1000, np.int64),
        "dev_mem_free": col((d["mem_cap"] for d in devs), np.int64),
        "dev_xcd_free": col((d["mask"] for d in devs), np.uint32),
        "dev_state": np.zeros(len(devs), np.int8),
    }


def pod_arrays(pods):
    """pods: list of dicts with cpu, mem, kind, count, milli, gpu_mem, exclusive (default 0)."""
    return {k: np.array([p.get(k, 0) for p in pods], dtype=dt) for k, dt in BATCH_DTYPES.items()}


def queue_req(b, gpu_only=False):
    """[P, 3] queue charge: GPU milli x devices (memory-only pods: their memory's share of an SPX
    device), CPU, memory; `gpu_only` leaves CPU and memory out (as with GPU-only quotas)."""
    milli = b["milli"].astype(np.int64)
    mem_only = (b["kind"] != NONE) & (milli == 0)
    milli = np.where(mem_only, np.minimum(1000, -(-b["gpu_mem"] * 1000 // SPX_MEM)), milli)
    gpu = np.where(b["kind"] == NONE, 0, milli * b["count"])
    cols = [gpu, 0 * b["cpu"], 0 * b["mem"]] if gpu_only else [gpu, b["cpu"], b["mem"]]
    return np.ascontiguousarray(np.stack(cols, axis=1), dtype=np.int64).reshape(len(gpu), 3)


def place_running(cluster, pods, nodes=None):
    """Place `pods` with the placement kernel (each on nodes[i] if given) into `cluster`, in place.
    Returns (rows placed, kernel output, batch)."""
    b = pod_arrays(pods)
    N = len(cluster["node_cpu_free"])
    if nodes is None:
        b["cls"], b["class_mask"] = np.zeros(len(pods), np.int32), np.ones((1, N), np.uint8)
    else:
        b["cls"], b["class_mask"] = np.array(nodes, np.int32), np.eye(N, dtype=np.uint8)
    out = _core.place_batch(cluster, b, _core.STRATEGY_BINPACK)
    return np.flatnonzero(out["node"] >= 0), out, b


def running_arrays(rows, out, b, queue, priority, runtime, preemptible, req):
    """The kernel's `running` dict for the placed rows of a place_batch call."""
    s = out["asg_start"]
    idx = np.concatenate([np.arange(s[i], s[i + 1]) for i in rows]).astype(np.int64) if len(rows) else \
        np.zeros(0, np.int64)
    start = np.zeros(len(rows) + 1, np.int64)
    start[1:] = np.cumsum([s[i + 1] - s[i] for i in rows])
    kind, excl = b["kind"][rows], b["exclusive"][rows]
    return {
        "node": out["node"][rows].astype(np.int32), "queue": np.asarray(queue, np.int32)[rows],
        "priority": np.asarray(priority, np.int64)[rows], "preemptible": np.asarray(preemptible, np.uint8)[rows],
        "runtime": np.asarray(runtime, np.float64)[rows], "req": np.ascontiguousarray(req[rows]),
        "cpu": b["cpu"][rows].copy(), "mem": b["mem"][rows].copy(), "asg_start": start,
        "asg_dev": out["asg_dev"][idx], "asg_milli": out["asg_milli"][idx], "asg_mem": out["asg_mem"][idx],
        "asg_xcds": out["asg_xcds"][idx],
        "exclusive": ((kind == WHOLE) | ((kind != NONE) & (excl == 1))).astype(np.uint8),
        "xcd": ((kind == XCD) & (excl == 0)).astype(np.uint8),
    }


def subtree(parent, leaf_rows):
    out = np.array(leaf_rows, np.int64).reshape(len(parent), 3).copy()
    for q in range(len(parent) - 1, -1, -1):
        if parent[q] >= 0:
            out[parent[q]] += out[q]
    return out


def shares(parent, quota, capacity, rows, req, weight=None):
    """(deserved, fair_share) from the fair-share kernel over pods (rows, req) in that order."""
    Q = len(parent)
    rows = np.asarray(rows, np.int64)
    order = np.argsort(rows, kind="stable")
    start = np.zeros(Q + 1, np.int64)
    start[1:] = np.cumsum(np.bincount(rows, minlength=Q))
    tree = {"parent": np.array(parent, np.int32), "quota": np.array(quota, np.int64).reshape(Q, 3),
            "limit": np.full((Q, 3), -1, np.int64),
            "weight": np.ones((Q, 3)) if weight is None else np.array(weight, np.float64),
            "priority": np.zeros(Q, np.int32), "capacity": np.array(capacity, np.int64)}
    fs = _core.fair_share(tree, {"pod_start": start,
                                 "req": np.ascontiguousarray(np.asarray(req, np.int64).reshape(-1, 3)[order])})
    return fs["deserved"], fs["fair_share"]


def queues_dict(parent, deserved, fair, allocated, strategy, pmr=0.0, rmr=0.0):
    Q = len(parent)
    return {"parent": np.array(parent, np.int32), "deserved": deserved, "fair_share": fair,
            "allocated": np.ascontiguousarray(allocated, dtype=np.int64),
            "strategy": np.broadcast_to(np.asarray(strategy, np.int8), (Q,)).copy(),
            "preempt_min_runtime": np.broadcast_to(np.asarray(pmr, np.float64), (Q,)).copy(),
            "reclaim_min_runtime": np.broadcast_to(np.asarray(rmr, np.float64), (Q,)).copy()}


def pending_dict(pods, queue, priority, req, class_mask=None, cls=None):
    b = pod_arrays(pods)
    P = len(pods)
    b["cls"] = np.zeros(P, np.int32) if cls is None else np.array(cls, np.int32)
    b["class_mask"] = class_mask
    b["queue"] = np.array(queue, np.int32).reshape(P)
    b["priority"] = np.array(priority, np.int64).reshape(P)
    b["req"] = np.ascontiguousarray(req, dtype=np.int64).reshape(P, 3)
    return b


# ------------------------------------------------------------------------ random problems

def _node_devices(rng):
    t = rng.integers(0, 5)
    if t == 0:
        return []
    if t == 1:
        return [dict(mem_cap=SPX_MEM, mask=0xFF, xpd=int(rng.choice([8, 2]))) for _ in range(rng.integers(1, 5))]
    if t == 2:
        return [dict(mem_cap=CPX_MEM, mask=1 << x, xpd=2) for x in range(8)]
    if t == 3:
        return [dict(mem_cap=SPX_MEM // 2, mask=m, xpd=2) for m in (0x0F, 0xF0) for _ in range(rng.integers(1, 3))]
    return [dict(mem_cap=GEN_MEM, mask=0, xpd=0) for _ in range(rng.integers(1, 5))]


def _random_pods(rng, n):
    out = []
    for _ in range(n):
        kind = int(rng.choice([NONE, WHOLE, WHOLE, SHARED, SHARED, XCD]))
        p = {"cpu": int(rng.choice([0, 1000, 4000, 16000])), "mem": int(rng.choice([0, 1024, 32768])), "kind": kind}
        if kind == WHOLE:
            p.update(count=int(rng.choice([1, 1, 2])), milli=1000)
        elif kind == SHARED:
            milli = int(rng.choice([0, 250, 500, 1000]))
            p.update(count=int(rng.choice([1, 1, 2])), milli=milli,
                     gpu_mem=int(rng.choice([4000, 30000])) if milli == 0 else int(rng.choice([0, 0, 8000])))
        elif kind == XCD:
            p.update(count=1, milli=int(rng.choice([125, 250, 500])))
        if kind in (SHARED, XCD) and rng.random() < 0.15:
            p["exclusive"] = 1
        out.append(p)
    return out


def _random_gangs(rng, pods):
    """(gang, gang_need) int32 arrays over the pending pods: runs of 2-4 consecutive rows become
    gangs whose members mostly copy the first one's shape (in place in ``pods``); gang_need from 0
    (every member optional) to one more than the members (never met)."""
    P = len(pods)
    gang, need = np.full(P, -1, np.int32), np.zeros(P, np.int32)
    p, g = 0, 0
    while p < P:
        size = int(rng.integers(1, 5))
        if size == 1 or p + size > P:
            p += 1
            continue
        for m in range(p + 1, p + size):
            if rng.random() < 0.8:
                pods[m] = dict(pods[p])
        gang[p:p + size] = g
        need[p:p + size] = int(rng.choice([0, 1, size - 1, size, size, size + 1]))
        g, p = g + 1, p + size
    return gang, need


def random_problem(seed, max_nodes=6, max_running=16, max_pending=6, max_queues=5, gangs=False):
    """(empty cluster, cluster, running, pending, queues) from a seed (see the module docstring).
    ``gangs``: runs of pending rows become gangs (see :func:`_random_gangs`)."""
    rng = np.random.default_rng(seed)
    N = int(rng.integers(1, max_nodes + 1))
    nodes = [dict(cpu=int(rng.choice([32000, 64000])), mem=int(rng.choice([65536, 262144])),
                  pods=int(rng.integers(3, 12)), devs=_node_devices(rng)) for _ in range(N)]
    empty = empty_cluster(nodes)
    cluster = copy.deepcopy(empty)
    gpu_only = rng.random() < 0.5
    Q = int(rng.integers(1, max_queues + 1))
    parent = [-1 if q == 0 or rng.random() < 0.4 else int(rng.integers(0, q)) for q in range(Q)]
    leaf = np.ones(Q, bool)
    leaf[[p for p in parent if p >= 0]] = False
    leaves = np.flatnonzero(leaf)

    pods = _random_pods(rng, int(rng.integers(0, max_running + 1)))
    rows, out, b = place_running(cluster, pods)
    V0 = len(pods)
    queue = leaves[rng.integers(0, len(leaves), size=V0)].astype(np.int32)
    if V0 and rng.random() < 0.2:
        queue[rng.integers(0, V0)] = -1  # a running pod in no queue: holds devices, never a victim
    running = running_arrays(rows, out, b, queue, rng.choice([0, 10, 100], size=V0),
                             rng.choice([0.0, 30.0, 60.0, 600.0], size=V0), rng.random(V0) < 0.85,
                             queue_req(b, gpu_only))
    if rng.random() < 0.5:
        # As the snapshot charges running time-sliced pods: their CU-mask XCDs are claimed (taken
        # out of the free XCDs), and claims of several pods on one device may overlap.
        for v in np.flatnonzero((b["kind"][rows] == SHARED) & (running["exclusive"] == 0)):
            if rng.random() < 0.7:
                running["xcd"][v] = 1
                for k in range(running["asg_start"][v], running["asg_start"][v + 1]):
                    cluster["dev_xcd_free"][running["asg_dev"][k]] &= ~running["asg_xcds"][k]

    P = int(rng.integers(1, max_pending + 1))
    C = int(rng.integers(1, 3))
    ppods = _random_pods(rng, P)
    gang = _random_gangs(rng, ppods) if gangs else None
    pb = pod_arrays(ppods)
    pending = pending_dict(ppods, leaves[rng.integers(0, len(leaves), size=P)],
                           rng.choice([0, 10, 100, 1000], size=P), queue_req(pb, gpu_only),
                           class_mask=(rng.random((C, N)) < 0.85).astype(np.uint8),
                           cls=rng.integers(0, C, size=P))
    if gang is not None:
        pending["gang"], pending["gang_need"] = gang
        first = {}
        for p, g in enumerate(gang[0].tolist()):  # a gang: one queue; mostly one priority and class
            if g >= 0:
                f = first.setdefault(g, p)
                pending["queue"][p] = pending["queue"][f]
                if rng.random() < 0.8:
                    pending["priority"][p], pending["cls"][p] = pending["priority"][f], pending["cls"][f]

    quota = np.stack([rng.choice([0, 1000, 2000, 4000, -1], size=Q), rng.choice([0, 16000, -1], size=Q),
                      rng.choice([0, 65536, -1], size=Q)], axis=1)
    capacity = [len(empty["dev_gpu"]) * 1000, int(empty["node_cpu_cap"].sum()), int(empty["node_mem_cap"].sum())]
    in_q = running["queue"] >= 0
    deserved, fair = shares(parent, quota, capacity, np.concatenate([running["queue"][in_q], pending["queue"]]),
                            np.concatenate([running["req"][in_q], pending["req"]]))
    leaf_alloc = np.zeros((Q, 3), np.int64)
    np.add.at(leaf_alloc, running["queue"][in_q], running["req"][in_q])
    allocated = subtree(parent, leaf_alloc) if rng.random() < 0.7 else leaf_alloc  # internal rows 0 is accepted
    queues = queues_dict(parent, deserved, fair, allocated, rng.integers(0, 2, size=Q),
                         rng.choice([0.0, 60.0], size=Q), rng.choice([0.0, 30.0, 100.0], size=Q))
    return empty, cluster, running, pending, queues


# ------------------------------------------------------------------- independent checks

def _path(parent, q):
    out = []
    while q >= 0:
        out.append(int(q))
        q = parent[q]
    return out


def lacking_on(state, pending, p, n):
    """Resources pod p lacks on node n of `state` (naive_preempt.lacking on placement's checks)."""
    d0, d1 = state["node_dev_start"][n], state["node_dev_start"][n + 1]
    one = {k: np.asarray(v)[n:n + 1].tolist() for k, v in state.items() if k.startswith("node_")}
    one.update({k: np.asarray(v)[d0:d1].tolist() for k, v in state.items() if k.startswith("dev_")})
    one["node_dev_start"] = [0, int(d1 - d0)]
    pod = {k: [pending[k][p]] for k in ("cpu", "mem", "kind", "count", "milli", "gpu_mem", "exclusive")}
    return lacking(one, dict(pod, cls=[0], class_mask=[[1]]))


def check_rules(empty, running, pending, queues, out):
    """Every victim allowed by its rule, replayed against the queue allocation at its time; reclaim
    judged on the resources the pod lacked on its node then."""
    parent = [int(x) for x in queues["parent"]]
    leaf = np.ones(len(parent), bool)
    leaf[[p for p in parent if p >= 0]] = False
    alloc = subtree(parent, np.where(leaf[:, None], queues["allocated"], 0))
    seen = set()
    for p in range(len(pending["cpu"])):
        vs = out["vic"][out["vic_start"][p]:out["vic_start"][p + 1]].tolist()
        rules = out["vic_rule"][out["vic_start"][p]:out["vic_start"][p + 1]].tolist()
        n = int(out["node"][p])
        if n < 0:
            assert not vs
            continue
        qp = int(pending["queue"][p])
        req_p = pending["req"][p]
        ent = queues["deserved"] if queues["strategy"][qp] == CONSERVATIVE else queues["fair_share"]
        up_p = set(_path(parent, qp))
        judged = lacking_on(rebuilt_state(empty, running, pending, out, p), pending, p, n) if vs else set()
        sub = np.zeros_like(alloc)
        for v in vs:
            sub[_path(parent, int(running["queue"][v]))] += running["req"][v]
        for v, rule in zip(vs, rules):
            assert v not in seen, "a pod evicted twice"
            seen.add(v)
            qv = int(running["queue"][v])
            assert running["preemptible"][v] == 1 and qv >= 0, "a non-preemptible pod was chosen"
            assert running["node"][v] == n, "victim on another node"
            if qv == qp:
                assert rule == R_WITHIN
                assert running["priority"][v] < pending["priority"][p]
                assert running["runtime"][v] >= queues["preempt_min_runtime"][qp]
                continue
            assert rule == (R_CONS if queues["strategy"][qp] == CONSERVATIVE else R_AGGR)
            assert running["runtime"][v] >= queues["reclaim_min_runtime"][qv], "victim younger than reclaimMinRuntime"
            up_v = _path(parent, qv)
            lca = next((a for a in up_v if a in up_p), -1)
            for a in up_v[:up_v.index(lca) if lca >= 0 else None]:   # (b) the victim's side
                for r in judged:
                    if running["req"][v][r] > 0:
                        prot = ent[a][r] if parent[a] == lca else min(ent[a][r], queues["fair_share"][a][r])
                        assert alloc[a][r] - sub[a][r] >= prot, "victim queue below its entitlement"
            pp = _path(parent, qp)
            for a in pp[:pp.index(lca) if lca >= 0 else None]:        # (a) the preemptor's side
                for r in judged:
                    if req_p[r] > 0:
                        assert alloc[a][r] - sub[a][r] + req_p[r] <= ent[a][r], "preemptor above its entitlement"
        alloc -= sub
        alloc[_path(parent, qp)] += req_p
    np.testing.assert_array_equal(out["allocated"], alloc)


def check_gangs(pending, out):
    """All or nothing per gang: at least gang_need of its rows got a node, or none did and nothing
    was evicted for any of them."""
    if pending.get("gang") is None:
        return
    gang, need = pending["gang"], pending["gang_need"]
    for g in np.unique(gang[gang >= 0]):
        rows = np.flatnonzero(gang == g)
        got = int((out["node"][rows] >= 0).sum())
        victims = sum(len(victims_of(out, p)) for p in rows)
        assert got >= need[rows[0]] or (got == 0 and victims == 0), \
            f"gang {g}: {got} of {len(rows)} rows got a node ({victims} victims), gang_need {need[rows[0]]}"


def rebuilt_state(empty, running, pending, out, upto=None):
    """The state from scratch: the empty cluster charged with the surviving running pods and the
    placed preemptors (charges as placement makes them); with ``upto``, the state pod ``upto`` met
    (only the decisions of the pods before it carried out)."""
    c = copy.deepcopy(empty)
    upto = len(out["node"]) if upto is None else upto
    gone = set(out["vic"][:out["vic_start"][upto]].tolist())
    holders = []  # (node, cpu, mem, [(dev, milli, mem, xcds)], exclusive, xcd)
    for v in range(len(running["node"])):
        if v in gone:
            continue
        ks = range(running["asg_start"][v], running["asg_start"][v + 1])
        holders.append((running["node"][v], running["cpu"][v], running["mem"][v],
                        [(running["asg_dev"][k], running["asg_milli"][k], running["asg_mem"][k],
                          running["asg_xcds"][k]) for k in ks], running["exclusive"][v], running["xcd"][v]))
    for p in np.flatnonzero(out["node"][:upto] >= 0):
        ks = range(out["asg_start"][p], out["asg_start"][p + 1])
        kind, excl = pending["kind"][p], pending["exclusive"][p]
        holders.append((out["node"][p], pending["cpu"][p], pending["mem"][p],
                        [(out["asg_dev"][k], out["asg_milli"][k], out["asg_mem"][k], out["asg_xcds"][k]) for k in ks],
                        kind == WHOLE or (kind != NONE and excl), kind == XCD and not excl))
    for n, cpu, mem, devs, exclusive, xcd in holders:
        c["node_cpu_free"][n] -= cpu
        c["node_mem_free"][n] -= mem
        c["node_pods_free"][n] -= 1
        for d, m, dm, x in devs:
            if exclusive:
                c["dev_milli_free"][d], c["dev_mem_free"][d], c["dev_xcd_free"][d] = 0, 0, 0
                c["dev_state"][d] = EXCL
                continue
            c["dev_milli_free"][d] -= m
            c["dev_mem_free"][d] -= dm
            if xcd:
                c["dev_xcd_free"][d] &= ~np.uint32(x)
            c["dev_state"][d] = SHARED_DEV
    return c


def run_kernel(cluster, running, pending, queues):
    before = copy.deepcopy((cluster, running, pending, queues))
    out = _core.plan_preemptions(cluster, running, pending, queues)
    for a, b in zip((cluster, running, pending, queues), before):
        for k in b:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"input {k} was modified")
    assert out["fit_mismatch"] == 0
    return out


def assert_same(out, ref):
    assert set(out) == set(OUT_DTYPES) | {"fit_mismatch"}
    for k, dt in OUT_DTYPES.items():
        assert out[k].dtype == dt, k
        np.testing.assert_array_equal(out[k], ref[k], err_msg=k)


def check_problem(empty, cluster, running, pending, queues, prune=True):
    out = run_kernel(cluster, running, pending, queues)
    ref = plan_preemptions_ref(cluster, running, pending, queues, prune=prune)
    assert_same(out, ref)
    check_rules(empty, running, pending, queues, out)
    check_gangs(pending, out)
    rebuilt = rebuilt_state(empty, running, pending, out)
    for k in STATE_KEYS:
        np.testing.assert_array_equal(out[k], rebuilt[k], err_msg=f"final {k} differs from the rebuilt state")
        if k != "dev_xcd_free":
            assert (out[k] >= 0).all(), f"overcommitted {k}"
    again = _core.plan_preemptions(cluster, running, pending, queues)
    assert_same(again, out)
    return out


# ----------------------------------------------------------------------------- random tests

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_kernel_matches_reference_and_rules(seed):
    check_problem(*random_problem(seed))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_busy_clusters_match_reference(seed):
    """More running pods than fit (full clusters: many victims), more pending pods."""
    check_problem(*random_problem(seed, max_running=40, max_pending=10))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_reference_pruning_changes_nothing(seed):
    """The reference's one shortcut (skip a node where the pod does not fit even with every eligible
    victim gone: fit is monotone in freed capacity) against the plain greedy on every node."""
    check_problem(*random_problem(seed, max_running=30), prune=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_gangs_match_reference_and_are_all_or_nothing(seed):
    """Gangs among the pending pods: tried as transactions, kept only if gang_need members got a
    node (with every victim allowed by its rule on the state the earlier members left)."""
    check_problem(*random_problem(seed, max_running=30, max_pending=10, gangs=True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_gangs_reference_pruning_changes_nothing(seed):
    check_problem(*random_problem(seed, max_running=30, max_pending=8, gangs=True), prune=False)


def test_random_gangs_both_commit_with_victims_and_roll_back():
    """The gang generator is not degenerate: gangs that evict and start, and gangs rolled back
    although some member alone would have evicted (the all-or-nothing rule at work), both occur."""
    committed = rolled_back = 0
    for seed in range(150):
        _, cluster, running, pending, queues = random_problem(seed, max_running=30, max_pending=10, gangs=True)
        out = _core.plan_preemptions(cluster, running, pending, queues)
        alone = _core.plan_preemptions(cluster, running, {k: v for k, v in pending.items()
                                                          if k not in ("gang", "gang_need")}, queues)
        gang = pending["gang"]
        for g in np.unique(gang[gang >= 0]):
            rows = np.flatnonzero(gang == g)
            evicted = sum(len(victims_of(out, p)) for p in rows)
            committed += bool(evicted)
            rolled_back += (out["node"][rows] < 0).all() and any(victims_of(alone, p) for p in rows)
    assert committed > 0 and rolled_back > 0, (committed, rolled_back)


def test_random_problems_exercise_every_rule():
    """The generator is not degenerate: across seeds all three rules and unplaced pods occur."""
    rules, unplaced = np.zeros(3, int), 0
    for seed in range(150):
        _, cluster, running, pending, queues = random_problem(seed, max_running=30)
        out = _core.plan_preemptions(cluster, running, pending, queues)
        rules += np.bincount(out["vic_rule"], minlength=3)
        unplaced += int((out["node"] < 0).sum())
    assert (rules > 0).all() and unplaced > 0, (rules, unplaced)


# ----------------------------------------------------------------------------- scenarios

def two_queues(strategy, b_pods=8, a_pods=4, preemptible=None, runtime=None, rmr=0.0, nodes=None):
    """8 GPUs (one node of 8 SPX MI300X), queues A (row 0) and B (row 1), top level, GPU quota 2
    each, equal weights: fair shares 4 / 4. B runs `b_pods` one-GPU pods; A has `a_pods` pending.
    Queue requests are GPU-only (CPU and memory have no quota here)."""
    empty = empty_cluster(nodes or [dict(cpu=256000, mem=2_000_000, pods=110, devs=spx(8))])
    cluster = copy.deepcopy(empty)
    pods = [dict(cpu=1000, mem=1024, kind=WHOLE, count=1, milli=1000)] * b_pods
    rows, out, b = place_running(cluster, pods)
    assert len(rows) == b_pods
    running = running_arrays(rows, out, b, [1] * b_pods, [0] * b_pods,
                             runtime if runtime is not None else [3600.0] * b_pods,
                             preemptible if preemptible is not None else [1] * b_pods, queue_req(b, True))
    pp = [dict(cpu=1000, mem=1024, kind=WHOLE, count=1, milli=1000)] * a_pods
    pending = pending_dict(pp, [0] * a_pods, [0] * a_pods, queue_req(pod_arrays(pp), True),
                           class_mask=np.ones((1, len(empty["node_cpu_free"])), np.uint8))
    parent = [-1, -1]
    deserved, fair = shares(parent, [[2000, 0, 0], [2000, 0, 0]], [8000, 256000, 2_000_000],
                            [1] * b_pods + [0] * a_pods, np.concatenate([running["req"], pending["req"]]))
    alloc = np.zeros((2, 3), np.int64)
    alloc[1] = running["req"].sum(axis=0)
    queues = queues_dict(parent, deserved, fair, alloc, strategy, rmr=rmr)
    return empty, cluster, running, pending, queues


def victims_of(out, p):
    return out["vic"][out["vic_start"][p]:out["vic_start"][p + 1]].tolist()


def test_two_queue_shares_are_as_expected():
    *_, queues = two_queues(CONSERVATIVE)
    np.testing.assert_array_equal(queues["deserved"][:, 0], [2000, 2000])
    np.testing.assert_array_equal(queues["fair_share"][:, 0], [4000, 4000])


def test_conservative_reclaims_only_the_deserved_quota():
    out = check_problem(*two_queues(CONSERVATIVE))
    assert out["node"].tolist() == [0, 0, -1, -1]
    assert len(out["vic"]) == 2 and set(out["vic_rule"].tolist()) == {R_CONS}
    assert out["allocated"][:, 0].tolist() == [2000, 6000]


def test_aggressive_reclaims_the_fair_share():
    out = check_problem(*two_queues(AGGRESSIVE))
    assert out["node"].tolist() == [0, 0, 0, 0]
    assert len(out["vic"]) == 4 and set(out["vic_rule"].tolist()) == {R_AGGR}
    assert out["allocated"][:, 0].tolist() == [4000, 4000]


def test_victims_are_the_youngest_of_equal_priority_and_devices_return():
    runtime = [100.0 * (8 - i) for i in range(8)]  # row 7 is the youngest
    out = check_problem(*two_queues(AGGRESSIVE, runtime=runtime))
    assert sorted(out["vic"].tolist()) == [4, 5, 6, 7]
    # The preemptors took exactly the devices the victims held.
    *_, running, _, _ = two_queues(AGGRESSIVE, runtime=runtime)
    freed = sorted(running["asg_dev"][running["asg_start"][v]] for v in (4, 5, 6, 7))
    assert sorted(out["asg_dev"].tolist()) == freed


@pytest.mark.parametrize("strategy, need, evicted", [(CONSERVATIVE, 4, 0), (CONSERVATIVE, 2, 2),
                                                      (AGGRESSIVE, 4, 4), (AGGRESSIVE, 0, 4)])
def test_a_gang_reclaims_for_all_its_members_or_nothing(strategy, need, evicted):
    """A's 4 pending pods as one gang: conservative A may reclaim 2 GPUs (deserved 2), so a gang
    needing 4 evicts nothing and one needing 2 evicts 2 (the other members stay unplaced);
    aggressive A reclaims up to its fair share 4."""
    empty, cluster, running, pending, queues = two_queues(strategy)
    pending.update(gang=np.zeros(4, np.int32), gang_need=np.full(4, need, np.int32))
    out = check_problem(empty, cluster, running, pending, queues)
    assert len(out["vic"]) == evicted and int((out["node"] >= 0).sum()) == evicted
    assert out["node"][:evicted].tolist() == [0] * evicted


def test_non_preemptible_pods_are_never_chosen():
    preemptible = [0, 0, 0, 0, 0, 0, 1, 1]
    out = check_problem(*two_queues(AGGRESSIVE, preemptible=preemptible))
    assert sorted(out["vic"].tolist()) == [6, 7]
    assert out["node"].tolist() == [0, 0, -1, -1]


def test_pods_younger_than_reclaim_min_runtime_are_not_chosen():
    runtime = [1000.0, 1000.0, 1000.0, 100.0, 100.0, 100.0, 100.0, 1000.0]
    out = check_problem(*two_queues(AGGRESSIVE, runtime=runtime, rmr=600.0))
    assert sorted(out["vic"].tolist()) == [0, 1, 2, 7]
    runtime = [100.0] * 7 + [1000.0]
    out = check_problem(*two_queues(AGGRESSIVE, runtime=runtime, rmr=600.0))
    assert out["vic"].tolist() == [7] and out["node"].tolist() == [0, -1, -1, -1]


def test_no_ping_pong():
    """After A reclaimed its fair share, B's pending pods cannot reclaim it straight back."""
    empty, cluster, running, pending, queues = two_queues(AGGRESSIVE)
    out = check_problem(empty, cluster, running, pending, queues)
    keep = np.setdiff1d(np.arange(len(running["node"])), out["vic"])
    # The new state: B's survivors and A's four pods running; B's evicted pods pending again.
    new_running = {k: (v[keep] if k not in ("asg_start", "asg_dev", "asg_milli", "asg_mem", "asg_xcds") else v)
                   for k, v in running.items()}
    starts = running["asg_start"]
    idx = np.concatenate([np.arange(starts[v], starts[v + 1]) for v in keep])
    for k in ("asg_dev", "asg_milli", "asg_mem", "asg_xcds"):
        new_running[k] = np.concatenate([running[k][idx], out[k]])
    n_keep = len(keep)
    new_running["asg_start"] = np.arange(n_keep + 5, dtype=np.int64)
    for k, a_val in (("node", out["node"]), ("queue", np.zeros(4, np.int32)), ("priority", np.zeros(4, np.int64)),
                     ("preemptible", np.ones(4, np.uint8)), ("runtime", np.full(4, 3600.0)),
                     ("req", pending["req"]), ("cpu", pending["cpu"]), ("mem", pending["mem"]),
                     ("exclusive", np.ones(4, np.uint8)), ("xcd", np.zeros(4, np.uint8))):
        new_running[k] = np.ascontiguousarray(np.concatenate([new_running[k], a_val.astype(new_running[k].dtype)]))
    state = {k: (out[k] if k in STATE_KEYS else v) for k, v in cluster.items()}
    back = pending_dict([dict(cpu=1000, mem=1024, kind=WHOLE, count=1, milli=1000)] * 4, [1] * 4, [0] * 4,
                        pending["req"], class_mask=pending["class_mask"])
    q2 = dict(queues, allocated=out["allocated"])
    for strategy in (AGGRESSIVE, CONSERVATIVE):
        q2["strategy"] = np.full(2, strategy, np.int8)
        again = run_kernel(state, new_running, back, q2)
        assert (again["node"] < 0).all() and len(again["vic"]) == 0


def test_within_queue_preemption_by_priority():
    empty = empty_cluster([dict(cpu=64000, mem=262144, pods=110, devs=spx(2))])
    cluster = copy.deepcopy(empty)
    pods = [dict(cpu=1000, kind=WHOLE, count=1, milli=1000)] * 2
    rows, out, b = place_running(cluster, pods)
    running = running_arrays(rows, out, b, [0, 0], [10, 100], [3600.0, 3600.0], [1, 1], queue_req(b))
    parent = [-1]
    for prio, expect in ((50, [0]), (5, []), (1000, [0])):
        pending = pending_dict([dict(cpu=1000, kind=WHOLE, count=1, milli=1000)], [0], [prio],
                               queue_req(pod_arrays([dict(cpu=1000, kind=WHOLE, count=1, milli=1000)])),
                               class_mask=np.ones((1, 1), np.uint8))
        deserved = np.zeros((1, 3), np.int64)  # no quota at all: reclaim could not help, preemption does
        queues = queues_dict(parent, deserved, deserved.copy(), running["req"].sum(axis=0)[None, :], AGGRESSIVE)
        res = check_problem(empty, cluster, running, pending, queues)
        assert victims_of(res, 0) == expect
        assert res["vic_rule"].tolist() == [R_WITHIN] * len(expect)
    # preemptMinRuntime protects the young low-priority pod.
    queues = queues_dict(parent, deserved, deserved.copy(), running["req"].sum(axis=0)[None, :], AGGRESSIVE,
                         pmr=7200.0)
    pending = pending_dict([dict(cpu=1000, kind=WHOLE, count=1, milli=1000)], [0], [1000],
                           queue_req(pod_arrays([dict(cpu=1000, kind=WHOLE, count=1, milli=1000)])),
                           class_mask=np.ones((1, 1), np.uint8))
    assert len(check_problem(empty, cluster, running, pending, queues)["vic"]) == 0


def within_queue_case(running_pods, running_nodes, priorities, pending_pod, nodes, preemptible=None):
    """One queue; running pods pinned to nodes; one pending pod of priority 1000."""
    empty = empty_cluster(nodes)
    cluster = copy.deepcopy(empty)
    rows, out, b = place_running(cluster, running_pods, running_nodes)
    assert len(rows) == len(running_pods)
    V = len(running_pods)
    running = running_arrays(rows, out, b, [0] * V, priorities, [3600.0] * V,
                             preemptible if preemptible is not None else [1] * V, queue_req(b))
    pending = pending_dict([pending_pod], [0], [1000], queue_req(pod_arrays([pending_pod])),
                           class_mask=np.ones((1, len(nodes)), np.uint8))
    zero = np.zeros((1, 3), np.int64)
    queues = queues_dict([-1], zero, zero.copy(), running["req"].sum(axis=0)[None, :], AGGRESSIVE)
    return empty, cluster, running, pending, queues


def test_fewest_victims_wins_over_lower_priorities_and_index():
    """Node 0 needs two low-priority victims, node 1 one higher-priority victim: node 1 wins."""
    nodes = [dict(cpu=64000, mem=262144, pods=110, devs=spx(2)) for _ in range(2)]
    one, two = dict(cpu=1000, kind=WHOLE, count=1, milli=1000), dict(cpu=1000, kind=WHOLE, count=2, milli=1000)
    out = check_problem(*within_queue_case([one, one, two], [0, 0, 1], [0, 0, 50], two, nodes))
    assert out["node"].tolist() == [1] and victims_of(out, 0) == [2]


def test_ties_go_to_the_lowest_priority_sum_then_the_lowest_node():
    nodes = [dict(cpu=64000, mem=262144, pods=110, devs=spx(1)) for _ in range(3)]
    one = dict(cpu=1000, kind=WHOLE, count=1, milli=1000)
    out = check_problem(*within_queue_case([one, one, one], [0, 1, 2], [20, 10, 10], one, nodes))
    assert out["node"].tolist() == [1] and victims_of(out, 0) == [1]


def test_unneeded_victims_are_dropped():
    """Greedy order takes the low-priority shared pod first, then the 2-GPU pod that alone is enough:
    the shared pod is dropped again."""
    nodes = [dict(cpu=64000, mem=262144, pods=110, devs=spx(4))]
    pods = [dict(cpu=1000, kind=SHARED, count=1, milli=500),       # priority 0, device 0
            dict(cpu=1000, kind=WHOLE, count=1, milli=1000),       # non-preemptible, device 1
            dict(cpu=1000, kind=WHOLE, count=2, milli=1000)]       # priority 10, devices 2-3
    out = check_problem(*within_queue_case(pods, [0, 0, 0], [0, 5, 10],
                                           dict(cpu=1000, kind=WHOLE, count=2, milli=1000), nodes,
                                           preemptible=[1, 0, 1]))
    assert victims_of(out, 0) == [2]


def test_capacity_freed_by_a_big_victim_serves_later_pods_without_victims():
    nodes = [dict(cpu=64000, mem=262144, pods=110, devs=spx(8))]
    eight = dict(cpu=1000, kind=WHOLE, count=8, milli=1000)
    one = dict(cpu=1000, kind=WHOLE, count=1, milli=1000)
    empty, cluster, running, pending, queues = within_queue_case([eight], [0], [0], one, nodes)
    pending = pending_dict([one] * 3, [0] * 3, [1000] * 3, queue_req(pod_arrays([one] * 3)),
                           class_mask=np.ones((1, 1), np.uint8))
    out = check_problem(empty, cluster, running, pending, queues)
    assert out["node"].tolist() == [0, 0, 0]
    assert out["vic_start"].tolist() == [0, 1, 1, 1]


def test_shared_device_becomes_idle_only_when_its_last_holder_leaves():
    """Two half-GPU pods share device 0; a whole-GPU pod needs both gone (two victims), while a
    half-GPU pending pod needs only one."""
    nodes = [dict(cpu=64000, mem=262144, pods=110, devs=spx(1))]
    half = dict(cpu=1000, kind=SHARED, count=1, milli=500)
    one = dict(cpu=1000, kind=WHOLE, count=1, milli=1000)
    out = check_problem(*within_queue_case([half, half], [0, 0], [0, 1], one, nodes))
    assert sorted(victims_of(out, 0)) == [0, 1] and out["dev_state"].tolist() == [EXCL]
    out = check_problem(*within_queue_case([half, half], [0, 0], [0, 1], half, nodes))
    assert victims_of(out, 0) == [0] and out["dev_state"].tolist() == [SHARED_DEV]


def test_xcd_victim_returns_its_xcds():
    nodes = [dict(cpu=64000, mem=262144, pods=110, devs=spx(1))]
    xcd_half = dict(cpu=1000, kind=XCD, count=1, milli=500)
    out = check_problem(*within_queue_case([xcd_half, xcd_half], [0, 0], [0, 1], dict(cpu=1000, kind=XCD, count=1, milli=500),
                                           nodes))
    assert victims_of(out, 0) == [0]
    assert out["dev_state"].tolist() == [SHARED_DEV] and out["dev_xcd_free"].tolist() == [0]


def test_reclaim_is_judged_on_the_resources_the_pod_lacks():
    """Entitlement is judged on the resources being reclaimed (issue 11): with CPU requests counted
    and no CPU quota (A deserves no CPU), conservative reclaim still restores A's 2 deserved GPUs when
    GPUs are all the node lacks (before: no victim, A starved); aggressive restores its fair share
    (4). When the node's CPU is full too, CPU is being reclaimed as well, and A, entitled to no CPU,
    may not take it from B conservatively."""
    def problem(strategy, node_cpu):
        empty, cluster, running, pending, _ = two_queues(
            strategy, nodes=[dict(cpu=node_cpu, mem=2_000_000, pods=110, devs=spx(8))])
        for d in (running, pending):
            d["req"] = np.ascontiguousarray(np.stack([d["req"][:, 0], d["cpu"], d["mem"]], axis=1))
        deserved, fair = shares([-1, -1], [[2000, 0, 0], [2000, 0, 0]], [8000, node_cpu, 2_000_000],
                                [1] * 8 + [0] * 4, np.concatenate([running["req"], pending["req"]]))
        alloc = np.zeros((2, 3), np.int64)
        alloc[1] = running["req"].sum(axis=0)
        return empty, cluster, running, pending, queues_dict([-1, -1], deserved, fair, alloc, strategy)

    assert len(check_problem(*problem(CONSERVATIVE, 256000))["vic"]) == 2
    assert len(check_problem(*problem(AGGRESSIVE, 256000))["vic"]) == 4
    assert len(check_problem(*problem(CONSERVATIVE, 8000))["vic"]) == 0


def test_hierarchy_reclaim_stops_at_the_common_ancestor():
    """org -> {A, B}: A reclaims from its sibling B under org's fair share; org itself is not
    checked (it is the common ancestor), so org above its own entitlement does not matter."""
    empty, cluster, running, pending, queues = two_queues(AGGRESSIVE)
    parent = [-1, 0, 0]  # org, A, B
    running = dict(running, queue=np.full(8, 2, np.int32))
    pending = dict(pending, queue=np.full(4, 1, np.int32))
    des = np.array([[0, 0, 0], [2000, 0, 0], [2000, 0, 0]], np.int64)
    fair = np.array([[0, 0, 0], [4000, 0, 0], [4000, 0, 0]], np.int64)   # org "entitled" to nothing
    alloc = subtree(parent, np.array([[0, 0, 0], [0, 0, 0], [8000, 0, 0]]))
    out = check_problem(empty, cluster, running, pending, queues_dict(parent, des, fair, alloc, AGGRESSIVE))
    assert len(out["vic"]) == 4
    assert out["allocated"][:, 0].tolist() == [8000, 4000, 4000]


def test_nothing_to_do():
    empty, cluster, running, pending, queues = two_queues(AGGRESSIVE, a_pods=0)
    out = check_problem(empty, cluster, running, pending, queues)
    assert out["node"].shape == (0,) and out["vic_start"].tolist() == [0]
    empty = empty_cluster([dict(cpu=1000, mem=1000, pods=1, devs=[])])
    q = queues_dict([-1], np.zeros((1, 3), np.int64), np.zeros((1, 3), np.int64), np.zeros((1, 3), np.int64), 0)
    run = running_arrays(np.zeros(0, np.int64), {"node": np.zeros(0, np.int32), "asg_start": np.zeros(1, np.int64),
                                                 "asg_dev": np.zeros(0, np.int32), "asg_milli": np.zeros(0, np.int64),
                                                 "asg_mem": np.zeros(0, np.int64), "asg_xcds": np.zeros(0, np.uint32)},
                         pod_arrays([]), [], [], [], [], np.zeros((0, 3), np.int64))
    pend = pending_dict([dict(cpu=500)], [0], [0], [[0, 500, 0]], class_mask=np.ones((1, 1), np.uint8))
    out = check_problem(empty, copy.deepcopy(empty), run, pend, q)
    assert out["node"].tolist() == [0]


# ---------------------------------------------------------------------------- validation

def good():
    _, cluster, running, pending, queues = two_queues(AGGRESSIVE)
    return cluster, running, pending, queues


def _with(which, key, value):
    args = list(copy.deepcopy(good()))
    i = ("cluster", "running", "pending", "queues").index(which)
    if value is KeyError:
        del args[i][key]
    else:
        args[i][key] = value(args[i][key]) if callable(value) else value
    return args


BAD = [
    ("cluster", "node_cpu_free", KeyError, r"cluster\['node_cpu_free'\]: missing"),
    ("cluster", "dev_state", lambda a: np.full_like(a, 7), r"cluster\['dev_state'\]: unknown state"),
    ("cluster", "node_dev_start", lambda a: a[::-1].copy(), r"cluster\['node_dev_start'\]"),
    ("cluster", "bogus", np.zeros(1), r"cluster\['bogus'\]: unknown key"),
    ("running", "node", lambda a: a + 5, r"running\['node'\]: node 5 out of range"),
    ("running", "queue", lambda a: np.full_like(a, 9), r"running\['queue'\]: queue 9 out of range"),
    ("running", "preemptible", lambda a: np.full_like(a, 2), r"running\['preemptible'\]: must be 0 or 1"),
    ("running", "runtime", lambda a: np.full_like(a, np.nan), r"running\['runtime'\]: must be a number >= 0"),
    ("running", "runtime", lambda a: a.astype(np.float32), r"running\['runtime'\]: expected dtype float64"),
    ("running", "req", lambda a: -a, r"running\['req'\]: negative value"),
    ("running", "req", lambda a: a[:, :2].copy(), r"running\['req'\]: expected shape"),
    ("running", "asg_start", lambda a: a[:-1].copy(), r"running\['asg_start'\]: expected length"),
    ("running", "asg_dev", lambda a: a + 100, r"running\['asg_dev'\]: device \d+ is not on the pod's node"),
    ("running", "asg_xcds", lambda a: a | np.uint32(0x100), r"running\['asg_xcds'\]: XCDs outside"),
    ("running", "xcd", KeyError, r"running\['xcd'\]: missing"),
    ("pending", "queue", lambda a: np.full_like(a, 5), r"pending\['queue'\]: queue 5 out of range"),
    ("pending", "kind", lambda a: np.full_like(a, 9), r"pending\['kind'\]: unknown kind"),
    ("pending", "class_mask", lambda a: np.ones((1, 3), np.uint8), r"pending\['class_mask'\]: expected shape"),
    ("pending", "cls", lambda a: a + 3, r"pending\['cls'\]: class 3 out of range"),
    ("pending", "count", lambda a: np.zeros_like(a), r"pending\['count'\]: a GPU request needs count >= 1"),
    ("pending", "priority", lambda a: a.astype(np.int32), r"pending\['priority'\]: expected dtype int64"),
    ("pending", "extra_score", np.zeros((2, 2)), r"pending\['extra_score'\]: expected shape"),
    ("queues", "parent", lambda a: np.array([1, -1], np.int32), r"queues\['parent'\]: parent 1 at queue 0"),
    ("queues", "strategy", lambda a: np.full_like(a, 3), r"queues\['strategy'\]: must be 0 \(aggressive\)"),
    ("queues", "deserved", lambda a: -a - 1, r"queues\['deserved'\]: must be in \[0, 2\^60\]"),
    ("queues", "reclaim_min_runtime", lambda a: -a - 1, r"queues\['reclaim_min_runtime'\]: must be a number"),
    ("queues", "allocated", lambda a: a[:1].copy(), r"queues\['allocated'\]: expected shape"),
]


@pytest.mark.parametrize("which, key, value, match", BAD, ids=[f"{w}-{k}-{i}" for i, (w, k, _, _) in enumerate(BAD)])
def test_bad_input_raises_value_error_naming_the_key(which, key, value, match):
    with pytest.raises(ValueError, match=match):
        _core.plan_preemptions(*_with(which, key, value))


GANG_BAD = [
    ([0, 0, -1, -1], None, r"pending\['gang_need'\]: gang and gang_need come together"),
    ([0, -1, 0, -1], [1, 0, 1, 0], r"pending\['gang'\]: members of gang 0 are not consecutive at pending pod 2"),
    ([0, 0, 1, 1], [2, 1, 2, 2], r"pending\['gang_need'\]: members of gang 0 disagree at pending pod 1"),
    ([0, 0, 1, 1], [2, 2, -1, -1], r"pending\['gang_need'\]: must be >= 0, got -1 at pending pod 2"),
    ([-2, 0, 0, 0], [0, 1, 1, 1], r"pending\['gang'\]: gang id -2 must be >= 0 or -1"),
]


@pytest.mark.parametrize("gang, need, match", GANG_BAD)
def test_bad_gangs_raise_value_error_naming_the_key(gang, need, match):
    cluster, running, pending, queues = good()
    pending["gang"] = np.array(gang, np.int32)
    if need is not None:
        pending["gang_need"] = np.array(need, np.int32)
    with pytest.raises(ValueError, match=match):
        _core.plan_preemptions(cluster, running, pending, queues)


def test_a_gang_spans_one_queue():
    _, cluster, running, pending, queues = two_queues(AGGRESSIVE)
    pending.update(gang=np.zeros(4, np.int32), gang_need=np.full(4, 4, np.int32), queue=np.array([0, 0, 1, 1], np.int32))
    with pytest.raises(ValueError, match=r"pending\['queue'\]: members of gang 0 are in different queues"):
        _core.plan_preemptions(cluster, running, pending, queues)


def test_a_device_listed_twice_for_one_pod_is_an_error():
    cluster, running, pending, queues = good()
    running["asg_start"] = np.array([0, 2] + list(range(2, 9)), np.int64)
    running["asg_dev"] = np.concatenate([running["asg_dev"][:1], running["asg_dev"]]).astype(np.int32)
    for k in ("asg_milli", "asg_mem", "asg_xcds"):
        running[k] = np.concatenate([running[k][:1], running[k]])
    running["asg_start"][1:] = np.arange(2, 10)
    with pytest.raises(ValueError, match=r"running\['asg_dev'\]: device 0 listed twice at running pod 0"):
        _core.plan_preemptions(cluster, running, pending, queues)


def test_internal_allocated_rows_must_be_zero_or_the_subtree_sum():
    _, cluster, running, pending, queues = two_queues(AGGRESSIVE)
    parent = [-1, 0, 0]
    q = queues_dict(parent, np.zeros((3, 3), np.int64), np.zeros((3, 3), np.int64),
                    np.array([[5, 0, 0], [0, 0, 0], [8000, 0, 0]]), AGGRESSIVE)
    running = dict(running, queue=np.full(8, 2, np.int32))
    pending = dict(pending, queue=np.full(4, 1, np.int32))
    with pytest.raises(ValueError, match=r"queues\['allocated'\]: row at queue 0 \(internal\)"):
        _core.plan_preemptions(cluster, running, pending, q)
    pending = dict(pending, queue=np.zeros(4, np.int32))
    q["allocated"][0] = [8000, 0, 0]
    with pytest.raises(ValueError, match=r"pending\['queue'\]: queue 0 is not a leaf"):
        _core.plan_preemptions(cluster, running, pending, q)


def test_good_input_passes_and_read_only_inputs_work():
    args = good()
    for d in args:
        for a in d.values():
            a.flags.writeable = False
    out = _core.plan_preemptions(*args)
    assert out["node"].shape == (4,)


# ------------------------------------------------------------ Python wrapper (kaiwo_core.scheduling.preemption)

def _objects(strategy, b_annotations=None, b_priority=0, rmr=None, b_started=None):
    """One node of 8 MI300X; queues A and B (GPU quota 2 each); B runs 8 one-GPU pods (no device
    annotation: the snapshot picks their devices), A has 4 pending one-GPU pods."""
    node = {"kind": "Node", "metadata": {"name": "n1", "labels": {"amd.com/gpu.product-name": "AMD_Instinct_MI300X"}},
            "status": {"allocatable": {"cpu": "192", "memory": "2048Gi", "pods": "110", "amd.com/gpu": "8"}}}

    def queue(name):
        spec = {"resources": {"gpu": {"quota": 2}}, "fairness": {"reclaimStrategy": strategy}}
        if rmr:
            spec["reclaimMinRuntime"] = rmr
        return {"kind": "KaiwoQueue", "apiVersion": "kaiwo.ai/v1alpha2", "metadata": {"name": name}, "spec": spec}

    def pod(name, q, hour, node_name=None, ann=None):
        spec = {"schedulerName": "kaiwo", "priority": b_priority if q == "b" else 0,
                "containers": [{"name": "c", "resources": {"limits": {"cpu": "2", "memory": "8Gi",
                                                                      "amd.com/gpu": "1"}}}]}
        if node_name:
            spec["nodeName"] = node_name
        status = {"phase": "Running"} if node_name else {}
        if node_name and b_started is not None:
            status["startTime"] = f"2026-01-01T{b_started[int(name[1:])]:02d}:00:00Z"
        return {"kind": "Pod", "metadata": {"name": name, "namespace": "ns", "labels": {"kaiwo.ai/queue": q},
                                            "annotations": dict(ann or {}),
                                            "creationTimestamp": f"2026-01-01T{hour:02d}:00:00Z"},
                "spec": spec, "status": status}

    objs = [node, queue("a"), queue("b")]
    objs += [pod(f"b{i}", "b", i, "n1", (b_annotations or {}).get(i)) for i in range(8)]
    objs += [pod(f"a{i}", "a", 12) for i in range(4)]
    return objs


def _plan(objs, **kw):
    import kaiwo_core as kc
    from kaiwo_core.scheduling.preemption import plan_preemptions

    decisions = kc.schedule(kc.Snapshot.from_objects(objs))
    return decisions, plan_preemptions(decisions, **kw)


@pytest.mark.parametrize("strategy, evicted", [("conservative", 2), ("aggressive", 4)])
def test_wrapper_reclaims_through_snapshot_and_decisions(strategy, evicted):
    decisions, plan = _plan(_objects(strategy))
    assert not decisions.bindings()
    entries = plan.preemptions()
    assert len(entries) == evicted
    # The youngest B pods go first (runtime ascending at equal priority).
    assert [e["pod"] for e in entries] == [f"ns/b{i}" for i in range(7, 7 - evicted, -1)]
    for e in entries:
        assert set(e) == {"pod", "reason", "preemptor", "node", "rule"}
        assert e["rule"] == f"reclaim-{strategy}" and e["node"] == "n1" and e["preemptor"].startswith("ns/a")
        assert "reclaimed by queue a" in e["reason"]
    reasons = plan.pending_reasons()
    assert len(reasons) == evicted and all("waits for them to terminate" in r for r in reasons.values())
    noms = plan.nominations()
    assert all(len(n["devices"]) == 1 and n["devices"][0]["fraction"] == 1.0 for n in noms)
    assert int(plan.allocated[decisions.tree.index["a"], 0]) == evicted * 1000
    assert not plan.warnings
    # The victims' devices are exactly the ones the preemptors are nominated for.
    running = decisions.snapshot.running
    victim_gpus = sorted(running[v].assignment[0]["gpu"] for v in plan.victims)
    assert sorted(n["devices"][0]["gpu"] for n in noms) == victim_gpus


def test_wrapper_respects_annotations_thresholds_and_min_runtime():
    # b7 and b6 (the youngest) are protected by the annotation: b5, b4 go instead.
    ann = {7: {"kaiwo.ai/preemptible": "false"}, 6: {"kaiwo.ai/preemptible": "False"}}
    _, plan = _plan(_objects("conservative", ann))
    assert [e["pod"] for e in plan.preemptions()] == ["ns/b5", "ns/b4"]
    _, plan = _plan(_objects("conservative", {7: {"kaiwo.ai/preemptible": "true"}}))
    assert [e["pod"] for e in plan.preemptions()] == ["ns/b7", "ns/b6"]
    # Priority at or above the threshold: nobody.
    from kaiwo_core.scheduling.preemption import PreemptionConfig
    _, plan = _plan(_objects("aggressive", b_priority=100), config=PreemptionConfig(nonpreemptible_priority=100))
    assert plan.preemptions() == []
    # reclaimMinRuntime: now = the newest creation (12:00); b0..b7 created at 00:00..07:00.
    _, plan = _plan(_objects("aggressive", rmr="6h"))
    assert [e["pod"] for e in plan.preemptions()] == ["ns/b6", "ns/b5", "ns/b4", "ns/b3"]
    # status.startTime, when known, is what counts: b0 started last (11:00), b7 first (00:00).
    _, plan = _plan(_objects("aggressive", rmr="6h", b_started=[11, 10, 9, 8, 3, 2, 1, 0]))
    assert [e["pod"] for e in plan.preemptions()] == ["ns/b4", "ns/b5", "ns/b6", "ns/b7"]
    # Disabled: nothing.
    _, plan = _plan(_objects("aggressive"), config=PreemptionConfig(enabled=False))
    assert plan.preemptions() == [] and plan.pending_reasons() == {}


def test_wrapper_check_resources_all_judges_only_what_the_pod_lacks():
    """check_resources="all" lets the rules see CPU and memory too, but they judge only the resources
    the pod lacks on the node: here GPUs, so A (no CPU quota) still reclaims its deserved GPUs
    conservatively (before issue 11's fix: nothing, A starved)."""
    from kaiwo_core.scheduling.preemption import PreemptionConfig
    _, plan = _plan(_objects("conservative"), config=PreemptionConfig(check_resources="all"))
    _, default = _plan(_objects("conservative"))
    assert [e["pod"] for e in plan.preemptions()] == [e["pod"] for e in default.preemptions()] == ["ns/b7", "ns/b6"]
    with pytest.raises(ValueError, match="check_resources"):
        PreemptionConfig(check_resources="gpu")


def test_wrapper_state_matches_the_kernel_view_of_the_placement():
    """state_after_placement rebuilds what place() left (a cycle with bindings and leftovers)."""
    import kaiwo_core as kc
    from kaiwo_core.scheduling.preemption import state_after_placement

    objs = _objects("aggressive")
    objs = [o for o in objs if not (o["kind"] == "Pod" and o["metadata"]["name"] in ("b6", "b7"))]
    snap = kc.Snapshot.from_objects(objs)
    decisions = kc.schedule(snap)
    assert len(decisions.bindings()) == 2
    state = snap.state.copy()
    kc.place(snap.cluster, state, decisions.placement.batch)
    rebuilt = state_after_placement(decisions)
    for k in STATE_KEYS:
        np.testing.assert_array_equal(getattr(rebuilt, k), getattr(state, k), err_msg=k)


def test_wrapper_cpu_only_pods_among_gpu_quotas_are_checked_in_cpu():
    """With GPU-only quotas ("quota" mode), a CPU-only pod requests none of the checked resources,
    so it is checked in all of them: A deserves no CPU, so it cannot reclaim CPU conservatively."""
    objs = _objects("conservative")
    for o in objs:
        if o["kind"] == "Node":
            o["status"]["allocatable"]["cpu"] = "16"
        if o["kind"] == "Pod":
            limits = o["spec"]["containers"][0]["resources"]["limits"]
            del limits["amd.com/gpu"]
    _, plan = _plan(objs)
    assert plan.preemptions() == []
    for o in objs:
        if o["kind"] == "KaiwoQueue":
            o["spec"]["fairness"]["reclaimStrategy"] = "aggressive"
    _, plan = _plan(objs)
    assert plan.preemptions() and {e["rule"] for e in plan.preemptions()} == {"reclaim-aggressive"}
