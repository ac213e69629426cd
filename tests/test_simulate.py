"""The trace replay (kaiwo.simulator.offline), the online replay (kaiwo.simulator.online) and ``kaiwo simulate``.

The FGD paper's experiment is reproduced exactly: with seed 42 on the bundled openb ``default``
trace, best-fit and FGD give the published per-seed allocation ratios at 100% and 130% arrival
(the paper's result file has BestFit 92.94 / 93.13 and FGD 95.14 / 95.29 for that run). The full
policy x trace x seed table is the evaluation script's job (asv_bench/eval_openb.py), not a test's.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from kaiwo.simulator import offline as S
from kaiwo.simulator import online as O
from kaiwo.cli import main
from kaiwo_core import _core
from kaiwo_core.model.cluster import cluster_from_arrays
from kaiwo_core.model.requests import KIND_NONE, KIND_SHARED, KIND_WHOLE, KIND_XCD
from kaiwo_core.model.trace import NodeList, Workload

POD_HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"


@pytest.fixture(scope="module")
def scenario():
    return S.load_scenario()


# ------------------------------------------------------------------ exact reproduction of FGD

@pytest.mark.parametrize("policy,at100,at130", [("best-fit", 92.94, 93.13), ("fgd", 95.14, 95.29),
                                                ("dot-product", 90.34, 90.54)])
def test_seed_42_reproduces_the_published_run(scenario, policy, at100, at130):
    r = S.replay(scenario, policy, 42)
    assert (r.at(100), r.at(130)) == (at100, at130)
    assert r.pods == 10866 and r.failed > 0
    # Before the cluster fills up every pod fits, so the curve follows the arrivals.
    assert r.at(50) == 49.95


def test_replay_does_not_depend_on_how_the_trace_is_split(scenario):
    for policy in ("random", "gpu-clustering", "fgd", "frag"):
        one = S.replay(scenario, policy, 43, parts=1)
        many = S.replay(scenario, policy, 43, parts=7)
        np.testing.assert_array_equal(one.placed, many.placed, err_msg=policy)
        assert one.fragmentation == many.fragmentation


def test_kaiwo_policy_beats_fgd_on_seed_42(scenario):
    # One seed only (the ten-seed median is the evaluation script's); this is the seed the README
    # quotes, where FGD reaches 95.29% at 130% arrival.
    assert S.replay(scenario, "frag", 42).at(130) > 95.29


# --------------------------------------------------------------------------- metrics, by hand

def test_alloc_curve_by_hand():
    # 10 GPUs (10,000 milli). Offers of 2,000 milli: 20% each; the third one fails.
    req = np.array([2000, 2000, 2000, 2000])
    placed = np.array([True, True, False, True])
    c = S.alloc_curve(req, placed, 10)
    assert c[20] == 20.0 and c[40] == 40.0 and c[60] == 40.0 and c[80] == 60.0
    assert c[21] == 20.0 and c[39] == 40.0  # +-1 neighbours fill gaps
    # Wider gaps (few GPUs: one offer moves arrivals by 20 points) take the ratio as of the last
    # offer below k -- arrivals passed k, so the curve is known there; beyond the last, none.
    assert c[50] == 40.0 and c[70] == 40.0 and np.isnan(c[82])
    # Ties of x round to even, as Python's round: 2.5% -> 2, 3.5% -> 4.
    c = S.alloc_curve(np.array([250, 100]), np.array([True, False]), 10)
    assert c[2] == 2.5 and c[4] == 2.5 and np.isnan(c[10]) and np.isnan(c[6])


def test_fragmentation_by_hand():
    # One node, 2 GPUs: one 300 milli free (700 used by a sharing pod), one idle; 4 cores free.
    cluster = cluster_from_arrays(["n"], [8000], [100000], [2], model="T4", gpu_memory_mib=[0])
    state = cluster.empty_state()
    state.dev_milli_free[:] = [300, 1000]
    state.dev_state[:] = [1, 0]
    state.node_cpu_free[:] = 4000
    wl = Workload(cpu=np.array([1000, 1000, 8000, 0]),
                  num_gpu=np.array([1, 1, 1, 0], np.int32), gpu_milli=np.array([500, 1000, 200, 0], np.int32),
                  gpu_spec=["", "", "", ""], weight=np.array([0.4, 0.3, 0.2, 0.1]),
                  count=np.ones(4, np.int64))
    # 500-milli shape: runs; the 300 left on GPU 0 is unusable -> 300. Whole GPU: runs on GPU 1;
    # GPU 0's 300 unusable -> 300. 200-milli shape needs 8 cores: cannot run -> all 1,300.
    # CPU-only shape: every free GPU milli counts -> 1,300.
    expected = 0.4 * 300 + 0.3 * 300 + 0.2 * 1300 + 0.1 * 1300
    assert S.fragmentation(cluster, state, wl) == pytest.approx(expected / 2000 * 100)


def test_amd_request_mapping():
    num = np.array([0, 1, 2, 1, 1, 1])
    milli = np.array([0, 1000, 1000, 460, 125, 900])
    # SPX: one partition per GPU, fractions time-sliced.
    kind, count, m = S.amd_requests(num, milli, 1, "time-slicing")
    assert kind.tolist() == [KIND_NONE, KIND_WHOLE, KIND_WHOLE, KIND_SHARED, KIND_SHARED, KIND_SHARED]
    assert count.tolist() == [0, 1, 2, 1, 1, 1] and m.tolist() == [0, 1000, 1000, 460, 125, 900]
    # CPX (8 partitions): whole GPUs are 8 partitions each; 0.46 GPU = 3.68 partitions -> 4 whole
    # partitions; 0.125 GPU = exactly one partition, shared (or its one XCD with isolation).
    kind, count, m = S.amd_requests(num, milli, 8, "xcd")
    assert kind.tolist() == [KIND_NONE, KIND_WHOLE, KIND_WHOLE, KIND_WHOLE, KIND_XCD, KIND_WHOLE]
    assert count.tolist() == [0, 8, 16, 4, 1, 8] and m.tolist() == [0, 1000, 1000, 1000, 1000, 1000]


def test_amd_cluster_has_the_same_gpu_count():
    nodes = NodeList("x", ["a", "b"], np.array([96000, 32000]), np.array([1000, 300]),
                     np.array([8, 3], np.int32), ["G2", "T4"])
    c = S.amd_cluster(nodes, "MI300X", "CPX", seed=1)
    assert c.n_nodes == 2 and c.n_devices == 11 * 8  # 8 + 3 GPUs, 8 CPX partitions each
    assert sorted(c.node_cpu_cap.tolist()) == [int(128000 / 11 * 3), int(128000 / 11 * 8)]
    with pytest.raises(ValueError, match="not an AMD Instinct model"):
        S.amd_cluster(nodes, "H100")


def test_amd_mode_replays(scenario):
    scn = S.Scenario(scenario.trace, scenario.nodes, "default", gpu_model="MI300X", partition="QPX")
    r = S.replay(scn, "best-fit", 42)
    # Same arrivals (physical GPU units), rounding to whole partitions costs some allocation.
    assert r.pods == 10866 and 50 < r.at(130) < 100


# ------------------------------------------------------------------------------- online mode

def test_online_waits_by_hand(tmp_path):
    # One 8-GPU node (VC a: 1 node; VC b: none). a's 8-GPU job arrives at 0 and runs 100 s; b's
    # 8-GPU job arrives at 5 and must wait. Cycles every 10 s: the first at 10 starts a's job
    # (wait 10); it ends at 110, and the cycle after it (at 120) starts b's (wait 115).
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("timestamp,duration,num_gpus,gpu_time,cluster\n"
                    "2017-10-01 00:00:00,100,8,800,a\n2017-10-01 00:00:05,50,8,400,b\n")
    vc = tmp_path / "vc.csv"
    vc.write_text("vc,node num\na,1\n")
    r = O.replay_online(O.read_jobs_csv(str(jobs)), O.read_vc_nodes(str(vc)), "binpack", period=10, sample=0)
    waits = {q.name: q.waits for q in r.queues}
    assert waits == {"a": [10.0], "b": [115.0]}
    assert max(r.utilization) == 1.0 and r.utilization[-1] == 0.0
    assert r.queues[0].quota_gpus == 8 and r.queues[1].quota_gpus == 0


def test_online_gang_and_errors(tmp_path):
    jobs = tmp_path / "jobs.csv"
    # 12 GPUs = a gang of an 8-GPU pod and a 4-GPU pod: needs both nodes.
    jobs.write_text("timestamp,duration,num_gpus,cluster\n0,10,12,a\n1,10,4,a\n")
    vc = tmp_path / "vc.csv"
    vc.write_text("vc,node num\na,2\n")
    r = O.replay_online(O.read_jobs_csv(str(jobs)), O.read_vc_nodes(str(vc)), "binpack", period=5, sample=0)
    assert r.queues[0].waits == [5.0, 4.0] and max(r.utilization) == 1.0
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,duration,num_gpus,cluster\n0,10,0,a\n")
    with pytest.raises(O.TraceError) as e:
        O.read_jobs_csv(str(bad))
    assert e.value.line == 2 and e.value.column == "num_gpus"
    bad.write_text("timestamp,duration,num_gpus,cluster\nyesterday,10,1,a\n")
    with pytest.raises(O.TraceError, match="timestamp"):
        O.read_jobs_csv(str(bad))


def _reclaim_scenario(tmp_path, reclaim):
    # One 8-GPU node. VC a has a quota of 1 node, VC b none. b's eight 1-GPU jobs (100 s each)
    # arrive at 0; a's 1-GPU job (1000 s) arrives at 15. Cycles every 10 s.
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("timestamp,duration,num_gpus,cluster\n" + "0,100,1,b\n" * 8 + "15,1000,1,a\n")
    vc = tmp_path / "vc.csv"
    vc.write_text("vc,node num\na,1\nb,0\n")
    return O.replay_online(O.read_jobs_csv(str(jobs)), O.read_vc_nodes(str(vc)), "binpack", period=10,
                           sample=0, reclaim=reclaim)


@pytest.mark.parametrize("reclaim", ["conservative", "aggressive"])
def test_online_reclaim_by_hand(tmp_path, reclaim):
    # Cycle at 10: b's eight jobs fill the node (wait 10 each; b runs 8 GPUs over its quota of 0).
    # Cycle at 25 (a's arrival at 15 + 10): a's job does not fit; a is within its quota (0 + 1 <= 8)
    # and b stays at or above its own (and its fair share, 7) without one job, so one b job is
    # reclaimed. Next cycle at 35: a's job starts on the freed GPU (wait 20); the evicted b job
    # waits (b may not reclaim: it is over its quota and fair share) until the other seven end at
    # 110, and starts over in the cycle at 120 (waited 10 + 120 - 25 = 105, ends at 220).
    r = _reclaim_scenario(tmp_path, reclaim)
    q = {s.name: s for s in r.queues}
    assert q["a"].waits == [20.0] and q["a"].preempted == 0
    assert sorted(q["b"].waits) == [10.0] * 7 + [105.0] and q["b"].preempted == 1
    assert r.cycles == 4 and r.reclaim == reclaim  # at 10, 25, 35 and 120
    doc = r.to_dict()
    assert doc["preemptions"] == 1 and doc["reclaim"] == reclaim
    assert {d["queue"]: d["jobsPreempted"] for d in doc["queues"]} == {"a": 0, "b": 1}


def test_online_no_reclaim_by_hand(tmp_path):
    # Without reclaim a's job waits until b's jobs end at 110: it starts in the cycle at 120.
    r = _reclaim_scenario(tmp_path, "none")
    q = {s.name: s for s in r.queues}
    assert q["a"].waits == [105.0] and q["b"].waits == [10.0] * 8
    assert q["a"].preempted == q["b"].preempted == 0 and r.cycles == 3  # at 10, 25 and 120
    with pytest.raises(ValueError, match="reclaim"):
        _reclaim_scenario(tmp_path, "greedy")


def test_jain_index():
    assert O.jain(np.array([1.0, 1.0, 1.0])) == 1.0
    assert O.jain(np.array([1.0, 0.0, 0.0, 0.0])) == 0.25
    assert np.isnan(O.jain(np.array([])))


# ------------------------------------------------------------------------------------- CLI

def test_cli_json_plot_html(tmp_path, capsys, monkeypatch):
    plot, page = tmp_path / "a.png", tmp_path / "r.html"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the progress bar is for terminals only
    assert main(["simulate", "--policy", "best-fit,fgd", "--json", "--plot", str(plot), "--html", str(page)]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert [p["policy"] for p in doc["policies"]] == ["best-fit", "fgd"]
    bf = doc["policies"][0]
    assert bf["allocationAt130"]["mean"] == 93.13 and bf["allocationRatio"]["100"] == 92.94
    assert bf["unallocatedGpuPct"]["130"] == pytest.approx(6.87) and bf["podsFailed"] > 0
    assert set(bf) >= {"fragmentationPct", "wallSeconds", "gpuPodsFailed", "runs"}
    assert "%" in out.err  # the progress bar
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = page.read_text()
    assert "data:image/png;base64," in html and "fgd" in html and "93.13" in html


def test_cli_table_and_errors(tmp_path, capsys):
    assert main(["simulate", "--policy", "best-fit", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "best-fit" in out and "93.13" in out and "PAPER@130%" in out and "93.08" in out
    bad = tmp_path / "pods.csv"
    bad.write_text(POD_HEADER + "p,1,1,1,2000\n")
    assert main(["simulate", "--trace", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2:" in err and "gpu_milli" in err
    assert main(["simulate", "--gpu-model", "MI300X", "--partition", "NPX", "--quiet"]) == 2
    assert "NPX" in capsys.readouterr().err
    assert main(["simulate", "--online", "--quiet"]) == 2
    assert "--vc-nodes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "--policy", "nope"])
    with pytest.raises(SystemExit):
        main(["simulate", "--seeds", "51-42"])


def test_cli_online(tmp_path, capsys):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("timestamp,duration,num_gpus,gpu_time,cluster\n0,100,8,800,a\n5,50,8,400,b\n")
    vc = tmp_path / "vc.csv"
    vc.write_text("vc,node num\na,1\n")
    assert main(["simulate", "--online", "--trace", str(jobs), "--vc-nodes", str(vc), "--period", "10",
                 "--quiet", "--json", str(tmp_path / "o.json")]) == 0
    out = capsys.readouterr().out
    assert "mean GPU utilisation" in out and "115.0" in out
    doc = json.loads((tmp_path / "o.json").read_text())
    assert {q["queue"]: q["waitMeanS"] for q in doc["queues"]} == {"a": 10.0, "b": 115.0}
    assert "PREEMPTED" in out and "reclaim aggressive" in out
    assert doc["reclaim"] == "aggressive" and doc["preemptions"] == 0
    assert main(["simulate", "--online", "--trace", str(jobs), "--vc-nodes", str(vc), "--reclaim", "none",
                 "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reclaim"] == "none"
    with pytest.raises(SystemExit):
        main(["simulate", "--online", "--reclaim", "greedy"])


def test_parse_seeds():
    from kaiwo.cli.simulate import parse_seeds
    assert parse_seeds("42") == [42] and parse_seeds("42-44,50") == [42, 43, 44, 50]


def test_strategy_constants_match_plugins():
    from kaiwo_core.scheduling.filters import STRATEGIES
    assert STRATEGIES["fgd"] == _core.STRATEGY_FGD and STRATEGIES["random"] == _core.STRATEGY_RANDOM
    assert STRATEGIES["frag"] == _core.STRATEGY_FRAG_AWARE and len(STRATEGIES) == _core.NUM_STRATEGIES
