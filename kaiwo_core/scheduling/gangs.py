"""Gangs: groups of pods that run together or not at all.

A gang is declared two ways:

* a ``KaiwoJob`` (``kaiwo.ai/v1alpha2``): ``spec.replicas``, ``spec.minMembers`` (default: all
  replicas), ``spec.gpusPerReplica`` and a pod ``spec.template``. Its pods carry the label
  ``kaiwo.ai/job: NAME``; replicas that have no Pod yet are created from the template here, named
  ``NAME-<index>``, exactly as the controller would create them;
* pod annotations ``kaiwo.ai/gang: NAME`` and ``kaiwo.ai/gang-min-members: N`` (same namespace).

Members already running count toward the minimum: a gang of min 4 with 3 members running needs one
more placed. Placement commits a gang only if enough members fit (the kernel rolls the rest back),
so a gang that does not fit places nothing and holds nothing.
"""
from __future__ import annotations

import copy

from ..model.errors import ObjectError, field_int, field_list, field_map, field_str, guarded, metadata, object_name
from ..model.limits import MAX_DEVICES, MAX_REPLICAS
from ..model.quantity import QuantityError, parse_positive_int
from ..model.requests import ANN, ANN_GANG, ANN_GANG_MIN, SCHEDULER_NAME, PodError

LABEL_JOB = ANN + "job"


class JobError(ObjectError):
    """A KaiwoJob that could not be expanded into pods."""

    kind = "KaiwoJob"


def expand_jobs(jobs: list[dict], pods: list[dict], scheduler_name: str = SCHEDULER_NAME
                ) -> tuple[list[dict], list[JobError]]:
    """Pod objects for the replicas of each KaiwoJob that have none yet, and errors for bad jobs.

    Every pod of a job (existing or created) gets the gang annotations, so from here on a job is
    just a gang. Created pods get ``scheduler_name`` unless the template names a scheduler.
    """
    existing: dict[tuple, list[dict]] = {}
    for p in pods:
        # Pods are read defensively here: a malformed one is rejected when it is decoded.
        meta = p.get("metadata") if isinstance(p, dict) else None
        labels = meta.get("labels") if isinstance(meta, dict) else None
        job = labels.get(LABEL_JOB) if isinstance(labels, dict) else None
        ns = meta.get("namespace") if isinstance(meta, dict) else None
        if isinstance(job, str) and job and isinstance(ns or "", str) and \
                isinstance(meta.get("annotations") or {}, dict):
            existing.setdefault((ns or "default", job), []).append(p)
    created, errors = [], []
    for obj in jobs:
        got = guarded(JobError, obj, _expand_job, existing, scheduler_name, namespaced=True)
        (errors.append if isinstance(got, JobError) else created.extend)(got)
    return created, errors


def job_spec(obj: dict) -> tuple:
    """Decode one KaiwoJob: (namespace, name, replicas, minMembers, gpusPerReplica, template).
    Raises JobError naming the job, the field and the value."""
    full = object_name(obj, namespaced=True)
    meta = metadata(JobError, full, obj, "KaiwoJob")
    name = meta["name"]
    ns = field_str(JobError, full, meta.get("namespace"), "metadata.namespace") or "default"
    field_map(JobError, full, meta.get("labels"), "metadata.labels")
    spec = field_map(JobError, full, obj.get("spec"), "spec")
    replicas = field_int(JobError, full, spec.get("replicas", 1), "spec.replicas", 1, MAX_REPLICAS)
    min_members = spec.get("minMembers", replicas)
    if isinstance(min_members, int) and not isinstance(min_members, bool) and min_members > replicas:
        raise JobError(full, "spec.minMembers", min_members, f"larger than spec.replicas ({replicas})")
    min_members = field_int(JobError, full, min_members, "spec.minMembers", 1, replicas)
    gpus = field_int(JobError, full, spec.get("gpusPerReplica", 0), "spec.gpusPerReplica", 0, MAX_DEVICES)
    template = field_map(JobError, full, spec.get("template"), "spec.template")
    tmeta = field_map(JobError, full, template.get("metadata"), "spec.template.metadata")
    for key in ("labels", "annotations"):
        field_map(JobError, full, tmeta.get(key), f"spec.template.metadata.{key}")
    tspec = field_map(JobError, full, template.get("spec"), "spec.template.spec")
    containers = field_list(JobError, full, tspec.get("containers"), "spec.template.spec.containers")
    if not containers:
        raise JobError(full, "spec.template.spec.containers", None, "the pod template needs a container")
    first = containers[0]
    if not isinstance(first, dict):  # the GPU limit is added to it
        raise JobError(full, "spec.template.spec.containers[0]", first, "must be a map (a container)")
    res = field_map(JobError, full, first.get("resources"), "spec.template.spec.containers[0].resources")
    field_map(JobError, full, res.get("limits"), "spec.template.spec.containers[0].resources.limits")
    return ns, name, replicas, min_members, gpus, template


