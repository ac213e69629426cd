"""One scheduling cycle on a snapshot: check, share, order, place, decide.

The steps follow the pattern of the best schedulers (KAI's session actions, Kueue's numbered
steps):

1. check   -- requests no node could ever satisfy, and pods on unknown or non-leaf queues, are
              rejected with the field and the reason;
2. share   -- deserved and fair shares of every queue over running + pending pods (compiled H-DRF);
3. order   -- pending pods across queues by entitlement and within a queue by effective priority
              (compiled keyed heap); pods a queue limit holds back stay pending with that reason;
              preemptors nominated in an earlier cycle (status.nominatedNodeName) go first, a
              gang with a nominated member whole;
4. place   -- the placement kernel, gangs all-or-nothing; then reclaim and preemption for the
              pods it left (preemption.py; a gang's victims found for all its members at once);
5. decide  -- bindings, pending reasons, queue status, decoded on demand.

The output contract (:meth:`Decisions.to_dict`, the ``kaiwo schedule --output json`` shape) is the
stable interface of DESIGN.md.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .accounting import assign_queues, held_vectors, request_vectors
from .fairness import ORDER_HELD_LIMIT, OrderingConfig, Shares, compute_shares, order_pending, \
    subtree_sums, within_queue_key
from .gangs import gang_id, gang_of
from . import model_columns
from .placement import Placement, default_pipeline, place
from ..plugins import CycleContext, Pipeline
from .queues import GPU, MEMORY, RESOURCES, QueueTree, human
from .podtable import PodTable
from ..model.fields import spec_warnings
from ..model.requests import (
    ANN_GANG,
    ANN_GANG_MIN,
    ANN_MEMORY,
    ANN_MODEL,
    KIND_NONE,
    KIND_XCD,
    LABEL_QUEUE,
    PodError,
    batch_from_requests,
)
from .preemption import PreemptionConfig, plan_preemptions
from .reservations import ReservationConfig, Reservations, active_reservations, grant_access
from .snapshot import Snapshot


@dataclass
class Decisions:
    """What a cycle decided, columnar inside, decoded on demand."""

    snapshot: Snapshot
    placement: Placement | None
    tree: QueueTree
    shares: Shares
    pending_rows: np.ndarray                          #: queue row of each placement batch row
    running_rows: np.ndarray                          #: queue row of each running pod (-1 = none)
    held: list = field(default_factory=list)          #: (pod name, reason) held by queue limits
    held_rows: np.ndarray | None = None               #: queue row of each pod of ``held``
    reservations: list = field(default_factory=list)  #: Reservation in force this cycle
    reservation_errors: list = field(default_factory=list)
    expired: list = field(default_factory=list)       #: names of reservations that expired
    preemption: object = None                         #: PreemptionPlan (reclaim and preemption)
    rejected: list = field(default_factory=list)      #: PodError (snapshot's and the cycle's)
    warnings: list = field(default_factory=list)      #: str: the cycle's, after the snapshot's
    timings: dict = field(default_factory=dict)       #: seconds per step

    def bindings(self, sizes: bool = False) -> list[dict]:
        """Pod, node and devices (the ``kaiwo.ai/gpu-assignment`` entries; with ``sizes``, each
        also says in absolute terms what the pod gets, see :func:`device_sizes`)."""
        p = self.placement
        if p is None:
            return []
        c = self.snapshot.cluster
        names = c.names
        out = [{"pod": p.batch.names[i], "node": names[p.node[i]], "devices": p.devices(i)}
               for i in np.flatnonzero(p.placed).tolist()]
        if sizes:
            for b, i in zip(out, np.flatnonzero(p.placed).tolist()):
                device_sizes(c, int(p.node[i]), b["devices"], p.batch.kind[i] == KIND_XCD)
        return out

    def pending(self) -> list[dict]:
        out = [{"pod": name, "reason": why} for name, why in self.snapshot.ignored]
        out += [{"pod": name, "reason": why} for name, why in self.held]
        p = self.placement
        if p is not None:
            nominated = self.preemption.pending_reasons() if self.preemption is not None else {}
            out += [{"pod": p.batch.names[i], "reason": nominated.get(p.batch.names[i]) or p.reason(i)}
                    for i in np.flatnonzero(~p.placed)]
        return out

    def running(self) -> list[dict]:
        out = [{"pod": r.name, "node": r.node, "devices": r.assignment or []}
               for r in self.snapshot.running]
        out += [{"pod": r.name, "node": r.node, "devices": [], "phase": "finished"}
                for r in self.snapshot.finished]
        return out

    def queue_allocated(self) -> np.ndarray:
        """[Q, R] used by running pods plus this cycle's bindings (internal rows = subtree sums)."""
        alloc = np.zeros((len(self.tree), self.tree.n_res), dtype=np.int64)
        p = self.placement
        if p is not None and len(p.batch):
            vec = held_vectors(p, self.snapshot.cluster)
            placed = p.placed
            if self.tree.models:  # a binding's GPUs count in its node's model column
                cols = model_columns.node_columns(self.tree, self.snapshot.cluster)
                vec = model_columns.widen(self.tree, vec, np.where(placed, cols[np.maximum(p.node, 0)], -1))
            np.add.at(alloc, self.pending_rows[placed], vec[placed])
        return self.shares.running + subtree_sums(self.tree, alloc)

    def queues(self) -> list[dict]:
        t, s = self.tree, self.shares
        alloc = self.queue_allocated()
        pending = np.bincount(self.pending_rows[~self.placement.placed], minlength=len(t)) \
            if self.placement is not None else np.zeros(len(t), dtype=np.int64)
        if self.held_rows is not None and len(self.held_rows):  # held back by a limit or a gang
            pending = pending + np.bincount(self.held_rows, minlength=len(t))

        def vec(v):
            out = {res: human(i, int(v[i])) for i, res in enumerate(RESOURCES)}
            if t.models:
                out["gpuModels"] = {m: human(0, int(v[3 + j])) for j, m in enumerate(t.models)}
            return out
        return [{"name": spec.name, "parent": spec.parent or None, "priority": spec.priority,
                 "deserved": vec(s.deserved[q]), "fairShare": vec(s.fair_share[q]),
                 "allocated": vec(alloc[q]), "demand": vec(s.demand[q]),
                 "pendingPods": int(pending[q])}
                for q, spec in enumerate(t.specs)]

    def to_dict(self) -> dict:
        """The ``kaiwo schedule --output json`` document (DESIGN.md, stable interface)."""
        bindings, pending, running = self.bindings(sizes=True), self.pending(), self.running()
        rejected = [e.to_dict() for e in self.rejected]
        snap = self.snapshot
        return {
            "bindings": bindings,
            "preemptions": self.preemption.preemptions() if self.preemption is not None else [],
            "pending": pending,
            "rejected": rejected,
            "running": running,
            "queues": self.queues(),
            "invalidNodes": [e.to_dict() for e in snap.cluster.errors],
            "invalidQueues": [e.to_dict() for e in self.tree.errors],
            "invalidJobs": [e.to_dict() for e in snap.job_errors],
            "invalidPriorityClasses": [e.to_dict() for e in snap.class_errors],
            "reservations": [r.to_dict() for r in self.reservations],
            "expiredReservations": list(self.expired),
            "invalidReservations": [e.to_dict() for e in self.reservation_errors],
            "warnings": list(snap.warnings) + self.warnings,
            "stats": {
                "nodes": snap.cluster.n_nodes, "gpus": snap.cluster.n_devices,
                "queues": len(self.tree),
                "pods": len(bindings) + len(pending) + len(rejected) + len(running),
                "bound": len(bindings), "pending": len(pending), "rejected": len(rejected),
                "running": len(running),
                "timingsMs": {k: round(v * 1e3, 3) for k, v in self.timings.items()},
            },
        }


