"""Placement: one call that puts a batch of pods onto the cluster with the compiled kernel.

The plugins of a :class:`~kaiwo_core.plugins.Pipeline` give the [C, N] class mask and extra score;
``_core.place_batch`` does the per-pod, per-node work in C++ with the GIL released and updates the
cluster state in place. The result stays columnar (:class:`Placement`); it is decoded to names and
dicts only when a caller asks (CLI, binder).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _core
from ..model.cluster import Cluster, ClusterState, kernel_view
from .filters import DEFAULT_PLUGINS, TOPOLOGY_LABEL, topology_domains
from ..plugins import CycleContext, Pipeline, filter_verdicts
from ..model.requests import KIND_XCD, PodBatch

NUM_REASONS = _core.NUM_REASONS
#: Pending-reason texts, indexed by the kernel's reason codes (kaiwo::Reason).
REASON_TEXT = (
    "excluded by node selector/affinity, taints, GPU model, GPU resource name or a reservation",
    "insufficient CPU",
    "insufficient memory",
    "too many pods",
    "too few GPUs on the node",
    "not enough idle GPUs",
    "insufficient GPU share",
    "insufficient GPU memory",
    "not enough free XCDs",
    "GPUs held by a reservation",
)
#: Distinct filter texts a pending reason lists (the rest are counted together); ``kaiwo explain``
#: lists every node class.
MAX_FILTER_GROUPS = 6
REASON_KEYS = ("NodeFilter", "Cpu", "Memory", "Pods", "GpuCount", "GpuBusy", "GpuShare",
               "GpuMemory", "Xcd", "Reserved")


def default_pipeline(strategy: str = "binpack") -> Pipeline:
    """The built-in filters plus one strategy (``binpack``, ``spread`` or ``frag``)."""
    return Pipeline([*DEFAULT_PLUGINS, strategy])


@dataclass
class Placement:
    """Outcome of one batch, columnar. Row i is ``batch`` row i."""

    cluster: Cluster
    batch: PodBatch
    node: np.ndarray           #: int32[P] chosen node, -1 = not placed
    asg_start: np.ndarray      #: int64[P+1]
    asg_dev: np.ndarray        #: int32 global device index
    asg_milli: np.ndarray      #: int64 compute charged
    asg_mem: np.ndarray        #: int64 GPU MiB charged
    asg_xcds: np.ndarray       #: uint32 XCD mask held (XCD pods) or usable (others)
    reason_counts: np.ndarray  #: int32[P, R] nodes rejected per reason, for unplaced pods
    best_share: np.ndarray     #: int64[P] largest free milli on a node that otherwise fit
    gang_failed: np.ndarray    #: uint8[P] 1 = member of a gang rolled back (too few members fit)
    xcd_held: np.ndarray | None = None  #: uint32[G] XCDs held by XCD pods before this batch
    #: the cycle context: its ``extra["filter_masks"]`` name the filter behind each excluded node
    ctx: CycleContext | None = None
    #: what the kernel was given (batch arrays, class mask, scores, strategy arguments) and the
    #: strategy code: :mod:`kaiwo_core.scheduling.explain` replays a prefix of the batch with them
    kernel_batch: dict | None = None
    strategy: int = 0

    def _held_after(self) -> np.ndarray:
        """XCDs held exclusively by XCD-isolated pods once this batch is in (cached)."""
        held = getattr(self, "_held", None)
        if held is None:
            held = (np.zeros(self.cluster.n_devices, np.uint32) if self.xcd_held is None
                    else self.xcd_held.copy())
            rows = np.flatnonzero(self.placed & (self.batch.kind == KIND_XCD))
            for i in rows:
                a, b = int(self.asg_start[i]), int(self.asg_start[i + 1])
                np.bitwise_or.at(held, self.asg_dev[a:b], self.asg_xcds[a:b])
            self._held = held
        return held

    @property
    def placed(self) -> np.ndarray:
        return self.node >= 0

    def devices(self, i: int) -> list[dict]:
        """Device assignment of row i as the ``kaiwo.ai/gpu-assignment`` entries."""
        c = self.cluster
        out = []
        xcd = self.batch.kind[i] == KIND_XCD
        for k in range(int(self.asg_start[i]), int(self.asg_start[i + 1])):
            d = int(self.asg_dev[k])
            frac = self.asg_milli[k] if xcd else self.batch.milli[i]
            # An XCD pod holds its XCDs; any other pod runs on the partition's XCDs that no XCD
            # pod holds once the whole batch is placed (its CU mask).
            xcds = int(self.asg_xcds[k]) if xcd else \
                int(c.dev_xcd_mask[d]) & ~int(self._held_after()[d])
            out.append({"gpu": int(c.dev_gpu[d]), "partition": int(c.dev_partition[d]),
                        "xcds": _bits(xcds), "fraction": int(frac) / 1000,
                        "memoryMiB": int(self.asg_mem[k])})
        return out

    def reason(self, i: int) -> str:
        """Why row i was not placed, Kubernetes style, with the most common reasons first."""
        n = self.cluster.n_nodes
        b = self.batch
        if n == 0:  # before the gang's count: with no node, no member is kept out by one
            return "no nodes in the cluster"
        if self.gang_failed[i]:
            g = int(b.gang[i])
            fit = int(self._gang_fit()[g])
            name = b.gang_names[g] if g < len(b.gang_names) else f"#{g}"
            why = (f"gang {name}: {fit} of the {int(b.gang_need[i])} members it needs fit, so none "
                   "was placed")
            return why if self.reason_counts[i].sum() == 0 else f"{why}; this one: {self._nodes_reason(i)}"
        return self._nodes_reason(i)

    def _gang_fit(self) -> np.ndarray:
        """Members of each gang that fit on some node (cached): computed once for all the
        members' reasons, not rescanned per member -- a gang of 20,000 would cost 20,000**2."""
        fit = getattr(self, "_fit", None)
        if fit is None:
            gang = self.batch.gang
            ok = (gang >= 0) & (self.reason_counts.sum(axis=1) == 0)
            fit = self._fit = np.bincount(gang[ok], minlength=int(gang.max()) + 1)
        return fit

    def filter_reasons(self, cls: int) -> list[tuple[int, str]]:
        """(nodes, why) for the nodes the filters keep constraint class ``cls`` off, grouped by
        the first filter that rejects each (with its value: the taint, the selector term, the GPU
        model...), most nodes first. Computed once per class, and only for classes of pods that
        end unplaced: the placement itself never pays for it."""
        cache = self.__dict__.setdefault("_filter_reasons", {})
        got = cache.get(cls)
        if got is None:
            groups: dict[str, int] = {}
            if self.ctx is not None:
                for texts in filter_verdicts(self.ctx, cls, self._excluded(cls)):
                    why = texts[0][1] if texts else REASON_TEXT[0]
                    groups[why] = groups.get(why, 0) + 1
            got = sorted(((k, t) for t, k in groups.items()), key=lambda x: (-x[0], x[1]))
            if len(got) > MAX_FILTER_GROUPS:  # a reason stays one readable line
                rest = sum(k for k, _ in got[MAX_FILTER_GROUPS - 1:])
                got = got[:MAX_FILTER_GROUPS - 1] + [(rest, "excluded by other filter values")]
            cache[cls] = got
        return got

    def _excluded(self, cls: int) -> np.ndarray:
        """Nodes the class mask keeps constraint class ``cls`` off."""
        mask = self.ctx.extra.get("class_mask")
        return np.flatnonzero(mask[cls] == 0) if mask is not None else np.zeros(0, dtype=np.int64)

    def _nodes_reason(self, i: int) -> str:
        n = self.cluster.n_nodes
        counts = self.reason_counts[i]
        parts = []  # (nodes, reason code, text): most nodes first, then by code
        for r in np.flatnonzero(counts).tolist():
            k = int(counts[r])
            if r == 0 and self.ctx is not None:  # the node filters, each named with its value
                parts += [(g, 0, f"{g} {why}") for g, why in self.filter_reasons(int(self.batch.cls[i]))]
                continue
            text = f"{k} {REASON_TEXT[r]}"
            if r == _core.REASON_GPU_SHARE and self.best_share[i] >= 0 and self.batch.milli[i] > 0:
                need, count = self.batch.milli[i] / 1000, int(self.batch.count[i])
                if self.best_share[i] >= self.batch.milli[i]:  # the share is there, not on enough GPUs
                    text += f" (fewer than {count} GPUs with {need:.3g} free)"
                else:
                    text += (f" (largest free share {self.best_share[i] / 1000:.3g} < {need:.3g} needed"
                             + (f" on each of {count} GPUs)" if count > 1 else ")"))
            parts.append((k, r, text))
        parts.sort(key=lambda x: (-x[0], x[1]))  # stable: filter groups keep their own order
        parts = [t for _, _, t in parts]
        return f"0/{n} nodes can take it: " + ", ".join(parts)


