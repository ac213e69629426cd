"""Per-GPU-model queue columns: which column a pod's GPUs are charged in (issue 11).

Queues account gpu, cpu, memory, then one column per GPU model some queue names
(:attr:`~kaiwo_core.scheduling.queues.QueueTree.models`). A pod's GPUs count in the ``gpu`` column
always, and in a model's column:

* a running pod (or this cycle's binding): the model of its node's GPUs;
* a pending pod whose model is fixed -- ``kaiwo.ai/gpu-model`` naming one model, or a nodeSelector
  or a required node-affinity term set on ``amd.com/gpu.product-name`` naming one model -- that
  model's column (placement can only put it there);
* any other pending pod: no model column until it is placed. So that such a pod cannot push a queue
  above a per-model limit, :func:`restrict_to_room` narrows it, before placement, to the models
  whose limit still has room (a GPU-model constraint, handled by the ``gpu-model`` filter).

With no model named by any queue there are no model columns at all (R = 3): nothing here runs.
"""
from __future__ import annotations

import numpy as np

from ..model import gpu as gpumod
from ..model.cluster import LABEL_PRODUCT
from ..model.requests import KIND_NONE, Constraint
from .queues import GPU, UNLIMITED, QueueTree


def node_columns(tree: QueueTree, cluster) -> np.ndarray:
    """int32[N]: the column of each node's GPU model (3 + index in ``tree.models``), -1 if none."""
    out = np.full(cluster.n_nodes, -1, dtype=np.int32)
    if tree.models:
        col = {m: 3 + j for j, m in enumerate(tree.models)}
        for i, nd in enumerate(cluster.nodes):
            out[i] = col.get(nd.model.upper(), -1)
    return out


def capacity(tree: QueueTree, cluster, base: np.ndarray) -> np.ndarray:
    """int64[R]: ``base`` (gpu, cpu, memory) and, per model column, the GPUs (milli) of its nodes."""
    if not tree.models:
        return base
    cols = node_columns(tree, cluster)
    devs = np.diff(cluster.node_dev_start).astype(np.int64)
    extra = np.array([devs[cols == 3 + j].sum() * 1000 for j in range(len(tree.models))], np.int64)
    return np.concatenate([base, extra])


def fixed_model(con: Constraint) -> str | None:
    """The one GPU model a constraint allows (upper case), or None if it allows several or any."""
    names = set()
    if con.gpu_models is not None:
        names.add(frozenset(con.gpu_models))
    for key, value in con.node_selector:
        if key == LABEL_PRODUCT:
            m = gpumod.model_from_product_name(str(value))
            names.add(frozenset({m.name if m else str(value).upper()}))
    # One required affinity term (terms are ORed) with an In on the product label naming one value.
    if len(con.affinity) == 1:
        for key, op, values in con.affinity[0]:
            if key == LABEL_PRODUCT and op == "In" and len(values) == 1:
                m = gpumod.model_from_product_name(values[0])
                names.add(frozenset({m.name if m else values[0].upper()}))
    if not names:
        return None
    allowed = frozenset.intersection(*names)
    return next(iter(allowed)) if len(allowed) == 1 else None


def pending_columns(tree: QueueTree, batch) -> np.ndarray:
    """int32[P]: the model column each pending pod is charged in (its fixed model's), -1 none."""
    out = np.full(len(batch.cls), -1, dtype=np.int32)
    if not tree.models:
        return out
    col = {m: 3 + j for j, m in enumerate(tree.models)}
    per_class = np.array([col.get(fixed_model(c), -1) for c in batch.constraints], dtype=np.int32)
    gpu = batch.kind != KIND_NONE
    out[gpu] = per_class[batch.cls[gpu]]
    return out


