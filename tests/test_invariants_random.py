"""Random whole dumps, two cycles each, checked independently of the kernels.

Cycle 1 runs on a generated dump (:mod:`tests.dumpgen`); its decisions are carried out as the
controller would (bindings with their assignment annotation, KaiwoJob replicas created, preempted
pods evicted, preemptors nominated) and cycle 2 runs on the result, so cycle 1's bindings are
running pods of cycle 2. After each cycle :func:`tests.invariants.violations` recomputes every load
from the raw objects and the JSON decisions (no node, device or partition over CPU, memory, pods,
compute share or GPU memory; XCD sets disjoint; gangs all or nothing; reservations and queue limits
held; every pod exactly once), and the same cycle on the objects in a shuffled order must decide
exactly the same.

``KAIWO_INVARIANT_EXAMPLES`` sets the number of dumps (default 600: about 20 ms each, four cycles,
so some 15-30 s on a loaded 2-core machine); ``KAIWO_INVARIANT_EXAMPLES=10000`` is a long run.
"""
from __future__ import annotations

import copy
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kaiwo_core as kc
from tests.dumpgen import NOW, dumps, next_cycle
from tests.invariants import violations

EXAMPLES = int(os.environ.get("KAIWO_INVARIANT_EXAMPLES", "600"))
# The default run (CI's) always draws the same dumps, so it passes or fails the same way every time;
# a run with KAIWO_INVARIANT_EXAMPLES set explores new ones.
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    derandomize="KAIWO_INVARIANT_EXAMPLES" not in os.environ,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def run(objs: list[dict], now: float) -> dict:
    # Deep copies: decoding must not depend on (or leave marks in) the caller's objects.
    return kc.schedule(kc.Snapshot.from_objects(copy.deepcopy(objs)), now=now).to_dict()


def normalized(doc: dict) -> dict:
    """The decisions with every list in a canonical order and the timings dropped."""
    def canon(x):
        if isinstance(x, dict):
            return {k: canon(v) for k, v in x.items() if k != "timingsMs"}
        if isinstance(x, list):
            items = [canon(v) for v in x]
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
        return x
    return canon(doc)


def check_cycle(objs: list[dict], now: float, order: list[int]) -> dict:
    doc = run(objs, now)
    found = violations(objs, doc, now)
    assert not found, "\n".join(f"{c}: {m}" for c, m in found)
    shuffled = run([objs[i] for i in order], now)
    assert normalized(shuffled) == normalized(doc), "decisions depend on the order of the objects"
    return doc


@st.composite
def dump_and_orders(draw):
    objs = draw(dumps())
    n = len(objs)
    # cycle 2 has at most the job replicas more objects: permute indices of a longer list
    first = draw(st.permutations(range(n)))
    second = draw(st.permutations(range(n + 8)))
    return objs, first, second


@SETTINGS
@given(dump_and_orders())
def test_two_cycles_keep_every_invariant(case):
    objs, first, second = case
    doc1 = check_cycle(objs, NOW, first)
    objs2 = next_cycle(objs, doc1, NOW + 30)
    check_cycle(objs2, NOW + 30, [i for i in second if i < len(objs2)])


def test_checker_catches_an_overcommitted_device():
    """The checker is not vacuous: a hand-made double booking is reported."""
    node = {"kind": "Node", "metadata": {"name": "n", "labels": {
        "amd.com/gpu.product-name": "AMD_Instinct_MI300X"}},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "amd.com/gpu": "1"}}}
    pods = [{"kind": "Pod", "metadata": {"name": n, "namespace": "default"},
             "spec": {"schedulerName": "kaiwo", "containers": [
                 {"name": "c", "resources": {"limits": {"cpu": "3", "amd.com/gpu": "1"}}}]}}
            for n in ("a", "b")]
    dev = [{"gpu": 0, "partition": 0, "xcds": list(range(8)), "fraction": 1.0, "memoryMiB": 196608}]
    doc = {"bindings": [{"pod": "default/a", "node": "n", "devices": dev},
                        {"pod": "default/b", "node": "n", "devices": dev}],
           "pending": [], "rejected": [], "running": [], "queues": []}
    cats = {c for c, _ in violations([node, *pods], doc, NOW)}
    assert cats == {"node", "device"}


# --------------------------------------------------------- defects the random dumps found

