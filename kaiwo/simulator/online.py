"""Online replay with departures and queues: the Philly job list on its virtual clusters.

A Philly-format job CSV (``timestamp, duration, num_gpus, gpu_time, cluster``; Microsoft's Philly
traces as preprocessed by TitanSched) is replayed in simulated time: jobs arrive at their
timestamp, run for their duration once placed, and leave. Every virtual cluster (``cluster``) is a
leaf ``KaiwoQueue`` whose GPU quota is its node count (``--vc-nodes`` CSV: ``vc, node num``) times 8
GPUs; a VC missing from that file gets no quota (it runs on what others leave). The cluster is one
8-GPU node per quota node.

Every cycle is :func:`kaiwo_core.schedule` -- the controller's cycle: queue limits, fair shares,
ordering, gangs, reservations, placement, and reclaim/preemption -- on a :class:`kaiwo_core.Snapshot`
the replay keeps up to date itself, at most once per ``period`` seconds of simulated time, when
something arrived or finished (or the cycle before evicted jobs). Each job's pods are decoded once
(:func:`kaiwo_core.pod_request`, ``kaiwo.ai/queue`` label, ``nvidia.com/gpu`` request); a job asking
for more than 8 GPUs is a gang (``kaiwo.ai/gang``, ``kaiwo.ai/gang-min-members``) of 8-GPU pods and
one with the rest, placed all or nothing. A binding makes the pod run on its devices, charged by
:meth:`kaiwo_core.Snapshot.charge_running` as the controller charges running pods; the snapshot's
pod columns are reused while its pod lists only grow and shrink (:mod:`kaiwo_core.scheduling.podtable`). A
preemption evicts the victim's whole job at once: its GPUs are free for the next cycle, where the
preemptor (which the controller leaves pending until its victims have terminated) can be placed,
and the job goes back to pending and later starts over with its full duration. ``reclaim`` sets
every queue's ``reclaimStrategy`` (``aggressive``, the KaiwoQueue default, or ``conservative``), or
turns reclaim and preemption off (``none``).

With ``rebalance`` (``kaiwo simulate --online --rebalance``), every ``rebalance_period`` seconds of
simulated time at which jobs wait (and the cycle evicted nothing), the rebalancing planner of
``kaiwo rebalance`` (:func:`kaiwo_core.scheduling.rebalance.plan_rebalance`; every job migratable)
plans on the replay's snapshot and its moves are carried out at once, as the controller's
``--rebalance apply`` would with a replacement that finds its held target: a moved pod leaves its
devices and holds the planned ones, its job keeps its progress (checkpoint and restart) and pays
``migration_cost`` seconds (its finish moves that much later; a job with several moved pods pays
once), and the pods the moves unlock are placed by the next cycle (one ``period`` later).
Migrations per job are reported beside the waits.

Reported: per queue the waiting time (time pending before the job's run that completed: placement -
arrival, plus eviction to restart for each preemption; mean, median, 95th percentile, jobs still
waiting at the end), the jobs preempted, GPU utilisation over time (allocated / total GPUs after each cycle), and
Jain's fairness index over the queues with demand, J = (sum x)^2 / (n sum x^2) with x = a queue's
allocated GPUs over its fair share (1 = every queue gets exactly its share), averaged over time.
"""
from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import numpy as np

from kaiwo_core.model.cluster import IDLE, RESOURCE_NVIDIA, cluster_from_arrays
from kaiwo_core.scheduling.cycle import schedule
from kaiwo_core.scheduling.gangs import ANN_GANG, ANN_GANG_MIN
from kaiwo_core.scheduling.config import SchedulerConfiguration
from kaiwo_core.model.requests import LABEL_QUEUE, SCHEDULER_NAME, pod_request
from kaiwo_core.scheduling.rebalance import ANN_MIGRATABLE, RebalanceConfig, plan_rebalance
from kaiwo_core.scheduling.snapshot import Snapshot
from kaiwo_core.model.trace import LIMITS, TraceError, read_rows

