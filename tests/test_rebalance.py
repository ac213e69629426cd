"""Rebalancing planner: hand-checked scenarios through ``kaiwo rebalance`` (tests/scenarios/rebalance.yaml),
hot-spot relief only with metrics, hostile PDBs and jobs, and the plan carried out: ``kaiwo schedule``
on the moved state binds what the plan unlocked, and nothing is overcommitted (tests/invariants.py)."""
import io
import re
import json
from collections import Counter
from contextlib import redirect_stdout

import numpy as np
import pytest
import yaml

import kaiwo_core as kc
from kaiwo.cli import main
from kaiwo_core.scheduling.rebalance import RebalanceConfig, RebalancePlan, apply_plan
from tests import invariants
from tests.scenario_loader import load, scenario_objects

SCENARIOS = load("rebalance.yaml")


def rebalance_cli(tmp_path, objs, *extra):
    dump = tmp_path / "dump.yaml"
    dump.write_text(yaml.safe_dump_all(objs))
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["rebalance", str(dump), "-o", "json", *extra]) == 0
    return json.loads(buf.getvalue())


def carried_out(objs, doc):
    """The objects after the plan's moves, and ``kaiwo schedule``'s decisions on them."""
    moved = apply_plan(objs, RebalancePlan(moves=doc["moves"]))
    return moved, kc.schedule(kc.Snapshot.from_objects(moved)).to_dict()


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_scenario(sc, tmp_path):
    objs = scenario_objects(sc)
    doc = rebalance_cli(tmp_path, objs)
    exp = sc["expect"]
    moves = doc["moves"]
    if "moves" in exp:
        assert len(moves) == exp["moves"]
    if "max_moves" in exp:
        assert 0 < len(moves) <= exp["max_moves"]
    if "moved_from" in exp:
        assert Counter(m["from"]["node"] for m in moves) == exp["moved_from"]
    if "unlocks" in exp:
        assert doc["unlocks"] == exp["unlocks"]
    assert all(m["reason"] == "consolidation" and m["unlocks"] == doc["unlocks"] for m in moves)
    assert len({m["pod"] for m in moves}) == len(moves)            # a pod moves at most once
    moved, after = carried_out(objs, doc)
    assert invariants.violations(moved, after, now=0.0) == []
    bound = {b["pod"] for b in after["bindings"]}
    assert set(doc["unlocks"]) <= bound                            # what was unlocked binds


def test_non_migratable_pods_never_move(tmp_path):
    sc = SCENARIOS[2]  # node b's pods are not migratable
    doc = rebalance_cli(tmp_path, scenario_objects(sc))
    assert doc["moves"] and not any(m["pod"].startswith("default/small-b") for m in doc["moves"])


HOT = {"nodes": [{"name": "a", "gpus": 8}, {"name": "b", "gpus": 8}],
       "pods": [{"name": "busy", "replicas": 6, "gpu": 1, "nodeName": "a",
                 "annotations": {"kaiwo.ai/migratable": "true"}},
                {"name": "calm", "gpu": 1, "nodeName": "b", "annotations": {"kaiwo.ai/migratable": "true"}}]}


