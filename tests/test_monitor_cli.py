"""``kaiwo monitor``, ``kaiwo alerts``, ``kaiwo recommend``, the efficiency report and Kaiwo's own metrics.

The commands run on the bundled example (2 nodes x 8 MI300X, 15 minutes) whose story is known: which
GPUs idle, which alerts fire and resolve, which pods are over-provisioned. The efficiency report is
compared with ``tests.naive_monitoring.naive_efficiency`` on random small clusters (shared devices,
missing samples, pause containers), and cycle tracking with ``naive_track_cycle``.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import kaiwo_core as kc
from kaiwo.cli import main
from kaiwo_core.monitoring.efficiency import Allocations, efficiency_report
from kaiwo_core.monitoring.metrics_store import MetricsStore
from kaiwo_core.self_metrics import KaiwoMetrics, MetricsPlugin
from tests.naive_monitoring import naive_efficiency, naive_track_cycle


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------------------ commands

def test_monitor_bundled_example(capsys):
    rc, out, err = run(capsys, "monitor")
    assert rc == 0 and err == ""
    assert "16 scrapes" in out
    idle = out[out.index("IDLE GPU"):out.index("TIME (UTC)")]
    rows = {line.split()[0]: line.split()[1] for line in idle.splitlines()[1:] if line.strip()}
    assert rows["mi300x-a/gpu7"] == "research/notebook-jin" and rows["mi300x-b/gpu2"] == "batch/eval-3"
    assert rows["mi300x-b/gpu4"] == "(unallocated)" and "mi300x-a/gpu0" not in rows
    assert "FIRING    critical  GPUHot" in out and "RESOLVED  critical  GPUHot" in out
    assert "GPUUnhealthy      GPU 5 on mi300x-b reports unhealthy" in out


def test_monitor_json(capsys):
    rc, out, _ = run(capsys, "monitor", "--json", "--window", "5m")
    doc = json.loads(out)
    assert rc == 0 and doc["scrapes"] == 16 and doc["efficiency"]["window"] == 300
    pods = {p["pod"]: p for p in doc["efficiency"]["pods"]}
    assert pods["research/notebook-jin"]["gpu"]["efficiency"] < 0.05
    assert pods["research/llm-pretrain-0"]["gpu"]["allocated"] == 4.0
    assert {q["queue"] for q in doc["efficiency"]["queues"]} == {"batch", "research", "serving"}
    idle = {g["device"] for g in doc["efficiency"]["idleGpus"]["gpus"]}
    assert {"mi300x-a/gpu7", "mi300x-b/gpu2"} <= idle
    states = [(e["rule"], e["state"]) for e in doc["alerts"]["events"]]
    assert ("GPUHot", "firing") in states and ("GPUHot", "resolved") in states
    assert states.index(("GPUHot", "firing")) < states.index(("GPUHot", "resolved"))
    assert {a["rule"] for a in doc["alerts"]["active"]} >= {"GPUUnhealthy", "GPUIdleAllocated"}


def test_alerts_check_and_bad_rules(capsys, tmp_path):
    rc, out, _ = run(capsys, "alerts", "--check")
    assert rc == 0 and "6 valid rules, 0 invalid" in out
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules:\n  - {name: Hot, metric: gpu_junction_temperature, aggregation: max, threshold: 95}\n"
                   "  - {name: Typo, metric: gpu_health, threshhold: 1}\n")
    rc, out, err = run(capsys, "alerts", "--rules", str(bad))
    assert rc == 1
    assert "rule Typo: threshhold: unknown field" in err and "(rule skipped)" in err
    assert "FIRING    warning   Hot" in out          # the valid rule still ran
    rc, _, err = run(capsys, "alerts", "--rules", str(tmp_path / "none.yaml"))
    assert rc == 2 and "none.yaml" in err


def test_recommend(capsys):
    rc, out, _ = run(capsys, "recommend", "--json")
    doc = json.loads(out)
    pods = {p["pod"]: p for p in doc["pods"]}
    assert rc == 0
    assert pods["research/notebook-jin"]["gpu"]["decision"] == "decrease"
    assert pods["research/notebook-jin"]["gpu"]["recommended"] == 100.0
    assert pods["serving/chat-api-0"]["cpu"]["decision"] == "decrease"
    rc, out, _ = run(capsys, "recommend")
    assert rc == 0 and "research/notebook-jin" in out and "REASON" in out


def test_monitor_reports_malformed_lines_and_bad_sources(capsys, tmp_path):
    f = tmp_path / "s.prom"
    f.write_text("# SCRAPE 100\ngpu_gfx_activity{hostname=\"n\",gpu_id=\"0\"} 1\nbroken{ 1\n"
                 "# SCRAPE 160\ngpu_gfx_activity{hostname=\"n\",gpu_id=\"0\"} 2\n")
    rc, out, err = run(capsys, "monitor", "--source", str(f), "--no-alerts")
    assert rc == 0 and f"{f}:3:" in err and "2 scrapes" in out
    rc, _, err = run(capsys, "monitor", "--source", str(tmp_path / "missing.prom"))
    assert rc == 2 and "missing.prom" in err
    f.write_text("# SCRAPE 100\na 1\n# SCRAPE 50\na 2\n")
    rc, _, err = run(capsys, "monitor", "--source", str(f))
    assert rc == 2 and "not after the previous scrape" in err


def test_monitor_save_and_replay_history(capsys, tmp_path):
    path = tmp_path / "h.npz"
    rc, first, _ = run(capsys, "monitor", "--json", "--save", str(path))
    assert rc == 0 and path.exists()
    rc, again, _ = run(capsys, "monitor", "--json", "--source", str(path))
    a, b = json.loads(first), json.loads(again)
    assert rc == 0 and a["efficiency"] == b["efficiency"] and a["alerts"]["events"] == b["alerts"]["events"]


class _Exporter(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):  # noqa: N802 - http.server API
        type(self).hits += 1
        body = f'gpu_gfx_activity{{hostname="n1",gpu_id="0"}} {type(self).hits}\n'.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_monitor_scrapes_an_endpoint(capsys):
    _Exporter.hits = 0
    srv = HTTPServer(("127.0.0.1", 0), _Exporter)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/metrics"
        rc, out, _ = run(capsys, "monitor", "--source", url, "--count", "2", "--interval", "0", "--json")
    finally:
        srv.shutdown()
        srv.server_close()
    doc = json.loads(out)
    assert rc == 0 and _Exporter.hits == 2 and doc["scrapes"] == 2 and doc["series"] == 1


# ------------------------------------------------------------------------ efficiency vs reference

@st.composite
def small_cluster(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_nodes, n_gpus, n_pods = 2, 3, draw(st.integers(1, 5))
    pods = [f"ns/p{i}" for i in range(n_pods)]
    lines_per_scrape = []
    for k in range(draw(st.integers(2, 14))):
        lines = []
        for n in range(n_nodes):
            for g in range(n_gpus):
                owners = rng.choice(n_pods + 1, size=rng.integers(1, 3), replace=False)  # shared devices
                for o in owners:
                    if rng.random() < 0.15:
                        continue
                    pod = f',namespace="ns",pod="p{o - 1}"' if o else ""
                    act = float(rng.choice([0.0, 1.0, 3.0, 50.0, 90.0]))
                    lab = f'hostname="n{n}",gpu_id="{g}"{pod}'
                    lines.append(f"gpu_gfx_activity{{{lab}}} {act}")
                    lines.append(f"gpu_used_vram{{{lab}}} {float(rng.integers(0, 5000))}")
        for i in range(n_pods):
            for c in ("main", "", "POD"):
                lab = f'namespace="ns",pod="p{i}",container="{c}"'
                lines.append(f"container_cpu_usage_seconds_total{{{lab}}} {10.0 * k + i}")
                lines.append(f"container_memory_working_set_bytes{{{lab}}} {float(rng.integers(1, 4)) * 2**20}")
        lines_per_scrape.append("\n".join(lines) + "\n")
    return pods, lines_per_scrape


@settings(max_examples=40, deadline=None)
@given(small_cluster(), st.sampled_from([60.0, 300.0, 600.0]))
def test_efficiency_matches_reference(cluster, window):
    pods, scrapes = cluster
    store = MetricsStore(32)
    for k, text in enumerate(scrapes):
        store.ingest_text(text, 1000.0 + 60.0 * k)
    alloc = Allocations.from_arrays(pods, cpu=np.full(len(pods), 1000.0), memory=np.full(len(pods), 8.0),
                                    gpu=np.ones(len(pods)))
    rep = efficiency_report(store, alloc, window, idle_threshold=5.0, idle_for=300.0)
    used, idle = naive_efficiency(store, pods, window, 5.0, 300.0)
    for i, p in enumerate(pods):
        for r in ("gpu", "gpu_memory", "cpu", "memory"):
            want = used[p][r]
            got = rep.pod_used[r][i]
            if want is None:
                assert np.isnan(got), (p, r)
            else:
                assert got == pytest.approx(want, rel=1e-12, abs=1e-12), (p, r)
    got_idle = sorted(store.device_keys[store._device_index[(store.nodes.index[n], int(d.split("gpu")[1]), 0)]]
                      for n, d in zip(rep.idle["node"], rep.idle["device"]))
    want_idle = sorted((store.nodes.index[n], g, p) for n, g, p in idle)
    assert got_idle == want_idle


def test_allocations_from_snapshot():
    objs = [
        {"kind": "Node", "metadata": {"name": "n1", "labels": {"amd.com/gpu.product-name": "AMD_Instinct_MI300X"}},
         "status": {"allocatable": {"cpu": "64", "memory": "512Gi", "pods": "110", "amd.com/gpu": "8"}}},
        {"kind": "Pod", "metadata": {"name": "w", "namespace": "a", "labels": {"kaiwo.ai/queue": "q1"}},
         "spec": {"nodeName": "n1", "containers": [{"name": "c", "resources": {"limits": {
             "cpu": "2", "memory": "4Gi", "amd.com/gpu": "2"}}}]}, "status": {"phase": "Running"}},
        {"kind": "Pod", "metadata": {"name": "f", "namespace": "a", "annotations": {"kaiwo.ai/gpu-fraction": "0.5"}},
         "spec": {"nodeName": "n1", "containers": [{"name": "c", "resources": {"limits": {
             "cpu": "500m", "memory": "1Gi"}}}]}, "status": {"phase": "Running"}},
    ]
    a = Allocations.from_snapshot(kc.Snapshot.from_objects(objs))
    row = {p: i for i, p in enumerate(a.pods)}
    w, f = row["a/w"], row["a/f"]
    assert (a.gpu[w], a.gpu_devices[w], a.cpu[w], a.memory[w], a.queue[w]) == (2.0, 2, 2000.0, 4096.0, "q1")
    assert a.gpu[f] == 0.5 and a.gpu_memory[f] == 0.5 * a.gpu_memory[w] / 2
    with pytest.raises(ValueError, match="pod 'x' appears twice"):
        Allocations.from_arrays(["x", "x"], [1, 1], [1, 1])


# ------------------------------------------------------------------------------ own metrics

def test_record_cycle_matches_reference_and_renders():
    rng = np.random.default_rng(5)
    p, q = 500, 7
    placed = rng.random(p) < 0.7
    queue = rng.integers(-1, q, p)
    usage = {"gpu": rng.integers(0, 8000, p).astype(float), "cpu": rng.integers(0, 64000, p).astype(float)}
    m = KaiwoMetrics()
    names = [f"q{i}" for i in range(q)]
    out = m.record_cycle(0.042, placed, 3, queue, names, usage, {"gpu": np.arange(q, dtype=float)})
    ref = naive_track_cycle(placed.tolist(), queue.tolist(), q, usage)
    assert (out["scheduled"], out["pending"]) == (ref["scheduled"], ref["pending"])
    for r in usage:
        np.testing.assert_allclose(out["allocated"][r], ref["allocated"][r], rtol=1e-12)
    m.record_alerts({("firing", "critical"): 2})
    fams = {f.name: f for f in text_string_to_metric_families(m.render())}
    assert fams["kaiwo_pods_scheduled"].samples[0].value == ref["scheduled"]
    assert fams["kaiwo_pods_rejected"].samples[0].value == 3
    assert fams["kaiwo_pods_pending"].samples[0].value == ref["pending"]
    hist = {s.labels.get("le"): s.value for s in fams["kaiwo_cycle_duration_seconds"].samples
            if s.name.endswith("_bucket")}
    assert hist["0.025"] == 0 and hist["0.05"] == 1
    alloc = {(s.labels["queue"], s.labels["resource"]): s.value for s in fams["kaiwo_queue_allocated"].samples}
    assert alloc[("q3", "gpu")] == pytest.approx(ref["allocated"]["gpu"][3])
    share = {s.labels["queue"]: s.value for s in fams["kaiwo_queue_fair_share"].samples}
    assert share["q6"] == 6.0
    assert {s.labels["state"] for s in fams["kaiwo_alerts"].samples} == {"firing"}
    # two instances do not collide: each has its own registry
    assert KaiwoMetrics().render().count("kaiwo_pods_pending 0.0") == 1


def test_metrics_plugin_in_a_placement_cycle():
    snap = kc.Snapshot.from_arrays(["a", "b"], cpu=[64000, 64000], memory=[2**20, 2**20], gpus=[8, 8])
    batch = kc.batch_from_arrays(cpu=[1000] * 4, memory=[1024] * 4, gpus=[8, 4, 8, 0], fraction=[0, 0, 0, 500])
    plugin = MetricsPlugin(store=MetricsStore(8))
    pipeline = kc.Pipeline([*kc.filters.DEFAULT_PLUGINS, plugin, "binpack"])
    ctx_extra = {"queue_of_pod": np.array([0, 1, 0, 1]), "queue_names": ["x", "y"]}

    class Seed(kc.Plugin):
        name = "test-seed-queues"

        def on_cycle_start(self, ctx):
            ctx.extra.update(ctx_extra)

    pipeline.plugins.insert(0, Seed())
    result = kc.place(snap.cluster, snap.state.copy(), batch, pipeline)
    assert result.placed.tolist() == [True, True, False, True]
    last = plugin.metrics.last
    assert (last["scheduled"], last["pending"]) == (3, 1)
    assert last["allocated"]["gpu"].tolist() == [8000.0, 4500.0]
    store = plugin.store
    assert store.aggregate("kaiwo_pods_pending", "last", 60, "cluster").values.tolist() == [1.0]
    assert "kaiwo_pods_scheduled_total 3.0" in plugin.metrics.render()
