"""Hostile-input corpus (issue 10): malformed objects never stop a cycle.

Every case is a dump: a few *canary* objects (valid nodes and pods that must be placed whatever
else the dump holds) plus hostile ones. For every case:

* the cycle returns (no exception of any kind);
* every pod is accounted exactly once among ``running``, ``bindings``, ``pending`` and ``rejected``;
* the bad object is named in the output, with the field (and the value) at fault -- never the
  guard's catch-all ``(object)``, which would mean a field nobody checks;
* the canary pods are still bound (and the running canary still runs).

Cases come three ways: hand-written ones for every class of the issue (``CASES``); generated ones
that put each hostile value at each field of a valid template of every kind (``MUTATIONS``); and
raw files (alias bombs, deep nesting, invalid UTF-8) through ``kaiwo schedule`` (``RAW``). A sample
of the dump cases runs through the command line as well. The file runs alone by path (an
AddressSanitizer build of the extension runs it so).
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

import kaiwo_core as kc
from kaiwo.cli import main
from kaiwo_core.model.errors import object_name, show

# ------------------------------------------------------------------------------------ canaries

MI300X = {"amd.com/gpu.product-name": "AMD_Instinct_MI300X"}
ASSIGNMENT = json.dumps([{"gpu": 7, "partition": 0, "xcds": list(range(8)), "fraction": 1.0, "memoryMiB": 196608}])


def _node(name, alloc, labels=None, spec=None):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {**MI300X, **(labels or {})}},
            "spec": spec or {}, "status": {"allocatable": alloc}}


def _pod(ns, name, limits=None, annotations=None, labels=None, **spec):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-01-01T00:00:00Z",
                         "annotations": dict(annotations or {}), "labels": dict(labels or {})},
            "spec": {"schedulerName": "kaiwo",
                     "containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi",
                                                                            **(limits or {})}}}],
                     **spec}}


CANARY_NODES = [
    _node("canary-a", {"cpu": "192", "memory": "2Ti", "pods": "110", "amd.com/gpu": "8"}),
    _node("canary-b", {"cpu": "192", "memory": "2Ti", "pods": "110", "amd.com/cpx_nps4": "64"}),
]
CANARY_RUNNING = _pod("canary", "running", {"amd.com/gpu": "1"}, {"kaiwo.ai/gpu-assignment": ASSIGNMENT},
                      nodeName="canary-a")
CANARY_RUNNING["status"] = {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"}
CANARIES = [
    {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "canary-high"},
     "value": 1000},
    {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoQueue", "metadata": {"name": "hostile-q"},
     "spec": {"resources": {"gpu": {"quota": 4}, "cpu": {"quota": "64"}, "memory": {"quota": "1Ti"}}}},
    *CANARY_NODES,
    _pod("canary", "whole", {"amd.com/gpu": "1"}, priorityClassName="canary-high"),
    _pod("canary", "frac", annotations={"kaiwo.ai/gpu-fraction": "0.5"}),
    _pod("canary", "cpu"),
    CANARY_RUNNING,
]
BOUND_CANARIES = {"canary/whole", "canary/frac", "canary/cpu"}


def run(objs: list) -> dict:
    """One cycle on the objects (deep-copied: decoding may add marks to KaiwoJob pods)."""
    return kc.schedule(kc.Snapshot.from_objects(copy.deepcopy(objs)), now=1.8e9).to_dict()


ERROR_KEYS = {"rejected": "pod", "invalidNodes": "node", "invalidQueues": "kaiwoqueue",
              "invalidJobs": "kaiwojob", "invalidReservations": "kaiworeservation",
              "invalidPriorityClasses": "priorityclass"}


def errors_of(doc: dict) -> list[tuple]:
    """(output key, object name, field, error) of every error in the output."""
    return [(key, e[who], e["field"], e["error"]) for key, who in ERROR_KEYS.items() for e in doc[key]]


def check_invariants(objs: list, doc: dict) -> None:
    """What holds for every case: pods once each, canaries placed, every error with a field."""
    seen = Counter(e["pod"] for key in ("bindings", "pending", "rejected", "running") for e in doc[key])
    assert not [p for p, n in seen.items() if n > 1], f"pods reported twice: {seen}"
    pods = {object_name(o, namespaced=True) for o in objs if isinstance(o, dict) and o.get("kind") == "Pod"}
    assert pods <= set(seen), f"pods missing from the output: {pods - set(seen)}"
    jobs = [object_name(o, namespaced=True) for o in objs if isinstance(o, dict) and o.get("kind") == "KaiwoJob"]
    assert all(p in pods or any(p.startswith(j + "-") for j in jobs) for p in seen), "pods nobody created"
    bound = {b["pod"] for b in doc["bindings"]}
    assert BOUND_CANARIES <= bound, (BOUND_CANARIES - bound, doc["pending"], doc["rejected"])
    assert {"pod": "canary/running", "node": "canary-a"}.items() <= \
        next(r for r in doc["running"] if r["pod"] == "canary/running").items()
    assert doc["stats"]["nodes"] >= 2
    for key, name, fld, error in errors_of(doc):
        assert fld and fld != "(object)", f"{key} {name}: no field named ({error})"
    assert not any("cannot be read" in w for w in doc["warnings"]), doc["warnings"]


def named(doc: dict, key: str, name: str, fld: str, value=None) -> dict:
    """The error of object ``name`` in ``doc[key]`` with field ``fld`` (and ``value`` shown); for
    ``pending``, the pod pending with ``value`` in its reason."""
    if key == "pending":
        hits = [p for p in doc["pending"] if p["pod"] == name and value in p["reason"]]
        assert hits, (name, value, doc["pending"])
        return hits[0]
    who = ERROR_KEYS[key]
    hits = [e for e in doc[key] if e[who] == name and e["field"] == fld]
    assert hits, f"{key}: no error for {name} at {fld}; got {doc[key]}"
    if value is not None:
        assert show(value) in hits[0]["error"], (hits[0], show(value))
    return hits[0]


# ------------------------------------------------------------------- hand-written cases (issue)

def pod(name, limits=None, annotations=None, labels=None, **spec):
    return _pod("hostile", name, limits, annotations, labels, **spec)


def with_(obj, path: str, value):
    """A copy of ``obj`` with ``value`` at ``path`` (keys joined by '|')."""
    obj = copy.deepcopy(obj)
    keys = path.split("|")
    node = obj
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value
    return obj


NODE = _node("hostile-node", {"cpu": "64", "memory": "512Gi", "pods": "110", "amd.com/gpu": "8"},
             {"amd.com/gpu.compute-memory-partition": "spx_nps1"},
             {"taints": [{"key": "hostile", "value": "yes", "effect": "NoSchedule"}]})
QUEUE = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoQueue", "metadata": {"name": "hq"},
         "spec": {"parentQueue": "hostile-q", "displayName": "Hostile", "priority": 5,
                  "resources": {"gpu": {"quota": 1, "overQuotaWeight": 2, "limit": 4},
                                "cpu": {"quota": "8", "limit": -1}, "memory": {"quota": "64Gi"}},
                  "fairness": {"policy": "DRF", "reclaimStrategy": "conservative"},
                  "preemptMinRuntime": "10m", "reclaimMinRuntime": 60}}
JOB = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoJob",
       "metadata": {"name": "j", "namespace": "hostile", "labels": {"team": "x"},
                    "creationTimestamp": "2026-01-01T00:00:00Z"},
       "spec": {"replicas": 2, "minMembers": 2, "gpusPerReplica": 1,
                "template": {"metadata": {"labels": {"kaiwo.ai/queue": "hostile-q"}, "annotations": {"a": "b"}},
                             "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1"}}}]}}}}
RESERVATION = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoReservation",
               "metadata": {"name": "r", "creationTimestamp": "2027-01-15T00:00:00Z"},
               "spec": {"queue": "hostile-q", "nodes": ["hostile-node"], "start": "2027-01-15T10:00:00Z",
                        "ttl": "24h"}}
PC = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "hpc"},
      "value": 10, "globalDefault": False}
P = pod("p", {"amd.com/gpu": "1"})
NAN, INF = float("nan"), float("inf")

# (id, hostile objects, expected errors: (output key, object, field, value or None))
CASES = [
    # non-map / non-list values in pod fields
    ("pod spec list", [with_(P, "spec", [1])], [("rejected", "hostile/p", "spec", [1])]),
    ("pod metadata list", [with_(P, "metadata", [1])], [("rejected", "default/<unnamed>", "metadata", [1])]),
    ("pod labels list", [with_(P, "metadata|labels", ["a"])], [("rejected", "hostile/p", "metadata.labels", ["a"])]),
    ("pod annotations string", [with_(P, "metadata|annotations", "x")],
     [("rejected", "hostile/p", "metadata.annotations", "x")]),
    ("pod containers map", [with_(P, "spec|containers", {"c": 1})],
     [("rejected", "hostile/p", "spec.containers", {"c": 1})]),
    ("pod container string", [with_(P, "spec|containers|0", "c")],
     [("rejected", "hostile/p", "spec.containers[0]", "c")]),
    ("pod resources list", [with_(P, "spec|containers|0|resources", [1])],
     [("rejected", "hostile/p", "spec.containers[0].resources", [1])]),
    ("pod limits string", [with_(P, "spec|containers|0|resources|limits", "cpu")],
     [("rejected", "hostile/p", "spec.containers[0].resources.limits", "cpu")]),
    ("pod tolerations string", [with_(P, "spec|tolerations", "x")],
     [("rejected", "hostile/p", "spec.tolerations", "x")]),
    ("pod toleration string", [with_(P, "spec|tolerations", ["x"])],
     [("rejected", "hostile/p", "spec.tolerations[0]", "x")]),
    ("pod toleration key list", [with_(P, "spec|tolerations", [{"key": [1], "operator": "Exists"}])],
     [("rejected", "hostile/p", "spec.tolerations[0].key", [1])]),
    ("pod affinity list", [with_(P, "spec|affinity", [1])], [("rejected", "hostile/p", "spec.affinity", [1])]),
    ("pod node selector terms map", [with_(P, "spec|affinity", {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": {"a": 1}}}})],
     [("rejected", "hostile/p", "spec.affinity.nodeAffinity.required....nodeSelectorTerms", {"a": 1})]),
    ("pod affinity values string", [with_(P, "spec|affinity", {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "k", "operator": "In", "values": "abc"}]}]}}})],
     [("rejected", "hostile/p",
       "spec.affinity.nodeAffinity.required....nodeSelectorTerms[0].matchExpressions[0].values", "abc")]),
    ("pod node selector list", [with_(P, "spec|nodeSelector", ["a"])],
     [("rejected", "hostile/p", "spec.nodeSelector", ["a"])]),
    ("pod scheduling gates int", [with_(P, "spec|schedulingGates", 5)],
     [("rejected", "hostile/p", "spec.schedulingGates", 5)]),
    ("pod status list", [with_(P, "status", [1])], [("rejected", "hostile/p", "status", [1])]),
    ("pod overhead list", [with_(P, "spec|overhead", [1])], [("rejected", "hostile/p", "spec.overhead", [1])]),
    # names given as ints or lists
    ("pod name int", [with_(P, "metadata|name", 5)], [("rejected", "hostile/5", "metadata.name", 5)]),
    ("pod name list", [with_(P, "metadata|name", ["p"])], [("rejected", "hostile/['p']", "metadata.name", ["p"])]),
    ("pod namespace list", [with_(P, "metadata|namespace", ["n"])],
     [("rejected", "['n']/p", "metadata.namespace", ["n"])]),
    ("pod nodeName list", [with_(P, "spec|nodeName", ["n"])], [("rejected", "hostile/p", "spec.nodeName", ["n"])]),
    ("pod queue label list", [with_(P, "metadata|labels|kaiwo.ai/queue", ["q"])],
     [("rejected", "hostile/p", "metadata.labels.kaiwo.ai/queue", ["q"])]),
    ("pod priorityClassName list", [with_(P, "spec|priorityClassName", ["x"])],
     [("rejected", "hostile/p", "spec.priorityClassName", ["x"])]),
    ("pod gang name list", [with_(P, "metadata|annotations|kaiwo.ai/gang", ["g"])],
     [("rejected", "hostile/p", "metadata.annotations.kaiwo.ai/gang", ["g"])]),
    ("node name int", [with_(NODE, "metadata|name", 7)], [("invalidNodes", "7", "metadata.name", 7)]),
    ("node name list", [with_(NODE, "metadata|name", ["n"])], [("invalidNodes", "['n']", "metadata.name", ["n"])]),
    ("queue name int", [with_(QUEUE, "metadata|name", 5)], [("invalidQueues", "5", "metadata.name", 5)]),
    ("queue parent list", [with_(QUEUE, "spec|parentQueue", ["q"])],
     [("invalidQueues", "hq", "spec.parentQueue", ["q"])]),
    ("job name list", [with_(JOB, "metadata|name", ["j"])],
     [("invalidJobs", "hostile/['j']", "metadata.name", ["j"])]),
    ("reservation queue list", [with_(RESERVATION, "spec|queue", ["q"])],
     [("invalidReservations", "r", "spec.queue", ["q"])]),
    ("priority class name int", [with_(PC, "metadata|name", 3)],
     [("invalidPriorityClasses", "3", "metadata.name", 3)]),
    # non-map values in node / queue / job / reservation fields
    ("node status list", [with_(NODE, "status", [1])], [("invalidNodes", "hostile-node", "status", [1])]),
    ("node allocatable list", [with_(NODE, "status|allocatable", [1])],
     [("invalidNodes", "hostile-node", "status.allocatable", [1])]),
    ("node labels list", [with_(NODE, "metadata|labels", ["a"])],
     [("invalidNodes", "hostile-node", "metadata.labels", ["a"])]),
    ("node label value int", [with_(NODE, "metadata|labels|amd.com/gpu.product-name", 300)],
     [("invalidNodes", "hostile-node", "metadata.labels.amd.com/gpu.product-name", 300)]),
    ("node taints string", [with_(NODE, "spec|taints", "x")], [("invalidNodes", "hostile-node", "spec.taints", "x")]),
    ("node taint list", [with_(NODE, "spec|taints", [[1]])],
     [("invalidNodes", "hostile-node", "spec.taints[0]", [1])]),
    ("queue spec list", [with_(QUEUE, "spec", [1])], [("invalidQueues", "hq", "spec", [1])]),
    ("queue fairness list", [with_(QUEUE, "spec|fairness", [1])], [("invalidQueues", "hq", "spec.fairness", [1])]),
    ("queue resources gpu list", [with_(QUEUE, "spec|resources|gpu", [1])],
     [("invalidQueues", "hq", "spec.resources.gpu", [1])]),
    ("job spec list", [with_(JOB, "spec", [1])], [("invalidJobs", "hostile/j", "spec", [1])]),
    ("job template list", [with_(JOB, "spec|template", [1])], [("invalidJobs", "hostile/j", "spec.template", [1])]),
    ("job template spec string", [with_(JOB, "spec|template|spec", "x")],
     [("invalidJobs", "hostile/j", "spec.template.spec", "x")]),
    ("job containers map", [with_(JOB, "spec|template|spec|containers", {"c": 1})],
     [("invalidJobs", "hostile/j", "spec.template.spec.containers", {"c": 1})]),
    ("job template labels list", [with_(JOB, "spec|template|metadata|labels", [1])],
     [("invalidJobs", "hostile/j", "spec.template.metadata.labels", [1])]),
    ("reservation spec list", [with_(RESERVATION, "spec", [1])], [("invalidReservations", "r", "spec", [1])]),
    ("reservation nodes map", [with_(RESERVATION, "spec|nodes", {"a": 1})],
     [("invalidReservations", "r", "spec.nodes", {"a": 1})]),
    ("reservation node int", [with_(RESERVATION, "spec|nodes", ["hostile-node", 5])],
     [("invalidReservations", "r", "spec.nodes[1]", 5)]),
    # PriorityClass value: abc, and pods naming it
    ("priority class value abc", [with_(PC, "value", "abc"), pod("named", priorityClassName="hpc")],
     [("invalidPriorityClasses", "hpc", "value", "abc"),
      ("rejected", "hostile/named", "spec.priorityClassName", "hpc")]),
    ("priority class value past int32", [with_(PC, "value", 2**31)],
     [("invalidPriorityClasses", "hpc", "value", 2**31)]),
    ("priority class globalDefault string", [with_(PC, "globalDefault", "yes")],
     [("invalidPriorityClasses", "hpc", "globalDefault", "yes")]),
    # .nan / .inf weights, preemptMinRuntime: .nan -- refused as the kernel refuses them
    ("queue weight nan", [with_(QUEUE, "spec|resources|gpu|overQuotaWeight", NAN)],
     [("invalidQueues", "hq", "spec.resources.gpu.overQuotaWeight", NAN)]),
    ("queue weight inf", [with_(QUEUE, "spec|resources|cpu|overQuotaWeight", INF)],
     [("invalidQueues", "hq", "spec.resources.cpu.overQuotaWeight", INF)]),
    ("queue weight -inf", [with_(QUEUE, "spec|resources|memory|overQuotaWeight", -INF)],
     [("invalidQueues", "hq", "spec.resources.memory.overQuotaWeight", -INF)]),
    ("queue preemptMinRuntime nan", [with_(QUEUE, "spec|preemptMinRuntime", NAN)],
     [("invalidQueues", "hq", "spec.preemptMinRuntime", NAN)]),
    ("queue reclaimMinRuntime inf", [with_(QUEUE, "spec|reclaimMinRuntime", INF)],
     [("invalidQueues", "hq", "spec.reclaimMinRuntime", INF)]),
    ("queue runtime 400 digits", [with_(QUEUE, "spec|reclaimMinRuntime", "9" * 400 + "h")],
     [("invalidQueues", "hq", "spec.reclaimMinRuntime", "9" * 400 + "h")]),
    ("pod expected-runtime nan", [pod("rt", annotations={"kaiwo.ai/expected-runtime": NAN})],
     [("rejected", "hostile/rt", "metadata.annotations.kaiwo.ai/expected-runtime", NAN)]),
    ("reservation ttl inf", [with_(RESERVATION, "spec|ttl", INF)], [("invalidReservations", "r", "spec.ttl", INF)]),
    # gang members in different queues
    ("gang in two queues", [pod("g1", annotations={"kaiwo.ai/gang": "g"}, labels={"kaiwo.ai/queue": "hostile-q"}),
                            pod("g2", annotations={"kaiwo.ai/gang": "g"})],
     [("rejected", "hostile/g1", "metadata.labels.kaiwo.ai/queue", "hostile-q"),
      ("rejected", "hostile/g2", "metadata.labels.kaiwo.ai/queue", None)]),
    # priorities and counts past int32 / int64
    ("pod priority past int32", [pod("pr", priority=2**31)], [("rejected", "hostile/pr", "spec.priority", 2**31)]),
    ("pod priority past int64", [pod("pr", priority=10**30)], [("rejected", "hostile/pr", "spec.priority", 10**30)]),
    ("pod priority 5000 digits", [pod("pr", priority=10**5000)],
     [("rejected", "hostile/pr", "spec.priority", 10**5000)]),
    ("queue priority past int32", [with_(QUEUE, "spec|priority", 2**40)],
     [("invalidQueues", "hq", "spec.priority", 2**40)]),
    ("job replicas past int64", [with_(JOB, "spec|replicas", 10**30)],
     [("invalidJobs", "hostile/j", "spec.replicas", 10**30)]),
    ("job replicas past the maximum", [with_(JOB, "spec|replicas", 100_001)],
     [("invalidJobs", "hostile/j", "spec.replicas", 100_001)]),
    ("job minMembers past replicas", [with_(JOB, "spec|minMembers", 5)],
     [("invalidJobs", "hostile/j", "spec.minMembers", 5)]),
    ("gang minimum past int32",
     [pod("gm", annotations={"kaiwo.ai/gang": "gm", "kaiwo.ai/gang-min-members": str(2**40)})],
     [("rejected", "hostile/gm", "metadata.annotations.kaiwo.ai/gang-min-members", str(2**40))]),
    ("pod cpu past int64", [pod("c", {"cpu": "1e30"})],
     [("rejected", "hostile/c", "spec.containers[0].resources.limits.cpu", "1e30")]),
    ("pod cpu past the maximum", [pod("c", {"cpu": "9e15"})],
     [("rejected", "hostile/c", "spec.containers[0].resources.limits.cpu", "9e15")]),
    ("pod memory sum past the maximum", [with_(pod("m"), "spec|containers", [
        {"name": str(i), "resources": {"limits": {"memory": "600Pi"}}} for i in range(2)])],
     [("rejected", "hostile/m", "spec.containers", None)]),
    ("node cpu past the maximum", [with_(NODE, "status|allocatable|cpu", "9e15")],
     [("invalidNodes", "hostile-node", "status.allocatable.cpu", "9e15")]),
    ("node pods past the maximum", [with_(NODE, "status|allocatable|pods", "1e12")],
     [("invalidNodes", "hostile-node", "status.allocatable.pods", "1e12")]),
    ("reservation gpus past int64", [with_(RESERVATION, "spec", {"queue": "hostile-q", "gpus": 10**30})],
     [("invalidReservations", "r", "spec.gpus", 10**30)]),
    # GPU counts that once sized allocations: 1e12 on a Node, 2147483647 on pods and gpusPerReplica
    ("node gpu 1e12", [with_(NODE, "status|allocatable|amd.com/gpu", "1e12")],
     [("invalidNodes", "hostile-node", "status.allocatable.amd.com/gpu", "1e12")]),
    ("node cpx gpu 1e12",
     [with_(NODE, "status|allocatable", {"cpu": "1", "memory": "1Gi", "amd.com/cpx_nps4": "8e11"})],
     [("invalidNodes", "hostile-node", "status.allocatable.amd.com/cpx_nps4", "8e11")]),
    ("node nvidia gpu 1e12",
     [with_(NODE, "status|allocatable", {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1e12"})],
     [("invalidNodes", "hostile-node", "status.allocatable.nvidia.com/gpu", "1e12")]),
    ("node two resources past the maximum", [with_(NODE, "status|allocatable", {
        "cpu": "1", "memory": "1Gi", "amd.com/gpu": "1024", "nvidia.com/gpu": "1024"})],
     [("invalidNodes", "hostile-node", "status.allocatable", None)]),
    ("pod gpu 2147483647", [pod("g", {"amd.com/gpu": "2147483647"})],
     [("rejected", "hostile/g", "spec.containers[0].resources.limits.amd.com/gpu", "2147483647")]),
    ("pods gpu 1024 each", [pod(f"g{i}", {"amd.com/gpu": "1024"}) for i in range(3)],
     [("pending", f"hostile/g{i}", None, "too few GPUs on the node") for i in range(3)]),
    ("gang member gpu 1024", [pod("gg0", {"amd.com/gpu": "1024"}, {"kaiwo.ai/gang": "gg"}),
                              pod("gg1", annotations={"kaiwo.ai/gang": "gg"})],
     [("pending", "hostile/gg1", None, "gang hostile/gg: 1 of the 2 members it needs fit, so none was placed")]),
    ("pod num-devices 2147483647", [pod("f", annotations={"kaiwo.ai/gpu-fraction": "0.5",
                                                          "kaiwo.ai/gpu-fraction-num-devices": "2147483647"})],
     [("rejected", "hostile/f", "metadata.annotations.kaiwo.ai/gpu-fraction-num-devices", "2147483647")]),
    ("job gpusPerReplica 2147483647", [with_(JOB, "spec|gpusPerReplica", 2147483647)],
     [("invalidJobs", "hostile/j", "spec.gpusPerReplica", 2147483647)]),
    # objects that are not objects at all
    ("kind list", [{"kind": ["Pod"], "metadata": {"name": "x"}}], []),
    ("object string", ["Pod"], []),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_issue_case(case):
    _, hostile, expected = case
    objs = CANARIES + [NODE] + hostile
    doc = run(objs)
    check_invariants(objs, doc)
    for key, name, fld, value in expected:
        named(doc, key, name, fld, value)


def test_bad_bound_pod_is_charged_and_warned_about():
    """A bound pod is never rejected: a field it cannot read is a warning naming pod, field, value."""
    objs = CANARIES + [with_(CANARY_RUNNING, "metadata|annotations|kaiwo.ai/gpu-assignment",
                             '[{"gpu": 0, "memoryMiB": 1e30}]')]
    objs.remove(CANARY_RUNNING)
    doc = run(objs)
    assert any(w.startswith("running pod canary/running: metadata.annotations.kaiwo.ai/gpu-assignment[0].memoryMiB")
               for w in doc["warnings"]), doc["warnings"]
    assert [r["pod"] for r in doc["running"]] == ["canary/running"]


# --------------------------------------------------------------- generated: every field, every value

HOSTILE_VALUES = [[1], {"a": 1}, "x", 10**30, -1, NAN, INF, True, None, "9" * 400]
BOUND = _pod("hostile", "bound", {"amd.com/gpu": "1"},
             {"kaiwo.ai/gpu-assignment": ASSIGNMENT.replace('"gpu": 7', '"gpu": 0'),
              "kaiwo.ai/expected-runtime": "1h", "kaiwo.ai/preemptible": "true"},
             {"kaiwo.ai/queue": "hostile-q"}, nodeName="hostile-node", priority=5)
BOUND["status"] = {"phase": "Running", "startTime": "2026-01-01T00:00:00Z", "nominatedNodeName": "x"}
SHARED = _pod("hostile", "shared", None,
              {"kaiwo.ai/gpu-fraction": "0.25", "kaiwo.ai/gpu-fraction-num-devices": "2",
               "kaiwo.ai/gpu-memory": "8Gi", "kaiwo.ai/gpu-sharing": "true", "kaiwo.ai/gpu-isolation": "xcd",
               "kaiwo.ai/gpu-model": "MI300X", "kaiwo.ai/gang": "sg", "kaiwo.ai/gang-min-members": "1"},
              {"kaiwo.ai/queue": "hostile-q"},
              tolerations=[{"key": "hostile", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}],
              nodeSelector={"kubernetes.io/os": "linux"},
              affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                  {"matchExpressions": [{"key": "amd.com/gpu.product-name", "operator": "In",
                                         "values": ["AMD_Instinct_MI300X"]}]}]}}},
              schedulingGates=[], overhead={"cpu": "100m", "memory": "64Mi"})
SHARED["spec"]["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}]
NVIDIA = _node("hostile-nv", {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "4"},
               {"nvidia.com/gpu.product": "H100", "nvidia.com/gpu.memory": "81559", "amd.com/gpu.vram": "80G"})
AMOUNT_RESERVATION = with_(RESERVATION, "spec", {"job": "hostile/j", "gpus": 1, "until": "2027-01-01T00:00:00Z"})
AMOUNT_RESERVATION["metadata"]["name"] = "ra"
TEMPLATES = {"pod": P, "shared": SHARED, "bound": BOUND, "node": NODE, "nvidia": NVIDIA, "queue": QUEUE,
             "job": JOB, "reservation": RESERVATION, "amount": AMOUNT_RESERVATION, "class": PC}


def paths(value, prefix=()):
    """Every key/index path of a template (kind and apiVersion aside)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        if prefix == () and k in ("kind", "apiVersion"):
            continue
        yield prefix + (k,)
        yield from paths(v, prefix + (k,))


