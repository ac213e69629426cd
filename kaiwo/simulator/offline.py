"""Trace replay: the FGD paper's experiment on Kaiwo's placement core, with its metrics.

One run replays one pod trace on one node list with one policy and one seed, exactly as the FGD
paper's simulator does (see :mod:`kaiwo_core.model.trace` for the arrival order, inflation and node
order): pods arrive one by one and are placed at once or dropped for good. Placement is Kaiwo's
own pipeline -- the built-in GPU-model filter plus one strategy plugin of
:mod:`kaiwo_core.scheduling.filters` -- on the compiled kernel (``_core.place_batch``), the same core the
controller and ``kaiwo schedule`` run. The trace is placed in a few consecutive batches (for the
progress bar); every strategy's choices are independent of how the trace is split (the random
policy's draws are counter-based and re-seeded per batch, GPU clustering's bookkeeping is carried
in ``node_gpu_kinds``, the target workloads are fixed), so the result is that of one batch.

Metrics, as the paper's analysis scripts compute them (``merge_alloc_discrete``):

* after every offer: arrived = running sum of requested GPU milli (``num_gpu * gpu_milli``),
  allocated = GPU milli held by placed pods;
* x = round(arrived / GPUs / 10) (Python's round, halves to even), y = round(allocated / GPUs /
  10, 2); the allocation ratio at k % arrival is the mean of y over offers with x = k (if none,
  over x in [k-1, k+1]), rounded to 2 decimals;
* unallocated GPU % at k = 100 - that ratio (capacity left unused);
* fragmentation: FGD's measure, the sum over nodes of the target workload's expected unusable
  GPU milli, as a % of the GPU capacity (at the end of the replay);
* pods failed (all, and those asking for GPUs), wall time of the run.

AMD mode replays the same trace on MI300X nodes (see :func:`amd_cluster` and
:func:`amd_requests` for how GPUs and fractions map onto partitions, time-slicing and XCDs).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from importlib.resources import files

import numpy as np

from kaiwo_core import _core
from kaiwo_core.model import gpu as gpumod
from kaiwo_core.model.cluster import Cluster, cluster_from_arrays, kernel_view
from kaiwo_core.scheduling.filters import random_seed_at
from kaiwo_core.plugins import CycleContext, Pipeline
from kaiwo_core.model.requests import KIND_NONE, KIND_SHARED, KIND_WHOLE, KIND_XCD, PodBatch
from .report import Table
from kaiwo_core.model.trace import (NodeList, PodTrace, Workload, constraint_classes, fgd_arrivals,
                              read_node_csv, read_pod_csv, workload_shapes)

#: Policies in the paper's order, then Kaiwo's.
POLICIES = ("random", "dot-product", "gpu-clustering", "gpu-packing", "best-fit", "fgd", "frag")
#: The paper's names of its policies (its result files' ``sc_policy`` column).
PAPER_NAMES = {"random": "01-Random", "dot-product": "02-DotProd", "gpu-clustering": "03-GpuClustering",
               "gpu-packing": "04-GpuPacking", "best-fit": "05-BestFit", "fgd": "06-FGD"}
#: FGD's published mean allocation ratio (%) over seeds 42-51 on openb ``default`` at 100% and
#: 130% arrival (summary_alloc_mean_by_policy.csv of the paper's artifact results).
PUBLISHED_DEFAULT = {"random": (86.303, 87.470), "dot-product": (90.622, 90.849),
                     "gpu-clustering": (91.650, 91.878), "gpu-packing": (91.779, 92.002),
                     "best-fit": (92.862, 93.076), "fgd": (95.227, 95.391)}
BUNDLED_PODS = "openb_pod_list_default.csv.gz"
BUNDLED_NODES = "openb_node_list_gpu_node.csv.gz"
KEY_POINTS = (80, 90, 95, 100, 110, 120, 130)
MAX_X = 130
#: Largest --ratio (the curve ends at 130 %: more only adds pods that are dropped).
MAX_RATIO = 10.0


def bundled(name: str) -> str:
    """Path of a file shipped in ``kaiwo/data``."""
    return str(files("kaiwo") / "data" / name)


# ----------------------------------------------------------------------------------- AMD mode

def amd_model(model: str):
    """The :class:`~kaiwo_core.model.gpu` model of a name; ValueError naming the known ones."""
    amd = gpumod.MODELS.get(model.upper())
    if amd is None:
        raise ValueError(f"--gpu-model {model!r}: not an AMD Instinct model "
                         f"(known: {', '.join(sorted(gpumod.MODELS))})")
    return amd


def amd_cluster(nodes: NodeList, model: str = "MI300X", partition: str = "SPX", seed: int = 0) -> Cluster:
    """A cluster of AMD GPUs with the GPU count of ``nodes``: nodes of 8 GPUs plus one smaller
    node for the rest, each with the replayed node list's CPU and memory per GPU (so the replay
    stays as CPU- and memory-bound as the original), all in ``partition`` mode with NPS1 memory.
    Nodes are in a seeded random order (score ties go to the earlier node).

    Raises
    ------
    ValueError
        Unknown model or a partition mode the model does not have.
    """
    amd = amd_model(model)
    gpumod.partitioning(amd, partition.upper(), "NPS1")  # validates the mode
    total = nodes.n_gpus
    full, rest = divmod(total, 8)
    gpus = [8] * full + ([rest] if rest else [])
    cpu_per_gpu = nodes.cpu.sum() / total
    mem_per_gpu = nodes.memory.sum() / total
    order = np.random.default_rng(seed).permutation(len(gpus))
    width = max(4, len(str(len(gpus))))
    names = [f"{int(order[i]):0{width}d}-{amd.name.lower()}-{i:04d}" for i in range(len(gpus))]
    return cluster_from_arrays(names, [int(cpu_per_gpu * g) for g in gpus],
                               [int(mem_per_gpu * g) for g in gpus], gpus, model=amd.name,
                               partition=f"{partition.lower()}_nps1", pods=[1 << 30] * len(gpus))


def amd_requests(num_gpu: np.ndarray, gpu_milli: np.ndarray, per_gpu: int, isolation: str):
    """Map trace requests (in physical GPUs) onto logical GPUs of ``per_gpu`` partitions each:
    (kind, count, milli) arrays.

    * k whole GPUs -> k * per_gpu whole partitions (the same compute);
    * a fraction f of a GPU is f * per_gpu partitions: up to one partition it shares one partition
      -- time-sliced (``KIND_SHARED``, milli = f * per_gpu * 1000) or, with ``isolation='xcd'``,
      as whole XCDs of it (``KIND_XCD``: the kernel rounds up to the partition's XCDs); beyond one
      partition it takes ceil(f * per_gpu) whole partitions, exclusively.
    """
    num = np.asarray(num_gpu, dtype=np.int64)
    milli = np.asarray(gpu_milli, dtype=np.int64)
    share = milli * per_gpu  # thousandths of a logical GPU, per GPU asked for
    whole = milli >= 1000
    fits_one = ~whole & (share <= 1000)
    frac_kind = KIND_XCD if isolation == "xcd" else KIND_SHARED
    kind = np.where(num == 0, KIND_NONE, np.where(whole, KIND_WHOLE, np.where(fits_one, frac_kind, KIND_WHOLE)))
    count = np.where(num == 0, 0, np.where(whole, num * per_gpu,
                                           np.where(fits_one, num, num * -(-share // 1000))))
    out_milli = np.where(num == 0, 0, np.where(fits_one, share, 1000))
    return kind.astype(np.int8), count.astype(np.int32), out_milli.astype(np.int32)


# --------------------------------------------------------------------------------------- runs

@dataclass
class Scenario:
    """What is replayed: a trace on a node list (or on AMD GPUs of the same count)."""

    trace: PodTrace
    nodes: NodeList
    name: str = "default"
    ratio: float = 1.3                 #: arrivals until requests reach this share of GPU capacity
    gpu_model: str | None = None       #: AMD model for AMD mode (None: the node list's GPUs)
    partition: str = "SPX"
    isolation: str = "time-slicing"    #: fractions in AMD mode: "time-slicing" or "xcd"
    custom_nodes: bool = False         #: a node list of the user's (the paper's numbers do not apply)
    _workloads: dict = field(default_factory=dict, repr=False)

    @property
    def n_gpus(self) -> int:
        return self.nodes.n_gpus

    def workload(self) -> Workload:
        """The target workload of ``fgd`` and ``frag``: FGD's shapes of the original trace (mapped
        onto partitions in AMD mode)."""
        if "workload" not in self._workloads:
            wl = workload_shapes(self.trace, models=self.gpu_model is None)
            if self.gpu_model is not None:
                wl.kind, wl.num_gpu, wl.gpu_milli = amd_requests(wl.num_gpu, wl.gpu_milli, self.per_gpu,
                                                                 self.isolation)
            self._workloads["workload"] = wl
        return self._workloads["workload"]

    @property
    def per_gpu(self) -> int:
        """Logical GPUs per physical GPU (1 unless AMD mode partitions them)."""
        if self.gpu_model is None:
            return 1
        amd = amd_model(self.gpu_model)
        return gpumod.partitioning(amd, self.partition.upper(), "NPS1").logical_per_gpu


@dataclass
class RunResult:
    """One replay: a policy, a seed, its metrics."""

    policy: str
    seed: int
    curve: np.ndarray          #: float64[131] allocation ratio % at k % arrival (NaN: no offer)
    fragmentation: float       #: FGD's fragmentation measure at the end, % of GPU capacity
    pods: int                  #: offered
    failed: int                #: dropped
    failed_gpu: int            #: dropped pods that ask for GPUs
    wall: float                #: seconds (placement and metrics)
    placed: np.ndarray = field(repr=False, default=None)  #: bool per offer

    def at(self, k: int) -> float:
        return float(self.curve[k])

    def unallocated(self, k: int) -> float:
        """GPU capacity (%) not allocated when arrivals reach k %."""
        return round(100.0 - float(self.curve[k]), 2)


def alloc_curve(requests: np.ndarray, placed: np.ndarray, n_gpus: int) -> np.ndarray:
    """The paper's allocation ratio at each whole % of arrived GPU requests (see module doc)."""
    arrived = np.cumsum(requests, dtype=np.int64)
    alloc = np.cumsum(np.where(placed, requests, 0), dtype=np.int64)
    x = np.round(arrived / n_gpus / 10)                   # numpy rounds halves to even, as round()
    y = np.round(alloc / n_gpus / 10, 2)
    out = np.full(MAX_X + 1, np.nan)
    for k in range(MAX_X + 1):
        sel = y[x == k]
        if sel.size == 0:
            sel = y[(x >= k - 1) & (x <= k + 1)]
        if sel.size == 0 and x.size and x[0] <= k <= x[-1]:
            # Few GPUs: one pod moves arrivals by more than 2 points. Arrivals passed k, so the
            # ratio at k is that after the last offer below it (the curve is a step function).
            sel = y[np.searchsorted(x, k) - 1:][:1]
        if sel.size:
            out[k] = round(float(np.mean(sel)), 2)
    return out


