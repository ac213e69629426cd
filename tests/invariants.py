"""Independent checks of one scheduling cycle's decisions against its input objects.

Nothing here imports ``kaiwo_core``: nodes, pods, queues, jobs and reservations are read from the
raw Kubernetes objects with this module's own small decoder (the subset of the formats the tests
generate, read the way DESIGN.md and the README describe them), the decisions from the ``kaiwo
schedule`` JSON document, and every load is recomputed from scratch. A defect in the kernels or in
the core's placement and accounting code therefore cannot hide itself by being shared with its
check.

:func:`violations` returns every broken invariant as ``(category, message)``; the categories let a
test (or someone hunting a defect) look at one kind at a time:

``accounting``   every pod exactly once among running, bindings, pending and rejected
``binding``      a binding for a pod that was not Kaiwo's to place, or with the wrong devices
``node``         a node over its CPU, memory or pod capacity
``device``       a logical GPU over its compute share or memory; a whole-GPU or non-sharing pod
                 not alone on its device; a pod given less GPU memory than it asked for
``xcd``          an XCD outside its partition, or an XCD-isolated pod's XCDs used by another pod
``constraint``   a binding against a node selector, an untolerated taint, the GPU resource name
                 or the GPU model asked for
``gang``         a gang bound partly (new members bound while fewer than its minimum run); pods
                 evicted for a gang that is not nominated up to its minimum (running, bound and
                 nominated members together)
``reservation``  a pod bound onto a held node it may not use (neither owner nor backfill); a
                 declared reservation missing from the decisions
``queue-limit``  a queue above its limit on a resource after new pods were bound to it
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

GIB = 1024
# Facts from the AMD Instinct data sheets: XCDs and HBM (MiB) per physical GPU.
AMD_MODELS = {"MI300X": (8, 192 * GIB), "MI325X": (8, 256 * GIB), "MI350X": (8, 288 * GIB),
              "MI355X": (8, 288 * GIB), "MI300A": (6, 128 * GIB)}
# Logical GPUs per physical GPU in each compute partition mode (CPX: one per XCD).
COMPUTE_MODES = {"SPX": 1, "DPX": 2, "TPX": 3, "QPX": 4, "CPX": None}
GENERIC_MIB = {"A100": 80 * GIB, "H100": 80 * GIB, "T4": 16 * GIB, "V100M32": 32 * GIB}

_SUFFIX = {"": 1, "m": Decimal("0.001"), "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12,
           "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}
_QTY = re.compile(r"^([0-9.]+(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)$")


class Unreadable(ValueError):
    """A value this checker's decoder does not read (the pod/node is then left to Kaiwo)."""


def quantity(raw, unit: str) -> int:
    """A Kubernetes quantity as cpu milli-cores, memory MiB or a count; rounded up."""
    m = _QTY.match(str(raw).strip()) if raw is not None else None
    if not m or m.group(2) not in _SUFFIX:
        raise Unreadable(f"quantity {raw!r}")
    v = Decimal(m.group(1)) * _SUFFIX[m.group(2)]
    if unit == "cpu":
        v *= 1000
    elif unit == "memory":
        v /= 2 ** 20
    return int(math.ceil(v))


def gpu_mib(raw) -> int:
    """``kaiwo.ai/gpu-memory``: a plain number is MiB, a suffixed quantity is bytes."""
    text = str(raw).strip()
    return int(Decimal(text)) if re.fullmatch(r"[0-9]+", text) else quantity(text, "memory")


def duration(raw) -> float:
    """A Go duration (``90s``, ``10m``, ``1h30m``) or a number of seconds."""
    if isinstance(raw, (int, float)):
        return float(raw)
    parts = re.findall(r"([0-9.]+)(ms|s|m|h)", str(raw))
    if not parts or "".join(a + b for a, b in parts) != str(raw).strip():
        raise Unreadable(f"duration {raw!r}")
    return sum(float(a) * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}[b] for a, b in parts)


def epoch(raw) -> float:
    if isinstance(raw, datetime):
        return (raw if raw.tzinfo else raw.replace(tzinfo=timezone.utc)).timestamp()
    return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp()


