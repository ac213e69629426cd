"""Online replay with departures and queues: the Philly job list on its virtual clusters.

A Philly-format job CSV (``timestamp, duration, num_gpus, gpu_time, cluster``; Microsoft's Philly
traces as preprocessed by TitanSched) is replayed in simulated time: jobs arrive at their
timestamp, run for their duration once placed, and leave. Every virtual cluster (``cluster``) is a
leaf ``KaiwoQueue`` whose GPU quota is its node count (``--vc-nodes`` CSV: ``vc, node num``) times 8
GPUs; a VC missing from that file gets no quota (it runs on what others leave). The cluster is one
8-GPU node per quota node.

Scheduling runs the pieces of :func:`kaiwo_core.schedule` on arrays -- the queue tree
(:func:`kaiwo_core.queues.build_tree`), compiled H-DRF fair shares
(:func:`kaiwo_core.fairness.compute_shares`), the compiled keyed-heap order
(:func:`kaiwo_core.fairness.order_pending`) and the placement kernel with gangs -- at most once per
``period`` seconds of simulated time, when something arrived or finished. A job asking for more
than 8 GPUs is a gang of 8-GPU pods (and one with the rest), placed all or nothing.

Reported: per queue the waiting time (placement - arrival: mean, median, 95th percentile, jobs
still waiting at the end), GPU utilisation over time (allocated / total GPUs after each cycle), and
Jain's fairness index over the queues with demand, J = (sum x)^2 / (n sum x^2) with x = a queue's
allocated GPUs over its fair share (1 = every queue gets exactly its share), averaged over time.
"""
from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from kaiwo_core import _core
from kaiwo_core.accounting import request_vectors
from kaiwo_core.cluster import IDLE, cluster_from_arrays, kernel_view
from kaiwo_core.fairness import OrderingConfig, compute_shares, order_pending, within_queue_key
from kaiwo_core.plugins import CycleContext, Pipeline
from kaiwo_core.queues import build_tree
from kaiwo_core.requests import batch_from_arrays
from kaiwo_core.trace import TraceError, read_rows

GPUS_PER_NODE = 8
JOB_COLUMNS = ("timestamp", "duration", "num_gpus", "cluster")
JOB_OPTIONAL = ("gpu_time",)
VC_COLUMNS = ("vc", "node num")


@dataclass
class JobTrace:
    """Jobs sorted by arrival (seconds from the first arrival)."""

    path: str
    arrival: np.ndarray   #: float64 seconds
    duration: np.ndarray  #: float64 seconds
    gpus: np.ndarray      #: int32
    queue: list           #: str virtual cluster
    start_epoch: float    #: epoch seconds of arrival 0

    def __len__(self) -> int:
        return len(self.queue)


