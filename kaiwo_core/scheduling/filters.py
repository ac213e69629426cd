"""Built-in placement plugins: node filters over constraint classes, and the scoring strategies.

Filters evaluate each distinct :class:`~kaiwo_core.model.requests.Constraint` once against all nodes with
numpy (label columns are compared as arrays), giving rows of the [C, N] class mask. Only tainted
nodes are visited one by one, and a cluster has few of those.

Strategies carry no Python code on the hot path: they select the compiled scoring function of the
kernel, and hand it what their configuration needs (:meth:`_Strategy.kernel_args`: a seed, a target
workload, a measured load). The FGD paper's policies (``random``, ``best-fit``, ``dot-product``,
``gpu-packing``, ``gpu-clustering``, ``fgd``) score as that paper's simulator does; ``frag`` and
``load`` are Kaiwo's own.

Gangs keep to one topology domain (a zone, or a rack) when one can take them whole: the domain of
each node is its value of a label (``gang-topology``'s ``label``, default
``topology.kubernetes.io/zone``), handed to the kernel as ``node_domain`` (:func:`topology_domains`).
"""
from __future__ import annotations

import numpy as np

from ..plugins import CycleContext, Plugin, register

STRATEGY_BINPACK, STRATEGY_SPREAD, STRATEGY_FRAG = 0, 1, 2
(STRATEGY_RANDOM, STRATEGY_BEST_FIT, STRATEGY_DOT_PRODUCT, STRATEGY_GPU_PACKING, STRATEGY_GPU_CLUSTERING,
 STRATEGY_FGD) = range(3, 9)
STRATEGY_LOAD = 9
STRATEGIES = {"binpack": STRATEGY_BINPACK, "spread": STRATEGY_SPREAD, "frag": STRATEGY_FRAG,
              "random": STRATEGY_RANDOM, "best-fit": STRATEGY_BEST_FIT,
              "dot-product": STRATEGY_DOT_PRODUCT, "gpu-packing": STRATEGY_GPU_PACKING,
              "gpu-clustering": STRATEGY_GPU_CLUSTERING, "fgd": STRATEGY_FGD, "load": STRATEGY_LOAD}
#: splitmix64's increment: row r of a batch draws from counters 2r+1 and 2r+2 (see ``random_seed_at``).
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
DEFAULT_PLUGINS = ("node-affinity", "taints", "gpu-model", "gpu-resource", "gpu-partition")
#: The label whose values are the topology domains gangs keep to, unless ``gang-topology`` names another.
TOPOLOGY_LABEL = "topology.kubernetes.io/zone"


def _label_column(ctx: CycleContext, key: str) -> np.ndarray:
    """Object array of every node's value for label ``key`` (None where absent), cached per cycle."""
    cache = ctx.extra.setdefault("label_columns", {})
    col = cache.get(key)
    if col is None:
        col = np.array([n.labels.get(key) for n in ctx.cluster.nodes] + [None], dtype=object)[:-1]
        cache[key] = col
    return col


def _rows(ctx: CycleContext, row_fn) -> np.ndarray:
    """Stack one boolean row per constraint class; classes with equal rows computed once."""
    c, n = ctx.shape
    out = np.ones((c, n), dtype=bool)
    for i, con in enumerate(ctx.constraints):
        row = row_fn(con)
        if row is not None:
            out[i] = row
    return out


