"""Parent-level over-quota charging (issue 11): children whose deserved quotas add up to more than
their parent's can, each within its own quota, push the parent over its own; that excess is over
quota as far as the parent's siblings are concerned -- in fair shares (tests/test_fairshare_kernel.py
has the kernel-level example), in ordering and in reclaim.

Cluster: 3 MI300X nodes in SPX, 24 GPUs. ``dept`` (gpu quota 16) with ``team-a`` and ``team-b``
(gpu quota 10 each: 20 > 16), and top-level ``solo`` (gpu quota 8). Running: team-a 10, team-b 10
(dept 20, 4 over its quota although both teams are within theirs), solo 4; pending: 8 more pods of
each team, 20 of solo. Worked out by hand: deserved dept 16, teams 10 each (capped by 16), solo 8.
The fair-share allocation fills deserved first, leaves in row order (team-a, team-b, solo): team-a
10, team-b 6 (dept's 16 used up), solo 8 -- 24, nothing left over. Solo must get its 8 back from
dept's 4 excess GPUs. Before: with conservative reclaim no victim was allowed (team-a and team-b
would each fall below their own deserved 10), so solo stayed at 4 for good.
"""
from __future__ import annotations

import pytest

import kaiwo_core as kc
from tests.dumpgen import next_cycle
from tests.scenario_loader import scenario_objects

NODES = ["mi300x-0", "mi300x-1", "mi300x-2"]


def scenario(reclaim: str) -> list[dict]:
    fairness = {"fairness": {"reclaimStrategy": reclaim}}
    unl = {"cpu": {"quota": -1}, "memory": {"quota": -1}}
    sc = {
        "nodes": [{"name": n, "gpus": 8, "partition": "spx_nps1"} for n in NODES],
        "queues": [
            {"name": "dept", "resources": {"gpu": {"quota": 16}, **unl}},
            {"name": "team-a", "parent": "dept", **fairness, "resources": {"gpu": {"quota": 10}, **unl}},
            {"name": "team-b", "parent": "dept", **fairness, "resources": {"gpu": {"quota": 10}, **unl}},
            {"name": "solo", **fairness, "resources": {"gpu": {"quota": 8}, **unl}},
        ],
        "pods": [],
    }
    running = {"team-a": [("mi300x-0", 8), ("mi300x-1", 2)], "team-b": [("mi300x-1", 6), ("mi300x-2", 4)],
               "solo": [("mi300x-2", 4)]}
    for queue, where in running.items():
        for node, n in where:
            sc["pods"].append({"name": f"run-{queue}-{node}", "replicas": n, "gpu": 1, "cpu": 1,
                               "memory": "1Gi", "nodeName": node, "labels": {"kaiwo.ai/queue": queue}})
    for queue, n in (("team-a", 8), ("team-b", 8), ("solo", 20)):
        sc["pods"].append({"name": f"wait-{queue}", "replicas": n, "gpu": 1, "cpu": 1, "memory": "1Gi",
                           "labels": {"kaiwo.ai/queue": queue}})
    return scenario_objects(sc)


def held(objs, queue):
    return sum(1 for o in objs if o["kind"] == "Pod" and o["spec"].get("nodeName")
               and o["metadata"]["labels"]["kaiwo.ai/queue"] == queue)


@pytest.mark.parametrize("reclaim", ["conservative", "aggressive"])
def test_parent_excess_is_reclaimed_by_its_sibling(reclaim):
    objs = scenario(reclaim)
    doc = kc.schedule(kc.Snapshot.from_objects(objs)).to_dict()
    q = {x["name"]: x for x in doc["queues"] if x["name"] != "default"}
    assert {n: q[n]["deserved"]["gpu"] for n in q} == {"dept": 16, "team-a": 10, "team-b": 10, "solo": 8}
    assert {n: q[n]["fairShare"]["gpu"] for n in q} == {"dept": 16, "team-a": 10, "team-b": 6, "solo": 8}
    pre = doc["preemptions"]
    # dept's 4 excess GPUs, all from team-b: team-a is at its fair share (10), team-b 4 above its 6.
    assert len(pre) == 4, pre
    assert all(p["pod"].startswith("default/run-team-b") and "wait-solo" in p["preemptor"] for p in pre), pre
    assert {p["rule"] for p in pre} == {"reclaim-" + reclaim}
    for _ in range(3):
        objs = next_cycle(objs, doc, 0.0)
        doc = kc.schedule(kc.Snapshot.from_objects(objs)).to_dict()
    assert (held(objs, "team-a"), held(objs, "team-b"), held(objs, "solo")) == (10, 6, 8)
    assert not doc["preemptions"] and not doc["bindings"]  # settled: no ping-pong


def test_ordering_charges_the_parent():
    """The next free GPU goes to solo (below its deserved 8), not to a team within its own quota:
    ordering judges "below deserved" at every level, and dept (20 of 16) is not below."""
    objs = [o for o in scenario("conservative")
            if not (o["kind"] == "Pod" and o["metadata"]["name"].startswith("run-solo-mi300x-2-00"))]
    doc = kc.schedule(kc.Snapshot.from_objects(objs)).to_dict()
    assert [b["pod"].split("/")[1].rsplit("-", 1)[0] for b in doc["bindings"]] == ["wait-solo"]