def device_sizes(cluster, node: int, devices: list[dict], xcd: bool) -> None:
    """Add to each device entry what the pod gets of it in absolute terms (a fraction is of one
    logical GPU, whose size depends on the partition mode): ``gpuCUs`` and ``gpuMemoryGiB`` of the
    logical GPU, ``cus`` (its XCDs' CUs for an XCD-isolated pod, else the fraction of the GPU's)
    and ``memoryGiB`` held. CUs are 0 on generic GPUs (unknown)."""
    per_xcd = cluster.dev_cus_per_xcd()
    for d in devices:
        dev = cluster.device_index(node, d["gpu"], d["partition"])
        k = int(per_xcd[dev])
        gpu_cus = bin(int(cluster.dev_xcd_mask[dev])).count("1") * k
        d["gpuCUs"] = gpu_cus
        d["gpuMemoryGiB"] = round(int(cluster.dev_mem_cap[dev]) / 1024, 3)
        d["cus"] = len(d["xcds"]) * k if xcd else round(d["fraction"] * gpu_cus)
        d["memoryGiB"] = round(d["memoryMiB"] / 1024, 3)


def model_warnings(cluster, batch) -> list[str]:
    """A ``kaiwo.ai/gpu-model`` that no node of the cluster has (a typo, or a model not there):
    one warning per set of models asked, naming the first pod by name and how many more."""
    have = {nd.model.upper() for nd in cluster.nodes if nd.gpus}
    pods: dict[frozenset, list[int]] = {}
    for c, con in enumerate(batch.constraints):
        if con.gpu_models is not None and not con.gpu_models & have:
            pods.setdefault(con.gpu_models, []).extend(np.flatnonzero(batch.cls == c).tolist())
    out = []
    for models, rows in sorted(pods.items(), key=lambda kv: sorted(kv[0])):
        if not rows:
            continue
        first = min(batch.names[i] for i in rows)
        more = f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""
        out.append(f"pod {first}{more}: {ANN_MODEL} names {'|'.join(sorted(models))}, which no node "
                   f"has (the cluster has: {', '.join(sorted(have)) or 'no GPUs'})")
    return out