def dotted(path) -> str:
    out = ""
    for k in path:
        out += f"[{k}]" if isinstance(k, int) else ("." if out else "") + k
    return out


def mutate(template, path, value):
    obj = copy.deepcopy(template)
    node = obj
    for k in path[:-1]:
        node = node[k]
    if value is None and isinstance(node, dict):
        node.pop(path[-1])  # absent, not null: both are read as "not given"
    else:
        node[path[-1]] = value
    return obj


MUTATIONS = [(t, p, v) for t, tpl in TEMPLATES.items() for p in paths(tpl) for v in HOSTILE_VALUES]
KIND_KEY = {"Pod": "rejected", "Node": "invalidNodes", "KaiwoQueue": "invalidQueues", "KaiwoJob": "invalidJobs",
            "KaiwoReservation": "invalidReservations", "PriorityClass": "invalidPriorityClasses"}
# Fields one error may be reported under for another's value: a gang minimum without its gang, an
# XCD isolation without a fraction, a whole-GPU request with a fraction, the long affinity key.
COUPLED = {"metadata.annotations.kaiwo.ai/gang": ("metadata.annotations.kaiwo.ai/gang-min-members",),
           "metadata.annotations.kaiwo.ai/gpu-fraction": ("metadata.annotations.kaiwo.ai/gpu-isolation",
                                                          "metadata.annotations.kaiwo.ai/gpu-memory"),
           "metadata.annotations.kaiwo.ai/gpu-memory": ("metadata.annotations.kaiwo.ai/gpu-fraction",
                                                        "metadata.annotations.kaiwo.ai/gpu-fraction-num-devices",
                                                        "metadata.annotations.kaiwo.ai/gpu-sharing"),
           "spec.queue": ("spec.nodes", "spec.job"), "spec.job": ("spec.queue",), "spec.nodes": ("spec.gpus",),
           "spec.gpus": ("spec.nodes",), "spec.until": ("spec.ttl",), "spec.ttl": ("spec.until",),
           "status.allocatable": ("status.capacity",), "spec.replicas": ("spec.minMembers",)}


