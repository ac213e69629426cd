"""Migrations (``kaiwo controller --rebalance``) against the emulator.

The situation: node a runs ``m`` (1 GPU, migratable, owned by a ReplicaSet), node b runs ``pin``
(1 GPU, not migratable), both 2-GPU nodes, and ``big`` (2 GPUs) is pending: it fits nowhere. The
planner moves ``m`` to b's free GPU (consolidation), which makes room for ``big`` on a. With
``apply`` the controller evicts ``m``; the test then creates the replacement as the ReplicaSet
controller would (same owner, same pod-template-hash, a new name), and the controller binds it to
the planned GPU of b, which was held for it meanwhile.
"""
from __future__ import annotations

import json

import pytest

from kaiwo.controller import ControllerConfig
from kaiwo_core.scheduling.config import RebalanceSettings, SchedulerConfiguration
from tests.controller.kube import node, pod, wait_until

RS_UID = "6a1f0c3e-0000-4000-8000-000000000001"


def gpu(i: int) -> str:
    return json.dumps([{"gpu": i, "partition": 0, "xcds": list(range(8)), "fraction": 1.0, "memoryMiB": 196608}])


def owned(p: dict, hash_: str = "5d8f") -> dict:
    p["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "m-rs",
                                         "uid": RS_UID, "controller": True}]
    p["metadata"]["labels"]["pod-template-hash"] = hash_
    return p


def situation() -> list[dict]:
    return [node("a", gpus=2), node("b", gpus=2),
            owned(pod("m", gpus=1, node_name="a", annotations={"kaiwo.ai/migratable": "true",
                                                               "kaiwo.ai/gpu-assignment": gpu(0)})),
            pod("pin", gpus=1, node_name="b", annotations={"kaiwo.ai/gpu-assignment": gpu(0)}),
            pod("big", gpus=2)]


def scheduling(mode: str, hold_ttl: float = 30.0) -> SchedulerConfiguration:
    return SchedulerConfiguration(rebalance=RebalanceSettings(mode=mode, period=0.2, hold_ttl=hold_ttl,
                                                              min_runtime=0.0))


def migrations(controller) -> dict:
    return {(s.labels["reason"], s.labels["outcome"]): s.value
            for metric in controller.metrics.migrations.collect() for s in metric.samples
            if s.name.endswith("_total")}


def test_off_is_the_default_and_plans_nothing(emulator, kube, make_controller):
    assert ControllerConfig().scheduling.rebalance.mode == "off"
    kube.create_all(situation())
    controller = make_controller().start_background()
    wait_until(lambda: controller.cycles >= 5)
    assert emulator.stats()["evictions"] == {}
    assert kube.events_for("m", "MigrationPlanned") == [] and migrations(controller) == {}
    assert controller.migrator.last_plan is None


def test_plan_mode_writes_events_and_a_metric_and_changes_nothing(emulator, kube, make_controller):
    kube.create_all(situation())
    controller = make_controller(scheduling=scheduling("plan")).start_background()
    wait_until(lambda: kube.events_for("m", "MigrationPlanned"))
    (event, *_) = kube.events_for("m", "MigrationPlanned")
    assert "consolidation: from a" in event["message"] and "to b" in event["message"]
    assert "default/big" in event["message"]
    wait_until(lambda: controller.cycles >= 5)
    assert emulator.stats()["evictions"] == {}
    assert kube.bound()["default/m"]["spec"]["nodeName"] == "a" and "default/big" not in kube.bound()
    assert migrations(controller)[("consolidation", "planned")] >= 1
    assert controller.migrator.active == {}


