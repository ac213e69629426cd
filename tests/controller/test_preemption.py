"""Preemptions decided by a cycle go through the Eviction API, with an Event on the victim.

The core's cycle fills ``Decisions.to_dict()["preemptions"]`` (``{pod, reason, preemptor, node,
rule}``); here a wrapper around ``schedule`` supplies one, so the controller's half -- eviction,
PodDisruptionBudget answers, the Event, the freed capacity going to the preemptor -- is tested on
its own.
"""
from __future__ import annotations

import json

from kaiwo.controller import EvictTask
from kaiwo.controller import loop
from tests.controller.kube import node, pod, wait_until

WHOLE = json.dumps([{"gpu": 0, "partition": 0, "xcds": list(range(8)), "fraction": 1.0, "memoryMiB": 196608}])


def _with_preemption(monkeypatch, entry: dict) -> None:
    real = loop.schedule

    def schedule(snapshot, **kwargs):
        decisions = real(snapshot, **kwargs)
        doc = decisions.to_dict
        victim_running = any(r.name == entry["pod"] for r in snapshot.running)
        decisions.to_dict = lambda: {**doc(), "preemptions": [entry] if victim_running else []}
        return decisions

    monkeypatch.setattr(loop, "schedule", schedule)


def test_preemption_evicts_the_victim_and_the_preemptor_gets_its_gpu(emulator, kube, make_controller, monkeypatch):
    kube.create_all([node("n0", gpus=1),
                     pod("victim", gpus=1, node_name="n0", annotations={"kaiwo.ai/gpu-assignment": WHOLE}),
                     pod("vip", gpus=1, priority=1000)])
    _with_preemption(monkeypatch, {"pod": "default/victim", "reason": "queue research reclaims its quota",
                                   "preemptor": "default/vip", "node": "n0", "rule": "reclaim-conservative"})
    controller = make_controller().start_background()
    wait_until(lambda: "default/vip" in kube.bound())
    assert emulator.stats()["evictions"] == {"default/victim": 1}
    assert kube.bound()["default/vip"]["spec"]["nodeName"] == "n0"
    (event,) = kube.events_for("victim", "Preempted")
    assert "default/vip" in event["message"] and "reclaim-conservative" in event["message"]
    assert controller.binder.stats.results.get("evicted") == 1


def test_eviction_outcomes(emulator, kube, make_controller):
    kube.create_all([node("n0"),
                     pod("a", gpus=1, node_name="n0", annotations={"kaiwo.ai/gpu-assignment": WHOLE}),
                     pod("b", gpus=1, node_name="n0", annotations={"kaiwo.ai/gpu-assignment": WHOLE.replace(
                         '"gpu": 0', '"gpu": 1')})])
    controller = make_controller()
    controller.start()
    wait_until(controller.synced)
    wait_until(controller.is_leader)
    binder = controller.binder
    emulator.inject({"method": "POST", "path": r"/eviction$", "status": 429})  # a PDB says no
    (blocked,) = binder.evict([EvictTask("default", "a", "", "r", "default/x", "n0", "within-queue")])
    assert blocked.result().result == "blocked" and "default/a" in kube.bound()
    # Cycles keep proposing the victim: it is not submitted again before eviction_retry (5 s).
    assert binder.evict([EvictTask("default", "a", "")]) == []
    binder.eviction_retry = 0.0
    (first,) = binder.evict([EvictTask("default", "b", "")])
    assert first.result().result == "blocked"
    (second,) = binder.evict([EvictTask("default", "b", "")])   # no pause now: tried again
    assert second.result().result == "blocked"
    emulator.clear_faults()
    (done,) = binder.evict([EvictTask("default", "b", "")])
    assert done.result().result == "evicted" and "default/b" not in kube.bound()
    assert binder.evict([EvictTask("default", "b", "")]) == []  # evicted: the full cooldown applies
    (gone,) = binder.evict([EvictTask("default", "never-existed", "")])
    assert gone.result().ok and gone.result().result == "gone"
    assert emulator.stats()["evictions"] == {"default/b": 1}


def test_a_real_preemption_nominates_the_preemptor(emulator, kube, make_controller):
    # No wrapper: the cycle itself decides (within-queue preemption by priority). The preemptor's
    # status.nominatedNodeName names the node its victim was evicted on, so later cycles place it
    # first; it then gets the GPU.
    kube.create_all([node("n0", gpus=1),
                     pod("victim", gpus=1, node_name="n0", priority=0,
                         annotations={"kaiwo.ai/gpu-assignment": WHOLE}),
                     pod("vip", gpus=1, priority=1000)])
    make_controller().start_background()
    wait_until(lambda: "default/vip" in kube.bound())
    assert emulator.stats()["evictions"] == {"default/victim": 1}
    assert kube.pod("default", "vip")["status"].get("nominatedNodeName") == "n0"