def _expand_job(obj: dict, existing: dict, scheduler_name: str) -> list[dict]:
    """Pod objects for the replicas of one KaiwoJob that have none yet (its existing pods, from
    ``existing``, get the gang marks)."""
    ns, name, replicas, min_members, gpus, template = job_spec(obj)
    full = f"{ns}/{name}"
    mine = existing.get((ns, name), [])
    names = {p["metadata"].get("name") for p in mine}
    for p in mine:
        _mark(p, full, min_members)
    created = []
    for i in range(replicas):
        if len(mine) >= replicas:
            break
        pod_name = f"{name}-{i}"
        if pod_name in names:
            continue
        pod = _from_template(template, ns, pod_name, name, obj["metadata"], gpus, scheduler_name)
        _mark(pod, full, min_members)
        created.append(pod)
        mine.append(pod)
    return created


def _from_template(template: dict, ns: str, pod_name: str, job: str, job_meta: dict, gpus: int,
                   scheduler_name: str) -> dict:
    tmeta = copy.deepcopy(template.get("metadata") or {})
    spec = copy.deepcopy(template.get("spec") or {})
    if not spec.get("schedulerName"):
        spec["schedulerName"] = scheduler_name
    labels = {**(job_meta.get("labels") or {}), **(tmeta.get("labels") or {}), LABEL_JOB: job}
    if gpus:
        container = spec["containers"][0]
        res = container["resources"] = container.get("resources") or {}  # null counts as absent
        limits = res["limits"] = res.get("limits") or {}
        if not any(k in limits for k in ("amd.com/gpu", "nvidia.com/gpu")):
            limits["amd.com/gpu"] = str(gpus)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": ns, "labels": labels,
                         "annotations": dict(tmeta.get("annotations") or {}),
                         "creationTimestamp": job_meta.get("creationTimestamp")},
            "spec": spec}


def _mark(pod: dict, gang: str, min_members: int) -> None:
    meta = pod["metadata"]
    if meta.get("annotations") is None:
        meta["annotations"] = {}
    ann = meta["annotations"]
    ann[ANN_GANG] = gang.split("/", 1)[1]
    ann[ANN_GANG_MIN] = str(min_members)


def unit_of(req) -> str:
    """The unit a pod is scheduled (and reserved for) with: its gang ``namespace/gang``, or the pod
    itself (``namespace/name``)."""
    return gang_id(req) or req.name


def gang_id(req) -> str | None:
    """``namespace/gang`` of a decoded pod, or None."""
    name = req.annotations.get(ANN_GANG)
    return f"{req.name.split('/', 1)[0]}/{name}" if name else None


def hold_waiting_gangs(pending: list, waiting: list) -> tuple[list, list]:
    """Pending pods minus the members of gangs with a member that must wait (``waiting``:
    (PodRequest, reason), e.g. scheduling gates): placing the others alone could bind the gang
    partially. Returns (pods kept, (name, reason) of the pods held back)."""
    gangs: dict[str, str] = {}
    # By name: the reason names the same member whatever order the pods were listed in.
    for req, why in sorted(waiting, key=lambda w: w[0].name):
        g = gang_id(req)
        if g is not None:
            gangs.setdefault(g, f"gang {g} waits for its member {req.name} ({why})")
    if not gangs:
        return pending, []
    kept, held = [], []
    for r in pending:
        g = gang_id(r)
        if g in gangs:
            held.append((r.name, gangs[g]))
        else:
            kept.append(r)
    return kept, held


def gang_of(req) -> tuple[str, int] | None:
    """(gang id "ns/name", min members) from a decoded pod's annotations, or None.

    Raises PodError for a malformed minimum."""
    ann = req.annotations
    if ANN_GANG not in ann:
        if ANN_GANG_MIN in ann:
            raise PodError(req.name, f"metadata.annotations.{ANN_GANG_MIN}", ann[ANN_GANG_MIN],
                           f"needs {ANN_GANG} (the gang it is the minimum of)")
        return None
    ns = req.name.split("/", 1)[0]
    gang = f"{ns}/{ann[ANN_GANG]}"
    raw = ann.get(ANN_GANG_MIN)
    if raw is None:
        return gang, 0  # 0 = every member the snapshot has
    try:
        minimum = parse_positive_int(raw, ANN_GANG_MIN)
    except QuantityError as e:
        raise PodError(req.name, f"metadata.annotations.{ANN_GANG_MIN}", raw, e.reason) from None
    if minimum > MAX_REPLICAS:  # the kernel counts members in int32
        raise PodError(req.name, f"metadata.annotations.{ANN_GANG_MIN}", raw,
                       f"more than {MAX_REPLICAS} members")
    return gang, minimum