def test_apply_evicts_and_the_replacement_lands_on_the_planned_target(emulator, kube, make_controller):
    kube.create_all(situation())
    controller = make_controller(scheduling=scheduling("apply")).start_background()
    wait_until(lambda: emulator.stats()["evictions"] == {"default/m": 1})
    (move,) = controller.migrator.last_moves
    assert (move["to"]["node"], [d["gpu"] for d in move["to"]["devices"]]) == ("b", [1])
    assert kube.events_for("m", "Migrating")
    wait_until(lambda: "default/big" in kube.bound())            # the room the move made
    assert kube.bound()["default/big"]["spec"]["nodeName"] == "a"
    # A pod that is not the replacement stays off the held GPU meanwhile.
    kube.create(pod("stranger", gpus=1))
    c0 = controller.cycles
    wait_until(lambda: controller.cycles >= c0 + 5)
    assert "default/stranger" not in kube.bound()
    # The ReplicaSet's replacement: same owner and template hash, a new name.
    kube.create(owned(pod("m-x7k2p", gpus=1, annotations={"kaiwo.ai/migratable": "true"})))
    wait_until(lambda: "default/m-x7k2p" in kube.bound())
    placed = kube.bound()["default/m-x7k2p"]
    assert placed["spec"]["nodeName"] == "b"
    assert [d["gpu"] for d in json.loads(placed["metadata"]["annotations"]["kaiwo.ai/gpu-assignment"])] == [1]
    wait_until(lambda: migrations(controller).get(("consolidation", "completed")) == 1)
    assert migrations(controller)[("consolidation", "evicted")] == 1
    assert kube.events_for("m-x7k2p", "Migrated") and controller.migrator.active == {}


def test_a_migration_that_does_not_complete_is_released_and_reported(emulator, kube, make_controller):
    kube.create_all(situation())
    controller = make_controller(scheduling=scheduling("apply", hold_ttl=4.0)).start_background()
    wait_until(lambda: emulator.stats()["evictions"] == {"default/m": 1})
    wait_until(lambda: "default/big" in kube.bound())
    kube.create(pod("late", gpus=1))                          # only b's held GPU is left
    c0 = controller.cycles
    wait_until(lambda: controller.cycles >= c0 + 3)
    assert controller.migrator.active and "default/late" not in kube.bound()   # held meanwhile
    wait_until(lambda: kube.events_for("m", "MigrationTimedOut"))
    (event,) = kube.events_for("m", "MigrationTimedOut")
    assert "released" in event["message"] and event["type"] == "Warning"
    assert migrations(controller)[("consolidation", "timed-out")] == 1
    wait_until(lambda: "default/late" in kube.bound())        # the hold is gone: b's GPU is free
    assert kube.bound()["default/late"]["spec"]["nodeName"] == "b"


@pytest.mark.parametrize("mode", ["sideways", 3])
def test_a_bad_mode_is_refused(mode):
    from kaiwo_core.scheduling.config import ConfigError, decode
    with pytest.raises(ConfigError, match="rebalance.mode"):
        decode({"apiVersion": "kaiwo.ai/v1alpha1", "kind": "KaiwoSchedulerConfiguration", "rebalance": {"mode": mode}})


def test_a_pinned_hold_keeps_its_owner_on_the_held_node():
    # The steering itself, on the core: without the hold, binpack puts p on a; the pinned hold of
    # b's GPU 5 (what a migration adds to the cycle's snapshot) takes p there, and only p.
    import kaiwo_core as kc
    from tests.scenario_loader import scenario_objects
    objs = scenario_objects({"nodes": [{"name": "a", "gpus": 8}, {"name": "b", "gpus": 8}],
                             "pods": [{"name": "p", "gpu": 1}, {"name": "q", "gpu": 1, "nodeSelector": {}}]})
    hold = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoReservation",
            "metadata": {"name": "m", "annotations": {"kaiwo.ai/pin-owner": "true"}},
            "spec": {"job": "default/p", "devices": [{"node": "b", "gpu": 5}]}}

    def where(extra):
        doc = kc.schedule(kc.Snapshot.from_objects(objs + extra)).to_dict()
        assert doc["invalidReservations"] == []
        return {b["pod"]: (b["node"], [d["gpu"] for d in b["devices"]]) for b in doc["bindings"]}
    assert where([])["default/p"] == ("a", [0])
    got = where([hold])
    assert got["default/p"] == ("b", [5]) and got["default/q"] != ("b", [5])
    unpinned = {**hold, "metadata": {"name": "m"}}
    assert where([unpinned])["default/p"][0] == "a"


def test_the_flag_sets_the_file_key():
    from kaiwo.cli import build_parser
    from kaiwo.cli.controller import FILE_FLAGS
    from kaiwo_core.scheduling.config import decode
    args = build_parser().parse_args(["controller", "--rebalance", "plan"])
    overrides = {key: getattr(args, dest) for dest, key in FILE_FLAGS.items() if getattr(args, dest) is not None}
    assert overrides == {"rebalance.mode": "plan"}
    assert decode({"apiVersion": "kaiwo.ai/v1alpha1", "kind": "KaiwoSchedulerConfiguration"}, overrides).rebalance.mode == "plan"
