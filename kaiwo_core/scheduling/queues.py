"""KaiwoQueue objects as a validated, columnar queue tree.

``KaiwoQueue`` (``kaiwo.ai/v1alpha2``, cluster-scoped)::

    spec:
      displayName: Team A
      parentQueue: org              # absent = top level
      priority: 100                 # higher = served first for over-quota resources
      resources:
        gpu:    {quota: 8, overQuotaWeight: 2, limit: 16}     # GPUs (fractions allowed)
        cpu:    {quota: "64", limit: -1}                      # Kubernetes CPU quantity
        memory: {quota: 512Gi}                                # Kubernetes memory quantity
        gpuModels:                    # per GPU model (names as kaiwo.ai/gpu-model takes them)
          MI300X: {quota: 8, overQuotaWeight: 1, limit: 16}
          MI355X: {quota: 8}
      fairness: {policy: DRF, reclaimStrategy: aggressive}  # or conservative
      preemptMinRuntime: 10m
      reclaimMinRuntime: 5m

``quota: -1`` means unlimited, an absent ``limit`` (or -1) means no limit, an absent quota is 0.

Per-GPU-model amounts (``gpuModels``) are GPUs on nodes of that model, beside the model-agnostic
``gpu`` amount, which still bounds the total. Every model some accepted queue names becomes a
resource column after gpu, cpu, memory (:attr:`QueueTree.models`); a queue that does not name a model
gets, in its column, its own ``gpu`` quota (capped by its parent's amount for that model), ``gpu``
limit and ``gpu`` weight: the column then binds nothing the ``gpu`` amount does not already bind.
(0 would let no pod charged to that model in within the deserved pass; -1 would make every queue
without a quota "below deserved" there.) A per-model quota above the queue's ``gpu`` quota, a limit
below the quota, or a quota above the parent's for that model is an error naming queue, field and
value; a model name the GPU table (:mod:`kaiwo_core.model.gpu`) does not know is a warning
(``QueueTree.warnings``), the column is kept.
Only leaf queues hold pods; pods without a ``kaiwo.ai/queue`` label go to the ``default`` queue,
which is created (top level, no quota) when no KaiwoQueue of that name exists.

A queue that cannot be accepted -- unknown parent, part of a cycle, a bad value, a quota larger than
its parent's -- is reported as a :class:`QueueError` and left out, with its descendants (each told
why); the rest of the tree keeps working. Columns are ordered parents-before-children, which the
compiled fair-share and ordering kernels rely on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model import gpu as gpu_models
from ..model.durations import parse_duration
from ..model.errors import (Collector, ObjectError, field_int, field_map, field_number, field_str, guarded, metadata,
                            object_name)
from ..model.limits import INT32_MAX, INT32_MIN, MAX_CPU_MILLI, MAX_MEMORY_MIB
from ..model.quantity import QuantityError, parse_quantity

RESOURCES = ("gpu", "cpu", "memory")
GPU, CPU, MEMORY = 0, 1, 2
DEFAULT_QUEUE = "default"
UNLIMITED = -1
RECLAIM_STRATEGIES = ("aggressive", "conservative")
FAIRNESS_POLICIES = ("DRF",)
#: Most GPU models with a column over all queues: the kernels take at most 64 resource columns.
MAX_GPU_MODELS = 61
#: Largest overQuotaWeight: weights are ratios, and the kernel divides by their sums.
MAX_WEIGHT = 1e6


class QueueError(ObjectError):
    """A KaiwoQueue that could not be accepted; it (and its subtree) is left out."""

    kind = "KaiwoQueue"


@dataclass
class QueueSpec:
    """One decoded KaiwoQueue."""

    name: str
    parent: str = ""
    display_name: str = ""
    priority: int = 0
    quota: tuple = (0, 0, 0)            #: gpu milli, cpu milli, memory MiB; -1 = unlimited
    limit: tuple = (-1, -1, -1)         #: -1 = none
    weight: tuple = (1.0, 1.0, 1.0)     #: overQuotaWeight per resource
    reclaim: str = "aggressive"
    #: per GPU model (upper case): (quota | None, limit | None, weight | None) as written
    models: dict = field(default_factory=dict)
    preempt_min_runtime: float = 0.0    #: seconds
    reclaim_min_runtime: float = 0.0    #: seconds


@dataclass
class QueueTree:
    """Accepted queues, parents before children, as arrays for the kernels."""

    specs: list                          #: QueueSpec per queue
    parent: np.ndarray                   #: int32[Q], -1 = top level
    quota: np.ndarray                    #: int64[Q, 3]
    limit: np.ndarray                    #: int64[Q, 3]
    weight: np.ndarray                   #: float64[Q, 3]
    priority: np.ndarray                 #: int32[Q]
    errors: list = field(default_factory=list)   #: QueueError for queues left out
    index: dict = field(default_factory=dict)    #: name -> row
    #: GPU models with a column (after gpu, cpu, memory), sorted; empty: the three columns only
    models: tuple = ()
    model_quota: np.ndarray | None = None  #: int64[Q, M], defaults filled in (module docstring)
    model_limit: np.ndarray | None = None  #: int64[Q, M]
    model_weight: np.ndarray | None = None  #: float64[Q, M]
    warnings: list = field(default_factory=list)  #: unknown GPU model names, as sentences

    @property
    def n_res(self) -> int:
        """Resource columns: gpu, cpu, memory, then one per GPU model."""
        return 3 + len(self.models)

    def wide(self, name: str) -> np.ndarray:
        """``quota``, ``limit`` or ``weight`` with the model columns: [Q, n_res]."""
        base = getattr(self, name)
        if not self.models:
            return base
        return np.ascontiguousarray(np.hstack([base, getattr(self, "model_" + name)]))

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def __len__(self) -> int:
        return len(self.specs)

    @property
    def is_leaf(self) -> np.ndarray:
        leaf = np.ones(len(self.specs), dtype=bool)
        leaf[self.parent[self.parent >= 0]] = False
        return leaf

    def ancestors(self, q: int) -> list[int]:
        """q and every queue above it, bottom-up."""
        out = []
        while q >= 0:
            out.append(q)
            q = int(self.parent[q])
        return out


# ---------------------------------------------------------------------------------- parsing

def human(resource: int, amount: int):
    """An amount in kernel units as users write it: GPUs and CPU cores (float), memory in MiB."""
    if amount == UNLIMITED:
        return -1
    return amount if resource == MEMORY else amount / 1000


def _duration(text, name: str, fld: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise QueueError(name, fld, text, str(e)) from None


def _amount(name: str, fld: str, raw, resource: str, allow_unlimited: bool) -> int:
    if raw is None:
        return UNLIMITED
    if allow_unlimited and (raw == -1 or raw == "-1"):
        return UNLIMITED
    try:
        if resource == "gpu":  # GPUs, fractions allowed: milli-GPU
            value = parse_quantity(raw, "cpu")  # same grammar and rounding as CPU cores -> milli
        else:
            value = parse_quantity(raw, "cpu" if resource == "cpu" else "memory")
    except QuantityError as e:
        raise QueueError(name, fld, raw, e.reason) from None
    most = MAX_MEMORY_MIB if resource == "memory" else MAX_CPU_MILLI
    if value > most:  # quotas are summed over the tree: keep the sums inside int64
        raise QueueError(name, fld, raw, f"more than the maximum ({human(RESOURCES.index(resource), most):g})")
    return value


def queue_spec(obj: dict) -> QueueSpec:
    """Decode one KaiwoQueue object. Raises QueueError naming the queue, field and value (every
    independent error: each of parent, name, priority, resources, fairness and runtimes)."""
    name = object_name(obj)
    metadata(QueueError, name, obj, "KaiwoQueue")
    spec = field_map(QueueError, name, obj.get("spec"), "spec")
    collect = Collector()
    qs = QueueSpec(name=name, parent=collect("", field_str, QueueError, name, spec.get("parentQueue"),
                                             "spec.parentQueue"),
                   display_name=collect("", field_str, QueueError, name, spec.get("displayName"),
                                        "spec.displayName") or name)
    # The ordering kernel keeps queue priorities as int32.
    qs.priority = collect(0, field_int, QueueError, name, spec.get("priority", 0), "spec.priority",
                          INT32_MIN, INT32_MAX)
    resources = collect({}, field_map, QueueError, name, spec.get("resources"), "spec.resources")
    unknown = sorted(str(k) for k in resources if k not in RESOURCES and k != "gpuModels")
    if unknown:
        collect.errors.append(QueueError(name, f"spec.resources.{unknown[0]}", None,
                                         f"unknown resource (expected {', '.join(RESOURCES)} or gpuModels)"))
    quota, limit, weight = [0, 0, 0], [UNLIMITED] * 3, [1.0] * 3
    for i, res in enumerate(RESOURCES):
        collect(None, _resource, name, res, resources.get(res), i, quota, limit, weight)
    qs.quota, qs.limit, qs.weight = tuple(quota), tuple(limit), tuple(weight)
    raw_models = collect({}, field_map, QueueError, name, resources.get("gpuModels"), "spec.resources.gpuModels")
    qs.models = collect({}, _gpu_models, name, raw_models, quota[GPU])
    fairness = collect({}, field_map, QueueError, name, spec.get("fairness"), "spec.fairness")
    policy = fairness.get("policy", "DRF")
    if policy not in FAIRNESS_POLICIES:
        collect.errors.append(QueueError(name, "spec.fairness.policy", policy, "only DRF is supported"))
    qs.reclaim = fairness.get("reclaimStrategy", "aggressive")
    if qs.reclaim not in RECLAIM_STRATEGIES:
        collect.errors.append(QueueError(name, "spec.fairness.reclaimStrategy", qs.reclaim,
                                         f"expected one of {', '.join(RECLAIM_STRATEGIES)}"))
    for key, attr in (("preemptMinRuntime", "preempt_min_runtime"),
                      ("reclaimMinRuntime", "reclaim_min_runtime")):
        if spec.get(key) is not None:
            setattr(qs, attr, collect(0.0, _duration, spec[key], name, f"spec.{key}"))
    collect.raise_all()
    return qs


def _resource(name: str, res: str, raw, i: int, quota: list, limit: list, weight: list) -> None:
    """``spec.resources.<res>`` into row ``i`` of ``quota``, ``limit`` and ``weight``."""
    base = f"spec.resources.{res}"
    r = field_map(QueueError, name, raw, base)
    quota[i] = 0 if "quota" not in r else _amount(name, f"{base}.quota", r["quota"], res, True)
    limit[i] = _amount(name, f"{base}.limit", r.get("limit"), res, True)
    # Refused here as the fair-share kernel refuses it: NaN, infinities, 0 and negatives.
    weight[i] = field_number(QueueError, name, r.get("overQuotaWeight", 1), f"{base}.overQuotaWeight",
                             0.0, MAX_WEIGHT)
    if limit[i] != UNLIMITED and quota[i] != UNLIMITED and quota[i] > limit[i]:
        raise QueueError(name, f"{base}.quota", r["quota"], f"larger than the limit {r['limit']}")


def _gpu_models(name: str, raw: dict, gpu_quota: int) -> dict:
    """``spec.resources.gpuModels`` -> {MODEL: (quota | None, limit | None, weight | None)}."""
    if len(raw) > MAX_GPU_MODELS:
        raise QueueError(name, "spec.resources.gpuModels", len(raw), f"more than {MAX_GPU_MODELS} GPU models")
    out = {}
    for key in sorted(raw, key=str):
        base = f"spec.resources.gpuModels.{key}"
        model = str(key).strip().upper()
        if not isinstance(key, str) or not model or "|" in model:
            raise QueueError(name, base, key, "not a GPU model name")
        if model in out:
            raise QueueError(name, base, key, "GPU model named twice (names are case-insensitive)")
        r = field_map(QueueError, name, raw[key], base)
        extra = sorted(str(k) for k in r if k not in ("quota", "limit", "overQuotaWeight"))
        if extra:
            raise QueueError(name, f"{base}.{extra[0]}", r[extra[0]], "unknown field (expected quota, limit, overQuotaWeight)")
        q = _amount(name, f"{base}.quota", r["quota"], "gpu", True) if "quota" in r else None
        lim = _amount(name, f"{base}.limit", r["limit"], "gpu", True) if "limit" in r else None
        w = (field_number(QueueError, name, r["overQuotaWeight"], f"{base}.overQuotaWeight", 0.0, MAX_WEIGHT)
             if "overQuotaWeight" in r else None)
        if q is not None and gpu_quota != UNLIMITED and (q == UNLIMITED or q > gpu_quota):
            raise QueueError(name, f"{base}.quota", r["quota"],
                             f"larger than the queue's gpu quota ({human(GPU, gpu_quota)})")
        if q is not None and lim not in (None, UNLIMITED) and (q == UNLIMITED or q > lim):
            raise QueueError(name, f"{base}.limit", r["limit"], f"smaller than the quota {r['quota']}")
        out[model] = (q, lim, w)
    return out


def _model_arrays(rows: list, parent: list, models: tuple):
    """[Q, M] quota, limit, weight of the model columns, defaults filled in (module docstring)."""
    q, m = len(rows), len(models)
    quota = np.zeros((q, m), np.int64)
    limit = np.full((q, m), UNLIMITED, np.int64)
    weight = np.ones((q, m), np.float64)
    for i, s in enumerate(rows):
        for j, model in enumerate(models):
            mq, ml, mw = s.models.get(model, (None, None, None))
            if mq is None:
                mq = s.quota[GPU]
                up = quota[parent[i], j] if parent[i] >= 0 else UNLIMITED
                if up != UNLIMITED and (mq == UNLIMITED or mq > up):
                    mq = up
            quota[i, j] = mq
            limit[i, j] = s.limit[GPU] if ml is None else ml
            weight[i, j] = s.weight[GPU] if mw is None else mw
    return quota, limit, weight


def build_tree(objs: list[dict]) -> QueueTree:
    """Validate KaiwoQueue objects into a tree; bad queues (and their subtrees) are reported."""
    errors: list[QueueError] = []
    specs: dict[str, QueueSpec] = {}
    for obj in objs:
        qs = guarded(QueueError, obj, queue_spec)
        if isinstance(qs, QueueError):
            errors.append(qs)
            continue
        if qs.name in specs:
            errors.append(QueueError(qs.name, "metadata.name", qs.name, "duplicate KaiwoQueue name"))
            continue
        specs[qs.name] = qs
    if DEFAULT_QUEUE not in specs:
        specs[DEFAULT_QUEUE] = QueueSpec(DEFAULT_QUEUE, display_name="default (pods without a queue)")
    rejected = {e.name for e in errors}
    # Parents before children: depth-first from the top-level queues; whatever is not reached is
    # either under an unknown/rejected parent or on a cycle.
    children: dict[str, list[str]] = {}
    for qs in specs.values():
        children.setdefault(qs.parent, []).append(qs.name)
    order: list[str] = []
    stack = sorted(children.get("", []), reverse=True)
    while stack:
        n = stack.pop()
        order.append(n)
        stack.extend(sorted(children.get(n, []), reverse=True))
    reached = set(order)
    for name in sorted(set(specs) - reached):
        qs = specs[name]
        if qs.parent not in specs:
            why = ("parent queue was rejected" if qs.parent in rejected
                   else "no KaiwoQueue of that name")
        else:
            # Walk up: either a cycle through this queue, or under one.
            seen, p = [name], qs.parent
            while p in specs and p not in reached and p not in seen:
                seen.append(p)
                p = specs[p].parent
            why = (f"cycle: {' -> '.join(seen + [p])}" if p in seen
                   else "parent queue was rejected")
        errors.append(QueueError(name, "spec.parentQueue", qs.parent, why))
    # Quotas: a child may not be promised more than its parent.
    ok: list[str] = []
    dropped: set[str] = set()
    for name in order:
        qs = specs[name]
        if qs.parent in dropped:
            dropped.add(name)
            errors.append(QueueError(name, "spec.parentQueue", qs.parent, "parent queue was rejected"))
            continue
        if qs.parent:
            pq = specs[qs.parent]
            bad = [i for i in range(3) if pq.quota[i] != UNLIMITED and
                   (qs.quota[i] == UNLIMITED or qs.quota[i] > pq.quota[i])]
            if bad:
                res = RESOURCES[bad[0]]
                dropped.add(name)
                errors.append(QueueError(name, f"spec.resources.{res}.quota",
                                         human(bad[0], qs.quota[bad[0]]),
                                         f"larger than parent {qs.parent}'s quota "
                                         f"({human(bad[0], pq.quota[bad[0]])})"))
                continue
            # A per-model quota against the parent's amount for that model: the parent's own, else
            # its gpu quota (the default of its column; an ancestor's smaller amount is caught there).
            over = []
            for m, (mq, _, _) in sorted(qs.models.items()):
                up = pq.models.get(m, (None,))[0]
                up = pq.quota[GPU] if up is None else up
                if mq is not None and up != UNLIMITED and (mq == UNLIMITED or mq > up):
                    over.append((m, mq, up))
            if over:
                m, mq, up = over[0]
                dropped.add(name)
                errors.append(QueueError(name, f"spec.resources.gpuModels.{m}.quota", human(GPU, mq),
                                         f"larger than parent {qs.parent}'s {m} quota ({human(GPU, up)})"))
                continue
        ok.append(name)
    index = {n: i for i, n in enumerate(ok)}
    rows = [specs[n] for n in ok]
    q = len(rows)
    models = tuple(sorted({m for s in rows for m in s.models}))
    if len(models) > MAX_GPU_MODELS:  # the kernels take at most 64 resource columns
        errors += [QueueError(s.name, "spec.resources.gpuModels", len(models),
                              f"the queues name {len(models)} GPU models together; at most {MAX_GPU_MODELS}")
                   for s in rows if s.models]
        models = ()
        for s in rows:
            s.models = {}
    warnings = [f"KaiwoQueue {s.name}: spec.resources.gpuModels.{m}: unknown GPU model (known: "
                f"{', '.join(sorted(gpu_models.MODELS))}); its column counts GPUs on nodes reporting that model"
                for s in rows for m in sorted(s.models) if m not in gpu_models.MODELS]
    parent_rows = [index[s.parent] if s.parent else -1 for s in rows]
    mq, ml, mw = _model_arrays(rows, parent_rows, models)
    return QueueTree(models=models, model_quota=mq, model_limit=ml, model_weight=mw, warnings=warnings,
        specs=rows,
        parent=np.array([index[s.parent] if s.parent else -1 for s in rows], np.int32),
        quota=np.array([s.quota for s in rows], np.int64).reshape(q, 3),
        limit=np.array([s.limit for s in rows], np.int64).reshape(q, 3),
        weight=np.array([s.weight for s in rows], np.float64).reshape(q, 3),
        priority=np.array([s.priority for s in rows], np.int32),
        errors=errors, index=index,
    )
