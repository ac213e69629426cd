"""Pod requests as columnar arrays, decoded from Pod objects or given as arrays.

A :class:`PodBatch` holds one row per pod: CPU/memory, what it wants of GPUs (kind, device count,
compute share in milli-GPU, GPU memory, exclusivity), the index of its placement constraints, and
ordering keys. Decoding a Pod never raises for the batch: a pod with a malformed or impossible value
becomes a :class:`PodError` (object, field, value, reason) in ``rejected`` and the rest go on.

Annotations (the README lists them with examples, "Scheduling pods with Kaiwo"):

``kaiwo.ai/gpu-fraction``             share of one logical GPU, 0.1..1.0, milli precision
``kaiwo.ai/gpu-fraction-num-devices`` that share on each of N devices
``kaiwo.ai/gpu-memory``               MiB of GPU memory per device (alone or with a fraction)
``kaiwo.ai/gpu-sharing``              "false": a fractional pod that must have its devices alone
``kaiwo.ai/gpu-isolation``            "time-slicing" (default) or "xcd" (whole XCDs, CU-masked)
``kaiwo.ai/gpu-model``                allowed GPU models, ``|``-separated (e.g. ``MI300X|MI325X``)
``kaiwo.ai/gpu-partition``            allowed compute partition modes, ``|``-separated (``cpx``,
                                      ``spx|dpx``): what "one logical GPU" (and so a fraction) is
``kaiwo.ai/gpu-min-cus``              least compute units of each logical GPU used (e.g. ``38``)
``kaiwo.ai/gpu-min-memory``           least memory of each logical GPU used (``24Gi``; plain = MiB)

A pod that only names ``kaiwo.ai/gpu-memory`` reserves that memory and time-shares compute without
a compute reservation (ROCm runs processes concurrently on a GPU natively).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from .durations import parse_duration
from .errors import (ObjectError, combined, field_int, field_list, field_map, field_str, guarded, metadata,
                     object_name, require_name)
from .limits import INT32_MAX, INT32_MIN, MAX_CPU_MILLI, MAX_DEVICES, MAX_GPU_CUS, MAX_MEMORY_MIB
from .quantity import QuantityError, parse_bool, parse_fraction, parse_mib, parse_positive_int, parse_quantity

KIND_NONE, KIND_WHOLE, KIND_SHARED, KIND_XCD = 0, 1, 2, 3

ANN = "kaiwo.ai/"
ANN_FRACTION = ANN + "gpu-fraction"
ANN_NUM_DEVICES = ANN + "gpu-fraction-num-devices"
ANN_MEMORY = ANN + "gpu-memory"
ANN_SHARING = ANN + "gpu-sharing"
ANN_ISOLATION = ANN + "gpu-isolation"
ANN_MODEL = ANN + "gpu-model"
ANN_PARTITION = ANN + "gpu-partition"
ANN_MIN_CUS = ANN + "gpu-min-cus"
ANN_MIN_MEMORY = ANN + "gpu-min-memory"
ANN_ASSIGNMENT = ANN + "gpu-assignment"
ANN_RUNTIME = ANN + "expected-runtime"
ANN_PREEMPTIBLE = ANN + "preemptible"
ANN_GANG = ANN + "gang"
ANN_GANG_MIN = ANN + "gang-min-members"
LABEL_QUEUE = ANN + "queue"
#: Every ``kaiwo.ai/`` annotation a pod may carry; any other is warned about (with the closest
#: of these), since it would be silently ignored. A new annotation must be added here.
POD_ANNOTATIONS = frozenset({ANN_FRACTION, ANN_NUM_DEVICES, ANN_MEMORY, ANN_SHARING, ANN_ISOLATION, ANN_MODEL,
                             ANN_PARTITION, ANN_MIN_CUS, ANN_MIN_MEMORY, ANN_ASSIGNMENT, ANN_RUNTIME,
                             ANN_PREEMPTIBLE, ANN_GANG, ANN_GANG_MIN})
ISOLATION_MODES = ("time-slicing", "xcd")
SCHEDULER_NAME = "kaiwo"
FINISHED_PHASES = ("Succeeded", "Failed")


class PodError(ObjectError):
    """A Pod with a value Kaiwo cannot accept; the pod is reported in ``rejected``."""

    kind = "Pod"


@dataclass(frozen=True)
class Constraint:
    """Where a pod may go, apart from resources. Pods with equal constraints share one row of the
    class mask, so filters run once per distinct constraint, not once per pod."""

    node_selector: tuple = ()        #: sorted (key, value) pairs
    tolerations: tuple = ()          #: (key, operator, value, effect)
    affinity: tuple = ()             #: required node affinity: tuple of terms, each of expressions
    gpu_models: frozenset | None = None   #: allowed models (upper case), None = any
    gpu_resource: str | None = None  #: the GPU resource name the pod asks for (e.g. amd.com/gpu)
    reservations: frozenset = frozenset()  #: reservations whose held nodes the pod may use
    #: the size of one logical GPU: allowed compute partition modes (upper case, None = any), least
    #: compute units and least memory (MiB) per logical GPU (0 = any)
    gpu_partitions: frozenset | None = None
    gpu_min_cus: int = 0
    gpu_min_memory: int = 0

    def __hash__(self):  # cached: interning thousands of pods hashes each constraint once
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.node_selector, self.tolerations, self.affinity, self.gpu_models,
                      self.gpu_resource, self.reservations, self.gpu_partitions, self.gpu_min_cus,
                      self.gpu_min_memory))
            object.__setattr__(self, "_hash", h)
        return h


NO_CONSTRAINT = Constraint()


@dataclass
class PodRequest:
    """One decoded pod (scalar form; batches are built from many of these)."""

    name: str                        #: "namespace/name"
    uid: str = ""
    cpu: int = 0
    memory: int = 0
    kind: int = KIND_NONE
    count: int = 0
    milli: int = 0
    gpu_memory: int = 0
    exclusive: bool = False
    constraint: Constraint = NO_CONSTRAINT
    priority: int = 0
    created: float = 0.0
    queue: str = ""
    node: str = ""                   #: spec.nodeName for running pods
    #: status.nominatedNodeName: a preemptor whose victims were evicted for it in an earlier cycle
    nominated_node: str = ""
    started: float = 0.0             #: status.startTime (epoch seconds) of running pods, 0 unknown
    expected_runtime: float | None = None  #: kaiwo.ai/expected-runtime in seconds
    preemptible: bool = True         #: False with kaiwo.ai/preemptible: "false"
    assignment: list | None = None   #: decoded kaiwo.ai/gpu-assignment of a running pod
    labels: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)


@dataclass
class PodBatch:
    """Columnar pod requests; row order is the order placement tries them."""

    names: list
    cpu: np.ndarray         #: int64 milli-cores
    mem: np.ndarray         #: int64 MiB
    kind: np.ndarray        #: int8 KIND_*
    count: np.ndarray       #: int32 devices
    milli: np.ndarray       #: int32 compute per device
    gpu_mem: np.ndarray     #: int64 MiB per device (0 = the fraction's share)
    exclusive: np.ndarray   #: uint8
    cls: np.ndarray         #: int32 index into ``constraints``
    priority: np.ndarray    #: int64
    created: np.ndarray     #: float64 epoch seconds
    constraints: list = field(default_factory=lambda: [NO_CONSTRAINT])
    pods: list | None = None  #: the PodRequest rows, when built from objects
    gang: np.ndarray | None = None       #: int32 gang id (-1 none); members must be consecutive
    gang_need: np.ndarray | None = None  #: int32 members of the gang that must be placed
    gang_names: list = field(default_factory=list)  #: gang id -> "namespace/name"

    def __len__(self) -> int:
        return len(self.names)

    def take(self, idx) -> "PodBatch":
        """Rows ``idx`` (an index array), in that order."""
        idx = np.asarray(idx, dtype=np.int64)
        arrays = {k: getattr(self, k)[idx] for k in _ARRAY_FIELDS}
        gangs = {} if self.gang is None else {"gang": self.gang[idx], "gang_need": self.gang_need[idx]}
        rows = idx.tolist()  # Python ints: indexing lists with numpy scalars is several times slower
        return PodBatch(names=[self.names[i] for i in rows], constraints=self.constraints,
                        pods=None if self.pods is None else [self.pods[i] for i in rows],
                        gang_names=self.gang_names, **arrays, **gangs)

    def subset(self, idx) -> "PodBatch":
        """Rows ``idx`` with only the constraint classes they use, numbered in order of first use
        -- the batch :func:`batch_from_requests` would build from those rows' pods."""
        out = self.take(idx)
        out.cls, used = first_use(out.cls)
        out.constraints = [self.constraints[c] for c in used] or [NO_CONSTRAINT]
        return out

    def join(self, other: "PodBatch") -> "PodBatch":
        """Rows of this batch, then those of ``other`` (both without gangs); constraints merged."""
        constraints, where = merged_names(self.constraints, other.constraints)
        arrays = {k: np.concatenate([getattr(self, k), getattr(other, k)]) for k in _ARRAY_FIELDS}
        arrays["cls"] = np.concatenate([self.cls, where[other.cls]])
        return PodBatch(names=self.names + other.names, constraints=constraints,
                        pods=None if self.pods is None or other.pods is None else self.pods + other.pods,
                        **arrays)

    def kernel_view(self) -> dict:
        """The per-pod arrays ``_core.place_batch`` takes (class mask added by the caller)."""
        view = {"cpu": self.cpu, "mem": self.mem, "kind": self.kind, "count": self.count,
                "milli": self.milli, "gpu_mem": self.gpu_mem, "exclusive": self.exclusive,
                "cls": self.cls}
        if self.gang is not None:
            view.update(gang=self.gang, gang_need=self.gang_need)
        return view


