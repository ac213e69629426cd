"""Plain-Python reference of the reclaim/preemption kernel ``_core.plan_preemptions`` (csrc/preempt.cpp).

Same role as :mod:`tests.naive` and :mod:`tests.naive_queues`: the slow, obviously-correct version
that tests compare with the compiled kernel on random inputs and that benchmarks time in the same
run. Same dict-of-arrays inputs, same outputs.

Every "does the pod fit on node n once these victims are gone" question is answered by the
placement reference itself on a one-node cluster built from the node's freed state, with a 1x1 class
mask: ``tests.naive._node_reason``, the per-node check ``place_batch_ref`` runs for every node (called
directly only to skip converting to numpy and back); the preemptor is then placed by
``place_batch_ref`` itself, which gives its devices. The rules
(see csrc/preempt.hpp) are written out as directly as possible: the queue checks walk the tree with
plain lists, the greedy and the drop loops follow the wording of the rules, and node choice is a
``min`` over (victims, sum of victim priorities, node). A gang (optional ``gang`` / ``gang_need``)
is a transaction: the whole state is deep-copied before its first member and put back if fewer
than ``gang_need`` of its members got a node.

One pruning step is kept because without it the reference takes minutes on benchmark inputs: a node
where the pod does not fit even with every eligible victim gone is skipped (fit is monotone in freed
capacity). ``prune=False`` turns it off; the tests check that it changes nothing.
"""
from __future__ import annotations

import copy

import numpy as np

from tests.naive import _node_reason, place_batch_ref

R = 3
RULE_WITHIN, RULE_CONSERVATIVE, RULE_AGGRESSIVE = 0, 1, 2
AGGRESSIVE, CONSERVATIVE = 0, 1
IDLE, SHARED, EXCLUSIVE = 0, 1, 2
KIND_NONE = 0
FULL_MILLI = 1000
STATE_KEYS = ("node_cpu_free", "node_mem_free", "node_pods_free", "dev_milli_free", "dev_mem_free",
              "dev_xcd_free", "dev_state")
STATE_DTYPES = {"node_cpu_free": np.int64, "node_mem_free": np.int64, "node_pods_free": np.int64,
                "dev_milli_free": np.int64, "dev_mem_free": np.int64, "dev_xcd_free": np.uint32,
                "dev_state": np.int8}
BATCH_KEYS = ("cpu", "mem", "kind", "count", "milli", "gpu_mem", "exclusive")


def _path(parent, q):
    """q and its ancestors, leaf first."""
    out = []
    while q >= 0:
        out.append(q)
        q = parent[q]
    return out


def _lca(parent, a, b):
    """Lowest common ancestor of two queues, -1 (the virtual root) if none."""
    up = set(_path(parent, a))
    for x in _path(parent, b):
        if x in up:
            return x
    return -1


def _below(parent, q, top):
    """q's path strictly below `top` (-1 = the whole path)."""
    out = []
    while q != top and q >= 0:
        out.append(q)
        q = parent[q]
    return out


def lacking(one, pod):
    """Resources the one-pod batch `pod` lacks on the one-node cluster `one` (dicts of lists): its
    devices do not fit the free ones (CPU, memory and pod slots aside), its CPU or memory exceeds
    what is free; every resource if none (only a pod slot is missing). What reclaim is judged on."""
    out = set()
    if pod["kind"][0] != KIND_NONE:
        big = dict(one, node_cpu_free=[2**63 - 1], node_mem_free=[2**63 - 1], node_pods_free=[1])
        if _node_reason(big, pod, 0, 0)[0] is not None:
            out.add(0)
    if pod["cpu"][0] > one["node_cpu_free"][0]:
        out.add(1)
    if pod["mem"][0] > one["node_mem_free"][0]:
        out.add(2)
    return out or {0, 1, 2}


