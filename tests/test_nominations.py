"""Preemptors nominated in an earlier cycle go first (status.nominatedNodeName).

Pods were evicted for a preemptor; if the next cycle gave the freed capacity to other pods, its
queue would evict again (churn). Hand-checked: one node with one MI300X, two pending one-GPU pods
of the same queue; the older one would go first, unless the younger one is nominated.
"""
from __future__ import annotations

import kaiwo_core as kc
from tests.scenario_loader import node_obj, pod_objs


def objects(nominated: str | None):
    node = node_obj({"name": "n1", "gpus": 1})
    old, young = pod_objs({"name": "old", "gpu": 1}, start=0) + pod_objs({"name": "young", "gpu": 1}, start=5)
    if nominated is not None:
        young["status"] = {"nominatedNodeName": nominated}
    return [node, old, young]


def bound(objs) -> list:
    return [b["pod"] for b in kc.schedule(kc.Snapshot.from_objects(objs)).to_dict()["bindings"]]


def test_older_pod_first_without_nomination():
    assert bound(objects(None)) == ["default/old"]


def test_nominated_pod_first():
    assert bound(objects("n1")) == ["default/young"]


def test_nomination_is_read_from_status():
    snap = kc.Snapshot.from_objects(objects("n1"))
    assert {r.name: r.nominated_node for r in snap.pending} == {"default/old": "", "default/young": "n1"}
