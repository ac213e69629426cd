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

from .errors import ObjectError
from .quantity import QuantityError, parse_positive_int
from .requests import ANN, SCHEDULER_NAME, PodError

ANN_GANG = ANN + "gang"
ANN_GANG_MIN = ANN + "gang-min-members"
LABEL_JOB = ANN + "job"


class JobError(ObjectError):
    """A KaiwoJob that could not be expanded into pods."""

    kind = "KaiwoJob"


def _int(name: str, fld: str, raw, minimum: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
        raise JobError(name, fld, raw, f"must be an integer >= {minimum}")
    return raw


def expand_jobs(jobs: list[dict], pods: list[dict], scheduler_name: str = SCHEDULER_NAME
                ) -> tuple[list[dict], list[JobError]]:
    """Pod objects for the replicas of each KaiwoJob that have none yet, and errors for bad jobs.

    Every pod of a job (existing or created) gets the gang annotations, so from here on a job is
    just a gang. Created pods get ``scheduler_name`` unless the template names a scheduler.
    """
    existing: dict[tuple, list[dict]] = {}
    for p in pods:
        meta = p.get("metadata") or {}
        job = (meta.get("labels") or {}).get(LABEL_JOB)
        if job:
            existing.setdefault((meta.get("namespace") or "default", job), []).append(p)
    created, errors = [], []
    for obj in jobs:
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace") or "default", meta.get("name")
        full = f"{ns}/{name}"
        try:
            if not name:
                raise JobError("<unnamed>", "metadata.name", None, "a KaiwoJob needs a name")
            spec = obj.get("spec") or {}
            replicas = _int(full, "spec.replicas", spec.get("replicas", 1), 1)
            min_members = _int(full, "spec.minMembers", spec.get("minMembers", replicas), 1)
            if min_members > replicas:
                raise JobError(full, "spec.minMembers", min_members,
                               f"larger than spec.replicas ({replicas})")
            gpus = _int(full, "spec.gpusPerReplica", spec.get("gpusPerReplica", 0), 0)
            template = spec.get("template") or {}
            tspec = template.get("spec") or {}
            if not tspec.get("containers"):
                raise JobError(full, "spec.template.spec.containers", None, "the pod template needs a container")
        except JobError as e:
            errors.append(e)
            continue
        mine = existing.get((ns, name), [])
        names = {(p.get("metadata") or {}).get("name") for p in mine}
        for p in mine:
            _mark(p, full, min_members)
        for i in range(replicas):
            pod_name = f"{name}-{i}"
            if len(mine) >= replicas:
                break
            if pod_name in names:
                continue
            pod = _from_template(template, ns, pod_name, name, meta, gpus, scheduler_name)
            _mark(pod, full, min_members)
            created.append(pod)
            mine.append(pod)
    return created, errors


def _from_template(template: dict, ns: str, pod_name: str, job: str, job_meta: dict, gpus: int,
                   scheduler_name: str) -> dict:
    tmeta = copy.deepcopy(template.get("metadata") or {})
    spec = copy.deepcopy(template.get("spec") or {})
    if not spec.get("schedulerName"):
        spec["schedulerName"] = scheduler_name
    labels = {**(job_meta.get("labels") or {}), **(tmeta.get("labels") or {}), LABEL_JOB: job}
    if gpus:
        res = spec["containers"][0].setdefault("resources", {})
        limits = res.setdefault("limits", {})
        if not any(k in limits for k in ("amd.com/gpu", "nvidia.com/gpu")):
            limits["amd.com/gpu"] = str(gpus)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": ns, "labels": labels,
                         "annotations": dict(tmeta.get("annotations") or {}),
                         "creationTimestamp": job_meta.get("creationTimestamp")},
            "spec": spec}


def _mark(pod: dict, gang: str, min_members: int) -> None:
    ann = pod.setdefault("metadata", {}).setdefault("annotations", {})
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
    for req, why in waiting:
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
        return gang, parse_positive_int(raw, ANN_GANG_MIN)
    except QuantityError as e:
        raise PodError(req.name, f"metadata.annotations.{ANN_GANG_MIN}", raw, e.reason) from None
