"""Migrations: the rebalancing planner run by the controller (``--rebalance off|plan|apply``).

Off by default. Every ``rebalance.period`` (and only while no migration is under way) the leader
plans on the cycle's snapshot (:func:`kaiwo_core.scheduling.rebalance.plan_rebalance`, the same plan
as ``kaiwo rebalance``):

* ``plan``: each move becomes a ``MigrationPlanned`` Event on its pod and counts in
  ``kaiwo_migrations_total{reason, outcome="planned"}``; nothing else changes.
* ``apply``: each moved pod is evicted through the Eviction API (the binder's evictor, as for
  preemption: policy/v1 Eviction, so the API server enforces PodDisruptionBudgets again), and its
  planned target is *held* for ``rebalance.holdTtl``: every cycle adds an in-memory
  KaiwoReservation of the target devices, pinned (``kaiwo.ai/pin-owner``) to the target node, to
  the snapshot. Until the replacement exists nobody may use the devices; once a pending pod is
  recognised as the replacement -- same controller owner (uid) and ``pod-template-hash`` label, or
  the same KaiwoJob replica (same name and job label, a new uid) -- the hold is its own (a
  KaiwoJob replica's gang may use it, unpinned: a gang spans nodes). The migration ends when the
  replacement is bound (``completed`` on the target, ``elsewhere`` otherwise), when the eviction
  is refused (``blocked``/``failed``), or at the deadline (``timed-out``: the hold is released and
  a Warning Event says so). Events: ``Migrating`` on the evicted pod, ``Migrated`` on the
  replacement, ``MigrationTimedOut`` / ``MigrationBlocked`` on the moved pod.

Holds live in the leader's memory: a new leader starts without them (the replacement is then
scheduled as any pod; the planner runs again after its period).
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from dataclasses import dataclass, field

from kaiwo_core.scheduling.config import RebalanceSettings
from kaiwo_core.scheduling.gangs import LABEL_JOB, unit_of
from kaiwo_core.scheduling.rebalance import plan_rebalance
from kaiwo_core.scheduling.reservations import ANN_PIN

from .binder import EvictTask
from .events import NORMAL, WARNING, pod_ref

log = logging.getLogger("kaiwo.controller")
LABEL_TEMPLATE_HASH = "pod-template-hash"


def _meta(obj: dict) -> dict:
    m = obj.get("metadata") if isinstance(obj, dict) else None
    return m if isinstance(m, dict) else {}


def _labels(obj: dict) -> dict:
    lab = _meta(obj).get("labels")
    return lab if isinstance(lab, dict) else {}


def controller_uid(obj: dict) -> str:
    """uid of the pod's controlling owner (ownerReferences with controller: true), or ''."""
    refs = _meta(obj).get("ownerReferences")
    for r in refs if isinstance(refs, list) else []:
        if isinstance(r, dict) and r.get("controller") is True and isinstance(r.get("uid"), str):
            return r["uid"]
    return ""


def _devices_text(devs: list) -> str:
    return ", ".join(f"GPU {d['gpu']}" + (f".{d['partition']}" if d.get("partition") else "") for d in devs) or "-"


@dataclass
class Migration:
    """One move under way: the pod evicted, the target held for its replacement."""

    pod: str                 #: namespace/name of the moved pod
    uid: str
    reason: str              #: the planner's goal (consolidation, defragmentation, hot-spot)
    source: str
    target: str
    devices: list            #: planned devices on the target (as bindings[].devices)
    deadline: float
    owner_uid: str = ""
    template_hash: str = ""
    job: str = ""            #: KaiwoJob label, for a job replica
    eviction: object = None  #: the binder's future
    replacement: str = ""    #: namespace/name once seen
    replacement_uid: str = ""
    ref: dict = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.pod.split("/", 1)[0]

    def matches(self, obj: dict) -> bool:
        """Whether pod ``obj`` (not bound) replaces the moved pod."""
        meta, labels = _meta(obj), _labels(obj)
        if (meta.get("namespace") or "default") != self.namespace or meta.get("uid") == self.uid:
            return False
        if self.job:
            return labels.get(LABEL_JOB) == self.job and f"{self.namespace}/{meta.get('name')}" == self.pod
        return bool(self.owner_uid) and controller_uid(obj) == self.owner_uid and \
            labels.get(LABEL_TEMPLATE_HASH) == self.template_hash

    def hold(self, owner: str, pin: bool) -> dict:
        """The in-memory KaiwoReservation holding the target for ``owner`` (a unit)."""
        annotations = {ANN_PIN: "true"} if pin else {}
        return {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoReservation",
                "metadata": {"name": f"migration-{self.pod.replace('/', '-')}", "annotations": annotations},
                "spec": {"job": owner,
                         "until": datetime.fromtimestamp(self.deadline, tz=timezone.utc).isoformat(),
                         "devices": [{"node": self.target, "gpu": d["gpu"], "partition": d["partition"]}
                                     for d in self.devices]}}