def fragmentation(cluster: Cluster, state, wl: Workload) -> float:
    """FGD's fragmentation measure of the cluster's free compute, % of its GPU capacity: over
    nodes, the sum over target shapes of (frequency x the node's free milli that shape cannot
    use: all of it if the shape cannot run there at all -- no GPU needed, wrong model, too few
    fitting GPUs, too little CPU --, else the free milli of GPUs too small for it)."""
    n = cluster.n_nodes
    if cluster.n_devices == 0:
        return 0.0
    free = state.dev_milli_free
    usable = state.dev_state != 2
    node_of = cluster.dev_node
    total = np.bincount(node_of, weights=free, minlength=n)
    models = np.array([nd.model.upper() for nd in cluster.nodes], dtype=object)
    kinds = getattr(wl, "kind", None)
    out = np.zeros(n)
    for t in range(len(wl)):
        g, milli, w = int(wl.num_gpu[t]), int(wl.gpu_milli[t]), float(wl.weight[t])
        if g == 0:
            out += w * total
            continue
        if kinds is not None and kinds[t] == KIND_WHOLE:
            milli = 1000
        ok_dev = usable & (free >= milli)
        ok = np.bincount(node_of, weights=ok_dev, minlength=n)
        bad = np.bincount(node_of, weights=np.where(ok_dev, 0, free), minlength=n)
        cpu_ok = state.node_cpu_free >= wl.cpu[t]
        spec = wl.gpu_spec[t] if t < len(wl.gpu_spec) else ""
        access = np.ones(n, bool)
        if spec:
            access = np.isin(models, [m.strip().upper() for m in spec.split("|") if m.strip()])
        host = access & (ok >= g) & cpu_ok
        out += w * np.where(host, bad, total)
    return float(out.sum() / (cluster.n_devices * 1000) * 100)


