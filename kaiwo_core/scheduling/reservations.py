"""Reservations: nodes held for a queue or a job, with an expiry, and backfill onto them.

Two sources:

* ``KaiwoReservation`` (``kaiwo.ai/v1alpha2``), declared by an operator::

      metadata: {name: big-train}
      spec:
        queue: research            # or job: ml/train (a KaiwoJob or gang, "namespace/name")
        nodes: [node-a, node-b]    # which nodes to hold ...
        gpus: 16                   # ... or an amount of GPUs: Kaiwo picks the fewest whole nodes
        start: "2026-11-28T16:00:00Z"   # when the owner needs it (default: now)
        until: "2026-11-28T20:00:00Z"   # or ttl: 4h; an expired reservation releases itself

* automatic: a pending gang or multi-GPU pod that has waited longer than
  ``ReservationConfig.starvation`` while smaller pods keep taking its capacity gets the nodes that
  will free up soonest held for it, for ``ReservationConfig.ttl``.

A held node is used by the owner's pods and by *backfill*: pods that declare
``kaiwo.ai/expected-runtime`` short enough to end before the reservation is needed (``start``; for an
automatic reservation, when the running pods on its nodes are expected to end -- unknown runtimes
mean "needed now", so nothing backfills). Everyone else is kept off by a filter plugin over
constraint classes: each pod's :class:`~kaiwo_core.model.requests.Constraint` carries the reservations it
may use, so the per-pod rule costs one row of the class mask, not a Python call per pod per node.

Reservations hold whole nodes. Holding single GPUs or XCDs of a node would need a per-device
owner inside the placement kernel's device checks; it is not done yet.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import numpy as np

from ..model.durations import parse_duration
from ..model.errors import ObjectError, field_int, field_list, field_map, field_str, guarded, metadata, object_name
from ..model.limits import INT32_MAX
from .gangs import ANN_GANG, unit_of
from ..plugins import Plugin, register
from .podtable import PodTable
from ..model.requests import KIND_NONE


class ReservationError(ObjectError):
    """A KaiwoReservation that could not be accepted (it holds nothing)."""

    kind = "KaiwoReservation"


@dataclass(frozen=True)
class ReservationConfig:
    """When Kaiwo reserves on its own: a gang or a pod of at least ``min_gpus`` GPUs that has waited
    ``starvation`` seconds gets nodes held for ``ttl`` seconds -- only the ``max_automatic`` oldest
    such units, and never more than ``max_node_fraction`` of the nodes, so reservations protect the
    jobs that starve without starving everyone else. ``starvation <= 0`` turns it off."""

    starvation: float = 600.0
    ttl: float = 1800.0
    min_gpus: int = 2
    max_automatic: int = 2          #: reservations made per cycle (the oldest starving units)
    max_node_fraction: float = 0.1  #: of the cluster's nodes that automatic reservations may hold


@dataclass
class Reservation:
    name: str
    owner_queue: str = ""          #: leaf queue whose pods may use it
    owner_job: str = ""            #: "namespace/name" of a gang / KaiwoJob whose pods may use it
    nodes: list = field(default_factory=list)   #: node names held
    gpus: int = 0                  #: GPUs wanted (amount reservations), whole GPUs
    start: float = 0.0             #: when the owner needs it (backfill must end before)
    until: float = float("inf")    #: expiry
    automatic: bool = False
    reason: str = ""

    def to_dict(self) -> dict:
        def t(x):
            return None if x in (0.0, float("inf")) else \
                datetime.fromtimestamp(x, tz=timezone.utc).isoformat().replace("+00:00", "Z")
        return {"name": self.name, "queue": self.owner_queue or None, "job": self.owner_job or None,
                "nodes": list(self.nodes), "neededAt": t(self.start), "until": t(self.until),
                "automatic": self.automatic, "reason": self.reason}


def _time(name: str, fld: str, raw) -> float:
    if isinstance(raw, datetime):
        return (raw if raw.tzinfo else raw.replace(tzinfo=timezone.utc)).timestamp()
    try:
        t = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise ReservationError(name, fld, raw, "not an RFC 3339 time") from None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def reservation_spec(obj: dict, now: float) -> Reservation:
    """Decode one KaiwoReservation. Raises ReservationError naming the field and value."""
    name = object_name(obj)
    meta = metadata(ReservationError, name, obj, "KaiwoReservation")
    spec = field_map(ReservationError, name, obj.get("spec"), "spec")
    r = Reservation(name=name, owner_queue=field_str(ReservationError, name, spec.get("queue"), "spec.queue"),
                    owner_job=field_str(ReservationError, name, spec.get("job"), "spec.job"))
    if bool(r.owner_queue) == bool(r.owner_job):
        raise ReservationError(name, "spec.queue", spec.get("queue"),
                               "name exactly one owner: spec.queue or spec.job")
    if r.owner_job and "/" not in r.owner_job:
        raise ReservationError(name, "spec.job", r.owner_job, "expected namespace/name")
    nodes, gpus = spec.get("nodes"), spec.get("gpus")
    if (nodes is None) == (gpus is None):
        raise ReservationError(name, "spec.nodes", nodes, "give either spec.nodes or spec.gpus")
    if nodes is not None:
        nodes = field_list(ReservationError, name, nodes, "spec.nodes")
        bad = next((i for i, n in enumerate(nodes) if not isinstance(n, str)), None)
        if not nodes or bad is not None:
            raise ReservationError(name, "spec.nodes" if bad is None else f"spec.nodes[{bad}]",
                                   nodes if bad is None else nodes[bad],
                                   "must be a non-empty list of node names")
        r.nodes = list(nodes)
    else:
        r.gpus = field_int(ReservationError, name, gpus, "spec.gpus", 1, INT32_MAX)
    r.start = _time(name, "spec.start", spec["start"]) if spec.get("start") is not None else now
    if spec.get("until") is not None and spec.get("ttl") is not None:
        raise ReservationError(name, "spec.ttl", spec["ttl"], "give spec.until or spec.ttl, not both")
    if spec.get("until") is not None:
        r.until = _time(name, "spec.until", spec["until"])
    elif spec.get("ttl") is not None:
        try:
            ttl = parse_duration(spec["ttl"])
        except ValueError as e:
            raise ReservationError(name, "spec.ttl", spec["ttl"], str(e)) from None
        created = meta.get("creationTimestamp")
        r.until = (_time(name, "metadata.creationTimestamp", created) if created else now) + ttl
    if spec.get("start") is not None and r.start > r.until:
        raise ReservationError(name, "spec.start", spec["start"],
                               "is after spec.until (or creation + spec.ttl): the reservation would "
                               "end before it is needed")
    r.reason = "declared by a KaiwoReservation"
    return r


def _free_gpus(cluster, state) -> np.ndarray:
    """Idle logical GPUs per node."""
    return np.bincount(cluster.dev_node, weights=state.dev_state == 0,
                       minlength=cluster.n_nodes).astype(np.int64)


def _release_time(cluster, running: list, now: float) -> np.ndarray:
    """Per node, when its running pods are expected to be gone (inf if any runtime is unknown)."""
    out = np.full(cluster.n_nodes, now, dtype=np.float64)
    for r in running:
        n = cluster.index(r.node)
        if n < 0:
            continue
        end = (r.started or r.created) + r.expected_runtime if r.expected_runtime is not None else np.inf
        out[n] = max(out[n], end)
    return out


def pick_nodes(cluster, state, gpus: int, taken: set, release: np.ndarray) -> list[int]:
    """Fewest whole nodes covering ``gpus`` logical GPUs, soonest free first (then most idle GPUs,
    then name); nodes already held by another reservation are skipped."""
    dev_count = np.diff(cluster.node_dev_start)
    idle = _free_gpus(cluster, state)
    order = np.lexsort((np.arange(cluster.n_nodes), -idle, release))
    chosen, total = [], 0
    # Largest nodes first would minimise the count, but soonest-free matters more: take nodes in
    # release order, then drop any the rest already cover.
    for n in order:
        if n in taken or dev_count[n] == 0:
            continue
        chosen.append(int(n))
        total += int(dev_count[n])
        if total >= gpus:
            break
    if total < gpus:
        return []
    for n in sorted(chosen, key=lambda n: dev_count[n]):
        if total - dev_count[n] >= gpus:
            chosen.remove(n)
            total -= int(dev_count[n])
    return sorted(chosen)


def active_reservations(snapshot, tree, pending: PodTable, rows: np.ndarray, now: float,
                        cfg: ReservationConfig):
    """Reservations in force now: declared ones (expired dropped, amounts resolved to nodes) and
    automatic ones for starving jobs among the pods ``rows`` of ``pending``. Returns
    (reservations, errors, expired names)."""
    cluster, state = snapshot.cluster, snapshot.state
    cache: list = []

    def release():  # per node, when its running pods end; computed only if a choice needs it
        if not cache:
            cache.append(_release_time(cluster, snapshot.running, now))
        return cache[0]
    out, errors, expired = [], [], []
    taken: set = set()
    # Reservations that want the same nodes: the older one holds them (then the name decides),
    # never the one listed first -- two replicas may list the objects in different orders.
    for obj in sorted(snapshot.objects.get("KaiwoReservation", []), key=_declared_order):
        r = guarded(ReservationError, obj, reservation_spec, now)
        if isinstance(r, ReservationError):
            errors.append(r)
            continue
        if r.until <= now:
            expired.append(r.name)
            continue
        if r.owner_queue and r.owner_queue not in tree.index:
            errors.append(ReservationError(r.name, "spec.queue", r.owner_queue, "no such (accepted) queue"))
            continue
        if r.nodes:
            idx = [cluster.index(n) for n in r.nodes]
            missing = [n for n, i in zip(r.nodes, idx) if i < 0]
            if missing:
                errors.append(ReservationError(r.name, "spec.nodes", missing[0], "no such node"))
                continue
            clash = [n for n, i in zip(r.nodes, idx) if i in taken]
            if clash:
                errors.append(ReservationError(r.name, "spec.nodes", clash[0], "already held by another reservation"))
                continue
        else:
            idx = pick_nodes(cluster, state, r.gpus, taken, release())
            if not idx:
                errors.append(ReservationError(r.name, "spec.gpus", r.gpus, "more GPUs than the free nodes have"))
                continue
            r.nodes = [cluster.names[i] for i in idx]
        taken.update(idx)
        out.append(r)
    if cfg.starvation > 0:
        out += _automatic(cluster, state, pending, rows, now, cfg, taken, release)
    return out, errors, expired


def _declared_order(obj) -> tuple:
    """Sort key of a KaiwoReservation object: creation time, then name (as text, so that a
    malformed value still sorts; decoding reports it)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    created = meta.get("creationTimestamp")
    try:
        t = _time("", "", created) if created is not None else 0.0
    except ReservationError:
        t = float("inf")
    return t, str(meta.get("name") or "")