_BITS = [[b for b in range(8) if m >> b & 1] for m in range(256)]  # XCD masks are 8 bits wide


def _bits(mask: int) -> list[int]:
    return list(_BITS[mask]) if mask < 256 else [b for b in range(32) if mask >> b & 1]


def place(cluster: Cluster, state: ClusterState, batch: PodBatch,
          pipeline: Pipeline | None = None, strategy: str = "binpack",
          xcd_held: np.ndarray | None = None) -> Placement:
    """Place ``batch`` in its row order, updating ``state`` in place.

    Parameters
    ----------
    cluster, state : the cluster and what is free on it (copy the state first to keep it).
    batch : the pending pods, already in the order they should be tried.
    pipeline : plugins giving filters and scores; default: built-in filters + ``strategy``.
    xcd_held : XCDs already held by XCD-isolated pods (``Snapshot.dev_xcd_held``), so the CU masks
        of time-sliced pods leave them out.
    """
    pipeline = pipeline or default_pipeline(strategy)
    ctx = CycleContext(cluster, state, batch)
    for p in pipeline.plugins:
        p.on_cycle_start(ctx)
    kb = batch.kernel_view()
    kb["class_mask"] = ctx.extra["class_mask"] = pipeline.class_mask(ctx)
    extra = pipeline.extra_score(ctx)
    if extra is not None:
        kb["extra_score"] = extra
    kb.update(pipeline.kernel_args(ctx))  # e.g. random's seed, fgd's target workload, held devices
    gang = getattr(batch, "gang", None)
    if "node_domain" not in kb and gang is not None and (gang >= 0).any():
        kb["node_domain"] = topology_domains(ctx, TOPOLOGY_LABEL)  # no gang-topology plugin: the zone label
    out = _core.place_batch(kernel_view(cluster, state), kb, pipeline.strategy.strategy)
    result = Placement(cluster=cluster, batch=batch, xcd_held=xcd_held, ctx=ctx, kernel_batch=kb,
                       strategy=pipeline.strategy.strategy, **out)
    for p in pipeline.plugins:
        p.on_cycle_end(ctx, result)
    return result