def _cluster_and_batch(scn: Scenario, seed: int):
    """(cluster, batch, offered trace rows) of a seed, built once per scenario and seed (every
    policy replays the same arrivals on the same node order; the free state is fresh per run)."""
    key = ("run", seed)
    if key not in scn._workloads:
        scn._workloads[key] = _build_cluster_and_batch(scn, seed)
    return scn._workloads[key]


def _build_cluster_and_batch(scn: Scenario, seed: int):
    arr = fgd_arrivals(scn.trace, scn.nodes, seed, scn.ratio)
    offered = scn.trace.take(arr.pods)
    if scn.gpu_model is None:
        cluster = scn.nodes.to_cluster(rank=arr.node_rank)
        batch = offered.to_batch()
        # Constraint classes of the whole trace (the target workload's shapes are among them).
        cons, cls_all = constraint_classes(scn.trace.gpu_spec, scn.trace.num_gpu)
        batch.constraints, batch.cls = cons, np.ascontiguousarray(cls_all[arr.pods], dtype=np.int32)
    else:
        cluster = amd_cluster(scn.nodes, scn.gpu_model, scn.partition, seed)
        kind, count, milli = amd_requests(offered.num_gpu, offered.gpu_milli, scn.per_gpu, scn.isolation)
        n = len(offered)
        batch = PodBatch(names=offered.names, cpu=offered.cpu.copy(), mem=offered.memory.copy(), kind=kind,
                         count=count, milli=milli, gpu_mem=np.zeros(n, np.int64),
                         exclusive=np.zeros(n, np.uint8), cls=np.zeros(n, np.int32),
                         priority=np.zeros(n, np.int64), created=np.zeros(n, np.float64))
    return cluster, batch, offered


