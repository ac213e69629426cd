"""Names Kaiwo knows, and warnings for the ones it does not: a misspelt field or annotation is
otherwise silently ignored (``qouta`` means a quota of 0, ``kaiwo.ai/gpu-fracton`` a pod without a
GPU). Unknown names are warned about, never rejected: newer manifests may carry fields this
version does not know yet.

``SPEC_FIELDS`` mirrors the ``spec`` schemas of the CRDs in ``deploy/crds`` (a test keeps them
equal): a field added to a CRD must be added here too.
"""
from __future__ import annotations

import difflib
import heapq

#: Field tree of each Kaiwo kind's ``spec``: key -> sub-tree, or None for a leaf or an opaque value.
_RESOURCE = {"quota": None, "overQuotaWeight": None, "limit": None}
SPEC_FIELDS = {
    "KaiwoQueue": {"displayName": None, "parentQueue": None, "priority": None,
                   # gpuModels: model names as keys (opaque here; queues.py checks each model's fields)
                   "resources": {"gpu": _RESOURCE, "cpu": _RESOURCE, "memory": _RESOURCE, "gpuModels": None},
                   "fairness": {"policy": None, "reclaimStrategy": None},
                   "preemptMinRuntime": None, "reclaimMinRuntime": None},
    "KaiwoJob": {"replicas": None, "minMembers": None, "gpusPerReplica": None,
                 "template": {"metadata": None, "spec": None}},
    "KaiwoReservation": {"queue": None, "job": None, "nodes": None, "gpus": None, "node": None, "xcds": None,
                         "devices": None, "start": None, "until": None, "ttl": None},
}
#: Unknown names listed per object at most (a hostile object may have a million keys).
MAX_LISTED = 5


def did_you_mean(name: str, known, prefix: str = "") -> str:
    """`` (did you mean X?)`` for the closest known name, or "". Names are compared without
    their common ``prefix`` (``kaiwo.ai/``), which would make every pair look alike."""
    close = difflib.get_close_matches(name[len(prefix):], [k[len(prefix):] for k in known], n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def unknown_fields(value, tree: dict, path: str) -> list[str]:
    """``path.key: unknown field (did you mean ...?)`` for every key of the map ``value`` (and of
    its known sub-maps) that ``tree`` does not name; at most :data:`MAX_LISTED`, then a count.
    Values of the wrong type are the decoder's business, not this one's."""
    out: list[str] = []
    more = 0
    stack = [(value, tree, path)]
    while stack:
        v, t, p = stack.pop()
        if not isinstance(v, dict):
            continue
        for key in sorted(k for k in t if k in v and t[k] is not None):
            stack.append((v[key], t[key], f"{p}.{key}"))
        unknown = [k for k in v if k not in t]
        # the first names in sorted order, whatever order the object lists them in
        listed = heapq.nsmallest(max(0, MAX_LISTED - len(out)), map(str, unknown))
        out += [f"{p}.{key}: unknown field{did_you_mean(key, t)}" for key in listed]
        more += len(unknown) - len(listed)
    if more:
        out.append(f"and {more} more unknown fields")
    return out


def spec_warnings(objects: dict) -> list[str]:
    """Unknown ``spec`` fields of the KaiwoQueues, KaiwoJobs and KaiwoReservations in ``objects``
    (kind -> list of objects), one warning per object: ``KaiwoQueue q: spec.qouta: unknown field
    (did you mean ...?); ignored``."""
    out = []
    for kind, tree in SPEC_FIELDS.items():
        for obj in objects.get(kind, ()):
            spec = obj.get("spec") if isinstance(obj, dict) else None
            if isinstance(spec, dict) and not spec.keys() <= tree.keys() or _nested(spec, tree):
                from .errors import object_name
                name = object_name(obj, namespaced=kind == "KaiwoJob")
                out.append(f"{kind} {name}: {'; '.join(unknown_fields(spec, tree, 'spec'))}; ignored")
    return out


def _nested(spec, tree) -> bool:
    """Whether a known sub-map of ``spec`` has a key ``tree`` does not name (the quick test that
    keeps the common case -- no unknown field -- free of string building)."""
    if not isinstance(spec, dict):
        return False
    for key, sub in tree.items():
        v = spec.get(key)
        if sub is not None and isinstance(v, dict) and (not v.keys() <= sub.keys() or _nested(v, sub)):
            return True
    return False