def merged_names(a: list, b: list) -> tuple[list, np.ndarray]:
    """Interned names ``a`` followed by those of ``b`` that are new, and the code each name of
    ``b`` gets."""
    index = {n: i for i, n in enumerate(a)}
    where = np.array([index.setdefault(n, len(index)) for n in b], dtype=np.int32)
    return list(index), where


def first_use(codes: np.ndarray) -> tuple[np.ndarray, list]:
    """Codes renumbered 0, 1, ... in order of first use (as interning the rows in order would
    number them), and the old code of each new one."""
    if not len(codes):
        return np.zeros(0, dtype=np.int32), []
    used, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")
    renumber = np.empty(len(used), dtype=np.int32)
    renumber[by_first] = np.arange(len(used), dtype=np.int32)
    return renumber[inverse.reshape(-1)], used[by_first].tolist()


_ARRAY_FIELDS = ("cpu", "mem", "kind", "count", "milli", "gpu_mem", "exclusive", "cls",
                 "priority", "created")


def batch_from_arrays(cpu, memory, gpus=None, fraction=None, gpu_memory=None, num_devices=None,
                      isolation=None, exclusive=None, names=None, priority=None, created=None,
                      cls=None, constraints=None) -> PodBatch:
    """Build a batch straight from arrays, with no Pod objects.

    Parameters
    ----------
    cpu, memory : array-like of int
        Requests in milli-cores and MiB.
    gpus : array-like of int, optional
        Whole logical GPUs per pod (0 = none).
    fraction : array-like of int, optional
        Milli-GPU per device for shared pods (0 = not fractional); takes precedence over ``gpus``.
    gpu_memory : array-like of int, optional
        GPU MiB per device (alone = memory-only sharing pod).
    num_devices : array-like of int, optional
        Devices for fractional pods (default 1).
    isolation : array-like of bool, optional
        True = XCD isolation for fractional pods.
    exclusive : array-like of bool, optional
        True = fractional pod that must not share its devices.
    cls, constraints : optional
        Constraint index per pod and the list of :class:`Constraint` it indexes.

    Values are checked (lengths, integers, non-negative, fractions within 0..1000 milli, counts
    within int32, ``cls`` within ``constraints``) and a ValueError or TypeError names the argument
    and the first offending value.
    """
    from .arrays import column
    if not hasattr(cpu, "__len__") or isinstance(cpu, (str, bytes)):
        raise TypeError(f"cpu: a sequence of CPU requests (milli-cores) is needed, got {cpu!r}")
    n = len(cpu)

    def col(label, a, dtype, default=0, lo=0, hi=None):
        return column(label, a, n, dtype, default=default, lo=lo, hi=hi, what="pods")

    cpu_a, mem_a = col("cpu", cpu, np.int64), col("memory", memory, np.int64)
    whole = col("gpus", gpus, np.int32, hi=INT32_MAX)
    frac = col("fraction", fraction, np.int32, hi=1000)
    gmem, ndev = col("gpu_memory", gpu_memory, np.int64), col("num_devices", num_devices, np.int32, 1, lo=1)
    xcd, excl = col("isolation", isolation, np.bool_, False), col("exclusive", exclusive, np.uint8, hi=1)
    if names is not None and len(names) != n:
        raise ValueError(f"names: {len(names)} values for {n} pods")
    constraints = list(constraints) if constraints is not None else [NO_CONSTRAINT]
    cls_a = col("cls", cls, np.int32, hi=len(constraints) - 1)
    priority_a = col("priority", priority, np.int64, lo=None)
    created_a = col("created", created, np.float64, 0.0)
    shared = (frac > 0) | (gmem > 0)
    kind = np.where(shared, np.where(xcd & (frac > 0), KIND_XCD, KIND_SHARED),
                    np.where(whole > 0, KIND_WHOLE, KIND_NONE)).astype(np.int8)
    count = np.where(shared, ndev, whole).astype(np.int32)
    milli = np.where(shared, frac, np.where(whole > 0, 1000, 0)).astype(np.int32)
    return PodBatch(
        names=list(names) if names is not None else [f"pod-{i}" for i in range(n)],
        cpu=cpu_a, mem=mem_a, kind=kind, count=count, milli=milli,
        gpu_mem=np.where(shared, gmem, 0).astype(np.int64),
        exclusive=(excl.astype(bool) & shared).astype(np.uint8),
        cls=cls_a, priority=priority_a, created=created_a, constraints=constraints,
    )


