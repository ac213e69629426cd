"""Plain-Python references for the queue kernels (``csrc/fairshare.cpp``, ``csrc/ordering.cpp``).

Same role as :mod:`tests.naive`: the slow, obviously-correct versions that the tests compare with
``kaiwo_core._core.fair_share`` and ``kaiwo_core._core.order_pending`` on random trees (hypothesis)
and that the benchmarks time in the same run. They take and return the same dicts of numpy arrays.

These functions are the executable specification. Integers stay Python ints; every share is computed
with the same float operations in the same order as the C++ code (``float(a) / (float(c) * w)``,
children accumulated in index order), so exact ties resolve identically. Selection among siblings is
a plain ``min()`` over a key tuple that ends with the index, where the kernels keep keyed heaps.
"""
from __future__ import annotations

import numpy as np

PHASE_NONE, PHASE_DESERVED, PHASE_OVER_QUOTA = 0, 1, 2
ORDER_OK, ORDER_HELD_LIMIT = 0, 1


def _children(parent):
    """Children lists in index order; key -1 is the virtual root (top-level queues)."""
    kids = {q: [] for q in range(-1, len(parent))}
    for q, p in enumerate(parent):
        kids[p].append(q)
    return kids


def _path(parent, q):
    """q and its ancestors, leaf first."""
    out = []
    while q >= 0:
        out.append(q)
        q = parent[q]
    return out


# ------------------------------------------------------------------------------- fair shares