def impossible(snapshot: Snapshot, pending: PodTable) -> tuple[np.ndarray, list]:
    """Split off requests no node of this cluster could ever satisfy (as opposed to pods that
    merely wait): GPU memory beyond the largest device. Returns the rows of ``pending`` kept and
    the errors."""
    b = pending.batch
    if not snapshot.cluster.n_devices:
        return np.arange(len(pending), dtype=np.int64), []
    cap = int(snapshot.cluster.dev_mem_cap.max())
    bad = (b.kind != KIND_NONE) & (b.gpu_mem > cap)
    errors = [PodError(pending.reqs[i].name, f"metadata.annotations.{ANN_MEMORY}", pending.reqs[i].gpu_memory,
                       f"larger than any GPU in the cluster (largest: {cap} MiB)")
              for i in np.flatnonzero(bad).tolist()]
    return np.flatnonzero(~bad), errors


def gangs(pending: PodTable, rows: np.ndarray, running: PodTable, queues: np.ndarray | None = None,
          tree: QueueTree | None = None, rejected: list = ()) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray, list, list]:
    """Gang id per pending pod of ``rows`` (-1 none), members still needed from this batch, which
    of ``rows`` are kept (bool), the errors (a malformed minimum; members that disagree on it;
    members in different queues) and the members that wait, as (pod name, reason).

    A gang waits -- none of its members is placed -- when members were rejected (``rejected``:
    PodErrors of this cycle so far, from decoding or the checks, and this step's own) and too few
    are left for its minimum. Without an explicit minimum that is every member, so a gang with a
    rejected member never starts partly; the reason names the member and why it was rejected.

    ``queues`` (queue row of each of ``rows``) and ``tree`` name the queues. Only pods with a gang
    annotation are looked at (``PodTable.gang_rows``): the rest are in no gang."""
    marked = pending.in_gang[rows]
    positions = np.flatnonzero(marked).tolist()
    members = [pending.reqs[i] for i in rows[marked].tolist()]
    info, errors = {}, []
    for r in members + [running.reqs[i] for i in running.gang_rows.tolist()]:
        try:
            info[r.name] = gang_of(r)
        except PodError as e:
            e.gang = gang_id(r)
            errors.append(e)
    mins: dict[str, set] = {}
    for name, g in info.items():
        if g:
            mins.setdefault(g[0], set()).add(g[1])
    bad_gangs = {g for g, m in mins.items() if len(m) > 1}
    # A gang belongs to one queue (the ordering kernel refuses anything else): its members are
    # rejected, each told which queues the gang spans.
    spans: dict[str, set] = {}
    if queues is not None:
        for pos, r in zip(positions, members):
            if g := info.get(r.name):
                spans.setdefault(g[0], set()).add(int(queues[pos]))
    split = {g: q for g, q in spans.items() if len(q) > 1}
    kept = np.ones(len(rows), dtype=bool)
    for pos, r in zip(positions, members):
        g = info.get(r.name, False)
        if g is False:
            kept[pos] = False  # malformed: already an error
        elif g and g[0] in bad_gangs:
            errors.append(PodError(r.name, f"metadata.annotations.{ANN_GANG_MIN}",
                                   r.annotations.get(ANN_GANG_MIN),
                                   f"members of gang {g[0]} disagree on the minimum "
                                   f"({', '.join(map(str, sorted(mins[g[0]])))})"))
            kept[pos] = False
        elif g and g[0] in split:
            names = sorted(tree.specs[q].name if tree is not None else str(q) for q in split[g[0]])
            errors.append(PodError(r.name, f"metadata.labels.{LABEL_QUEUE}", r.queue or None,
                                   f"members of gang {g[0]} are in different queues ({', '.join(names)}); "
                                   "a gang belongs to one queue"))
            kept[pos] = False
    running_members: dict[str, int] = {}
    for i in running.gang_rows.tolist():
        if g := info.get(running.reqs[i].name):
            running_members[g[0]] = running_members.get(g[0], 0) + 1

    def sizes() -> dict[str, int]:
        size: dict[str, int] = {}
        for pos, r in zip(positions, members):
            if kept[pos] and (g := info[r.name]):
                size[g[0]] = size.get(g[0], 0) + 1
        return size

    # Members lost to rejection, by gang: the snapshot's PodErrors carry the gang they name; the
    # cycle's are found by pod name, among every pending pod in a gang -- the checks before this
    # step (impossible GPU memory, unknown queue) already took their pods out of ``rows``.
    gang_of_name = {r.name: g for i in pending.gang_rows.tolist()
                    if (g := gang_id(r := pending.reqs[i]))}
    lost: dict[str, dict] = {}  # gang -> {pod name: why it is not among the members placed}
    for e in [*rejected, *errors]:
        if g := getattr(e, "gang", None) or gang_of_name.get(e.name):
            lost.setdefault(g, {}).setdefault(e.name, f"was rejected: {e.message()}")
    waiting = []
    if lost:
        size = sizes()
        for pos, r in zip(positions, members):
            g = info.get(r.name)
            if not kept[pos] or not g or g[0] not in lost:
                continue
            gone = lost[g[0]]
            have = size[g[0]] + running_members.get(g[0], 0)
            want = have + len(gone) if g[1] == 0 else g[1]
            if have < want:
                first = min(gone)  # by name: the same reason whatever order pods were listed in
                why = gone[first]
                more = f" (and {len(gone) - 1} more)" if len(gone) > 1 else ""
                waiting.append((r.name, f"gang {g[0]} cannot start: it needs {want} members and {have} "
                                        f"can be placed; {first} {why}{more}"))
                kept[pos] = False
    size = sizes()
    ids: dict[str, int] = {}
    slot = np.cumsum(kept) - 1  # position of each kept row among the kept ones
    gang = np.full(int(kept.sum()), -1, dtype=np.int32)
    need = np.zeros(len(gang), dtype=np.int32)
    for pos, r in zip(positions, members):
        if not kept[pos] or not (g := info[r.name]):
            continue
        gid, minimum = g
        i = slot[pos]
        gang[i] = ids.setdefault(gid, len(ids))
        total = size[gid] + running_members.get(gid, 0)
        want = total if minimum == 0 else minimum
        need[i] = max(0, want - running_members.get(gid, 0))
    return gang, need, kept, errors, waiting


