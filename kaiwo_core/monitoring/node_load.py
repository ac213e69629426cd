"""Node load statistics: what the cluster state says is allocated, joined with what is measured.

Per node and per device (logical GPU, the cluster's own device order), numpy columns:

* allocated, from a :class:`~kaiwo_core.model.cluster.ClusterState` (running pods charged): GPU
  milli and memory per device, CPU and memory per node;
* measured, from a :class:`~kaiwo_core.monitoring.metrics_store.MetricsStore` with the AMD device
  metrics exporter's series: ``gpu_gfx_activity`` (percent), ``gpu_used_vram`` (MiB),
  ``gpu_junction_temperature`` (degrees C), ``gpu_package_power`` (W), and cAdvisor's
  ``container_cpu_usage_seconds_total`` (its rate) and ``container_memory_working_set_bytes`` per node.
  A device's value is the mean of its samples in the window (the largest over its series, when
  several pods' series report one shared device); a node's CPU and memory the sum over its containers.

Stale or missing series count as neutral: a device or node without a sample of a metric in the last
``window`` seconds gets NaN in that column and contributes nothing to the load, and a warning names
the node and the metric (one per node and metric). The load of a node (0..1) is the largest of its
measured pressures: mean GPU activity, VRAM used / capacity, temperature / ``temp_limit``, power /
``power_limit`` (devices' worst), CPU used / allocatable, memory used / allocatable. A node with
nothing measured has load 0 (never hot) and ``measured`` False.

Each cycle's refresh is vectorised (one windowed statistic per metric, then ``bincount`` by the
cluster's indices); the store's node and device ids are matched to the cluster's once, and then only
the ids the store interned since (see :class:`_Maps`).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np

from ..model.cluster import EXCLUSIVE, Cluster, ClusterState
from .efficiency import CONTAINER_FILTER, CPU_COUNTER, GFX, MEM_WORKING_SET, MIB, USED_VRAM
from .metrics_store import MetricsStore

TEMP = "gpu_junction_temperature"
POWER = "gpu_package_power"
DEVICE_METRICS = (GFX, USED_VRAM, TEMP, POWER)


@dataclass
class NodeLoad:
    """Columns per device ([G]) and per node ([N]) of one cluster; NaN = not measured."""

    dev_alloc_milli: np.ndarray     #: int64 compute allocated (1000 = the whole logical GPU)
    dev_alloc_mem: np.ndarray       #: int64 MiB allocated
    dev_activity: np.ndarray        #: float percent busy (gpu_gfx_activity)
    dev_vram_used: np.ndarray       #: float MiB
    dev_temperature: np.ndarray     #: float degrees C
    dev_power: np.ndarray           #: float W
    node_cpu_alloc: np.ndarray      #: int64 milli-cores allocated
    node_mem_alloc: np.ndarray      #: int64 MiB allocated
    node_gpu_alloc: np.ndarray      #: float share of the node's GPU compute allocated (0..1)
    node_activity: np.ndarray       #: float mean GPU activity of measured devices (percent)
    node_vram_frac: np.ndarray      #: float VRAM used / capacity of measured devices
    node_temp_headroom: np.ndarray  #: float 1 - hottest device / temp_limit
    node_power_headroom: np.ndarray  #: float 1 - most loaded device / power_limit
    node_cpu_used: np.ndarray       #: float milli-cores
    node_mem_used: np.ndarray       #: float MiB
    load: np.ndarray                #: float 0..1 (largest measured pressure; 0 when none)
    measured: np.ndarray            #: bool: at least one pressure measured
    warnings: list = field(default_factory=list)


class _Maps:
    """The store's node and device ids as the cluster's indices (-1: not in the cluster). Ids are
    only ever appended (until :meth:`MetricsStore.prune`, which keeps node and device ids), so
    each refresh looks up only the ids interned since the last one: the one Python loop here runs
    over new devices, not over all of them every cycle."""

    def __init__(self):
        self.refs = (lambda: None, lambda: None)  # weak: the cache keeps no store alive
        self.dev = np.zeros(0, np.int64)
        self.node = np.zeros(0, np.int64)

    def update(self, store: MetricsStore, cluster: Cluster) -> None:
        if self.refs[0]() is not store or self.refs[1]() is not cluster:
            self.refs = (weakref.ref(store), weakref.ref(cluster))
            self.dev, self.node = np.zeros(0, np.int64), np.zeros(0, np.int64)
        new_nodes = store.nodes.names[len(self.node):]
        self.node = np.concatenate([self.node, np.array([cluster.index(n) for n in new_nodes], np.int64)])
        new = [cluster.device_index(self.node[n], g, p) if self.node[n] >= 0 else -1
               for n, g, p in store.device_keys[len(self.dev):]]
        self.dev = np.concatenate([self.dev, np.array(new, np.int64)])


_MAPS = _Maps()


def _per_device(store, metric, window, end, dmap, G, selector=None) -> np.ndarray:
    sids = store.select(metric, selector)
    out = np.full(G, np.nan)
    if not len(sids):
        return out
    vals = store.series_stat(sids, "mean", window, end)
    sd = store.device[sids]
    dev = np.where(sd >= 0, dmap[np.maximum(sd, 0)] if len(dmap) else -1, -1)
    ok = (dev >= 0) & np.isfinite(vals)
    np.fmax.at(out, dev[ok], vals[ok])
    return out


def _per_node(store, metric, stat, window, end, nmap, N, selector=None) -> np.ndarray:
    sids = store.select(metric, selector)
    out = np.full(N, np.nan)
    if not len(sids):
        return out
    vals = store.series_stat(sids, stat, window, end)
    sn = store.node[sids]
    node = np.where(sn >= 0, nmap[np.maximum(sn, 0)] if len(nmap) else -1, -1)
    ok = (node >= 0) & np.isfinite(vals)
    got = np.zeros(N, bool)
    got[node[ok]] = True
    sums = np.bincount(node[ok], weights=vals[ok], minlength=N)
    out[got] = sums[got]
    return out


def node_load(store: MetricsStore, cluster: Cluster, state: ClusterState, window: float = 300.0,
              end: float | None = None, temp_limit: float = 100.0, power_limit: float = 750.0) -> NodeLoad:
    """The columns for ``cluster`` with ``state`` (free capacity after running pods) over the
    store's last ``window`` seconds before ``end`` (default: the newest scrape). ``temp_limit``
    (degrees C) and ``power_limit`` (W, MI300X's board power) scale the headroom columns."""
    N, G = cluster.n_nodes, cluster.n_devices
    dev_node = cluster.dev_node.astype(np.int64)
    alloc_milli = np.where(state.dev_state == EXCLUSIVE, 1000, 1000 - state.dev_milli_free).astype(np.int64)
    alloc_mem = (cluster.dev_mem_cap - state.dev_mem_free).astype(np.int64)
    ndev = np.diff(cluster.node_dev_start)
    gpu_alloc = np.bincount(dev_node, weights=alloc_milli, minlength=N) / np.maximum(ndev * 1000, 1)

    _MAPS.update(store, cluster)
    dmap, nmap = _MAPS.dev, _MAPS.node
    act = _per_device(store, GFX, window, end, dmap, G)
    vram = _per_device(store, USED_VRAM, window, end, dmap, G)
    temp = _per_device(store, TEMP, window, end, dmap, G)
    power = _per_device(store, POWER, window, end, dmap, G)
    cpu_used = _per_node(store, CPU_COUNTER, "rate", window, end, nmap, N, CONTAINER_FILTER) * 1000.0
    mem_used = _per_node(store, MEM_WORKING_SET, "mean", window, end, nmap, N, CONTAINER_FILTER) / MIB

    def node_stat(col, reduce):
        out = np.full(N, np.nan)
        ok = np.isfinite(col)
        if ok.any():
            order = np.argsort(dev_node[ok], kind="stable")
            nodes, vals = dev_node[ok][order], col[ok][order]
            starts = np.flatnonzero(np.r_[True, nodes[1:] != nodes[:-1]])
            out[nodes[starts]] = reduce(vals, starts)
        return out

    node_act = node_stat(act, lambda v, s: np.add.reduceat(v, s) / np.diff(np.r_[s, len(v)]))
    vram_cap = np.where(np.isfinite(vram), cluster.dev_mem_cap, 0.0)
    node_vram = node_stat(vram, lambda v, s: np.add.reduceat(v, s))
    cap_sum = np.bincount(dev_node, weights=vram_cap, minlength=N)
    node_vram = np.where(cap_sum > 0, node_vram / np.maximum(cap_sum, 1), np.nan)
    node_temp = node_stat(temp, lambda v, s: np.maximum.reduceat(v, s))
    node_power = node_stat(power, lambda v, s: np.maximum.reduceat(v, s))

    pressures = np.vstack([node_act / 100.0, node_vram, node_temp / temp_limit, node_power / power_limit,
                           cpu_used / np.maximum(cluster.node_cpu_cap, 1), mem_used / np.maximum(cluster.node_mem_cap, 1)])
    measured = np.isfinite(pressures).any(axis=0)
    load = np.where(measured, np.nanmax(np.where(np.isfinite(pressures), pressures, -np.inf), axis=0), 0.0)
    load = np.clip(np.where(np.isfinite(load), load, 0.0), 0.0, None)

    warnings = []
    names = cluster.names

    def warn(metric, nodes, what):
        # A metric absent on every node is one warning, not one per node.
        if len(nodes) > 1 and len(nodes) == N:
            warnings.append(f"{metric}: no samples for any node in the last {window:g} s; counted as neutral")
            return
        for n in nodes.tolist():
            warnings.append(f"node {names[n]}: {metric} missing or stale{what(n)} in the last {window:g} s; "
                            "counted as neutral")
    has_gpu = ndev > 0
    for metric, col in ((GFX, act), (USED_VRAM, vram), (TEMP, temp), (POWER, power)):
        missing = np.bincount(dev_node[~np.isfinite(col)], minlength=N) if G else np.zeros(N, np.int64)
        warn(metric, np.flatnonzero(has_gpu & (missing > 0)),
             lambda n: f" for {int(missing[n])} of {int(ndev[n])} GPUs")
    for metric, col in ((CPU_COUNTER, cpu_used), (MEM_WORKING_SET, mem_used)):
        warn(metric, np.flatnonzero(~np.isfinite(col)), lambda n: "")
    return NodeLoad(alloc_milli, alloc_mem, act, vram, temp, power,
                    (cluster.node_cpu_cap - state.node_cpu_free).astype(np.int64),
                    (cluster.node_mem_cap - state.node_mem_free).astype(np.int64), gpu_alloc,
                    node_act, node_vram, 1.0 - node_temp / temp_limit, 1.0 - node_power / power_limit,
                    cpu_used, mem_used, load, measured, warnings)


__all__ = ["DEVICE_METRICS", "NodeLoad", "node_load"]