def batch_from_requests(reqs: list[PodRequest], constraints: bool = True) -> PodBatch:
    """Columnar batch from decoded pods; constraints are interned into classes (skip that with
    ``constraints=False`` when only the requests matter, e.g. for running pods)."""
    intern: dict = {}
    if constraints:
        cls = np.fromiter((intern.setdefault(r.constraint, len(intern)) for r in reqs), np.int32,
                          count=len(reqs))
    else:
        cls = np.zeros(len(reqs), dtype=np.int32)

    def col(attr, dtype):
        return np.fromiter((getattr(r, attr) for r in reqs), dtype, count=len(reqs))

    return PodBatch(
        names=[r.name for r in reqs], cpu=col("cpu", np.int64), mem=col("memory", np.int64),
        kind=col("kind", np.int8), count=col("count", np.int32), milli=col("milli", np.int32),
        gpu_mem=col("gpu_memory", np.int64), exclusive=col("exclusive", np.uint8), cls=cls,
        priority=col("priority", np.int64), created=col("created", np.float64),
        constraints=list(intern) or [NO_CONSTRAINT], pods=list(reqs),
    )


# --------------------------------------------------------------------------- from Pod objects

def pod_name(obj: dict) -> str:
    """``namespace/name`` of a Pod object, read without trusting its shape."""
    return object_name(obj, namespaced=True)


def pod_phase(obj: dict) -> str:
    """``status.phase`` of a Pod object, "" when absent or unreadable."""
    status = obj.get("status") if isinstance(obj, dict) else None
    phase = status.get("phase") if isinstance(status, dict) else None
    return phase if isinstance(phase, str) else ""


def pod_request(obj: dict, priority_classes: dict | None = None) -> PodRequest:
    """Decode one Pod object. Raises PodError naming the pod, the field and the value."""
    return _decode(obj, priority_classes or {}, None)


