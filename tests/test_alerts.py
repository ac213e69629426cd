"""Alert manager: rule validation, state machine scenarios, kernels against the reference, sinks.

Scenarios are small stores with hand-written values (for-duration, flapping, resolution, vanished
data, label selectors, grouping). Random rule sets over random stores are evaluated step by step by
the compiled ``AlertManager`` and by ``tests.naive_monitoring.NaiveAlertManager``: the same
transitions with the same values must come out. The webhook sink is exercised against a local HTTP
server on 127.0.0.1 that answers 500 or 400 on demand; its back-off sleeps are recorded, not slept.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiwo_core import plugins
from kaiwo_core.monitoring.alerts import (AlertManager, AlertsPlugin, CallbackSink, LogSink, Rule, RuleError,
                               WebhookSink, kubernetes_event, load_rules, parse_duration,
                               rule_from_dict)
from kaiwo_core.monitoring.metrics_store import MetricsStore
from kaiwo_core.plugins import CycleContext
from tests.naive_monitoring import NaiveAlertManager

BASE = {"name": "R", "metric": "m", "threshold": 1}


# ------------------------------------------------------------------------------ validation

@pytest.mark.parametrize("change,field,why", [
    ({"name": "9bad"}, "name", "required; letters"),
    ({"metric": "a-b"}, "metric", "Prometheus metric name"),
    ({"selector": 'a=~"("'}, "selector", "invalid regular expression"),
    ({"selector": "a=b"}, "selector", "cannot parse"),
    ({"aggregation": "median"}, "aggregation", "expected one of"),
    ({"window": "5q"}, "window", "not a duration"),
    ({"window": 0}, "window", "longer than 0"),
    ({"for": -1}, "for", "non-negative"),
    ({"by": "rack"}, "by", "expected one of"),
    ({"reduce": "avg"}, "reduce", "expected one of"),
    ({"op": "=>"}, "op", "expected one of"),
    ({"threshold": "high"}, "threshold", "finite number"),
    ({"threshold": True}, "threshold", "finite number"),
    ({"severity": "page"}, "severity", "expected one of"),
    ({"summary": "{pod}", "by": "node"}, "summary", "not available for by: node"),
    ({"summary": "{value:.2q}"}, "summary", "cannot be rendered"),
    ({"summary": "{0}"}, "summary", "positional"),
    ({"summary": "{"}, "summary", "not a valid template"),
    ({"labels": {"a-b": 1}}, "labels", "mapping of label names"),
    ({"tresh": 3}, "tresh", "unknown field"),
])
def test_bad_rule_names_rule_field_and_reason(change, field, why):
    doc = {**BASE, **change}
    with pytest.raises(RuleError) as e:
        rule_from_dict(doc, 4)
    assert e.value.field == field and why in str(e.value)
    assert e.value.rule == (doc["name"] if field != "name" else "#5")


def test_bad_rules_rejected_others_kept():
    rs = load_rules("""
rules:
  - {name: Good1, metric: m, threshold: 1}
  - {name: Bad, metric: m, threshold: x}
  - {name: Good1, metric: n, threshold: 2}
  - 42
  - {name: Good2, metric: m, threshold: 1, window: 1h30m, for: 90s}
