"""Fairness over repeated cycles on random queue trees, reclaim on (issue 11, property tests).

Each example draws a cluster (2-4 MI300X nodes, 8 GPUs each), a queue tree (1-3 top-level queues,
each a leaf or a parent of 1-3 children; GPU quotas with the top level's adding up to at most the
cluster; CPU and memory unlimited, so GPUs are what is short), a reclaim strategy, queue priorities
and over-quota weights, some 1-GPU pods already running (placed anywhere, so some queues start far
over their quota and others far under) and more pending in every leaf. Then, as the controller
would: schedule, carry out the bindings and evictions (tests.dumpgen.next_cycle), repeat, 6 cycles.

Checked, by counting pods in the objects (not by trusting the kernels):

* every cycle, the GPU fair shares of the top-level queues, and of the leaves, add up to at most the
  cluster's GPUs;
* it converges, no ping-pong: the last two cycles evict and bind nothing, and no queue that lost
  pods to reclaim later reclaims pods itself;
* at the end, every leaf queue with pending pods holds at least min(deserved, demand) GPUs -- the
  cluster can give that to all at once (1-GPU pods; top-level quotas within the cluster, children's
  sharing out their parent's exactly) -- and, with aggressive reclaim, at least
  min(fair share, demand). When the children's quotas add up to more than their parent's
  (parent-level charging) they cannot all have their deserved: then top-level leaves still do, and
  with conservative reclaim (a child within its own quota is not reclaimed by its sibling) what the
  children hold within their own quotas fills their parent's deserved, as far as their demand goes.

Derandomized: the default run always draws the same ``KAIWO_FAIRNESS_EXAMPLES`` = 25 trees (a few
seconds); setting the variable explores new ones (e.g. 2000 for a long run). 300 random ones pass.
Known failure found at 1,000 (not fixed here, on main as well): when every queue's GPU quota is 0
and CPU/memory are unlimited (-1), the queue rules drop the GPU column
(``PreemptionConfig.check_resources`` keeps the resources some queue has a non-zero quota of, and
-1 counts), so reclaim is judged on CPU/memory alone, where unlimited means deserved = demand: a
queue with no GPU quota reclaims GPUs, and the victim's queue reclaims them back the next cycle.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import kaiwo_core as kc
from tests.dumpgen import next_cycle
from tests.scenario_loader import scenario_objects

EXAMPLES = int(os.environ.get("KAIWO_FAIRNESS_EXAMPLES", "25"))
CYCLES = 6
UNLIMITED = {"cpu": {"quota": -1}, "memory": {"quota": -1}}


@st.composite
def clusters(draw):
    nodes = draw(st.integers(2, 4))
    gpus = 8 * nodes
    reclaim = draw(st.sampled_from(["aggressive", "conservative"]))
    oversubscribed = draw(st.booleans())  # children's quotas may add up to more than the parent's
    n_top = draw(st.integers(1, 3))
    left = gpus
    queues, leaves = [], []
    for t in range(n_top):
        quota = draw(st.integers(0, left))
        left -= quota
        top = {"name": f"q{t}", "priority": draw(st.sampled_from([0, 0, 100])),
               "fairness": {"reclaimStrategy": reclaim},
               "resources": {"gpu": {"quota": quota, "overQuotaWeight": draw(st.sampled_from([1, 1, 3]))},
                             **UNLIMITED}}
        queues.append(top)
        n_kids = draw(st.sampled_from([0, 0, 1, 2, 3]))
        room = quota
        for c in range(n_kids):
            # fitting quotas share the parent's out exactly (the last child takes the rest)
            kq = draw(st.integers(0, quota)) if oversubscribed else \
                (room if c == n_kids - 1 else draw(st.integers(0, room)))
            room -= min(kq, room)
            queues.append({"name": f"q{t}-{c}", "parent": f"q{t}", "priority": draw(st.sampled_from([0, 100])),
                           "fairness": {"reclaimStrategy": reclaim},
                           "resources": {"gpu": {"quota": kq, "overQuotaWeight": draw(st.sampled_from([1, 2]))},
                                         **UNLIMITED}})
            leaves.append(f"q{t}-{c}")
        if not n_kids:
            leaves.append(f"q{t}")
    # Running pods: each leaf a random number, or exactly its quota (children at their quotas whose
    # parent is over its own: the case of parent-level charging), placed node by node while GPUs last.
    quota_of = {q["name"]: q["resources"]["gpu"]["quota"] for q in queues}
    free = [8] * nodes
    pods = []
    for leaf in leaves:
        n = draw(st.one_of(st.integers(0, gpus), st.just(quota_of[leaf])))
        for node in draw(st.permutations(range(nodes))):
            k = min(n, free[node])
            if k:
                pods.append({"name": f"run-{leaf}-n{node}", "replicas": k, "gpu": 1, "cpu": 1, "memory": "1Gi",
                             "nodeName": f"mi300x-{node}", "labels": {"kaiwo.ai/queue": leaf}})
                free[node] -= k
                n -= k
    for leaf in leaves:
        pods.append({"name": f"wait-{leaf}", "replicas": draw(st.integers(1, gpus)), "gpu": 1, "cpu": 1,
                     "memory": "1Gi", "labels": {"kaiwo.ai/queue": leaf}})
    sc = {"nodes": [{"name": f"mi300x-{i}", "gpus": 8, "partition": "spx_nps1"} for i in range(nodes)],
          "queues": queues, "pods": pods}
    return scenario_objects(sc), queues, leaves, gpus, oversubscribed


def count(objs, bound: bool) -> dict:
    """1-GPU pods per leaf queue, bound (running) or pending."""
    out: dict = {}
    for o in objs:
        if o["kind"] == "Pod" and bool(o["spec"].get("nodeName")) == bound:
            q = o["metadata"]["labels"]["kaiwo.ai/queue"]
            out[q] = out.get(q, 0) + 1
    return out


# No shrinking: each example runs 6 cycles, and hypothesis prints the failing example as drawn.
@settings(max_examples=EXAMPLES, deadline=None, derandomize="KAIWO_FAIRNESS_EXAMPLES" not in os.environ,
          phases=[Phase.explicit, Phase.reuse, Phase.generate], suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(clusters())
def test_every_queue_gets_its_deserved_without_ping_pong(problem):
    objs, queues, leaves, gpus, oversubscribed = problem
    top = [q["name"] for q in queues if not q.get("parent")]
    victims_of, reclaimers = set(), []
    quiet = 0
    for cycle in range(CYCLES):
        doc = kc.schedule(kc.Snapshot.from_objects(objs)).to_dict()
        info = {q["name"]: q for q in doc["queues"]}
        assert sum(info[n]["fairShare"]["gpu"] for n in top + ["default"]) <= gpus, cycle
        assert sum(info[n]["fairShare"]["gpu"] for n in leaves + ["default"]) <= gpus, cycle
        queue_of = {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["metadata"]["labels"]["kaiwo.ai/queue"]
                    for o in objs if o["kind"] == "Pod"}
        for p in doc["preemptions"]:
            if p["rule"].startswith("reclaim"):
                reclaimers.append(queue_of[p["preemptor"]])
                # no ping-pong: a queue that gave pods up to reclaim does not take any back
                assert queue_of[p["preemptor"]] not in victims_of, (cycle, p)
        for p in doc["preemptions"]:
            if p["rule"].startswith("reclaim"):
                victims_of.add(queue_of[p["pod"]])
        quiet = quiet + 1 if not doc["preemptions"] and not doc["bindings"] else 0
        objs = next_cycle(objs, doc, 0.0)
    assert quiet >= 2, "did not settle"
    held, waiting = count(objs, True), count(objs, False)
    reclaim = queues[0]["fairness"]["reclaimStrategy"]
    for n in leaves:
        if not waiting.get(n):
            continue
        got, dem = held.get(n, 0), held.get(n, 0) + waiting[n]
        if reclaim == "aggressive":
            assert got >= min(info[n]["fairShare"]["gpu"], dem), (n, got, info[n])
        if not oversubscribed or n in top:
            assert got >= min(info[n]["deserved"]["gpu"], dem), (n, got, info[n])
    if oversubscribed and reclaim == "conservative":
        # The children cannot all have their deserved; their parent's deserved is filled by what
        # they hold within their own quotas.
        for q in queues:
            kids = [c["name"] for c in queues if c.get("parent") == q["name"]]
            if not kids or not any(waiting.get(c) for c in kids):
                continue
            within = sum(min(held.get(c, 0), info[c]["deserved"]["gpu"]) for c in kids)
            could = sum(min(info[c]["deserved"]["gpu"], held.get(c, 0) + waiting.get(c, 0)) for c in kids)
            assert within >= min(info[q["name"]]["deserved"]["gpu"], could), (q["name"], within, could)
