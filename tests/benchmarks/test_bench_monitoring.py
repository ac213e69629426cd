"""Monitoring benchmarks: each compiled path and its plain-Python reference on the same inputs.

Inputs come from :class:`kaiwo.data.make_example_scrapes.MonitoringWorkload` at the scale of the
``scale`` fixture (``KAIWO_BENCH_SCALES``, default ``S``; M = 1,000 nodes x 8 MI300X = 8,000 GPUs,
20,000 running pods, 100 queues, 1,000 alert rules): a store holding one hour of scrapes every 15 s
of 8 exporter metrics per GPU (64,000 series at M) and the pods' cAdvisor CPU/memory series.

=====================  ====================================================================
group (``op``)         timed call
=====================  ====================================================================
``ingest-arrays``      one scrape of every GPU series written from arrays (``store.ingest``)
``ingest-text``        the same scrape as exporter text (``store.ingest_text``: parse + write)
``track-cycle``        ``MetricsPlugin.on_cycle_end`` after placing the scale's pending batch
                       (counts, per-queue allocation of 100 queues, Prometheus gauges)
``alerts``             one evaluation of every rule over every series (``AlertManager.evaluate``)
``aggregate-<by>-<s>`` 1-hour ``mean``/``p95`` of GPU activity per node, queue and cluster
``efficiency``         the efficiency report (allocated vs used, idle GPUs), 10-minute window
``rightsizing``        recommendations for every pod, 4 resources x 120 samples
=====================  ====================================================================

Each kernel/reference pair shares a ``benchmark.group`` (``monitor <op> <scale>``) and
``extra_info`` (``scale``, ``op``, ``impl``; ``strategy`` repeats ``op`` so that
``asv_bench/ratio.py`` lists these rows too). Under the default ``--benchmark-disable`` every
function runs once and each reference test asserts that the kernel gives the same answer (never a
time). Timed run at the reference scale (the references take seconds to tens of seconds at M, so
they get one to three rounds)::

    KAIWO_BENCH_SCALES=M python -m pytest tests/benchmarks/test_bench_monitoring.py \\
        --benchmark-enable --benchmark-only --benchmark-json /tmp/bench_monitoring.json
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import kaiwo_core as kc
from kaiwo.simulator import synth
from kaiwo.data.make_example_scrapes import MonitoringWorkload
from kaiwo_core.monitoring.alerts import AlertManager, load_rules
from kaiwo_core.monitoring.efficiency import efficiency_report
from kaiwo_core.monitoring.exposition import decode_key
from kaiwo_core.plugins import CycleContext
from kaiwo_core.monitoring.rightsizing import RESOURCES, Rightsizer
from kaiwo_core.self_metrics import MetricsPlugin
from tests.naive_monitoring import (NaiveAlertManager, naive_efficiency, naive_group_of,
                                    naive_group_window, naive_parse, naive_recommend,
                                    naive_track_cycle, naive_write)

KERNEL_ROUNDS = {"S": 30, "M": 15}
REFERENCE_ROUNDS = {"S": 3, "M": 1}
AGGREGATIONS = [(by, stat) for by in ("node", "queue", "cluster") for stat in ("mean", "p95")]
_CASES: dict = {}


class MonitoringCase:
    """The workload at one scale plus what the timed calls need, built once per session."""

    def __init__(self, scale: str):
        self.w = w = MonitoringWorkload(scale)
        self.scale = scale
        # ingestion: plain lists for the reference, so it times only its own loop
        self.ref_row = [math.nan] * w.ingest_store.n_series
        self.ref_stamp = [-1] * w.ingest_store.n_series
        self.ref_sids = w.gpu_sids.tolist()
        self.ref_vals = w.next_values.tolist()
        self.text_keys = {w.ingest_store.keys[s]: s for s in range(w.ingest_store.n_series)}
        self.text = w.next_text.decode()
        # alerts: compiled once (first evaluation), as a running manager is
        self.rules = load_rules({"rules": w.rules}).rules
        self.manager = AlertManager(self.rules, w.store, sinks=[])
        self.manager.evaluate(w.now)
        self._members = None
        # right-sizing inputs as lists for the reference
        self.rightsizer = Rightsizer()
        self._track = None

    def members(self):
        """Each rule's (sid, group) list for the reference: series selected with the store's
        selector (not what is timed), groups named by the reference's own function."""
        if self._members is None:
            st = self.w.store
            self._members = [[(int(s), naive_group_of(st, int(s), r.by)) for s in st.select(r.metric, r.matchers)]
                             for r in self.rules]
            self._members = [[(s, g) for s, g in mem if g is not None] for mem in self._members]
        return self._members

    def track(self):
        """(plugin, ctx, placement) of one placement of the scale's pending batch."""
        if self._track is None:
            snap, batch = synth.scale_arrays(self.scale, seed=0)
            plugin = MetricsPlugin()
            result = kc.place(snap.cluster, snap.state.copy(), batch)
            rng = np.random.default_rng(11)
            names = [f"q-{i:03d}" for i in range(100)]
            ctx = CycleContext(snap.cluster, snap.state, batch, extra={
                "queue_of_pod": rng.integers(0, 100, len(batch)), "queue_names": names,
                "fair_share": {"gpu": rng.random(100) * 1e5}})
            plugin.on_cycle_start(ctx)
            self._track = (plugin, ctx, result)
        return self._track


