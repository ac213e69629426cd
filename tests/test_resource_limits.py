"""Resource limits against denial of service (issue 10): bounded dump reading, gang reasons in linear
time, maxima on counts. (Performance is never asserted as a time: the tests count work.)"""
from __future__ import annotations

import numpy as np
import pytest

import kaiwo_core as kc
from kaiwo.dump import MAX_ALIAS_NODES, MAX_DEPTH, DumpError, check_size, load_dump


class _Counting(np.ndarray):
    """An array that counts the whole-array operations (ufuncs, reductions) done on it."""

    calls = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        _Counting.calls += 1
        inputs = tuple(i.view(np.ndarray) if isinstance(i, _Counting) else i for i in inputs)
        return getattr(ufunc, method)(*inputs, **kw)


def test_reasons_of_a_failed_gang_read_the_gang_once():
    """Every member's reason names how many members fit: computed once for the gang, not once per
    member (a KaiwoJob of 20,000 replicas took 13-48 s, 100,000 over 300 s)."""
    node = {"kind": "Node", "metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": "64", "memory": "1Ti", "amd.com/gpu": "8"}}}
    job = {"kind": "KaiwoJob", "metadata": {"name": "big", "namespace": "ml"},
           "spec": {"replicas": 400, "gpusPerReplica": 1, "template": {"spec": {"containers": [{"name": "c"}]}}}}
    d = kc.schedule(kc.Snapshot.from_objects([node, job]))
    p = d.placement
    p.batch.gang = p.batch.gang.view(_Counting)
    _Counting.calls = 0
    reasons = {e["reason"].split(";")[0] for e in d.pending()}
    assert len(d.pending()) == 400 and len(reasons) == 1
    assert reasons.pop().endswith(" of the 400 members it needs fit, so none was placed")
    assert _Counting.calls <= 3, _Counting.calls


def test_size_check_stops_at_its_budget_and_depth():
    shared = ["x"] * 10
    for _ in range(30):  # 10**30 nodes once expanded, 300 distinct
        shared = [shared] * 10

    def children(v):
        return v if isinstance(v, list) else []
    with pytest.raises(DumpError, match="expands to more than 1000 nodes"):
        check_size(shared, children, 1000, "bomb")
    deep: list = []
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    assert check_size(deep, children, 10**6, "deep") == MAX_DEPTH  # one node per level
    with pytest.raises(DumpError, match=f"nested deeper than {MAX_DEPTH} levels"):
        check_size([deep], children, 10**6, "deeper")


def test_aliases_within_the_budget_are_read(tmp_path):
    """Anchors and aliases as people use them (shared labels, templates) still work."""
    p = tmp_path / "d.yaml"
    p.write_text("- kind: Node\n  metadata: {name: a, labels: &l {team: x}}\n"
                 "- kind: Node\n  metadata: {name: b, labels: *l}\n")
    assert [o["metadata"]["labels"] for o in load_dump(p)] == [{"team": "x"}, {"team": "x"}]
    assert MAX_ALIAS_NODES >= 10**6


@pytest.mark.parametrize("replicas,ok", [(100_000, True), (100_001, False)])
def test_kaiwojob_replicas_have_a_maximum(replicas, ok):
    from kaiwo_core.scheduling.gangs import job_spec

    job = {"kind": "KaiwoJob", "metadata": {"name": "j"},
           "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c"}]}}}}
    if ok:
        assert job_spec(job)[2] == replicas
    else:
        with pytest.raises(kc.ObjectError, match="spec.replicas = 100001: must be between 1 and 100000"):
            job_spec(job)


def test_the_placement_kernel_never_sees_a_count_beyond_the_largest_node(monkeypatch):
    """The kernel reserves result space for the sum of the counts of a batch: a pod may name up
    to 1,024 GPUs (the decoding maximum), but reaches the kernel asking for one more than the
    largest node has, and stays pending with the kernel's reason."""
    import kaiwo_core.scheduling.cycle as cycle

    seen = []
    real = cycle.place

    def spy(cluster, state, batch, *args, **kw):
        seen.append(batch.count.copy())
        return real(cluster, state, batch, *args, **kw)
    monkeypatch.setattr(cycle, "place", spy)
    node = {"kind": "Node", "metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": "64", "memory": "1Ti", "amd.com/gpu": "8"}}}
    pods = [{"kind": "Pod", "metadata": {"name": f"p{i}"},
             "spec": {"schedulerName": "kaiwo", "containers": [{"name": "c", "resources": {
                 "limits": {"amd.com/gpu": "1024" if i else "2"}}}]}} for i in range(50)]
    doc = kc.schedule(kc.Snapshot.from_objects([node, *pods])).to_dict()
    assert [b["pod"] for b in doc["bindings"]] == ["default/p0"]
    assert {p["reason"] for p in doc["pending"]} == {"0/1 nodes can take it: 1 too few GPUs on the node"}
    assert max(int(c.max()) for c in seen) == 9
