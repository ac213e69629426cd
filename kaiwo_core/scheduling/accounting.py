"""What pods count against their queues: request vectors and queue membership.

Queues account three resources, in the kernels' fixed units: GPU milli-units, CPU milli-cores and
memory MiB. A pod's GPU charge is what it holds, per logical GPU (device), 1000 being a whole one:

* a whole GPU, or any device a pod holds alone (``kaiwo.ai/gpu-sharing: "false"``): 1000;
* an XCD-isolated pod: the XCDs it holds as a share of the partition's XCDs -- on CPX (one XCD per
  logical GPU) the whole logical GPU, whatever fraction it asked for; on QPX (two) at least half;
* a time-sliced pod: its compute share;
* a memory-only sharing pod (no compute reserved): the share of the device its memory is (rounded
  up) -- it holds memory other pods cannot use; otherwise a queue could take every GPU's memory
  through memory-only pods while staying within its GPU quota.

Running pods and this cycle's bindings are charged from their device assignments
(:func:`assigned_gpu`). A pending pod's charge is only known once placed, so it is estimated
(:func:`request_vectors`): an XCD pod at the most any partition of the cluster would charge it (an
upper bound, so a queue limit is never exceeded in one cycle), a memory-only pod against the
cluster's largest device.
"""
from __future__ import annotations

import numpy as np

from .queues import QueueTree
from ..model.requests import KIND_NONE, KIND_WHOLE, KIND_XCD, LABEL_QUEUE, PodError

_POPCOUNT8 = np.array([bin(m).count("1") for m in range(256)], dtype=np.int64)


def _popcount(masks: np.ndarray) -> np.ndarray:
    m = np.asarray(masks, dtype=np.int64)
    return _POPCOUNT8[m & 0xFF] + _POPCOUNT8[(m >> 8) & 0xFF] + _POPCOUNT8[(m >> 16) & 0xFF] + \
        _POPCOUNT8[(m >> 24) & 0xFF]


def _holds_alone(kind: np.ndarray, exclusive: np.ndarray) -> np.ndarray:
    return (kind == KIND_WHOLE) | ((kind != KIND_NONE) & (np.asarray(exclusive) != 0))


