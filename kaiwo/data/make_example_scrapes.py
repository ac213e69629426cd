"""Seeded generators of AMD device-metrics-exporter scrapes: the bundled example and scale fleets.

Run as a script to rewrite the bundled example (``kaiwo monitor`` and ``kaiwo alerts`` read it when
given no ``--source``)::

    python -m kaiwo.data.make_example_scrapes            # writes kaiwo/data/example-scrapes.prom

The example: two MI300X nodes (``mi300x-a``, ``mi300x-b``) x 8 GPUs scraped every minute for 15
minutes (16 scrapes) in the replay format of ``kaiwo monitor`` (exposition texts, each after a
``# SCRAPE <unix-seconds>`` line). Besides the exporter's GPU metrics it carries what a Prometheus
next to it would also scrape for those pods: cAdvisor CPU and memory usage and kube-state-metrics
requests and ``kaiwo.ai/queue`` labels (the energy counter is left out to keep the file under
300 KB). The story it tells:

* ``research/llm-pretrain-0`` keeps 4 GPUs busy (~92%), ``research/finetune-1`` 2 GPUs at ~55%;
* ``serving/chat-api-0`` uses ~15% of its GPU and a fifth of its CPU (right-sizing candidate);
* ``research/notebook-jin`` holds a GPU it never uses (idle GPU alert, shrink recommendation);
* ``batch/eval-3`` stops working after 3 minutes and idles from then on;
* ``batch/render-7``'s GPU heats above 95 C from minute 6 to 10, then cools (fires, then resolves);
* GPU 5 of ``mi300x-b`` (free) turns unhealthy at minute 10; GPUs 4-7 of ``mi300x-b`` are free.

:class:`Fleet` builds the same kind of data at the DESIGN.md scales (S, M, L) for benchmarks:
the running pods of :mod:`kaiwo.simulator.synth` placed on ``nodes x 8`` MI300X, one series per logical GPU
and exporter metric (8 metrics: the 7 above and the ``gpu_energy_consumed`` counter) and cAdvisor
CPU/memory series per pod, sampled as arrays (the fast ingestion path) or rendered as text.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

GPU_METRICS = ("gpu_gfx_activity", "gpu_umc_activity", "gpu_used_vram", "gpu_total_vram",
               "gpu_package_power", "gpu_junction_temperature", "gpu_health", "gpu_energy_consumed")
HELP = {
    "gpu_gfx_activity": ("gauge", "Graphics engine activity in percent"),
    "gpu_umc_activity": ("gauge", "Memory controller activity in percent"),
    "gpu_used_vram": ("gauge", "Used VRAM in MiB"),
    "gpu_total_vram": ("gauge", "Total VRAM in MiB"),
    "gpu_package_power": ("gauge", "Package power in W"),
    "gpu_junction_temperature": ("gauge", "Junction temperature in C"),
    "gpu_health": ("gauge", "GPU health (1 healthy, 0 unhealthy)"),
    "gpu_energy_consumed": ("counter", "Energy consumed in J"),
    "container_cpu_usage_seconds_total": ("counter", "Cumulative CPU time consumed in seconds"),
    "container_memory_working_set_bytes": ("gauge", "Current working set in bytes"),
    "kube_pod_container_resource_requests": ("gauge", "Resources requested by a container"),
    "kube_pod_labels": ("gauge", "Kubernetes labels converted to Prometheus labels"),
}
MI300X_VRAM_MIB = 196608
EXAMPLE_T0 = 1764316800  # 2025-11-28T08:00:00Z
EXAMPLE_FILE = Path(__file__).with_name("example-scrapes.prom")


def _fmt(v: float, nd: int) -> str:
    s = f"{v:.{nd}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _labels(**kv) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in kv.items() if v is not None) + "}"


# --------------------------------------------------------------------------- bundled example

# (namespace/pod, queue, node, GPUs, CPU request milli, memory request MiB, CPU used cores,
#  memory used fraction)
EXAMPLE_PODS = [
    ("research/llm-pretrain-0", "research", "mi300x-a", (0, 1, 2, 3), 32000, 524288, 20.0, 0.70),
    ("research/finetune-1", "research", "mi300x-a", (4, 5), 16000, 262144, 14.0, 0.80),
    ("serving/chat-api-0", "serving", "mi300x-a", (6,), 8000, 65536, 1.5, 0.30),
    ("research/notebook-jin", "research", "mi300x-a", (7,), 4000, 32768, 0.2, 0.10),
    ("serving/embed-0", "serving", "mi300x-b", (0, 1), 8000, 65536, 3.0, 0.50),
    ("batch/eval-3", "batch", "mi300x-b", (2,), 4000, 32768, 3.0, 0.60),
    ("batch/render-7", "batch", "mi300x-b", (3,), 4000, 32768, 3.5, 0.70),
]


def _example_activity(pod: str, minute: int, rng) -> float:
    if pod == "research/llm-pretrain-0":
        return 92 + rng.normal(0, 2)
    if pod == "research/finetune-1":
        return 55 + rng.normal(0, 6)
    if pod == "serving/chat-api-0":
        return 15 + rng.normal(0, 3) + (25 if minute in (4, 11) else 0)
    if pod == "research/notebook-jin":
        return abs(rng.normal(0.6, 0.4))
    if pod == "serving/embed-0":
        return 40 + rng.normal(0, 4)
    if pod == "batch/eval-3":
        return 70 + rng.normal(0, 5) if minute < 3 else abs(rng.normal(0.5, 0.3))
    if pod == "batch/render-7":
        return 80 + rng.normal(0, 3)
    return 0.0


def example_scrapes(seed: int = 7, minutes: int = 15, t0: int = EXAMPLE_T0) -> str:
    """The bundled replay file as text (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    by_gpu = {(node, g): p for p in EXAMPLE_PODS for node in [p[2]] for g in p[3]}
    cpu_total = {p[0]: float(rng.uniform(1000, 5000)) for p in EXAMPLE_PODS}
    out = []
    for minute in range(minutes + 1):
        t = t0 + 60 * minute
        out.append(f"# SCRAPE {t}")
        lines: dict[str, list[str]] = {m: [] for m in HELP}
        for node in ("mi300x-a", "mi300x-b"):
            for g in range(8):
                pod = by_gpu.get((node, g))
                ns, name = pod[0].split("/") if pod else (None, None)
                lab = _labels(gpu_id=g, gpu_partition_id=0, hostname=node, namespace=ns, pod=name)
                act = min(100.0, max(0.0, _example_activity(pod[0], minute, rng))) if pod else 0.0
                temp = 38 + 0.45 * act + rng.normal(0, 0.7)
                if pod and pod[0] == "batch/render-7":
                    temp = 86 + rng.normal(0, 0.5) + (11 if 6 <= minute <= 10 else 0)
                power = 140 + 5.6 * act + rng.normal(0, 4)
                vram = (0.55 * MI300X_VRAM_MIB + rng.normal(0, 800)) if pod and act > 5 else \
                    (4096 if pod else 290)
                health = 0 if (node == "mi300x-b" and g == 5 and minute >= 10) else 1
                for metric, v, nd in (("gpu_gfx_activity", act, 0), ("gpu_umc_activity", 0.6 * act, 0),
                                      ("gpu_used_vram", vram, 0), ("gpu_total_vram", MI300X_VRAM_MIB, 0),
                                      ("gpu_package_power", power, 1), ("gpu_junction_temperature", temp, 1),
                                      ("gpu_health", health, 0)):
                    lines[metric].append(f"{metric}{lab} {_fmt(v, nd)}")
        for pod, queue, node, _gpus, cpu_req, mem_req, cpu_used, mem_frac in EXAMPLE_PODS:
            ns, name = pod.split("/")
            used = cpu_used if not (pod == "batch/eval-3" and minute >= 3) else 0.1
            cpu_total[pod] += used * 60 * (1 + rng.normal(0, 0.03))
            lab = _labels(namespace=ns, pod=name, container="main", node=node)
            lines["container_cpu_usage_seconds_total"].append(
                f"container_cpu_usage_seconds_total{lab} {_fmt(cpu_total[pod], 2)}")
            lines["container_memory_working_set_bytes"].append(
                f"container_memory_working_set_bytes{lab} {int(mem_req * mem_frac * (1 + rng.normal(0, 0.02))) << 20}")
            for res, unit, v in (("cpu", "core", cpu_req / 1000), ("memory", "byte", mem_req << 20)):
                rl = _labels(namespace=ns, pod=name, container="main", node=node, resource=res, unit=unit)
                lines["kube_pod_container_resource_requests"].append(
                    f"kube_pod_container_resource_requests{rl} {_fmt(v, 3)}")
            lines["kube_pod_labels"].append(
                f"kube_pod_labels{_labels(namespace=ns, pod=name, label_kaiwo_ai_queue=queue)} 1")
        for metric, ls in lines.items():
            if not ls:
                continue
            kind, text = HELP[metric]
            out.append(f"# HELP {metric} {text}")
            out.append(f"# TYPE {metric} {kind}")
            out.extend(ls)
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- scale fleets

class Fleet:
    """A synthetic cluster with running pods and the metrics they produce, at a DESIGN.md scale.

    Parameters
    ----------
    scale : str
        ``S``, ``M`` or ``L`` (:func:`kaiwo.simulator.synth.sizes`): nodes x 8 MI300X and the running pods.
    seed : int
        Seeds the workload (as :mod:`kaiwo.simulator.synth` does) and the usage model.
    queues : int
        Leaf queues the pods are spread over (DESIGN.md: 100 at scale M).
    """

    def __init__(self, scale: str = "M", seed: int = 0, queues: int = 100):
        import kaiwo_core as kc
        from kaiwo.simulator import synth

        sz = synth.sizes(scale)
        n = sz["nodes"]
        snap = kc.Snapshot.from_arrays([f"node-{i:05d}" for i in range(n)], cpu=[synth.NODE_CPU] * n,
                                       memory=[synth.NODE_MEM_MIB] * n, gpus=[8] * n, pods=[250] * n)
        cols = synth.pod_columns(sz["running"], seed + 1, synth.RUNNING_SHAPES)
        batch = synth.batch(cols, "running")
        placed = kc.place(snap.cluster, snap.state, batch, strategy="binpack")
        c = snap.cluster
        rng = np.random.default_rng(seed + 101)
        self.scale, self.n_nodes = scale, n
        self.node_names = c.names
        self.dev_node = c.dev_node.astype(np.int64)
        self.dev_gpu = c.dev_gpu.astype(np.int64)
        keep = np.flatnonzero(placed.placed)
        p = len(keep)
        self.n_pods = p
        self.pod_queue_id = rng.integers(0, queues, p)
        self.queue_names = [f"q-{i:03d}" for i in range(queues)]
        self.pod_ns = [f"team-{q // 10:02d}" for q in self.pod_queue_id]
        self.pod_names = [f"{ns}/{batch.names[i]}" for ns, i in zip(self.pod_ns, keep)]
        self.pod_job = [f"job-{i // 4:05d}" for i in range(p)]
        self.pod_node = placed.node[keep].astype(np.int64)
        # Device -> first pod placed on it (the exporter labels one pod per device here).
        self.dev_pod = np.full(c.n_devices, -1, np.int64)
        n_devs = np.diff(placed.asg_start)[keep]
        for row, i in enumerate(keep):
            for d in placed.asg_dev[placed.asg_start[i]:placed.asg_start[i + 1]]:
                if self.dev_pod[d] < 0:
                    self.dev_pod[d] = row
        kind = batch.kind[keep]
        milli = batch.milli[keep].astype(float)
        whole = kind == 1
        self.alloc_cpu = batch.cpu[keep].astype(float)
        self.alloc_mem = batch.mem[keep].astype(float)
        self.alloc_devices = n_devs.astype(np.int64)
        self.alloc_gpu = np.where(whole, n_devs, n_devs * milli / 1000.0)
        gmem = batch.gpu_mem[keep].astype(float)
        self.alloc_gpu_mem = np.where(whole, n_devs * MI300X_VRAM_MIB,
                                      n_devs * np.where(gmem > 0, gmem, milli / 1000.0 * MI300X_VRAM_MIB))
        # Usage model: most pods busy around their own mean, 10% idle.
        util = rng.beta(2.0, 2.0, p)
        util[rng.random(p) < 0.10] = 0.01
        self.pod_util = util
        self.pod_cpu_util = rng.uniform(0.1, 0.9, p)
        self.pod_mem_util = rng.uniform(0.2, 0.9, p)
        self._rng = np.random.default_rng(seed + 202)
        self._energy = self._rng.uniform(1e8, 2e8, c.n_devices)
        self._cpu_total = self._rng.uniform(1e3, 1e4, p)

    @property
    def n_devices(self) -> int:
        return len(self.dev_node)

    def allocations(self):
        """:class:`kaiwo_core.monitoring.efficiency.Allocations` of the running pods."""
        from kaiwo_core.monitoring.efficiency import Allocations

        return Allocations(self.pod_names, [self.node_names[n] for n in self.pod_node],
                           [self.queue_names[q] for q in self.pod_queue_id], self.pod_job,
                           self.alloc_cpu, self.alloc_mem, self.alloc_gpu, self.alloc_devices,
                           self.alloc_gpu_mem)

    def gpu_label_columns(self) -> dict:
        """Exporter labels of the devices (same for every metric)."""
        pods = [self.pod_names[p].split("/") if p >= 0 else ("", "") for p in self.dev_pod]
        return {"gpu_id": self.dev_gpu.tolist(), "gpu_partition_id": [0] * self.n_devices,
                "hostname": [self.node_names[n] for n in self.dev_node],
                "namespace": [ns for ns, _ in pods], "pod": [name for _, name in pods]}

    def intern(self, store, pods: bool = True) -> dict:
        """Intern every series in ``store``; returns ``{"gpu": [metrics, devices] sids,
        "cpu": [pods], "memory": [pods]}`` (pod series only with ``pods``) and sets queues/jobs."""
        cols = self.gpu_label_columns()
        out = {"gpu": np.stack([store.intern_many(m, cols) for m in GPU_METRICS])}
        if pods:
            ns = [p.split("/")[0] for p in self.pod_names]
            names = [p.split("/")[1] for p in self.pod_names]
            pc = {"namespace": ns, "pod": names, "container": ["main"] * self.n_pods,
                  "node": [self.node_names[n] for n in self.pod_node]}
            out["cpu"] = store.intern_many("container_cpu_usage_seconds_total", pc)
            out["memory"] = store.intern_many("container_memory_working_set_bytes", pc)
        store.set_pod_info(self.pod_names, [self.queue_names[q] for q in self.pod_queue_id], self.pod_job)
        return out

    def sample(self, interval: float = 15.0) -> dict:
        """One scrape's values: ``gpu`` [8 metrics, devices], ``cpu`` and ``memory`` [pods];
        counters advance by ``interval`` seconds."""
        rng = self._rng
        d = self.n_devices
        pod = self.dev_pod
        base = np.where(pod >= 0, self.pod_util[np.maximum(pod, 0)], 0.0)
        act = np.clip(100 * base + rng.normal(0, 4, d) * (pod >= 0), 0, 100).round()
        power = (140 + 5.6 * act + rng.normal(0, 4, d)).round(1)
        self._energy += power * interval
        vals = np.empty((len(GPU_METRICS), d))
        vals[0] = act
        vals[1] = (0.6 * act).round()
        vals[2] = np.where(pod >= 0, (0.2 + 0.6 * base) * MI300X_VRAM_MIB, 290).round()
        vals[3] = MI300X_VRAM_MIB
        vals[4] = power
        vals[5] = (38 + 0.45 * act + rng.normal(0, 0.7, d)).round(1)
        vals[6] = 1.0
        vals[7] = self._energy.round()
        self._cpu_total += self.alloc_cpu / 1000.0 * self.pod_cpu_util * interval * rng.uniform(0.9, 1.1, self.n_pods)
        mem = (self.alloc_mem * self.pod_mem_util * rng.uniform(0.97, 1.03, self.n_pods)).round() * (1 << 20)
        return {"gpu": vals, "cpu": self._cpu_total.round(2), "memory": mem}

    def fill(self, store, scrapes: int, interval: float = 15.0, t0: float = 1.7e9, pods: bool = True) -> dict:
        """Intern the series and ingest ``scrapes`` scrapes through the array path; returns the sids."""
        sids = self.intern(store, pods)
        flat = sids["gpu"].reshape(-1)
        for k in range(scrapes):
            v = self.sample(interval)
            t = t0 + k * interval
            store.ingest(flat, v["gpu"].reshape(-1), t)
            if pods:
                store.ingest(sids["cpu"], v["cpu"], t)
                store.ingest(sids["memory"], v["memory"], t)
        return sids

    def render_gpu_text(self, values: np.ndarray) -> bytes:
        """The exporter's text for one scrape of ``values`` [8 metrics, devices] (with HELP/TYPE)."""
        cols = self.gpu_label_columns()
        heads = []
        for i in range(self.n_devices):
            ns, pod = cols["namespace"][i], cols["pod"][i]
            heads.append(_labels(gpu_id=cols["gpu_id"][i], gpu_partition_id=0, hostname=cols["hostname"][i],
                                 namespace=ns or None, pod=pod or None))
        out = []
        for m, metric in enumerate(GPU_METRICS):
            kind, text = HELP[metric]
            out.append(f"# HELP {metric} {text}\n# TYPE {metric} {kind}")
            row = values[m]
            nd = 1 if metric in ("gpu_package_power", "gpu_junction_temperature") else 0
            out.extend(f"{metric}{h} {_fmt(v, nd)}" for h, v in zip(heads, row.tolist()))
        return ("\n".join(out) + "\n").encode()


# --------------------------------------------------------------------------- benchmark inputs

# Alert kinds of a production rule set: (metric, aggregation, window, by, reduce, op, threshold
# range, for, severity). A thousand rules are these kinds with different scopes and thresholds
# (per team, per node range, cluster-wide), as a real cluster's rules are.
RULE_KINDS = [
    ("gpu_junction_temperature", "max", "1m", "series", None, ">", (90, 100), "2m", "critical"),
    ("gpu_gfx_activity", "max", "1m", "series", None, "<", (1, 10), "10m", "warning"),
    ("gpu_health", "last", "1m", "series", None, "<", (1, 1), "0s", "critical"),
    ("gpu_used_vram", "max", "5m", "series", None, ">", (150000, 190000), "5m", "warning"),
    ("gpu_package_power", "p95", "5m", "series", None, ">", (600, 750), "5m", "warning"),
    ("gpu_umc_activity", "p95", "5m", "series", None, ">", (80, 99), "10m", "info"),
    ("gpu_gfx_activity", "mean", "5m", "node", "mean", ">", (85, 99), "5m", "info"),
    ("gpu_gfx_activity", "mean", "10m", "queue", "mean", "<", (20, 40), "10m", "info"),
    ("gpu_energy_consumed", "rate", "5m", "node", "sum", ">", (4000, 6000), "5m", "warning"),
    ("gpu_junction_temperature", "mean", "5m", "gpu", "mean", ">", (80, 95), "5m", "warning"),
]


def benchmark_rules(n: int, n_nodes: int, seed: int = 0, namespaces: int = 10) -> list[dict]:
    """``n`` alert rules over a fleet of ``n_nodes`` nodes: 20% cluster-wide, 40% per team
    namespace, 40% per node range (1% or 10% of the nodes)."""
    rng = np.random.default_rng(seed)
    digits = len(f"{max(n_nodes - 1, 0):05d}")
    rules = []
    for k in range(n):
        metric, agg, window, by, reduce, op, (lo, hi), for_, sev = RULE_KINDS[k % len(RULE_KINDS)]
        scope = rng.random()
        if scope < 0.2:
            selector = None
        elif scope < 0.6:
            selector = f'namespace="team-{rng.integers(0, namespaces):02d}"'
        else:
            width = 2 if rng.random() < 0.5 else 1   # fixed digits: 1% or 10% of the nodes
            prefix = f"{rng.integers(0, n_nodes):0{digits}d}"[:digits - width]
            selector = f'hostname=~"node-{prefix}.*"'
        doc = {"name": f"r{k:04d}", "metric": metric, "aggregation": agg, "window": window, "by": by,
               "op": op, "threshold": float(rng.integers(lo, hi + 1)), "for": for_, "severity": sev}
        if reduce:
            doc["reduce"] = reduce
        if selector:
            doc["selector"] = selector
        rules.append(doc)
    return rules


class MonitoringWorkload:
    """Everything the monitoring benchmarks (asv and pytest-benchmark) need at one scale.

    * ``store``: one hour (241 scrapes at 15 s) of the fleet's 8 GPU metrics and the pods' cAdvisor
      CPU/memory series, ingested through the array path (ring of 256 slots);
    * ``ingest_store``: the same GPU series interned in a separate, smaller ring (so that timed
      ingestion does not move the hour the other benchmarks read), with ``next_values`` /
      ``next_text`` one more scrape as arrays and as exporter text;
    * ``rules``: :func:`benchmark_rules` (1,000 at M, scaled with the cluster);
    * ``allocations`` of the running pods and ``usage``/``current`` arrays for right-sizing
      (4 resources x pods x 120 samples: two hours at one minute, as from ``query_range``).
    """

    INTERVAL = 15.0
    SCRAPES = 241
    T0 = 1.7e9

    def __init__(self, scale: str = "M", seed: int = 0):
        from kaiwo.simulator import synth
        from kaiwo_core.monitoring.metrics_store import MetricsStore

        self.scale = scale
        self.fleet = fleet = Fleet(scale, seed)
        n_series = fleet.n_devices * len(GPU_METRICS) + 2 * fleet.n_pods
        self.store = MetricsStore(256, n_series)
        self.sids = fleet.fill(self.store, self.SCRAPES, self.INTERVAL, self.T0)
        self.now = self.T0 + (self.SCRAPES - 1) * self.INTERVAL
        self.gpu_sids = np.ascontiguousarray(self.sids["gpu"].reshape(-1))
        nxt = fleet.sample(self.INTERVAL)["gpu"]
        self.next_values = np.ascontiguousarray(nxt.reshape(-1))
        self.next_text = fleet.render_gpu_text(nxt)
        self.ingest_store = MetricsStore(16, len(self.gpu_sids))
        self.ingest_store.ingest_text(self.next_text, 0.0)   # intern once, as a running collector has
        self._ingest_t = 0.0
        n_rules = max(10, int(1000 * synth.SCALES[scale]))
        self.rules = benchmark_rules(n_rules, fleet.n_nodes, seed)
        self.allocations = fleet.allocations()
        rng = np.random.default_rng(seed + 303)
        p = fleet.n_pods
        self.pods = fleet.pod_names
        w = 120
        gpu_dev = np.maximum(fleet.alloc_devices, 1)
        base = {"cpu": fleet.alloc_cpu * fleet.pod_cpu_util, "memory": fleet.alloc_mem * fleet.pod_mem_util,
                "gpu": np.where(fleet.alloc_devices > 0, fleet.alloc_gpu / gpu_dev * 1000 * fleet.pod_util, np.nan),
                "gpu_memory": np.where(fleet.alloc_devices > 0, fleet.alloc_gpu_mem / gpu_dev * 0.6, np.nan)}
        self.usage = {}
        for r, b in base.items():
            u = b[:, None] * rng.lognormal(0.0, 0.25, (p, w))
            u[rng.random((p, w)) < 0.05] = np.nan    # missed scrapes
            self.usage[r] = np.ascontiguousarray(u)
        self.current = {"cpu": fleet.alloc_cpu.copy(), "memory": fleet.alloc_mem.copy(),
                        "gpu": np.where(fleet.alloc_devices > 0, fleet.alloc_gpu / gpu_dev * 1000, np.nan),
                        "gpu_memory": np.where(fleet.alloc_devices > 0, fleet.alloc_gpu_mem / gpu_dev, np.nan)}

    def next_ingest_time(self) -> float:
        """A strictly newer timestamp for every timed ingestion into ``ingest_store``."""
        self._ingest_t += self.INTERVAL
        return self._ingest_t


def main(argv=None) -> int:
    target = Path(argv[0]) if argv else EXAMPLE_FILE
    text = example_scrapes()
    target.write_text(text)
    print(f"wrote {target} ({len(text.encode()) / 1024:.0f} KiB, {text.count('# SCRAPE')} scrapes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
