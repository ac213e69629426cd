"""Silent wrong decisions of the core (issue 10, items 3, 8, 12 and 13), each worked out by hand.

Every test here failed before its fix: a decision that looked fine and was not (a node booked twice,
a queue charged less than it holds, a decision that depends on the order of the input objects, a
bad value accepted or a reason that names the wrong cause).
"""
from __future__ import annotations

import numpy as np
import pytest

import kaiwo_core as kc
from tests.scenario_loader import node_obj, pod_objs, scenario_objects


def cycle(objs, **kw) -> dict:
    return kc.schedule(kc.Snapshot.from_objects(objs), **kw).to_dict()


# ------------------------------------------------------------------ item 8: duplicate node names

def test_duplicate_node_names_are_all_left_out():
    """Two Nodes named n (1 GPU each): which one a pod bound to n uses is unknown, so neither is
    trusted -- both are left out with an error naming the node and metadata.name, and nothing is
    bound to n (before: two whole-GPU pods on n gpu 0)."""
    objs = [node_obj({"name": "n", "gpus": 1}), node_obj({"name": "n", "gpus": 1}),
            node_obj({"name": "m", "gpus": 1})] + pod_objs({"name": "p", "gpu": 1, "replicas": 2})
    doc = cycle(objs)
    bad = [e for e in doc["invalidNodes"] if e["node"] == "n"]
    assert len(bad) == 2 and all(e["field"] == "metadata.name" for e in bad)
    assert "2 Node objects" in bad[0]["error"]
    assert [b["node"] for b in doc["bindings"]] == ["m"]
    assert doc["stats"]["nodes"] == 1 and doc["stats"]["gpus"] == 1
    assert len(doc["pending"]) == 1


def test_cluster_from_arrays_refuses_duplicate_names():
    with pytest.raises(ValueError, match=r"names\[2\] = 'a'"):
        kc.cluster_from_arrays(["a", "b", "a"], cpu=[1000] * 3, memory=[1000] * 3, gpus=[1] * 3)