@register
class NodeAffinity(Plugin):
    """``spec.nodeSelector`` and required node affinity (In, NotIn, Exists, DoesNotExist)."""

    name = "node-affinity"

    def filter(self, ctx):
        def row(con):
            if not con.node_selector and not con.affinity:
                return None
            ok = np.ones(ctx.cluster.n_nodes, dtype=bool)
            for key, value in con.node_selector:
                ok &= _label_column(ctx, key) == value
            if con.affinity:  # terms are ORed, expressions within a term ANDed
                any_term = np.zeros_like(ok)
                for term in con.affinity:
                    t = np.ones_like(ok)
                    for key, op, values in term:
                        col = _label_column(ctx, key)
                        present = col != None  # noqa: E711 (elementwise on an object array)
                        if op == "Exists":
                            t &= present
                        elif op == "DoesNotExist":
                            t &= ~present
                        else:
                            inside = np.isin(col, list(values)) & present
                            t &= inside if op == "In" else ~inside
                    any_term |= t
                ok &= any_term
            return ok
        return _rows(ctx, row)

    def explain(self, ctx, con, nodes):
        labels = [ctx.cluster.nodes[i].labels for i in nodes]
        out = []
        for lab in labels:
            # texts name the pod's term, not the node's value: they group nodes in pending reasons
            why = next((f"node selector {k}={v} not matched" for k, v in con.node_selector
                        if lab.get(k) != v), None)
            if why is None:
                misses = [next(_term_miss(term, lab)) for term in con.affinity]
                why = (f"node affinity {misses[0]} not matched" if len(misses) == 1 else
                       f"no node affinity term matched ({'; '.join(misses)})")
            out.append(why)
        return out


def _term_miss(term, labels):
    """The expressions of one affinity term a node's labels fail, as text."""
    for key, op, values in term:
        v = labels.get(key)
        ok = (v is not None if op == "Exists" else v is None if op == "DoesNotExist"
              else (v is not None and v in values) == (op == "In"))
        if not ok:
            shown = f" [{', '.join(values)}]" if op in ("In", "NotIn") else ""
            yield f"{key} {op}{shown}"


def tolerates(tolerations, taint) -> bool:
    """Kubernetes toleration matching for one (key, value, effect) taint."""
    key, value, effect = taint
    for t_key, op, t_value, t_effect in tolerations:
        if t_effect and t_effect != effect:
            continue
        if op == "Exists" and (not t_key or t_key == key):
            return True
        if op == "Equal" and t_key == key and t_value == value:
            return True
    return False


@register
class Taints(Plugin):
    """NoSchedule/NoExecute taints must be tolerated; cordoned (unschedulable) nodes take nothing."""

    name = "taints"

    def filter(self, ctx):
        nodes = ctx.cluster.nodes
        base = np.array([not nd.unschedulable for nd in nodes], dtype=bool)
        tainted = [i for i, nd in enumerate(nodes) if nd.taints and not nd.unschedulable]

        def row(con):
            r = base.copy()
            for i in tainted:
                r[i] = all(tolerates(con.tolerations, t) for t in nodes[i].taints)
            return r
        return _rows(ctx, row)

    def explain(self, ctx, con, nodes):
        out = []
        for i in nodes:
            nd = ctx.cluster.nodes[i]
            if nd.unschedulable:
                out.append("node cordoned (unschedulable)")
                continue
            key, value, effect = next(t for t in nd.taints if not tolerates(con.tolerations, t))
            out.append(f"untolerated taint {key}{'=' + value if value else ''}:{effect}")
        return out


@register
class GpuModel(Plugin):
    """``kaiwo.ai/gpu-model``: the node's GPU model must be one of those named."""

    name = "gpu-model"

    def filter(self, ctx):
        if all(con.gpu_models is None for con in ctx.constraints):
            return None  # no pod names a model: every node's model need not be read
        models = np.array([nd.model.upper() for nd in ctx.cluster.nodes] + [""], dtype=object)[:-1]

        def row(con):
            return None if con.gpu_models is None else np.isin(models, list(con.gpu_models))
        return _rows(ctx, row)

    def explain(self, ctx, con, nodes):
        asked = "|".join(sorted(con.gpu_models))
        return [f"GPU model {ctx.cluster.nodes[i].model.upper() or 'none'} (pod asks for {asked})"
                for i in nodes]


@register
class GpuResource(Plugin):
    """A pod asking for a named GPU resource (``amd.com/gpu``, ``amd.com/cpx_nps4``,
    ``nvidia.com/gpu``) goes only to nodes that advertise it."""

    name = "gpu-resource"

    def filter(self, ctx):
        def row(con):
            if con.gpu_resource is None:
                return None
            return np.array([con.gpu_resource in nd.resources for nd in ctx.cluster.nodes],
                            dtype=bool)
        return _rows(ctx, row)

    def explain(self, ctx, con, nodes):
        return [f"no {con.gpu_resource} resource" for _ in nodes]


