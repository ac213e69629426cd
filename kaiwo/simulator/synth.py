"""Synthetic clusters and workloads at the DESIGN.md scales, seeded and reproducible.

Used by benchmarks, scale tests and ``kaiwo generate``: the same generator gives Kubernetes objects
(for dumps and the controller) and arrays (for the library API), so both paths see one workload.

Scale M = 1,000 nodes x 8 MI300X, 100 queues in three levels, 10,000 pending and 20,000 running
pods; S = M/10; L = M x 10.
"""
from __future__ import annotations

import numpy as np

import kaiwo_core as kc

SCALES = {"S": 0.1, "M": 1.0, "L": 10.0}
BASE = {"nodes": 1000, "pending": 10000, "running": 20000}
NODE_CPU, NODE_MEM_MIB = 192_000, 2 * 1024 * 1024  # 192 cores, 2 TiB

# Request shapes of the mixed workload: (share, kind, devices, milli, gpu MiB, cpu milli, mem MiB)
SHAPES = [
    (0.25, "whole", 1, 1000, 0, 16000, 128 * 1024),
    (0.08, "whole", 2, 1000, 0, 32000, 256 * 1024),
    (0.05, "whole", 4, 1000, 0, 64000, 512 * 1024),
    (0.02, "whole", 8, 1000, 0, 128000, 1024 * 1024),
    (0.20, "shared", 1, 500, 0, 4000, 32 * 1024),
    (0.12, "shared", 1, 250, 0, 2000, 16 * 1024),
    (0.05, "shared", 2, 500, 0, 8000, 64 * 1024),
    (0.08, "memory", 1, 0, 24 * 1024, 2000, 16 * 1024),
    (0.07, "xcd", 1, 250, 0, 4000, 32 * 1024),
    (0.08, "none", 0, 0, 0, 4000, 8 * 1024),
]


# What is already running: lighter (mostly fractional and CPU pods), so that the running pods of a
# scale fill about two thirds of the GPUs and half the CPU, and the pending batch meets a busy but
# not full cluster, as a production cluster with a backlog would.
RUNNING_SHAPES = [
    (0.080, "whole", 1, 1000, 0, 16000, 128 * 1024),
    (0.020, "whole", 2, 1000, 0, 32000, 256 * 1024),
    (0.005, "whole", 8, 1000, 0, 128000, 1024 * 1024),
    (0.120, "shared", 1, 500, 0, 4000, 32 * 1024),
    (0.100, "shared", 1, 250, 0, 2000, 16 * 1024),
    (0.150, "memory", 1, 0, 24 * 1024, 2000, 16 * 1024),
    (0.050, "xcd", 1, 250, 0, 4000, 32 * 1024),
    (0.475, "none", 0, 0, 0, 2000, 8 * 1024),
]


def sizes(scale: str) -> dict:
    f = SCALES[scale]
    return {k: max(1, int(v * f)) for k, v in BASE.items()}


def pod_columns(n: int, seed: int = 0, shapes=SHAPES) -> dict:
    """Columns of ``n`` pods drawn from ``shapes`` (default: the pending mix :data:`SHAPES`)."""
    rng = np.random.default_rng(seed)
    p = np.array([s[0] for s in shapes])
    idx = rng.choice(len(shapes), size=n, p=p / p.sum())
    tab = np.array([s[2:] for s in shapes], dtype=np.int64)
    kinds = np.array([s[1] for s in shapes], dtype=object)[idx]
    return {"shape": idx, "kind": kinds, "devices": tab[idx, 0], "milli": tab[idx, 1],
            "gpu_mem": tab[idx, 2], "cpu": tab[idx, 3], "mem": tab[idx, 4],
            "priority": rng.integers(0, 3, size=n) * 100}


def batch(cols: dict, prefix: str = "pod") -> kc.PodBatch:
    kind = cols["kind"]
    shared = (kind == "shared") | (kind == "xcd") | (kind == "memory")
    return kc.batch_from_arrays(
        cpu=cols["cpu"], memory=cols["mem"],
        gpus=np.where(kind == "whole", cols["devices"], 0),
        fraction=np.where(shared, cols["milli"], 0), gpu_memory=cols["gpu_mem"],
        num_devices=np.where(shared, cols["devices"], 1), isolation=kind == "xcd",
        priority=cols["priority"], names=[f"{prefix}-{i}" for i in range(len(kind))])


def scale_arrays(scale: str = "M", seed: int = 0, partition: str = "spx_nps1"):
    """(snapshot with running pods charged, pending batch) built from arrays only."""
    sz = sizes(scale)
    n = sz["nodes"]
    snap = kc.Snapshot.from_arrays([f"node-{i:05d}" for i in range(n)], cpu=[NODE_CPU] * n,
                                   memory=[NODE_MEM_MIB] * n, gpus=[8] * n, partition=partition,
                                   pods=[250] * n)
    running = batch(pod_columns(sz["running"], seed + 1, RUNNING_SHAPES), "running")
    kc.place(snap.cluster, snap.state, running, strategy="binpack")
    return snap, batch(pod_columns(sz["pending"], seed), "pending")


# ------------------------------------------------------------------------ Kubernetes objects