class Migrator:
    """The controller's half of rebalancing (see the module docstring)."""

    def __init__(self, binder, events, metrics):
        self.binder, self.events, self.metrics = binder, events, metrics
        self.active: dict[str, Migration] = {}
        self.last_plan: float | None = None
        self.last_moves: list = []            #: moves of the latest plan (plan or apply)

    # ------------------------------------------------------------------ before the cycle
    def holds(self, cs, now: float) -> list[dict]:
        """KaiwoReservations holding the targets of the migrations under way (recognising the
        replacements among the pending pods); to add to the cycle's snapshot."""
        if not self.active:
            return []
        pending = {r.name: r for r in cs.snapshot.pending}
        out = []
        for m in self.active.values():
            if not m.replacement:
                for key, obj in cs.pods.items():
                    if key in pending and m.matches(obj):
                        m.replacement, m.replacement_uid = key, _meta(obj).get("uid", "")
                        break
            req = pending.get(m.replacement)
            if req is None:   # not there yet (or already bound): held for nobody
                out.append(m.hold(f"{m.namespace}/kaiwo-migration-hold", pin=False))
                continue
            unit = unit_of(req)
            out.append(m.hold(unit, pin=unit == req.name))
        return out

    # ------------------------------------------------------------------- after the cycle
    def step(self, cs, doc: dict, settings: RebalanceSettings, pipeline, now: float) -> None:
        """Finish migrations (bound, refused, timed out), then plan if one is due."""
        bound = {b["pod"]: b["node"] for b in doc.get("bindings", [])}
        for key, m in list(self.active.items()):
            self._settle(key, m, cs, bound, now)
        if settings.mode == "off" or self.active:
            return
        if self.last_plan is not None and now - self.last_plan < settings.period:
            return
        self.last_plan = now
        plan = plan_rebalance(cs.snapshot, settings.planner(), now=now, pipeline=pipeline)
        self.last_moves = plan.moves
        for mv in plan.moves:
            obj = cs.pods.get(mv["pod"])
            if obj is None:
                continue
            text = (f"{mv['reason']}: from {mv['from']['node']} ({_devices_text(mv['from']['devices'])}) to "
                    f"{mv['to']['node']} ({_devices_text(mv['to']['devices'])})"
                    + (f", making room for {', '.join(mv['unlocks'])}" if mv["unlocks"] else ""))
            if settings.mode == "plan":
                self.events.emit(pod_ref(obj), NORMAL, "MigrationPlanned", "Would move: " + text)
                self.metrics.migrations.labels(reason=mv["reason"], outcome="planned").inc()
                continue
            meta = _meta(obj)
            m = Migration(mv["pod"], meta.get("uid", ""), mv["reason"], mv["from"]["node"], mv["to"]["node"],
                          mv["to"]["devices"], now + settings.hold_ttl, controller_uid(obj),
                          _labels(obj).get(LABEL_TEMPLATE_HASH, ""), _labels(obj).get(LABEL_JOB, ""),
                          ref=pod_ref(obj))
            ns, name = mv["pod"].split("/", 1)
            futures = self.binder.evict([EvictTask(ns, name, m.uid, node=m.source,
                                                   event=("Migrating", "Evicted to move it, " + text))])
            if not futures:
                continue  # evicted moments ago (a preemption): not ours to follow
            m.eviction = futures[0]
            self.active[mv["pod"]] = m
            log.info("migration of %s: %s", mv["pod"], text)

    def _settle(self, key: str, m: Migration, cs, bound: dict, now: float) -> None:
        done = None
        if m.eviction is not None and m.eviction.done():
            result, m.eviction = m.eviction.result(), None
            if result.ok:
                self.metrics.migrations.labels(reason=m.reason, outcome="evicted").inc()
            else:
                done = ("blocked" if result.result == "blocked" else "failed", WARNING, "MigrationBlocked",
                        f"not moved: the eviction did not go through ({result.error or result.result})")
        if done is None and m.replacement:
            obj = cs.pods.get(m.replacement)
            node = bound.get(m.replacement) or ((obj or {}).get("spec") or {}).get("nodeName")
            if node:
                ok = node == m.target
                done = ("completed" if ok else "elsewhere", NORMAL if ok else WARNING, "Migrated",
                        f"replaces {m.pod} ({m.reason}), moved from {m.source} to {node}"
                        + ("" if ok else f" (planned: {m.target})"))
        if done is None and now >= m.deadline:
            done = ("timed-out", WARNING, "MigrationTimedOut",
                    f"no replacement bound to {m.target} within the hold; the hold on "
                    f"{_devices_text(m.devices)} is released")
        if done is None:
            return
        outcome, type_, reason, text = done
        ref = m.ref if reason != "Migrated" else {**m.ref, "name": m.replacement.split("/", 1)[1],
                                                   "uid": m.replacement_uid}
        self.events.emit(ref, type_, reason, text)
        self.metrics.migrations.labels(reason=m.reason, outcome=outcome).inc()
        del self.active[key]
