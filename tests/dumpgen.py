"""Hypothesis strategy for whole Kubernetes object dumps, and the step from one cycle to the next.

A dump has Nodes (MI300X/MI325X/MI355X in SPX/DPX/QPX/CPX with NPS1/NPS4, generic GPUs, CPU-only;
labels and taints), PriorityClasses, a tree of KaiwoQueues with quotas and limits, KaiwoJobs,
KaiwoReservations and Pods: whole GPUs, fractions, GPU memory, sharing on and off, XCD isolation,
fractions on several devices, CPU-only; node selectors, tolerations, priorities, gangs, expected
runtimes; some already running with a ``kaiwo.ai/gpu-assignment`` this module chose itself (with
its own device bookkeeping, so the running pods are valid whatever Kaiwo would do), some for
another scheduler, a few malformed.

Dumps are small (a few nodes, a dozen pods) so that capacity runs out and every rule is tested.

:func:`next_cycle` applies a cycle's decisions as the controller would: each binding sets
``spec.nodeName`` and the ``kaiwo.ai/gpu-assignment`` annotation (the binder's compact JSON),
KaiwoJob replicas exist as Pods, preempted pods are gone and each preemptor carries
``status.nominatedNodeName``.
"""
from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

from hypothesis import strategies as st

from tests.invariants import AMD_MODELS, COMPUTE_MODES, read_node

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
MODES = ["spx_nps1", "dpx_nps1", "qpx_nps1", "qpx_nps4", "cpx_nps1", "cpx_nps4"]
FRACTIONS = ["0.1", "0.125", "0.25", "0.3", "0.5", "0.75", "1"]
GPU_MEMORY = ["4Gi", "16Gi", "40000", "48Gi", "96Gi", "200Gi"]


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------------------ nodes

@st.composite
def node(draw, name: str) -> dict:
    kind = draw(st.sampled_from(["amd", "amd", "amd", "generic", "cpu"]))
    labels = {"pool": draw(st.sampled_from(["a", "b"]))}
    alloc = {"cpu": str(draw(st.sampled_from([2, 8, 64]))),
             "memory": f"{draw(st.sampled_from([8, 64, 1024]))}Gi",
             "pods": str(draw(st.sampled_from([3, 8, 110])))}
    if kind == "amd":
        model = draw(st.sampled_from(["MI300X", "MI325X", "MI355X"]))
        mode = draw(st.sampled_from(MODES))
        per = COMPUTE_MODES[mode.split("_")[0].upper()] or AMD_MODELS[model][0]
        labels["amd.com/gpu.product-name"] = f"AMD_Instinct_{model}"
        labels["amd.com/gpu.compute-memory-partition"] = mode
        mixed = draw(st.integers(0, 9)) == 0  # the mixed strategy names the mode in the resource
        alloc["amd.com/" + (mode if mixed else "gpu")] = str(per * draw(st.integers(1, 2)))
    elif kind == "generic":
        labels["nvidia.com/gpu.product"] = "A100"
        if draw(st.booleans()):
            labels["nvidia.com/gpu.memory"] = "40960"
        alloc["nvidia.com/gpu"] = str(draw(st.integers(1, 4)))
    obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
           "spec": {}, "status": {"allocatable": alloc}}
    if draw(st.integers(0, 4)) == 0:
        obj["spec"]["taints"] = [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}]
    return obj


# ------------------------------------------------------------------------------------- pods