def _automatic(cluster, state, pending: PodTable, rows: np.ndarray, now: float, cfg: ReservationConfig,
               taken: set, release) -> list:
    """One reservation per starving unit (gang or big pod), oldest first.

    Units are grouped on the table's columns: only the units that have starved long enough and ask
    for enough whole GPUs are looked at one by one."""
    if not len(rows):
        return []
    b = pending.batch
    units, member_of = np.unique(pending.unit[rows], return_inverse=True)
    member_of = member_of.reshape(-1)
    first = np.full(len(units), np.inf)
    np.minimum.at(first, member_of, b.created[rows])
    whole_gpus = np.where((b.kind[rows] != KIND_NONE) & (b.milli[rows] == 1000), b.count[rows], 0)
    gpus = np.zeros(len(units), dtype=np.int64)
    np.add.at(gpus, member_of, whole_gpus)
    whole_members = np.bincount(member_of, weights=whole_gpus > 0, minlength=len(units))
    order = np.argsort(first, kind="stable")  # oldest first (equally old: by name, below)
    waiting = now - first[order] < cfg.starvation
    order = order[:int(np.argmax(waiting)) if waiting.any() else len(order)]  # the rest waited less
    # No creation time: how long it waited is unknown.
    order = order[(first[order] > 0) & (gpus[order] >= cfg.min_gpus)]
    # Equally old units by name, never in the order their pods were listed (two replicas may
    # list them differently). Only units that starve and ask for several GPUs are left here.
    order = np.array(sorted(order.tolist(), key=lambda u: (first[u], pending.unit_names[int(units[u])])),
                     dtype=np.int64)
    idle = _free_gpus(cluster, state)
    idle_sorted = np.sort(idle)[::-1]
    # A unit of one whole-GPU pod fits now if the node with the most idle GPUs has enough (what
    # _fits_now finds for it): it only waits for this very cycle, nothing to protect.
    largest = idle_sorted[0] if idle_sorted.size else -1
    order = order[(whole_members[order] != 1) | (gpus[order] > largest)]
    by_unit = np.argsort(member_of, kind="stable")  # members of each unit, in row order
    start = np.zeros(len(units) + 1, dtype=np.int64)
    np.cumsum(np.bincount(member_of, minlength=len(units)), out=start[1:])
    out = []
    budget = max(1, int(cfg.max_node_fraction * cluster.n_nodes))
    for u in order.tolist():
        if len(out) >= cfg.max_automatic:
            break
        key = pending.unit_names[int(units[u])]
        members = [pending.reqs[i] for i in rows[by_unit[start[u]:start[u + 1]]].tolist()]
        waited = now - float(first[u])
        whole = [m.count for m in members if m.kind != KIND_NONE and m.milli == 1000]
        gpus_u = sum(whole)
        if _fits_now(whole, idle_sorted):
            continue  # it only waits for this very cycle: nothing to protect
        idx = pick_nodes(cluster, state, gpus_u, taken, release())
        if not idx or len(idx) > budget:
            continue
        budget -= len(idx)
        taken.update(idx)
        is_gang = len(members) > 1 or ANN_GANG in members[0].annotations
        out.append(Reservation(
            name=f"auto-{key.replace('/', '-')}", owner_job=key if is_gang else "",
            owner_queue="", nodes=[cluster.names[i] for i in idx], gpus=gpus_u,
            start=_needed_at(release()[idx], now), until=now + cfg.ttl, automatic=True,
            reason=f"waited {waited / 60:.0f} min for {gpus_u} GPUs"))
        if not is_gang:
            out[-1].owner_job = members[0].name  # a single pod: it owns its reservation by name
    return out


