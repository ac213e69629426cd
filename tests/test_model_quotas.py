"""Per-GPU-model quotas (issue 11, item 2): scenarios worked out by hand, and validation.

Cluster: 2 MI300X nodes and 2 MI355X nodes, 8 GPUs each in SPX (16 GPUs of each model).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kaiwo_core as kc
from kaiwo_core.scheduling.queues import build_tree
from tests.dumpgen import next_cycle
from tests.scenario_loader import queue_obj, scenario_objects

NODES = [{"name": f"{m.lower()}-{i}", "model": m, "gpus": 8, "partition": "spx_nps1"}
         for m in ("MI300X", "MI355X") for i in range(2)]


def pods(queue, n, annotations=None, running_on=None):
    spec = {"name": f"{queue}-{running_on or 'p'}", "replicas": n, "gpu": 1, "cpu": 1, "memory": "1Gi",
            "labels": {"kaiwo.ai/queue": queue}, "annotations": annotations or {}}
    if running_on:
        spec["nodeName"] = running_on
    return spec


def run(objs):
    return kc.schedule(kc.Snapshot.from_objects(objs)).to_dict()


def by_model(objs, queue):
    """GPUs a queue holds per node model (1-GPU pods), from bound pods."""
    out = {}
    for o in objs:
        if o["kind"] == "Pod" and o["spec"].get("nodeName") and o["metadata"]["labels"]["kaiwo.ai/queue"] == queue:
            m = o["spec"]["nodeName"].split("-")[0].upper()
            out[m] = out.get(m, 0) + 1
    return out


def test_each_queue_ends_on_its_model():
    """A: 16 GPUs, all MI300X (MI355X limit 0); B: 16, all MI355X (MI300X limit 0). Both flood
    24 unconstrained 1-GPU pods. No pod names a model, yet each queue's pods are narrowed to the
    model whose limit has room: A gets the 16 MI300X, B the 16 MI355X, the rest stays pending with a
    GPU-model reason; the next cycle changes nothing."""
    sc = {"nodes": NODES, "queues": [
        {"name": "a", "resources": {"gpu": {"quota": 16}, "gpuModels": {
            "MI300X": {"quota": 16}, "MI355X": {"quota": 0, "limit": 0}}}},
        {"name": "b", "resources": {"gpu": {"quota": 16}, "gpuModels": {
            "MI355X": {"quota": 16}, "MI300X": {"quota": 0, "limit": 0}}}}],
        "pods": [pods("a", 24), pods("b", 24)]}
    objs = scenario_objects(sc)
    doc = run(objs)
    q = {x["name"]: x for x in doc["queues"]}
    assert q["a"]["deserved"]["gpuModels"] == {"MI300X": 0, "MI355X": 0}  # nothing fixed or running yet
    objs = next_cycle(objs, doc, 0.0)
    assert by_model(objs, "a") == {"MI300X": 16} and by_model(objs, "b") == {"MI355X": 16}
    doc = run(objs)
    assert not doc["bindings"] and not doc["preemptions"]
    q = {x["name"]: x for x in doc["queues"]}
    assert q["a"]["allocated"]["gpuModels"] == {"MI300X": 16, "MI355X": 0}
    assert q["b"]["allocated"]["gpuModels"] == {"MI300X": 0, "MI355X": 16}
    assert q["a"]["allocated"]["gpu"] == 16
    from kaiwo.cli import render_table
    table = render_table(doc)
    assert "GPU MODEL" in table and any(line.split()[:5] == ["a", "MI300X", "16", "16", "16"]
                                        for line in table.splitlines()), table


def test_per_model_limit_holds_for_unconstrained_and_fixed_pods():
    """Queue c: no gpu limit, MI355X limit 4. 6 MI355X GPUs already run (1 node), and c floods 10
    unconstrained pods and 3 pods fixed to MI355X. The MI355X limit is full: the fixed pods are
    held back by the limit (reason names gpu/MI355X), the unconstrained ones only go to MI300X."""
    sc = {"nodes": NODES, "queues": [
        {"name": "c", "resources": {"gpu": {"quota": -1}, "gpuModels": {"MI355X": {"limit": 6}}}}],
        "pods": [pods("c", 6, running_on="mi355x-0"), pods("c", 10),
                 {**pods("c", 3, {"kaiwo.ai/gpu-model": "MI355X"}), "name": "c-fixed"}]}
    objs = scenario_objects(sc)
    doc = run(objs)
    reasons = {p["pod"]: p["reason"] for p in doc["pending"]}
    fixed = [r for p, r in reasons.items() if "c-fixed" in p]
    assert len(fixed) == 3 and all("gpu/MI355X limit" in r for r in fixed), fixed
    objs = next_cycle(objs, doc, 0.0)
    assert by_model(objs, "c") == {"MI355X": 6, "MI300X": 10}


def test_unconstrained_pods_stop_at_the_limit_in_one_cycle():
    """Queue d: MI300X limit 4 (nothing else). Only MI300X nodes have room (the MI355X nodes are
    full of another queue's pods). 10 unconstrained pods: 4 placed on MI300X, 6 pending."""
    sc = {"nodes": NODES, "queues": [
        {"name": "d", "resources": {"gpu": {"quota": -1}, "gpuModels": {"MI300X": {"limit": 4}}}},
        {"name": "other", "resources": {"gpu": {"quota": -1}}}],
        "pods": [pods("other", 8, running_on="mi355x-0"), pods("other", 8, running_on="mi355x-1"), pods("d", 10)]}
    objs = scenario_objects(sc)
    doc = run(objs)
    assert len([b for b in doc["bindings"] if b["pod"].split("/")[-1].startswith("d-")]) == 4
    objs = next_cycle(objs, doc, 0.0)
    assert by_model(objs, "d") == {"MI300X": 4}
    assert not run(objs)["bindings"]


def test_reclaim_on_a_model_column():
    """A (gpu quota 16, no per-model amounts) holds all 32 GPUs: 16 on MI300X, 16 on MI355X. B has
    gpu quota 16 with MI355X quota 8 and 4 pending pods fixed to MI355X (kaiwo.ai/gpu-model). B is
    below its deserved gpu and MI355X; A is over its gpu quota. Reclaim takes exactly 4 of A's pods,
    all on MI355X nodes (never MI300X: B's pods cannot run there)."""
    sc = {"nodes": NODES, "queues": [
        {"name": "a", "resources": {"gpu": {"quota": 16}}},
        {"name": "b", "resources": {"gpu": {"quota": 16}, "gpuModels": {"MI355X": {"quota": 8}}}}],
        "pods": [pods("a", 8, running_on=n["name"]) for n in NODES]
        + [pods("b", 4, {"kaiwo.ai/gpu-model": "MI355X"})]}
    objs = scenario_objects(sc)
    doc = run(objs)
    victims = [p["pod"] for p in doc["preemptions"]]
    assert len(victims) == 4 and all("/a-mi355x" in v for v in victims), doc["preemptions"]
    assert all(p["node"].startswith("mi355x") for p in doc["preemptions"])
    q = {x["name"]: x for x in doc["queues"]}
    assert q["b"]["deserved"]["gpuModels"] == {"MI355X": 4}


def test_reclaim_for_an_unconstrained_pod_judges_the_node_model():
    """A (gpu quota 24, MI300X quota 8) holds all 32 GPUs, 16 per model: over its gpu quota, over its
    MI300X quota, and within its MI355X entitlement (unset: its gpu quota, capped by its demand
    there, 16). B (gpu quota 8, conservative reclaim: entitlement = deserved) has 2 unconstrained
    pending pods. A pod lacking GPUs on an MI355X node lacks gpu/MI355X too, where A stays at its
    deserved 16; on MI300X A is over its deserved 8: both victims are A's pods on MI300X nodes."""
    sc = {"nodes": NODES, "queues": [
        {"name": "a", "resources": {"gpu": {"quota": 24}, "gpuModels": {"MI300X": {"quota": 8}}}},
        {"name": "b", "resources": {"gpu": {"quota": 8}}, "fairness": {"reclaimStrategy": "conservative"}}],
        "pods": [pods("a", 8, running_on=n["name"]) for n in NODES] + [pods("b", 2)]}
    doc = run(scenario_objects(sc))
    victims = [p["pod"] for p in doc["preemptions"]]
    assert len(victims) == 2 and all("/a-mi300x" in v for v in victims), doc["preemptions"]


def q(name, resources, parent=None):
    return queue_obj({"name": name, "resources": resources, **({"parent": parent} if parent else {})})


@pytest.mark.parametrize("resources, field, value, why", [
    ({"gpu": {"quota": 8}, "gpuModels": {"MI300X": {"quota": 9}}}, "spec.resources.gpuModels.MI300X.quota", 9,
     "larger than the queue's gpu quota"),
    ({"gpu": {"quota": 8}, "gpuModels": {"MI300X": {"quota": 4, "limit": 2}}}, "spec.resources.gpuModels.MI300X.limit",
     2, "smaller than the quota"),
    ({"gpu": {"quota": 8}, "gpuModels": {"MI300X": {"qouta": 4}}}, "spec.resources.gpuModels.MI300X.qouta", 4,
     "unknown field"),
    ({"gpu": {"quota": 8}, "gpuModels": {"MI300X": {"overQuotaWeight": 0}}},
     "spec.resources.gpuModels.MI300X.overQuotaWeight", 0, ""),
    ({"gpu": {"quota": 8}, "gpuModels": {"MI300X": {"quota": "lots"}}}, "spec.resources.gpuModels.MI300X.quota",
     "lots", ""),
    ({"gpu": {"quota": 8}, "gpuModels": ["MI300X"]}, "spec.resources.gpuModels", None, ""),
])
def test_bad_per_model_amounts_are_named(resources, field, value, why):
    t = build_tree([q("x", resources)])
    assert "x" not in t.index
    (e,) = t.errors
    assert e.to_dict()["kaiwoqueue"] == "x" and e.field == field and why in e.message(), e.to_dict()
    if value is not None:
        assert e.value == value


def test_children_against_the_parent_and_defaults():
    t = build_tree([q("org", {"gpu": {"quota": 16, "limit": 24}, "gpuModels": {"MI300X": {"quota": 8}}}),
                    q("kid", {"gpu": {"quota": 10}, "gpuModels": {"MI300X": {"quota": 9}}}, "org"),
                    q("ok", {"gpu": {"quota": 12}}, "org"),
                    q("odd", {"gpu": {"quota": 1}, "gpuModels": {"H200": {"quota": 1}}})])
    (e,) = t.errors
    assert (e.name, e.field) == ("kid", "spec.resources.gpuModels.MI300X.quota")
    assert "org's MI300X quota" in e.message()
    assert t.models == ("H200", "MI300X")
    row = {n: i for i, n in enumerate(t.names)}
    # unset: the queue's own gpu quota, capped by the parent's amount for the model; limit and
    # weight: the queue's gpu ones
    assert t.model_quota[row["ok"]].tolist() == [12000, 8000]
    assert t.model_quota[row["org"]].tolist() == [16000, 8000]
    assert t.model_limit[row["org"]].tolist() == [24000, 24000]
    assert any("H200: unknown GPU model" in w for w in t.warnings)


def test_no_model_named_keeps_three_columns():
    t = build_tree([q("plain", {"gpu": {"quota": 8}})])
    assert t.n_res == 3 and t.wide("quota") is t.quota
    doc = run(scenario_objects({"nodes": NODES, "queues": [{"name": "plain", "resources": {"gpu": {"quota": 8}}}],
                                "pods": [pods("plain", 2)]}))
    assert all("gpuModels" not in x["deserved"] for x in doc["queues"])


@settings(max_examples=int(os.environ.get("KAIWO_MODEL_QUOTA_EXAMPLES", "15")), deadline=None,
          derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_per_model_limits_hold_over_cycles(seed):
    """Random queues with random per-model limits, pods unconstrained or fixed to a model, some
    from an empty cluster: after each of 3 cycles (bindings carried out, reclaim on),
    no queue holds more GPUs of a model than its limit for it, where the pods of this cycle's
    bindings made the difference (the invariant the narrowing and the ordering kernel keep)."""
    rng = np.random.default_rng(seed)
    models = ("MI300X", "MI355X")
    names = ["q0", "q1", "q2"]
    limits = {n: {m: int(rng.integers(0, 12)) for m in models if rng.random() < 0.6} for n in names}
    queues = [{"name": n, "resources": {"gpu": {"quota": int(rng.choice([0, 8, 16]))},
                                        "gpuModels": {m: {"limit": lim} for m, lim in limits[n].items()}}}
              for n in names]
    pod_specs = []
    for n in names:
        for k in range(int(rng.integers(1, 4))):
            fixed = rng.choice(["", *models])
            pod_specs.append({**pods(n, int(rng.integers(1, 12)), {"kaiwo.ai/gpu-model": fixed} if fixed else {}),
                              "name": f"{n}-{k}", "gpu": int(rng.choice([1, 1, 2]))})
    objs = scenario_objects({"nodes": NODES, "queues": queues, "pods": pod_specs})
    for _ in range(3):
        doc = run(objs)
        objs = next_cycle(objs, doc, 0.0)
        held = {}
        for o in objs:
            if o["kind"] == "Pod" and o["spec"].get("nodeName"):
                key = (o["metadata"]["labels"]["kaiwo.ai/queue"], o["spec"]["nodeName"].split("-")[0].upper())
                gpus = int(o["spec"]["containers"][0]["resources"]["limits"]["amd.com/gpu"])
                held[key] = held.get(key, 0) + gpus
        for n in names:
            for m, lim in limits[n].items():
                assert held.get((n, m), 0) <= lim, (n, m, held, limits)