def bound_pod_request(obj: dict, priority_classes: dict | None = None) -> tuple[PodRequest, list[str]]:
    """Decode a pod that is bound to a node and not finished, never failing: it holds its node's
    resources whatever we think of its fields, and dropping it would give them away again.

    Fields that fail to decode fall back (priority to the default, and the pod is then never
    preempted, since its real priority is unknown; annotations to unset, a bad
    ``kaiwo.ai/gpu-assignment`` to none -- the devices are then picked as for any bound pod without
    one; an unreadable GPU request to the devices the assignment names) and each is reported in
    the returned warnings, naming the pod, the field and the value.
    """
    problems: list[str] = []
    return _decode(obj, priority_classes or {}, problems), problems


def decode_pod(obj: dict, priority_classes: dict | None = None) -> tuple[PodRequest | PodError, list[str]]:
    """A pod as the snapshot sorts it: bound and unfinished pods leniently
    (:func:`bound_pod_request`), others strictly (a PodError is returned, not raised).

    Decoded inside :func:`kaiwo_core.model.errors.guarded`: whatever is wrong with the object, the
    result is this pod's PodError (``gang`` set to the gang it names, if any, so that the rest of
    its gang can wait for it), never an exception."""
    out = guarded(PodError, obj, _decode_pod, priority_classes or {}, namespaced=True)
    if isinstance(out, PodError):
        out.gang = _raw_gang(obj)
        return out, []
    return out


def _decode_pod(obj, classes: dict) -> tuple[PodRequest, list[str]]:
    if not isinstance(obj, dict):
        raise PodError("<unnamed>", "(object)", obj, "a Pod must be a map")
    spec = obj.get("spec")
    bound = spec.get("nodeName") if isinstance(spec, dict) else None
    if isinstance(bound, str) and bound and pod_phase(obj) not in FINISHED_PHASES:
        problems: list[str] = []
        req = _decode(obj, classes, problems)
    else:
        req, problems = _decode(obj, classes, None), []
    return req, problems + annotation_warnings(req.name, req.annotations)


def annotation_warnings(name: str, ann: dict) -> list[str]:
    """``kaiwo.ai/`` annotations of a pod that Kaiwo does not know (a typo would be silently
    ignored: ``kaiwo.ai/gpu-fracton`` runs the pod without a GPU), with the closest known name;
    one warning per pod, at most a few names listed. Labels put among the annotations are named."""
    unknown = [k for k in ann if isinstance(k, str) and k.startswith(ANN) and k not in POD_ANNOTATIONS]
    if not unknown:
        return []
    from .fields import MAX_LISTED, did_you_mean
    unknown.sort()
    parts = []
    for key in unknown[:MAX_LISTED]:
        hint = (f" ({key} is a label, not an annotation)" if key == LABEL_QUEUE
                else did_you_mean(key, sorted(POD_ANNOTATIONS), ANN))
        parts.append(f"unknown annotation {key}{hint}")
    more = f" (and {len(unknown) - MAX_LISTED} more)" if len(unknown) > MAX_LISTED else ""
    return [f"pod {name}: {', '.join(parts)}{more}; ignored"]