def _node(name: str) -> dict:
    return {"kind": "Node", "metadata": {"name": name, "labels": {
        "amd.com/gpu.product-name": "AMD_Instinct_MI300X"}},
        "status": {"allocatable": {"cpu": "2", "memory": "8Gi", "amd.com/gpu": "1"}}}


def test_competing_reservations_do_not_depend_on_object_order():
    """Two KaiwoReservations want the only node: the older one holds it, whatever order the
    objects are listed in (before: the first listed won, so two replicas listing in different
    orders held the node for different owners)."""
    def res(name, created, owner):
        return {"kind": "KaiwoReservation", "metadata": {"name": name, "creationTimestamp": created},
                "spec": {"job": owner, "gpus": 1}}
    objs = [_node("n0"), res("young", "2026-12-01T11:59:00Z", "ml/a"),
            res("old", "2026-12-01T11:50:00Z", "ml/b"), res("old-too", "2026-12-01T11:50:00Z", "ml/c")]
    for order in ([0, 1, 2, 3], [0, 3, 2, 1], [3, 1, 0, 2]):
        doc = run([objs[i] for i in order], NOW)
        assert [(r["name"], r["nodes"]) for r in doc["reservations"]] == [("old", ["n0"])]
        assert sorted(e["kaiworeservation"] for e in doc["invalidReservations"]) == ["old-too", "young"]


def test_automatic_reservation_between_equally_old_units_does_not_depend_on_object_order():
    """Two pods of 2 GPUs, created at the same time, have waited an hour on a node of 2 GPUs
    that a running pod keeps busy: the automatic reservation goes to the same one (by name)
    whatever the order of the objects (before: the one listed first)."""
    node = _node("n0")
    node["status"]["allocatable"]["amd.com/gpu"] = "2"

    def pod(name, **extra):
        limits = {"cpu": "100m", "memory": "128Mi"}
        if not extra:
            limits["amd.com/gpu"] = "2"
        return {"kind": "Pod", "metadata": {"name": name, "namespace": "default",
                                            "creationTimestamp": "2026-12-01T11:00:00Z", **extra},
                "spec": {"schedulerName": "kaiwo", "containers": [{"name": "c", "resources": {"limits": limits}}],
                         **({"nodeName": "n0"} if extra else {})}}
    busy = pod("busy", annotations={"kaiwo.ai/gpu-fraction": "0.1", "kaiwo.ai/gpu-assignment":
                                    '[{"gpu":0,"partition":0,"xcds":[0,1,2,3,4,5,6,7],"fraction":0.1,"memoryMiB":19660}]'})
    objs = [node, busy, pod("b"), pod("a")]
    for order in ([0, 1, 2, 3], [3, 2, 1, 0]):
        doc = run([objs[i] for i in order], NOW)
        assert [(r["name"], r["automatic"]) for r in doc["reservations"]] == [("auto-default-a", True)]


def test_automatic_reservation_with_unknown_release_lets_nothing_backfill():
    """A pod of 2 GPUs has waited 10 minutes behind a running pod with no expected runtime: the
    node held for it is needed now (when it frees is unknown), so a pod declaring a short
    runtime must not backfill onto it (before: "needed at" was infinity and any pod declaring
    any runtime backfilled)."""
    node = _node("n1")
    node["status"]["allocatable"]["amd.com/gpu"] = "2"

    def pod(name, created, limits, **meta):
        return {"kind": "Pod", "metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                                            **meta},
                "spec": {"schedulerName": "kaiwo", "containers": [
                    {"name": "c", "resources": {"limits": {"cpu": "100m", "memory": "128Mi", **limits}}}]}}
    busy = pod("busy", "2026-12-01T11:00:00Z", {}, annotations={
        "kaiwo.ai/gpu-fraction": "0.1",
        "kaiwo.ai/gpu-assignment": '[{"gpu":0,"partition":0,"xcds":[0,1,2,3,4,5,6,7],"fraction":0.1,"memoryMiB":19660}]'})
    busy["spec"]["nodeName"] = "n1"
    big = pod("big", "2026-12-01T11:50:00Z", {"amd.com/gpu": "2"})
    short = pod("short", "2026-12-01T12:00:00Z", {}, annotations={"kaiwo.ai/expected-runtime": "90s"})
    doc = run([node, busy, big, short], NOW)
    assert [(r["name"], r["neededAt"]) for r in doc["reservations"]] == [("auto-default-big", "2026-12-01T12:00:00Z")]
    assert not doc["bindings"]
    assert not violations([node, busy, big, short], doc, NOW)