def subtree_allocated(parent, allocated):
    """Leaf rows summed up the tree (internal rows as given are zero or already these sums)."""
    leaf = [True] * len(parent)
    for p in parent:
        if p >= 0:
            leaf[p] = False
    out = [[a if leaf[q] else 0 for a in allocated[q]] for q in range(len(parent))]
    for q in reversed(range(len(parent))):
        if parent[q] >= 0:
            for r in range(len(out[q])):
                out[parent[q]][r] += out[q][r]
    return out


class _Plan:
    def __init__(self, cluster, running, pending, queues):
        self.c = {k: np.asarray(v).tolist() for k, v in cluster.items()}
        self.cluster_np = cluster
        self.run = {k: np.asarray(v).tolist() for k, v in running.items()}
        self.pend = {k: (None if v is None else np.asarray(v).tolist()) for k, v in pending.items()}
        q = {k: np.asarray(v).tolist() for k, v in queues.items()}
        self.parent = q["parent"]
        self.deserved, self.fair = q["deserved"], q["fair_share"]
        self.strategy = q["strategy"]
        self.pmr, self.rmr = q["preempt_min_runtime"], q["reclaim_min_runtime"]
        self.checked = {r for r in range(R) if q.get("checked") is None or q["checked"][r]}
        self.alloc = subtree_allocated(self.parent, q["allocated"])
        #: resource columns: gpu, cpu, memory, then GPU models; node_res[n] = model column of node n
        self.R = len(self.deserved[0]) if self.deserved else R
        self.node_res = q.get("node_res") or [-1] * len(self.c["node_cpu_free"])
        run = self.run
        V = len(run["node"])
        self.hold = [0] * len(self.c["dev_gpu"])
        self.devs_of = []
        for v in range(V):
            ks = range(run["asg_start"][v], run["asg_start"][v + 1])
            self.devs_of.append([(run["asg_dev"][k], run["asg_milli"][k], run["asg_mem"][k],
                                  run["asg_xcds"][k]) for k in ks])
            for k in ks:
                self.hold[run["asg_dev"][k]] += 1
        self.alive = [run["preemptible"][v] == 1 and run["queue"][v] >= 0 for v in range(V)]
        self.evicted = set()
        self.claims = {}  # device -> [(row, XCDs)] of rows whose XCDs are claimed (`xcd` = 1)
        for v in range(V):
            if run["xcd"][v]:
                for d, _, _, x in self.devs_of[v]:
                    self.claims.setdefault(d, []).append((v, x))
        self.on_node = [[] for _ in self.c["node_cpu_free"]]
        for v in sorted(range(V), key=lambda v: (run["priority"][v], run["runtime"][v], v)):
            self.on_node[run["node"][v]].append(v)

    # ------------------------------------------------------------------ tentative node state
    def freed(self, n, victims):
        """One-node cluster dict (lists) of node n with `victims` gone (a function of the set)."""
        c, run = self.c, self.run
        d0, d1 = c["node_dev_start"][n], c["node_dev_start"][n + 1]
        one = {
            "node_cpu_free": [c["node_cpu_free"][n] + sum(run["cpu"][v] for v in victims)],
            "node_mem_free": [c["node_mem_free"][n] + sum(run["mem"][v] for v in victims)],
            "node_pods_free": [c["node_pods_free"][n] + len(victims)],
            "node_cpu_cap": [c["node_cpu_cap"][n]], "node_mem_cap": [c["node_mem_cap"][n]],
            "node_dev_start": [0, d1 - d0],
        }
        for k in ("dev_gpu", "dev_mem_cap", "dev_xcd_mask", "dev_xcds_per_domain", "dev_milli_free",
                  "dev_mem_free", "dev_xcd_free", "dev_state"):
            one[k] = list(c[k][d0:d1])
        for i, d in enumerate(range(d0, d1)):
            holders = [(v, m, mem, x) for v in victims for (dd, m, mem, x) in self.devs_of[v] if dd == d]
            if not holders:
                continue
            if self.hold[d] - len(holders) <= 0:  # nobody left on it: idle, entirely free
                one["dev_milli_free"][i] = FULL_MILLI
                one["dev_mem_free"][i] = c["dev_mem_cap"][d]
                one["dev_xcd_free"][i] = c["dev_xcd_mask"][d]
                one["dev_state"][i] = IDLE
                continue
            one["dev_milli_free"][i] = min(FULL_MILLI, c["dev_milli_free"][d] + sum(h[1] for h in holders))
            one["dev_mem_free"][i] = min(c["dev_mem_cap"][d], c["dev_mem_free"][d] + sum(h[2] for h in holders))
            xcds = c["dev_xcd_free"][d]
            for v, _, _, x in holders:
                if run["xcd"][v]:
                    xcds |= x
            still = 0  # claimed by a claimer that stays (time-sliced CU masks may overlap)
            for h, x in self.claims.get(d, ()):
                if h not in victims and h not in self.evicted:
                    still |= x
            one["dev_xcd_free"][i] = xcds & ~still & c["dev_xcd_mask"][d]
            if any(run["exclusive"][v] for v, _, _, _ in holders):
                one["dev_state"][i] = SHARED
        return one

    def one_pod(self, p, n):
        """Pod p as a one-pod batch for node n: its class's access to the node's device reservations."""
        b = self.pend
        out = {k: [b[k][p]] for k in BATCH_KEYS}
        out["cls"], out["class_mask"] = [0], [[1]]
        if b.get("dev_resv") is not None:
            d0, d1 = self.c["node_dev_start"][n], self.c["node_dev_start"][n + 1]
            out["dev_resv"], out["dev_resv_xcds"] = b["dev_resv"][d0:d1], b["dev_resv_xcds"][d0:d1]
            out["class_resv"] = [b["class_resv"][b["cls"][p]]]
        return out

    def fits(self, p, n, victims):
        """Placement's node check (reason None) of pod p alone on node n's freed state."""
        return _node_reason(self.freed(n, victims), self.one_pod(p, n), 0, 0)[0] is None

    def place_one(self, p, n, victims):
        """place_batch_ref of pod p alone on node n's freed state: (placed, result, one-node cluster)."""
        dtypes = {"dev_gpu": np.int32, "dev_mem_cap": np.int64, "dev_xcd_mask": np.uint32,
                  "dev_xcds_per_domain": np.int32, "node_cpu_cap": np.int64, "node_mem_cap": np.int64,
                  "node_dev_start": np.int64, **STATE_DTYPES}
        one = {k: np.array(v, dtype=dtypes[k]) for k, v in self.freed(n, victims).items()}
        dtypes = dict(zip((*BATCH_KEYS, "cls", "class_mask", "dev_resv", "dev_resv_xcds", "class_resv"),
                          (np.int64, np.int64, np.int8, np.int32, np.int32, np.int64, np.uint8, np.int32,
                           np.uint8, np.int32, np.uint32, np.uint8)))
        batch = {k: np.array(v, dtype=dtypes[k]) for k, v in self.one_pod(p, n).items()}
        out = place_batch_ref(one, batch, 0)
        return out["node"][0] == 0, out, one

    # ---------------------------------------------------------------------------- rules
    def ent(self, p):
        return self.deserved if self.strategy[self.pend["queue"][p]] == CONSERVATIVE else self.fair

    def static_ok(self, p, v):
        run, qp = self.run, self.pend["queue"][p]
        qv = run["queue"][v]
        if qv == qp:
            return run["priority"][v] < self.pend["priority"][p] and run["runtime"][v] >= self.pmr[qp]
        return run["runtime"][v] >= self.rmr[qv]

    def judged(self, p, n):
        """Resources the queue rules judge for pod p on node n (csrc/preempt.cpp eval_node): what it
        lacks there (a lack of GPUs being one of gpu and of the node's model column too), of those
        the checked ones (model columns always), or every one it lacks if it requests none of those."""
        lack = lacking(self.freed(n, []), self.one_pod(p, n))
        if 0 in lack and self.node_res[n] >= 0:
            lack.add(self.node_res[n])
        kept = {r for r in lack if r >= 3 or r in self.checked}
        req = self.req_on(p, n)
        return kept if any(req[r] > 0 for r in kept) else lack

    def req_on(self, p, n, rules=True):
        """Pod p's request on node n: gpu, cpu, memory, and its GPUs in n's model column -- for the
        queue rules (`rules`) only if its model is fixed (a model column of its row above 0); what
        placing it charges (not `rules`) always."""
        own = self.pend["req"][p]
        out = list(own[:3]) + [0] * (self.R - 3)
        fixed = any(x > 0 for x in own[3:])
        if self.node_res[n] >= 0 and (fixed or not rules):
            out[self.node_res[n]] = own[0]
        return out

    def set_ok(self, p, victims):
        """The queue rules for every reclaim victim, with `victims` (the whole set) gone, judged on
        the resources `self.judging` (those the pod lacks on the node being tried)."""
        run, parent = self.run, self.parent
        qp, req_p, ent = self.pend["queue"][p], self.req_here, self.ent(p)
        sub = {}
        for v in victims:
            for a in _path(parent, run["queue"][v]):
                row = sub.setdefault(a, [0] * self.R)
                for r in range(self.R):
                    row[r] += run["req"][v][r]
        zero = [0] * self.R
        for v in victims:
            qv = run["queue"][v]
            if qv == qp:
                continue
            top = _lca(parent, qp, qv)
            for a in _below(parent, qv, top):          # (b) the victim's side
                # below the top of the path: protected down to min(ent, fair share) only
                prot = ent[a] if parent[a] == top else [min(e, f) for e, f in zip(ent[a], self.fair[a])]
                for r in self.judging:
                    if run["req"][v][r] > 0 and self.alloc[a][r] - sub[a][r] < prot[r]:
                        return False
            for a in _below(parent, qp, top):          # (a) the preemptor's side
                for r in self.judging:
                    if req_p[r] > 0 and self.alloc[a][r] - sub.get(a, zero)[r] + req_p[r] > ent[a][r]:
                        return False
        return True

    def victim_ok(self, p, chosen, v):
        """Rules for adding v to `chosen`: its own checks with the set so far (v included)."""
        qv = self.run["queue"][v]
        if qv == self.pend["queue"][p]:
            return True
        # Checking every reclaim victim of the set is the same here: adding v can only make the
        # earlier victims' (a) easier and their (b) on shared ancestors is v's (b) as well.
        return self.set_ok(p, chosen + [v])

    def rule(self, p, v):
        qp = self.pend["queue"][p]
        if self.run["queue"][v] == qp:
            return RULE_WITHIN
        return RULE_CONSERVATIVE if self.strategy[qp] == CONSERVATIVE else RULE_AGGRESSIVE

    # ----------------------------------------------------------------------- per node
    def try_node(self, p, n, prune):
        # Alive candidates on n, in (priority, runtime, row) order, that pass the static rules.
        cands = [v for v in self.on_node[n] if self.alive[v] and self.static_ok(p, v)]
        if prune and cands and not self.fits(p, n, cands):
            return None
        chosen = []
        self.judging = self.judged(p, n)
        self.req_here = self.req_on(p, n)
        if not self.fits(p, n, chosen):
            for v in cands:
                if not self.victim_ok(p, chosen, v):
                    continue
                chosen.append(v)
                if self.fits(p, n, chosen):
                    break
            else:
                return None
        for v in reversed(list(chosen)):
            rest = [w for w in chosen if w != v]
            if self.set_ok(p, rest) and self.fits(p, n, rest):
                chosen = rest
        return chosen

    def commit(self, p, n, victims):
        c, run = self.c, self.run
        fits, out, one = self.place_one(p, n, victims)
        assert fits
        d0 = c["node_dev_start"][n]
        for k in ("node_cpu_free", "node_mem_free", "node_pods_free"):
            c[k][n] = int(one[k][0])
        for k in ("dev_milli_free", "dev_mem_free", "dev_xcd_free", "dev_state"):
            for i, x in enumerate(one[k].tolist()):
                c[k][d0 + i] = x
        for v in victims:
            self.alive[v] = False
            self.evicted.add(v)
            for d, _, _, _ in self.devs_of[v]:
                self.hold[d] -= 1
            for a in _path(self.parent, run["queue"][v]):
                for r in range(self.R):
                    self.alloc[a][r] -= run["req"][v][r]
        qp, req = self.pend["queue"][p], self.req_on(p, n, rules=False)
        for a in _path(self.parent, qp):
            for r in range(self.R):
                self.alloc[a][r] += req[r]
        asg = []
        for k in range(len(out["asg_dev"])):
            d = int(out["asg_dev"][k]) + d0
            self.hold[d] += 1
            asg.append((d, int(out["asg_milli"][k]), int(out["asg_mem"][k]), int(out["asg_xcds"][k])))
        return asg

    def best_node(self, p, prune):
        """(node, victims) for pod p by the rules, or None."""
        b = self.pend
        best = None
        for n in range(len(self.c["node_cpu_free"])):
            if not b["class_mask"][b["cls"][p]][n]:
                continue
            chosen = self.try_node(p, n, prune)
            if chosen is None:
                continue
            key = (len(chosen), sum(self.run["priority"][v] for v in chosen), n)
            if best is None or key < best[0]:
                best = (key, chosen)
        return None if best is None else (best[0][2], best[1])

    def units(self):
        """Rows to try, as (rows, members that must get a node, is a gang): a pod alone must get its
        node; a gang is its rows with one gang id (consecutive, as the binding checks) and gang_need."""
        gang = self.pend.get("gang") or [-1] * len(self.pend["cpu"])
        out = []
        for p, g in enumerate(gang):
            if g >= 0 and out and out[-1][2] == g:
                out[-1][0].append(p)
            else:
                out.append(([p], 1 if g < 0 else self.pend["gang_need"][p], g))
        return [(rows, need, g >= 0) for rows, need, g in out]

    def plan(self, prune=True):
        P = len(self.pend["cpu"])
        node, victims_of, asg_of = [-1] * P, [[] for _ in range(P)], [[] for _ in range(P)]
        for rows, need, gang in self.units():
            # A gang is a transaction: every row tried on the state the earlier ones left; undone as
            # a whole (state, queues, decisions) if fewer than `need` of them got a node.
            saved = copy.deepcopy((self.c, self.alive, self.evicted, self.hold, self.alloc)) if gang else None
            got = 0
            for p in rows:
                found = self.best_node(p, prune)
                if found is None:
                    continue
                node[p], victims_of[p] = found
                asg_of[p] = self.commit(p, found[0], found[1])
                got += 1
            if gang and got < need:
                self.c, self.alive, self.evicted, self.hold, self.alloc = saved
                for p in rows:
                    node[p], victims_of[p], asg_of[p] = -1, [], []
        vic_start, vic, vic_rule, asg_start, asg = [0], [], [], [0], []
        for p in range(P):
            vic += victims_of[p]
            vic_rule += [self.rule(p, v) for v in victims_of[p]]
            asg += asg_of[p]
            vic_start.append(len(vic))
            asg_start.append(len(asg))
        out = {
            "node": np.array(node, np.int32),
            "vic_start": np.array(vic_start, np.int64),
            "vic": np.array(vic, np.int64),
            "vic_rule": np.array(vic_rule, np.int8),
            "asg_start": np.array(asg_start, np.int64),
            "asg_dev": np.array([a[0] for a in asg], np.int32),
            "asg_milli": np.array([a[1] for a in asg], np.int64),
            "asg_mem": np.array([a[2] for a in asg], np.int64),
            "asg_xcds": np.array([a[3] for a in asg], np.uint32),
        }
        for k in STATE_KEYS:
            out[k] = np.array(self.c[k], dtype=STATE_DTYPES[k])
        out["allocated"] = np.array(self.alloc, np.int64).reshape(len(self.parent), self.R)
        out["fit_mismatch"] = 0
        return out


def plan_preemptions_ref(cluster, running, pending, queues, prune=True):
    """Reference of ``_core.plan_preemptions(cluster, running, pending, queues)``: same outputs;
    the caller's arrays are not modified."""
    return _Plan(cluster, running, pending, queues).plan(prune)