def fair_share_ref(tree, pods):
    """Reference of ``_core.fair_share(tree, pods)`` (semantics: ``csrc/fairshare.hpp``)."""
    parent = [int(x) for x in tree["parent"]]
    quota = tree["quota"].tolist()
    limit = tree["limit"].tolist()
    weight = tree["weight"].tolist()
    prio = [int(x) for x in tree["priority"]]
    cap = [int(x) for x in tree["capacity"]]
    start = [int(x) for x in pods["pod_start"]]
    req = pods["req"].tolist()
    Q, P = len(parent), len(req)
    R = tree["limit"].shape[1]  # gpu milli, cpu milli, memory MiB, then any further columns
    kids = _children(parent)
    leaf = [not kids[q] for q in range(Q)]

    # 1. demand
    demand = [[0] * R for _ in range(Q)]
    for q in range(Q):
        for p in range(start[q], start[q + 1]):
            for r in range(R):
                demand[q][r] += req[p][r]
    for q in reversed(range(Q)):
        if parent[q] >= 0:
            for r in range(R):
                demand[parent[q]][r] += demand[q][r]

    # 2. deserved, top-down
    des = [[0] * R for _ in range(Q)]
    for q in range(Q):
        for r in range(R):
            d = demand[q][r] if quota[q][r] == -1 else min(quota[q][r], demand[q][r])
            if limit[q][r] != -1:
                d = min(d, limit[q][r])
            if parent[q] >= 0:
                d = min(d, des[parent[q]][r])
            des[q][r] = d

    alloc = [[0] * R for _ in range(Q)]
    total = [0] * R
    nxt = start[:Q]
    admitted = [0] * P
    phase = [PHASE_NONE] * P

    def admit(q, p, ph):
        for r in range(R):
            total[r] += req[p][r]
        for a in _path(parent, q):
            for r in range(R):
                alloc[a][r] += req[p][r]
        admitted[p] = 1
        phase[p] = ph
        nxt[q] += 1

    # 3. phase 1: within deserved
    for q in range(Q):
        if not leaf[q]:
            continue
        while nxt[q] < start[q + 1]:
            p = nxt[q]
            fits = all(total[r] + req[p][r] <= cap[r] for r in range(R)) and all(
                alloc[a][r] + req[p][r] <= des[a][r] for a in _path(parent, q) for r in range(R))
            if not fits:
                break
            admit(q, p, PHASE_DESERVED)

    # 4. phase 2: dynamic H-DRF over over-quota usage; what queues still deserve is held back
    def reservations(extra_leaf=None, x=None):
        """Sum over the top-level queues of what queues still deserve and may take
        (csrc/fairshare.cpp), with leaf `extra_leaf` charged `x`: per queue, `within` is its
        allocation within deserved (a leaf min(alloc, deserved), internal min(deserved, sum of the
        children's)) and `rsv` (a leaf deserved - within; internal min(deserved - sum of the
        children's within, sum of the children's rsv))."""
        al = [row[:] for row in alloc]
        if extra_leaf is not None:
            for a in _path(parent, extra_leaf):
                for r in range(R):
                    al[a][r] += x[r]
        within = [[0] * R for _ in range(Q)]
        rsv = [[0] * R for _ in range(Q)]
        for q in reversed(range(Q)):
            for r in range(R):
                if leaf[q]:
                    within[q][r] = min(al[q][r], des[q][r])
                    rsv[q][r] = des[q][r] - within[q][r]
                else:
                    k_in = sum(within[c][r] for c in kids[q])
                    within[q][r] = min(des[q][r], k_in)
                    rsv[q][r] = min(max(0, des[q][r] - k_in), sum(rsv[c][r] for c in kids[q]))
        return [sum(rsv[q][r] for q in kids[-1]) for r in range(R)]

    sat = set()
    vec = [[0.0] * R for _ in range(Q)]
    g = [0.0] * Q
    blocked = [False] * Q
    for q in reversed(range(Q)):
        blocked[q] = nxt[q] == start[q + 1] if leaf[q] else all(blocked[c] for c in kids[q])

    def share(v, q):
        s = 0.0
        for r in range(R):
            if r in sat or cap[r] <= 0:
                continue
            x = v[r] / (float(cap[r]) * weight[q][r])
            if x > s:
                s = x
        return s

    def recompute(q):
        if leaf[q]:
            v = [float(max(0, alloc[q][r] - des[q][r])) for r in range(R)]
        else:
            nb = [c for c in kids[q] if not blocked[c] and g[c] > 0.0]
            m = min((g[c] for c in nb), default=None)
            v = [0.0] * R
            for c in kids[q]:
                if c in nb:
                    f = m / g[c]
                    for r in range(R):
                        v[r] += vec[c][r] * f
                else:
                    for r in range(R):
                        v[r] += vec[c][r]
            for r in range(R):  # parent-level charging: children's within-quota use above its deserved
                hidden = sum(min(alloc[c][r], des[c][r]) for c in kids[q]) - des[q][r]
                if hidden > 0:
                    v[r] += float(hidden)
        vec[q] = v
        g[q] = share(v, q)

    deferred = [False] * Q  # blocked by a reservation only (fits capacity and limits)

    def run_phase2(reserving):
        while True:
            cands = [c for c in kids[-1] if not blocked[c]]
            if not cands:
                break
            n = min(cands, key=lambda c: (-prio[c], g[c], c))
            while not leaf[n]:
                n = min((c for c in kids[n] if not blocked[c]), key=lambda c: (-prio[c], g[c], c))
            p = nxt[n]
            over = {r for r in range(R) if total[r] + req[p][r] > cap[r]}
            fits = not over and all(limit[a][r] == -1 or alloc[a][r] + req[p][r] <= limit[a][r]
                                    for a in _path(parent, n) for r in range(R))
            reserved = False
            if reserving:
                held, after = reservations(), reservations(n, req[p])
                reserved = any(req[p][r] + after[r] - held[r] > 0 and total[r] + req[p][r] + after[r] > cap[r]
                               for r in range(R))
            deferred[n] = fits and reserved
            fits = fits and not reserved
            if fits:
                admit(n, p, PHASE_OVER_QUOTA)
            if not fits or nxt[n] == start[n + 1]:
                blocked[n] = True
            for a in _path(parent, n):  # leaf first: shares and blocked status up the path
                if not leaf[a]:
                    blocked[a] = all(blocked[c] for c in kids[a])
                recompute(a)
            if not over <= sat:
                sat.update(over)
                for q in reversed(range(Q)):
                    recompute(q)

    for q in reversed(range(Q)):
        recompute(q)
    # Two passes (csrc/fairshare.hpp, 4.): reservations held, then released for the leaves they
    # alone blocked.
    run_phase2(True)
    if any(deferred):
        for q in reversed(range(Q)):
            if leaf[q]:
                blocked[q] = nxt[q] == start[q + 1] or (blocked[q] and not deferred[q])
            else:
                blocked[q] = all(blocked[c] for c in kids[q])
        for q in reversed(range(Q)):
            recompute(q)
        run_phase2(False)

    fair = [row[:] for row in alloc]  # 5. the virtual allocation itself (csrc/fairshare.hpp)

    def mat(x):
        return np.array(x, dtype=np.int64).reshape(Q, R)

    return {"demand": mat(demand), "deserved": mat(des), "fair_share": mat(fair),
            "allocated": mat(alloc), "admitted": np.array(admitted, dtype=np.uint8),
            "phase": np.array(phase, dtype=np.int8)}