def key_of(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


# ------------------------------------------------------------------------------------ nodes

@dataclass
class Device:
    mem: int             #: MiB
    xcds: frozenset      #: physical XCD indices of the partition (empty: generic GPU)
    per_partition: int   #: XCDs in a partition (0: generic GPU)


@dataclass
class Node:
    name: str
    cpu: int
    mem: int
    pods: int
    labels: dict
    taints: list                          #: (key, value, effect) of NoSchedule/NoExecute taints
    resources: set                        #: GPU resource names the node advertises
    model: str = ""
    devices: dict = field(default_factory=dict)   #: (gpu, partition) -> Device
    modes: set = field(default_factory=set)       #: compute partition modes of its GPUs


def read_node(obj: dict) -> Node:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    alloc = status.get("allocatable") or status.get("capacity") or {}
    labels = dict(meta.get("labels") or {})
    node = Node(meta["name"], quantity(alloc["cpu"], "cpu"), quantity(alloc["memory"], "memory"),
                quantity(alloc.get("pods", 110), "count"), labels,
                [(t.get("key", ""), t.get("value", ""), t["effect"]) for t in spec.get("taints") or []
                 if t.get("effect") in ("NoSchedule", "NoExecute")], set())
    for res, raw in alloc.items():
        count = None
        if res == "nvidia.com/gpu":
            count = quantity(raw, "count")
            node.model = labels.get("nvidia.com/gpu.product", "generic").upper()
            mem = int(labels["nvidia.com/gpu.memory"]) if "nvidia.com/gpu.memory" in labels \
                else GENERIC_MIB.get(node.model, 0)
            node.devices.update({(g, 0): Device(mem, frozenset(), 0) for g in range(count)})
            node.modes.add("SPX")
        elif res.startswith("amd.com/"):
            mode = labels.get("amd.com/gpu.compute-memory-partition", "spx_nps1") \
                if res == "amd.com/gpu" else res.split("/", 1)[1]
            compute = mode.upper().replace("-", "_").split("_")[0]
            product = labels.get("amd.com/gpu.product-name", "").upper()
            model = next((m for m in sorted(AMD_MODELS, key=len, reverse=True) if m in product), None)
            if compute not in COMPUTE_MODES or model is None:
                raise Unreadable(f"node {node.name}: {res} in mode {mode!r} of {product!r}")
            xcds, hbm = AMD_MODELS[model]
            per_gpu = COMPUTE_MODES[compute] or xcds
            count = quantity(raw, "count")
            node.model = model
            node.modes.add(compute)
            k = xcds // per_gpu
            for i in range(count):
                g, p = divmod(i, per_gpu)
                node.devices[(g, p)] = Device(hbm // per_gpu, frozenset(range(p * k, (p + 1) * k)), k)
        if count:
            node.resources.add(res)
    return node


def read_nodes(objs: list[dict], invalid: set) -> dict:
    """Nodes by name. Nodes Kaiwo reported invalid hold nothing (capacity 0). Two Nodes of one
    name can only be trusted with what both offer: the smaller of each capacity."""
    out: dict[str, Node] = {}
    for o in objs:
        if o.get("kind") != "Node":
            continue
        n = read_node(o)
        if n.name in invalid:
            n.cpu = n.mem = n.pods = 0
            n.devices = {}
        prev = out.get(n.name)
        if prev is not None:
            n.cpu, n.mem, n.pods = min(n.cpu, prev.cpu), min(n.mem, prev.mem), min(n.pods, prev.pods)
            n.devices = {k: Device(min(d.mem, prev.devices[k].mem), d.xcds & prev.devices[k].xcds,
                                   d.per_partition)
                         for k, d in n.devices.items() if k in prev.devices}
        out[n.name] = n
    return out


# ------------------------------------------------------------------------------------- pods

@dataclass
class Pod:
    key: str
    obj: dict
    cpu: int = 0
    mem: int = 0
    kind: str = "none"           #: none, whole, shared, xcd
    count: int = 0
    milli: int = 0               #: compute share per device, 0..1000
    gpu_mem: int = 0             #: MiB per device asked for (0: none)
    exclusive: bool = False
    resource: str | None = None
    models: frozenset | None = None
    partitions: frozenset | None = None  #: kaiwo.ai/gpu-partition
    queue: str = "default"
    unit: str = ""               #: gang "ns/name", or the pod itself
    runtime: float | None = None
    readable: bool = True


def read_pod(obj: dict) -> Pod:
    """Decode what the checks need; a pod whose values this decoder does not read is marked
    unreadable (it must not be bound: Kaiwo rejects what is malformed)."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    ann, labels = meta.get("annotations") or {}, meta.get("labels") or {}
    p = Pod(key_of(obj), obj, queue=labels.get("kaiwo.ai/queue") or "default")
    ns = p.key.split("/", 1)[0]
    p.unit = f"{ns}/{ann['kaiwo.ai/gang']}" if ann.get("kaiwo.ai/gang") else p.key
    try:
        for c in spec.get("containers") or []:
            res = c.get("resources") or {}
            req, lim = res.get("requests") or {}, res.get("limits") or {}
            for k in ("cpu", "memory"):
                raw = req.get(k, lim.get(k))
                if raw is not None:
                    v = quantity(raw, k)
                    if k == "cpu":
                        p.cpu += v
                    else:
                        p.mem += v
            for k in {**req, **lim}:
                if k in ("amd.com/gpu", "nvidia.com/gpu") or re.fullmatch(r"amd\.com/[a-z]px_nps\d", k):
                    n = quantity(lim.get(k, req.get(k)), "count")
                    if n:
                        p.resource, p.count = k, p.count + n
        frac, gmem = ann.get("kaiwo.ai/gpu-fraction"), ann.get("kaiwo.ai/gpu-memory")
        if frac is not None or gmem is not None:
            if p.resource is not None:
                raise Unreadable("fraction with a whole-GPU resource")
            p.milli = int(Decimal(str(frac)) * 1000) if frac is not None else 0
            p.gpu_mem = gpu_mib(gmem) if gmem is not None else 0
            if not (frac is None or 100 <= p.milli <= 1000) or (gmem is not None and p.gpu_mem <= 0):
                raise Unreadable(f"fraction {frac!r} / memory {gmem!r}")
            p.count = int(ann.get("kaiwo.ai/gpu-fraction-num-devices", 1))
            p.kind = "xcd" if ann.get("kaiwo.ai/gpu-isolation") == "xcd" else "shared"
            p.exclusive = str(ann.get("kaiwo.ai/gpu-sharing", "true")).lower() == "false"
        elif p.resource is not None:
            p.kind, p.milli = "whole", 1000
        if ann.get("kaiwo.ai/gpu-model"):
            p.models = frozenset(m.strip().upper() for m in str(ann["kaiwo.ai/gpu-model"]).split("|"))
        if ann.get("kaiwo.ai/gpu-partition"):
            p.partitions = frozenset(m.strip().upper() for m in str(ann["kaiwo.ai/gpu-partition"]).split("|"))
        if "kaiwo.ai/expected-runtime" in ann:
            p.runtime = duration(ann["kaiwo.ai/expected-runtime"])
    except (Unreadable, ValueError, ArithmeticError, TypeError):
        p.readable = False
    return p


def job_pods(objs: list[dict], pods: dict) -> tuple[dict, dict]:
    """Pods Kaiwo creates for KaiwoJobs (the replicas with no Pod yet, ``NAME-<i>``, as the
    README's contract says) and each valid job's gang minimum, by gang id."""
    created, minimum = {}, {}
    for o in objs:
        if o.get("kind") != "KaiwoJob":
            continue
        spec, key = o.get("spec") or {}, key_of(o)
        replicas, mins = spec.get("replicas", 1), spec.get("minMembers", spec.get("replicas", 1))
        if not (isinstance(replicas, int) and isinstance(mins, int) and 1 <= mins <= replicas
                and ((spec.get("template") or {}).get("spec") or {}).get("containers")):
            continue
        minimum[key] = mins
        ns, name = key.split("/", 1)
        have = [k for k, p in pods.items() if k.split("/", 1)[0] == ns
                and ((p.obj.get("metadata") or {}).get("labels") or {}).get("kaiwo.ai/job") == name]
        for k in have:
            pods[k].unit = key
        for i in range(replicas):
            if len(have) >= replicas:
                break
            k = f"{ns}/{name}-{i}"
            if k not in pods:
                tmpl = spec["template"]
                pod = read_pod({"metadata": {"namespace": ns, "name": f"{name}-{i}",
                                             **{f: (tmpl.get("metadata") or {}).get(f)
                                                for f in ("labels", "annotations")}},
                                "spec": tmpl["spec"]})
                gpus = spec.get("gpusPerReplica", 0)
                if gpus and pod.kind == "none":
                    pod.kind, pod.count, pod.milli, pod.resource = "whole", gpus, 1000, "amd.com/gpu"
                pod.unit = key
                created[k] = pod
                have.append(k)
    return created, minimum


# ----------------------------------------------------------------------------------- checks

def _charge(p: Pod, dev: Device | None, d: dict, max_dev_mem: int) -> tuple[int, int]:
    """(compute milli, GPU MiB) a pod holds on one device entry of its assignment."""
    if p.kind == "whole" or p.exclusive:
        return 1000, dev.mem if dev else d["memoryMiB"]
    if p.kind == "xcd":
        return (1000 * len(d["xcds"]) // dev.per_partition if dev and dev.per_partition else 1000), d["memoryMiB"]
    return p.milli, d["memoryMiB"]


def queue_charge(p: Pod, dev: Device | None, d: dict, max_dev_mem: int) -> int:
    """GPU milli a device entry counts against the pod's queue: what the pod holds (a whole-GPU or
    non-sharing pod the device, an XCD-isolated pod its XCDs); a memory-only pod the share of the
    largest device in the cluster its memory is (the smallest charge it could have)."""
    if p.kind == "shared" and not p.exclusive and p.milli == 0:
        return min(1000, -(-p.gpu_mem * 1000 // max_dev_mem)) if max_dev_mem else 0
    return _charge(p, dev, d, max_dev_mem)[0]


def tolerated(pod_obj: dict, taint: tuple) -> bool:
    key, value, effect = taint
    for t in (pod_obj.get("spec") or {}).get("tolerations") or []:
        if t.get("effect") and t["effect"] != effect:
            continue
        if t.get("operator", "Equal") == "Exists" and (not t.get("key") or t.get("key") == key):
            return True
        if t.get("operator", "Equal") == "Equal" and t.get("key") == key and str(t.get("value", "")) == value:
            return True
    return False


def violations(objs: list[dict], doc: dict, now: float) -> list[tuple[str, str]]:
    """Every invariant ``doc`` (one cycle's JSON decisions on ``objs``, run at ``now``) breaks."""
    out: list[tuple[str, str]] = []

    def bad(cat: str, msg: str):
        out.append((cat, msg))

    invalid_nodes = {e.get("node") or e.get("name") for e in doc.get("invalidNodes", [])}
    nodes = read_nodes(objs, invalid_nodes)
    max_dev_mem = max((d.mem for n in nodes.values() for d in n.devices.values()), default=0)
    pods = {}
    for o in objs:
        if o.get("kind") == "Pod":
            pods[key_of(o)] = read_pod(o)
    created, job_min = job_pods(objs, pods)
    everyone = {**pods, **created}

    # -- accounting: every pod exactly once
    seen = Counter(e["pod"] for k in ("bindings", "pending", "rejected", "running") for e in doc[k])
    for k in everyone.keys() - seen.keys():
        bad("accounting", f"{k} is in no list")
    for k in seen.keys() - everyone.keys():
        bad("accounting", f"{k} is listed but is no input pod nor a job's replica")
    for k, c in seen.items():
        if c > 1:
            bad("accounting", f"{k} is listed {c} times")

    preempted = {e["pod"] for e in doc.get("preemptions", [])}
    holders = []  # (pod, node name, devices, new)
    for e in doc["running"]:
        if e.get("phase") == "finished" or e["pod"] not in everyone:
            continue
        p = everyone[e["pod"]]
        ann = ((p.obj.get("metadata") or {}).get("annotations") or {}).get("kaiwo.ai/gpu-assignment")
        if ann is not None and _same_devices(json.loads(ann), e["devices"]) is False:
            bad("binding", f"running {p.key}: devices {e['devices']} are not its annotation {ann}")
        holders.append((p, e["node"], e["devices"], False))
    for e in doc["bindings"]:
        p = everyone.get(e["pod"])
        if p is None:
            continue
        spec = p.obj.get("spec") or {}
        if spec.get("nodeName") or not p.readable or \
                spec.get("schedulerName", "kaiwo" if p.key in created else "default-scheduler") != "kaiwo":
            bad("binding", f"{p.key} bound to {e['node']} but it is not Kaiwo's to place "
                           f"(nodeName {spec.get('nodeName')!r}, readable {p.readable}, "
                           f"schedulerName {spec.get('schedulerName')!r})")
            continue
        want = p.count if p.kind != "none" else 0
        keys = [(d["gpu"], d["partition"]) for d in e["devices"]]
        if len(keys) != want or len(set(keys)) != len(keys):
            bad("binding", f"{p.key} asks for {want} devices and got {keys}")
        holders.append((p, e["node"], e["devices"], True))

    # -- node and device loads
    load = defaultdict(lambda: [0, 0, 0])
    dev_load = defaultdict(lambda: [0, 0])    # (node, gpu, part) -> [milli, MiB]
    dev_holders = defaultdict(list)           # -> [(pod, alone, xcd pod, xcds)]
    for p, node_name, devices, new in holders:
        node = nodes.get(node_name)
        if node is None:
            bad("node", f"{p.key} is on {node_name!r}, which is no node")
            continue
        if node_name in invalid_nodes:  # left out: what runs there is a fact, a new pod a defect
            if new:
                bad("node", f"{p.key} was bound to {node_name!r}, a node Kaiwo reported invalid")
            continue
        ld = load[node_name]
        ld[0] += p.cpu
        ld[1] += p.mem
        ld[2] += 1
        for d in devices:
            dk = (node_name, d["gpu"], d["partition"])
            dev = node.devices.get((d["gpu"], d["partition"]))
            if dev is None:
                bad("device", f"{p.key} holds gpu {d['gpu']} partition {d['partition']} of {node_name}, "
                              "which it does not have")
                continue
            milli, mib = _charge(p, dev, d, max_dev_mem)
            dev_load[dk][0] += milli
            dev_load[dk][1] += mib
            dev_holders[dk].append((p.key, p.kind == "whole" or p.exclusive, p.kind == "xcd",
                                    frozenset(d["xcds"])))
            if new and p.gpu_mem and d["memoryMiB"] < p.gpu_mem:
                bad("device", f"{p.key} asked for {p.gpu_mem} MiB and got {d['memoryMiB']} on {dk}")
            if new and p.kind == "shared" and not p.exclusive and round(d["fraction"] * 1000) < p.milli:
                bad("device", f"{p.key} asked for {p.milli} milli and got {d['fraction']} on {dk}")
            if p.kind == "xcd":
                if not set(d["xcds"]) <= dev.xcds:
                    bad("xcd", f"{p.key}: XCDs {d['xcds']} outside partition {sorted(dev.xcds)} on {dk}")
                elif new and len(d["xcds"]) * 1000 < p.milli * dev.per_partition:
                    bad("xcd", f"{p.key}: {len(d['xcds'])} XCDs of {dev.per_partition} for {p.milli} milli")
    for name, (cpu, mem, n) in load.items():
        node = nodes[name]
        if cpu > node.cpu or mem > node.mem or n > node.pods:
            bad("node", f"{name}: cpu {cpu}/{node.cpu} m, memory {mem}/{node.mem} MiB, pods {n}/{node.pods}")
    for dk, (milli, mib) in dev_load.items():
        dev = nodes[dk[0]].devices[dk[1:]]
        hs = dev_holders[dk]
        if milli > 1000 or mib > dev.mem:
            bad("device", f"{dk}: compute {milli}/1000, memory {mib}/{dev.mem} MiB, held by {[h[0] for h in hs]}")
        if len(hs) > 1 and any(h[1] for h in hs):
            bad("device", f"{dk}: a whole-GPU or non-sharing pod shares it: {[h[0] for h in hs]}")
        for i, (k, _, isolated, xs) in enumerate(hs):
            if not isolated:
                continue
            for j, (k2, _, _, xs2) in enumerate(hs):
                if i != j and xs & xs2:
                    bad("xcd", f"{dk}: XCD-isolated {k} holds {sorted(xs)}, {k2} uses {sorted(xs2)}")

    new_by_key = {p.key: (node, devs) for p, node, devs, new in holders if new}

    # -- constraints of new bindings
    for k, (node_name, devs) in new_by_key.items():
        p, node = everyone[k], nodes.get(node_name)
        if node is None:
            continue
        spec = p.obj.get("spec") or {}
        for lk, lv in (spec.get("nodeSelector") or {}).items():
            if node.labels.get(lk) != str(lv):
                bad("constraint", f"{k} on {node_name}: nodeSelector {lk}={lv}, node has {node.labels.get(lk)!r}")
        for t in node.taints:
            if not tolerated(p.obj, t):
                bad("constraint", f"{k} on {node_name}: does not tolerate taint {t}")
        if p.kind == "whole" and p.resource not in node.resources:
            bad("constraint", f"{k} asks for {p.resource}, {node_name} offers {sorted(node.resources)}")
        if p.models is not None and devs and node.model not in p.models:
            bad("constraint", f"{k} allows models {sorted(p.models)}, {node_name} has {node.model}")
        if p.partitions is not None and devs and not node.modes <= p.partitions:
            bad("constraint", f"{k} allows partitions {sorted(p.partitions)}, {node_name} has {sorted(node.modes)}")

    # -- gangs: all or nothing, running members counting toward the minimum
    members = defaultdict(list)
    for p in everyone.values():
        ann = (p.obj.get("metadata") or {}).get("annotations") or {}
        if p.unit in job_min or ann.get("kaiwo.ai/gang"):
            members[p.unit].append(p)
    running = {e["pod"] for e in doc["running"] if e.get("phase") != "finished"} - preempted
    preemptors = {e["preemptor"] for e in doc.get("preemptions", [])}
    # Nominated: waits for this cycle's evictions (README, "Reclaim and preemption": the pending
    # reason starts "nominated to <node>").
    nominated = {e["pod"] for e in doc["pending"] if str(e.get("reason", "")).startswith("nominated to ")}
    for g, ms in members.items():
        declared = set()
        for m in ms:
            raw = ((m.obj.get("metadata") or {}).get("annotations") or {}).get("kaiwo.ai/gang-min-members")
            declared.add(int(raw) if raw is not None and str(raw).isdigit() else len(ms))
        need = job_min[g] if g in job_min else max(declared)
        new = [m.key for m in ms if m.key in new_by_key]
        have = sum(m.key in running for m in ms)
        if new and have + len(new) < need:
            bad("gang", f"gang {g}: {len(new)} new + {have} running of {len(ms)} members bound, "
                        f"minimum {need}: {sorted(new)}")
        # Victims for a gang: all or nothing -- evicting for some members only if enough of the
        # others are running, bound or nominated (waiting on the same evictions) to reach the minimum.
        evicting = sorted(m.key for m in ms if m.key in preemptors)
        waiting = sum(m.key in nominated for m in ms)
        if evicting and have + len(new) + waiting < need:
            bad("gang", f"gang {g}: pods evicted for {evicting} but only {have} running + {len(new)} "
                        f"bound + {waiting} nominated of minimum {need}")

    # -- reservations: held nodes, GPUs and XCDs only for their owners and for backfill that ends
    # in time; on a GPU with held XCDs anyone else only as an XCD pod on the other XCDs
    for r in doc.get("reservations", []):
        needed = epoch(r["neededAt"]) if r.get("neededAt") else 0.0
        held = {(d["node"], d["gpu"], d["partition"]): set(d["xcds"]) for d in r.get("devices", [])}
        for k, (node_name, devs) in new_by_key.items():
            on_held = [d for d in devs if (node_name, d["gpu"], d["partition"]) in held]
            if node_name not in r["nodes"] and not on_held:
                continue
            p = everyone[k]
            owner = (r.get("queue") and r["queue"] == p.queue) or (r.get("job") and r["job"] == p.unit)
            backfill = p.runtime is not None and now + p.runtime <= needed
            if owner or backfill:
                continue
            if node_name in r["nodes"]:
                bad("reservation", f"{k} (queue {p.queue}, unit {p.unit}, runtime {p.runtime}) bound "
                                   f"onto {node_name}, held by {r['name']}")
            for d in on_held:
                xcds = held[(node_name, d["gpu"], d["partition"])]
                whole = not xcds or xcds == set(nodes[node_name].devices[(d["gpu"], d["partition"])].xcds)
                if whole or p.kind != "xcd" or p.exclusive or xcds & set(d["xcds"]):
                    bad("reservation", f"{k} (queue {p.queue}, unit {p.unit}, runtime {p.runtime}) bound "
                                       f"onto GPU {d['gpu']} partition {d['partition']} of {node_name}, "
                                       f"XCDs {sorted(xcds)} held by {r['name']}")
    _check_declared_reservations(objs, doc, nodes, now, bad)

    # -- queue limits
    _check_limits(objs, doc, everyone, nodes, holders, preempted, max_dev_mem, bad)
    return out


def _same_devices(a: list, b: list) -> bool:
    def norm(ds):
        return sorted((d["gpu"], d.get("partition", 0), tuple(sorted(d.get("xcds", []))),
                       round(float(d.get("fraction", 1.0)), 6), d.get("memoryMiB", 0)) for d in ds)
    return norm(a) == norm(b)


def _check_declared_reservations(objs, doc, nodes, now, bad) -> None:
    """A valid, unexpired KaiwoReservation naming its nodes (or GPUs) is in force with those nodes
    (GPUs), when no other declared reservation could take them first (which one wins a clash is
    Kaiwo's choice)."""
    decl = [o for o in objs if o.get("kind") == "KaiwoReservation"]
    accepted = {q["name"] for q in doc["queues"]}
    in_force = {r["name"]: r for r in doc.get("reservations", [])}
    invalid = {e.get("node") for e in doc.get("invalidNodes", [])}  # no node to hold
    held = Counter(n for o in decl for n in (o.get("spec") or {}).get("nodes") or [])
    if any((o.get("spec") or {}).get(k) is not None for o in decl for k in ("gpus", "xcds")):
        return  # amounts: which capacity, and so which clash, is Kaiwo's choice
    named = Counter((d.get("node"), d.get("gpu")) for o in decl
                    for d in (o.get("spec") or {}).get("devices") or [] if isinstance(d, dict))
    dev_nodes = {n for n, _ in named}
    for o in decl:
        spec, name = o.get("spec") or {}, (o.get("metadata") or {}).get("name")
        if spec.get("node") is not None or (spec.get("nodes") is not None and spec.get("devices") is not None):
            continue  # refused: one form of what to hold, spec.node only with an amount
        ns = spec.get("nodes") or []
        want = _named_devices(spec.get("devices"), nodes, invalid, held, named)
        if spec.get("ttl") is not None:
            until = epoch((o.get("metadata") or {})["creationTimestamp"]) + duration(spec["ttl"])
        else:
            until = epoch(spec["until"]) if spec.get("until") is not None else math.inf
        if spec.get("start") is not None and epoch(spec["start"]) > until:
            continue  # ends before it starts: refused
        owner_ok = bool(spec.get("queue")) != bool(spec.get("job")) and \
            (spec.get("queue") in accepted if spec.get("queue") else "/" in spec["job"])
        on_nodes = bool(ns) and all(nodes.get(n) and n not in invalid and held[n] == 1 and n not in dev_nodes
                                    for n in ns)
        if not (owner_ok and until > now and (want is not None or on_nodes)):
            continue
        r = in_force.get(name)
        if want is not None:
            got = None if r is None else {(d["node"], d["gpu"], d["partition"]) for d in r["devices"]}
            if got != want:
                bad("reservation", f"reservation {name} of GPUs {sorted(want)} is not in force: {r}")
        elif r is None or sorted(r["nodes"]) != sorted(ns):
            bad("reservation", f"reservation {name} on {ns} is not in force: {r}")


def _named_devices(entries, nodes, invalid, held, named):
    """(node, gpu, partition) that a well-formed spec.devices names, if each exists and no other
    reservation names it or its node; else None (nothing to check)."""
    if not isinstance(entries, list) or not entries:
        return None
    out = set()
    for e in entries:
        if not isinstance(e, dict) or set(e) - {"node", "gpu", "partition", "xcds"}:
            return None
        node, gpu, part, xcds = e.get("node"), e.get("gpu"), e.get("partition"), e.get("xcds")
        n = nodes.get(node)
        if n is None or node in invalid or held[node] or named[(node, gpu)] != 1 or \
                type(gpu) is not int or (part is not None and type(part) is not int):
            return None
        if xcds is not None and (not isinstance(xcds, list) or not xcds or len(set(xcds)) != len(xcds)
                                 or any(type(x) is not int for x in xcds)):
            return None
        parts = [(g, p) for (g, p), dev in n.devices.items() if g == gpu and part in (None, p)
                 and (xcds is None or dev.xcds & set(xcds))]
        have = set().union(*(n.devices[k].xcds for k in parts)) if parts else set()
        if not parts or (xcds is not None and not set(xcds) <= have):
            return None
        out.update((node, g, p) for g, p in parts)
    return out


def _check_limits(objs, doc, everyone, nodes, holders, preempted, max_dev_mem, bad) -> None:
    """After the cycle, a queue (with its subtree) that got new pods is within each limit that
    the new pods add to."""
    accepted = {q["name"] for q in doc["queues"]}
    parent, limit = {}, {}
    for o in objs:
        if o.get("kind") != "KaiwoQueue":
            continue
        name, spec = (o.get("metadata") or {}).get("name"), o.get("spec") or {}
        if name not in accepted:
            continue
        parent[name] = spec.get("parentQueue") or None
        res = spec.get("resources") or {}
        for r, unit in (("gpu", None), ("cpu", "cpu"), ("memory", "memory")):
            raw = (res.get(r) or {}).get("limit")
            if raw is None or str(raw) == "-1":
                continue
            limit[(name, r)] = int(round(float(raw) * 1000)) if unit is None else quantity(raw, unit)
    if not limit:
        return
    # Only leaf queues hold pods; a running pod labelled with another queue counts nowhere.
    leaves = accepted - {parent.get(q) for q in accepted} - {None}
    used, added = Counter(), Counter()
    for p, node_name, devices, new in holders:
        if p.key in preempted or p.queue not in leaves:
            continue
        node = nodes.get(node_name)
        gpu = sum(queue_charge(p, node.devices.get((d["gpu"], d["partition"])) if node else None, d,
                               max_dev_mem) for d in devices)
        q, seen = p.queue, set()
        while q is not None and q not in seen:
            seen.add(q)
            for r, v in (("gpu", gpu), ("cpu", p.cpu), ("memory", p.mem)):
                used[(q, r)] += v
                if new:
                    added[(q, r)] += v
            q = parent.get(q)
    for (q, r), lim in limit.items():
        if added[(q, r)] > 0 and used[(q, r)] > lim:
            bad("queue-limit", f"queue {q}: {r} {used[(q, r)]} > limit {lim} after binding "
                               f"{added[(q, r)]} more")


# ------------------------------------------------------------------- the older entry points

def check_every_pod_once(objs: list[dict], doc: dict) -> None:
    found = [m for c, m in violations(objs, doc, 0.0) if c == "accounting"]
    assert not found, found[:5]


def check_no_overcommit(objs: list[dict], doc: dict) -> None:
    found = [m for c, m in violations(objs, doc, 0.0) if c in ("node", "device", "xcd", "binding")]
    assert not found, found[:5]
