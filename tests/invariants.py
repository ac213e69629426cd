"""Independent checks of a ``kaiwo schedule`` JSON document against its input objects.

Recomputes every node's and device's load from scratch (running pods + bindings) and checks it
against capacity, so it catches overcommit whatever the kernel believes.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import kaiwo_core as kc
from kaiwo_core.requests import KIND_NONE, KIND_WHOLE, KIND_XCD, pod_request


def check_every_pod_once(objs: list[dict], doc: dict) -> None:
    pods = [f"{(o['metadata'].get('namespace') or 'default')}/{o['metadata']['name']}"
            for o in objs if o.get("kind") == "Pod"]
    seen = Counter(e["pod"] for k in ("bindings", "pending", "rejected", "running") for e in doc[k])
    missing = set(pods) - set(seen)
    extra = set(seen) - set(pods)
    dup = [p for p, c in seen.items() if c > 1]
    assert not missing and not extra and not dup, (list(missing)[:5], list(extra)[:5], dup[:5])


def check_no_overcommit(objs: list[dict], doc: dict) -> None:
    cluster = kc.cluster_from_nodes([o for o in objs if o.get("kind") == "Node"])
    reqs = {}
    for o in objs:
        if o.get("kind") == "Pod":
            try:
                r = pod_request(o)
            except kc.PodError:
                continue
            reqs[r.name] = r
    cpu, mem, pods = Counter(), Counter(), Counter()
    milli, gmem = Counter(), Counter()
    holders = defaultdict(list)   # device -> [(pod, exclusive)]
    xcd_owner = {}
    for entry in doc["bindings"] + [r for r in doc["running"] if r.get("phase") != "finished"]:
        r, node = reqs[entry["pod"]], entry["node"]
        n = cluster.index(node)
        assert n >= 0, entry
        cpu[n] += r.cpu
        mem[n] += r.memory
        pods[n] += 1
        if r.kind == KIND_NONE:
            assert not entry["devices"]
            continue
        assert len(entry["devices"]) == r.count, entry
        for d in entry["devices"]:
            dev = cluster.device_index(n, d["gpu"], d["partition"])
            assert dev >= 0, entry
            whole = r.kind == KIND_WHOLE or r.exclusive
            holders[dev].append((entry["pod"], whole))
            milli[dev] += 1000 if whole else round(d["fraction"] * 1000)
            gmem[dev] += int(cluster.dev_mem_cap[dev]) if whole else d["memoryMiB"]
            if r.kind == KIND_XCD:
                assert d["xcds"], entry
                for x in d["xcds"]:
                    assert int(cluster.dev_xcd_mask[dev]) >> x & 1, (entry, "XCD outside partition")
                    assert (dev, x) not in xcd_owner, (entry, xcd_owner.get((dev, x)))
                    xcd_owner[(dev, x)] = entry["pod"]
    # CU isolation: no other pod's XCDs (its CU mask) overlap the XCDs an XCD-isolated pod holds.
    for entry in doc["bindings"] + [r for r in doc["running"] if r.get("phase") != "finished"]:
        r = reqs[entry["pod"]]
        if r.kind in (KIND_NONE, KIND_XCD) or r.kind == KIND_WHOLE or r.exclusive:
            continue
        n = cluster.index(entry["node"])
        for d in entry["devices"]:
            dev = cluster.device_index(n, d["gpu"], d["partition"])
            clash = [x for x in d["xcds"] if (dev, x) in xcd_owner]
            assert not clash, (entry["pod"], "CU mask overlaps XCDs of", xcd_owner[(dev, clash[0])])
    for n in cpu:
        assert cpu[n] <= cluster.node_cpu_cap[n] and mem[n] <= cluster.node_mem_cap[n], cluster.names[n]
        assert pods[n] <= cluster.node_pods_cap[n]
    for dev, hs in holders.items():
        assert milli[dev] <= 1000, (dev, hs)
        assert gmem[dev] <= cluster.dev_mem_cap[dev], (dev, hs)
        if any(w for _, w in hs):
            assert len(hs) == 1, (dev, hs)