def _parse_time(path, line, text: str) -> float:
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"):
        try:
            return datetime.strptime(s, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise TraceError(path, line, "timestamp", text, "not a time (expected 'YYYY-MM-DD HH:MM:SS' or seconds)")


def _times(path, texts: list) -> np.ndarray:
    """Epoch seconds of timestamps: numbers, or ISO-like times (vectorised; a bad one is found
    and reported with its line)."""
    try:
        return np.array(texts, dtype=np.float64)
    except ValueError:
        pass
    try:
        return np.array([t.strip().replace(" ", "T") for t in texts], dtype="datetime64[s]").astype(np.float64)
    except ValueError:
        for i, t in enumerate(texts):  # find the culprit (line = row + 2: header, 1-based)
            _parse_time(path, i + 2, t)
        raise


def read_jobs_csv(path, max_jobs: int | None = None) -> JobTrace:
    """Read a Philly-format job list. Raises :class:`~kaiwo_core.trace.TraceError` naming the
    file, line, column and value for a missing column, a bad time, a negative duration or a job
    without GPUs."""
    ix, rows = read_rows(path, JOB_COLUMNS, JOB_OPTIONAL)
    arr, dur, gpus, queue = [], [], [], []
    for line, row in rows:
        t = row[ix["timestamp"]]
        try:
            d = float(row[ix["duration"]])
        except ValueError:
            raise TraceError(path, line, "duration", row[ix["duration"]], "not a number of seconds") from None
        if not math.isfinite(d) or d < 0:
            raise TraceError(path, line, "duration", row[ix["duration"]], "must be a finite number >= 0")
        try:
            g = int(row[ix["num_gpus"]])
        except ValueError:
            raise TraceError(path, line, "num_gpus", row[ix["num_gpus"]], "not an integer") from None
        if g < 1:
            raise TraceError(path, line, "num_gpus", row[ix["num_gpus"]], "a job needs at least 1 GPU")
        q = row[ix["cluster"]].strip()
        if not q:
            raise TraceError(path, line, "cluster", row[ix["cluster"]], "empty virtual cluster name")
        arr.append(t)
        dur.append(d)
        gpus.append(g)
        queue.append(q)
    if not arr:
        raise TraceError(path, None, None, None, "no jobs in the file")
    arr = _times(path, arr)
    order = np.argsort(arr, kind="stable")
    if max_jobs is not None:
        order = order[:max_jobs]
    a = np.array(arr)[order]
    return JobTrace(str(path), a - a[0], np.array(dur)[order], np.array(gpus, np.int32)[order],
                    [queue[i] for i in order], float(a[0]))


def read_vc_nodes(path) -> dict:
    """``vc, node num`` CSV -> {vc: nodes}; errors name the file, line, column and value."""
    ix, rows = read_rows(path, VC_COLUMNS)
    out = {}
    for line, row in rows:
        vc, text = row[ix["vc"]].strip(), row[ix["node num"]]
        try:
            n = int(text)
        except ValueError:
            raise TraceError(path, line, "node num", text, "not an integer node count") from None
        if n < 0:
            raise TraceError(path, line, "node num", text, "must be >= 0")
        if vc in out:
            raise TraceError(path, line, "vc", vc, "duplicate virtual cluster")
        out[vc] = n
    return out


@dataclass
class QueueStats:
    """Waiting times of one queue's jobs."""

    name: str
    quota_gpus: int
    waits: list = field(default_factory=list)  #: seconds, placed jobs
    waiting: int = 0                           #: jobs never placed

    def to_dict(self) -> dict:
        w = np.array(self.waits) if self.waits else np.zeros(0)
        return {"queue": self.name, "quotaGpus": self.quota_gpus, "jobsPlaced": len(self.waits),
                "jobsWaitingAtEnd": self.waiting,
                "waitMeanS": round(float(w.mean()), 1) if w.size else None,
                "waitMedianS": round(float(np.median(w)), 1) if w.size else None,
                "waitP95S": round(float(np.percentile(w, 95)), 1) if w.size else None}


@dataclass
class OnlineResult:
    queues: list              #: QueueStats
    times: np.ndarray         #: float64 sample times (s)
    utilization: np.ndarray   #: float64 GPU utilisation (0..1) at each sample
    fairness: np.ndarray      #: float64 Jain's index at each sample (NaN: fewer than 2 queues with demand)
    jobs: int
    cycles: int
    wall: float
    policy: str

    def mean_utilization(self) -> float:
        return _time_average(self.times, self.utilization)

    def mean_fairness(self) -> float:
        ok = ~np.isnan(self.fairness)
        return _time_average(self.times[ok], self.fairness[ok]) if ok.any() else float("nan")

    def to_dict(self) -> dict:
        return {"policy": self.policy, "jobs": self.jobs, "cycles": self.cycles,
                "wallSeconds": round(self.wall, 3),
                "meanGpuUtilization": round(self.mean_utilization(), 4),
                "meanJainFairness": None if math.isnan(self.mean_fairness()) else round(self.mean_fairness(), 4),
                "queues": [q.to_dict() for q in self.queues],
                "utilization": {"timesS": [round(float(t), 1) for t in self.times[:: max(1, len(self.times) // 500)]],
                                "values": [round(float(u), 4) for u in self.utilization[:: max(1, len(self.times) // 500)]]}}


def _time_average(t: np.ndarray, v: np.ndarray) -> float:
    if len(v) == 0:
        return float("nan")
    if len(v) == 1:
        return float(v[0])
    dt = np.diff(t)
    if dt.sum() <= 0:
        return float(np.mean(v))
    return float((v[:-1] * dt).sum() / dt.sum())


def jain(x: np.ndarray) -> float:
    """Jain's fairness index of non-negative values: 1 = all equal, 1/n = one has everything."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or not (x ** 2).sum():
        return float("nan")
    return float(x.sum() ** 2 / (x.size * (x ** 2).sum()))


def _queue_objects(vc_nodes: dict, queues: list) -> list:
    out = []
    for q in sorted(set(queues) | set(vc_nodes)):
        gpus = vc_nodes.get(q, 0) * GPUS_PER_NODE
        out.append({"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoQueue", "metadata": {"name": q},
                    "spec": {"resources": {"gpu": {"quota": gpus}, "cpu": {"quota": -1},
                                           "memory": {"quota": -1}}}})
    return out


def replay_online(jobs: JobTrace, vc_nodes: dict, policy: str = "binpack", period: float = 60.0,
                  sample: float = 600.0, progress=None) -> OnlineResult:
    """Replay ``jobs`` on one 8-GPU node per quota node of ``vc_nodes``; see the module doc.

    ``period``: seconds between scheduling cycles (a cycle runs only when jobs wait);
    ``sample``: seconds between utilisation and fairness samples.
    """
    t0 = time.perf_counter()
    n_nodes = max(1, sum(vc_nodes.values()))
    cluster = cluster_from_arrays([f"node-{i:04d}" for i in range(n_nodes)], [64000] * n_nodes,
                                  [512 * 1024] * n_nodes, [GPUS_PER_NODE] * n_nodes, model="philly-gpu",
                                  pods=[1 << 20] * n_nodes)
    state = cluster.empty_state()
    tree = build_tree(_queue_objects(vc_nodes, jobs.queue))
    rows_of = {name: tree.index[name] for name in set(jobs.queue)}
    capacity = np.array([cluster.n_devices * 1000, int(cluster.node_cpu_cap.sum()),
                         int(cluster.node_mem_cap.sum())], dtype=np.int64)
    # Philly jobs name no GPU model, so no label/model filter: every node may take every pod.
    pipeline = Pipeline([policy])
    kinds = np.zeros(cluster.n_nodes, dtype=np.uint64)
    stats = {name: QueueStats(name, vc_nodes.get(name, 0) * GPUS_PER_NODE) for name in rows_of}

    # job -> its pods' GPU counts (full nodes, then the rest)
    def pods_of(g: int) -> list:
        return [GPUS_PER_NODE] * (g // GPUS_PER_NODE) + ([g % GPUS_PER_NODE] if g % GPUS_PER_NODE else [])

    too_big = jobs.gpus > cluster.n_devices
    pending: list = []            # job ids waiting, arrival order
    running: dict = {}            # job id -> list of (node, devices, milli)
    done_heap: list = []          # (finish time, job id)
    run_alloc = np.zeros((len(tree), 3), dtype=np.int64)
    times, util, fair = [], [], []
    next_arrival, n_jobs, cycles = 0, len(jobs), 0
    now = 0.0
    while next_arrival < n_jobs or done_heap:
        # advance to the next event, then take in everything up to the end of the period
        t_next = min(jobs.arrival[next_arrival] if next_arrival < n_jobs else math.inf,
                     done_heap[0][0] if done_heap else math.inf)
        now = max(now, t_next)
        horizon = now + period
        while done_heap and done_heap[0][0] <= horizon:
            _, j = heapq.heappop(done_heap)
            _release(state, cluster, running.pop(j))
            run_alloc[rows_of[jobs.queue[j]], 0] -= int(jobs.gpus[j]) * 1000
        while next_arrival < n_jobs and jobs.arrival[next_arrival] <= horizon:
            if too_big[next_arrival]:
                stats[jobs.queue[next_arrival]].waiting += 1  # can never run here
            else:
                pending.append(next_arrival)
            next_arrival += 1
        now = horizon
        if pending:
            cycles += 1
            started = _cycle(pending, jobs, now, cluster, state, tree, rows_of, capacity, run_alloc, pipeline,
                             kinds, pods_of)
            for j, placement in started.items():
                running[j] = placement
                heapq.heappush(done_heap, (now + float(jobs.duration[j]), j))
                run_alloc[rows_of[jobs.queue[j]], 0] += int(jobs.gpus[j]) * 1000
                stats[jobs.queue[j]].waits.append(now - float(jobs.arrival[j]))
            if started:
                pending = [j for j in pending if j not in started]
        if not times or now - times[-1] >= sample:
            used = cluster.n_devices * 1000 - int(state.dev_milli_free.sum())
            times.append(now)
            util.append(used / max(1, cluster.n_devices * 1000))
            fair.append(_fairness(tree, capacity, run_alloc, pending, jobs, rows_of))
        if progress is not None:
            progress(next_arrival, n_jobs)
    for j in pending:
        stats[jobs.queue[j]].waiting += 1
    return OnlineResult(sorted(stats.values(), key=lambda s: s.name), np.array(times), np.array(util),
                        np.array(fair), n_jobs, cycles, time.perf_counter() - t0, policy)


def _release(state, cluster, placement) -> None:
    """Give back what a finished job's pods held (devices become idle again when empty)."""
    for node, devs, milli in placement:
        state.node_pods_free[node] += 1
        for d, m in zip(devs, milli):
            state.dev_milli_free[d] += m
            state.dev_mem_free[d] = cluster.dev_mem_cap[d] if state.dev_milli_free[d] >= 1000 else \
                state.dev_mem_free[d]
            state.dev_xcd_free[d] = cluster.dev_xcd_mask[d] if state.dev_milli_free[d] >= 1000 else \
                state.dev_xcd_free[d]
            if state.dev_milli_free[d] >= 1000:
                state.dev_state[d] = IDLE


def _cycle(pending, jobs, now, cluster, state, tree, rows_of, capacity, run_alloc, pipeline, kinds, pods_of):
    """One scheduling cycle on the pending jobs: shares, order, placement (gangs all or nothing).
    Returns {job: [(node, devices, milli)]} for the jobs that started."""
    pod_job, pod_gpus = [], []
    for j in pending:
        for g in pods_of(int(jobs.gpus[j])):
            pod_job.append(j)
            pod_gpus.append(g)
    pod_job = np.array(pod_job, dtype=np.int64)
    n = len(pod_job)
    gpus = np.array(pod_gpus, dtype=np.int32)
    created = jobs.arrival[pod_job]
    batch = batch_from_arrays(cpu=np.zeros(n, np.int64), memory=np.zeros(n, np.int64), gpus=gpus,
                              created=created)
    # gangs: one per job with several pods (every pod needed)
    sizes = np.bincount(np.unique(pod_job, return_inverse=True)[1])
    _, inv = np.unique(pod_job, return_inverse=True)
    multi = sizes[inv] > 1
    gang = np.where(multi, inv, -1).astype(np.int32)
    need = np.where(multi, sizes[inv], 0).astype(np.int32)
    rows = np.array([rows_of[jobs.queue[j]] for j in pod_job], dtype=np.int32)
    req = request_vectors(batch, 0)
    key = within_queue_key(batch.priority, created, req[:, 0] / 1000.0, now, OrderingConfig())
    run_rows = np.flatnonzero(run_alloc[:, 0] > 0).astype(np.int32)
    shares = compute_shares(tree, capacity, run_rows, run_alloc[run_rows], rows, req, key)
    tiebreak = np.argsort(np.argsort(created, kind="stable"), kind="stable").astype(np.int64)
    order, _status = order_pending(tree, capacity, shares, rows, req, key, tiebreak, gang)
    if len(order) == 0:
        return {}
    ordered = batch.take(order)
    g_ord = gang[order]
    # Renumber gangs in order of appearance so members are consecutive runs for the kernel.
    if (g_ord >= 0).any():
        ordered.gang, ordered.gang_need = g_ord.astype(np.int32), need[order].astype(np.int32)
    ctx = CycleContext(cluster, state, ordered)
    kb = ordered.kernel_view()
    kb["class_mask"] = np.ones((len(ordered.constraints), cluster.n_nodes), dtype=np.uint8)
    kb.update(pipeline.strategy.kernel_args(ctx))
    view = kernel_view(cluster, state)
    view["node_gpu_kinds"] = kinds
    out = _core.place_batch(view, kb, pipeline.strategy.strategy)
    started: dict = {}
    failed = set()
    for i, node in enumerate(out["node"]):
        j = int(pod_job[order[i]])
        if node < 0:
            failed.add(j)
            continue
        a, b = int(out["asg_start"][i]), int(out["asg_start"][i + 1])
        started.setdefault(j, []).append((int(node), out["asg_dev"][a:b].tolist(), out["asg_milli"][a:b].tolist()))
    # A job whose pods were not all placed (no gang: a single pod cannot be partial) must not run:
    # gangs are rolled back by the kernel, so only fully placed jobs remain here.
    for j in failed:
        started.pop(j, None)
    return started


def _fairness(tree, capacity, run_alloc, pending, jobs, rows_of) -> float:
    """Jain's index of allocated / fair share (GPUs) over queues with running or pending jobs."""
    demand_rows = {rows_of[jobs.queue[j]] for j in pending} | set(np.flatnonzero(run_alloc[:, 0] > 0).tolist())
    if len(demand_rows) < 2:
        return float("nan")
    rows = np.array([rows_of[jobs.queue[j]] for j in pending], dtype=np.int32)
    req = np.zeros((len(rows), 3), dtype=np.int64)
    req[:, 0] = [int(jobs.gpus[j]) * 1000 for j in pending]
    run_rows = np.flatnonzero(run_alloc[:, 0] > 0).astype(np.int32)
    shares = compute_shares(tree, capacity, run_rows, run_alloc[run_rows], rows, req, np.zeros(len(rows)))
    x = []
    for q in sorted(demand_rows):
        fs = shares.fair_share[q, 0]
        if fs > 0:
            x.append(run_alloc[q, 0] / fs)
    return jain(np.array(x)) if len(x) >= 2 else float("nan")
