"""What pods count against their queues: request vectors and queue membership.

Queues account three resources, in the kernels' fixed units: GPU milli-units, CPU milli-cores and
memory MiB. A pod's GPU charge is its compute share times its device count (a whole GPU is 1000).
A memory-only sharing pod reserves no compute, but it does hold GPU memory that other pods cannot
use, so it is charged the share of a device that its memory is (rounded up) -- otherwise a queue
could take every GPU's memory through memory-only pods while staying within its GPU quota.
"""
from __future__ import annotations

import numpy as np

from .queues import QueueTree
from .requests import KIND_NONE, LABEL_QUEUE, PodError


def request_vectors(batch, device_mem_mib: int) -> np.ndarray:
    """int64[P, 3] (gpu milli, cpu milli, memory MiB) for a :class:`PodBatch`.

    ``device_mem_mib`` is the memory of the device a memory-only pod is charged against (the
    cluster's largest device: the smallest charge the pod could possibly have).
    """
    milli = batch.milli.astype(np.int64)
    mem_only = (batch.kind != KIND_NONE) & (milli == 0) & (batch.gpu_mem > 0)
    if device_mem_mib > 0:
        milli = np.where(mem_only, np.minimum(1000, -(-batch.gpu_mem * 1000 // device_mem_mib)), milli)
    gpu = np.where(batch.kind != KIND_NONE, milli * batch.count, 0)
    return np.ascontiguousarray(np.stack([gpu, batch.cpu, batch.mem], axis=1), dtype=np.int64)


def assign_queues(tree: QueueTree, table, rows=None) -> tuple[np.ndarray, list]:
    """Leaf queue row per pod (label ``kaiwo.ai/queue``, default queue without one).

    ``table`` is a :class:`~kaiwo_core.podtable.PodTable`; ``rows`` selects (and orders) its pods,
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