def _rank(created: np.ndarray, name_rank: np.ndarray) -> np.ndarray:
    """Rank by (creation time, ``name_rank``: a PodTable's rank by namespace/name and uid)."""
    order = np.lexsort((name_rank, created))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def schedule(snapshot: Snapshot, strategy: str = "binpack", pipeline: Pipeline | None = None,
             ordering: OrderingConfig = OrderingConfig(), now: float | None = None,
             reserving: ReservationConfig = ReservationConfig(),
             preempting: PreemptionConfig = PreemptionConfig()) -> Decisions:
    """Run one cycle on a copy of the snapshot's state; the snapshot itself is not changed.

    ``now`` (epoch seconds) ages pending pods and expires reservations; by default the newest
    creation time among the pods, so that a dump always gives the same decisions (``kaiwo
    schedule`` and ``kaiwo explain`` pass the wall clock unless ``--now dump``; the controller
    passes its clock).
    """
    t0 = time.perf_counter()
    _check_arguments(snapshot, pipeline, ordering, now, reserving, preempting)
    pipeline = pipeline or default_pipeline(strategy)
    cluster = snapshot.cluster
    capacity = np.array([cluster.n_devices * 1000, cluster.node_cpu_cap.sum(),
                         cluster.node_mem_cap.sum()], dtype=np.int64)

    # 1. check -- on the snapshot's columns: rows are selected, pods are not read one by one
    pend, run = snapshot.pending_table(), snapshot.running_table()
    keep, rejected = impossible(snapshot, pend)
    rejected = list(snapshot.rejected) + rejected
    tree = snapshot.queue_tree()
    capacity = model_columns.capacity(tree, cluster, capacity)
    snapshot.warnings.extend(w for w in tree.warnings if w not in snapshot.warnings)
    run_rows, run_err = assign_queues(tree, run)
    for e in run_err:  # running pods run whatever their label says: account them nowhere
        snapshot.warnings.append(f"running pod {e.name}: {e.message()}; not counted in any queue")
    rows, errs = assign_queues(tree, pend, keep)
    rejected += errs
    keep, rows = keep[rows >= 0], rows[rows >= 0]
    if now is None:
        created = np.concatenate([pend.batch.created[keep], run.batch.created])
        now = float(created.max()) if created.size else 0.0
    reservations, res_errors, expired = active_reservations(snapshot, tree, pend, keep, now, reserving)
    if reservations:
        pipeline = Pipeline([*pipeline.plugins, Reservations(reservations=reservations)])
    gang, need, kept, errs, gang_waits = gangs(pend, keep, run, rows, tree, rejected)
    rejected += errs
    waiting = {name for name, _ in gang_waits}
    wait_rows = [int(rows[j]) for j in np.flatnonzero(~kept & pend.in_gang[keep]).tolist()
                 if pend.reqs[int(keep[j])].name in waiting]
    keep, rows = keep[kept], rows[kept]
    if reservations:  # constraints name the reservations each pod may use: intern them anew
        batch = batch_from_requests(grant_access([pend.reqs[i] for i in keep.tolist()], reservations,
                                                 tree, now))
    else:
        batch = pend.batch.subset(keep)
    if (gang >= 0).any():
        batch.gang, batch.gang_need = gang, need
        names = {}
        for i in np.flatnonzero(gang >= 0).tolist():
            r = batch.pods[i]
            names[int(gang[i])] = f"{r.name.split('/', 1)[0]}/{r.annotations[ANN_GANG]}"
        batch.gang_names = [names[g] for g in range(len(names))]
    keep_run = run_rows >= 0
    run_req = run.held[keep_run]  # what running pods hold
    pend_req = request_vectors(batch, cluster)      # estimated until placed (accounting.py)
    key = within_queue_key(batch.priority, batch.created, pend_req[:, 0] / 1000.0, now, ordering)
    if tree.models:  # GPUs also in the model column: running by their node, pending if fixed
        node_col = model_columns.node_columns(tree, cluster)
        on = run.node[keep_run]
        run_req = model_columns.widen(tree, run_req, np.where(on >= 0, node_col[np.maximum(on, 0)], -1))
        pend_req = model_columns.widen(tree, pend_req, model_columns.pending_columns(tree, batch))
    # Ties (equal key) go by creation time, then namespace/name and uid: never by list order.
    tiebreak = _rank(batch.created, pend.rank[keep])
    t1 = time.perf_counter()

    # 2. share
    shares = compute_shares(tree, capacity, run_rows[keep_run], run_req, rows, pend_req, key,
                            run.rank[keep_run], tiebreak)
    t2 = time.perf_counter()

    # 3. order
    plugin_keys = pipeline.order_keys(CycleContext(cluster, snapshot.state, batch))
    if plugin_keys:  # plugins' keys come first within a queue; the effective priority breaks ties
        ranked = np.lexsort((key, *reversed(plugin_keys)))
        key = np.empty(len(ranked), dtype=np.float64)
        key[ranked] = np.arange(len(ranked))
    order, status = order_pending(tree, capacity, shares, rows, pend_req, key, tiebreak, gang)
    # Preemptors nominated in an earlier cycle go first: pods were evicted for them, and if others
    # took the freed capacity their queue would evict again next cycle (churn). A gang with a
    # nominated member goes first whole, its members consecutive and in their order, so that
    # placement places it together.
    nominated = pend.nominated[keep][order]
    g = gang[order]
    if (nominated & (g >= 0)).any():
        nominated = nominated | ((g >= 0) & np.isin(g, g[nominated & (g >= 0)]))
    if nominated.any():
        order = np.concatenate([order[nominated], order[~nominated]])
    limited = np.flatnonzero(status == ORDER_HELD_LIMIT)
    held = [(batch.names[i], _limit_reason(tree, shares, int(rows[i]), pend_req[i]))
            for i in limited] + gang_waits
    held_rows = np.concatenate([rows[limited], np.asarray(wait_rows, dtype=rows.dtype)])
    t3 = time.perf_counter()

    # 4. place
    state = snapshot.state.copy()
    ordered = batch.take(order)
    if tree.models:  # pods of no fixed model: only to models whose per-model limits have room
        ordered.constraints = list(ordered.constraints)
        model_columns.restrict_to_room(tree, cluster, ordered, np.arange(len(order)), rows[order],
                                       pend_req[order], shares.running)
    # The kernel reserves result space for every device the batch asks for. A pod asking for more
    # devices than the largest node has can never be placed: it goes in asking for one more than
    # that (it fails with the kernel's own reason, too few GPUs on the node), so no allocation is
    # sized by the count a pod names.
    most = int(np.diff(cluster.node_dev_start).max()) if cluster.n_nodes else 0
    np.minimum(ordered.count, most + 1, out=ordered.count)
    placement = place(cluster, state, ordered, pipeline, xcd_held=snapshot.dev_xcd_held) \
        if len(ordered) else None
    t4 = time.perf_counter()
    decisions = Decisions(snapshot, placement, tree, shares, rows[order], run_rows, held, held_rows,
                          reservations, res_errors, expired, rejected=rejected,
                          warnings=spec_warnings(snapshot.objects) + model_warnings(cluster, batch))

    # 5. reclaim and preemption, for the pods placement could not place
    if placement is not None and not placement.placed.all() and snapshot.running:
        decisions.preemption = plan_preemptions(decisions, state, pipeline=pipeline, config=preempting,
                                                now=now)
    t5 = time.perf_counter()
    decisions.timings = {"check": t1 - t0, "share": t2 - t1, "order": t3 - t2, "place": t4 - t3,
                         "preempt": t5 - t4, "cycle": t5 - t0}
    return decisions


