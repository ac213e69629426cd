"""Test helpers: Kubernetes object builders and a thin client over the emulator.

Everything goes through the official ``kubernetes`` client, like the controller itself, so the
tests see the emulator exactly as the controller does.
"""
from __future__ import annotations

import json
import time
from typing import Callable

from kubernetes import client

from kaiwo.controller.api import GROUP, MERGE_PATCH, PLURALS, VERSION, quantities_as_strings, read_json

MI300X_LABELS = {"amd.com/gpu.product-name": "AMD_Instinct_MI300X", "amd.com/gpu.vram": "192G"}


def node(name: str, gpus: int = 8, partition: str = "spx_nps1", cpu: str = "192", memory: str = "2Ti",
         pods: int = 110, labels: dict | None = None, taints: list | None = None) -> dict:
    """An MI300X node as the AMD device plugin and node labeller describe it."""
    from kaiwo_core.model.gpu import COMPUTE_PARTITIONS, parse_mode_label

    compute, _ = parse_mode_label(partition)
    per = COMPUTE_PARTITIONS[compute] or 8
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {**MI300X_LABELS,
                                                  "amd.com/gpu.compute-memory-partition": partition,
                                                  **(labels or {})}},
            "spec": {"taints": taints} if taints else {},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": str(pods),
                                       "amd.com/gpu": str(gpus * per)},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, namespace: str = "default", gpus: int = 0, fraction: str | None = None,
        memory_mib: int | None = None, isolation: str | None = None, queue: str | None = None,
        cpu: str = "1", memory: str = "4Gi", annotations: dict | None = None,
        scheduler: str = "kaiwo", node_name: str | None = None, priority: int | None = None,
        labels: dict | None = None) -> dict:
    """A pod for Kaiwo: whole GPUs (``gpus``), or a ``fraction`` / ``memory_mib`` share."""
    ann = dict(annotations or {})
    if fraction is not None:
        ann["kaiwo.ai/gpu-fraction"] = fraction
    if memory_mib is not None:
        ann["kaiwo.ai/gpu-memory"] = str(memory_mib)
    if isolation is not None:
        ann["kaiwo.ai/gpu-isolation"] = isolation
    limits = {"cpu": cpu, "memory": memory}
    if gpus:
        limits["amd.com/gpu"] = str(gpus)
    lab = dict(labels or {})
    if queue:
        lab["kaiwo.ai/queue"] = queue
    spec = {"schedulerName": scheduler,
            "containers": [{"name": "main", "image": "rocm/pytorch", "resources": {"limits": limits}}]}
    if node_name:
        spec["nodeName"] = node_name
    if priority is not None:
        spec["priority"] = priority
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": lab, "annotations": ann},
            "spec": spec}


def queue(name: str, gpu_quota=None, parent: str | None = None, priority: int = 0, **resources) -> dict:
    spec: dict = {"priority": priority, "resources": dict(resources)}
    if gpu_quota is not None:
        spec["resources"]["gpu"] = {"quota": gpu_quota}
    if parent:
        spec["parentQueue"] = parent
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "KaiwoQueue", "metadata": {"name": name}, "spec": spec}


