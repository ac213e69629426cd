"""Load-aware placement (strategy ``load``) and gangs by topology (issue 12, items 2 and 5).

Scenarios worked out by hand through ``kaiwo schedule`` (hot node avoided when everything else ties,
load weight 0 = allocation only; a 4 x 2-GPU gang on one node; a gang within one zone), the
kernel against tests/naive.py on random inputs (tests/test_placement_kernel.py draws both the load
strategy and node domains for gangs; here: weight 0 is spread bit for bit), and the settings'
validation."""
import io
import json
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import yaml
from hypothesis import given, settings

from kaiwo.cli import main
from kaiwo_core import _core
from kaiwo_core.plugins import PluginError, create
from kaiwo_core.scheduling.config import ConfigError, decode
from tests.naive import place_batch_ref
from tests.scenario_loader import scenario_objects
from tests.test_placement_kernel import batches, clusters
from tests.test_rebalance import scrapes  # 8 GPUs per node at a given gfx activity

GANG = {"kaiwo.ai/gang": "train"}
ZONE = "topology.kubernetes.io/zone"


def schedule_cli(tmp_path, objs, *extra, rc=0):
    dump = tmp_path / "dump.yaml"
    dump.write_text(yaml.safe_dump_all(objs))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert main(["schedule", str(dump), "-o", "json", *extra]) == rc, err.getvalue()
    return json.loads(out.getvalue()) if rc == 0 else err.getvalue()


def nodes_of(doc, prefix):
    return sorted(b["node"] for b in doc["bindings"] if b["pod"].startswith(f"default/{prefix}"))


# ------------------------------------------------------------------------------------- load

THREE = {"nodes": [{"name": n, "gpus": 8} for n in "abc"], "pods": [{"name": "job", "gpu": 1}]}


def test_hot_node_avoided_when_everything_else_ties(tmp_path):
    objs = scenario_objects(THREE)
    # Three empty, identical nodes: allocation ties, so the lowest index wins (a) ...
    assert nodes_of(schedule_cli(tmp_path, objs, "--strategy", "spread"), "job") == ["a"]
    assert nodes_of(schedule_cli(tmp_path, objs, "--strategy", "load"), "job") == ["a"]
    # ... unless a is measured hot: load 0.99 on a, 0.10 on b and c -> b (then the index).
    hot_a = scrapes(tmp_path / "hot.prom", {"a": 99, "b": 10, "c": 10})
    doc = schedule_cli(tmp_path, objs, "--strategy", "load", "--metrics", hot_a)
    assert nodes_of(doc, "job") == ["b"]
    # Only c measured (cool): a and b are unmeasured, neutral (load 0), so a again, with warnings.
    only_c = scrapes(tmp_path / "c.prom", {"c": 5})
    doc = schedule_cli(tmp_path, objs, "--strategy", "load", "--metrics", only_c)
    assert nodes_of(doc, "job") == ["a"]
    assert any(w.startswith("node a: gpu_gfx_activity missing or stale") for w in doc["warnings"])


def test_load_weight_zero_is_allocation_only(tmp_path):
    # a half full, b empty and hot: allocation says b (spread), load says a.
    objs = scenario_objects({"nodes": [{"name": "a", "gpus": 8}, {"name": "b", "gpus": 8}],
                             "pods": [{"name": "run", "replicas": 4, "gpu": 1, "nodeName": "a"},
                                      {"name": "job", "gpu": 1}]})
    hot_b = scrapes(tmp_path / "hot.prom", {"a": 0, "b": 100})
    # a after: 5/8 GPUs + load 0 = 0.625; b after: 1/8 + load 1.0 = 1.125 -> a.
    assert nodes_of(schedule_cli(tmp_path, objs, "--strategy", "load", "--metrics", hot_b), "job") == ["a"]
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("apiVersion: kaiwo.ai/v1alpha1\nkind: KaiwoSchedulerConfiguration\nstrategy: load\n"
                   "load: {allocationWeight: 1, loadWeight: 0}\n")
    assert nodes_of(schedule_cli(tmp_path, objs, "--config", str(cfg), "--metrics", hot_b), "job") == ["b"]
    assert nodes_of(schedule_cli(tmp_path, objs, "--strategy", "spread"), "job") == ["b"]


def test_metrics_need_the_load_strategy_and_a_readable_source(tmp_path):
    objs = scenario_objects(THREE)
    err = schedule_cli(tmp_path, objs, "--metrics", str(tmp_path / "x.prom"), rc=2)
    assert "--metrics is the measured load of the load strategy" in err
    err = schedule_cli(tmp_path, objs, "--strategy", "load", "--metrics", str(tmp_path / "missing.prom"), rc=2)
    assert "missing.prom" in err and "Traceback" not in err


