"""Efficiency analytics: what pods, queues and nodes were allocated against what they used.

Resources and where their usage comes from (series in a :class:`~kaiwo_core.monitoring.metrics_store.MetricsStore`):

============  ===============================  ==================================================
resource      allocated (unit)                 used
============  ===============================  ==================================================
GPU compute   GPUs (0.5 = half a logical GPU)  ``gpu_gfx_activity`` (percent of the logical GPU)
GPU memory    MiB                              ``gpu_used_vram`` (MiB, as the AMD exporter reports)
CPU           milli-cores                      rate of ``container_cpu_usage_seconds_total``
memory        MiB                              ``container_memory_working_set_bytes``
============  ===============================  ==================================================

Usage is the mean over the window (CPU: the counter's rate over it). A device series labelled with
a pod is that pod's; when several pods' series report one device (shared GPU), the device's usage
is split equally between them. cAdvisor series with ``container=""`` (the pod cgroup) or
``container="POD"`` (the pause container) are left out, so containers are not counted twice.

Allocations come from Kaiwo itself (:meth:`Allocations.from_snapshot`: the requests of running
pods), from arrays, or -- with nothing else at hand, e.g. ``kaiwo monitor`` on a scrape file -- from
the metrics (:meth:`Allocations.from_store`): kube-state-metrics'
``kube_pod_container_resource_requests`` for CPU and memory, and the devices the exporter attributes
to each pod for GPUs (one logical GPU each, its ``gpu_total_vram`` as GPU memory).

Idle GPUs: a logical GPU whose every ``gpu_gfx_activity`` sample of the last ``idle_for`` seconds
is below ``idle_threshold`` percent, with at least 80% of the scrapes of that period present and
the store holding at least that much history. Allocated idle GPUs (a pod is labelled on them) are
the ones to reclaim; unallocated idle GPUs are free capacity.

Everything is vectorised: one compiled window statistic per metric, then ``np.bincount`` by the
store's integer pod/node/device ids; names are attached only when a table or JSON is rendered.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import metrics_kernels as mk
from .metrics_store import Matcher, MetricsStore

GFX = "gpu_gfx_activity"
USED_VRAM = "gpu_used_vram"
TOTAL_VRAM = "gpu_total_vram"
CPU_COUNTER = "container_cpu_usage_seconds_total"
MEM_WORKING_SET = "container_memory_working_set_bytes"
KSM_REQUESTS = "kube_pod_container_resource_requests"
CONTAINER_FILTER = (Matcher("container", "!=", ""), Matcher("container", "!=", "POD"))
MIB = float(1 << 20)

RESOURCES = ("gpu", "gpu_memory", "cpu", "memory")
UNITS = {"gpu": "GPU", "gpu_memory": "MiB", "cpu": "milli-cores", "memory": "MiB"}


def render_table(rows: list, header: list) -> str:
    """Left-aligned text columns (the style of ``kaiwo schedule``)."""
    cols = [header, *rows]
    widths = [max(len(str(r[i])) for r in cols) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*map(str, r)).rstrip() for r in cols)


# ------------------------------------------------------------------------------- allocations

@dataclass
class Allocations:
    """What each pod was given, one row per pod.

    Attributes
    ----------
    pods : list of str
        ``"namespace/name"``, unique.
    node, queue, job : list of str
        Where it runs, its queue and job ("" when unknown).
    cpu, memory : float64 arrays
        Requests in milli-cores and MiB (NaN when unknown).
    gpu : float64 array
        Logical GPUs (fractional pods: share x devices).
    gpu_devices : int64 array
        Number of logical GPUs the pod is spread over (0 for none).
    gpu_memory : float64 array
        GPU memory in MiB (all devices together).
    """

    pods: list
    node: list
    queue: list
    job: list
    cpu: np.ndarray
    memory: np.ndarray
    gpu: np.ndarray
    gpu_devices: np.ndarray
    gpu_memory: np.ndarray
    _codes: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        n = len(self.pods)
        if len(set(self.pods)) != n:
            seen: set = set()
            dup = next(p for p in self.pods if p in seen or seen.add(p))
            raise ValueError(f"Allocations: pod {dup!r} appears twice")
        for name in ("node", "queue", "job"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Allocations: {len(getattr(self, name))} {name} entries for {n} pods")
        for name in ("cpu", "memory", "gpu", "gpu_memory"):
            arr = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            if len(arr) != n:
                raise ValueError(f"Allocations: {len(arr)} {name} entries for {n} pods")
            setattr(self, name, arr)
        self.gpu_devices = np.asarray(self.gpu_devices, dtype=np.int64).reshape(-1)
        if len(self.gpu_devices) != n:
            raise ValueError(f"Allocations: {len(self.gpu_devices)} gpu_devices entries for {n} pods")

    def __len__(self) -> int:
        return len(self.pods)

    def codes(self, column: str) -> tuple[np.ndarray, list]:
        """(integer code per pod, distinct names) of ``node``, ``queue`` or ``job``; cached."""
        hit = self._codes.get(column)
        if hit is None:
            names, inv = np.unique(np.asarray(getattr(self, column), dtype=object).astype(str),
                                   return_inverse=True)
            hit = self._codes[column] = (inv.astype(np.int64), list(names))
        return hit

    def pod_ids(self, store: MetricsStore) -> np.ndarray:
        """The store's pod id of every row (pods the store has not seen yet are added), cached
        per store so that repeated reports do not look 20,000 names up again."""
        key = ("pod_ids", id(store))
        hit = self._codes.get(key)
        if hit is None or len(hit) != len(self.pods):
            hit = np.fromiter((store.pod_id(p) for p in self.pods), np.int64, len(self.pods))
            self._codes[key] = hit
        return hit

    @classmethod
    def from_arrays(cls, pods, cpu, memory, gpu=None, gpu_devices=None, gpu_memory=None,
                    node=None, queue=None, job=None) -> "Allocations":
        """Allocations from columns (missing ones default to 0 / "")."""
        n = len(pods)
        z = np.zeros(n)
        gpu = z if gpu is None else gpu
        return cls(list(pods), list(node) if node is not None else [""] * n,
                   list(queue) if queue is not None else [""] * n,
                   list(job) if job is not None else [""] * n, cpu, memory, gpu,
                   np.ceil(np.asarray(gpu, float)).astype(np.int64) if gpu_devices is None else gpu_devices,
                   z if gpu_memory is None else gpu_memory)

    @classmethod
    def from_snapshot(cls, snapshot) -> "Allocations":
        """Requests of the running pods of a :class:`kaiwo_core.Snapshot`.

        A fractional pod without ``kaiwo.ai/gpu-memory`` is charged its share of the device memory
        of its node (the largest device there).
        """
        from ..model.requests import KIND_NONE, KIND_WHOLE

        c = snapshot.cluster
        dev_mem_by_node = {}
        if c.n_devices:
            per_node = np.zeros(c.n_nodes, np.int64)
            np.maximum.at(per_node, c.dev_node, c.dev_mem_cap)
            dev_mem_by_node = dict(zip(c.names, per_node.tolist()))
        rows = snapshot.running
        gpu = np.zeros(len(rows))
        ndev = np.zeros(len(rows), np.int64)
        gmem = np.zeros(len(rows))
        for i, r in enumerate(rows):
            if r.kind == KIND_NONE:
                continue
            ndev[i] = r.count
            cap = dev_mem_by_node.get(r.node, 0)
            if r.kind == KIND_WHOLE:
                gpu[i] = r.count
                gmem[i] = r.count * cap
            else:
                gpu[i] = r.count * r.milli / 1000.0
                gmem[i] = r.count * (r.gpu_memory if r.gpu_memory else r.milli / 1000.0 * cap)
        return cls([r.name for r in rows], [r.node for r in rows], [r.queue for r in rows],
                   [r.labels.get("kaiwo.ai/gang", r.labels.get("kaiwo.ai/job", "")) for r in rows],
                   np.array([r.cpu for r in rows], float), np.array([r.memory for r in rows], float),
                   gpu, ndev, gmem)

    @classmethod
    def from_store(cls, store: MetricsStore, window: float = 600.0, end: float | None = None) -> "Allocations":
        """Best guess from the metrics alone (see the module docstring)."""
        store.pod_info_from_kube_labels()
        slots, ts = store.window(window, end)
        pods: dict[int, dict] = {}

        def row(p):
            return pods.setdefault(int(p), {"cpu": np.nan, "memory": np.nan, "gpu": 0.0, "dev": 0,
                                            "gmem": 0.0, "node": -1})

        g = store.select(GFX)
        if len(g):
            seen = mk.series_window(store.values, slots, ts, g, "count") > 0
            g = g[seen & (store.pod[g] >= 0)]
            dev_mem = _device_total_vram(store, slots, ts)
            for sid in g:
                r = row(store.pod[sid])
                r["gpu"] += 1.0
                r["dev"] += 1
                d = int(store.device[sid])
                r["gmem"] += dev_mem.get(d, 0.0)
                r["node"] = int(store.node[sid])
        req = store.select(KSM_REQUESTS)
        if len(req):
            last = mk.series_window(store.values, slots, ts, req, "last")
            res = store.labels.get("resource")
            res_names = store.label_values("resource")
            for sid, v in zip(req, last):
                p = int(store.pod[sid])
                if p < 0 or v != v or res is None or res[sid] < 0:
                    continue
                kind = res_names[res[sid]]
                r = row(p)
                if kind == "cpu":
                    r["cpu"] = (0.0 if r["cpu"] != r["cpu"] else r["cpu"]) + v * 1000.0
                elif kind == "memory":
                    r["memory"] = (0.0 if r["memory"] != r["memory"] else r["memory"]) + v / MIB
                if r["node"] < 0 and store.node[sid] >= 0:
                    r["node"] = int(store.node[sid])
        ids = sorted(pods, key=lambda p: store.pods.names[p])
        qn, jn, nn = store.queues.names, store.jobs.names, store.nodes.names
        return cls([store.pods.names[p] for p in ids],
                   [nn[pods[p]["node"]] if pods[p]["node"] >= 0 else "" for p in ids],
                   [qn[store.pod_queue[p]] if store.pod_queue[p] >= 0 else "" for p in ids],
                   [jn[store.pod_job[p]] if store.pod_job[p] >= 0 else "" for p in ids],
                   np.array([pods[p]["cpu"] for p in ids], float),
                   np.array([pods[p]["memory"] for p in ids], float),
                   np.array([pods[p]["gpu"] for p in ids], float),
                   np.array([pods[p]["dev"] for p in ids], np.int64),
                   np.array([pods[p]["gmem"] for p in ids], float))


def _device_total_vram(store: MetricsStore, slots, ts) -> dict[int, float]:
    t = store.select(TOTAL_VRAM)
    if not len(t):
        return {}
    last = mk.series_window(store.values, slots, ts, t, "last")
    return {int(d): float(v) for d, v in zip(store.device[t], last) if d >= 0 and v == v}


# ------------------------------------------------------------------------------------ report

@dataclass
class EfficiencyReport:
    """Allocated against used per pod, queue and node, and the idle GPUs.

    ``pod_alloc`` / ``pod_used`` map each resource (``gpu``, ``gpu_memory``, ``cpu``, ``memory``)
    to a float64 array over ``allocations`` rows (NaN: no data); ``queue_*`` and ``node_*`` are the
    sums over the pods of each queue / node (``node_used`` sums the devices of the node, allocated
    or not). ``idle`` describes the idle logical GPUs.
    """

    window: float
    end: float
    allocations: Allocations
    pod_alloc: dict
    pod_used: dict
    queues: list
    queue_alloc: dict
    queue_used: dict
    nodes: list
    node_alloc: dict
    node_used: dict
    node_gpus: np.ndarray            #: logical GPUs seen per node
    idle: dict                       #: columns: node, device, pods, max, mean (lists/arrays)
    idle_threshold: float
    idle_for: float

    @staticmethod
    def _ratio(used, alloc):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(alloc > 0, used / alloc, np.nan)

    def pod_efficiency(self, resource: str) -> np.ndarray:
        return self._ratio(self.pod_used[resource], self.pod_alloc[resource])

    def to_dict(self) -> dict:
        """JSON-ready document (``kaiwo monitor --json``)."""
        def num(v, nd=4):
            return None if v != v else round(float(v), nd)

        def block(alloc, used, i):
            return {r: {"allocated": num(alloc[r][i]), "used": num(used[r][i]),
                        "efficiency": num(self._ratio(used[r][i], alloc[r][i]))} for r in RESOURCES}

        a = self.allocations
        return {
            "window": self.window, "end": self.end, "units": UNITS,
            "pods": [{"pod": a.pods[i], "node": a.node[i], "queue": a.queue[i], "job": a.job[i],
                      **block(self.pod_alloc, self.pod_used, i)} for i in range(len(a))],
            "queues": [{"queue": q, **block(self.queue_alloc, self.queue_used, i)}
                       for i, q in enumerate(self.queues)],
            "nodes": [{"node": n, "gpus": int(self.node_gpus[i]), **block(self.node_alloc, self.node_used, i)}
                      for i, n in enumerate(self.nodes)],
            "idleGpus": {"threshold": self.idle_threshold, "for": self.idle_for, "gpus": [
                {"node": self.idle["node"][k], "device": self.idle["device"][k],
                 "pods": self.idle["pods"][k], "maxActivity": num(self.idle["max"][k], 2),
                 "meanActivity": num(self.idle["mean"][k], 2)} for k in range(len(self.idle["node"]))]},
        }

    def tables(self, max_pods: int | None = 50) -> str:
        """Readable tables: pods (least efficient GPU users first), queues, nodes, idle GPUs."""
        a = self.allocations

        def cell(alloc, used, r, i, fmt):
            al, us = alloc[r][i], used[r][i]
            if al != al and us != us:
                return "-"
            s = f"{fmt(us) if us == us else '-'}/{fmt(al) if al == al else '-'}"
            if al == al and al > 0 and us == us:
                s += f" ({100 * us / al:.0f}%)"
            return s

        fmts = {"gpu": lambda v: f"{v:.2f}", "gpu_memory": lambda v: f"{v / 1024:.1f}Gi",
                "cpu": lambda v: f"{v / 1000:.2f}", "memory": lambda v: f"{v / 1024:.1f}Gi"}
        head = ["GPU used/alloc", "VRAM", "CPU", "MEM"]
        eff = self.pod_efficiency("gpu")
        order = np.lexsort((np.array(a.pods, dtype=object), np.where(eff == eff, eff, np.inf)))
        shown = order if max_pods is None else order[:max_pods]
        out = [render_table([[a.pods[i], a.queue[i] or "-", a.node[i] or "-",
                              *(cell(self.pod_alloc, self.pod_used, r, i, fmts[r]) for r in RESOURCES)]
                             for i in shown], ["POD", "QUEUE", "NODE", *head])]
        if max_pods is not None and len(order) > max_pods:
            out[-1] += f"\n... {len(order) - max_pods} more pods (--json for all)"
        if self.queues:
            out.append(render_table([[q or "-", *(cell(self.queue_alloc, self.queue_used, r, i, fmts[r])
                                                  for r in RESOURCES)] for i, q in enumerate(self.queues)],
                                    ["QUEUE", *head]))
        out.append(render_table([[n, int(self.node_gpus[i]),
                                  *(cell(self.node_alloc, self.node_used, r, i, fmts[r]) for r in RESOURCES)]
                                 for i, n in enumerate(self.nodes)], ["NODE", "GPUS", *head]))
        idle = self.idle
        if len(idle["node"]):
            out.append(render_table([[idle["device"][k], ",".join(idle["pods"][k]) or "(unallocated)",
                                      f"{idle['max'][k]:.1f}%", f"{idle['mean'][k]:.1f}%"]
                                     for k in range(len(idle["node"]))],
                                    [f"IDLE GPU (<{self.idle_threshold:g}% for {self.idle_for:g}s)",
                                     "PODS", "MAX", "MEAN"]))
        else:
            out.append(f"no idle GPUs (<{self.idle_threshold:g}% for {self.idle_for:g}s)")
        return "\n\n".join(out)


def _attributed(store: MetricsStore, metric: str, slots, ts, n_pods: int, n_nodes: int,
                scale: float = 1.0):
    """Window mean of a device metric, split between the pods sharing a device.

    Returns (per store pod, per store node) sums, with NaN for pods/nodes without data.
    """
    sids = store.select(metric)
    pod_sum = np.full(n_pods, np.nan)
    node_sum = np.full(n_nodes, np.nan)
    if not len(sids):
        return pod_sum, node_sum
    mean = mk.series_window(store.values, slots, ts, sids, "mean") * scale
    has = mean == mean
    dev = store.device[sids]
    key = np.where(dev >= 0, dev, len(store.device_keys) + np.arange(len(sids)))  # no device: alone
    share = np.bincount(key[has], minlength=int(key.max()) + 1 if len(key) else 0).astype(float)
    part = np.where(has, mean / np.maximum(share[key], 1.0), 0.0)
    pod = store.pod[sids]
    ok = has & (pod >= 0)
    got = np.bincount(pod[ok], minlength=n_pods) > 0
    pod_sum[got] = np.bincount(pod[ok], weights=part[ok], minlength=n_pods)[got]
    node = store.node[sids]
    ok = has & (node >= 0)
    got = np.bincount(node[ok], minlength=n_nodes) > 0
    node_sum[got] = np.bincount(node[ok], weights=part[ok], minlength=n_nodes)[got]
    return pod_sum, node_sum


def _per_pod(store: MetricsStore, metric: str, stat: str, slots, ts, n_pods: int, scale: float):
    sids = store.select(metric, CONTAINER_FILTER)
    out = np.full(n_pods, np.nan)
    if not len(sids):
        return out
    v = mk.series_window(store.values, slots, ts, sids, stat) * scale
    pod = store.pod[sids]
    ok = (v == v) & (pod >= 0)
    got = np.bincount(pod[ok], minlength=n_pods) > 0
    out[got] = np.bincount(pod[ok], weights=v[ok], minlength=n_pods)[got]
    return out


def _group_sum(values: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """Sum per group ignoring NaN; NaN for a group with no value at all."""
    ok = values == values
    out = np.full(n, np.nan)
    got = np.bincount(codes[ok], minlength=n) > 0
    out[got] = np.bincount(codes[ok], weights=values[ok], minlength=n)[got]
    return out


def efficiency_report(store: MetricsStore, allocations: Allocations | None = None,
                      window: float = 600.0, end: float | None = None,
                      idle_threshold: float = 5.0, idle_for: float = 600.0) -> EfficiencyReport:
    """Allocated against used per pod, queue and node over a window, and the idle GPUs.

    Parameters
    ----------
    store : MetricsStore
        Scrapes of the AMD device metrics exporter (and cAdvisor / kube-state-metrics if any).
    allocations : Allocations, optional
        Default: :meth:`Allocations.from_store`.
    window : float
        Seconds of history to average over, back from ``end`` (default: the newest scrape).
    idle_threshold, idle_for : float
        A GPU is idle when below ``idle_threshold`` percent activity for ``idle_for`` seconds.
    """
    if not (idle_threshold > 0 and idle_for > 0 and window > 0):
        raise ValueError(f"efficiency_report: window = {window!r}, idle_threshold = {idle_threshold!r} "
                         f"and idle_for = {idle_for!r} must all be positive")
    if allocations is None:
        allocations = Allocations.from_store(store, window, end)
    slots, ts = store.window(window, end)
    end_ts = float(ts[-1]) if end is None and len(ts) else float(end) if end is not None else float("nan")
    n_pods, n_nodes = len(store.pods), len(store.nodes)
    gpu_pod, gpu_node = _attributed(store, GFX, slots, ts, n_pods, n_nodes, 0.01)
    vram_pod, vram_node = _attributed(store, USED_VRAM, slots, ts, n_pods, n_nodes)
    cpu_pod = _per_pod(store, CPU_COUNTER, "rate", slots, ts, n_pods, 1000.0)
    mem_pod = _per_pod(store, MEM_WORKING_SET, "mean", slots, ts, n_pods, 1.0 / MIB)
    pid = allocations.pod_ids(store)  # may intern pods that only the allocations know

    def take(a):
        out = np.full(len(pid), np.nan)
        known = pid < len(a)
        out[known] = a[pid[known]]
        return out

    a = allocations
    pod_alloc = {"gpu": a.gpu, "gpu_memory": a.gpu_memory, "cpu": a.cpu, "memory": a.memory}
    pod_used = {"gpu": take(gpu_pod), "gpu_memory": take(vram_pod), "cpu": take(cpu_pod),
                "memory": take(mem_pod)}
    # Pods given no GPU at all used none: 0 rather than "no data".
    no_gpu = (a.gpu == 0) & (a.gpu_memory == 0)
    for r in ("gpu", "gpu_memory"):
        pod_used[r] = np.where(no_gpu & (pod_used[r] != pod_used[r]), 0.0, pod_used[r])
    qcode, queues = a.codes("queue")
    queue_alloc = {r: _group_sum(pod_alloc[r], qcode, len(queues)) for r in RESOURCES}
    queue_used = {r: _group_sum(pod_used[r], qcode, len(queues)) for r in RESOURCES}
    # Nodes: every node seen in the metrics or the allocations.
    node_names = list(store.nodes.names)
    node_index = {n: i for i, n in enumerate(node_names)}
    for n in a.codes("node")[1]:
        if n and n not in node_index:
            node_index[n] = len(node_names)
            node_names.append(n)
    ncode_a, nnames_a = a.codes("node")
    map_a = np.array([node_index.get(n, -1) for n in nnames_a], np.int64)
    pod_node = map_a[ncode_a] if len(map_a) else np.zeros(0, np.int64)
    has_node = pod_node >= 0
    nn = len(node_names)
    node_alloc = {r: _group_sum(pod_alloc[r][has_node], pod_node[has_node], nn) for r in RESOURCES}
    node_used = {r: _group_sum(pod_used[r][has_node], pod_node[has_node], nn) for r in ("cpu", "memory")}
    node_used["gpu"] = np.concatenate([gpu_node, np.full(nn - len(gpu_node), np.nan)])
    node_used["gpu_memory"] = np.concatenate([vram_node, np.full(nn - len(vram_node), np.nan)])
    dev_node = np.array([k[0] for k in store.device_keys], np.int64)
    node_gpus = np.bincount(dev_node, minlength=nn) if len(dev_node) else np.zeros(nn, np.int64)
    idle = _idle_gpus(store, end, idle_threshold, idle_for)
    return EfficiencyReport(float(window), end_ts, a, pod_alloc, pod_used, queues, queue_alloc,
                            queue_used, node_names, node_alloc, node_used, node_gpus, idle,
                            float(idle_threshold), float(idle_for))


def idle_devices(store: MetricsStore, end: float | None = None, threshold: float = 5.0,
                 duration: float = 600.0, min_coverage: float = 0.8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logical GPUs (store device ids) idle for ``duration`` seconds, with their max and mean
    activity over that period (see the module docstring for the rule)."""
    empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    order, all_ts = store.ordered_slots()
    if not len(order):
        return empty
    end_ts = float(all_ts[-1]) if end is None else float(end)
    if all_ts[0] > end_ts - duration:
        return empty  # not enough history to claim anything was idle that long
    # The period is [end - duration, end]: its first scrape must be included.
    slots, ts = store.window(duration + 1e-6, end_ts)
    sids = store.select(GFX)
    dev = store.device[sids]
    sids, dev = sids[dev >= 0], dev[dev >= 0]
    n_dev = len(store.device_keys)
    mx, _ = mk.group_window(store.values, slots, ts, sids, dev, n_dev, "max")
    mean, _ = mk.group_window(store.values, slots, ts, sids, dev, n_dev, "mean")
    # Coverage: scrapes of the period in which the device reported at all (a shared device has
    # one series per pod, so samples are counted per slot, not per series).
    per_slot = mk.group_slot_sum(store.values, slots, ts, sids, dev, n_dev)
    covered = np.count_nonzero(per_slot == per_slot, axis=1)
    need = max(1, int(np.ceil(min_coverage * len(slots))))
    ids = np.flatnonzero((covered >= need) & (mx < threshold))
    return ids, mx[ids], mean[ids]


def _idle_gpus(store: MetricsStore, end, threshold: float, duration: float) -> dict:
    ids, mx, mean = idle_devices(store, end, threshold, duration)
    pods_on: dict[int, set] = {}
    if len(ids):
        # Pods labelled on those devices in the latest scrape that had them.
        slots, ts = store.window(duration + 1e-6, end)
        sids = store.select(GFX)
        wanted = np.isin(store.device[sids], ids) & (store.pod[sids] >= 0)
        sids = sids[wanted]
        if len(sids):
            seen = mk.series_window(store.values, slots[-1:], ts[-1:], sids, "count") > 0
            for sid in sids[seen]:
                pods_on.setdefault(int(store.device[sid]), set()).add(store.pods.names[store.pod[sid]])
    return {"node": [store.nodes.names[store.device_keys[d][0]] for d in ids],
            "device": [store.device_name(d) for d in ids],
            "pods": [sorted(pods_on.get(int(d), ())) for d in ids],
            "max": mx, "mean": mean}