def strategy_config(scn: Scenario, policy: str, seed: int) -> dict:
    """The strategy plugin's configuration for a replay: the random policy's seed, the target
    workload of ``fgd`` and ``frag`` (FGD's shapes of the original trace)."""
    if policy == "random":
        return {"seed": seed}
    if policy in ("fgd", "frag"):
        return {"workload": scn.workload()}
    return {}


def replay(scn: Scenario, policy: str, seed: int, parts: int = 4, progress=None, plugins=()) -> RunResult:
    """One run of the FGD experiment with ``policy`` (a strategy plugin name) and ``seed``.

    ``progress(done, total)`` is called after each of the ``parts`` batches; ``plugins``: extra
    (name, arguments) filters and scores (a ``--config`` file's).
    """
    t0 = time.perf_counter()
    cluster, batch, offered = _cluster_and_batch(scn, seed)
    state = cluster.empty_state()
    pipeline = Pipeline(["gpu-model", *((n, dict(a)) for n, a in plugins),
                         (policy, strategy_config(scn, policy, seed))])
    ctx = CycleContext(cluster, state, batch)
    for p in pipeline.plugins:
        p.on_cycle_start(ctx)
    class_mask = pipeline.class_mask(ctx)
    extra = pipeline.extra_score(ctx)
    args = pipeline.strategy.kernel_args(ctx)
    view = kernel_view(cluster, state)
    view["node_gpu_kinds"] = np.zeros(cluster.n_nodes, dtype=np.uint64)
    kb_all = batch.kernel_view()
    n = len(batch)
    placed = np.zeros(n, dtype=bool)
    bounds = np.linspace(0, n, max(1, parts) + 1).astype(np.int64)
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b <= a:
            continue
        kb = {k: np.ascontiguousarray(v[a:b]) for k, v in kb_all.items()}
        kb["class_mask"] = class_mask
        if extra is not None:
            kb["extra_score"] = extra
        kb.update(args)
        if "seed" in args:
            kb["seed"] = np.array([random_seed_at(int(args["seed"][0]), int(a))], dtype=np.uint64)
        out = _core.place_batch(view, kb, pipeline.strategy.strategy)
        placed[a:b] = out["node"] >= 0
        if progress is not None:
            progress(int(b), n)
    requests = offered.gpu_request
    curve = alloc_curve(requests, placed, scn.n_gpus)
    frag = fragmentation(cluster, state, scn.workload())
    wants_gpu = offered.num_gpu > 0
    return RunResult(policy, seed, curve, frag, n, int((~placed).sum()), int((~placed & wants_gpu).sum()),
                     time.perf_counter() - t0, placed)