@st.composite
def pod_body(draw, name: str, ns: str, queues: list, classes: list) -> dict:
    """One Pod object (unbound); its GPU request is one of the shapes Kaiwo reads."""
    shape = draw(st.sampled_from(["cpu", "whole", "whole", "frac", "frac", "mem", "fracmem", "xcd",
                                  "excl", "multi"]))
    ann: dict = {}
    limits = {"cpu": draw(st.sampled_from(["100m", "500m", "1", "4"])),
              "memory": draw(st.sampled_from(["128Mi", "1Gi", "8Gi", "64Gi"]))}
    if shape == "whole":
        res = "nvidia.com/gpu" if draw(st.integers(0, 5)) == 0 else "amd.com/gpu"
        limits[res] = str(draw(st.integers(1, 3)))
    elif shape != "cpu":
        if shape != "mem":
            ann["kaiwo.ai/gpu-fraction"] = draw(st.sampled_from(FRACTIONS))
        if shape in ("mem", "fracmem") or (shape == "excl" and draw(st.booleans())):
            ann["kaiwo.ai/gpu-memory"] = draw(st.sampled_from(GPU_MEMORY))
        if shape == "xcd":
            ann["kaiwo.ai/gpu-isolation"] = "xcd"
        if shape == "excl":
            ann["kaiwo.ai/gpu-sharing"] = "false"
        elif draw(st.integers(0, 5)) == 0:
            ann["kaiwo.ai/gpu-sharing"] = "true"
        if shape == "multi":
            ann["kaiwo.ai/gpu-fraction-num-devices"] = "2"
    if shape != "cpu" and draw(st.integers(0, 7)) == 0:
        ann["kaiwo.ai/gpu-model"] = draw(st.sampled_from(["MI325X", "MI300X|MI355X", "A100"]))
    if draw(st.integers(0, 3)) == 0:
        ann["kaiwo.ai/expected-runtime"] = draw(st.sampled_from(["90s", "10m", "2h"]))
    if draw(st.integers(0, 9)) == 0:
        ann["kaiwo.ai/preemptible"] = "false"
    if draw(st.integers(0, 19)) == 0:  # malformed: Kaiwo must reject it and carry on
        ann["kaiwo.ai/gpu-fraction"] = draw(st.sampled_from(["1.5", "abc", "0"]))
    labels = {}
    if queues and draw(st.integers(0, 4)):
        labels["kaiwo.ai/queue"] = draw(st.sampled_from(queues))
    spec: dict = {"schedulerName": "default-scheduler" if draw(st.integers(0, 19)) == 0 else "kaiwo",
                  "containers": [{"name": "main", "resources": {"limits": limits}}]}
    prio = draw(st.sampled_from(["none", "int", "class"]))
    if prio == "int":
        spec["priority"] = draw(st.sampled_from([0, 100, 1000]))
    elif prio == "class" and classes:
        spec["priorityClassName"] = draw(st.sampled_from(classes))
    if draw(st.integers(0, 4)) == 0:
        spec["nodeSelector"] = {"pool": draw(st.sampled_from(["a", "b"]))}
    if draw(st.integers(0, 2)) == 0:
        spec["tolerations"] = [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]
    # Few distinct creation times: ties are common, and must not make decisions order-dependent.
    created = NOW - draw(st.sampled_from([0, 60, 600, 3600]))
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}",
                         "creationTimestamp": stamp(created), "labels": labels, "annotations": ann},
            "spec": spec}