@settings(max_examples=150, deadline=None)
@given(data=clusters().flatmap(lambda c: batches(len(c["node_cpu_free"])).map(lambda b: (c, b))))
def test_load_with_weight_zero_is_spread(data):
    cluster, batch = data
    n = len(cluster["node_cpu_free"])
    spread = _core.place_batch({k: v.copy() for k, v in cluster.items()}, dict(batch), _core.STRATEGY_SPREAD)
    b = dict(batch, node_load=np.linspace(0.0, 1.0, n), load_weights=np.array([1.0, 0.0]))
    load = _core.place_batch({k: v.copy() for k, v in cluster.items()}, b, _core.STRATEGY_LOAD)
    for k in spread:
        np.testing.assert_array_equal(spread[k], load[k], err_msg=k)


def test_load_settings_are_validated():
    for bad in (-1.0, None, float("inf"), float("nan")):
        with pytest.raises(PluginError, match="load_weight"):
            create("load", load_weight=bad)
    with pytest.raises(PluginError, match="node 'a'"):
        create("load", load={"a": float("nan")})
    with pytest.raises(ConfigError, match=r"load.loadWeight: -2: must be >= 0"):
        decode({"apiVersion": "kaiwo.ai/v1alpha1", "kind": "KaiwoSchedulerConfiguration",
                "load": {"loadWeight": -2}})
    cfg = decode({"apiVersion": "kaiwo.ai/v1alpha1", "kind": "KaiwoSchedulerConfiguration", "strategy": "load",
                  "load": {"allocationWeight": 2, "loadWeight": 0.5}})
    assert cfg.pipeline().strategy.config == {"alloc_weight": 2.0, "load_weight": 0.5, "load": None}


def test_binding_refuses_bad_load_inputs():
    c = {"node_cpu_free": np.array([1000], np.int64), "node_mem_free": np.array([1000], np.int64),
         "node_pods_free": np.array([5], np.int64), "node_cpu_cap": np.array([1000], np.int64),
         "node_mem_cap": np.array([1000], np.int64), "node_dev_start": np.array([0, 0], np.int64),
         "dev_gpu": np.zeros(0, np.int32), "dev_mem_cap": np.zeros(0, np.int64),
         "dev_xcd_mask": np.zeros(0, np.uint32), "dev_xcds_per_domain": np.zeros(0, np.int32),
         "dev_milli_free": np.zeros(0, np.int64), "dev_mem_free": np.zeros(0, np.int64),
         "dev_xcd_free": np.zeros(0, np.uint32), "dev_state": np.zeros(0, np.int8)}
    b = {"cpu": np.array([1], np.int64), "mem": np.array([1], np.int64), "kind": np.zeros(1, np.int8),
         "count": np.zeros(1, np.int32), "milli": np.zeros(1, np.int32), "gpu_mem": np.zeros(1, np.int64),
         "exclusive": np.zeros(1, np.uint8), "cls": np.zeros(1, np.int32), "class_mask": np.ones((1, 1), np.uint8)}
    for key, value, why in (("node_load", np.array([np.inf]), "node_load"),
                            ("node_load", np.array([0.1, 0.2]), "expected length 1"),
                            ("load_weights", np.array([1.0, -1.0]), "load_weights"),
                            ("node_domain", np.array([1], np.int32), "out of range")):
        with pytest.raises(ValueError, match=why):
            _core.place_batch({k: v.copy() for k, v in c.items()}, dict(b, **{key: value}), _core.STRATEGY_LOAD)


# ------------------------------------------------------------------------------------ gangs

def test_gang_of_four_two_gpu_pods_lands_on_one_node(tmp_path):
    # a has 2 idle GPUs, b 6, c 8. Before: binpack put member 1 on a (fullest), the rest on b: 1 + 3.
    # Now: a takes 1 member, b 3, c all 4 -> c, and the others follow member 1 there.
    objs = scenario_objects({"nodes": [{"name": n, "gpus": 8} for n in "abc"],
                             "pods": [{"name": "run-a", "replicas": 6, "gpu": 1, "nodeName": "a"},
                                      {"name": "run-b", "replicas": 2, "gpu": 1, "nodeName": "b"},
                                      {"name": "train", "replicas": 4, "gpu": 2, "annotations": GANG}]})
    for strategy in ("binpack", "spread", "frag", "load"):
        assert nodes_of(schedule_cli(tmp_path, objs, "--strategy", strategy), "train") == ["c"] * 4, strategy


