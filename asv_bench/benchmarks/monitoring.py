"""asv benchmarks of monitoring: ingestion, cycle tracking, alerts, aggregation, efficiency, right-sizing.

Inputs are the seeded :class:`kaiwo.data.make_example_scrapes.MonitoringWorkload` (S = 100 nodes x 8
MI300X, M = 1,000 nodes x 8 MI300X = 8,000 GPUs, 20,000 running pods, 100 queues, 1,000 rules): one
hour of scrapes every 15 s of 8 exporter metrics per GPU, plus the pods' cAdvisor series. Building
it takes seconds at M, so it is memoised per process (:func:`_workload`) and every ``setup`` only
picks what its timed line needs. Numba kernels are compiled (or loaded from their cache) at import;
``setup`` also runs each timed call once, so no sample pays a first-call cost.

The pure-Python references are not timed here (seconds to tens of seconds at M); the
kernel/reference ratios come from ``tests/benchmarks/test_bench_monitoring.py`` and
``asv_bench/ratio.py``.
"""
from __future__ import annotations

import functools

import numpy as np

import kaiwo_core as kc
from kaiwo.simulator import synth
from kaiwo.data.make_example_scrapes import MonitoringWorkload
from kaiwo_core.monitoring.alerts import AlertManager, load_rules
from kaiwo_core.monitoring.efficiency import efficiency_report
from kaiwo_core.plugins import CycleContext
from kaiwo_core.monitoring.rightsizing import Rightsizer
from kaiwo_core.self_metrics import MetricsPlugin

SCALES = ["S", "M"]
SEED = 0


@functools.lru_cache(maxsize=None)
def _workload(scale):
    return MonitoringWorkload(scale, SEED)


class Ingest:
    """One scrape of every GPU series (64,000 at M): from arrays, or parsed from exporter text."""

    params = (SCALES, ["arrays", "text"])
    param_names = ["scale", "source"]
    timeout = 600

    def setup(self, scale, source):
        self.w = _workload(scale)
        self.store = self.w.ingest_store
        self.time_ingest(scale, source)

    def time_ingest(self, scale, source):
        if source == "arrays":
            self.store.ingest(self.w.gpu_sids, self.w.next_values, self.w.next_ingest_time())
        else:
            self.store.ingest_text(self.w.next_text, self.w.next_ingest_time())


class TrackCycle:
    """``MetricsPlugin.on_cycle_end`` after placing the scale's pending batch (10,000 pods at M)."""

    params = SCALES
    param_names = ["scale"]
    timeout = 600

    def setup(self, scale):
        snap, batch = synth.scale_arrays(scale, seed=SEED)
        self.result = kc.place(snap.cluster, snap.state.copy(), batch)
        rng = np.random.default_rng(11)
        self.ctx = CycleContext(snap.cluster, snap.state, batch, extra={
            "queue_of_pod": rng.integers(0, 100, len(batch)),
            "queue_names": [f"q-{i:03d}" for i in range(100)],
            "fair_share": {"gpu": rng.random(100) * 1e5}})
        self.plugin = MetricsPlugin()
        self.plugin.on_cycle_start(self.ctx)
        self.plugin.on_cycle_end(self.ctx, self.result)

    def time_track_cycle(self, scale):
        self.plugin.on_cycle_end(self.ctx, self.result)


class EvaluateAlerts:
    """One evaluation of every rule (1,000 at M) over every series, rules already compiled."""

    params = SCALES
    param_names = ["scale"]
    timeout = 600

    def setup(self, scale):
        self.w = _workload(scale)
        self.manager = AlertManager(load_rules({"rules": self.w.rules}), self.w.store, sinks=[])
        self.manager.evaluate(self.w.now)

    def time_evaluate(self, scale):
        self.manager.evaluate(self.w.now)


class Aggregate:
    """One-hour window statistic of GPU activity per node, queue or the whole cluster."""

    params = (SCALES, ["node", "queue", "cluster"], ["mean", "p95", "rate"])
    param_names = ["scale", "by", "stat"]
    timeout = 600

    def setup(self, scale, by, stat):
        self.store = _workload(scale).store
        self.metric = "gpu_energy_consumed" if stat == "rate" else "gpu_gfx_activity"
        self.time_aggregate(scale, by, stat)

    def time_aggregate(self, scale, by, stat):
        self.store.aggregate(self.metric, stat, 3600.0, by)


class Efficiency:
    """The efficiency report over 10 minutes (every pod, queue and node, idle GPUs)."""

    params = SCALES
    param_names = ["scale"]
    timeout = 600

    def setup(self, scale):
        self.w = _workload(scale)
        self.time_report(scale)

    def time_report(self, scale):
        efficiency_report(self.w.store, self.w.allocations, 600.0)

    def peakmem_report(self, scale):
        efficiency_report(self.w.store, self.w.allocations, 600.0)


class Rightsize:
    """Recommendations for every pod (20,000 at M): from 4 x [pods, 120] usage arrays, or read
    from the store's last hour (usage time lines built by the group-slot kernel, then the same)."""

    params = (SCALES, ["arrays", "store"])
    param_names = ["scale", "source"]
    timeout = 600

    def setup(self, scale, source):
        self.w = _workload(scale)
        self.rs = Rightsizer()
        self.time_recommend(scale, source)

    def time_recommend(self, scale, source):
        if source == "arrays":
            self.rs.recommend_arrays(self.w.pods, self.w.usage, self.w.current, self.w.now)
        else:
            self.rs.recommend(self.w.store, self.w.allocations, 3600.0)
