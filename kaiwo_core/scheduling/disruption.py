"""PodDisruptionBudgets (``policy/v1``): which running pods they cover and how many may go now.

A planner that moves pods must leave every budget intact, as the Eviction API would. Each PDB is
decoded inside :func:`~kaiwo_core.model.errors.guarded`; a bad one is left out with its field and
value (and then protects nothing -- the error says so, so nobody mistakes it for protection).

Disruptions allowed: ``status.disruptionsAllowed`` when the object carries it (the disruption
controller's own count, which the Eviction API enforces); otherwise computed as that controller
does, with every covered running pod counted healthy: ``minAvailable`` -> covered - min,
``maxUnavailable`` -> max; a percentage is of the covered pods, rounded up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..model.errors import ObjectError, field_int, field_list, field_map, field_str, guarded, metadata, show
from ..model.limits import MAX_REPLICAS


class PDBError(ObjectError):
    kind = "PodDisruptionBudget"


@dataclass(frozen=True)
class Budget:
    name: str                 #: namespace/name
    namespace: str
    match_labels: tuple       #: ((key, value), ...)
    expressions: tuple        #: ((key, operator, frozenset(values)), ...)
    selects: bool             #: False: a null selector, which selects no pod
    min_available: tuple | None = None   #: (number, is_percent)
    max_unavailable: tuple | None = None
    allowed_status: int | None = None    #: status.disruptionsAllowed

    def covers(self, namespace: str, labels: dict) -> bool:
        if not self.selects or namespace != self.namespace:
            return False
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        for key, op, values in self.expressions:
            has = key in labels
            if op == "In" and not (has and labels[key] in values):
                return False
            if op == "NotIn" and has and labels[key] in values:
                return False
            if op == "Exists" and not has:
                return False
            if op == "DoesNotExist" and has:
                return False
        return True

    def allowed(self, covered: int) -> int:
        if self.allowed_status is not None:
            return self.allowed_status

        def scaled(v):
            return math.ceil(v[0] * covered / 100) if v[1] else v[0]
        if self.min_available is not None:
            return max(0, covered - scaled(self.min_available))
        return max(0, scaled(self.max_unavailable))


_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _int_or_percent(name: str, value, path: str):
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = int(value[:-1])
        except ValueError:
            raise PDBError(name, path, value, "must be an integer or a percentage like '50%'") from None
        if not 0 <= pct <= 100:
            raise PDBError(name, path, value, "a percentage must be between 0% and 100%")
        return pct, True
    return field_int(PDBError, name, value, path, 0, MAX_REPLICAS), False


def decode_pdb(obj) -> Budget:
    if not isinstance(obj, dict):
        raise PDBError("?", "(object)", obj, "must be a map")
    meta = metadata(PDBError, "?", obj, "PodDisruptionBudget")
    ns = field_str(PDBError, meta["name"], meta.get("namespace"), "metadata.namespace", "default")
    name = f"{ns}/{meta['name']}"
    spec = field_map(PDBError, name, obj.get("spec"), "spec")
    sel = spec.get("selector")
    labels, exprs = (), ()
    if sel is not None:
        sel = field_map(PDBError, name, sel, "spec.selector")
        ml = field_map(PDBError, name, sel.get("matchLabels"), "spec.selector.matchLabels")
        for k, v in ml.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise PDBError(name, "spec.selector.matchLabels", {k: v}, "keys and values must be strings")
        labels = tuple(sorted(ml.items()))
        out = []
        for i, e in enumerate(field_list(PDBError, name, sel.get("matchExpressions"), "spec.selector.matchExpressions")):
            path = f"spec.selector.matchExpressions[{i}]"
            e = field_map(PDBError, name, e, path)
            key = field_str(PDBError, name, e.get("key"), path + ".key")
            op = field_str(PDBError, name, e.get("operator"), path + ".operator")
            if op not in _OPERATORS:
                raise PDBError(name, path + ".operator", op, f"must be one of {', '.join(_OPERATORS)}")
            vals = field_list(PDBError, name, e.get("values"), path + ".values")
            if any(not isinstance(v, str) for v in vals):
                raise PDBError(name, path + ".values", vals, "must be a list of strings")
            if (op in ("In", "NotIn")) != bool(vals):
                raise PDBError(name, path + ".values", vals,
                               "In and NotIn need values; Exists and DoesNotExist take none")
            out.append((key, op, frozenset(vals)))
        exprs = tuple(out)
    has_min, has_max = spec.get("minAvailable") is not None, spec.get("maxUnavailable") is not None
    status = field_map(PDBError, name, obj.get("status"), "status")
    allowed = status.get("disruptionsAllowed")
    if allowed is not None:
        allowed = field_int(PDBError, name, allowed, "status.disruptionsAllowed", 0, MAX_REPLICAS)
    if has_min and has_max:
        raise PDBError(name, "spec", {"minAvailable": spec["minAvailable"], "maxUnavailable": spec["maxUnavailable"]},
                       "minAvailable and maxUnavailable cannot both be set")
    if not has_min and not has_max and allowed is None:
        raise PDBError(name, "spec", spec, "needs minAvailable or maxUnavailable (or status.disruptionsAllowed)")
    return Budget(name, ns, labels, exprs, sel is not None,
                  _int_or_percent(name, spec["minAvailable"], "spec.minAvailable") if has_min else None,
                  _int_or_percent(name, spec["maxUnavailable"], "spec.maxUnavailable") if has_max else None,
                  allowed)


def read_budgets(objs: list) -> tuple[list[Budget], list[PDBError]]:
    """Decode PodDisruptionBudget objects; bad ones are left out with their error."""
    budgets, errors = [], []
    for o in objs:
        b = guarded(PDBError, o, decode_pdb, namespaced=True)
        (errors if isinstance(b, ObjectError) else budgets).append(b)
    budgets.sort(key=lambda b: b.name)  # never by list order
    return budgets, errors


def coverage(budgets: list[Budget], pods: list) -> tuple[list[list[int]], list[int]]:
    """Budgets covering each pod (PodRequest: ``name`` is namespace/name, ``labels``) and the
    disruptions each budget allows with those pods running."""
    cover = [[i for i, b in enumerate(budgets) if b.covers(p.name.split("/", 1)[0], p.labels)] for p in pods]
    counts = [0] * len(budgets)
    for c in cover:
        for i in c:
            counts[i] += 1
    return cover, [b.allowed(n) for b, n in zip(budgets, counts)]


__all__ = ["Budget", "PDBError", "coverage", "decode_pdb", "read_budgets", "show"]