def widen(tree: QueueTree, req: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """[P, 3] requests -> [P, R]: each row's GPUs also in its column ``cols[i]`` (-1: none)."""
    if not tree.models:
        return req
    out = np.zeros((len(req), tree.n_res), dtype=np.int64)
    out[:, :3] = req
    rows = np.flatnonzero(cols >= 0)
    out[rows, cols[rows]] = req[rows, GPU]
    return out


def restrict_to_room(tree: QueueTree, cluster, batch, order, rows, req, allocated) -> list:
    """Narrow pending pods with no fixed model to the models whose per-model limits have room.

    ``order``: the placement order (indices into the batch); ``rows`` the leaf queue of each pod;
    ``req`` [P, R] (fixed pods charged in their column); ``allocated`` [Q, R] (running, subtree
    sums). Walking the pods in order, each queue keeps, per model column with a limit on its path,
    the room left (limit - allocated - the pods before it that could go there). A fixed pod uses its
    column's room, and waits (no model left) if an unconstrained pod before it took that room (the
    ordering kernel's limit check does not see those); an unconstrained one may use any model with
    room along its whole path, and is
    charged against all of them, since placement may pick any (conservative: a queue near two
    model limits may get fewer pods this cycle than would fit; the next cycle charges the pods
    placed to their real models). Where a pod loses a model, its constraint gets ``gpu_models`` =
    the models left (every node model without a column counts as having room), interned into
    ``batch.constraints``. Returns the batch rows narrowed."""
    if not tree.models:
        return []
    limit = tree.wide("limit")[:, 3:]
    if not (limit >= 0).any():
        return []
    M = len(tree.models)
    # Plain Python ints: thousands of pods, each touching a few queues x a few models.
    big = np.iinfo(np.int64).max // 4
    room = np.where(limit >= 0, limit - allocated[:, 3:], big).tolist()
    all_models = sorted({nd.model.upper() for nd in cluster.nodes if nd.model})
    index = {c: i for i, c in enumerate(batch.constraints)}
    paths: dict = {}  # leaf -> its path if some queue on it has a model limit, else None
    narrowed = []
    gpu = req[:, GPU].tolist()
    fixed_col = np.where((req[:, 3:] > 0).any(axis=1), (req[:, 3:] > 0).argmax(axis=1), -1).tolist()
    leaf = np.asarray(rows).tolist()
    for i in np.asarray(order).tolist():
        g = gpu[i]
        if g <= 0:
            continue
        q = leaf[i]
        if q not in paths:
            path = tree.ancestors(q)
            paths[q] = path if (limit[path] >= 0).any() else None
        path = paths[q]
        if path is None:
            continue
        ok = [all(room[a][j] >= g for a in path) for j in range(M)]
        f = fixed_col[i]
        if f >= 0:  # the ordering kernel passed it without the unconstrained pods before it
            ok = [ok[j] and j == f for j in range(M)]
            if not ok[f]:
                _narrow(batch, i, index, frozenset())  # waits: its model's limit is taken
                narrowed.append(i)
        elif not all(ok):
            con = batch.constraints[batch.cls[i]]
            have = set(con.gpu_models) if con.gpu_models is not None else set(all_models)
            _narrow(batch, i, index, frozenset(have - {tree.models[j] for j in range(M) if not ok[j]}))
            narrowed.append(i)
        for j in range(M):
            if ok[j]:
                for a in path:
                    room[a][j] -= g
    return narrowed


def _narrow(batch, i: int, index: dict, models: frozenset) -> None:
    """Row i of ``batch`` to its constraint with ``gpu_models = models`` (interned; ``index`` also
    remembers (class, models) -> class, so each pair builds one Constraint)."""
    key = (int(batch.cls[i]), models)
    if key not in index:
        con = batch.constraints[key[0]]
        new = Constraint(con.node_selector, con.tolerations, con.affinity, models, con.gpu_resource,
                         con.reservations)
        if new not in index:
            index[new] = len(batch.constraints)
            batch.constraints.append(new)
        index[key] = index[new]
    batch.cls[i] = index[key]
