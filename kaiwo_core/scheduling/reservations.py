"""Reservations: nodes, GPUs or XCDs held for a queue or a job, with an expiry, and backfill.

Two sources:

* ``KaiwoReservation`` (``kaiwo.ai/v1alpha2``), declared by an operator::

      metadata: {name: big-train}
      spec:
        queue: research            # or job: ml/train (a KaiwoJob or gang, "namespace/name")
        # what to hold, exactly one of:
        nodes: [node-a, node-b]    # whole nodes
        gpus: 16                   # an amount of GPUs: Kaiwo picks the fewest whole nodes
        node: node-a               # with gpus: k (k logical GPUs of that node) or xcds: k (k XCDs)
        devices:                   # named GPUs of a node: all its partitions, one, or some XCDs
          - {node: node-a, gpu: 3}
          - {node: node-a, gpu: 4, partition: 1}
          - {node: node-a, gpu: 5, xcds: [0, 1]}
        start: "2026-11-28T16:00:00Z"   # when the owner needs it (default: now)
        until: "2026-11-28T20:00:00Z"   # or ttl: 4h; an expired reservation releases itself

* automatic: a pending gang or multi-GPU pod that has waited longer than
  ``ReservationConfig.starvation`` while smaller pods keep taking its capacity gets capacity that
  will free up soonest held for it, for ``ReservationConfig.ttl``: a pod that one node can take gets
  only the GPUs it asks for on one node (the rest of the node stays open to everyone); a gang, or a
  pod larger than any node, gets whole nodes.

Held capacity is used by the owner's pods and by *backfill*: pods that declare
``kaiwo.ai/expected-runtime`` short enough to end before the reservation is needed (``start``; for an
automatic reservation, when the running pods on its nodes are expected to end -- unknown runtimes
mean "needed now", so nothing backfills). Each pod's :class:`~kaiwo_core.model.requests.Constraint`
carries the reservations it may use. Whole nodes are kept from everyone else by a filter plugin over
constraint classes (one row of the class mask per class); held GPUs and XCDs by the placement
kernel's device checks, which take a per-device reservation and, per class, the reservations it may
use (:func:`device_holds`): a held GPU is not there for other pods, and a GPU with held XCDs takes
other pods only if they are XCD-isolated, on its other XCDs. A device is held by one reservation
at most.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import numpy as np

from ..model.durations import parse_duration
from ..model.errors import (Collector, ObjectError, field_int, field_list, field_map, field_str, guarded, metadata,
                            object_name)
from ..model.limits import INT32_MAX, MAX_DEVICES
from .gangs import ANN_GANG, unit_of
from ..plugins import Plugin, register
from .podtable import PodTable
from ..model.requests import KIND_NONE


_LAST_DATE = 253402300800.0  # 10000-01-01T00:00:00Z


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
    #: (a reservation of some GPUs of a node counts as the node)


@dataclass
class Reservation:
    name: str
    owner_queue: str = ""          #: leaf queue whose pods may use it
    owner_job: str = ""            #: "namespace/name" of a gang / KaiwoJob whose pods may use it
    nodes: list = field(default_factory=list)   #: node names held whole
    gpus: int = 0                  #: GPUs wanted (amount reservations), whole GPUs
    node: str = ""                 #: the node of an amount of its GPUs (gpus) or XCDs (xcds)
    xcds: int = 0                  #: XCDs wanted on ``node``
    wanted: list = field(default_factory=list)  #: spec.devices: (node, gpu, partition|None, xcd mask|0)
    held: list = field(default_factory=list)    #: (global device index, XCD mask held, 0 = whole)
    held_out: list = field(default_factory=list)  #: the held devices as {node, gpu, partition, xcds}
    start: float = 0.0             #: when the owner needs it (backfill must end before)
    until: float = float("inf")    #: expiry
    automatic: bool = False
    reason: str = ""

    def to_dict(self) -> dict:
        def t(x):
            if x in (0.0, float("inf")) or not 0 < x < _LAST_DATE:  # no date to show (past year 9999)
                return None
            return datetime.fromtimestamp(x, tz=timezone.utc).isoformat().replace("+00:00", "Z")
        return {"name": self.name, "queue": self.owner_queue or None, "job": self.owner_job or None,
                "nodes": list(self.nodes), "devices": list(self.held_out), "neededAt": t(self.start),
                "until": t(self.until), "automatic": self.automatic, "reason": self.reason}


def _time(name: str, fld: str, raw) -> float:
    if isinstance(raw, datetime):
        return (raw if raw.tzinfo else raw.replace(tzinfo=timezone.utc)).timestamp()
    try:
        t = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise ReservationError(name, fld, raw, "not an RFC 3339 time") from None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def reservation_spec(obj: dict, now: float) -> Reservation:
    """Decode one KaiwoReservation. Raises ReservationError naming the field and value (every
    independent error: the owner, what is held, and when)."""
    name = object_name(obj)
    meta = metadata(ReservationError, name, obj, "KaiwoReservation")
    spec = field_map(ReservationError, name, obj.get("spec"), "spec")
    r = Reservation(name=name)
    collect = Collector()
    collect(None, _owner, r, name, spec)
    collect(None, _what, r, spec)
    collect(None, _window, r, name, meta, spec, now)
    collect.raise_all()
    r.reason = "declared by a KaiwoReservation"
    return r


def _owner(r: Reservation, name: str, spec: dict) -> None:
    r.owner_queue = field_str(ReservationError, name, spec.get("queue"), "spec.queue")
    r.owner_job = field_str(ReservationError, name, spec.get("job"), "spec.job")
    if bool(r.owner_queue) == bool(r.owner_job):
        raise ReservationError(name, "spec.queue", spec.get("queue"),
                               "name exactly one owner: spec.queue or spec.job")
    if r.owner_job and "/" not in r.owner_job:
        raise ReservationError(name, "spec.job", r.owner_job, "expected namespace/name")


def _window(r: Reservation, name: str, meta: dict, spec: dict, now: float) -> None:
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


_HOLDS = ("nodes", "gpus", "xcds", "devices")


def _what(r: Reservation, spec: dict) -> None:
    """What reservation ``r`` holds, from spec.nodes / gpus / node + gpus or xcds / devices."""
    name = r.name
    given = [k for k in _HOLDS if spec.get(k) is not None]
    if len(given) != 1:
        k = given[1] if given else "nodes"
        raise ReservationError(name, f"spec.{k}", spec.get(k),
                               "give exactly one of spec.nodes, spec.gpus, spec.xcds, spec.devices")
    what = given[0]
    if spec.get("node") is not None:
        if what not in ("gpus", "xcds"):
            raise ReservationError(name, "spec.node", spec["node"], "goes with spec.gpus or spec.xcds")
        r.node = field_str(ReservationError, name, spec["node"], "spec.node")
        if not r.node:
            raise ReservationError(name, "spec.node", r.node, "must be a node name")
    elif what == "xcds":
        raise ReservationError(name, "spec.xcds", spec["xcds"], "needs spec.node (the node to hold XCDs of)")
    if what == "nodes":
        nodes = field_list(ReservationError, name, spec["nodes"], "spec.nodes")
        bad = next((i for i, n in enumerate(nodes) if not isinstance(n, str)), None)
        if not nodes or bad is not None:
            raise ReservationError(name, "spec.nodes" if bad is None else f"spec.nodes[{bad}]",
                                   nodes if bad is None else nodes[bad],
                                   "must be a non-empty list of node names")
        r.nodes = list(nodes)
    elif what == "gpus":
        r.gpus = field_int(ReservationError, name, spec["gpus"], "spec.gpus", 1,
                           MAX_DEVICES if r.node else INT32_MAX)
    elif what == "xcds":
        r.xcds = field_int(ReservationError, name, spec["xcds"], "spec.xcds", 1, MAX_DEVICES * 8)
    else:
        devices = field_list(ReservationError, name, spec["devices"], "spec.devices")
        if not devices or len(devices) > MAX_DEVICES:
            raise ReservationError(name, "spec.devices", f"{len(devices)} entries",
                                   f"must list 1 to {MAX_DEVICES} GPUs")
        for i, d in enumerate(devices):
            at = f"spec.devices[{i}]"
            d = field_map(ReservationError, name, d, at)
            unknown = sorted(set(d) - {"node", "gpu", "partition", "xcds"})
            if unknown:
                raise ReservationError(name, f"{at}.{unknown[0]}", d[unknown[0]],
                                       "unknown field (expected node, gpu, partition, xcds)")
            node = field_str(ReservationError, name, d.get("node"), f"{at}.node")
            if not node:
                raise ReservationError(name, f"{at}.node", d.get("node"), "must be a node name")
            gpu = field_int(ReservationError, name, d.get("gpu"), f"{at}.gpu", 0, MAX_DEVICES - 1)
            part = None if d.get("partition") is None else \
                field_int(ReservationError, name, d["partition"], f"{at}.partition", 0, 7)
            mask = 0
            if d.get("xcds") is not None:
                xcds = field_list(ReservationError, name, d["xcds"], f"{at}.xcds")
                if not xcds:
                    raise ReservationError(name, f"{at}.xcds", xcds, "must list XCDs (or leave it out: all)")
                for j, x in enumerate(xcds):
                    bit = 1 << field_int(ReservationError, name, x, f"{at}.xcds[{j}]", 0, 7)
                    if mask & bit:
                        raise ReservationError(name, f"{at}.xcds[{j}]", x, "listed twice")
                    mask |= bit
            r.wanted.append((node, gpu, part, mask))


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
    taken: set = set()      # nodes held whole
    dev_taken: dict = {}    # device -> name of the reservation holding it (or some of its XCDs)
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
            partly = _partly_held(cluster, dev_taken)
            clash = [n for n, i in zip(r.nodes, idx) if i in taken or i in partly]
            if clash:
                errors.append(ReservationError(r.name, "spec.nodes", clash[0], "already held by another reservation"))
                continue
        elif r.node or r.wanted:
            err = _hold_devices(cluster, state, r, taken, dev_taken)
            if err is not None:
                errors.append(err)
                continue
            out.append(r)
            continue
        else:
            idx = pick_nodes(cluster, state, r.gpus, taken | _partly_held(cluster, dev_taken), release())
            if not idx:
                errors.append(ReservationError(r.name, "spec.gpus", r.gpus, "more GPUs than the free nodes have"))
                continue
            r.nodes = [cluster.names[i] for i in idx]
        taken.update(idx)
        out.append(r)
    if cfg.starvation > 0:
        out += _automatic(cluster, state, pending, rows, now, cfg, taken, dev_taken, release)
    return out, errors, expired


def _partly_held(cluster, dev_taken: dict) -> set:
    """Nodes with a device (or some XCDs) held by a reservation."""
    if not dev_taken:
        return set()
    devs = np.fromiter(dev_taken, dtype=np.int64, count=len(dev_taken))
    return set((np.searchsorted(cluster.node_dev_start, devs, side="right") - 1).tolist())


def _bits(mask: int) -> list:
    return [b for b in range(8) if mask >> b & 1]


def _take(cluster, r: Reservation, held: list, dev_taken: dict) -> None:
    """Record ``held`` [(device, XCD mask held, 0 = whole)] as what ``r`` holds."""
    r.held = held
    r.held_out = []
    for d, mask in held:
        n = int(np.searchsorted(cluster.node_dev_start, d, side="right") - 1)
        r.held_out.append({"node": cluster.names[n], "gpu": int(cluster.dev_gpu[d]),
                           "partition": int(cluster.dev_partition[d]),
                           "xcds": _bits(mask or int(cluster.dev_xcd_mask[d]))})
        dev_taken[d] = r.name


def _hold_devices(cluster, state, r: Reservation, taken: set, dev_taken: dict):
    """Resolve a reservation of GPUs or XCDs of a node (spec.node + gpus / xcds) or of named
    GPUs (spec.devices) to devices, recording them; a ReservationError if it cannot hold them."""
    def node_devices(node: str, fld: str):
        n = cluster.index(node)
        if n < 0:
            return None, ReservationError(r.name, fld, node, "no such node")
        if n in taken:
            return None, ReservationError(r.name, fld, node, "already held whole by another reservation")
        return range(int(cluster.node_dev_start[n]), int(cluster.node_dev_start[n + 1])), None

    if r.node:
        devs, err = node_devices(r.node, "spec.node")
        if err is not None:
            return err
        # Soonest usable first: idle devices (free XCDs), then by index.
        devs = sorted((d for d in devs if d not in dev_taken), key=lambda d: (state.dev_state[d] != 0, d))
        if r.gpus:
            if len(devs) < r.gpus:
                return ReservationError(r.name, "spec.gpus", r.gpus,
                                        f"node {r.node} has {len(devs)} GPUs not held by another reservation")
            _take(cluster, r, sorted((d, 0) for d in devs[:r.gpus]), dev_taken)
            return None
        held, need = [], r.xcds
        for d in devs:
            mask, free = int(cluster.dev_xcd_mask[d]), int(state.dev_xcd_free[d])
            if not mask or not need:
                continue
            take = sorted(_bits(mask), key=lambda b: (not free >> b & 1, b))[:need]
            need -= len(take)
            held.append((d, sum(1 << b for b in take)))
        if need:
            return ReservationError(r.name, "spec.xcds", r.xcds,
                                    f"node {r.node} has {r.xcds - need} XCDs not held by another reservation")
        _take(cluster, r, sorted(held), dev_taken)
        return None
    held: dict = {}
    for i, (node, gpu, part, mask) in enumerate(r.wanted):
        at = f"spec.devices[{i}]"
        devs, err = node_devices(node, f"{at}.node")
        if err is not None:
            return err
        devs = [d for d in devs if cluster.dev_gpu[d] == gpu and (part is None or cluster.dev_partition[d] == part)]
        if not devs:
            return ReservationError(r.name, f"{at}.gpu" if part is None else f"{at}.partition",
                                    gpu if part is None else part,
                                    f"node {node} has no GPU {gpu}" + ("" if part is None else f" partition {part}"))
        if mask:
            have = int(np.bitwise_or.reduce(cluster.dev_xcd_mask[devs]))
            if mask & ~have:
                return ReservationError(r.name, f"{at}.xcds", _bits(mask),
                                        f"GPU {gpu} on {node} has XCDs {_bits(have)}")
            devs = [d for d in devs if cluster.dev_xcd_mask[d] & mask]
        for d in devs:
            if d in dev_taken or d in held:
                return ReservationError(r.name, at, {"node": node, "gpu": gpu},
                                        "already held by " + (f"reservation {dev_taken[d]}" if d in dev_taken
                                                              else "an earlier entry of this one"))
            held[d] = mask & int(cluster.dev_xcd_mask[d])
    _take(cluster, r, sorted(held.items()), dev_taken)
    return None


def device_holds(cluster, constraints: list, reservations: list) -> dict:
    """The placement kernel's device-reservation inputs (batch keys ``dev_resv``, ``dev_resv_xcds``,
    ``class_resv``) for ``constraints`` (one row per class), or {} when no reservation holds devices:
    the kernel then runs exactly as without reservations."""
    by_dev = [r for r in reservations if r.held]
    if not by_dev:
        return {}
    resv = np.full(cluster.n_devices, -1, dtype=np.int32)
    xcds = np.zeros(cluster.n_devices, dtype=np.uint32)
    for k, r in enumerate(by_dev):
        for d, mask in r.held:
            resv[d], xcds[d] = k, mask
    access = np.array([[r.name in getattr(c, "reservations", ()) for r in by_dev] for c in constraints],
                      dtype=np.uint8).reshape(len(constraints), len(by_dev))
    return {"dev_resv": resv, "dev_resv_xcds": xcds, "class_resv": access}


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
               taken: set, dev_taken: dict, release) -> list:
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
        is_gang = len(members) > 1 or ANN_GANG in members[0].annotations
        # A single pod owns its reservation by name.
        res = Reservation(name=f"auto-{key.replace('/', '-')}", owner_job=key if is_gang else members[0].name,
                          owner_queue="", gpus=gpus_u, until=now + cfg.ttl, automatic=True,
                          reason=f"waited {waited / 60:.0f} min for {gpus_u} GPUs")
        n = -1 if is_gang else _pick_node_for(cluster, state, gpus_u, taken, dev_taken, release())
        if n >= 0 and budget < 1:
            continue
        if n >= 0 and gpus_u < cluster.node_dev_start[n + 1] - cluster.node_dev_start[n]:
            # one pod one node can take: only the GPUs it asks for, the rest stays open
            res.node = cluster.names[n]
            _hold_devices(cluster, state, res, taken, dev_taken)
            idx = [n]
        elif n >= 0:  # it needs every GPU of the node: hold the node (its CPU and memory too)
            idx = [n]
            taken.add(n)
            res.nodes = [cluster.names[n]]
        else:
            idx = pick_nodes(cluster, state, gpus_u, taken | _partly_held(cluster, dev_taken), release())
            if not idx or len(idx) > budget:
                continue
            taken.update(idx)
            res.nodes = [cluster.names[i] for i in idx]
        budget -= len(idx)
        res.start = _needed_at(release()[idx], now)
        out.append(res)
    return out


def _pick_node_for(cluster, state, gpus: int, taken: set, dev_taken: dict, release: np.ndarray) -> int:
    """The node to hold ``gpus`` GPUs of for one pod: not held whole, with that many devices no
    reservation holds; soonest free first, then most such devices idle, then index. -1 if none."""
    best, best_key = -1, None
    for n in range(cluster.n_nodes):
        if n in taken:
            continue
        devs = [d for d in range(int(cluster.node_dev_start[n]), int(cluster.node_dev_start[n + 1]))
                if d not in dev_taken]
        if len(devs) < gpus:
            continue
        key = (release[n], -sum(state.dev_state[d] == 0 for d in devs), n)
        if best_key is None or key < best_key:
            best, best_key = n, key
    return best


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
    """Keeps pods off nodes, GPUs and XCDs held by reservations they may not use: nodes by its
    filter, devices through the kernel's device checks (:meth:`kernel_args`). Configure with
    ``reservations=[Reservation, ...]`` (the cycle does)."""

    name = "reservations"
    config_schema = {"reservations": (list, [], "Reservation objects in force")}

    def filter(self, ctx):
        held = [r for r in self.config["reservations"] if r.nodes]
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

    def kernel_args(self, ctx):
        return device_holds(ctx.cluster, ctx.constraints, self.config["reservations"])

    def explain(self, ctx, con, nodes):
        names = ctx.cluster.names
        holder = {x: res.name for res in self.config["reservations"] for x in res.nodes
                  if res.name not in getattr(con, "reservations", ())}
        return [f"held by reservation {holder.get(names[i], '?')}" for i in nodes]
