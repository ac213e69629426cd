"""Plain-Python reference of the rebalancing planner (`_core.plan_rebalance`, csrc/rebalance.hpp).

Written from the specification in csrc/rebalance.hpp, sharing no code with the kernel: fits come
from tests/naive.py's `place_batch_ref` (the placement reference), and every trial works on a deep
copy of the whole world that is simply dropped when the trial fails -- slow and obviously right.
Same inputs (the four dicts), same outputs (the kernel's dict, as lists).
"""
from __future__ import annotations

import copy

import numpy as np

from tests.naive import MAX_WORKLOAD, frag_F_ref, place_batch_ref

BINPACK, NO_GPU, WHOLE, XCD = 0, 0, 1, 3
IDLE, SHARED, EXCLUSIVE = 0, 1, 2
MUTABLE = ("node_cpu_free", "node_mem_free", "node_pods_free", "dev_milli_free", "dev_mem_free",
           "dev_xcd_free", "dev_state")
KEYS = ("cpu", "mem", "kind", "count", "milli", "gpu_mem", "exclusive", "cls")
CONSOLIDATION, HOT_SPOT, DEFRAGMENTATION = 0, 1, 2
MAX_TRIALS = 4  # nodes tried per member


class World:
    """Everything a trial may change."""

    def __init__(self, cluster, R, P, Q, B):
        self.c = {k: np.array(v, copy=True) for k, v in cluster.items()}
        self.hold = [[] for _ in range(len(self.c["dev_gpu"]))]   # per device: dicts
        self.loc = [-1] * (R + P)
        self.charges = [[] for _ in range(R + P)]
        self.moved = [False] * R
        self.moves_used = 0
        self.qmoves = [0] * (Q + 1)
        self.qused = [[0, 0, 0] for _ in range(Q)]
        self.pdb_used = [0] * B
        self.moves = []       # (pod, from, to, reason, unit, charges)