# ---------------------------------------------------------------------------------- ordering

def queue_units_ref(pods, q):
    """Units of leaf ``q`` in pop order: lists of pod indices (a gang's members together)."""
    start, key, tb, gang = pods["pod_start"], pods["key"], pods["tiebreak"], pods["gang"]
    members = sorted(range(int(start[q]), int(start[q + 1])),
                     key=lambda p: (float(key[p]), int(tb[p]), p))
    units, by_gang = [], {}
    for p in members:
        gid = int(gang[p])
        if gid < 0:
            units.append([p])
        elif gid in by_gang:
            by_gang[gid].append(p)
        else:
            by_gang[gid] = [p]
            units.append(by_gang[gid])
    return units


def order_pending_ref(tree, state, pods):
    """Reference of ``_core.order_pending(tree, state, pods)`` (semantics: ``csrc/ordering.hpp``)."""
    parent = [int(x) for x in tree["parent"]]
    limit = tree["limit"].tolist()
    prio = [int(x) for x in tree["priority"]]
    des = tree["deserved"].tolist()
    fair = tree["fair_share"].tolist()
    req = pods["req"].tolist()
    Q, P = len(parent), len(req)
    R = tree["limit"].shape[1]
    kids = _children(parent)
    leaf = [not kids[q] for q in range(Q)]

    # Allocated: leaf rows as given, internal = sum of children.
    given = state["allocated"].tolist()
    alloc = [list(given[q]) if leaf[q] else [0] * R for q in range(Q)]
    for q in reversed(range(Q)):
        if parent[q] >= 0:
            for r in range(R):
                alloc[parent[q]][r] += alloc[q][r]

    units = {q: queue_units_ref(pods, q) for q in range(Q) if leaf[q]}
    pending = [0] * Q
    for q in reversed(range(Q)):
        if leaf[q]:
            pending[q] += len(units[q])
        if parent[q] >= 0:
            pending[parent[q]] += pending[q]

    capacity = tree["capacity"].tolist() if "capacity" in tree else None

    def saturated(r):
        total = sum(alloc[q][r] for q in range(Q) if parent[q] < 0)
        return capacity is not None and total >= capacity[r]

    # Requests of the units still pending in each subtree.
    asked_v = [[0] * R for _ in range(Q)]
    for q in range(Q):
        if leaf[q]:
            for unit in units[q]:
                for p in unit:
                    for a in _path(parent, q):
                        for r in range(R):
                            asked_v[a][r] += req[p][r]

    def asked(q, r):
        return asked_v[q][r]

    def sort_key(q):
        share = 0.0
        judged = [alloc[q][r] < des[q][r] for r in range(R) if des[q][r] > 0 and asked(q, r) > 0]
        cls = 0 if judged and all(judged) else 1
        for r in range(R):
            if saturated(r) or asked(q, r) == 0:
                continue
            if fair[q][r] > 0:
                x = float(alloc[q][r]) / float(fair[q][r])
                if x > share:
                    share = x
            elif alloc[q][r] > 0:
                share = float("inf")
        return (cls, -prio[q], share, q)

    order, status = [], [ORDER_OK] * P
    while True:
        cands = [c for c in kids[-1] if pending[c] > 0]
        if not cands:
            break
        n = min(cands, key=sort_key)
        while not leaf[n]:
            n = min((c for c in kids[n] if pending[c] > 0), key=sort_key)
        unit = units[n][len(units[n]) - pending[n]]
        need = [sum(req[p][r] for p in unit) for r in range(R)]
        held = any(limit[a][r] != -1 and need[r] > 0 and alloc[a][r] + need[r] > limit[a][r]
                   for a in _path(parent, n) for r in range(R))
        for a in _path(parent, n):
            pending[a] -= 1
            for r in range(R):
                asked_v[a][r] -= need[r]
            if not held:
                for r in range(R):
                    alloc[a][r] += need[r]
        if held:
            for p in unit:
                status[p] = ORDER_HELD_LIMIT
        else:
            order.extend(unit)
    return {"order": np.array(order, dtype=np.int64), "status": np.array(status, dtype=np.int8)}