def _check_arguments(snapshot, pipeline, ordering, now, reserving, preempting) -> None:
    """A wrong argument to :func:`schedule` named with its value, not an AttributeError later."""
    for name, value, cls, article in (("snapshot", snapshot, Snapshot, "a"),
                                      ("ordering", ordering, OrderingConfig, "an"),
                                      ("reserving", reserving, ReservationConfig, "a"),
                                      ("preempting", preempting, PreemptionConfig, "a")):
        if not isinstance(value, cls):
            raise TypeError(f"{name}: expected {article} {cls.__name__}, got {value!r}")
    if pipeline is not None and not isinstance(pipeline, Pipeline):
        raise TypeError(f"pipeline: expected a Pipeline (or None), got {pipeline!r}")
    if now is not None and (isinstance(now, bool) or not isinstance(now, (int, float, np.number))
                            or not np.isfinite(now)):
        raise ValueError(f"now = {now!r}: must be a finite time in epoch seconds (or None)")


def _limit_reason(tree: QueueTree, shares: Shares, q: int, req: np.ndarray) -> str:
    for a in tree.ancestors(q):
        for r, res in enumerate(RESOURCES + tuple(f"gpu/{m}" for m in tree.models)):
            lim = int(tree.wide("limit")[a, r])
            if lim >= 0 and req[r] > 0 and shares.running[a, r] + req[r] > lim:
                u = GPU if r > MEMORY else r  # model columns count GPUs
                return (f"queue {tree.specs[a].name} would exceed its {res} limit "
                        f"({human(u, lim)}; running {human(u, int(shares.running[a, r]))}, "
                        f"this pod {human(u, int(req[r]))})")
    return (f"queue {tree.specs[q].name} or a parent would exceed its limit with the pods "
            "ordered before this one")
