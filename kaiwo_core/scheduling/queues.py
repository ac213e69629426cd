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
      fairness: {policy: DRF, reclaimStrategy: aggressive}  # or conservative
      preemptMinRuntime: 10m
      reclaimMinRuntime: 5m

``quota: -1`` means unlimited, an absent ``limit`` (or -1) means no limit, an absent quota is 0.
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
    unknown = sorted(str(k) for k in resources if k not in RESOURCES)
    if unknown:
        collect.errors.append(QueueError(name, f"spec.resources.{unknown[0]}", None,
                                         f"unknown resource (expected {', '.join(RESOURCES)})"))
    quota, limit, weight = [0, 0, 0], [UNLIMITED] * 3, [1.0] * 3
    for i, res in enumerate(RESOURCES):
        collect(None, _resource, name, res, resources.get(res), i, quota, limit, weight)
    qs.quota, qs.limit, qs.weight = tuple(quota), tuple(limit), tuple(weight)
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
        ok.append(name)
    index = {n: i for i, n in enumerate(ok)}
    rows = [specs[n] for n in ok]
    q = len(rows)
    return QueueTree(
        specs=rows,
        parent=np.array([index[s.parent] if s.parent else -1 for s in rows], np.int32),
        quota=np.array([s.quota for s in rows], np.int64).reshape(q, 3),
        limit=np.array([s.limit for s in rows], np.int64).reshape(q, 3),
        weight=np.array([s.weight for s in rows], np.float64).reshape(q, 3),
        priority=np.array([s.priority for s in rows], np.int32),
        errors=errors, index=index,
    )