def _needed_at(release: np.ndarray, now: float) -> float:
    """When an automatic reservation's owner needs its nodes: when their running pods end, or
    now if that is unknown (a pod without an expected runtime) -- backfill must end before it, and
    infinity would let every pod that declares any runtime backfill."""
    end = float(release.max())
    return max(now, end) if np.isfinite(end) else now


def _fits_now(counts: list, idle_sorted: np.ndarray) -> bool:
    """Could pods asking for ``counts`` whole GPUs (largest first) go to today's idle GPUs, first
    fit over nodes by idle count? A cheap, optimistic test (CPU and memory are not looked at)."""
    free = idle_sorted.astype(np.int64).copy()
    for c in sorted(counts, reverse=True):
        hit = np.flatnonzero(free >= c)
        if not hit.size:
            return False
        free[hit[-1]] -= c  # the tightest node that fits
    return True


def grant_access(reqs: list, reservations: list, tree, now: float) -> list:
    """Each pending pod's constraint, extended with the reservations it may use: as owner (its
    queue, its gang/KaiwoJob, or itself), or as backfill (declared runtime ends before needed)."""
    if not reservations:
        return reqs
    out = []
    for r in reqs:
        unit = unit_of(r)
        access = set()
        for res in reservations:
            owner = (res.owner_queue and res.owner_queue == (r.queue or "default")) or \
                    (res.owner_job and res.owner_job == unit)
            backfill = r.expected_runtime is not None and now + r.expected_runtime <= res.start
            if owner or backfill:
                access.add(res.name)
        if access:
            r = replace(r, constraint=replace(r.constraint, reservations=frozenset(access)))
        out.append(r)
    return out


@register
class Reservations(Plugin):
    """Keeps pods off nodes held by reservations they may not use. Configure with
    ``reservations=[Reservation, ...]`` (the cycle does)."""

    name = "reservations"
    config_schema = {"reservations": (list, [], "Reservation objects in force")}

    def filter(self, ctx):
        held = self.config["reservations"]
        if not held:
            return None
        c, n = ctx.shape
        mask = np.ones((c, n), dtype=bool)
        for res in held:
            cols = [ctx.cluster.index(x) for x in res.nodes]
            for i, con in enumerate(ctx.constraints):
                if res.name not in getattr(con, "reservations", ()):
                    mask[i, cols] = False
        return mask