def related(mutated: str, fld: str) -> bool:
    """Whether an error at ``fld`` is about the value put at ``mutated`` (or one containing it)."""
    fld = fld.replace("required....", "requiredDuringSchedulingIgnoredDuringExecution.")
    if fld == mutated or any(fld == c or fld.startswith(c + ".") for c in COUPLED.get(mutated, ())):
        return True
    return any(a.startswith(b) and a[len(b):len(b) + 1] in (".", "[")
               for a, b in ((fld, mutated), (mutated, fld)))


@pytest.mark.parametrize("template,path,value", MUTATIONS,
                         ids=[f"{t}:{dotted(p)}={show(v)[:12]}" for t, p, v in MUTATIONS])
def test_mutation(template, path, value):
    obj = mutate(TEMPLATES[template], path, value)
    objs = CANARIES + ([NODE] if template != "node" else []) + [JOB if template != "job" else obj] + \
        ([obj] if template != "job" else [])
    doc = run(objs)
    check_invariants(objs, doc)
    kind = obj["kind"]
    name = object_name(obj, namespaced=kind in ("Pod", "KaiwoJob"))
    mutated = dotted(path)
    who = ERROR_KEYS[KIND_KEY[kind]]
    mine = [e for e in doc[KIND_KEY[kind]] if e[who] == name]
    if kind == "KaiwoJob" and mutated.startswith("spec.template.") and not mine:
        # A bad template shows in the job's pods: rejected at the same field of the pod.
        mutated = mutated[len("spec.template."):]
        mine = [e for e in doc["rejected"] if e["pod"].startswith(name + "-")]
    for e in mine:
        assert related(mutated, e["field"]), f"{mutated} = {show(value)} reported at {e['field']}: {e['error']}"
        if e["field"] == mutated and value is not None and e["error"].startswith("'") is isinstance(value, str):
            assert e["error"].startswith(show(value)), (e, show(value))
    for w in doc["warnings"]:  # a running pod is charged anyway: its problems are warnings
        if w.startswith(f"running pod {name}:"):
            fld = w[len(f"running pod {name}: "):].split(" = ")[0].split(":")[0]
            assert related(mutated, fld), (mutated, w)


