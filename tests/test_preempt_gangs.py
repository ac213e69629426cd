"""Gang-aware reclaim and preemption (issue 11), hand-checked through whole cycles.

Two nodes of 8 MI300X (16 GPUs). Queue ``a`` runs 16 one-GPU pods (8 per node), so the cluster is
full; queue ``b`` has only a gang ``train`` of 4 members of 2 GPUs each (8 GPUs). Quotas are GPU
only, the same over-quota weight for both queues, reclaimMinRuntime 0.

* ``b`` quota 8, ``a`` quota 8 (deserved 8 / 8, fair shares 8 / 8): ``b`` is 8 GPUs below its
  deserved quota, ``a`` 8 above, so either reclaim strategy evicts 8 of ``a``'s pods and nominates
  all 4 members in one cycle -- all on n1 (for each member both nodes need 2 victims of equal
  priority, so the lower index wins; the youngest pods go first); the next cycle, with the victims
  gone and the members nominated, binds the whole gang.
* ``b`` quota 4, ``a`` quota 4 (deserved 4 / 4; the 8 GPUs left split evenly: fair shares 8 / 8):
  conservative reclaim may take 4 GPUs only -- 2 of the 4 members -- so the gang evicts nothing;
  aggressive reclaim takes the 8 (up to the fair share) and nominates the gang.
* Two of ``a``'s pods on each node are not preemptible: 6 GPUs can be freed per node, room for 3
  members on n1 and the 4th on n2. With 5 per node not preemptible (3 freeable GPUs each, one
  2-GPU member per node) only 2 members could get a node: nothing is evicted, although each member
  alone could reclaim; with ``kaiwo.ai/gang-min-members: 2`` the 2 do, evicting 4 pods.
* ``b`` already at its deserved share (it runs 8 one-GPU pods, ``a`` 8, quotas 8 / 8, a pending
  pod in ``a`` keeps its fair share at 8): the gang reclaims nothing with either strategy.
"""
from __future__ import annotations

import numpy as np
import pytest

import kaiwo_core as kc
from kaiwo_core.scheduling.cycle import schedule
from kaiwo_core.scheduling.preemption import PreemptionConfig, preemptor_rows
from tests.invariants import violations
from tests.scenario_loader import node_obj, pod_objs, queue_obj

GANG = [f"b/train-{i:02d}" for i in range(4)]