def plan_rebalance_ref(cluster, running, pending, config):
    run = {k: np.asarray(v).tolist() for k, v in running.items()}
    pend = {k: np.asarray(v).tolist() for k, v in pending.items()}
    cfg = {k: np.asarray(v).tolist() for k, v in config.items()}
    R, P = len(run["cpu"]), len(pend["cpu"])
    Q, B = len(cfg["parent"]), len(cfg["pdb_allowed"])
    N = len(cluster["node_cpu_free"])
    dev_start = np.asarray(cluster["node_dev_start"]).tolist()
    max_moves, per_queue, max_units = cfg["max_moves"][0], cfg["max_moves_per_queue"][0], cfg["max_units"][0]
    load = cfg.get("load")
    thr = cfg["hot_threshold"][0]
    mem_cap = np.asarray(cluster["dev_mem_cap"]).tolist()
    xmask = np.asarray(cluster["dev_xcd_mask"]).tolist()
    cpu_cap = np.asarray(cluster["node_cpu_cap"]).tolist()

    def src(h):
        return (run, h) if h < R else (pend, h - R)

    def path(q):
        while q >= 0:
            yield q
            q = cfg["parent"][q]

    w = World(cluster, R, P, Q, B)
    for v in range(R):
        w.loc[v] = run["node"][v]
        excl = run["kind"][v] == WHOLE or (run["kind"][v] != NO_GPU and run["exclusive"][v] == 1)
        for k in range(run["asg_start"][v], run["asg_start"][v + 1]):
            ch = (run["asg_dev"][k], run["asg_milli"][k], run["asg_mem"][k], run["asg_xcds"][k])
            w.hold[ch[0]].append({"h": v, "milli": ch[1], "mem": ch[2], "xcds": ch[3],
                                  "claims": run["xcd"][v] == 1, "excl": excl})
            w.charges[v].append(ch)

    def allowed(w, v):
        if not run["movable"][v] or w.moved[v] or w.loc[v] < 0 or w.moves_used + 1 > max_moves:
            return False
        q = run["queue"][v]
        if w.qmoves[Q if q < 0 else q] + 1 > per_queue:
            return False
        for a in path(q):
            for r in range(3):
                need = run["req"][v][r]
                if need > 0 and cfg["slack"][a][r] - w.qused[a][r] - need < 0:
                    return False
        return all(w.pdb_used[b] + 1 <= cfg["pdb_allowed"][b]
                   for b in run["pdb"][run["pdb_start"][v]:run["pdb_start"][v + 1]])

    def spend(w, v):
        w.moves_used += 1
        w.moved[v] = True
        q = run["queue"][v]
        w.qmoves[Q if q < 0 else q] += 1
        for a in path(q):
            for r in range(3):
                w.qused[a][r] += run["req"][v][r]
        for b in run["pdb"][run["pdb_start"][v]:run["pdb_start"][v + 1]]:
            w.pdb_used[b] += 1

    def release(w, h):
        b, i = src(h)
        n, c = w.loc[h], w.c
        c["node_cpu_free"][n] += b["cpu"][i]
        c["node_mem_free"][n] += b["mem"][i]
        c["node_pods_free"][n] += 1
        for d, milli, mem, xcds in w.charges[h]:
            mine = next(x for x in w.hold[d] if x["h"] == h)
            w.hold[d].remove(mine)
            if not w.hold[d]:
                c["dev_milli_free"][d], c["dev_mem_free"][d] = 1000, mem_cap[d]
                c["dev_xcd_free"][d], c["dev_state"][d] = xmask[d], IDLE
                continue
            c["dev_milli_free"][d] = min(1000, int(c["dev_milli_free"][d]) + milli)
            c["dev_mem_free"][d] = min(mem_cap[d], int(c["dev_mem_free"][d]) + mem)
            if mine["claims"]:
                still = 0
                for x in w.hold[d]:
                    if x["claims"]:
                        still |= x["xcds"]
                c["dev_xcd_free"][d] = (int(c["dev_xcd_free"][d]) | xcds) & ~still & xmask[d]
            if mine["excl"]:
                c["dev_state"][d] = SHARED
        w.loc[h] = -1
        w.charges[h] = []

    def adopt(w, h, n, devs):
        b, i = src(h)
        w.loc[h] = n
        w.charges[h] = list(devs)
        excl = b["kind"][i] == WHOLE or (b["kind"][i] != NO_GPU and b["exclusive"][i] == 1)
        claims = b["kind"][i] == XCD and b["exclusive"][i] == 0
        for d, milli, mem, xcds in devs:
            w.hold[d].append({"h": h, "milli": milli, "mem": mem, "xcds": xcds, "claims": claims, "excl": excl})

    def one_row(h, mask_row):
        b, i = src(h)
        out = {k: np.array([b[k][i]], dtype=np.asarray(running[k] if h < R else pending[k]).dtype) for k in KEYS}
        out["cls"] = np.zeros(1, np.int32)
        out["class_mask"] = np.array([mask_row], np.uint8)
        return out

    def place_all(w, h, mask_row):
        res = place_batch_ref(w.c, one_row(h, mask_row), BINPACK)
        n = int(res["node"][0])
        if n < 0:
            return False
        adopt(w, h, n, [(int(res["asg_dev"][k]), int(res["asg_milli"][k]), int(res["asg_mem"][k]),
                         int(res["asg_xcds"][k])) for k in range(int(res["asg_start"][0]), int(res["asg_start"][1]))])
        return True

    def place_on(w, h, n):
        """h on node n alone: a one-node cluster of copies, written back."""
        d0, d1 = dev_start[n], dev_start[n + 1]
        one = {k: np.array(np.asarray(cluster[k])[n:n + 1]) for k in ("node_cpu_cap", "node_mem_cap")}
        for k in ("node_cpu_free", "node_mem_free", "node_pods_free"):
            one[k] = np.array(w.c[k][n:n + 1])
        for k in ("dev_gpu", "dev_mem_cap", "dev_xcd_mask", "dev_xcds_per_domain"):
            one[k] = np.array(np.asarray(cluster[k])[d0:d1])
        for k in ("dev_milli_free", "dev_mem_free", "dev_xcd_free", "dev_state"):
            one[k] = np.array(w.c[k][d0:d1])
        one["node_dev_start"] = np.array([0, d1 - d0], np.int64)
        res = place_batch_ref(one, one_row(h, [1]), BINPACK)
        if res["node"][0] < 0:
            return False
        for k in ("node_cpu_free", "node_mem_free", "node_pods_free"):
            w.c[k][n] = one[k][0]
        for k in ("dev_milli_free", "dev_mem_free", "dev_xcd_free", "dev_state"):
            w.c[k][d0:d1] = one[k]
        adopt(w, h, n, [(int(res["asg_dev"][k]) + d0, int(res["asg_milli"][k]), int(res["asg_mem"][k]),
                         int(res["asg_xcds"][k])) for k in range(int(res["asg_start"][0]), int(res["asg_start"][1]))])
        return True

    def candidates(w, n):
        vs = [v for v in range(R) if w.loc[v] == n and run["movable"][v] and not w.moved[v]]
        return sorted(vs, key=lambda v: (-sum(ch[1] for ch in w.charges[v]), -run["cpu"][v], v))

    def class_row(b, i):
        return list(b["class_mask"][b["cls"][i]])

    def evictions(w, h, n, limit, cand):
        b, i = src(h)
        if not cand:
            return None
        if (w.c["node_cpu_free"][n] + sum(run["cpu"][v] for v in cand) < b["cpu"][i]
                or w.c["node_mem_free"][n] + sum(run["mem"][v] for v in cand) < b["mem"][i]
                or w.c["node_pods_free"][n] + len(cand) < 1):
            return None
        t = copy.deepcopy(w)
        out = []
        for v in cand:
            if len(out) >= limit:
                break
            if not allowed(t, v):
                continue
            spend(t, v)
            release(t, v)
            out.append(v)
            if place_on(copy.deepcopy(t), h, n):
                return out
        return None

    def room_for_member(w, m, unit, cand_by_node):
        h = R + m
        row = class_row(pend, m)
        t = copy.deepcopy(w)
        if place_all(t, h, row):
            return t
        best = max_moves - w.moves_used
        order = []
        for n in range(N):
            if not row[n]:
                continue
            ev = evictions(w, h, n, best, cand_by_node[n])
            if ev is not None:
                order.append((len(ev), n, ev))
                best = min(best, len(ev))
        for _, n, ev in sorted(order, key=lambda x: (x[0], x[1]))[:MAX_TRIALS]:
            t = copy.deepcopy(w)
            for v in ev:
                spend(t, v)
                release(t, v)
            ok = place_on(t, h, n)
            for v in ev:
                if not ok:
                    break
                vrow = class_row(run, v)
                vrow[n] = 0
                ok = place_all(t, v, vrow)
            if ok:
                for v in ev:
                    t.moves.append((v, n, t.loc[v], CONSOLIDATION, unit, list(t.charges[v])))
                return t
        return None

    def typical_workload():
        """Distinct shapes of the running then pending rows, most frequent first, as frag_F_ref
        takes them (every node allowed)."""
        counts, keys = {}, []
        for b, rows in ((run, range(R)), (pend, range(P))):
            for i in rows:
                gpu = b["kind"][i] != NO_GPU
                key = (b["cpu"][i], b["kind"][i]) + tuple(b[f][i] if gpu else 0
                                                          for f in ("count", "milli", "gpu_mem", "exclusive"))
                if key not in counts:
                    counts[key] = 0
                    keys.append(key)
                counts[key] += 1
        ranked = sorted(keys, key=lambda k: -counts[k])[:MAX_WORKLOAD]   # stable: first appearance
        return [(k[0], None if k[1] == NO_GPU else k[1:], -1, float(counts[k]) / float(R + P)) for k in ranked]

    def defragment(w, gain_needed, hot):
        wl = typical_workload()

        def F(world, n):
            return frag_F_ref(world.c, None, n, int(world.c["node_cpu_free"][n]), wl)

        frag = [F(w, n) for n in range(N)]
        before = 0.0
        for f in frag:
            before += f
        while w.moves_used < max_moves:
            best, pick = 0.0, None
            for v in range(R):
                if not allowed(w, v):
                    continue
                s = w.loc[v]
                t = copy.deepcopy(w)
                spend(t, v)
                release(t, v)
                fs = F(t, s)
                row = class_row(run, v)
                for n in range(N):
                    if n == s or not row[n] or n in hot:
                        continue
                    u = copy.deepcopy(t)
                    if place_on(u, v, n):
                        gain = (frag[s] - fs) + (frag[n] - F(u, n))
                        if gain > best:
                            best, pick = gain, (v, s, n, u)
            if pick is None or best < gain_needed:
                break
            v, s, n, w = pick
            w.moves.append((v, s, n, DEFRAGMENTATION, -1, list(w.charges[v])))
            frag[s], frag[n] = F(w, s), F(w, n)
        after = 0.0
        for f in frag:
            after += f
        return w, before, after

    unlocked, fits_now = [], []
    tried = blocked = 0
    no_room = set()
    cand_by_node = [candidates(w, n) for n in range(N)]
    p = 0
    gang = pend.get("gang")
    while p < P and tried < max_units:
        last = p
        g = gang[p] if gang else -1
        if g >= 0:
            while last + 1 < P and gang[last + 1] == g:
                last += 1
        need = max(pend["gang_need"][p] if g >= 0 else 1, 1)
        tried += 1
        batch = {k: np.asarray(pending[k])[p:last + 1] for k in KEYS}
        batch["class_mask"] = np.asarray(pending["class_mask"])
        if gang:
            batch["gang"] = np.asarray(pending["gang"])[p:last + 1]
            batch["gang_need"] = np.asarray(pending["gang_need"])[p:last + 1]
        t = copy.deepcopy(w)
        res = place_batch_ref(t.c, batch, BINPACK)
        if (res["node"] >= 0).any():
            for i in range(last - p + 1):
                if res["node"][i] >= 0:
                    adopt(t, R + p + i, int(res["node"][i]),
                          [(int(res["asg_dev"][k]), int(res["asg_milli"][k]), int(res["asg_mem"][k]),
                            int(res["asg_xcds"][k])) for k in range(int(res["asg_start"][i]), int(res["asg_start"][i + 1]))])
                    fits_now.append(p + i)
            w = t
            p = last + 1
            continue
        blocked += 1
        key = tuple(pend[k][p] for k in KEYS)
        single = last == p
        if w.moves_used < max_moves and not (single and key in no_room):
            t = copy.deepcopy(w)
            before = len(t.moves)
            placed = 0
            for m in range(p, last + 1):
                got = room_for_member(t, m, p, cand_by_node)
                if got is not None:
                    t = got
                    placed += 1
            if placed >= need:
                w = t
                members = [m for m in range(p, last + 1) if w.loc[R + m] >= 0]
                (unlocked if len(w.moves) > before else fits_now).extend(members)
                cand_by_node = [candidates(w, n) for n in range(N)]
                no_room.clear()
            elif single:
                no_room.add(key)
        p = last + 1

    hot = [] if load is None else sorted((n for n in range(N) if load[n] > thr), key=lambda n: (-load[n], n))
    frag_before = frag_after = 0.0
    gain_needed = cfg.get("defrag_min_gain")
    if gain_needed is not None:
        w, frag_before, frag_after = defragment(w, gain_needed[0], set(hot))

    hot_nodes = 0
    if load is not None:
        hot_nodes = len(hot)
        for n in hot:
            gpu = sum(x["milli"] for d in range(dev_start[n], dev_start[n + 1]) for x in w.hold[d])
            cpu = cpu_cap[n] - int(w.c["node_cpu_free"][n])
            by_gpu = gpu > 0
            base = float(gpu if by_gpu else cpu)
            if base <= 0.0:
                continue
            est = load[n]
            for v in candidates(w, n):
                if est <= thr:
                    break
                if not allowed(w, v):
                    continue
                share = sum(ch[1] for ch in w.charges[v]) if by_gpu else run["cpu"][v]
                if share == 0:
                    continue
                t = copy.deepcopy(w)
                spend(t, v)
                release(t, v)
                vrow = [int(a and load[k] <= thr) for k, a in enumerate(class_row(run, v))]
                if not place_all(t, v, vrow):
                    continue
                t.moves.append((v, n, t.loc[v], HOT_SPOT, -1, list(t.charges[v])))
                w = t
                est -= load[n] * share / base

    asg_start, devs = [0], []
    for mv in w.moves:
        devs += mv[5]
        asg_start.append(len(devs))
    return {"pod": [m[0] for m in w.moves], "from": [m[1] for m in w.moves], "to": [m[2] for m in w.moves],
            "reason": [m[3] for m in w.moves], "unit": [m[4] for m in w.moves], "asg_start": asg_start,
            "asg_dev": [d[0] for d in devs], "asg_milli": [d[1] for d in devs], "asg_mem": [d[2] for d in devs],
            "asg_xcds": [d[3] for d in devs], "unlocked": unlocked, "fits_now": fits_now,
            "units_tried": tried, "units_blocked": blocked, "hot_nodes": hot_nodes,
            "frag_before": frag_before, "frag_after": frag_after}