def scrapes(path, activity):
    lines = []
    for t in (1000, 1015):
        lines.append(f"# SCRAPE {t}")
        for node, pct in activity.items():
            lines += [f'gpu_gfx_activity{{hostname="{node}",gpu_id="{g}",gpu_partition_id="0"}} {pct}'
                      for g in range(8)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_hot_node_relieved_only_with_metrics_saying_so(tmp_path):
    objs = scenario_objects(HOT)
    # No metrics: nothing is hot, nothing moves.
    assert rebalance_cli(tmp_path, objs)["moves"] == []
    # Metrics with node a at 50%: not hot.
    cool = scrapes(tmp_path / "cool.prom", {"a": 50, "b": 10})
    assert rebalance_cli(tmp_path, objs, "--metrics", cool)["moves"] == []
    # a at 99% of 6 GPUs held: moving one 1-GPU pod brings the estimate to 0.99 * 5/6 = 0.825 <= 0.9.
    hot = scrapes(tmp_path / "hot.prom", {"a": 99, "b": 10})
    doc = rebalance_cli(tmp_path, objs, "--metrics", hot)
    assert [(m["from"]["node"], m["to"]["node"], m["reason"]) for m in doc["moves"]] == [("a", "b", "hot-spot")]
    assert doc["stats"]["hotNodes"] == 1
    # With a stricter threshold (0.5): 0.99 * k/6 <= 0.5 needs k = 3 left, so 3 moves.
    doc = rebalance_cli(tmp_path, objs, "--metrics", hot, "--hot-threshold", "0.5")
    assert len(doc["moves"]) == 3 and {m["to"]["node"] for m in doc["moves"]} == {"b"}
    moved, after = carried_out(objs, doc)
    assert invariants.violations(moved, after, now=0.0) == []


def test_missing_node_metrics_warn_and_stay_neutral(tmp_path):
    objs = scenario_objects(HOT)
    only_b = scrapes(tmp_path / "b.prom", {"b": 99})
    doc = rebalance_cli(tmp_path, objs, "--metrics", only_b)
    assert any(w.startswith("node a: gpu_gfx_activity missing or stale") for w in doc["warnings"])
    # b is hot but its one pod cannot go to a? It can: a has 2 idle GPUs. a itself is neutral.
    assert [(m["from"]["node"], m["to"]["node"]) for m in doc["moves"]] == [("b", "a")]


@pytest.mark.parametrize("pdb, why", [
    ({"spec": {"selector": {"matchLabels": {"app": "serve"}}, "minAvailable": "150%"}}, "between 0% and 100%"),
    ({"spec": {"selector": {"matchLabels": {"app": "serve"}}, "minAvailable": 1, "maxUnavailable": 1}},
     "cannot both be set"),
    ({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}, "minAvailable": 1}},
     "must be one of In"),
    ({"spec": {"selector": "app=serve", "minAvailable": 1}}, "must be a map"),
    ({"spec": {"selector": {}, "maxUnavailable": 1}, "status": {"disruptionsAllowed": -3}}, "between 0 and"),
    ({"spec": []}, "must be a map"),
])
def test_bad_pdbs_are_named_and_left_out(tmp_path, pdb, why):
    sc = dict(SCENARIOS[0])
    obj = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": "bad", "namespace": "default"}, **pdb}
    doc = rebalance_cli(tmp_path, scenario_objects(sc) + [obj])
    [err] = doc["invalidObjects"]
    assert err["poddisruptionbudget"] == "default/bad" and why in err["error"]
    assert doc["unlocks"] == ["default/big"]   # the rest of the plan stands


def test_bad_migratable_values_never_move(tmp_path):
    sc = {**SCENARIOS[0], "pods": [
        {"name": "small-a", "replicas": 4, "gpu": 1, "nodeName": "a", "annotations": {"kaiwo.ai/migratable": "yes"}},
        {"name": "small-b", "replicas": 4, "gpu": 1, "nodeName": "b", "annotations": {"kaiwo.ai/migratable": "yes"}},
        {"name": "big", "gpu": 8}]}
    doc = rebalance_cli(tmp_path, scenario_objects(sc))
    assert doc["moves"] == []
    assert any("kaiwo.ai/migratable = 'yes'" in w for w in doc["warnings"])


@pytest.mark.parametrize("quota, moves", [(8, 0), (5, 0), (4, 4), (0, 4)])
def test_queue_never_taken_below_deserved(tmp_path, quota, moves):
    # q holds 8 GPUs and deserves `quota`: moves may spend only the 8 - quota above it (a moving
    # pod is away while it restarts), and the plan needs 4 one-GPU moves.
    sc = {**SCENARIOS[0],
          "queues": [{"name": "q", "resources": {"gpu": {"quota": quota}}}],
          "pods": [{**p, "labels": {"kaiwo.ai/queue": "q"}} for p in SCENARIOS[0]["pods"]]}
    doc = rebalance_cli(tmp_path, scenario_objects(sc))
    assert len(doc["moves"]) == moves


def test_max_moves_and_min_runtime(tmp_path):
    objs = scenario_objects(SCENARIOS[0])
    assert rebalance_cli(tmp_path, objs, "--max-moves", "3")["moves"] == []          # needs 4
    assert rebalance_cli(tmp_path, objs, "--max-moves-per-queue", "3")["moves"] == []
    assert rebalance_cli(tmp_path, objs, "--min-runtime", "1e9")["moves"] == []