def objects(strategy, a_quota=8, b_quota=8, fixed_per_node=0, gang_min=None, b_running=0, a_pending=0):
    objs = [node_obj({"name": "n1", "gpus": 8}), node_obj({"name": "n2", "gpus": 8})]
    objs += [queue_obj({"name": q, "resources": {"gpu": {"quota": quota}},
                        "fairness": {"reclaimStrategy": strategy}}) for q, quota in (("a", a_quota), ("b", b_quota))]
    a_running = 16 - b_running
    for k, node in enumerate(("n1", "n2")):
        pods = pod_objs({"name": f"run-{node}", "namespace": "a", "labels": {"kaiwo.ai/queue": "a"}, "gpu": 1,
                         "nodeName": node, "replicas": a_running // 2}, start=100 * k)
        for pod in pods[:fixed_per_node]:
            pod["metadata"]["annotations"]["kaiwo.ai/preemptible"] = "false"
        objs += pods
    if b_running:
        for k, node in enumerate(("n1", "n2")):
            objs += pod_objs({"name": f"old-{node}", "namespace": "b", "labels": {"kaiwo.ai/queue": "b"}, "gpu": 1,
                              "nodeName": node, "replicas": b_running // 2}, start=200 + 100 * k)
    if a_pending:
        objs += pod_objs({"name": "more", "namespace": "a", "labels": {"kaiwo.ai/queue": "a"}, "gpu": 1,
                          "replicas": a_pending}, start=900)
    ann = {"kaiwo.ai/gang": "train"}
    if gang_min is not None:
        ann["kaiwo.ai/gang-min-members"] = str(gang_min)
    objs += pod_objs({"name": "train", "namespace": "b", "labels": {"kaiwo.ai/queue": "b"}, "gpu": 2,
                      "replicas": 4, "annotations": ann}, start=1000)
    return objs


def cycle(objs):
    d = schedule(kc.Snapshot.from_objects(objs))
    doc = d.to_dict()
    assert not violations(objs, doc, 0.0)
    return d, doc


def next_cycle(objs, d):
    """The objects after the cycle's evictions: victims deleted, preemptors carrying
    status.nominatedNodeName (as the controller writes them)."""
    victims = {e["pod"] for e in d.to_dict()["preemptions"]}
    nominated = {n["pod"]: n["node"] for n in d.preemption.nominations()}
    out = []
    for o in objs:
        key = f"{o['metadata'].get('namespace', 'default')}/{o['metadata']['name']}" if o["kind"] == "Pod" else None
        if key in victims:
            continue
        if key in nominated:
            o = dict(o, status={"nominatedNodeName": nominated[key]})
        out.append(o)
    return out


@pytest.mark.parametrize("strategy", ["conservative", "aggressive"])
def test_gang_only_queue_below_deserved_reclaims_for_the_whole_gang_in_one_cycle(strategy):
    objs = objects(strategy)
    d, doc = cycle(objs)
    assert not doc["bindings"]
    victims = sorted(e["pod"] for e in doc["preemptions"])
    # 8 GPUs for 4 two-GPU members: every pod of a on n1.
    assert victims == [f"a/run-n1-{i:02d}" for i in range(8)]
    assert {e["rule"] for e in doc["preemptions"]} == {f"reclaim-{strategy}"}
    noms = d.preemption.nominations()
    assert sorted(n["pod"] for n in noms) == GANG
    assert [n["node"] for n in noms] == ["n1"] * 4
    reasons = {p["pod"]: p["reason"] for p in doc["pending"]}
    assert all(reasons[m].startswith("nominated to ") and "with gang b/train (4 member(s) nominated together)"
               in reasons[m] for m in GANG)
    # Next cycle: victims gone, members nominated -> the whole gang binds, nothing more is evicted.
    objs = next_cycle(objs, d)
    d, doc = cycle(objs)
    assert sorted(b["pod"] for b in doc["bindings"]) == GANG
    assert not doc["preemptions"]
    used = {q["name"]: q["allocated"]["gpu"] for q in doc["queues"]}
    assert used == {"a": 8, "b": 8, "default": 0}


def test_conservative_reclaims_only_up_to_the_deserved_quota_so_the_gang_evicts_nothing():
    d, doc = cycle(objects("conservative", a_quota=4, b_quota=4))
    fair = {q["name"]: (q["deserved"]["gpu"], q["fairShare"]["gpu"]) for q in doc["queues"]}
    assert fair == {"a": (4, 8), "b": (4, 8), "default": (0, 0)}
    assert not doc["preemptions"] and not doc["bindings"]
    assert not d.preemption.nominations()


def test_aggressive_reclaims_up_to_the_fair_share_for_the_whole_gang():
    d, doc = cycle(objects("aggressive", a_quota=4, b_quota=4))
    assert len(doc["preemptions"]) == 8
    assert sorted(n["pod"] for n in d.preemption.nominations()) == GANG


@pytest.mark.parametrize("strategy", ["conservative", "aggressive"])
def test_victims_of_one_member_count_for_the_next(strategy):
    """2 non-preemptible pods per node: 6 GPUs freeable per node, 3 members' worth: the first 3
    members on n1 (6 victims), the 4th on n2 (2 victims)."""
    d, doc = cycle(objects(strategy, fixed_per_node=2))
    assert sorted(e["pod"] for e in doc["preemptions"]) == \
        [f"a/run-n1-{i:02d}" for i in range(2, 8)] + ["a/run-n2-06", "a/run-n2-07"]
    assert [n["node"] for n in d.preemption.nominations()] == ["n1", "n1", "n1", "n2"]


@pytest.mark.parametrize("strategy", ["conservative", "aggressive"])
def test_a_gang_that_cannot_be_fully_satisfied_evicts_nothing(strategy):
    """5 non-preemptible pods per node: 3 freeable GPUs per node, room for one 2-GPU member each.
    Two members could reclaim (each alone would), the gang needs 4: nothing is evicted."""
    d, doc = cycle(objects(strategy, fixed_per_node=5))
    assert not doc["preemptions"] and not doc["bindings"]
    assert not d.preemption.nominations()
    rows, need = preemptor_rows(d.placement, np.flatnonzero(~d.placement.placed))
    assert sorted(d.placement.batch.names[r] for r in rows) == GANG and need.tolist() == [4] * 4
    # The same 4 pods without the gang: 2 of them reclaim (2 victims each), so the gang's members
    # were tried and rolled back.
    objs = objects(strategy, fixed_per_node=5)
    for o in objs:
        o["metadata"].get("annotations", {}).pop("kaiwo.ai/gang", None)
    d, doc = cycle(objs)
    assert len(doc["preemptions"]) == 4 and len(d.preemption.nominations()) == 2


@pytest.mark.parametrize("strategy", ["conservative", "aggressive"])
def test_the_gang_minimum_is_respected(strategy):
    """The same cluster with kaiwo.ai/gang-min-members 2: two members are enough, so the gang
    reclaims 2 GPUs on each node for them (4 victims) and nominates both."""
    d, doc = cycle(objects(strategy, fixed_per_node=5, gang_min=2))
    assert len(doc["preemptions"]) == 4
    noms = d.preemption.nominations()
    assert len(noms) == 2 and sorted(n["node"] for n in noms) == ["n1", "n2"]


@pytest.mark.parametrize("strategy", ["conservative", "aggressive"])
def test_a_gang_in_a_queue_at_its_deserved_share_does_not_reclaim(strategy):
    d, doc = cycle(objects(strategy, b_running=8, a_pending=4))
    share = {q["name"]: (q["deserved"]["gpu"], q["fairShare"]["gpu"], q["allocated"]["gpu"]) for q in doc["queues"]}
    assert share["b"] == (8, 8, 8)
    assert not doc["preemptions"] and not doc["bindings"]


def test_nominated_gang_goes_first_whole_and_consecutive():
    """Cycle 2 of the reclaim scenario with a higher-priority one-GPU pod of queue b pending too:
    without nominations it goes first and takes one of the 8 freed GPUs, so the gang (8 GPUs) does
    not fit; with one member nominated the whole gang goes first, its members consecutive, and
    binds."""
    objs = objects("conservative")
    d, _ = cycle(objs)
    after = next_cycle(objs, d)
    early = pod_objs({"name": "early", "namespace": "b", "labels": {"kaiwo.ai/queue": "b"}, "gpu": 1,
                      "priority": 100}, start=500)

    def pods(nominated):
        out = []
        for o in after:
            if o["kind"] == "Pod" and o["metadata"]["name"].startswith("train") and \
                    o["metadata"]["name"] not in nominated:
                o = {k: v for k, v in o.items() if k != "status"}
            out.append(o)
        return out + early

    _, doc = cycle(pods(()))
    assert [b["pod"] for b in doc["bindings"]] == ["b/early"]
    d2, doc = cycle(pods(("train-02",)))  # one member's nomination moves the whole gang
    assert list(d2.placement.batch.names[:4]) == GANG
    assert sorted(b["pod"] for b in doc["bindings"]) == GANG


def test_preemptor_rows_groups_gangs_counts_members_and_drops_what_cannot_start():
    from types import SimpleNamespace

    gang = np.array([-1, -1, 0, 0, 0, -1, 1, 1, 2, 2], np.int32)
    need = np.array([0, 0, 3, 3, 3, 0, 2, 2, 3, 3], np.int32)
    placed = np.zeros(10, bool)
    placed[[0, 6]] = True  # gang 1 has one member placed this cycle: one more is needed
    p = SimpleNamespace(placed=placed, batch=SimpleNamespace(gang=gang, gang_need=need))
    unplaced = np.flatnonzero(~placed)
    rows, left = preemptor_rows(p, unplaced)
    assert rows.tolist() == [1, 2, 3, 4, 5, 7] and left.tolist() == [0, 3, 3, 3, 0, 1]  # gang 2: 2 < 3
    assert preemptor_rows(p, unplaced, 4)[0].tolist() == [1, 2, 3, 4]
    assert preemptor_rows(p, unplaced, 2)[0].tolist() == [1]  # gang 0 would be cut: it waits whole
    assert preemptor_rows(p, [3, 1, 2, 4])[0].tolist() == [3, 2, 4, 1]  # members at the first one's place
    assert preemptor_rows(p, unplaced[1:], 2)[0].tolist() == [2, 3, 4]  # first: tried whole
    p.batch.gang = None
    rows, left = preemptor_rows(p, unplaced, 3)
    assert rows.tolist() == [1, 2, 3] and left is None


def test_max_preemptors_counts_gang_members_and_never_splits_a_gang():
    d, _ = cycle(objects("conservative"))
    p = d.placement
    unplaced = np.flatnonzero(~p.placed)
    rows, need = preemptor_rows(p, unplaced, 4)
    assert [p.batch.names[r] for r in rows] == GANG
    # The gang comes first: a limit below its size still tries it, whole.
    rows, _ = preemptor_rows(p, unplaced, 2)
    assert [p.batch.names[r] for r in rows] == GANG
    plan = d.preemption
    small = schedule(kc.Snapshot.from_objects(objects("conservative")),
                     preempting=PreemptionConfig(max_preemptors=2)).preemption
    assert sorted(small.preemptions(), key=lambda e: e["pod"]) == sorted(plan.preemptions(), key=lambda e: e["pod"])


def test_invariant_checker_catches_victims_for_a_gang_short_of_its_minimum():
    """tests/invariants.py checks all-or-nothing on its own: the scenario's decisions with two of
    the four members no longer nominated are a violation."""
    objs = objects("conservative")
    _, doc = cycle(objs)
    for p in doc["pending"]:
        if p["pod"] in GANG[2:]:
            p["reason"] = "no node fits"
    found = [m for c, m in violations(objs, doc, 0.0) if c == "gang"]
    assert found and "b/train" in found[0] and "2 nominated of minimum 4" in found[0]


def test_a_started_gang_keeps_its_running_member():
    """A running gang member counts toward its gang's minimum when a gang-mate is bound in the same
    cycle, so it is no victim in that cycle (found by the random invariant test: the member was
    reclaimed while its mate was bound on the strength of it, a gang started with 1 of its 2).

    n1 and n2, 8 MI300X each. Queue ``a`` (no quota) runs 15 one-GPU pods: 8 on n1, the youngest of
    them ``a/g-00`` of gang ``g`` (minimum 2), 7 on n2; its mate ``a/g-01`` is pending. Queue ``b``
    (quota 8) asks for 2 GPUs: ordered first (below its deserved quota), it does not fit the one
    free GPU, which ``g-01`` then takes. Reclaim for ``b`` takes two of ``a``'s pods on n1 (before
    the fix, ``g-00`` was one of them) -- but ``g`` started this cycle: two others go instead."""
    objs = [node_obj({"name": "n1", "gpus": 8}), node_obj({"name": "n2", "gpus": 8})]
    objs += [queue_obj({"name": "a", "resources": {"gpu": {"quota": 0}}}),
             queue_obj({"name": "b", "resources": {"gpu": {"quota": 8}}})]
    objs += pod_objs({"name": "n1", "namespace": "a", "labels": {"kaiwo.ai/queue": "a"}, "gpu": 1,
                      "nodeName": "n1", "replicas": 7}, start=0)
    objs += pod_objs({"name": "n2", "namespace": "a", "labels": {"kaiwo.ai/queue": "a"}, "gpu": 1,
                      "nodeName": "n2", "replicas": 7}, start=100)
    gang = {"kaiwo.ai/gang": "g", "kaiwo.ai/gang-min-members": "2"}
    objs += pod_objs({"name": "g-00", "namespace": "a", "labels": {"kaiwo.ai/queue": "a"}, "gpu": 1,
                      "nodeName": "n1", "annotations": gang}, start=500)
    objs += pod_objs({"name": "g-01", "namespace": "a", "labels": {"kaiwo.ai/queue": "a"}, "gpu": 1,
                      "annotations": gang}, start=600)
    objs += pod_objs({"name": "want", "namespace": "b", "labels": {"kaiwo.ai/queue": "b"}, "gpu": 2}, start=700)
    doc = schedule(kc.Snapshot.from_objects(objs), now=10_000).to_dict()
    assert [(b["pod"], b["node"]) for b in doc["bindings"]] == [("a/g-01", "n2")]
    victims = [p["pod"] for p in doc["preemptions"]]
    assert len(victims) == 2 and "a/g-00" not in victims and all(v.startswith("a/n1-") for v in victims)
    assert {p["preemptor"] for p in doc["preemptions"]} == {"b/want"}
    assert violations(objs, doc, 10_000) == []


def test_a_gang_never_evicts_its_own_running_member():
    """Regression (random invariant test, 1 in ~200 dumps at 1,500 examples): gang g0 of 3 (minimum
    3) runs p2 and p3 on n0; its pending member p4 preempted p3 within the queue -- evicting its own
    gang-mate, so the gang was left with 1 running + 1 nominated of 3. Running members of a gang with
    members pending in the cycle are no victims in it."""
    import json
    from pathlib import Path

    from tests.test_invariants_random import NOW, check_cycle

    case = json.loads((Path(__file__).parent / "scenarios" / "gang_evicts_own_member.json").read_text())
    doc = check_cycle(case["objects"], NOW, case["order"])
    assert not any(p["pod"] in ("default/p2", "default/p3") for p in doc["preemptions"])