# ------------------------------------------------------------------------------ aggregation

@dataclass
class PolicySummary:
    """A policy's runs over seeds."""

    policy: str
    runs: list

    def values(self, k: int) -> np.ndarray:
        return np.array([r.at(k) for r in self.runs])

    def mean(self, k: int) -> float:
        """Over seeds with a value at k (NaN if none: arrivals never reached k %)."""
        v = self.values(k)
        return round(float(np.mean(v[~np.isnan(v)])), 3) if (~np.isnan(v)).any() else math.nan

    def median(self, k: int) -> float:
        v = self.values(k)
        return round(float(np.median(v[~np.isnan(v)])), 3) if (~np.isnan(v)).any() else math.nan

    def curve(self) -> np.ndarray:
        with np.errstate(all="ignore"):
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return np.nanmean(np.stack([r.curve for r in self.runs]), axis=0)

    def to_dict(self) -> dict:
        def num(v):
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 3)
        curve = self.curve()
        return {
            "policy": self.policy,
            "seeds": [r.seed for r in self.runs],
            "allocationRatio": {str(k): num(curve[k]) for k in range(MAX_X + 1)},
            "allocationAt100": {"mean": num(self.mean(100)), "median": num(self.median(100))},
            "allocationAt130": {"mean": num(self.mean(130)), "median": num(self.median(130))},
            "unallocatedGpuPct": {str(k): num(100.0 - curve[k]) for k in KEY_POINTS},
            "fragmentationPct": num(float(np.mean([r.fragmentation for r in self.runs]))),
            "podsFailed": int(round(np.mean([r.failed for r in self.runs]))),
            "gpuPodsFailed": int(round(np.mean([r.failed_gpu for r in self.runs]))),
            "pods": int(round(np.mean([r.pods for r in self.runs]))),
            "wallSeconds": round(float(sum(r.wall for r in self.runs)), 3),
            "runs": [{"seed": r.seed, "allocationAt100": num(r.at(100)), "allocationAt130": num(r.at(130)),
                      "fragmentationPct": num(r.fragmentation), "podsFailed": r.failed,
                      "wallSeconds": round(r.wall, 3)} for r in self.runs],
        }