""")
    assert [r.name for r in rs.rules] == ["Good1", "Good2"]
    assert [(e.rule, e.field) for e in rs.errors] == [("Bad", "threshold"), ("Good1", "name"), ("#4", "rule")]
    assert "duplicate rule name" in str(rs.errors[1])
    assert rs.rules[1].window == 5400.0 and rs.rules[1].for_ == 90.0
    with pytest.raises(RuleError, match="not valid YAML"):
        load_rules("rules: [")
    with pytest.raises(RuleError, match="expected a list of rules"):
        load_rules("rules: 3\n")


def test_parse_duration():
    assert parse_duration("1h30m") == 5400 and parse_duration("500ms") == 0.5
    assert parse_duration("2d") == 172800 and parse_duration(15) == 15.0
    for bad in ("", "5", "m5", "1x", True, -3, "1m1h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# ------------------------------------------------------------------------------ scenarios

def feed(values_per_step, rules, series=None, t0=1000.0, step=60.0, sinks=None):
    """Ingest one sample per step per series and evaluate after each; returns (manager, events per step)."""
    store = MetricsStore(slots=64)
    series = series or ['m{hostname="n1",gpu_id="0",pod="p",namespace="ns"}']
    mgr = AlertManager(load_rules({"rules": rules}) if not isinstance(rules, list) or isinstance(rules[0], dict)
                       and "rules" not in rules else rules, store, sinks=sinks or [])
    out = []
    for k, vals in enumerate(values_per_step):
        vals = vals if isinstance(vals, (list, tuple)) else [vals]
        text = "".join(f"{s} {v}\n" for s, v in zip(series, vals) if v is not None)
        if text:
            store.ingest_text(text, t0 + k * step)
        out.append([(e.rule, e.state) for e in mgr.evaluate(t0 + k * step)])
    return mgr, out


def test_for_duration_then_firing():
    rule = {"name": "Hot", "metric": "m", "op": ">", "threshold": 90, "for": "2m"}
    _, ev = feed([50, 95, 95, 95, 95], [rule])
    assert ev == [[], [("Hot", "pending")], [], [("Hot", "firing")], []]


def test_for_zero_fires_at_once_and_resolves():
    rule = {"name": "Hot", "metric": "m", "threshold": 90}
    mgr, ev = feed([95, 96, 50, 50], [rule])
    assert ev == [[("Hot", "firing")], [], [("Hot", "resolved")], []]
    states = [e.state for e in mgr.history]
    assert states == ["firing", "resolved"]


def test_flapping_never_fires():
    rule = {"name": "Hot", "metric": "m", "threshold": 90, "for": "2m"}
    _, ev = feed([95, 50, 95, 50, 95, 50, 95], [rule])
    assert all(e in ([("Hot", "pending")], [("Hot", "cleared")]) for e in ev)
    assert not any(s == "firing" for step in ev for _, s in step)


def test_window_aggregation_smooths_flapping():
    # max over 3 minutes keeps the condition true through the dips: fires after 'for'.
    rule = {"name": "Hot", "metric": "m", "threshold": 90, "aggregation": "max", "window": "3m", "for": "2m"}
    _, ev = feed([95, 50, 95, 50, 95], [rule])
    assert ev[0] == [("Hot", "pending")] and ev[2] == [("Hot", "firing")]


def test_data_disappearing_resolves():
    rule = {"name": "Hot", "metric": "m", "threshold": 90, "window": "1m"}
    mgr, ev = feed([95, 95, None, None], [rule])
    assert ev == [[("Hot", "firing")], [], [("Hot", "resolved")], []]
    assert mgr.active() == []


def test_label_selector_and_grouping():
    series = ['m{hostname="n1",gpu_id="0"}', 'm{hostname="n1",gpu_id="1"}', 'm{hostname="n2",gpu_id="0"}']
    rules = [{"name": "N1", "metric": "m", "selector": 'hostname="n1"', "threshold": 50,
              "summary": "{node}/{gpu} {value}"},
             {"name": "NodeMean", "metric": "m", "by": "node", "aggregation": "mean", "window": "1m",
              "threshold": 50, "summary": "{node} {value}"},
             {"name": "ClusterMax", "metric": "m", "by": "cluster", "reduce": "max", "threshold": 95},
             {"name": "Reporting", "metric": "m", "by": "node", "reduce": "count", "op": "<", "threshold": 2}]
    mgr, ev = feed([[40, 40, 99], [60, 45, 99]], rules, series)
    assert sorted(ev[0]) == [("ClusterMax", "firing"), ("NodeMean", "firing"), ("Reporting", "firing")]
    # n1's mean over the last minute is (60 + 45) / 2 = 52.5 > 50
    assert sorted(ev[1]) == [("N1", "firing"), ("NodeMean", "firing")]
    active = {(e.rule, e.group): e for e in mgr.active()}
    assert set(active) == {("N1", 'm{gpu_id="0",hostname="n1"}'), ("NodeMean", "n1"), ("NodeMean", "n2"),
                           ("ClusterMax", "cluster"), ("Reporting", "n2")}
    assert active[("NodeMean", "n1")].value == 52.5
    assert active[("N1", 'm{gpu_id="0",hostname="n1"}')].summary == "n1/0 60.0"
    assert active[("NodeMean", "n2")].value == 99.0 and active[("Reporting", "n2")].value == 1.0


def test_state_survives_new_series_and_history_is_bounded():
    store = MetricsStore(slots=16)
    mgr = AlertManager(load_rules({"rules": [{"name": "Hot", "metric": "m", "threshold": 90, "for": "1m"}]}),
                       store, sinks=[], history=3)
    store.ingest_text('m{i="a"} 95\n', 0.0)
    assert [e.state for e in mgr.evaluate()] == ["pending"]
    store.ingest_text('m{i="a"} 95\nm{i="b"} 95\n', 60.0)   # new series: program recompiled
    assert sorted((e.group, e.state) for e in mgr.evaluate()) == [('m{i="a"}', "firing"), ('m{i="b"}', "pending")]
    store.ingest_text('m{i="a"} 10\nm{i="b"} 10\n', 120.0)
    mgr.evaluate()
    assert len(mgr.history) == 3 and [e.state for e in mgr.history][-2:] in (["resolved", "cleared"],
                                                                             ["cleared", "resolved"])


def test_pruned_series_resolves_with_its_labels():
    store = MetricsStore(slots=2)
    mgr = AlertManager(load_rules({"rules": [{"name": "Hot", "metric": "m", "threshold": 90, "window": "10m"}]}),
                       store, sinks=[])
    store.ingest_text('m{pod="gone"} 95\nm{pod="stays"} 1\n', 0.0)
    assert [e.state for e in mgr.evaluate()] == ["firing"]
    store.ingest_text('m{pod="stays"} 1\n', 60.0)
    store.ingest_text('m{pod="stays"} 1\n', 120.0)   # the ring no longer holds 'gone'
    store.prune()
    ev = mgr.evaluate()
    assert [(e.state, e.group, e.labels["pod"]) for e in ev] == [("resolved", 'm{pod="gone"}', "gone")]


# ------------------------------------------------------------------------ kernel vs reference

def naive_group_name(store, rule, g):
    if rule.by == "series":
        name, items = g
        return name + ("{" + ",".join(f'{k}="{v}"' for k, v in items) + "}" if items else "")
    if rule.by == "gpu":
        node, gpu, part = g
        return f"{node}/gpu{gpu}" + (f".p{part}" if part else "")
    return g


RULE_DOCS = st.fixed_dictionaries({
    "metric": st.sampled_from(["a", "b"]),
    "aggregation": st.sampled_from(["mean", "max", "min", "p50", "p95", "rate", "last", "count"]),
    "window": st.sampled_from(["1m", "2m", "5m"]),
    "by": st.sampled_from(["series", "gpu", "node", "pod", "queue", "cluster"]),
    "reduce": st.sampled_from(["mean", "max", "min", "sum", "count"]),
    "op": st.sampled_from([">", ">=", "<", "<=", "==", "!="]),
    "threshold": st.sampled_from([0, 1, 2.5, 5, 50]),
    "for": st.sampled_from([0, "1m", "2m"]),
    "selector": st.sampled_from([None, 'node="n0"', 'pod=~"p[01]"', 'pod!=""', 'gpu_id!="1"']),
})


@settings(max_examples=60, deadline=None)
@given(st.lists(RULE_DOCS, min_size=1, max_size=6), st.integers(0, 2**32 - 1))
def test_manager_matches_reference(docs, seed):
    rules = []
    for k, d in enumerate(docs):
        doc = {"name": f"r{k}", **{key: v for key, v in d.items() if v is not None}}
        rules.append(rule_from_dict(doc, k))
    rng = np.random.default_rng(seed)
    store = MetricsStore(slots=8)
    mgr = AlertManager(rules, store, sinks=[])
    ref = NaiveAlertManager(rules, store)
    series = [(m, n, g, f"p{(n * 2 + g) % 3}" if (n + g) % 4 else "")
              for m in ("a", "b") for n in range(2) for g in range(2)]
    store.set_pod_info(["ns/p0", "ns/p1", "ns/p2"], ["q0", "q1", None])
    for k in range(10):
        lines = []
        for m, n, g, pod in series:
            if rng.random() < 0.2:
                continue  # missing sample
            v = float(rng.choice([0.0, 1.0, 2.5, 5.0, 60.0, rng.integers(0, 100)]))
            labels = f'node="n{n}",gpu_id="{g}"' + (f',namespace="ns",pod="{pod}"' if pod else "")
            lines.append(f"{m}{{{labels}}} {v}")
        t = 1000.0 + 60.0 * k + float(rng.choice([0.0, 0.0, 30.0]))
        if lines:
            store.ingest_text("\n".join(lines) + "\n", t)
        got = sorted((e.rule, e.group, e.state, round(e.value, 9) if e.value == e.value else None)
                     for e in mgr.evaluate(t))
        by_name = {r.name: r for r in rules}
        want = sorted((r, naive_group_name(store, by_name[r], g), s, round(v, 9) if v is not None else None)
                      for r, g, s, v in ref.evaluate(t))
        assert got == want, (k, docs)


# ------------------------------------------------------------------------------ sinks

class _Receiver(BaseHTTPRequestHandler):
    plan: list = []        # status codes to answer, in order (then 200)
    bodies: list = []
    headers_out: dict = {}

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        code = self.plan.pop(0) if self.plan else 200
        type(self).bodies.append((code, json.loads(body)))
        self.send_response(code)
        for k, v in self.headers_out.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.plan, _Receiver.bodies, _Receiver.headers_out = [], [], {}
    srv = HTTPServer(("127.0.0.1", 0), _Receiver)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", _Receiver
    srv.shutdown()
    srv.server_close()


def firing_events(n=1):
    rule = {"name": "Hot", "metric": "m", "threshold": 90, "severity": "critical", "summary": "hot {value}"}
    mgr, _ = feed([95], [rule], series=[f'm{{pod="p{k}",namespace="ns"}}' for k in range(n)] if n > 1 else None)
    return list(mgr.history)


def test_webhook_retries_500_with_backoff(receiver):
    url, rx = receiver
    rx.plan = [500, 503]
    slept = []
    sink = WebhookSink(url, retries=3, backoff=0.5, sleep=slept.append)
    sink.send(firing_events())
    assert [code for code, _ in rx.bodies] == [500, 503, 200]
    assert slept == [0.5, 1.0] and sink.attempts == 3 and sink.failures == 0 and sink.sent == 1
    doc = rx.bodies[-1][1]
    assert doc["version"] == "4" and doc["status"] == "firing"
    a = doc["alerts"][0]
    assert a["labels"]["alertname"] == "Hot" and a["labels"]["severity"] == "critical"
    assert a["annotations"]["summary"] == "hot 95.0" and a["status"] == "firing"


def test_webhook_gives_up_and_honours_retry_after(receiver):
    url, rx = receiver
    rx.plan = [429, 500, 500]
    rx.headers_out = {"Retry-After": "7"}
    slept = []
    sink = WebhookSink(url, retries=2, backoff=0.5, max_backoff=5.0, sleep=slept.append)
    sink.send(firing_events())
    assert slept == [5.0, 5.0]            # Retry-After 7 s, capped at max_backoff
    assert sink.failures == 1 and "giving up after 3 attempts: HTTP 500" in sink.last_error


def test_webhook_4xx_is_permanent(receiver):
    url, rx = receiver
    rx.plan = [400]
    slept = []
    sink = WebhookSink(url, retries=3, sleep=slept.append)
    sink.send(firing_events())
    assert len(rx.bodies) == 1 and slept == [] and "HTTP 400" in sink.last_error


def test_webhook_unreachable_counts_failure():
    slept = []
    sink = WebhookSink("http://127.0.0.1:9/none", retries=1, backoff=0.1, timeout=2, sleep=slept.append)
    sink.send(firing_events())
    assert sink.failures == 1 and slept == [0.1]
    with pytest.raises(ValueError, match="expected an http"):
        WebhookSink("ftp://x")


def test_broken_sink_does_not_stop_others_and_kubernetes_events():
    got = []

    class Broken(LogSink):
        def send(self, events):
            raise RuntimeError("boom")

    rule = {"name": "Hot", "metric": "m", "threshold": 90, "severity": "warning", "summary": "{pod} hot"}
    mgr, _ = feed([95, 10], [rule], sinks=[Broken(), CallbackSink(got.append)])
    assert mgr.sink_errors == 2 and [e.state for e in got] == ["firing", "resolved"]
    ev = kubernetes_event(got[0])
    assert ev["involvedObject"] == {"kind": "Pod", "name": "p", "namespace": "ns"}
    assert ev["type"] == "Warning" and ev["reason"] == "Hot" and "[firing] p hot" == ev["message"]
    assert kubernetes_event(got[1])["type"] == "Normal"


def test_alerts_plugin_lifecycle(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {name: Hot, metric: m, threshold: 90}\n  - {name: Bad, metric: m}\n")
    p = plugins.create("alerts", rules=str(path))
    assert isinstance(p, AlertsPlugin)
    p.start()
    assert [e.field for e in p.rule_errors] == ["threshold"]
    store = MetricsStore(slots=4)
    store.ingest_text("m 95\n", 10.0)
    ctx = CycleContext(None, None, None, extra={"metrics_store": store})
    p.on_cycle_end(ctx, None)
    assert [(e.rule, e.state) for e in p.last_events] == [("Hot", "firing")]
    assert ctx.extra["alerts"].counts()[("firing", "warning")] == 1
    with pytest.raises(plugins.PluginError, match="'rules'"):
        plugins.create("alerts").start()


def test_rule_compare_matches_kernel_ops():
    for op, v, thr, want in ((">", 2, 1, True), (">=", 1, 1, True), ("<", 1, 1, False), ("<=", 1, 1, True),
                             ("==", 1, 1, True), ("!=", 1, 1, False)):
        assert Rule("R", "m", op=op, threshold=thr).compare(v) is want
