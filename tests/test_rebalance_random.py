"""The rebalancing planner on random dumps (tests/dumpgen.py, with random pods made migratable and
random measured loads): the compiled planner decides exactly what the plain-Python reference
(tests/naive_rebalance.py) does, and the plan carried out never overcommits (tests/invariants.py),
never loses a pod, never moves a pod that may not move, and moves each pod at most once."""
import copy
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kaiwo_core as kc
from kaiwo_core import _core
from kaiwo_core.scheduling.rebalance import RebalanceConfig, apply_plan, kernel_inputs, plan_rebalance
from tests.dumpgen import NOW, dumps, next_cycle
from tests.scenario_loader import node_obj, pod_objs
from tests.invariants import violations
from tests.naive_rebalance import plan_rebalance_ref

EXAMPLES = int(os.environ.get("KAIWO_REBALANCE_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize="KAIWO_REBALANCE_EXAMPLES" not in os.environ,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


SHAPES = [{"gpu": 1}, {"gpu": 2}, {"annotations": {"kaiwo.ai/gpu-fraction": "0.5"}},
          {"annotations": {"kaiwo.ai/gpu-fraction": "0.25", "kaiwo.ai/gpu-isolation": "xcd"}}, {"cpu": "8"}]
BIG = [{"gpu": 2}, {"gpu": 2}, {"gpu": 2}, {"gpu": 3}, {"gpu": 4}, {"cpu": "24"}, {"annotations": {"kaiwo.ai/gpu-fraction": "0.75"}}]


@st.composite
def packed(draw):
    """Small clusters packed by a first cycle, then pending pods that mostly fit nowhere: the
    situation consolidation is for. Running pods are placed by Kaiwo itself (valid assignments)."""
    nodes = [node_obj({"name": f"n{i}", "gpus": draw(st.integers(2, 4)), "cpu": 32,
                       "partition": draw(st.sampled_from(["spx_nps1", "spx_nps1", "dpx_nps1", "cpx_nps4"])),
                       "labels": {"pool": draw(st.sampled_from(["a", "b"]))}})
             for i in range(draw(st.integers(2, 4)))]
    pods = []
    for i in range(draw(st.integers(2, 7))):
        shape = dict(draw(st.sampled_from(SHAPES)))
        ann = dict(shape.pop("annotations", {}))
        if draw(st.integers(0, 9)) < 7:
            ann["kaiwo.ai/migratable"] = "true"
        if draw(st.integers(0, 9)) == 0:
            ann["kaiwo.ai/preemptible"] = "false"
        pods += pod_objs({"name": f"r{i}", "annotations": ann, "labels": {"app": draw(st.sampled_from(["x", "y"]))},
                          **shape}, len(pods))
    objs = nodes + pods
    # Spread: running pods scattered over the nodes, the fragmentation consolidation repairs.
    first = kc.schedule(kc.Snapshot.from_objects(copy.deepcopy(objs)), strategy="spread", now=NOW).to_dict()
    objs = next_cycle(objs, first, NOW)
    objs = [o for o in objs if o.get("kind") != "Pod" or o["spec"].get("nodeName")]  # the unplaced go
    for o in objs:
        if o.get("kind") == "Pod":
            o["status"] = {"phase": "Running"}
    late = []
    for i in range(draw(st.integers(1, 4))):
        spec = dict(draw(st.sampled_from(BIG)))
        ann = dict(spec.pop("annotations", {}))
        if draw(st.integers(0, 3)) == 0:
            spec["nodeSelector"] = {"pool": draw(st.sampled_from(["a", "b"]))}
        if draw(st.integers(0, 4)) == 0:
            ann["kaiwo.ai/gang"] = "g"
            spec["replicas"] = 2
        late += pod_objs({"name": f"late{i}", "annotations": ann, **spec}, 100 + 10 * i)
    objs += late
    if draw(st.booleans()):
        objs.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                     "metadata": {"name": "x", "namespace": "default"},
                     "spec": {"selector": {"matchLabels": {"app": "x"}},
                              "maxUnavailable": draw(st.integers(0, 2))}})
    return objs


@st.composite
def cases(draw):
    objs = draw(packed() if draw(st.integers(0, 3)) else dumps(duplicate_nodes=False))
    pods = [o for o in objs if isinstance(o, dict) and o.get("kind") == "Pod"
            and isinstance(o.get("spec"), dict) and o["spec"].get("nodeName")]
    for o in pods:  # some running pods may move
        if draw(st.booleans()) and isinstance(o.get("metadata"), dict):
            o["metadata"]["annotations"] = {**(o["metadata"].get("annotations") or {}), "kaiwo.ai/migratable": "true"}
    n_nodes = sum(1 for o in objs if isinstance(o, dict) and o.get("kind") == "Node")
    load = draw(st.none() | st.lists(st.sampled_from([0.0, 0.5, 0.95, 1.0, float("nan")]),
                                     min_size=n_nodes, max_size=n_nodes))
    config = RebalanceConfig(max_moves=draw(st.integers(0, 6)), max_moves_per_queue=draw(st.integers(1, 4)),
                             max_units=draw(st.integers(1, 6)), hot_threshold=0.9,
                             defrag_min_gain=draw(st.none() | st.sampled_from([0.0, 50.0, 400.0])))
    return objs, load, config


def same(a, b):
    return {k: np.asarray(v).tolist() for k, v in a.items()} == {k: np.asarray(v).tolist() for k, v in b.items()}


@SETTINGS
@given(cases())
def test_plan_matches_reference_and_is_safe(case):
    objs, load, config = case
    snap = kc.Snapshot.from_objects(copy.deepcopy(objs))
    if load is not None and len(load) != snap.cluster.n_nodes:
        load = None  # a node left out as invalid: no metrics this time
    ki = kernel_inputs(snap, config, load=load, now=NOW)
    out = _core.plan_rebalance(*ki.args())
    ref = plan_rebalance_ref(*ki.args())
    assert same(out, ref)

    plan = plan_rebalance(snap, config, load=load, now=NOW)
    # The same plan for the objects in another order (load stays per node, by name).
    shuffled = kc.Snapshot.from_objects(copy.deepcopy(objs[::-1]))
    if load is not None:
        by_name = dict(zip(snap.cluster.names, load))
        load2 = [by_name[n] for n in shuffled.cluster.names]
    else:
        load2 = None
    again = plan_rebalance(shuffled, config, load=load2, now=NOW)
    assert again.moves == plan.moves and again.unlocks == plan.unlocks
    moved_rows = out["pod"].tolist()
    assert len(set(moved_rows)) == len(moved_rows) <= config.max_moves
    assert all(ki.running["movable"][v] == 1 for v in moved_rows)
    moved = apply_plan(objs, plan)
    doc = kc.schedule(kc.Snapshot.from_objects(copy.deepcopy(moved)), now=NOW).to_dict()
    found = violations(moved, doc, NOW)
    assert not found, "\n".join(f"{c}: {m}" for c, m in found)
    before = kc.schedule(kc.Snapshot.from_objects(copy.deepcopy(objs)), now=NOW).to_dict()
    # Never loses a pod: the same running pods, each on a node of the cluster.
    assert sorted(r["pod"] for r in doc["running"]) == sorted(r["pod"] for r in before["running"])
    assert set(plan.unlocks) <= {b["pod"] for b in doc["bindings"]} | {p["pod"] for p in doc["pending"]}