def _raw_gang(obj) -> str | None:
    """``namespace/gang`` a Pod object names in ``kaiwo.ai/gang`` (read defensively), or None."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    gang = ann.get(ANN_GANG) if isinstance(ann, dict) else None
    return f"{pod_name(obj).split('/', 1)[0]}/{gang}" if isinstance(gang, str) and gang else None


def _decode(obj: dict, classes: dict, lenient: list | None) -> PodRequest:
    """:func:`pod_request`; with ``lenient`` (a list), a step that fails keeps its default and
    its error is appended to the list instead of raised."""
    name = pod_name(obj)
    errors: list[PodError] = []  # strict: every independent error, raised together at the end

    def step(default, fn, *args):
        try:
            return fn(*args)
        except PodError as e:
            if lenient is None:
                errors.append(e)
            else:
                lenient.append(f"running pod {name}: {e.message()}; ignored, the pod is charged to its "
                               "node anyway")
            return default

    meta = step({}, field_map, PodError, name, obj.get("metadata"), "metadata")
    step(None, _identity, name, meta)
    try:
        spec = field_map(PodError, name, obj.get("spec"), "spec")  # a bound pod's spec is a map
    except PodError as e:  # nothing more can be read
        raise combined([*errors, e]) from None
    status = step({}, field_map, PodError, name, obj.get("status"), "status")
    ann = step({}, field_map, PodError, name, meta.get("annotations"), "metadata.annotations")
    labels = step({}, field_map, PodError, name, meta.get("labels"), "metadata.labels")
    if step(False, _gang_name, name, ann) is False:
        ann = {k: v for k, v in ann.items() if k != ANN_GANG}  # unreadable: in no gang
    node = step("", field_str, PodError, name, spec.get("nodeName"), "spec.nodeName")
    step(None, field_list, PodError, name, spec.get("schedulingGates"), "spec.schedulingGates")
    cpu, mem, gpu_res = step((0, 0, None), _resources, name, spec)
    req = PodRequest(name=name, uid=step("", field_str, PodError, name, meta.get("uid"), "metadata.uid"),
                     cpu=cpu, memory=mem,
                     queue=step("", field_str, PodError, name, labels.get(LABEL_QUEUE),
                                f"metadata.labels.{LABEL_QUEUE}"),
                     node=node,
                     nominated_node=step("", field_str, PodError, name, status.get("nominatedNodeName"),
                                         "status.nominatedNodeName"),
                     labels=labels, annotations=ann)
    req.priority = step(None, _priority, name, spec, classes)
    if req.priority is None:
        # Its real priority is unknown: running on a guess is fine, being preempted on one is not.
        req.priority, req.preemptible = classes.get(None, 0), False
    req.created = step(0.0, _timestamp, name, meta.get("creationTimestamp"))
    req.started = step(0.0, _timestamp, name, status.get("startTime"), "status.startTime")
    if ANN_RUNTIME in ann:
        req.expected_runtime = step(None, _runtime, name, ann[ANN_RUNTIME])
    if ANN_PREEMPTIBLE in ann and req.preemptible:
        req.preemptible = step(True, _field, name, f"metadata.annotations.{ANN_PREEMPTIBLE}",
                               ann[ANN_PREEMPTIBLE], parse_bool, ANN_PREEMPTIBLE)
    if req.node and ANN_ASSIGNMENT in ann:
        req.assignment = step(None, parse_assignment, name, ann[ANN_ASSIGNMENT])
    if step(False, _gpu_request, req, ann, gpu_res) is False and lenient is not None:
        _kind_from_assignment(req, gpu_res)
    req.constraint = step(_plain(gpu_res[0] if gpu_res else None), _constraint, name, spec, ann,
                          gpu_res[0] if gpu_res else None, req.kind != KIND_NONE)
    if errors:
        raise combined(errors)
    return req


def _identity(name: str, meta: dict) -> None:
    """metadata.name must be a non-empty string, metadata.namespace a string if given."""
    require_name(PodError, name, meta, "Pod")
    field_str(PodError, name, meta.get("namespace"), "metadata.namespace")


def _gang_name(name: str, ann: dict):
    """Checks ``kaiwo.ai/gang`` (a non-empty string when present)."""
    gang = ann.get(ANN_GANG)
    if gang is not None and (not isinstance(gang, str) or not gang):
        raise PodError(name, f"metadata.annotations.{ANN_GANG}", gang, "must be a gang name (a string)")
    return True


def _runtime(name: str, raw) -> float:
    try:
        return parse_duration(raw)
    except ValueError as e:
        raise PodError(name, f"metadata.annotations.{ANN_RUNTIME}", raw, str(e)) from None


def _kind_from_assignment(req: PodRequest, gpu_res) -> None:
    """A bound pod whose GPU annotations cannot be read: what its devices must be, from its
    whole-GPU resource or else from the devices its assignment names."""
    if gpu_res is not None:
        req.kind, req.count, req.milli = KIND_WHOLE, gpu_res[1], 1000
    elif req.assignment:
        whole = all(d["fraction"] >= 1 and not d["memoryMiB"] for d in req.assignment)
        req.kind = KIND_WHOLE if whole else KIND_SHARED
        req.count = len(req.assignment)
        req.milli = 1000 if whole else max(round(d["fraction"] * 1000) for d in req.assignment)
        req.gpu_memory = 0 if whole else max(d["memoryMiB"] for d in req.assignment)


GATED = "SchedulingGated"


def waiting_reason(obj: dict, scheduler_name: str = SCHEDULER_NAME,
                   namespaces: tuple = ()) -> tuple[str | None, bool]:
    """Why an unbound pod is not placed in this cycle, as ``(reason, waits)``; ``(None, False)``
    when Kaiwo places it.

    ``waits`` is True for a pod that is Kaiwo's but may not be placed yet -- its
    ``spec.schedulingGates`` are not all removed (kube-apiserver refuses to bind it) -- so the rest
    of its gang must wait too (:func:`kaiwo_core.scheduling.gangs.hold_waiting_gangs`). Pods of another
    scheduler, or of a namespace outside ``namespaces`` (when given), are not Kaiwo's at all; but
    one in a gang without an explicit minimum (whose minimum is then every member) also makes the
    rest of its gang wait: Kaiwo cannot place it, so binding the others would split the gang.
    """
    spec = obj.get("spec") or {}
    sched = spec.get("schedulerName", "default-scheduler")
    if sched != scheduler_name:
        ann = (obj.get("metadata") or {}).get("annotations") or {}
        return f"schedulerName is {sched!r}, not {scheduler_name!r}", \
            ANN_GANG in ann and ANN_GANG_MIN not in ann
    ns = (obj.get("metadata") or {}).get("namespace") or "default"
    if namespaces and ns not in namespaces:
        return f"namespace {ns!r} is not among the namespaces scheduled ({', '.join(namespaces)})", False
    gates = spec.get("schedulingGates")
    if gates:
        names = [g.get("name") if isinstance(g, dict) else g for g in gates]
        return f"{GATED}: spec.schedulingGates = {names!r}; placed once they are all removed", True
    return None, False


def _field(name, fld, raw, fn, *args):
    try:
        return fn(raw, *args)
    except QuantityError as e:
        raise PodError(name, fld, raw, e.reason) from None


def _resources(name: str, spec: dict):
    """Effective CPU/memory request (sum of containers, at least the largest init container, plus
    pod overhead) and the GPU resource (name, count) it asks for."""
    totals = {"cpu": 0, "memory": 0}
    gpu_name, gpu_count = None, 0
    for section in ("containers", "initContainers"):
        init_max = {"cpu": 0, "memory": 0}
        for i, c in enumerate(field_list(PodError, name, spec.get(section), f"spec.{section}")):
            c = field_map(PodError, name, c, f"spec.{section}[{i}]")
            where = f"spec.{section}[{i}].resources"
            res = field_map(PodError, name, c.get("resources"), where)
            requests = field_map(PodError, name, res.get("requests"), f"{where}.requests")
            limits = field_map(PodError, name, res.get("limits"), f"{where}.limits")
            for key, unit in (("cpu", "cpu"), ("memory", "memory")):
                raw = requests.get(key, limits.get(key))  # a limit alone defaults the request
                if raw is None:
                    continue
                fld = f"{where}.{'requests' if key in requests else 'limits'}.{key}"
                v = _capped(name, fld, raw, unit)
                if section == "containers":
                    totals[key] += v
                else:
                    init_max[key] = max(init_max[key], v)
            for key in {**requests, **limits}:
                if not _is_gpu_resource(key):
                    continue
                raw = limits.get(key, requests.get(key))
                fld = f"{where}.{'limits' if key in limits else 'requests'}.{key}"
                n = _capped(name, fld, raw, "count")
                if n == 0:
                    continue
                if gpu_name not in (None, key):
                    raise PodError(name, fld, raw, f"a pod may ask for one GPU resource; it "
                                   f"also asks for {gpu_name}")
                if section == "containers":
                    gpu_name, gpu_count = key, gpu_count + n
                else:
                    gpu_name, gpu_count = key, max(gpu_count, n)
        for key in totals:
            totals[key] = max(totals[key], init_max[key])
    overhead = field_map(PodError, name, spec.get("overhead"), "spec.overhead")
    for key, unit in (("cpu", "cpu"), ("memory", "memory")):
        raw = overhead.get(key)
        if raw is not None:
            totals[key] += _capped(name, f"spec.overhead.{key}", raw, unit)
        if totals[key] > _MAX[unit]:
            raise PodError(name, "spec.containers", f"{totals[key]} {_UNIT_NAME[unit]}",
                           f"the pod's {key} request is more than {_MAX[unit]} {_UNIT_NAME[unit]}")
    if gpu_count > MAX_DEVICES:
        raise PodError(name, "spec.containers", f"{gpu_name}: {gpu_count}",
                       f"more than {MAX_DEVICES} GPUs for one pod")
    return totals["cpu"], totals["memory"], (gpu_name, gpu_count) if gpu_name else None


_MAX = {"cpu": MAX_CPU_MILLI, "memory": MAX_MEMORY_MIB, "count": MAX_DEVICES}
_UNIT_NAME = {"cpu": "milli-cores", "memory": "MiB", "count": "GPUs"}


def _capped(name: str, fld: str, raw, unit: str) -> int:
    """A quantity of ``unit``, refused above its maximum (:mod:`kaiwo_core.model.limits`)."""
    v = _field(name, fld, raw, parse_quantity, unit)
    if v > _MAX[unit]:
        raise PodError(name, fld, raw, f"more than {_MAX[unit]} {_UNIT_NAME[unit]}")
    return v


def _is_gpu_resource(key: str) -> bool:
    if key in ("amd.com/gpu", "nvidia.com/gpu"):
        return True
    if key.startswith("amd.com/"):
        from .gpu import PartitionError, parse_mode_label
        try:
            parse_mode_label(key[len("amd.com/"):])
            return True
        except PartitionError:
            return False
    return False


def _gpu_request(req: PodRequest, ann: dict, gpu_res) -> bool:
    name = req.name
    frac = ann.get(ANN_FRACTION)
    mem = ann.get(ANN_MEMORY)
    ndev = ann.get(ANN_NUM_DEVICES)
    sharing = ann.get(ANN_SHARING)
    isolation = ann.get(ANN_ISOLATION)
    fld = lambda a: f"metadata.annotations.{a}"  # noqa: E731
    milli = _field(name, fld(ANN_FRACTION), frac, parse_fraction) if frac is not None else 0
    gmem = _field(name, fld(ANN_MEMORY), mem, parse_mib) if mem is not None else 0
    shared_req = frac is not None or mem is not None
    if ndev is not None:
        if not shared_req:
            raise PodError(name, fld(ANN_NUM_DEVICES), ndev,
                           f"needs {ANN_FRACTION} or {ANN_MEMORY} (it multiplies a shared request)")
        count = _field(name, fld(ANN_NUM_DEVICES), ndev, parse_positive_int, ANN_NUM_DEVICES)
        if count > MAX_DEVICES:
            raise PodError(name, fld(ANN_NUM_DEVICES), ndev, f"more than {MAX_DEVICES} devices")
    else:
        count = 1
    if isolation is not None and isolation not in ISOLATION_MODES:
        raise PodError(name, fld(ANN_ISOLATION), isolation,
                       f"unknown isolation mode (expected one of {', '.join(ISOLATION_MODES)})")
    if isolation == "xcd" and frac is None:
        raise PodError(name, fld(ANN_ISOLATION), isolation,
                       f"XCD isolation needs {ANN_FRACTION} (the share rounded up to whole XCDs)")
    exclusive = False
    if sharing is not None:
        share = _field(name, fld(ANN_SHARING), sharing, parse_bool, ANN_SHARING)
        if not shared_req:
            raise PodError(name, fld(ANN_SHARING), sharing,
                           f"applies to shared requests ({ANN_FRACTION} or {ANN_MEMORY}); "
                           "whole GPUs are never shared")
        exclusive = not share
    if shared_req:
        if gpu_res is not None:
            raise PodError(name, fld(ANN_FRACTION if frac is not None else ANN_MEMORY),
                           frac if frac is not None else mem,
                           f"cannot be combined with a whole-GPU request ({gpu_res[0]}: {gpu_res[1]})")
        req.kind = KIND_XCD if isolation == "xcd" else KIND_SHARED
        req.count, req.milli, req.gpu_memory, req.exclusive = count, milli, gmem, exclusive
    elif gpu_res is not None:
        req.kind, req.count, req.milli = KIND_WHOLE, gpu_res[1], 1000
    return True


def _constraint(name: str, spec: dict, ann: dict, gpu_resource, wants_gpu: bool = True) -> Constraint:
    selector = field_map(PodError, name, spec.get("nodeSelector"), "spec.nodeSelector")
    tolerations = []
    for i, t in enumerate(field_list(PodError, name, spec.get("tolerations"), "spec.tolerations")):
        where = f"spec.tolerations[{i}]"
        t = field_map(PodError, name, t, where)
        op = t.get("operator", "Equal")
        if op not in ("Equal", "Exists"):
            raise PodError(name, f"{where}.operator", op, "must be Equal or Exists")
        tolerations.append((field_str(PodError, name, t.get("key"), f"{where}.key"), op,
                            str(t.get("value", "")),
                            field_str(PodError, name, t.get("effect"), f"{where}.effect")))
    affinity = _required_affinity(name, spec)
    models = None
    if ANN_MODEL in ann:
        raw = str(ann[ANN_MODEL])
        models = frozenset(m.strip().upper() for m in raw.split("|") if m.strip())
        if not models:
            raise PodError(name, f"metadata.annotations.{ANN_MODEL}", raw, "names no GPU model")
    size = _gpu_size(name, ann, wants_gpu)
    if not selector and not tolerations and not affinity and models is None and size == (None, 0, 0):
        return _plain(gpu_resource)  # most pods: one shared object per GPU resource name
    return Constraint(tuple(sorted((str(k), str(v)) for k, v in selector.items())),
                      tuple(sorted(tolerations)), affinity, models, gpu_resource, frozenset(), *size)


def _gpu_size(name: str, ann: dict, wants_gpu: bool) -> tuple:
    """``kaiwo.ai/gpu-partition``, ``gpu-min-cus`` and ``gpu-min-memory``: (modes or None, CUs,
    MiB). They say what one logical GPU must be, so they need a GPU request."""
    from .gpu import COMPUTE_PARTITIONS
    fld = lambda a: f"metadata.annotations.{a}"  # noqa: E731
    given = [a for a in (ANN_PARTITION, ANN_MIN_CUS, ANN_MIN_MEMORY) if a in ann]
    if given and not wants_gpu:
        raise PodError(name, fld(given[0]), ann[given[0]],
                       "sizes the logical GPUs a pod uses; this pod asks for no GPU")
    modes = None
    if ANN_PARTITION in ann:
        raw = field_str(PodError, name, ann[ANN_PARTITION], fld(ANN_PARTITION))
        modes = frozenset(m.strip().upper() for m in raw.split("|") if m.strip())
        bad = sorted(modes - set(COMPUTE_PARTITIONS))
        if bad or not modes:
            why = f"unknown compute partition mode {bad[0].lower()!r}" if bad else "names no mode"
            raise PodError(name, fld(ANN_PARTITION), raw,
                           f"{why} (expected one of {', '.join(m.lower() for m in COMPUTE_PARTITIONS)})")
    cus = 0
    if ANN_MIN_CUS in ann:
        cus = _field(name, fld(ANN_MIN_CUS), ann[ANN_MIN_CUS], parse_positive_int, ANN_MIN_CUS)
        if cus > MAX_GPU_CUS:
            raise PodError(name, fld(ANN_MIN_CUS), ann[ANN_MIN_CUS], f"more than {MAX_GPU_CUS} compute units")
    mib = 0
    if ANN_MIN_MEMORY in ann:
        mib = _field(name, fld(ANN_MIN_MEMORY), ann[ANN_MIN_MEMORY], parse_mib, ANN_MIN_MEMORY)
        if mib > MAX_MEMORY_MIB:
            raise PodError(name, fld(ANN_MIN_MEMORY), ann[ANN_MIN_MEMORY], f"more than {MAX_MEMORY_MIB} MiB")
    return modes, cus, mib


_PLAIN: dict = {}


def _plain(gpu_resource) -> Constraint:
    c = _PLAIN.get(gpu_resource)
    if c is None:
        c = _PLAIN[gpu_resource] = Constraint(gpu_resource=gpu_resource)
    return c


_AFFINITY_OPS = ("In", "NotIn", "Exists", "DoesNotExist")


def _required_affinity(name: str, spec: dict) -> tuple:
    where = "spec.affinity"
    node = spec.get("affinity")
    for key in ("nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms"):
        node = field_map(PodError, name, node, where).get(key)
        where += "." + key
    where = "spec.affinity.nodeAffinity.required..."  # the full path is long: below, shortened
    terms = field_list(PodError, name, node, where + ".nodeSelectorTerms")
    out = []
    for i, term in enumerate(terms):
        at = f"{where}.nodeSelectorTerms[{i}]"
        term = field_map(PodError, name, term, at)
        exprs = []
        for j, e in enumerate(field_list(PodError, name, term.get("matchExpressions"), f"{at}.matchExpressions")):
            fld = f"{at}.matchExpressions[{j}]"
            e = field_map(PodError, name, e, fld)
            op = e.get("operator")
            if op not in _AFFINITY_OPS:
                raise PodError(name, fld + ".operator", op,
                               f"unsupported operator (expected one of {', '.join(_AFFINITY_OPS)})")
            values = field_list(PodError, name, e.get("values"), fld + ".values")
            exprs.append((field_str(PodError, name, e.get("key"), fld + ".key"), op,
                          tuple(sorted(map(str, values)))))
        out.append(tuple(exprs))
    return tuple(out)


def _priority(name: str, spec: dict, classes: dict) -> int:
    if spec.get("priority") is not None:
        raw = spec["priority"]
        # Integers only: int() would truncate 1.9 (or a "1.9" string would fail elsewhere) and
        # True is an int to Python; an integral float such as 7.0 (YAML "7.0") is that integer.
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise PodError(name, "spec.priority", raw, "must be an integer")
        if not INT32_MIN <= raw <= INT32_MAX:  # an int32 in Kubernetes; int64 columns here
            raise PodError(name, "spec.priority", raw, f"must be between {INT32_MIN} and {INT32_MAX}")
        return raw
    cls = field_str(PodError, name, spec.get("priorityClassName"), "spec.priorityClassName")
    if cls:
        if cls not in classes:
            # Kubernetes admission would have refused the pod; we report rather than guess.
            raise PodError(name, "spec.priorityClassName", cls, "no PriorityClass of that name")
        if isinstance(classes[cls], ObjectError):
            raise PodError(name, "spec.priorityClassName", cls,
                           f"that PriorityClass is invalid ({classes[cls].message()})")
        return classes[cls]
    return classes.get(None, 0)  # the globalDefault class, if any


class PriorityClassError(ObjectError):
    """A PriorityClass that could not be read; pods that name it are rejected, saying why."""

    kind = "PriorityClass"


def priority_classes(objs: list[dict]) -> dict:
    """name -> value of PriorityClass objects; key None holds the globalDefault value. A class
    that cannot be read maps to its :class:`PriorityClassError` (see :func:`class_errors`)."""
    out: dict = {}
    for o in objs:
        got = guarded(PriorityClassError, o, _priority_class)
        if isinstance(got, PriorityClassError):
            if got.name != "<unnamed>":
                out[got.name] = got
            continue
        name, value, default = got
        out[name] = value
        if default:
            out[None] = value
    return out


def class_errors(classes: dict) -> list:
    """The PriorityClassErrors of a :func:`priority_classes` result."""
    return [v for v in classes.values() if isinstance(v, PriorityClassError)]


def _priority_class(obj) -> tuple:
    name = metadata(PriorityClassError, object_name(obj), obj, "PriorityClass")["name"]
    value = field_int(PriorityClassError, name, obj.get("value", 0), "value", INT32_MIN, INT32_MAX)
    default = obj.get("globalDefault", False)
    if not isinstance(default, bool):
        raise PriorityClassError(name, "globalDefault", default, "must be true or false")
    return name, value, default


def _timestamp(name: str, raw, fld: str = "metadata.creationTimestamp") -> float:
    if raw is None:
        return 0.0
    if isinstance(raw, datetime):  # YAML loaders give naive datetimes for ...Z: they are UTC
        return (raw if raw.tzinfo else raw.replace(tzinfo=timezone.utc)).timestamp()
    try:
        t = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()
    except ValueError:
        raise PodError(name, fld, raw, "not an RFC 3339 time") from None


ASSIGNMENT_KEYS = ("gpu", "partition", "xcds", "fraction", "memoryMiB")


def assignment_text(devices: list[dict]) -> str:
    """The ``kaiwo.ai/gpu-assignment`` value for device entries (only its own keys: ``kaiwo
    schedule`` output adds sizes that are no part of it)."""
    return json.dumps([{k: d[k] for k in ASSIGNMENT_KEYS} for d in devices], separators=(",", ":"))


def parse_assignment(name: str, raw) -> list[dict]:
    """Decode ``kaiwo.ai/gpu-assignment``: a JSON list of {gpu, partition, xcds, fraction,
    memoryMiB}, as the binder writes it."""
    fld = f"metadata.annotations.{ANN_ASSIGNMENT}"
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as e:
        raise PodError(name, fld, raw, f"not JSON ({e.msg})") from None
    except RecursionError:
        raise PodError(name, fld, raw, "not JSON (nested too deeply)") from None
    if not isinstance(data, list) or len(data) > MAX_DEVICES:
        raise PodError(name, fld, raw, f"must be a JSON list of at most {MAX_DEVICES} device assignments")
    out = []
    for i, d in enumerate(data):
        if not isinstance(d, dict) or not isinstance(d.get("gpu"), int) or not 0 <= d["gpu"] < MAX_DEVICES:
            raise PodError(name, f"{fld}[{i}].gpu", d, "each entry needs a non-negative integer gpu")
        part = d.get("partition", 0)
        frac = d.get("fraction", 1.0)
        mem = d.get("memoryMiB", 0)
        xcds = d.get("xcds", [])
        if not isinstance(part, int) or not 0 <= part < MAX_DEVICES:
            raise PodError(name, f"{fld}[{i}].partition", part, "must be a non-negative integer")
        if not isinstance(frac, (int, float)) or not 0 <= frac <= 1:
            raise PodError(name, f"{fld}[{i}].fraction", frac, "must be between 0 and 1")
        if not isinstance(mem, int) or not 0 <= mem <= MAX_MEMORY_MIB:
            raise PodError(name, f"{fld}[{i}].memoryMiB", mem, f"must be an integer from 0 to {MAX_MEMORY_MIB}")
        if not isinstance(xcds, list) or not all(isinstance(x, int) and 0 <= x < 32 for x in xcds):
            raise PodError(name, f"{fld}[{i}].xcds", xcds, "must be a list of XCD indices")
        out.append({"gpu": d["gpu"], "partition": part, "xcds": sorted(xcds),
                    "fraction": float(frac), "memoryMiB": mem})
    return out