class Kube:
    """Create, read and wait for objects in the emulator through the official client."""

    def __init__(self, api_client: client.ApiClient):
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.scheduling = client.SchedulingV1Api(api_client)

    # ------------------------------------------------------------------------- writes
    def create(self, obj: dict) -> dict:
        kind = obj["kind"]
        ns = (obj.get("metadata") or {}).get("namespace") or "default"
        if kind == "Pod":
            obj = dict(obj, spec=quantities_as_strings(obj.get("spec") or {}))
            return read_json(self.core.create_namespaced_pod(ns, obj, _preload_content=False))
        if kind == "Node":
            return read_json(self.core.create_node(obj, _preload_content=False))
        if kind == "PriorityClass":
            return read_json(self.scheduling.create_priority_class(obj, _preload_content=False))
        if kind == "KaiwoQueue":
            return read_json(self.custom.create_cluster_custom_object(GROUP, VERSION, PLURALS[kind], obj,
                                                                      _preload_content=False))
        if kind == "KaiwoJob":
            return read_json(self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURALS[kind], obj,
                                                                         _preload_content=False))
        raise ValueError(f"no builder for {kind}")

    def create_all(self, objs, workers: int = 1) -> None:
        """Create objects in order, or ``workers`` at a time (order then does not matter)."""
        objs = list(objs)
        if workers <= 1:
            for o in objs:
                self.create(o)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(self.create, objs))

    def delete_pod(self, namespace: str, name: str) -> None:
        read_json(self.core.delete_namespaced_pod(name, namespace, _preload_content=False))

    def patch_pod_status(self, namespace: str, name: str, status: dict) -> None:
        read_json(self.core.patch_namespaced_pod_status(name, namespace, {"status": status},
                                                        _content_type=MERGE_PATCH, _preload_content=False))

    def bind(self, namespace: str, name: str, node_name: str, devices: list[dict] | None) -> None:
        """Bind a pod as *another writer* would (with or without Kaiwo's assignment annotation)."""
        ann = {"kaiwo.ai/gpu-assignment": json.dumps(devices, separators=(",", ":"))} if devices else None
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "annotations": ann},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        read_json(self.core.create_namespaced_pod_binding(name, namespace, body, _preload_content=False))

    def create_config_map(self, namespace: str, name: str, data: dict, labels: dict | None = None) -> dict:
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace,
                             "labels": labels if labels is not None else {"app.kubernetes.io/managed-by": "kaiwo"}},
                "data": data}
        return read_json(self.core.create_namespaced_config_map(namespace, body, _preload_content=False))

    def patch(self, kind: str, name: str, patch: dict, namespace: str = "default") -> None:
        """Merge-patch a Node or a Pod's metadata (labels, annotations)."""
        if kind == "Node":
            read_json(self.core.patch_node(name, patch, _content_type=MERGE_PATCH, _preload_content=False))
        else:
            read_json(self.core.patch_namespaced_pod(name, namespace, patch, _content_type=MERGE_PATCH,
                                                     _preload_content=False))

    # -------------------------------------------------------------------------- reads
    def pods(self, namespace: str | None = None) -> list[dict]:
        resp = self.core.list_namespaced_pod(namespace, _preload_content=False) if namespace else \
            self.core.list_pod_for_all_namespaces(_preload_content=False)
        return read_json(resp)["items"]

    def pod(self, namespace: str, name: str) -> dict:
        return read_json(self.core.read_namespaced_pod(name, namespace, _preload_content=False))

    def config_maps(self, namespace: str) -> dict[str, dict]:
        items = read_json(self.core.list_namespaced_config_map(namespace, _preload_content=False))["items"]
        return {c["metadata"]["name"]: c for c in items}

    def events(self, namespace: str | None = None) -> list[dict]:
        resp = self.core.list_namespaced_event(namespace, _preload_content=False) if namespace else \
            self.core.list_event_for_all_namespaces(_preload_content=False)
        return read_json(resp)["items"]

    def events_for(self, name: str, reason: str | None = None) -> list[dict]:
        return [e for e in self.events() if e["involvedObject"].get("name") == name
                and (reason is None or e["reason"] == reason)]

    def queue(self, name: str) -> dict:
        return read_json(self.custom.get_cluster_custom_object(GROUP, VERSION, PLURALS["KaiwoQueue"], name,
                                                               _preload_content=False))

    def job(self, namespace: str, name: str) -> dict:
        return read_json(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS["KaiwoJob"],
                                                                  name, _preload_content=False))

    def bound(self, namespace: str | None = None) -> dict[str, dict]:
        """``ns/name`` -> pod, for every pod with a node."""
        return {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in self.pods(namespace)
                if (p.get("spec") or {}).get("nodeName")}


