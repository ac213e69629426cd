"""Hand-checked scenarios through the same path ``kaiwo schedule`` takes (objects -> JSON dict)."""
from collections import Counter

import pytest

import kaiwo_core as kc
from tests.scenario_loader import load, scenario_objects

SCENARIOS = load("placement.yaml") + load("queues.yaml")


def run(sc):
    snap = kc.Snapshot.from_objects(scenario_objects(sc))
    return kc.schedule(snap, strategy=sc.get("strategy", "binpack")).to_dict()


def check_exactly_once(sc, doc):
    """Every input pod exactly once (pods Kaiwo creates for KaiwoJobs come on top)."""
    seen = Counter(e["pod"] for key in ("bindings", "pending", "rejected", "running") for e in doc[key])
    expected = {f"{o['metadata']['namespace']}/{o['metadata']['name']}"
                for o in scenario_objects(sc) if o["kind"] == "Pod"}
    assert expected <= set(seen)
    jobs = {f"{o['metadata']['namespace']}/{o['metadata']['name']}-"
            for o in scenario_objects(sc) if o["kind"] == "KaiwoJob"}
    assert all(p in expected or any(p.startswith(j) for j in jobs) for p in seen)
    assert max(seen.values(), default=1) == 1


def subset(expected: dict, actual: dict) -> bool:
    return all(actual.get(k) == v for k, v in expected.items())


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_scenario(sc):
    doc = run(sc)
    exp = sc["expect"]
    check_exactly_once(sc, doc)
    bound = {b["pod"]: b for b in doc["bindings"]}
    pending = {p["pod"]: p["reason"] for p in doc["pending"]}
    rejected = {r["pod"]: r for r in doc["rejected"]}
    running = {r["pod"]: r for r in doc["running"]}
    if "bound_count" in exp:
        assert len(bound) == exp["bound_count"], pending
    for pod, node in exp.get("bound", {}).items():
        assert pod in bound, pending.get(pod) or rejected.get(pod)
        assert bound[pod]["node"] == node
    for pod in exp.get("pending", []):
        assert pod in pending
    for pod, text in {**exp.get("pending_reason", {}), **exp.get("pending_reason_contains", {})}.items():
        assert pod in pending, bound.get(pod)
        assert text in pending[pod]
    for pod, field in exp.get("rejected", {}).items():
        assert pod in rejected, (bound.get(pod), pending.get(pod))
        assert rejected[pod]["field"] == field
        assert rejected[pod]["error"]
    for pod, devs in exp.get("devices", {}).items():
        got = bound[pod]["devices"]
        assert len(got) == len(devs) and all(subset(e, g) for e, g in zip(devs, got)), got
    for pod, mib in exp.get("device_memory", {}).items():
        assert all(d["memoryMiB"] == mib for d in bound[pod]["devices"])
    for pod, n in exp.get("device_xcds_count", {}).items():
        assert all(len(d["xcds"]) == n for d in bound[pod]["devices"])
    if "pods_per_device" in exp:
        per = Counter((b["node"], d["gpu"], d["partition"]) for b in bound.values() for d in b["devices"])
        assert set(per.values()) == {exp["pods_per_device"]}
    if exp.get("disjoint_xcds"):
        held = Counter((b["node"], d["gpu"], x) for b in bound.values() for d in b["devices"] for x in d["xcds"])
        assert max(held.values()) == 1
    if "gpus" in exp:
        assert doc["stats"]["gpus"] == exp["gpus"]
    for node, field in exp.get("invalid_nodes", {}).items():
        match = [e for e in doc["invalidNodes"] if e["node"] == node]
        assert match and match[0]["field"] == field
    for pod, node in exp.get("running", {}).items():
        assert running[pod]["node"] == node
    for pod, devs in exp.get("running_devices", {}).items():
        got = running[pod]["devices"]
        assert len(got) == len(devs) and all(subset(e, g) for e, g in zip(devs, got)), got
    if "count_per_queue" in exp:
        queue_of = {f"{o['metadata']['namespace']}/{o['metadata']['name']}":
                    o["metadata"]["labels"].get("kaiwo.ai/queue", "default")
                    for o in scenario_objects(sc) if o["kind"] == "Pod"}
        got = Counter(queue_of[p] for p in list(bound) + list(running))
        assert {q: got.get(q, 0) for q in exp["count_per_queue"]} == exp["count_per_queue"], pending
    status = {q["name"]: q for q in doc["queues"]}
    for q, gpus in exp.get("queue_fair_share_gpu", {}).items():
        assert status[q]["fairShare"]["gpu"] == gpus
    for q, gpus in exp.get("queue_deserved_gpu", {}).items():
        assert status[q]["deserved"]["gpu"] == gpus
    for q, field in exp.get("invalid_queues", {}).items():
        match = [e for e in doc["invalidQueues"] if e["kaiwoqueue"] == q]
        assert match and match[0]["field"] == field, doc["invalidQueues"]
    for prefix, n in exp.get("bound_prefix_nodes", {}).items():
        assert sum(p.startswith(prefix) for p in bound) == n, pending
    for job, field in exp.get("invalid_jobs", {}).items():
        match = [e for e in doc["invalidJobs"] if e["kaiwojob"] == job]
        assert match and match[0]["field"] == field, doc["invalidJobs"]
    if "reservations" in exp:
        assert [r["name"] for r in doc["reservations"]] == exp["reservations"]
    for name, nodes in exp.get("reserved_nodes", {}).items():
        assert next(r for r in doc["reservations"] if r["name"] == name)["nodes"] == nodes
    if "expired_reservations" in exp:
        assert doc["expiredReservations"] == exp["expired_reservations"]
    for name, field in exp.get("invalid_reservations", {}).items():
        match = [e for e in doc["invalidReservations"] if e["kaiworeservation"] == name]
        assert match and match[0]["field"] == field, doc["invalidReservations"]
    if "preemption_count" in exp:
        assert len(doc["preemptions"]) == exp["preemption_count"], doc["preemptions"]
        assert len({p["pod"] for p in doc["preemptions"]}) == exp["preemption_count"]
    if "preemption_reason_contains" in exp:
        assert all(exp["preemption_reason_contains"] in p["reason"] for p in doc["preemptions"])