@pytest.fixture
def case(scale: str) -> MonitoringCase:
    if scale not in KERNEL_ROUNDS:
        pytest.skip(f"monitoring benchmarks run at S and M (scale {scale}: the hour of scrapes "
                    "alone would take over 2 GB)")
    if scale not in _CASES:
        _CASES[scale] = MonitoringCase(scale)
    return _CASES[scale]


def _label(benchmark, scale, op, impl):
    benchmark.group = f"monitor {op} {scale}"
    benchmark.extra_info.update(scale=scale, op=op, strategy=op, impl=impl)


def _run(benchmark, case, fn, impl, setup=None):
    rounds = (KERNEL_ROUNDS if impl == "kernel" else REFERENCE_ROUNDS)[case.scale]
    if setup is not None:
        return benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=1,
                                  warmup_rounds=1 if impl == "kernel" else 0)
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1 if impl == "kernel" else 0)


# ------------------------------------------------------------------------------ ingestion

def test_ingest_arrays_kernel(benchmark, case, scale):
    _label(benchmark, scale, "ingest-arrays", "kernel")
    w = case.w
    rep = _run(benchmark, case, lambda: w.ingest_store.ingest(w.gpu_sids, w.next_values, w.next_ingest_time()),
               "kernel")
    assert rep.samples == len(w.gpu_sids) and rep.duplicates == 0


def test_ingest_arrays_reference(benchmark, case, scale):
    _label(benchmark, scale, "ingest-arrays", "reference")
    row, _, dups = _run(benchmark, case, lambda: naive_write(case.ref_row, case.ref_sids, case.ref_vals,
                                                                  case.ref_stamp, 1, True), "reference")
    w = case.w
    w.ingest_store.ingest(w.gpu_sids, w.next_values, w.next_ingest_time())
    slot = w.ingest_store.ordered_slots()[0][-1]
    np.testing.assert_array_equal(w.ingest_store.values[slot, :w.ingest_store.n_series], np.array(row))
    assert dups == []


def test_ingest_text_kernel(benchmark, case, scale):
    _label(benchmark, scale, "ingest-text", "kernel")
    w = case.w
    rep = _run(benchmark, case, lambda: w.ingest_store.ingest_text(w.next_text, w.next_ingest_time()), "kernel")
    assert rep.samples == len(w.gpu_sids) and rep.new_series == 0 and not rep.errors


def reference_ingest_text(case):
    samples, errors = naive_parse(case.text)
    keys = case.text_keys
    sids = [keys[(name, tuple(sorted(labels.items())))] for _, name, labels, _, _ in samples]
    row, _, dups = naive_write(case.ref_row, sids, [s[3] for s in samples], case.ref_stamp, 1, True)
    return row, errors, dups


def test_ingest_text_reference(benchmark, case, scale):
    _label(benchmark, scale, "ingest-text", "reference")
    row, errors, dups = _run(benchmark, case, lambda: reference_ingest_text(case), "reference")
    w = case.w
    w.ingest_store.ingest_text(w.next_text, w.next_ingest_time())
    slot = w.ingest_store.ordered_slots()[0][-1]
    np.testing.assert_array_equal(w.ingest_store.values[slot, :w.ingest_store.n_series], np.array(row))
    assert errors == [] and dups == []


# ------------------------------------------------------------------------------ tracking

def test_track_cycle_kernel(benchmark, case, scale):
    _label(benchmark, scale, "track-cycle", "kernel")
    plugin, ctx, result = case.track()
    _run(benchmark, case, lambda: plugin.on_cycle_end(ctx, result), "kernel")
    assert plugin.metrics.last["scheduled"] == int(result.placed.sum())