def assignment(p: dict) -> list[dict] | None:
    raw = ((p.get("metadata") or {}).get("annotations") or {}).get("kaiwo.ai/gpu-assignment")
    return None if raw is None else json.loads(raw)


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05,
               describe: Callable[[], str] | None = None):
    """Poll ``predicate`` until it returns something truthy (and return that). A liveness bound,
    not a timing assertion: ``timeout`` is generous and only ends a run that would hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout:.0f} s"
                                 + (f": {describe()}" if describe else ""))
        time.sleep(interval)


def device_usage(bound: dict[str, dict], nodes: dict[str, dict]) -> list[str]:
    """Every over-booking among bound pods, from their annotations: a whole GPU given twice, a
    GPU's compute share above 1, its memory above capacity, or one XCD held by two isolated pods.
    Empty when the bookings are consistent."""
    from kaiwo_core.model.cluster import cluster_from_nodes
    from kaiwo_core.model.requests import KIND_WHOLE, KIND_XCD, pod_request

    cluster = cluster_from_nodes(list(nodes.values()))
    milli: dict = {}
    mem: dict = {}
    whole: dict = {}
    xcds: dict = {}
    problems = []
    for key, p in sorted(bound.items()):
        devices = assignment(p)
        req = pod_request(dict(p, spec={k: v for k, v in p["spec"].items() if k != "priorityClassName"}))
        if req.kind == 0:
            continue
        if devices is None:
            problems.append(f"{key}: bound GPU pod without kaiwo.ai/gpu-assignment")
            continue
        n = cluster.index(p["spec"]["nodeName"])
        for d in devices:
            dev = (p["spec"]["nodeName"], d["gpu"], d["partition"])
            if cluster.device_index(n, d["gpu"], d["partition"]) < 0:
                problems.append(f"{key}: {dev} does not exist")
                continue
            if req.kind == KIND_WHOLE or req.exclusive:
                whole.setdefault(dev, []).append(key)
                milli[dev] = milli.get(dev, 0) + 1000
            else:
                milli[dev] = milli.get(dev, 0) + round(d["fraction"] * 1000)
                mem[dev] = mem.get(dev, 0) + d["memoryMiB"]
                if req.kind == KIND_XCD:
                    for x in d["xcds"]:
                        xcds.setdefault(dev + (x,), []).append(key)
    for dev, owners in whole.items():
        if len(owners) > 1 or milli.get(dev, 0) > 1000:
            problems.append(f"{dev} held whole by {owners} (total share {milli.get(dev, 0)})")
    for dev, m in milli.items():
        if m > 1000:
            problems.append(f"{dev}: compute share {m / 1000} > 1")
    cap = 192 * 1024
    for dev, m in mem.items():
        if m > cap:
            problems.append(f"{dev}: {m} MiB > {cap}")
    for x, owners in xcds.items():
        if len(owners) > 1:
            problems.append(f"XCD {x} held by {owners}")
    return problems


#: Independent device model of the test nodes (MI300X only): XCDs and HBM of one physical GPU,
#: logical GPUs per compute partition mode. Written out here rather than read from kaiwo_core, so
#: the checker below shares no code with the scheduler it checks.
_MI300X = {"xcds": 8, "vram_mib": 192 * 1024}
_PARTITIONS = {"spx": 1, "dpx": 2, "qpx": 4, "cpx": 8}


def _devices_of(node_obj: dict) -> dict:
    """(node, gpu, partition) -> (XCD set, memory MiB) of a Node built by :func:`node`."""
    meta, status = node_obj["metadata"], node_obj.get("status") or {}
    mode = meta["labels"]["amd.com/gpu.compute-memory-partition"].split("_")[0].lower()
    per = _PARTITIONS[mode]
    xcds = _MI300X["xcds"] // per
    gpus = int(status["allocatable"]["amd.com/gpu"]) // per
    return {(meta["name"], g, p): (set(range(p * xcds, (p + 1) * xcds)), _MI300X["vram_mib"] // per)
            for g in range(gpus) for p in range(per)}


def overcommit(pods: list[dict], nodes: list[dict]) -> list[str]:
    """Every device handed out beyond what it has, judged from the final API objects alone (bound
    pods' ``kaiwo.ai/gpu-assignment`` and the Nodes' labels), independently of Kaiwo's code:

    * a device's compute share (whole-GPU pods count 1) above 1;
    * its GPU memory (whole-GPU pods count all of it) above its capacity;
    * an XCD of an XCD-isolated pod used by any other pod (isolated or time-sliced);
    * a whole-GPU (or non-sharing) pod on a device with any other pod;
    * a device or XCD that does not exist.

    Empty when nothing is over-committed."""
    devices = {}
    for n in nodes:
        devices.update(_devices_of(n))
    on: dict = {}   # device -> [(pod, share, memory, xcds, isolated, whole)]
    problems = []
    for p in pods:
        spec, meta = p.get("spec") or {}, p.get("metadata") or {}
        if not spec.get("nodeName") or (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        ann = meta.get("annotations") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        whole_gpus = any("amd.com/gpu" in ((c.get("resources") or {}).get("limits") or {})
                         for c in spec.get("containers") or [])
        shared = "kaiwo.ai/gpu-fraction" in ann or "kaiwo.ai/gpu-memory" in ann
        if not (whole_gpus or shared):
            continue
        raw = ann.get("kaiwo.ai/gpu-assignment")
        if raw is None:
            problems.append(f"{key}: bound GPU pod without kaiwo.ai/gpu-assignment")
            continue
        whole = whole_gpus and not shared or ann.get("kaiwo.ai/gpu-sharing") == "false"
        isolated = ann.get("kaiwo.ai/gpu-isolation") == "xcd"
        for d in json.loads(raw):
            dev = (spec["nodeName"], d["gpu"], d["partition"])
            if dev not in devices:
                problems.append(f"{key}: device {dev} does not exist")
                continue
            xcds = set(d.get("xcds") or [])
            if not xcds <= devices[dev][0]:
                problems.append(f"{key}: XCDs {sorted(xcds - devices[dev][0])} are not on {dev}")
            share = 1.0 if whole else float(d["fraction"])
            memory = devices[dev][1] if whole else int(d["memoryMiB"])
            on.setdefault(dev, []).append((key, share, memory, xcds, isolated, whole))
    for dev, users in sorted(on.items()):
        share = sum(u[1] for u in users)
        if share > 1 + 1e-9:
            problems.append(f"{dev}: compute share {share:g} > 1 ({[u[0] for u in users]})")
        memory = sum(u[2] for u in users)
        if memory > devices[dev][1]:
            problems.append(f"{dev}: {memory} of {devices[dev][1]} MiB ({[u[0] for u in users]})")
        for u in users:
            if u[5] and len(users) > 1:
                problems.append(f"{dev}: {u[0]} holds it whole, shared with {[v[0] for v in users if v is not u]}")
            if u[4]:
                for v in users:
                    if v is not u and u[3] & v[3]:
                        problems.append(f"{dev}: XCDs {sorted(u[3] & v[3])} of isolated {u[0]} also used by {v[0]}")
    return problems