def request_vectors(batch, cluster) -> np.ndarray:
    """int64[P, 3] (gpu milli, cpu milli, memory MiB) for a :class:`PodBatch` of pods not placed yet:
    the estimate of the module docstring against ``cluster`` (a :class:`~kaiwo_core.model.cluster.Cluster`)."""
    milli = batch.milli.astype(np.int64)
    kind = batch.kind
    gpu_pod = kind != KIND_NONE
    if cluster.n_devices:
        device_mem = int(cluster.dev_mem_cap.max())
        mem_only = gpu_pod & (milli == 0) & (batch.gpu_mem > 0)
        if device_mem > 0:
            milli = np.where(mem_only, np.minimum(1000, -(-batch.gpu_mem * 1000 // device_mem)), milli)
        xcd = kind == KIND_XCD
        if xcd.any():
            milli = np.where(xcd, _xcd_upper_bound(milli, cluster), milli)
    milli = np.where(_holds_alone(kind, batch.exclusive), 1000, milli)
    gpu = np.where(gpu_pod, milli * batch.count, 0)
    return np.ascontiguousarray(np.stack([gpu, batch.cpu, batch.mem], axis=1), dtype=np.int64)


def _xcd_upper_bound(milli: np.ndarray, cluster) -> np.ndarray:
    """Per pod, the most a partition of the cluster charges an XCD pod of ``milli``: its XCDs
    (ceil(milli x nx / 1000), at least one) as a share of the partition's nx XCDs."""
    counts = np.unique(_popcount(cluster.dev_xcd_mask))
    counts = counts[counts > 0]
    if not counts.size:
        return milli  # no XCDs anywhere: the pod cannot be placed at all
    nx = counts[None, :]
    k = np.maximum(1, -(-milli[:, None] * nx // 1000))
    return (k * 1000 // nx).max(axis=1)


def assigned_gpu(kind, exclusive, start, dev, milli, mem, xcds, cluster, fallback) -> np.ndarray:
    """int64[P]: GPU milli each pod holds by its device assignment (a CSR: pod ``i`` holds entries
    ``start[i]:start[i+1]`` of ``dev`` (global device), ``milli``, ``mem`` (MiB) and ``xcds``); the
    rules of the module docstring. A GPU pod without any entry (its node or devices are not in the
    cluster) is charged ``fallback`` (its estimate)."""
    lens = np.diff(start)
    if not len(dev):
        return np.where(np.asarray(kind) != KIND_NONE, fallback, 0).astype(np.int64)
    row = np.repeat(np.arange(len(lens)), lens)
    dev = np.asarray(dev, dtype=np.int64)
    milli = np.asarray(milli, dtype=np.int64)
    cap = cluster.dev_mem_cap[dev]
    by_mem = np.minimum(1000, -(-np.asarray(mem, dtype=np.int64) * 1000 // np.maximum(cap, 1)))
    charge = np.where(milli > 0, milli, np.where(cap > 0, by_mem, 0))
    nx = _popcount(cluster.dev_xcd_mask[dev])
    held = _popcount(np.asarray(xcds, dtype=np.int64) & cluster.dev_xcd_mask[dev].astype(np.int64))
    charge = np.where((kind[row] == KIND_XCD) & (nx > 0),
                      np.maximum(charge, held * 1000 // np.maximum(nx, 1)), charge)
    charge = np.where(_holds_alone(kind, exclusive)[row], 1000, charge)
    out = np.bincount(row, weights=charge, minlength=len(lens)).astype(np.int64)
    return np.where((lens == 0) & (np.asarray(kind) != KIND_NONE), fallback, out)


def held_vectors(pods, cluster) -> np.ndarray:
    """:func:`request_vectors` with the GPU column replaced by what each pod holds (:func:`assigned_gpu`).
    ``pods`` has a ``batch`` and the CSR ``asg_start``, ``asg_dev``, ``asg_milli``, ``asg_mem``,
    ``asg_xcds`` of its devices: a :class:`~kaiwo_core.scheduling.podtable.PodTable` (running pods) or a
    :class:`~kaiwo_core.scheduling.placement.Placement` (bindings; rows not placed keep their estimate)."""
    b = pods.batch
    vec = request_vectors(b, cluster)
    vec[:, 0] = assigned_gpu(b.kind, b.exclusive, pods.asg_start, pods.asg_dev, pods.asg_milli,
                             pods.asg_mem, pods.asg_xcds, cluster, vec[:, 0])
    return vec


def assign_queues(tree: QueueTree, table, rows=None) -> tuple[np.ndarray, list]:
    """Leaf queue row per pod (label ``kaiwo.ai/queue``, default queue without one).

    ``table`` is a :class:`~kaiwo_core.scheduling.podtable.PodTable`; ``rows`` selects (and orders) its pods,
    default all. Each distinct queue name is looked up once.

    Returns the rows (-1 for pods that could not be assigned) and a PodError for each of those, in
    row order: a queue that does not exist (or was rejected), or a queue with child queues.
    """
    leaf = tree.is_leaf
    rejected_names = {e.name: e.reason for e in tree.errors}
    lookup = np.full(len(table.queue_names), -1, dtype=np.int32)
    why = {}
    for k, name in enumerate(table.queue_names):
        q = tree.index.get(name)
        if q is None:
            why[k] = (f"KaiwoQueue {name} was rejected: {rejected_names[name]}" if name in rejected_names
                      else "no KaiwoQueue of that name")
        elif not leaf[q]:
            why[k] = "queue has child queues; only leaf queues hold pods"
        else:
            lookup[k] = q
    rows = np.arange(len(table), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    codes = table.queue[rows]
    out = lookup[codes]
    fld = f"metadata.labels.{LABEL_QUEUE}"
    errors = [PodError(table.reqs[i].name, fld, table.queue_names[c], why[c])
              for i, c in zip(rows[out < 0].tolist(), codes[out < 0].tolist())]
    return out, errors