def gpu_sizes(ctx: CycleContext):
    """Per node (cached per cycle): its compute partition modes (a frozenset, empty without GPUs)
    and the least compute units and memory (MiB) of any of its logical GPUs (0 = unknown: generic
    GPUs have no CU count)."""
    got = ctx.extra.get("gpu_sizes")
    if got is None:
        nodes = ctx.cluster.nodes
        modes = np.array([frozenset(g.part.compute for g in nd.gpus) for nd in nodes] + [None],
                         dtype=object)[:-1]
        cus = np.array([min((g.part.model.cus // g.part.logical_per_gpu for g in nd.gpus), default=0)
                        for nd in nodes], dtype=np.int64)
        mem = np.array([min((g.part.memory_per_partition_mib for g in nd.gpus), default=0)
                        for nd in nodes], dtype=np.int64)
        got = ctx.extra["gpu_sizes"] = (modes, cus, mem)
    return got


@register
class GpuPartition(Plugin):
    """``kaiwo.ai/gpu-partition``, ``gpu-min-cus``, ``gpu-min-memory``: every logical GPU of the
    node must be of an allowed compute partition mode and have at least that many compute units
    and that much memory, so a fraction is of a GPU of a known size (a CPX pod never lands on an
    SPX node, nor the other way round)."""

    name = "gpu-partition"

    def filter(self, ctx):
        if all(c.gpu_partitions is None and not c.gpu_min_cus and not c.gpu_min_memory
               for c in ctx.constraints):
            return None
        modes, cus, mem = gpu_sizes(ctx)

        def row(con):
            if con.gpu_partitions is None and not con.gpu_min_cus and not con.gpu_min_memory:
                return None
            ok = np.array([bool(m) for m in modes], dtype=bool)  # GPUs at all
            if con.gpu_partitions is not None:
                ok &= np.array([m <= con.gpu_partitions for m in modes], dtype=bool)
            return ok & (cus >= con.gpu_min_cus) & (mem >= con.gpu_min_memory)
        return _rows(ctx, row)

    def explain(self, ctx, con, nodes):
        modes, cus, mem = gpu_sizes(ctx)
        out = []
        for i in nodes:
            if not modes[i]:
                out.append("no GPUs")
            elif con.gpu_partitions is not None and not modes[i] <= con.gpu_partitions:
                out.append(f"GPU partition {'+'.join(sorted(modes[i]))} (pod asks for "
                           f"{'|'.join(sorted(con.gpu_partitions))})")
            elif cus[i] < con.gpu_min_cus:
                out.append(f"{cus[i]} CUs per logical GPU < {con.gpu_min_cus} asked")
            else:
                out.append(f"{_gib(mem[i])} GiB per logical GPU < {_gib(con.gpu_min_memory)} asked")
        return out


def _gib(mib) -> str:
    return f"{int(mib) / 1024:.4g}"


class _Strategy(Plugin):
    """A strategy plugin: picks the kernel's scoring function (``strategy``) and passes it the
    extra inputs its configuration implies (:meth:`kernel_args`)."""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.name:  # abstract bases have no name
            cls.strategy = STRATEGIES[cls.name]


def random_seed_at(seed: int, row: int) -> int:
    """The seed that makes a batch starting at ``row`` of a longer one draw what that longer batch
    draws there: the random policy's draws are counter-based (splitmix64 output 2r+1 and 2r+2 for
    row r), so a replay can be split into parts without changing any choice."""
    return (int(seed) + 2 * int(row) * GOLDEN_GAMMA) % (1 << 64)


class _WorkloadStrategy(_Strategy):
    """A strategy measuring fragmentation against a target workload (``config['workload']``, a
    :class:`kaiwo_core.model.trace.Workload`; None = the batch's own request shapes)."""

    config_schema = {"workload": (object, None, "target workload (kaiwo_core.model.trace.Workload); "
                                                "None = the batch's own request shapes")}

    def on_cycle_start(self, ctx: CycleContext) -> None:
        # A GPU-model restriction of a target shape must have a row in the class mask: add the
        # constraint class if no pod of the batch has it (an unused class costs one mask row).
        wl = self.config.get("workload")
        if wl is None:
            return
        from ..model.requests import Constraint
        have = {c: i for i, c in enumerate(ctx.batch.constraints)}
        for spec, g in zip(wl.gpu_spec, wl.num_gpu):
            models = _spec_models(spec)
            if models and g > 0 and Constraint(gpu_models=models) not in have:
                have[Constraint(gpu_models=models)] = len(ctx.batch.constraints)
                ctx.batch.constraints.append(Constraint(gpu_models=models))

    def kernel_args(self, ctx: CycleContext) -> dict:
        wl = self.config.get("workload")
        if wl is None:
            return {}
        return workload_arrays(wl, ctx.batch.constraints)


def _spec_models(spec: str):
    models = frozenset(m.strip().upper() for m in (spec or "").split("|") if m.strip())
    return models or None


def workload_arrays(wl, constraints) -> dict:
    """``workload_shapes`` int64[T, 7] (cpu, kind, count, milli, gpu_mem, exclusive, cls) and
    ``workload_weights`` float64[T] for a :class:`kaiwo_core.model.trace.Workload`; a shape's GPU-model
    restriction becomes the index of that constraint in ``constraints`` (-1 = any node).

    Raises
    ------
    ValueError
        A shape names GPU models that no constraint class of the batch has.
    """
    from ..model.requests import KIND_NONE, KIND_SHARED, KIND_WHOLE, Constraint
    index = {c: i for i, c in enumerate(constraints)}
    rows = []
    for i in range(len(wl)):
        g, m = int(wl.num_gpu[i]), int(wl.gpu_milli[i])
        kinds = getattr(wl, "kind", None)
        if kinds is not None:
            kind = int(kinds[i])
        else:
            kind = KIND_NONE if g == 0 else (KIND_WHOLE if m >= 1000 else KIND_SHARED)
        cls = -1
        models = _spec_models(wl.gpu_spec[i])
        if models and g > 0:
            cls = index.get(Constraint(gpu_models=models), None)
            if cls is None:
                raise ValueError(f"workload shape {i}: GPU models {sorted(models)} have no constraint "
                                 "class in the batch")
        rows.append([int(wl.cpu[i]), kind, g, m if g else 0, 0, 0, cls])
    return {"workload_shapes": np.array(rows, dtype=np.int64).reshape(len(rows), 7),
            "workload_weights": np.ascontiguousarray(wl.weight, dtype=np.float64)}


@register
class Binpack(_Strategy):
    """Fullest node first: GPU utilisation after placement, then CPU. Keeps whole nodes free for
    large jobs. CPU-only pods stay off GPU nodes when they can."""

    name = "binpack"


@register
class Spread(_Strategy):
    """Emptiest node first: spreads load (and blast radius) across nodes."""

    name = "spread"


@register
class Frag(_WorkloadStrategy):
    """Kaiwo's fragmentation-aware policy: FGD's score, and among equal scores CPU-only pods where
    GPUs are used up, pods of one GPU or less where the least GPU milli becomes unusable (F's
    un-truncated increase plus the increase of the node's CPU/GPU imbalance against the workload's
    CPU per GPU), larger ones on used nodes (see csrc/placement.cpp). On the openb traces (seeds
    42-51, 130% arrival) above FGD's published mean on all 17 variants (default: 95.87% vs 95.39%)."""

    name = "frag"


@register
class RandomPolicy(_Strategy):
    """FGD paper baseline: a uniformly random feasible node (seeded; sharing pods a random GPU)."""

    name = "random"
    config_schema = {"seed": (int, 0, "seed of the counter-based splitmix64 draws")}

    def kernel_args(self, ctx: CycleContext) -> dict:
        return {"seed": np.array([int(self.config["seed"]) % (1 << 64)], dtype=np.uint64)}


@register
class BestFit(_Strategy):
    """FGD paper baseline: least CPU and GPU left after placement (by a 128-core, 8-GPU node)."""

    name = "best-fit"


@register
class DotProduct(_Strategy):
    """FGD paper baseline (Tetris): least dot product of the node's free and the pod's requested
    CPU and GPU."""

    name = "dot-product"


@register
class GpuPacking(_Strategy):
    """FGD paper baseline: partly used GPUs first, then partly used nodes, then idle nodes."""

    name = "gpu-packing"


@register
class GpuClustering(_Strategy):
    """FGD paper baseline: nodes already holding only pods of the same kind (sharing, or k whole
    GPUs), then fuller nodes."""

    name = "gpu-clustering"


@register
class Fgd(_WorkloadStrategy):
    """Fragmentation Gradient Descent (Weng et al., USENIX ATC'23): least growth of the target
    workload's expected unusable GPU capacity, scored as its simulator does."""

    name = "fgd"


@register
class Load(_Strategy):
    """Kaiwo's load-aware policy: the least weighted allocation after placement (spread's GPU and
    CPU utilisation) plus the node's measured load (0..1: its busiest of GPU activity, VRAM, heat,
    power, CPU, memory; :func:`kaiwo_core.monitoring.node_load.node_load`). Unmeasured nodes count
    as 0 (neutral). ``load_weight: 0`` is spread exactly."""

    name = "load"
    config_schema = {
        "alloc_weight": ((int, float), 1.0, "weight of the allocation after placement (>= 0)"),
        "load_weight": ((int, float), 1.0, "weight of the measured load (>= 0)"),
        "load": (dict, None, "measured load per node name (0..1); None or a missing node = 0"),
    }

    def configure(self, config: dict) -> None:
        from ..plugins import PluginError
        super().configure(config)
        for key in ("alloc_weight", "load_weight"):
            v = self.config[key]
            if v is None or not (0.0 <= float(v) <= 1e6):
                raise PluginError(f"plugin 'load': config {key!r} = {self.config[key]!r}: must be a finite number "
                                  "in [0, 1e6]")
        for node, v in (self.config["load"] or {}).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= float(v) <= 1e6):
                raise PluginError(f"plugin 'load': config 'load' of node {node!r} = {v!r}: must be a finite "
                                  "number in [0, 1e6]")

    def kernel_args(self, ctx: CycleContext) -> dict:
        by_name = self.config["load"] or {}
        load = np.array([float(by_name.get(n, 0.0)) for n in ctx.cluster.names], np.float64) if by_name \
            else np.zeros(ctx.cluster.n_nodes, np.float64)
        return {"node_load": load,
                "load_weights": np.array([self.config["alloc_weight"], self.config["load_weight"]], np.float64)}


def topology_domains(ctx: CycleContext, label: str) -> np.ndarray:
    """int32[N]: each node's domain, the rank of its ``label`` value among the values present
    (sorted, so independent of node order); -1 for nodes without the label."""
    col = _label_column(ctx, label) if label else np.full(ctx.cluster.n_nodes, None, dtype=object)
    has = np.array([v is not None for v in col], dtype=bool)
    out = np.full(len(col), -1, np.int32)
    if has.any():
        _, inv = np.unique(np.array([str(v) for v in col[has]], dtype=object), return_inverse=True)
        out[has] = inv.astype(np.int32)
    return out


@register
class GangTopology(Plugin):
    """Gangs keep to the nodes sharing one value of a topology label (a zone, a rack) when such a
    domain can take them whole; ``label: ""`` turns that off (gangs still go onto few nodes)."""

    name = "gang-topology"
    config_schema = {"label": (str, TOPOLOGY_LABEL, "node label whose values are the domains")}

    def kernel_args(self, ctx: CycleContext) -> dict:
        return {"node_domain": topology_domains(ctx, self.config["label"])}