def node_objects(n: int, partition: str = "spx_nps1", model: str = "MI300X") -> list[dict]:
    from kaiwo_core.model.gpu import parse_mode_label, partitioning, MODELS

    part = partitioning(MODELS[model], *parse_mode_label(partition))
    return [{
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": f"node-{i:05d}", "labels": {
            "amd.com/gpu.product-name": f"AMD_Instinct_{model}",
            "amd.com/gpu.compute-memory-partition": part.label}},
        "status": {"allocatable": {"cpu": str(NODE_CPU // 1000), "memory": f"{NODE_MEM_MIB}Mi",
                                   "pods": "250", "amd.com/gpu": str(8 * part.logical_per_gpu)}},
    } for i in range(n)]


def queue_objects(n: int, total_gpus: int, seed: int = 0) -> list[dict]:
    """``n`` KaiwoQueues in three levels (top, middle, leaves: about 1 : 4 : 20), quotas dividing
    80% of ``total_gpus`` down the tree, over-quota weights 1-3, two priority bands at the top."""
    rng = np.random.default_rng(seed)
    top = max(1, n // 25)
    mid = min(4 * top, max(0, n - top - 1))
    leaves = max(1, n - top - mid)
    objs, parents = [], []

    def add(name, parent, quota, priority=0):
        spec = {"resources": {"gpu": {"quota": round(quota, 3), "overQuotaWeight": int(rng.integers(1, 4))}},
                "priority": priority}
        if parent:
            spec["parentQueue"] = parent
        objs.append({"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoQueue",
                     "metadata": {"name": name}, "spec": spec})

    for t in range(top):
        add(f"org-{t}", "", 0.8 * total_gpus / top, int(rng.integers(0, 2)))
    level2 = [f"org-{t}" for t in range(top)]
    if mid:
        for m in range(mid):
            parent = level2[m % top]
            add(f"dept-{m}", parent, 0.8 * total_gpus / top * 0.8 / -(-mid // top))
        parents = [f"dept-{m}" for m in range(mid)]
    else:
        parents = level2
    per_parent = -(-leaves // len(parents))
    quota_of = {o["metadata"]["name"]: o["spec"]["resources"]["gpu"]["quota"] for o in objs}
    for i in range(leaves):
        parent = parents[i % len(parents)]
        add(f"team-{i}", parent, quota_of[parent] / per_parent)
    return objs


def leaf_names(objs: list[dict]) -> list[str]:
    parents = {o["spec"].get("parentQueue") for o in objs}
    return [o["metadata"]["name"] for o in objs if o["metadata"]["name"] not in parents]


def pod_objects(n: int, seed: int = 0, prefix: str = "pod", namespace: str = "default",
                shapes=SHAPES, queues: list | None = None) -> list[dict]:
    """Pod objects of the mixed workload; with ``queues``, each labelled with a random one."""
    cols = pod_columns(n, seed, shapes)
    pick = np.random.default_rng(seed + 7).integers(0, len(queues), size=n) if queues else None
    out = []
    for i in range(n):
        kind = cols["kind"][i]
        ann: dict = {}
        limits = {"cpu": f"{cols['cpu'][i]}m", "memory": f"{cols['mem'][i]}Mi"}
        if kind == "whole":
            limits["amd.com/gpu"] = str(cols["devices"][i])
        elif kind in ("shared", "xcd"):
            ann["kaiwo.ai/gpu-fraction"] = f"{cols['milli'][i] / 1000:g}"
            if cols["devices"][i] > 1:
                ann["kaiwo.ai/gpu-fraction-num-devices"] = str(cols["devices"][i])
            if kind == "xcd":
                ann["kaiwo.ai/gpu-isolation"] = "xcd"
        elif kind == "memory":
            ann["kaiwo.ai/gpu-memory"] = str(cols["gpu_mem"][i])
        out.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{prefix}-{i:06d}", "namespace": namespace, "uid": f"{prefix}-uid-{i}",
                         "annotations": ann,
                         "labels": {"kaiwo.ai/queue": queues[pick[i]]} if queues else {},
                         "creationTimestamp": f"2026-11-28T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z"},
            "spec": {"schedulerName": "kaiwo", "priority": int(cols["priority"][i]),
                     "containers": [{"name": "main", "resources": {"limits": limits}}]},
        })
    return out


def dump_objects(scale: str = "M", seed: int = 0, partition: str = "spx_nps1",
                 running: bool = False, queues: bool = True) -> list[dict]:
    """Nodes, KaiwoQueues (100 in three levels at M) and pending pods (and, with ``running``,
    running pods placed by Kaiwo itself, with their ``kaiwo.ai/gpu-assignment``) at a scale."""
    sz = sizes(scale)
    objs = node_objects(sz["nodes"], partition)
    leaves = None
    if queues:
        qobjs = queue_objects(max(3, int(100 * SCALES[scale])), sz["nodes"] * 8, seed)
        objs += qobjs
        leaves = leaf_names(qobjs)
    if running:
        import json

        run = pod_objects(sz["running"], seed + 1, prefix="running", shapes=RUNNING_SHAPES,
                          queues=leaves)
        by_name = {f"default/{o['metadata']['name']}": o for o in run}
        for b in kc.schedule(kc.Snapshot.from_objects(objs + run)).bindings():
            o = by_name[b["pod"]]
            o["spec"]["nodeName"] = b["node"]
            o["metadata"]["annotations"]["kaiwo.ai/gpu-assignment"] = json.dumps(b["devices"])
            o["status"] = {"phase": "Running"}
            objs.append(o)
    return objs + pod_objects(sz["pending"], seed, prefix="pending", queues=leaves)