# ------------------------------------------------------------------- the command line, on files

def _write(tmp_path: Path, objs: list, suffix: str) -> Path:
    p = tmp_path / f"dump{suffix}"
    if suffix == ".json":
        p.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
    else:
        p.write_text(yaml.safe_dump_all(objs))
    return p


CLI_SAMPLE = CASES[::6] + [(f"{t}:{dotted(p)}", [mutate(TEMPLATES[t], p, v)], [])
                           for t, p, v in MUTATIONS[::97] if not (isinstance(v, int) and v > 2**63)]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize("case", CLI_SAMPLE, ids=[c[0] for c in CLI_SAMPLE])
def test_cli_on_the_case(case, suffix, tmp_path, capsys):
    _, hostile, expected = case
    objs = CANARIES + [NODE] + hostile
    try:
        path = _write(tmp_path, objs, suffix)
    except ValueError:  # an int too long for str(): not a value a file can hold
        pytest.skip("not writable")
    if not all(isinstance(o, dict) for o in objs):  # a file of non-objects is refused whole
        assert main(["schedule", str(path)]) == 2
        assert "not a Kubernetes object" in capsys.readouterr().err
        return
    assert main(["schedule", str(path), "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    check_invariants(objs, doc)
    for key, name, fld, value in expected:
        named(doc, key, name, fld, value if key == "pending" else None)


def _alias_bomb(levels: int) -> str:
    """A pod whose toleration value is ``9**levels`` strings of three letters, in a few hundred
    bytes (the issue's: 415 bytes took 99 s and 1.8 GB once the value was read)."""
    text = 'kind: Pod\nmetadata: {name: bomb}\nx:\n  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for c in "bcdefghijklmnop"[:levels - 1]:
        text += f"  {c}: &{c} [{','.join(['*' + prev] * 9)}]\n"
        prev = c
    return text + ("spec:\n  schedulerName: kaiwo\n  containers: [{name: c}]\n"
                   f"  tolerations: [{{key: k, operator: Equal, value: *{prev}}}]\n")


RAW = [  # (id, file name, bytes, what the error says)
    ("alias bomb", "bomb.yaml", _alias_bomb(9).encode(), "expands to more than"),
    ("alias bomb, 15 levels", "bomb15.yaml", _alias_bomb(15).encode(), "expands to more than"),
    ("recursive alias", "rec.yaml", b"kind: Pod\nmetadata: &a {name: x, self: *a}\n", "recursive alias"),
    ("recursive list", "reclist.yaml", b"kind: Pod\nx: &a [*a]\n", "recursive alias"),
    ("100k-deep JSON", "deep.json", b"[" * 100_000 + b"]" * 100_000, "nested deeper than"),
    ("150-deep JSON", "deep150.json", b"[" * 150 + b"]" * 150, "nested deeper than"),
    ("150-deep YAML", "deep150.yaml", b"kind: Pod\nx: " + b"[" * 150 + b"]" * 150 + b"\n", "nested deeper than"),
    ("100k-deep YAML", "deep.yaml", b"[" * 100_000 + b"]" * 100_000, "cannot parse"),
    ("invalid UTF-8", "bad.yaml", b"kind: Pod\nmetadata: {name: \xff\xfe}\n", "not UTF-8"),
    ("invalid UTF-8 JSON", "bad.json", b'{"kind": "Pod", "x": "\xc3\x28"}', "not UTF-8"),
    ("JSON lone surrogate", "sur.json", b'{"kind": "Pod", "metadata": {"name": "p\\ud800x"}}', "lone UTF-16 surrogate"),
    ("JSON surrogate key", "surkey.json", b'{"kind": "Pod", "x": {"\\udcff": 1}}', "lone UTF-16 surrogate"),
    ("binary garbage", "garbage.yaml", bytes(range(256)) * 4, ""),
    ("not objects", "ints.yaml", b"- 1\n- 2\n", "not a Kubernetes object"),
    ("truncated JSON", "cut.json", b'{"kind": "List", "items": [{"kind": "Pod"', "cannot parse"),
    ("tabs in YAML", "tabs.yaml", b"kind: Pod\n\tmetadata: x\n", "cannot parse"),
]


@pytest.mark.parametrize("case", RAW, ids=[c[0] for c in RAW])
def test_cli_refuses_unreadable_files(case, tmp_path, capsys):
    _, name, data, says = case
    p = tmp_path / name
    p.write_bytes(data)
    assert main(["schedule", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kaiwo schedule: ") and says in err and "Traceback" not in err


def test_cli_process_on_an_alias_bomb_exits_with_a_message(tmp_path):
    """The whole process: exit code 2, one line on stderr, no traceback."""
    p = tmp_path / "bomb.yaml"
    p.write_text(_alias_bomb(12))
    out = subprocess.run([sys.executable, "-m", "kaiwo.cli", "schedule", str(p)], capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "expands to more than" in out.stderr and len(out.stderr.splitlines()) == 1


# ----------------------------------------------------------------- monitoring: scrapes and history

EXAMPLE = (Path(__file__).resolve().parents[1] / "kaiwo" / "data" / "example-scrapes.prom").read_bytes()


def _scrape(labels: str, ts: str = "1764316800") -> bytes:
    return f'# SCRAPE {ts}\ngpu_gfx_activity{{{labels}hostname="h",namespace="n",pod="p"}} 5\n'.encode()


SOURCES = [  # (id, file name, bytes, exit code, what stderr says)
    ("gpu_id superscript two", "sup.prom", _scrape('gpu_id="\u00b2",'), 0, ""),
    ("gpu_id of 20 digits", "digits.prom", _scrape('gpu_id="12345678901234567890",'), 0, ""),
    ("partition of 20 digits", "part.prom", _scrape('gpu_id="1",gpu_partition_id="99999999999999999999",'), 0, ""),
    ("gpu_id arabic digits", "arabic.prom", _scrape('gpu_id="\u0663",'), 0, ""),
    ("SCRAPE 1e18", "big.prom", _scrape('gpu_id="1",', "1e18"), 2, "is not a unix time between 1970 and 9999"),
    ("SCRAPE -1e18", "neg.prom", _scrape('gpu_id="1",', "-1e18"), 2, "is not a unix time"),
    ("SCRAPE 1e308", "huge.prom", _scrape('gpu_id="1",', "1e308"), 2, "is not a unix time"),
    ("SCRAPE nan", "nan.prom", _scrape('gpu_id="1",', "nan"), 2, "SCRAPE"),
    ("corrupt gz", "bad.prom.gz", b"\x1f\x8b\x08\x00garbage", 2, "not a readable gzip file"),
    ("truncated gz", "cut.prom.gz", __import__("gzip").compress(EXAMPLE)[:300], 2, "not a readable gzip file"),
    ("not gzip at all", "plain.prom.gz", b"hello", 2, ""),
    ("garbage npz", "bad.npz", b"PK\x03\x04garbage", 2, "not a readable .npz file"),
    ("text npz", "junk.npz", b"not a zip at all", 2, "not a readable .npz file"),
    ("label not UTF-8", "utf8.prom", _scrape('gpu_id="\xff",').replace(b"\xc3\xbf", b"\xff"), 0, "UTF-8"),
]


@pytest.mark.parametrize("case", SOURCES, ids=[c[0] for c in SOURCES])
def test_monitor_on_hostile_sources(case, tmp_path, capsys):
    _, name, data, code, says = case
    p = tmp_path / name
    p.write_bytes(data)
    assert main(["monitor", "--source", str(p), "--no-alerts"]) == code
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def _history_variants(tmp_path) -> list:
    """A valid history file, then copies with one array made hostile."""
    import numpy as np

    from kaiwo.cli.monitor import load_source
    from kaiwo_core.monitoring.history import save

    ok = tmp_path / "ok.npz"
    save(load_source(None)[0], ok)
    z = dict(np.load(ok))
    out = []
    for name, change in [("metric index", {"metric": np.full(len(z["metric"]), 10**6, np.int32)}),
                         ("label index", {"label_val": np.full(len(z["label_val"]), -5, np.int32)}),
                         ("times 1e18", {"ts": np.full(len(z["ts"]), 1e18)}),
                         ("times nan", {"ts": np.full(len(z["ts"]), np.nan)}),
                         ("offsets", {"label_ptr": z["label_ptr"][::-1].copy()}),
                         ("pod queues", {"pod_queue": np.full(len(z["pod_queue"]), 10**6)}),
                         ("shapes", {"values": z["values"][:, :3].copy()}),
                         ("times backwards", {"ts": z["ts"][::-1].copy()}),
                         ("missing array", {"label_key": None})]:
        doc = {k: v for k, v in {**z, **change}.items() if v is not None}
        path = tmp_path / f"{name.replace(' ', '-')}.npz"
        np.savez(path, **doc)
        out.append((name, path))
    return out


def test_monitor_on_hostile_history_files(tmp_path, capsys):
    for name, path in _history_variants(tmp_path):
        assert main(["monitor", "--source", str(path), "--no-alerts"]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"kaiwo monitor: {path}") and "Traceback" not in err, (name, err)


RULE = {"name": "R", "metric": "gpu_gfx_activity", "aggregation": "last", "op": ">", "threshold": 5}
RULES = [  # (id, changes to a valid rule, the field named)
    ("op list", {"op": [">"]}, "op"), ("op map", {"op": {">": 1}}, "op"),
    ("reduce list", {"reduce": ["mean"]}, "reduce"), ("reduce map", {"reduce": {"mean": 1}}, "reduce"),
    ("aggregation list", {"aggregation": ["max"]}, "aggregation"), ("by map", {"by": {"node": 1}}, "by"),
    ("severity list", {"severity": ["critical"]}, "severity"),
    ("selector 500 (", {"selector": 'pod=~"' + "(" * 500 + '"'}, "selector"),
    ("selector 500 balanced", {"selector": 'pod=~"' + "(" * 500 + ")" * 500 + '"'}, "selector"),
    ("threshold 5000 digits", {"threshold": 10**5000}, "threshold"),
    ("threshold 400 digits", {"threshold": 10**400}, "threshold"),
    ("threshold nan", {"threshold": NAN}, "threshold"),
    ("window 400 digits", {"window": 10**400}, "window"),
    ("window 400-digit days", {"window": "9" * 400 + "d"}, "window"),
    ("for inf", {"for": INF}, "for"),
    ("summary width 2e9", {"summary": "{value:>2000000000}"}, "summary"),
    ("summary width 1e11", {"summary": "{value:0>99999999999}"}, "summary"),
    ("summary precision 2e9", {"summary": "{value:.2000000000f}"}, "summary"),
    ("summary width from the data", {"summary": "{value:>{threshold}}"}, "summary"),
    ("unknown keys of two types", {1: 2, "zz": 3}, "1"),
    ("labels with a list", {"labels": {"a": [1]}}, "labels"),
]


@pytest.mark.parametrize("case", RULES, ids=[c[0] for c in RULES])
def test_alert_rules_check_refuses_hostile_rules(case, tmp_path, capsys):
    from kaiwo_core.monitoring.alerts import load_rules

    _, change, fld = case
    rs = load_rules([{**RULE, **change}, dict(RULE, name="Fine")])
    assert [r.name for r in rs.rules] == ["Fine"]
    (err,) = rs.errors
    assert err.rule == "R" and err.field == fld
    p = tmp_path / "rules.json"
    try:
        p.write_text(json.dumps({"rules": [{**RULE, **change}]}))
    except (ValueError, TypeError):  # not writable as JSON (int too long, int keys): checked above
        return
    assert main(["alerts", "--rules", str(p), "--check"]) == 1
    assert "rule R" in capsys.readouterr().err


def test_a_summary_that_fails_with_the_data_is_reported_per_rule(tmp_path, capsys):
    """``--check`` cannot know every label a series will have: at evaluation the alert goes out
    with a fallback summary, and the rule is reported once (exit status 1)."""
    p = tmp_path / "rules.yaml"
    p.write_text(yaml.safe_dump({"rules": [dict(RULE, summary="{labels[nope]} on {node}"),
                                           dict(RULE, name="Fine", summary="{node}")]}))
    assert main(["alerts", "--rules", str(p), "--check"]) == 0
    capsys.readouterr()
    assert main(["alerts", "--rules", str(p), "--json"]) == 1
    out = capsys.readouterr()
    doc = json.loads(out.out)
    (err,) = doc["ruleErrors"]
    assert err["rule"] == "R" and err["field"] == "summary" and "cannot be rendered" in err["error"]
    assert out.err.count("rule R: summary") == 1 and "Traceback" not in out.err
    assert any(e["rule"] == "Fine" and e["state"] == "firing" for e in doc["events"])


# ----------------------------------------------------------------------------------- trace CSVs

POD_HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"
NODE_HEADER = "sn,cpu_milli,memory_mib,gpu,model\n"
JOB_HEADER = "timestamp,duration,num_gpus,gpu_time,cluster\n"
TRACES = [  # (id, reader, file name, text, line, column, value)
    ("pod cpu_milli past int64", "pods", "p.csv", POD_HEADER + "a,1000,1,0,0,\nb,99999999999999999999999,1,0,0,\n",
     3, "cpu_milli", "99999999999999999999999"),
    ("pod cpu_milli past the maximum", "pods", "p.csv", POD_HEADER + "a,9000000000000000000,1,0,0,\n",
     2, "cpu_milli", "9000000000000000000"),
    ("pod memory_mib as a float", "pods", "p.csv", POD_HEADER + "a,1,1e300,0,0,\n", 2, "memory_mib", "1e300"),
    ("pod num_gpu past int32", "pods", "p.csv", POD_HEADER + "a,1,1,3000000000,1000,\n", 2, "num_gpu", "3000000000"),
    ("pod num_gpu of 20 digits", "pods", "p.csv", POD_HEADER + "a,1,1,99999999999999999999,1000,\n",
     2, "num_gpu", "99999999999999999999"),
    ("pod cpu_milli of 5000 digits", "pods", "p.csv", POD_HEADER + "a," + "9" * 5000 + ",1,0,0,\n",
     2, "cpu_milli", "9" * 5000),
    ("node gpu past int32", "nodes", "n.csv", NODE_HEADER + "n1,1000,1000,3000000000,V100\n", 2, "gpu", "3000000000"),
    ("node gpu of 20 digits", "nodes", "n.csv", NODE_HEADER + "n1,1000,1000,99999999999999999999,V100\n",
     2, "gpu", "99999999999999999999"),
    ("node cpu_milli past int64", "nodes", "n.csv", NODE_HEADER + "n1,99999999999999999999,1000,1,V100\n",
     2, "cpu_milli", "99999999999999999999"),
    ("job num_gpus past int32", "jobs", "j.csv", JOB_HEADER + "1000,10,99999999999999999999,1,vc1\n",
     2, "num_gpus", "99999999999999999999"),
    ("vc node num past int64", "vcs", "v.csv", "vc,node num\nvc1,99999999999999999999\n",
     2, "node num", "99999999999999999999"),
]


@pytest.mark.parametrize("case", TRACES, ids=[c[0] for c in TRACES])
def test_trace_csv_overflows_name_file_line_column_value(case, tmp_path):
    from kaiwo.simulator.online import read_jobs_csv, read_vc_nodes
    from kaiwo_core.model.trace import TraceError, read_node_csv, read_pod_csv

    _, reader, name, text, line, column, value = case
    p = tmp_path / name
    p.write_text(text)
    read = {"pods": read_pod_csv, "nodes": read_node_csv, "jobs": read_jobs_csv, "vcs": read_vc_nodes}[reader]
    with pytest.raises(TraceError) as e:
        read(p)
    assert (e.value.path, e.value.line, e.value.column, e.value.value) == (str(p), line, column, value)
    assert str(e.value).startswith(f"{p}:{line}: column {column!r} = ")


def test_trace_corrupt_gz_is_a_trace_error(tmp_path):
    import gzip

    from kaiwo_core.model.trace import TraceError, read_pod_csv

    p = tmp_path / "pods.csv.gz"
    body = POD_HEADER + "".join(f"p{i},1000,1000,1,1000,\n" for i in range(2000))
    p.write_bytes(gzip.compress(body.encode())[:400])
    with pytest.raises(TraceError, match="not readable"):
        read_pod_csv(p)


def test_the_corpus_is_large_enough():
    assert len(CASES) + len(MUTATIONS) + len(RAW) + len(SOURCES) + len(RULES) + len(TRACES) >= 200