class ProgressBar:
    """A one-line text progress bar on a stream (redrawn in place with a carriage return)."""

    def __init__(self, total: int, stream=None, width: int = 30):
        self.total, self.done, self.width = max(total, 1), 0, width
        self.stream = stream if stream is not None else sys.stderr
        self.label = ""
        self.t0 = time.perf_counter()

    def update(self, done: int, label: str = "") -> None:
        self.done, self.label = done, label or self.label
        filled = int(self.width * self.done / self.total)
        pct = 100 * self.done / self.total
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {pct:5.1f}% "
                          f"{time.perf_counter() - self.t0:5.1f}s {self.label:<28}")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def run_all(scn: Scenario, policies, seeds, parts: int = 4, show_progress: bool = True,
            stream=None, plugins=()) -> list:
    """Every policy with every seed; a :class:`PolicySummary` per policy, in ``policies`` order
    (``plugins``: see :func:`replay`)."""
    policies, seeds = list(policies), list(seeds)
    bar = ProgressBar(len(policies) * len(seeds) * parts, stream) if show_progress else None
    out = []
    step = 0
    for policy in policies:
        runs = []
        for seed in seeds:
            def tick(done, total, base=step, label=f"{policy} seed {seed}"):
                if bar is not None:
                    bar.update(base + int(round(parts * done / total)), label)
            runs.append(replay(scn, policy, seed, parts, tick, plugins))
            step += parts
        out.append(PolicySummary(policy, runs))
    if bar is not None:
        bar.close()
    return out


def summary_table(summaries: list, scn: Scenario) -> Table:
    """Allocation ratio at 100% and 130% arrival per policy (means over seeds), with the paper's
    published means beside them when the replay is the bundled default trace on its node list."""
    paper = scn.name == "default" and scn.gpu_model is None and not scn.custom_nodes and abs(scn.ratio - 1.3) < 1e-9
    header = ["POLICY", "SEEDS", "ALLOC@100%", "ALLOC@130%", "MEDIAN@130%", "UNALLOC@130%", "FRAG%",
              "FAILED", "WALL s"]
    if paper:
        header += ["PAPER@100%", "PAPER@130%"]
    rows = []
    for s in summaries:
        row = [s.policy, len(s.runs), _pct(s.mean(100)), _pct(s.mean(130)), _pct(s.median(130)),
               _pct(100 - s.mean(130)), f"{np.mean([r.fragmentation for r in s.runs]):.2f}",
               int(round(np.mean([r.failed for r in s.runs]))), f"{sum(r.wall for r in s.runs):.1f}"]
        if paper:
            pub = PUBLISHED_DEFAULT.get(s.policy)
            row += [f"{pub[0]:.2f}" if pub else "-", f"{pub[1]:.2f}" if pub else "-"]
        rows.append(row)
    where = (f"{scn.name} ({len(scn.trace)} pods) on {len(scn.nodes)} nodes / {scn.n_gpus} GPUs"
             if scn.gpu_model is None else
             f"{scn.name} ({len(scn.trace)} pods) on {scn.n_gpus} {scn.gpu_model} in {scn.partition} "
             f"({scn.isolation} for fractions)")
    note = ("PAPER: FGD's published means over seeds 42-51 (Weng et al., USENIX ATC'23)" if paper else "")
    if any(math.isnan(s.mean(130)) for s in summaries):
        note = (note + "\n" if note else "") + (f"-: arrivals (up to --ratio {scn.ratio:g} of capacity, "
                                                 "one pod at a time) never reached that share")
    return Table(header, rows, f"GPU allocation ratio (%) by arrived GPU requests: {where}", note)


def render_table(summaries: list, scn: Scenario) -> str:
    """:func:`summary_table` as text columns."""
    return summary_table(summaries, scn).text()


def _pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2f}"


def load_scenario(trace: str | None = None, nodes: str | None = None, **kw) -> Scenario:
    """A scenario from CSV paths (default: the bundled openb ``default`` trace and GPU nodes).

    Raises ValueError for a ``ratio`` that is not a positive number."""
    ratio = kw.get("ratio", 1.3)
    if not 0 < ratio <= MAX_RATIO:  # NaN too
        raise ValueError(f"--ratio {ratio:g}: must be above 0 and at most {MAX_RATIO:g} (share of GPU capacity)")
    kw.setdefault("custom_nodes", nodes is not None)
    pods = read_pod_csv(trace or bundled(BUNDLED_PODS))
    node_list = read_node_csv(nodes or bundled(BUNDLED_NODES))
    name = "default" if trace is None else _trace_name(trace)
    return Scenario(pods, node_list, name, **kw)


def _trace_name(path: str) -> str:
    base = str(path).rsplit("/", 1)[-1]
    for suffix in (".gz", ".csv"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base.replace("openb_pod_list_", "")
