"""Reservations of single GPUs and XCDs (issue 11): the preemption kernel against its reference on
random problems with device holds, and hand-checked scenarios through ``kaiwo_core.schedule``
(KaiwoReservation objects -> JSON decisions), each also run through the invariant checker."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kaiwo_core as kc
from kaiwo_core import _core
from kaiwo_core.scheduling.reservations import ReservationConfig
from tests.invariants import epoch, violations
from tests.naive_preempt import STATE_KEYS, plan_preemptions_ref
from tests.scenario_loader import scenario_objects
from tests.test_preempt_kernel import assert_same, random_problem, rebuilt_state, run_kernel

NOW = "2026-01-01T01:00:00Z"
XCD = {"kaiwo.ai/gpu-isolation": "xcd", "kaiwo.ai/gpu-fraction": "0.25"}  # 2 of an SPX GPU's 8 XCDs


# ------------------------------------------------------------------ preemption kernel, random holds

def with_holds(seed, cluster, pending):
    """Random device holds on `cluster` for the classes of `pending` (as the placement tests do)."""
    rng = np.random.default_rng(seed ^ 0x5EED)
    G, C = len(cluster["dev_gpu"]), pending["class_mask"].shape[0]
    R = int(rng.integers(1, 4))
    resv = rng.integers(-1, R, size=G).astype(np.int32)
    part = rng.integers(0, 256, size=G).astype(np.uint32) * (rng.random(G) < 0.5)
    pending["dev_resv"] = resv
    pending["dev_resv_xcds"] = np.where(resv >= 0, part & cluster["dev_xcd_mask"], 0).astype(np.uint32)
    pending["class_resv"] = (rng.random((C, R)) < 0.5).astype(np.uint8)


def held_against(pending, p, d):
    r = pending["dev_resv"][d]
    if r < 0 or pending["class_resv"][pending["cls"][p]][r]:
        return None
    return int(pending["dev_resv_xcds"][d])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_preemption_follows_device_holds(seed):
    """Kernel = reference (which asks the placement reference every fit question), no fit_mismatch,
    the final state is what the decisions imply, and no preemptor got a device held against it."""
    empty, cluster, running, pending, queues = random_problem(seed, max_running=30, max_pending=8)
    with_holds(seed, cluster, pending)
    out = run_kernel(cluster, running, pending, queues)  # asserts fit_mismatch == 0
    assert_same(out, plan_preemptions_ref(cluster, running, pending, queues))
    rebuilt = rebuilt_state(empty, running, pending, out)
    for k in STATE_KEYS:
        np.testing.assert_array_equal(out[k], rebuilt[k], err_msg=k)
    for p in np.flatnonzero(out["node"] >= 0):
        for k in range(out["asg_start"][p], out["asg_start"][p + 1]):
            held = held_against(pending, p, out["asg_dev"][k])
            if held is not None:
                assert held and pending["kind"][p] == _core.KIND_XCD and not pending["exclusive"][p]
                assert int(out["asg_xcds"][k]) & held == 0


def test_device_hold_inputs_are_validated():
    empty, cluster, running, pending, queues = random_problem(7)
    with_holds(7, cluster, pending)
    for key, value, words in (("dev_resv", lambda a: a * 0 + 99, "out of range"),
                              ("dev_resv_xcds", lambda a: a | 0x100, "outside dev_xcd_mask"),
                              ("class_resv", lambda a: a + 2, "0 or 1")):
        bad = dict(pending, **{key: value(pending[key])})
        with pytest.raises(ValueError, match=words):
            _core.plan_preemptions(cluster, running, bad, queues)
    alone = {k: v for k, v in pending.items() if k != "class_resv"}
    with pytest.raises(ValueError, match="come together"):
        _core.plan_preemptions(cluster, running, alone, queues)


# ------------------------------------------------------------------------------ scenarios

def reservation(name, spec, created="2026-01-01T00:00:00Z"):
    return {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoReservation",
            "metadata": {"name": name, "creationTimestamp": created}, "spec": spec}


def schedule(sc, now=NOW, **kw):
    """Decisions of one cycle on the scenario, checked by the invariant checker."""
    objs = scenario_objects(sc)
    doc = kc.schedule(kc.Snapshot.from_objects(objs), now=epoch(now), **kw).to_dict()
    assert not violations(objs, doc, epoch(now))
    return doc


def bound(doc):
    return {b["pod"]: b for b in doc["bindings"]}


def pending(doc):
    return {p["pod"]: p["reason"] for p in doc["pending"]}


QUEUES = [{"name": "research"}, {"name": "team"}]


def test_two_gpus_held_leave_six_to_everyone_and_two_to_the_owner():
    sc = {"nodes": [{"name": "n0", "gpus": 8}], "queues": QUEUES,
          "objects": [reservation("two", {"queue": "research", "node": "n0", "gpus": 2})],
          "pods": [{"name": "team", "replicas": 8, "gpu": 1, "labels": {"kaiwo.ai/queue": "team"}},
                   {"name": "res", "replicas": 2, "gpu": 1, "labels": {"kaiwo.ai/queue": "research"}}]}
    doc = schedule(sc)
    b = bound(doc)
    team = [k for k in b if k.startswith("default/team-")]
    assert len(team) == 6 and {"default/res-00", "default/res-01"} <= set(b)
    # Idle devices first, then by index: GPUs 0 and 1 are held and went to research.
    assert sorted(d["gpu"] for k in ("default/res-00", "default/res-01") for d in b[k]["devices"]) == [0, 1]
    assert all(d["gpu"] >= 2 for k in team for d in b[k]["devices"])
    (r,) = doc["reservations"]
    assert r["nodes"] == [] and [(d["node"], d["gpu"]) for d in r["devices"]] == [("n0", 0), ("n0", 1)]


def test_held_gpus_stay_free_when_the_owner_has_no_pods():
    sc = {"nodes": [{"name": "n0", "gpus": 8}], "queues": QUEUES,
          "objects": [reservation("named", {"queue": "research", "devices": [{"node": "n0", "gpu": 5},
                                                                             {"node": "n0", "gpu": 7}]})],
          "pods": [{"name": "team", "replicas": 8, "gpu": 1, "labels": {"kaiwo.ai/queue": "team"}}]}
    doc = schedule(sc)
    used = sorted(d["gpu"] for b in doc["bindings"] for d in b["devices"])
    assert used == [0, 1, 2, 3, 4, 6]
    assert pending(doc)["default/team-06"] == "0/1 nodes can take it: 1 GPUs held by a reservation"
    assert [d["gpu"] for d in doc["reservations"][0]["devices"]] == [5, 7]


XCD_HOLD = reservation("half", {"queue": "research", "devices": [{"node": "n0", "gpu": 0, "xcds": [4, 5, 6, 7]}]})


def test_xcd_hold_leaves_the_other_xcds_to_xcd_pods_only():
    # One SPX GPU (8 XCDs), XCDs 4-7 held for research, which has no pods: team's XCD pods (2 XCDs
    # each) get XCDs 0-3 and a third waits; team's time-sliced and whole-GPU pods would use held
    # XCDs, so the GPU is not theirs.
    sc = {"nodes": [{"name": "n0", "gpus": 1}], "queues": QUEUES, "objects": [XCD_HOLD],
          "pods": [{"name": "t-xcd", "replicas": 3, "annotations": XCD, "labels": {"kaiwo.ai/queue": "team"}},
                   {"name": "t-share", "annotations": {"kaiwo.ai/gpu-fraction": "0.25"},
                    "labels": {"kaiwo.ai/queue": "team"}},
                   {"name": "t-whole", "gpu": 1, "labels": {"kaiwo.ai/queue": "team"}}]}
    doc = schedule(sc)
    b, p = bound(doc), pending(doc)
    assert set(b) == {"default/t-xcd-00", "default/t-xcd-01"}
    assert sorted(x for k in b for x in b[k]["devices"][0]["xcds"]) == [0, 1, 2, 3]
    for k in ("default/t-xcd-02", "default/t-share"):
        assert p[k] == "0/1 nodes can take it: 1 GPUs held by a reservation", (k, p[k])
    assert p["default/t-whole"] == "0/1 nodes can take it: 1 not enough idle GPUs"  # XCD pods share it
    assert doc["reservations"][0]["devices"] == [{"node": "n0", "gpu": 0, "partition": 0, "xcds": [4, 5, 6, 7]}]


def test_xcd_hold_owner_takes_its_held_xcds_first():
    # research's XCD pods take XCDs 4-7 (held for it) before the open ones, which team then gets.
    sc = {"nodes": [{"name": "n0", "gpus": 1}], "queues": QUEUES, "objects": [XCD_HOLD],
          "pods": [{"name": "r-xcd", "replicas": 2, "annotations": XCD, "labels": {"kaiwo.ai/queue": "research"}},
                   {"name": "t-xcd", "replicas": 3, "annotations": XCD, "labels": {"kaiwo.ai/queue": "team"}}]}
    doc = schedule(sc)
    b = bound(doc)
    assert sorted(x for k in ("default/r-xcd-00", "default/r-xcd-01") for x in b[k]["devices"][0]["xcds"]) == [4, 5, 6, 7]
    assert sorted(x for k in b if k.startswith("default/t-") for x in b[k]["devices"][0]["xcds"]) == [0, 1, 2, 3]


def test_node_and_xcd_amounts_pick_free_capacity():
    # GPU 0 is busy: an amount of XCDs is taken from the idle GPUs first, lowest first.
    sc = {"nodes": [{"name": "n0", "gpus": 2}], "queues": QUEUES,
          "pods": [{"name": "busy", "gpu": 1, "nodeName": "n0"}],
          "objects": [reservation("x", {"queue": "research", "node": "n0", "xcds": 10})]}
    doc = schedule(sc)
    held = doc["reservations"][0]["devices"]
    assert [(d["gpu"], d["xcds"]) for d in held] == [(0, [0, 1]), (1, list(range(8)))]


def test_expired_device_reservation_releases_its_gpus():
    sc = {"nodes": [{"name": "n0", "gpus": 8}], "queues": QUEUES,
          "objects": [reservation("old", {"queue": "research", "node": "n0", "gpus": 4,
                                          "until": "2026-01-01T00:30:00Z"})],
          "pods": [{"name": "team", "replicas": 8, "gpu": 1, "labels": {"kaiwo.ai/queue": "team"}}]}
    doc = schedule(sc)
    assert len(doc["bindings"]) == 8 and doc["reservations"] == [] and doc["expiredReservations"] == ["old"]
    before = schedule(sc, now="2026-01-01T00:10:00Z")
    assert len(before["bindings"]) == 4


def test_backfill_onto_held_gpus_as_for_nodes():
    # Needed at 03:00, now 01:00: a pod expected to end within 2 h may use the held GPUs, a longer
    # one or one that declares no runtime may not.
    sc = {"nodes": [{"name": "n0", "gpus": 2}], "queues": QUEUES,
          "objects": [reservation("later", {"queue": "research", "node": "n0", "gpus": 2,
                                            "start": "2026-01-01T03:00:00Z"})],
          "pods": [{"name": "long", "gpu": 1, "labels": {"kaiwo.ai/queue": "team"},
                    "annotations": {"kaiwo.ai/expected-runtime": "3h"}},
                   {"name": "plain", "gpu": 1, "labels": {"kaiwo.ai/queue": "team"}},
                   {"name": "short", "gpu": 1, "labels": {"kaiwo.ai/queue": "team"},
                    "annotations": {"kaiwo.ai/expected-runtime": "90m"}}]}
    doc = schedule(sc)
    assert set(bound(doc)) == {"default/short"}
    assert "GPUs held by a reservation" in pending(doc)["default/long"]


def test_a_starving_pod_holds_only_the_gpus_it_needs():
    # n0 has 6 of 8 GPUs busy with pods of unknown runtime; n1 has 6 busy ones ending at 02:00 (soonest
    # free). big (4 GPUs) has starved 1 h while 1-GPU pods take what frees up: 4 GPUs of n1 are held
    # for it (its 2 idle ones first), n1's other GPUs and all of n0 stay open.
    sc = {"nodes": [{"name": "n0", "gpus": 8}, {"name": "n1", "gpus": 8}],
          "pods": [{"name": "busy0", "replicas": 6, "gpu": 1, "nodeName": "n0"},
                   {"name": "busy1", "replicas": 6, "gpu": 1, "nodeName": "n1",
                    "annotations": {"kaiwo.ai/expected-runtime": "1h"}},
                   {"name": "big", "gpu": 4, "created": "2026-01-01T00:00:00Z"},
                   {"name": "small", "replicas": 3, "gpu": 1, "created": "2026-01-01T00:59:00Z"}]}
    doc = schedule(sc, reserving=ReservationConfig(starvation=600))
    (r,) = doc["reservations"]
    assert r["name"] == "auto-default-big" and r["nodes"] == [] and r["automatic"]
    assert {d["node"] for d in r["devices"]} == {"n1"} and len(r["devices"]) == 4
    b = bound(doc)
    # The small pods take n0's two idle GPUs (binpack: fuller node) -- nothing of n1 was idle
    # but the held GPUs, so the third waits.
    assert len(b) == 2 and {x["node"] for x in b.values()} == {"n0"}
    assert "GPUs held by a reservation" in pending(doc)["default/small-02"]


@pytest.mark.parametrize("spec,field,words", [
    ({"node": "n0"}, "spec.nodes", "exactly one of"),
    ({"gpus": 2, "xcds": 2, "node": "n0"}, "spec.xcds", "exactly one of"),
    ({"xcds": 4}, "spec.xcds", "needs spec.node"),
    ({"node": "n0", "nodes": ["n0"]}, "spec.node", "goes with"),
    ({"node": "nx", "gpus": 1}, "spec.node", "no such node"),
    ({"node": "n0", "gpus": 9}, "spec.gpus", "7 GPUs not held"),
    ({"node": "n0", "gpus": 2000}, "spec.gpus", "between"),
    ({"node": "n0", "xcds": 65}, "spec.xcds", "56 XCDs not held"),
    ({"devices": []}, "spec.devices", "1 to"),
    ({"devices": "n0"}, "spec.devices", "must be a list"),
    ({"devices": [{"node": "n0"}]}, "spec.devices[0].gpu", ""),
    ({"devices": [{"node": "n0", "gpu": 8}]}, "spec.devices[0].gpu", "no GPU 8"),
    ({"devices": [{"node": "n0", "gpu": 1, "partition": 1}]}, "spec.devices[0].partition", "no GPU 1 partition 1"),
    ({"devices": [{"node": "n0", "gpu": 1, "xcds": [8]}]}, "spec.devices[0].xcds[0]", ""),
    ({"devices": [{"node": "n0", "gpu": 1, "xcds": [1, 1]}]}, "spec.devices[0].xcds[1]", "twice"),
    ({"devices": [{"node": "n0", "gpu": 1, "xcd": [1]}]}, "spec.devices[0].xcd", "unknown field"),
    ({"devices": [{"node": "n0", "gpu": 1}, {"node": "n0", "gpu": 1}]}, "spec.devices[1]", "earlier entry"),
    ({"devices": [{"node": "n0", "gpu": 0}]}, "spec.devices[0]", "reservation first"),
])
def test_bad_device_reservations_are_reported_with_their_field(spec, field, words):
    sc = {"nodes": [{"name": "n0", "gpus": 8}], "queues": QUEUES,
          "objects": [reservation("first", {"queue": "team", "node": "n0", "gpus": 1}, "2025-12-31T00:00:00Z"),
                      reservation("bad", {"queue": "research", **spec})]}
    doc = schedule(sc)
    (err,) = [e for e in doc["invalidReservations"] if e["kaiworeservation"] == "bad"]
    assert err["field"] == field and words in err["error"], err
    assert [r["name"] for r in doc["reservations"]] == ["first"]


def test_whole_node_reservation_refuses_a_partly_held_node():
    sc = {"nodes": [{"name": "n0", "gpus": 8}], "queues": QUEUES,
          "objects": [reservation("gpus", {"queue": "team", "node": "n0", "gpus": 1}, "2025-12-31T00:00:00Z"),
                      reservation("node", {"queue": "research", "nodes": ["n0"]})]}
    doc = schedule(sc)
    assert [(e["kaiworeservation"], e["field"]) for e in doc["invalidReservations"]] == [("node", "spec.nodes")]


def test_no_device_holds_means_no_kernel_inputs():
    """Whole-node reservations only: the kernel gets no device-hold keys (its unchanged fast path)."""
    from kaiwo_core.scheduling.reservations import Reservation, device_holds
    snap = kc.Snapshot.from_objects(scenario_objects({"nodes": [{"name": "n0", "gpus": 8}]}))
    assert device_holds(snap.cluster, [], [Reservation("r", owner_queue="q", nodes=["n0"])]) == {}


def test_input_order_does_not_change_device_holds():
    sc = {"nodes": [{"name": "n0", "gpus": 8}], "queues": QUEUES,
          "objects": [reservation("b", {"queue": "team", "node": "n0", "gpus": 3}),
                      reservation("a", {"queue": "research", "node": "n0", "gpus": 3})]}
    one = schedule(sc)
    two = schedule(dict(sc, objects=list(reversed(sc["objects"]))))
    assert one["reservations"] == two["reservations"]
    assert [d["gpu"] for d in one["reservations"][0]["devices"]] == [0, 1, 2]  # a: same age, first by name
    assert copy.deepcopy(one["reservations"][0]["name"]) == "a"


def test_invariant_checker_catches_a_pod_on_a_held_gpu():
    """The checker's reservation rule can fail: a team pod moved onto research's held GPU."""
    sc = {"nodes": [{"name": "n0", "gpus": 8}], "queues": QUEUES,
          "objects": [reservation("two", {"queue": "research", "node": "n0", "gpus": 2})],
          "pods": [{"name": "team", "gpu": 1, "labels": {"kaiwo.ai/queue": "team"}}]}
    objs = scenario_objects(sc)
    doc = kc.schedule(kc.Snapshot.from_objects(objs), now=epoch(NOW)).to_dict()
    assert not violations(objs, doc, epoch(NOW))
    doc["bindings"][0]["devices"][0]["gpu"] = 1
    assert [c for c, _ in violations(objs, doc, epoch(NOW))] == ["reservation"]


def test_invariant_checker_catches_a_named_gpu_reservation_not_in_force():
    sc = {"nodes": [{"name": "n0", "gpus": 8}], "queues": QUEUES,
          "objects": [reservation("named", {"queue": "research", "devices": [{"node": "n0", "gpu": 5}]})]}
    objs = scenario_objects(sc)
    doc = kc.schedule(kc.Snapshot.from_objects(objs), now=epoch(NOW)).to_dict()
    assert not violations(objs, doc, epoch(NOW))
    doc["reservations"][0]["devices"][0]["gpu"] = 4
    assert [c for c, _ in violations(objs, doc, epoch(NOW))] == ["reservation"]