GPUS_PER_NODE = 8
JOB_COLUMNS = ("timestamp", "duration", "num_gpus", "cluster")
JOB_OPTIONAL = ("gpu_time",)
VC_COLUMNS = ("vc", "node num")
NAMESPACE = "philly"
#: ``--reclaim``: every queue's ``spec.fairness.reclaimStrategy``, or no reclaim/preemption at all
RECLAIM_CHOICES = ("aggressive", "conservative", "none")
#: a KaiwoQueue without a reclaimStrategy reclaims aggressively (kaiwo_core.scheduling.queues)
DEFAULT_RECLAIM = "aggressive"


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
    """Read a Philly-format job list. Raises :class:`~kaiwo_core.model.trace.TraceError` naming the
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
        if g > LIMITS["num_gpus"]:  # kept in an int32 array, split into pods of 8
            raise TraceError(path, line, "num_gpus", row[ix["num_gpus"]], f"must be <= {LIMITS['num_gpus']}")
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
        if not 0 <= n <= LIMITS["node num"]:  # quotas are n x 8 GPUs, in int64 sums
            raise TraceError(path, line, "node num", text, f"must be between 0 and {LIMITS['node num']}")
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
    preempted: int = 0                         #: evictions of this queue's jobs (reclaim, preemption)

    def to_dict(self) -> dict:
        w = np.array(self.waits) if self.waits else np.zeros(0)
        return {"queue": self.name, "quotaGpus": self.quota_gpus, "jobsPlaced": len(self.waits),
                "jobsWaitingAtEnd": self.waiting, "jobsPreempted": self.preempted,
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
    reclaim: str = DEFAULT_RECLAIM
    migrations: dict | None = None  #: with rebalancing: moves, jobsMoved, byReason, plans, movesPerPlacedJob

    def mean_utilization(self) -> float:
        return _time_average(self.times, self.utilization)

    def mean_fairness(self) -> float:
        ok = ~np.isnan(self.fairness)
        return _time_average(self.times[ok], self.fairness[ok]) if ok.any() else float("nan")

    def to_dict(self) -> dict:
        return {"policy": self.policy, "reclaim": self.reclaim, "jobs": self.jobs, "cycles": self.cycles,
                "preemptions": sum(q.preempted for q in self.queues),
                "wallSeconds": round(self.wall, 3),
                "meanGpuUtilization": round(self.mean_utilization(), 4),
                "meanJainFairness": None if math.isnan(self.mean_fairness()) else round(self.mean_fairness(), 4),
                "queues": [q.to_dict() for q in self.queues],
                **({"migrations": self.migrations} if self.migrations is not None else {}),
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


def _queue_objects(vc_nodes: dict, queues: list, reclaim: str = DEFAULT_RECLAIM) -> list:
    """One leaf KaiwoQueue per virtual cluster: GPU quota = its nodes x 8, CPU and memory
    unlimited, ``reclaimStrategy`` = ``reclaim`` (none: the queue default, preemption is off)."""
    out = []
    for q in sorted(set(queues) | set(vc_nodes)):
        gpus = vc_nodes.get(q, 0) * GPUS_PER_NODE
        spec = {"resources": {"gpu": {"quota": gpus}, "cpu": {"quota": -1}, "memory": {"quota": -1}}}
        if reclaim != "none":
            spec["fairness"] = {"reclaimStrategy": reclaim}
        out.append({"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoQueue", "metadata": {"name": q},
                    "spec": spec})
    return out


def _job_pods(j: int, queue: str, gpus: int, created: float, migratable: bool = False) -> list:
    """The pods of job ``j`` as the scheduler reads them (pending): 8-GPU pods and one with the
    rest, a gang of all of them when there are several; ``migratable``: they may be moved."""
    sizes = [GPUS_PER_NODE] * (gpus // GPUS_PER_NODE) + ([gpus % GPUS_PER_NODE] if gpus % GPUS_PER_NODE else [])
    ann = {ANN_GANG: f"job-{j}", ANN_GANG_MIN: str(len(sizes))} if len(sizes) > 1 else {}
    if migratable:
        ann[ANN_MIGRATABLE] = "true"
    ts = datetime.fromtimestamp(created, timezone.utc)
    return [pod_request({"kind": "Pod",
                         "metadata": {"name": f"job-{j}-{k}", "namespace": NAMESPACE, "creationTimestamp": ts,
                                      "labels": {LABEL_QUEUE: queue}, "annotations": ann},
                         "spec": {"schedulerName": SCHEDULER_NAME, "containers": [
                             {"name": "job", "resources": {"limits": {RESOURCE_NVIDIA: g}}}]}})
            for k, g in enumerate(sizes)]


def replay_online(jobs: JobTrace, vc_nodes: dict, policy: str = "binpack", period: float = 60.0,
                  sample: float = 600.0, progress=None, reclaim: str = DEFAULT_RECLAIM,
                  config: SchedulerConfiguration | None = None, rebalance: RebalanceConfig | None = None,
                  rebalance_period: float = 600.0, migration_cost: float = 60.0) -> OnlineResult:
    """Replay ``jobs`` on one 8-GPU node per quota node of ``vc_nodes``; see the module doc.

    ``period``: seconds between scheduling cycles (a cycle runs only when jobs wait);
    ``sample``: seconds between utilisation and fairness samples;
    ``reclaim``: every queue's ``reclaimStrategy`` (``conservative``, ``aggressive``), or ``none``
    for no reclaim or preemption at all;
    ``config``: plugins, ordering, preemption and reservation settings (a ``--config`` file; its
    strategy is ``policy``'s to choose);
    ``rebalance``: the planner's limits, None = no rebalancing; ``rebalance_period``: seconds
    between plans; ``migration_cost``: seconds a migration adds to its job's run (see the module doc).
    """
    if rebalance is not None and not (rebalance_period > 0 and 0 <= migration_cost < math.inf):
        raise ValueError(f"rebalance_period ({rebalance_period}) must be > 0 and migration_cost "
                         f"({migration_cost}) a finite number >= 0")
    if reclaim not in RECLAIM_CHOICES:
        raise ValueError(f"reclaim: {reclaim!r} is not one of {', '.join(RECLAIM_CHOICES)}")
    t0 = time.perf_counter()
    n_nodes = max(1, sum(vc_nodes.values()))
    cluster = cluster_from_arrays([f"node-{i:04d}" for i in range(n_nodes)], [64000] * n_nodes,
                                  [512 * 1024] * n_nodes, [GPUS_PER_NODE] * n_nodes, model="philly-gpu",
                                  pods=[1 << 20] * n_nodes)
    snap = Snapshot(cluster, cluster.empty_state(), objects={"KaiwoQueue": _queue_objects(vc_nodes, jobs.queue, reclaim)},
                    dev_xcd_held=np.zeros(cluster.n_devices, dtype=np.uint32))
    config = config or SchedulerConfiguration()
    settings = config.schedule_kwargs(policy)
    settings["preempting"] = replace(config.preemption, enabled=config.preemption.enabled and reclaim != "none")
    stats = {name: QueueStats(name, vc_nodes.get(name, 0) * GPUS_PER_NODE) for name in set(jobs.queue)}
    epoch = jobs.start_epoch
    n_jobs = len(jobs)
    too_big = jobs.gpus > cluster.n_devices
    pods: dict = {}                  # job -> its pending pods (built at arrival, reused on restart)
    job_of: dict = {}                # pod name -> job
    running: dict = {}               # pod name -> running pod (insertion order = snap.running order)
    up = np.zeros(n_jobs, np.int32)  # pods of each job running
    gen = np.zeros(n_jobs, np.int64)  # bumped on eviction: the job's old finish event is void
    slot = np.full(n_jobs, -1, np.int64)  # index of the job's wait in its queue's waits
    since = np.zeros(n_jobs)         # when the job last became pending
    alloc: dict = {name: 0 for name in stats}  # GPUs each queue's running jobs hold
    done_heap: list = []             # (finish time, job id, generation)
    finish = np.zeros(n_jobs)        # when each running job ends
    moves = np.zeros(n_jobs, np.int64)  # migrations of each job
    by_reason: dict = {}
    plans, last_plan = 0, -math.inf
    times, util, fair = [], [], []
    next_arrival, cycles, now, again = 0, 0, 0.0, False
    while True:
        while done_heap and done_heap[0][2] != gen[done_heap[0][1]]:
            heapq.heappop(done_heap)  # finish of a run that was preempted
        if not (next_arrival < n_jobs or done_heap or again):
            break
        # advance to the next event (after preemptions: the next period, where the preemptors
        # and the evicted jobs wait), then take in everything up to the end of the period
        t_next = min(jobs.arrival[next_arrival] if next_arrival < n_jobs else math.inf,
                     done_heap[0][0] if done_heap else math.inf, now if again else math.inf)
        now = max(now, t_next)
        horizon = now + period
        ended = []
        while done_heap and done_heap[0][0] <= horizon:
            _, j, g = heapq.heappop(done_heap)
            if g == gen[j]:
                ended.append(j)
        _stop(snap, running, pods, up, alloc, jobs, ended)
        while next_arrival < n_jobs and jobs.arrival[next_arrival] <= horizon:
            j = next_arrival
            if too_big[j]:
                stats[jobs.queue[j]].waiting += 1  # can never run here
            else:
                pods[j] = _job_pods(j, jobs.queue[j], int(jobs.gpus[j]), epoch + float(jobs.arrival[j]),
                                    migratable=rebalance is not None)
                job_of.update((r.name, j) for r in pods[j])
                snap.pending.extend(pods[j])
                since[j] = jobs.arrival[j]
            next_arrival += 1
        now = horizon
        again, cycle = False, None
        if snap.pending:
            cycles += 1
            d = cycle = schedule(snap, now=epoch + now, **settings)
            victims = _victims(d, job_of)
            started = _bind(snap, d, running, job_of, up, epoch + now)
            for j in started:
                if up[j] == len(pods[j]):  # every pod of the job runs (a gang binds all at once)
                    finish[j] = now + float(jobs.duration[j])
                    heapq.heappush(done_heap, (finish[j], j, int(gen[j])))
                    alloc[jobs.queue[j]] += int(jobs.gpus[j])
                    waits = stats[jobs.queue[j]].waits
                    if slot[j] < 0:
                        slot[j] = len(waits)
                        waits.append(now - float(jobs.arrival[j]))
                    else:
                        waits[slot[j]] += now - since[j]
            _nominate(snap, d)
            if victims:  # evicted jobs go back to pending and start over with their full duration
                _stop(snap, running, pods, up, alloc, jobs, victims)
                for j in victims:
                    gen[j] += 1
                    since[j] = now
                    stats[jobs.queue[j]].preempted += 1
                    snap.pending.extend(pods[j])
                again = True
            snap.pending = [r for r in snap.pending if r.name not in running]
            if rebalance is not None and snap.pending and not victims and now - last_plan >= rebalance_period:
                last_plan, plans = now, plans + 1
                plan = plan_rebalance(snap, rebalance, now=epoch + now, pipeline=settings["pipeline"])
                for j in _migrate(snap, plan.moves, running, job_of, epoch + now):
                    moves[j] += sum(1 for m in plan.moves if job_of[m["pod"]] == j)
                    gen[j] += 1  # its old finish event is void
                    finish[j] += migration_cost
                    heapq.heappush(done_heap, (finish[j], j, int(gen[j])))
                for m in plan.moves:
                    by_reason[m["reason"]] = by_reason.get(m["reason"], 0) + 1
                again = again or bool(plan.moves)
        if not times or now - times[-1] >= sample:
            times.append(now)
            util.append(1.0 - float(snap.state.dev_milli_free.sum()) / max(1, cluster.n_devices * 1000))
            fair.append(_fairness(cycle, alloc))
        if progress is not None:
            progress(next_arrival, n_jobs)
    for r in snap.pending:
        if job_of[r.name] in pods and pods[job_of[r.name]][0] is r:  # once per job
            stats[jobs.queue[job_of[r.name]]].waiting += 1
    migrations = None
    if rebalance is not None:
        placed = sum(len(q.waits) for q in stats.values())
        migrations = {"plans": plans, "moves": int(moves.sum()), "jobsMoved": int((moves > 0).sum()),
                      "byReason": by_reason, "movesPerPlacedJob": round(float(moves.sum()) / max(1, placed), 4),
                      "maxMovesOfAJob": int(moves.max()) if n_jobs else 0, "migrationCostS": migration_cost,
                      "periodS": rebalance_period}
    return OnlineResult(sorted(stats.values(), key=lambda s: s.name), np.array(times), np.array(util),
                        np.array(fair), n_jobs, cycles, time.perf_counter() - t0, policy,
                        reclaim if settings["preempting"].enabled else "none", migrations)


def _nominate(snap: Snapshot, d) -> None:
    """Record the cycle's nominations on the preemptors, as the controller writes
    ``status.nominatedNodeName``: the next cycle places them first."""
    plan = d.preemption
    if plan is None:
        return
    nodes = {n["pod"]: n["node"] for n in plan.nominations()}
    if nodes:
        snap.pending = [replace(r, nominated_node=nodes[r.name]) if r.name in nodes else r
                        for r in snap.pending]


def _victims(d, job_of: dict) -> list:
    """Jobs the cycle's preemption plan evicts (a job goes as a whole: all its pods)."""
    plan = d.preemption
    if plan is None:
        return []
    out: dict = {}
    for i in np.flatnonzero(plan.placed).tolist():
        for v in plan.victims_of(i):
            out.setdefault(job_of[d.snapshot.running[v].name], None)
    return list(out)


def _bind(snap: Snapshot, d, running: dict, job_of: dict, up: np.ndarray, started: float) -> list:
    """Apply the cycle's bindings: each bound pod runs on its node and devices from now on,
    charged as the controller charges running pods (:meth:`Snapshot.charge_running` on our
    state). Returns the jobs that got pods, in binding order."""
    p = d.placement
    if p is None or not p.placed.any():
        return []
    names, new, jobs = snap.cluster.names, [], {}
    for i in np.flatnonzero(p.placed).tolist():
        req = replace(p.batch.pods[i], node=names[int(p.node[i])], assignment=p.devices(i), started=started)
        new.append(req)
        running[req.name] = req
        j = job_of[req.name]
        up[j] += 1
        jobs.setdefault(j, None)
    charge = Snapshot(snap.cluster, snap.state, running=new)
    charge.charge_running()
    snap.dev_xcd_held |= charge.dev_xcd_held
    snap.running = list(running.values())
    return list(jobs)


def _stop(snap: Snapshot, running: dict, pods: dict, up: np.ndarray, alloc: dict, jobs: JobTrace, ended) -> None:
    """Take the running pods of jobs ``ended`` (finished or evicted) off the cluster: node
    resources back, their whole GPUs idle again."""
    if not len(ended):
        return
    for j in ended:
        alloc[jobs.queue[j]] -= int(jobs.gpus[j])
        up[j] = 0
        for pod in pods[j]:
            _release(snap, running.pop(pod.name))
    snap.running = list(running.values())


def _release(snap: Snapshot, req) -> None:
    """Running pod ``req``'s node resources back, its (whole) GPUs idle again."""
    c, s = snap.cluster, snap.state
    n = c.index(req.node)
    s.node_cpu_free[n] += req.cpu
    s.node_mem_free[n] += req.memory
    s.node_pods_free[n] += 1
    for a in req.assignment:  # whole GPUs: nothing else is on the device
        dev = c.device_index(n, a["gpu"], a["partition"])
        s.dev_milli_free[dev] = 1000
        s.dev_mem_free[dev] = c.dev_mem_cap[dev]
        s.dev_xcd_free[dev] = c.dev_xcd_mask[dev]
        s.dev_state[dev] = IDLE


def _migrate(snap: Snapshot, moves: list, running: dict, job_of: dict, started: float) -> list:
    """Carry out a plan's moves: every moved pod leaves its devices, then holds its planned ones
    (all leave first: a target may be what another move of the plan frees). Returns the jobs
    moved, in plan order."""
    if not moves:
        return []
    for m in moves:
        _release(snap, running[m["pod"]])
    new = []
    for m in moves:
        req = replace(running[m["pod"]], node=m["to"]["node"], assignment=m["to"]["devices"], started=started)
        running[m["pod"]] = req  # same place in the order: snap.running stays in insertion order
        new.append(req)
    charge = Snapshot(snap.cluster, snap.state, running=new)
    charge.charge_running()
    snap.dev_xcd_held |= charge.dev_xcd_held
    snap.running = list(running.values())
    return list(dict.fromkeys(job_of[m["pod"]] for m in moves))


def _fairness(d, alloc: dict) -> float:
    """Jain's index of allocated / fair share (GPUs) over the queues with running or pending jobs.

    ``d``: this step's cycle (Decisions), whose fair shares stand after its bindings and evictions
    too (they move demand between a queue's running and pending pods, not between queues). None:
    nothing was pending, so every queue's fair share is its demand, which is what it holds."""
    if d is None:
        return 1.0 if sum(1 for v in alloc.values() if v > 0) >= 2 else float("nan")
    x = []
    for name, q in d.tree.index.items():
        if d.tree.is_leaf[q] and d.shares.demand[q, 0] > 0 and d.shares.fair_share[q, 0] > 0:
            x.append(alloc.get(name, 0) * 1000 / d.shares.fair_share[q, 0])
    return jain(np.array(x)) if len(x) >= 2 else float("nan")