def _held_ref(cluster, batch, result, i):
    """GPU milli pod i holds (kaiwo_core.scheduling.accounting's rule, one device at a time)."""
    total = 0
    for k in range(int(result.asg_start[i]), int(result.asg_start[i + 1])):
        d = int(result.asg_dev[k])
        milli, mem, cap = int(result.asg_milli[k]), int(result.asg_mem[k]), int(cluster.dev_mem_cap[d])
        mask = int(cluster.dev_xcd_mask[d])
        if batch.kind[i] == 1 or batch.exclusive[i]:
            total += 1000
            continue
        charge = milli if milli > 0 else (min(1000, -(-mem * 1000 // cap)) if cap > 0 else 0)
        if batch.kind[i] == 3 and mask:
            charge = max(charge, bin(int(result.asg_xcds[k]) & mask).count("1") * 1000 // bin(mask).count("1"))
        total += charge
    return total


def reference_track(plugin, ctx, result):
    """The same job in plain Python: charged GPU per pod, counts, per-queue sums, the gauges."""
    batch = result.batch
    charged = [float(_held_ref(ctx.cluster, batch, result, i)) if result.placed[i] else 0.0
               for i in range(len(batch))]
    usage = {"gpu": charged, "cpu": batch.cpu.tolist(), "memory": batch.mem.tolist()}
    names = ctx.extra["queue_names"]
    out = naive_track_cycle(result.placed.tolist(), ctx.extra["queue_of_pod"].tolist(), len(names), usage)
    m = plugin.metrics
    m.cycle_seconds.observe(0.0)
    m.scheduled.inc(out["scheduled"])
    m.pending.set(out["pending"])
    for res, per_queue in out["allocated"].items():
        for name, v in zip(names, per_queue):
            m.allocated.labels(queue=name, resource=res).set(v)
    for res, share in ctx.extra["fair_share"].items():
        for name, v in zip(names, share.tolist()):
            m.fair_share.labels(queue=name, resource=res).set(v)
    return out


def test_track_cycle_reference(benchmark, case, scale):
    _label(benchmark, scale, "track-cycle", "reference")
    plugin, ctx, result = case.track()
    out = _run(benchmark, case, lambda: reference_track(plugin, ctx, result), "reference")
    plugin.on_cycle_end(ctx, result)
    last = plugin.metrics.last
    assert (last["scheduled"], last["pending"]) == (out["scheduled"], out["pending"])
    for res in ("gpu", "cpu", "memory"):
        np.testing.assert_allclose(last["allocated"][res], out["allocated"][res], rtol=1e-12)


# ------------------------------------------------------------------------------ alerts

def test_alerts_kernel(benchmark, case, scale):
    _label(benchmark, scale, "alerts", "kernel")
    mgr = case.manager
    _run(benchmark, case, lambda: mgr.evaluate(case.w.now), "kernel")
    benchmark.extra_info.update(rules=len(mgr.rules), memberships=int(mgr._prog.n_memberships),
                                instances=int(mgr._prog.n_instances), combos=len(mgr._prog.combos))


def test_alerts_reference(benchmark, case, scale):
    _label(benchmark, scale, "alerts", "reference")
    ref = NaiveAlertManager(case.rules, case.w.store, case.members())
    values = _run(benchmark, case, lambda: ref.values(case.w.now), "reference")
    mgr = case.manager
    mgr.evaluate(case.w.now)
    prog = mgr._prog
    st = case.w.store
    # every instance: same value (NaN = no data) as the reference
    inst_values = mgr.values()
    got = {}
    for i in range(prog.n_instances):
        rule = mgr.rules[prog.inst_rule[i]]
        g = int(prog.inst_group[i])
        key = st.keys[g] if rule.by == "series" else \
            (st.nodes.names[st.device_keys[g][0]], *st.device_keys[g][1:]) if rule.by == "gpu" else \
            {"node": st.nodes.names, "pod": st.pods.names, "queue": st.queues.names,
             "namespace": st.namespaces.names}.get(rule.by, ["cluster"])[g]
        got[(rule.name, key)] = float(inst_values[i])
    assert set(got) == set(values)
    for k, v in values.items():
        assert (math.isnan(got[k]) and v is None) or got[k] == pytest.approx(v, rel=1e-12), k


# ------------------------------------------------------------------------------ aggregation

@pytest.mark.parametrize("by,stat", AGGREGATIONS)
def test_aggregate_kernel(benchmark, case, scale, by, stat):
    _label(benchmark, scale, f"aggregate-{by}-{stat}", "kernel")
    st = case.w.store
    agg = _run(benchmark, case, lambda: st.aggregate("gpu_gfx_activity", stat, 3600.0, by), "kernel")
    assert len(agg.names) > 0 and np.all(agg.counts > 0)


@pytest.mark.parametrize("by,stat", AGGREGATIONS)
def test_aggregate_reference(benchmark, case, scale, by, stat):
    _label(benchmark, scale, f"aggregate-{by}-{stat}", "reference")
    st = case.w.store
    slots, ts = st.window(3600.0)
    sids = st.select("gpu_gfx_activity")
    gkey, names = st.group_keys(sids, by)
    q = 0.95 if stat == "p95" else 0.0
    args = (st.values, slots.tolist(), ts.tolist(), sids.tolist(), gkey.tolist(), len(names),
            "quantile" if stat == "p95" else stat, q)
    ref, cnt = _run(benchmark, case, lambda: naive_group_window(*args), "reference")
    agg = st.aggregate("gpu_gfx_activity", stat, 3600.0, by)
    want = {names[g]: v for g, v in enumerate(ref) if cnt[g]}
    assert dict(zip(agg.names, agg.values.tolist())) == pytest.approx(want, rel=1e-12)


# ------------------------------------------------------------------------------ efficiency

def test_efficiency_kernel(benchmark, case, scale):
    _label(benchmark, scale, "efficiency", "kernel")
    w = case.w
    rep = _run(benchmark, case, lambda: efficiency_report(w.store, w.allocations, 600.0), "kernel")
    assert len(rep.allocations) == w.fleet.n_pods and len(rep.idle["node"]) > 0


def test_efficiency_reference(benchmark, case, scale):
    _label(benchmark, scale, "efficiency", "reference")
    w = case.w
    used, idle = _run(benchmark, case, lambda: naive_efficiency(w.store, w.pods, 600.0), "reference")
    rep = efficiency_report(w.store, w.allocations, 600.0)
    for r in ("gpu", "gpu_memory", "cpu", "memory"):
        want = np.array([np.nan if used[p][r] is None else used[p][r] for p in w.pods])
        got = np.where((w.allocations.gpu == 0) & np.isnan(want) & (r in ("gpu", "gpu_memory")), np.nan,
                       rep.pod_used[r])
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=r)
    assert sorted(rep.idle["device"]) == sorted(
        f"{n}/gpu{g}" + (f".p{p}" if p else "") for n, g, p in idle)


# ------------------------------------------------------------------------------ right-sizing

def test_rightsizing_kernel(benchmark, case, scale):
    _label(benchmark, scale, "rightsizing", "kernel")
    w = case.w
    recs = _run(benchmark, case, lambda: case.rightsizer.recommend_arrays(w.pods, w.usage, w.current, w.now),
                "kernel")
    assert set(recs.by_resource) == set(RESOURCES) and len(recs.pods) == w.fleet.n_pods


def test_rightsizing_reference(benchmark, case, scale):
    _label(benchmark, scale, "rightsizing", "reference")
    w = case.w
    rs = case.rightsizer
    lists = {r: (w.usage[r].tolist(), w.current[r].tolist()) for r in RESOURCES}
    never = [-math.inf] * len(w.pods)

    def reference():
        return {r: naive_recommend(u, c, never, w.now, rs.policies[r], rs.cooldown) for r, (u, c) in lists.items()}

    ref = _run(benchmark, case, reference, "reference")
    recs = rs.recommend_arrays(w.pods, w.usage, w.current, w.now)
    for r in RESOURCES:
        rec = recs.by_resource[r]
        assert rec.code.tolist() == [x[0] for x in ref[r]]
        np.testing.assert_array_equal(rec.target, np.array([x[1] for x in ref[r]]))


def test_decode_key_is_the_reference_parse_of_a_series():
    """The text benchmark's reference keys match the kernel parser's decoding of the same line."""
    line = 'gpu_gfx_activity{gpu_id="3",hostname="node-00001",namespace="team-00",pod="running-7"} 42'
    (_, name, labels, value, _), = naive_parse(line)[0]
    assert (name, labels) == decode_key(line.split(" ")[0].encode()) and value == 42.0
