"""Scenario files: compact YAML that expands to real Kubernetes objects.

A scenario lists ``nodes`` and ``pods`` in shorthand (expanded here to Node/Pod objects, so the full
parsing path runs), optional raw ``objects``, and ``expect``: what a human worked out by hand.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from kaiwo.simulator.synth import NODE_CPU, NODE_MEM_MIB

HERE = Path(__file__).parent / "scenarios"


def node_obj(spec: dict) -> dict:
    model = spec.get("model", "MI300X")
    mode = spec.get("partition", "spx_nps1")
    gpus = int(spec.get("gpus", 8))
    from kaiwo_core.model.gpu import MODELS, parse_mode_label, partitioning

    alloc = {"cpu": str(spec.get("cpu", NODE_CPU // 1000)), "memory": spec.get("memory", f"{NODE_MEM_MIB}Mi"),
             "pods": str(spec.get("pods", 110))}
    labels = dict(spec.get("labels") or {})
    if model in MODELS:
        part = partitioning(MODELS[model], *parse_mode_label(mode))
        if gpus:
            alloc[spec.get("resource", "amd.com/gpu")] = str(gpus * part.logical_per_gpu)
        labels.setdefault("amd.com/gpu.product-name", f"AMD_Instinct_{model}")
        labels.setdefault("amd.com/gpu.compute-memory-partition", part.label)
    elif gpus:
        alloc["nvidia.com/gpu"] = str(gpus)
        labels["nvidia.com/gpu.product"] = model
    obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": spec["name"], "labels": labels},
           "spec": {}, "status": {"allocatable": alloc}}
    if spec.get("taints"):
        obj["spec"]["taints"] = spec["taints"]
    return obj


def pod_objs(spec: dict, start: int = 0) -> list[dict]:
    """Pods of one shorthand entry; creation times count up from ``start`` seconds."""
    n = int(spec.get("replicas", 1))
    out = []
    for i in range(n):
        name = spec["name"] if n == 1 else f"{spec['name']}-{i:02d}"
        limits = {"cpu": str(spec.get("cpu", "1")), "memory": str(spec.get("memory", "1Gi"))}
        if spec.get("gpu"):
            limits[spec.get("resource", "amd.com/gpu")] = str(spec["gpu"])
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": spec.get("namespace", "default"),
                            "annotations": dict(spec.get("annotations") or {}),
                            "labels": dict(spec.get("labels") or {}),
                            "creationTimestamp": spec.get("created", _stamp(start + i))},
               "spec": {"schedulerName": spec.get("scheduler", "kaiwo"),
                        "containers": [{"name": "c", "resources": {"limits": limits}}]}}
        for key in ("nodeSelector", "tolerations", "priority", "nodeName", "affinity"):
            if key in spec:
                pod["spec"][key] = spec[key]
        if "nodeName" in spec:
            pod["status"] = {"phase": "Running"}
        out.append(pod)
    return out


def _stamp(sec: int) -> str:
    return f"2026-01-01T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}Z"


def queue_obj(spec: dict) -> dict:
    body = {k: v for k, v in spec.items() if k not in ("name", "parent")}
    if spec.get("parent"):
        body["parentQueue"] = spec["parent"]
    return {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoQueue",
            "metadata": {"name": spec["name"]}, "spec": body}


def scenario_objects(sc: dict) -> list[dict]:
    """Nodes, queues, then pods in file order (each created one second after the previous)."""
    objs = [node_obj(n) for n in sc.get("nodes", [])]
    objs += [queue_obj(q) for q in sc.get("queues", [])]
    pods: list[dict] = []
    for p in sc.get("pods", []):
        pods += pod_objs(p, len(pods))
    objs += pods
    return objs + list(sc.get("objects", []))


def load(name: str) -> list[dict]:
    return list(yaml.safe_load_all((HERE / name).read_text()))