def test_gang_fills_its_node_then_the_best_hole(tmp_path):
    # 5 x 2 GPUs on a (2 idle), b and c (8 idle): b takes 4 (c ties, lower index), the fifth no
    # longer fits b and goes where one member fits best: a (fullest under binpack).
    objs = scenario_objects({"nodes": [{"name": n, "gpus": 8} for n in "abc"],
                             "pods": [{"name": "run-a", "replicas": 6, "gpu": 1, "nodeName": "a"},
                                      {"name": "train", "replicas": 5, "gpu": 2, "annotations": GANG}]})
    assert nodes_of(schedule_cli(tmp_path, objs), "train") == ["a"] + ["b"] * 4


ZONES = {"nodes": [{"name": "a", "gpus": 8, "labels": {ZONE: "zone-1"}},
                   {"name": "c", "gpus": 8, "labels": {ZONE: "zone-2"}},
                   {"name": "d", "gpus": 8, "labels": {ZONE: "zone-2"}}],
         "pods": [{"name": "run-c", "replicas": 2, "gpu": 1, "nodeName": "c"},
                  {"name": "run-d", "replicas": 2, "gpu": 1, "nodeName": "d"},
                  {"name": "train", "replicas": 6, "gpu": 2, "annotations": GANG}]}


def test_gang_lands_within_one_zone_when_it_fits(tmp_path):
    # 6 x 2 GPUs. zone-1 (a, 8 idle) takes 4 members; zone-2 (c and d, 6 idle each) takes 3 + 3 = 6:
    # the whole gang, so it goes there; without the label a (4 members) would be filled first.
    objs = scenario_objects(ZONES)
    assert nodes_of(schedule_cli(tmp_path, objs), "train") == ["c"] * 3 + ["d"] * 3
    unlabelled = {**ZONES, "nodes": [{k: v for k, v in n.items() if k != "labels"} for n in ZONES["nodes"]]}
    assert nodes_of(schedule_cli(tmp_path, scenario_objects(unlabelled)), "train") == ["a"] * 4 + ["c"] * 2


def test_gang_topology_label_is_configurable(tmp_path):
    rack = {**ZONES, "nodes": [{**n, "labels": {"example.com/rack": n["labels"][ZONE]}} for n in ZONES["nodes"]]}
    objs = scenario_objects(rack)
    assert nodes_of(schedule_cli(tmp_path, objs), "train") == ["a"] * 4 + ["c"] * 2   # zone label absent
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("apiVersion: kaiwo.ai/v1alpha1\nkind: KaiwoSchedulerConfiguration\n"
                   "plugins: [{name: gang-topology, args: {label: example.com/rack}}]\n")
    assert nodes_of(schedule_cli(tmp_path, objs, "--config", str(cfg)), "train") == ["c"] * 3 + ["d"] * 3


@settings(max_examples=150, deadline=None)
@given(data=clusters().flatmap(lambda c: batches(len(c["node_cpu_free"])).map(lambda b: (c, b))))
def test_gangs_match_the_reference_with_domains_and_holds(data):
    """Every batch with gangs and node domains (test_placement_kernel draws them only sometimes)."""
    cluster, batch = data
    n, P = len(cluster["node_cpu_free"]), len(batch["cpu"])
    batch = dict(batch, gang=np.repeat(np.arange(P), 3)[:P].astype(np.int32),
                 gang_need=np.zeros(P, np.int32), node_domain=(np.arange(n) % 2).astype(np.int32))
    for strategy in (_core.STRATEGY_BINPACK, _core.STRATEGY_SPREAD, _core.STRATEGY_LOAD):
        c1 = {k: v.copy() for k, v in cluster.items()}
        c2 = {k: v.copy() for k, v in cluster.items()}
        got, want = _core.place_batch(c1, dict(batch), strategy), place_batch_ref(c2, dict(batch), strategy)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        for k in c1:
            np.testing.assert_array_equal(c1[k], c2[k], err_msg=k)


def test_simulate_takes_the_load_strategy_without_measurements(tmp_path, capsys):
    # The online replay of tests/test_simulate.py (one 8-GPU node; waits 10 s and 115 s) with the
    # load strategy: nothing is measured in a replay, so it places by allocation alone.
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("timestamp,duration,num_gpus,gpu_time,cluster\n0,100,8,800,a\n5,50,8,400,b\n")
    vc = tmp_path / "vc.csv"
    vc.write_text("vc,node num\na,1\n")
    assert main(["simulate", "--online", "--trace", str(jobs), "--vc-nodes", str(vc), "--period", "10",
                 "--policy", "load", "--quiet", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["policy"] == "load" and {q["queue"]: q["waitMeanS"] for q in doc["queues"]} == {"a": 10.0, "b": 115.0}