class Devices:
    """The generator's own bookkeeping of what running pods hold, to give them valid assignments
    (first fit from a drawn node; shares, memory, XCDs, exclusivity)."""

    def __init__(self, nodes: list[dict]):
        self.nodes = {}
        for o in nodes:
            n = read_node(o)
            if n.name not in self.nodes:
                self.nodes[n.name] = n
        self.cpu = {n: 0 for n in self.nodes}
        self.mem = {n: 0 for n in self.nodes}
        self.pods = {n: 0 for n in self.nodes}
        self.dev = {(n, k): {"milli": 0, "mem": 0, "alone": False, "users": 0, "xcd_held": set(),
                             "ts_xcds": set()}
                    for n, nd in self.nodes.items() for k in nd.devices}

    def place(self, pod: dict, start: int) -> tuple[str, list] | None:
        from tests.invariants import read_pod

        p = read_pod(pod)
        if not p.readable or p.count > 8:
            return None
        names = list(self.nodes)
        for i in range(len(names)):
            name = names[(start + i) % len(names)]
            nd = self.nodes[name]
            if self.cpu[name] + p.cpu > nd.cpu or self.mem[name] + p.mem > nd.mem or \
                    self.pods[name] + 1 > nd.pods:
                continue
            picked = []
            for k, dev in sorted(nd.devices.items()):
                if len(picked) == p.count:
                    break
                got = self._fit(p, dev, self.dev[(name, k)])
                if got is not None:
                    picked.append((k, got))
            if len(picked) < p.count or (p.kind == "whole" and p.resource not in nd.resources):
                continue
            self.cpu[name] += p.cpu
            self.mem[name] += p.mem
            self.pods[name] += 1
            out = []
            for k, (milli, mib, xcds, alone) in picked:
                s = self.dev[(name, k)]
                s["milli"] += milli
                s["mem"] += mib
                s["users"] += 1
                s["alone"] |= alone
                (s["xcd_held"] if p.kind == "xcd" else s["ts_xcds"]).update(xcds)
                frac = milli / 1000 if p.kind in ("xcd", "whole") or p.exclusive else p.milli / 1000
                out.append({"gpu": k[0], "partition": k[1], "xcds": sorted(xcds), "fraction": frac,
                            "memoryMiB": mib})
            return name, out
        return None

    @staticmethod
    def _fit(p, dev, s):
        if s["alone"]:
            return None
        if p.kind == "whole" or p.exclusive:
            if s["users"] or (p.gpu_mem > dev.mem):
                return None
            return 1000, dev.mem, set(dev.xcds), True
        if p.kind == "xcd":
            if not dev.per_partition:
                return None
            need = -(-p.milli * dev.per_partition // 1000)
            free = sorted(dev.xcds - s["xcd_held"] - s["ts_xcds"])
            milli = 1000 * need // dev.per_partition
            mib = max(p.gpu_mem, dev.mem * need // dev.per_partition)
            if len(free) < need or s["milli"] + milli > 1000 or s["mem"] + mib > dev.mem:
                return None
            return milli, mib, set(free[:need]), False
        mib = p.gpu_mem or dev.mem * p.milli // 1000
        if s["milli"] + p.milli > 1000 or s["mem"] + mib > dev.mem:
            return None
        return p.milli, mib, set(dev.xcds - s["xcd_held"]), False


# ------------------------------------------------------------------------------------ dumps

@st.composite
def queue_tree(draw) -> list[dict]:
    n = draw(st.integers(0, 5))
    out, quota = [], {}
    for i in range(n):
        name = f"q{i}"
        parent = draw(st.sampled_from([None] + [o["metadata"]["name"] for o in out]))
        q = draw(st.sampled_from([0, 0.5, 1, 2, 4]))
        if parent is not None:
            q = min(q, quota[parent])
        quota[name] = q
        gpu = {"quota": q, "overQuotaWeight": draw(st.integers(1, 3))}
        if draw(st.booleans()):
            gpu["limit"] = q + draw(st.sampled_from([0, 0.5, 1, 3]))
        spec: dict = {"resources": {"gpu": gpu}, "priority": draw(st.sampled_from([0, 0, 1]))}
        if draw(st.integers(0, 3)) == 0:
            spec["resources"]["cpu"] = {"limit": draw(st.sampled_from(["1", "4", "16"]))}
        if draw(st.integers(0, 3)) == 0:
            spec["fairness"] = {"reclaimStrategy": "conservative"}
        if draw(st.integers(0, 3)) == 0:
            spec["preemptMinRuntime"] = "10m"
        if parent:
            spec["parentQueue"] = parent
        out.append({"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoQueue",
                    "metadata": {"name": name}, "spec": spec})
    return out


def leaves(queues: list[dict]) -> list[str]:
    parents = {q["spec"].get("parentQueue") for q in queues}
    return [q["metadata"]["name"] for q in queues if q["metadata"]["name"] not in parents]


@st.composite
def dumps(draw, duplicate_nodes: bool = True) -> list[dict]:
    """A whole dump of Kubernetes objects (see the module docstring)."""
    nodes = [draw(node(f"n{i}")) for i in range(draw(st.integers(1, 4)))]
    if duplicate_nodes and draw(st.integers(0, 14)) == 0:  # a second Node object of the same name
        nodes.append(draw(node(nodes[0]["metadata"]["name"])))
    classes = []
    objs: list[dict] = list(nodes)
    for name, value in (("high", 1000), ("low", 10)):
        if draw(st.booleans()):
            classes.append(name)
            pc = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                  "metadata": {"name": name}, "value": value}
            if name == "low" and draw(st.booleans()):
                pc["globalDefault"] = True
            objs.append(pc)
    queues = draw(queue_tree())
    objs += queues
    leaf = leaves(queues)
    if queues and draw(st.integers(0, 9)) == 0:
        leaf.append(queues[0]["metadata"]["name"])  # sometimes a pod names a parent: rejected

    pods = [draw(pod_body(f"p{i}", draw(st.sampled_from(["default", "default", "ml"])), leaf, classes))
            for i in range(draw(st.integers(0, 12)))]
    # Gangs by annotation: consecutive pods of one namespace, with or without an explicit minimum.
    i, g = 0, 0
    while i < len(pods):
        size = draw(st.integers(1, 4))
        if size > 1 and draw(st.integers(0, 2)) == 0:
            group = [p for p in pods[i:i + size] if p["metadata"]["namespace"] == pods[i]["metadata"]["namespace"]]
            minimum = draw(st.sampled_from([None, 1, len(group)]))
            for p in group:
                p["metadata"]["annotations"]["kaiwo.ai/gang"] = f"g{g}"
                if minimum is not None:
                    p["metadata"]["annotations"]["kaiwo.ai/gang-min-members"] = str(minimum)
                if draw(st.integers(0, 3)) == 0:
                    p["metadata"]["labels"].pop("kaiwo.ai/queue", None)
                    if leaf:
                        p["metadata"]["labels"]["kaiwo.ai/queue"] = leaf[0]
            # one queue per gang (members in different queues are refused, a case of its own)
            q = group[0]["metadata"]["labels"].get("kaiwo.ai/queue")
            for p in group:
                p["metadata"]["labels"].pop("kaiwo.ai/queue", None)
                if q:
                    p["metadata"]["labels"]["kaiwo.ai/queue"] = q
            g += 1
        i += size

    # Some pods already run, on devices this generator picked.
    devices = Devices(nodes)
    for p in pods:
        if p["spec"]["schedulerName"] == "kaiwo" and draw(st.integers(0, 2)) == 0:
            where = devices.place(p, draw(st.integers(0, 3)))
            if where is None:
                continue
            node_name, devs = where
            p["spec"]["nodeName"] = node_name
            started = NOW - draw(st.sampled_from([30, 900, 7200]))
            p["status"] = {"phase": "Running", "startTime": stamp(started)}
            if devs or draw(st.integers(0, 5)):
                p["metadata"]["annotations"]["kaiwo.ai/gpu-assignment"] = json.dumps(devs, separators=(",", ":"))
    objs += pods

    for j in range(draw(st.integers(0, 2))):
        replicas = draw(st.integers(1, 3))
        spec: dict = {"replicas": replicas,
                      "template": {"metadata": {"labels": {}}, "spec": {"containers": [
                          {"name": "main", "resources": {"limits": {"cpu": draw(st.sampled_from(["1", "4"])),
                                                                    "memory": "4Gi"}}}]}}}
        if draw(st.booleans()):
            spec["minMembers"] = draw(st.integers(1, replicas))
        if draw(st.booleans()):
            spec["gpusPerReplica"] = draw(st.integers(1, 2))
        elif draw(st.booleans()):
            spec["template"]["metadata"]["annotations"] = {"kaiwo.ai/gpu-fraction": draw(st.sampled_from(FRACTIONS))}
        if leaf and draw(st.booleans()):
            spec["template"]["metadata"]["labels"]["kaiwo.ai/queue"] = draw(st.sampled_from(leaf))
        objs.append({"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoJob",
                     "metadata": {"name": f"j{j}", "namespace": "ml", "uid": f"uid-job-{j}",
                                  "creationTimestamp": stamp(NOW - draw(st.sampled_from([0, 600])))},
                     "spec": spec})

    for r in range(draw(st.integers(0, 2))):
        spec = {}
        if leaf and draw(st.booleans()):
            spec["queue"] = draw(st.sampled_from(leaf))
        else:
            spec["job"] = draw(st.sampled_from(["ml/j0", "default/g0", "ml/g0", "default/p0"]))
        what = draw(st.integers(0, 5))
        node_name = nodes[r % len(nodes)]["metadata"]["name"]
        if what == 0:
            spec["gpus"] = draw(st.sampled_from([1, 8]))
        elif what == 1:  # GPUs or XCDs of a node
            spec["node"] = node_name
            spec[draw(st.sampled_from(["gpus", "xcds"]))] = draw(st.sampled_from([1, 2, 4]))
        elif what == 2:  # a named GPU, all of it or some XCDs
            dev = {"node": node_name, "gpu": draw(st.integers(0, 1))}
            if draw(st.booleans()):
                dev["xcds"] = draw(st.sampled_from([[0], [0, 1], [2, 3, 4, 5]]))
            spec["devices"] = [dev]
        else:
            spec["nodes"] = [node_name]
        if draw(st.booleans()):
            spec["start"] = stamp(NOW + draw(st.sampled_from([0, 300, 7200])))
        end = draw(st.sampled_from(["until", "ttl", "expired", "none"]))
        if end == "until":
            spec["until"] = stamp(NOW + 86400)
        elif end == "ttl":
            spec["ttl"] = "2h"
        elif end == "expired":
            spec["until"] = stamp(NOW - 60)
        objs.append({"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoReservation",
                     "metadata": {"name": f"r{r}", "creationTimestamp": stamp(NOW - 600)},
                     "spec": spec})
    return objs


# ------------------------------------------------------------------------------ next cycle

def next_cycle(objs: list[dict], doc: dict, now: float) -> list[dict]:
    """The objects after the controller carried out ``doc``: bound pods have ``spec.nodeName`` and
    the assignment annotation exactly as the binder writes them (one atomic Binding), KaiwoJob
    replicas Kaiwo asked for exist as Pods (created now), preempted pods are evicted (gone) and
    their preemptors nominated."""
    out = copy.deepcopy(objs)
    bound = {b["pod"]: b for b in doc["bindings"]}
    evicted = {p["pod"] for p in doc.get("preemptions", [])}
    nominated = {p["preemptor"]: p["node"] for p in doc.get("preemptions", []) if p.get("preemptor")}
    pods = {}
    for o in out:
        if o.get("kind") == "Pod":
            m = o["metadata"]
            pods[f"{m.get('namespace') or 'default'}/{m['name']}"] = o
    listed = {e["pod"] for k in ("bindings", "pending") for e in doc[k]}
    for o in out:
        if o.get("kind") != "KaiwoJob":
            continue
        ns, job, spec = o["metadata"]["namespace"], o["metadata"]["name"], o["spec"]
        for i in range(spec.get("replicas", 1)):
            key = f"{ns}/{job}-{i}"
            if key in pods or key not in listed:
                continue
            tmpl = copy.deepcopy(spec["template"])
            tspec = tmpl["spec"]
            tspec.setdefault("schedulerName", "kaiwo")
            gpus = spec.get("gpusPerReplica", 0)
            limits = tspec["containers"][0].setdefault("resources", {}).setdefault("limits", {})
            if gpus and "amd.com/gpu" not in limits and "nvidia.com/gpu" not in limits:
                limits["amd.com/gpu"] = str(gpus)
            ann = dict((tmpl.get("metadata") or {}).get("annotations") or {})
            ann["kaiwo.ai/gang"] = job
            ann["kaiwo.ai/gang-min-members"] = str(spec.get("minMembers", spec.get("replicas", 1)))
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": f"{job}-{i}", "namespace": ns, "uid": f"uid-{key}",
                                "creationTimestamp": stamp(now),
                                "labels": {**((tmpl.get("metadata") or {}).get("labels") or {}),
                                           "kaiwo.ai/job": job},
                                "annotations": ann},
                   "spec": tspec}
            pods[key] = pod
            out.append(pod)
    for key, b in bound.items():
        pod = pods[key]
        pod["spec"]["nodeName"] = b["node"]
        pod["metadata"].setdefault("annotations", {})["kaiwo.ai/gpu-assignment"] = \
            json.dumps([{k: d[k] for k in ("gpu", "partition", "xcds", "fraction", "memoryMiB")}
                        for d in b["devices"]], separators=(",", ":"))  # as the binder writes it
    for key, node_name in nominated.items():
        if key in pods and key not in evicted:
            pods[key].setdefault("status", {})["nominatedNodeName"] = node_name
    return [o for o in out if not (o.get("kind") == "Pod" and
                                   f"{o['metadata'].get('namespace') or 'default'}/{o['metadata']['name']}" in evicted)]