def test_binding_refuses_bad_input_naming_the_key():
    from kaiwo_core import _core
    from kaiwo_core.scheduling.rebalance import kernel_inputs
    snap = kc.Snapshot.from_objects(scenario_objects(SCENARIOS[0]))
    ki = kernel_inputs(snap)
    cluster, running, pending, config = ki.args()
    cases = [
        ("running", "node", lambda a: a.__setitem__(0, 99), "running['node']: index 99 out of range"),
        ("running", "movable", lambda a: a.__setitem__(0, 2), "running['movable']: must be 0 or 1"),
        ("running", "asg_dev", lambda a: a.__setitem__(0, a[-1]), "running['asg_dev']"),
        ("pending", "kind", lambda a: a.__setitem__(0, 9), "pending['kind']: unknown kind"),
        ("config", "max_moves", lambda a: a.__setitem__(0, -1), "config['max_moves']: must be in"),
    ]
    dicts = {"running": running, "pending": pending, "config": config}
    for which, key, spoil, message in cases:
        d = {k: {kk: np.array(vv, copy=True) for kk, vv in v.items()} for k, v in dicts.items()}
        spoil(d[which][key])
        with pytest.raises(ValueError, match=re.escape(message)):
            _core.plan_rebalance(cluster, d["running"], d["pending"], d["config"])
    with pytest.raises(ValueError, match=re.escape("running['typo']: unknown key")):
        _core.plan_rebalance(cluster, {**running, "typo": np.zeros(1)}, pending, config)
    with pytest.raises(ValueError, match=re.escape("config['load']: expected length")):
        _core.plan_rebalance(cluster, running, pending, {**config, "load": np.zeros(7)})
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match=re.escape("config['defrag_min_gain']: must be a finite number >= 0")):
            _core.plan_rebalance(cluster, running, pending, {**config, "defrag_min_gain": np.array([bad])})
    with pytest.raises(ValueError, match="defrag_min_gain: -1 must be"):
        RebalanceConfig(defrag_min_gain=-1)


# Two 8-GPU nodes, each with a pinned 1-GPU pod and a migratable half-GPU pod on a device of its
# own. The typical pod (running pods' shapes, 2 each: weight 0.5) is half a GPU or a whole GPU.
# F by hand: on each node the half-used device's 500 free milli cannot host a whole GPU -> 0.5 x 500
# = 250; the cluster's F = 500. Moving half-a onto b's half-used device (binpack: already shared,
# least free) fills it (0 free) and leaves a's device idle: F = 0 on both, a gain of 500. half-b
# onto a gains the same; the tie goes to the lower row (half-a). After it no move gains.
DEFRAG = yaml.safe_load("""
nodes: [{name: a, gpus: 8}, {name: b, gpus: 8}]
pods:
  - {name: half-a, nodeName: a, annotations: {kaiwo.ai/gpu-fraction: "0.5", kaiwo.ai/migratable: "true"}}
  - {name: half-b, nodeName: b, annotations: {kaiwo.ai/gpu-fraction: "0.5", kaiwo.ai/migratable: "true"}}
  - {name: whole-a, gpu: 1, nodeName: a}
  - {name: whole-b, gpu: 1, nodeName: b}
""")


def test_defragmentation_moves_a_half_gpu_pod_onto_the_other_half_used_device(tmp_path):
    objs = scenario_objects(DEFRAG)
    assert rebalance_cli(tmp_path, objs)["moves"] == []            # off unless asked for
    doc = rebalance_cli(tmp_path, objs, "--defrag-min-gain", "500")
    assert [(m["pod"], m["from"]["node"], m["to"]["node"], m["reason"]) for m in doc["moves"]] == [
        ("default/half-a", "a", "b", "defragmentation")]
    assert doc["stats"]["fragmentation"] == {"before": 500.0, "after": 0.0}
    to = doc["moves"][0]["to"]["devices"]
    assert [(d["gpu"], d["fraction"]) for d in to] == [(0, 0.5)]   # b's GPU 0, which half-b half uses
    moved, after = carried_out(objs, doc)
    assert invariants.violations(moved, after, now=0.0) == []
    where = {r["pod"]: (r["node"], [d["gpu"] for d in r["devices"]]) for r in after["running"]}
    assert where["default/half-a"] == where["default/half-b"] == ("b", [0])
    assert sorted(r["pod"] for r in after["running"]) == sorted(f"default/{p['name']}" for p in DEFRAG["pods"])


def test_defragmentation_threshold_stops_moves_that_gain_too_little(tmp_path):
    objs = scenario_objects(DEFRAG)
    doc = rebalance_cli(tmp_path, objs, "--defrag-min-gain", "501")  # the best move gains 500
    assert doc["moves"] == [] and doc["stats"]["fragmentation"] == {"before": 500.0, "after": 500.0}
