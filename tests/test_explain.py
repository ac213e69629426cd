"""Issue 11, items 4 and 5: pending reasons and ``kaiwo explain`` that name the filter and the value,
warnings for unknown annotations and fields, every error of an object, ``--now``, and the size of a
logical GPU (``kaiwo.ai/gpu-partition``, ``gpu-min-cus``, ``gpu-min-memory``). Outcomes worked out by
hand."""
import json

import kaiwo_core as kc
from kaiwo.cli import main
from tests.scenario_loader import node_obj, pod_objs


def objects(nodes, pods):
    out = [node_obj(n) for n in nodes]
    for i, p in enumerate(pods):
        out += pod_objs(p, start=i)
    return out


def run(objs, **kw):
    return kc.schedule(kc.Snapshot.from_objects(objs), **kw).to_dict()


# ------------------------------------------------------------------ item 5: the size of a logical GPU

SIZE_NODES = [{"name": "spx", "gpus": 1}, {"name": "cpx", "gpus": 1, "partition": "cpx_nps1"}]


def test_partition_annotation_places_by_mode_and_shows_absolute_sizes():
    # MI300X: SPX = one logical GPU of 304 CUs / 192 GiB; CPX = 8 of 38 CUs / 24 GiB.
    doc = run(objects(SIZE_NODES, [
        {"name": "a", "annotations": {"kaiwo.ai/gpu-fraction": "0.5", "kaiwo.ai/gpu-partition": "cpx"}},
        {"name": "b", "annotations": {"kaiwo.ai/gpu-fraction": "0.5", "kaiwo.ai/gpu-partition": "SPX"}},
        {"name": "c", "gpu": 1, "annotations": {"kaiwo.ai/gpu-partition": "spx|dpx"}},
        {"name": "d", "annotations": {"kaiwo.ai/gpu-fraction": "0.25", "kaiwo.ai/gpu-min-cus": "76"}},
        {"name": "e", "annotations": {"kaiwo.ai/gpu-fraction": "0.25", "kaiwo.ai/gpu-min-memory": "100Gi"}},
    ]))
    bound = {b["pod"]: b for b in doc["bindings"]}
    assert {p: b["node"] for p, b in bound.items()} == {
        "default/a": "cpx", "default/b": "spx", "default/d": "spx", "default/e": "spx"}
    a, b = bound["default/a"]["devices"][0], bound["default/b"]["devices"][0]
    assert (a["gpuCUs"], a["gpuMemoryGiB"], a["cus"], a["memoryGiB"]) == (38, 24, 19, 12)
    assert (b["gpuCUs"], b["gpuMemoryGiB"], b["cus"], b["memoryGiB"]) == (304, 192, 152, 96)
    # c may not use the CPX node; the SPX GPU is shared by b, d and e, so it is not idle.
    assert doc["pending"] == [{"pod": "default/c", "reason": "0/2 nodes can take it: 1 GPU partition CPX "
                               "(pod asks for DPX|SPX), 1 not enough idle GPUs"}]


def test_partition_annotation_bad_values_are_rejected_naming_the_field():
    doc = run(objects(SIZE_NODES, [
        {"name": "cpu-only", "annotations": {"kaiwo.ai/gpu-partition": "cpx"}},
        {"name": "typo", "gpu": 1, "annotations": {"kaiwo.ai/gpu-partition": "xpx"}},
        {"name": "zero", "gpu": 1, "annotations": {"kaiwo.ai/gpu-min-cus": "0"}},
        {"name": "huge", "gpu": 1, "annotations": {"kaiwo.ai/gpu-min-cus": "99999999"}},
        {"name": "mem", "gpu": 1, "annotations": {"kaiwo.ai/gpu-min-memory": "lots"}},
    ]))
    rejected = {r["pod"]: r for r in doc["rejected"]}
    assert {p: r["field"] for p, r in rejected.items()} == {
        "default/cpu-only": "metadata.annotations.kaiwo.ai/gpu-partition",
        "default/typo": "metadata.annotations.kaiwo.ai/gpu-partition",
        "default/zero": "metadata.annotations.kaiwo.ai/gpu-min-cus",
        "default/huge": "metadata.annotations.kaiwo.ai/gpu-min-cus",
        "default/mem": "metadata.annotations.kaiwo.ai/gpu-min-memory"}
    assert rejected["default/typo"]["error"] == ("'xpx': unknown compute partition mode 'xpx' "
                                                "(expected one of spx, dpx, tpx, qpx, cpx)")
    assert "asks for no GPU" in rejected["default/cpu-only"]["error"]


def test_cpx_pod_never_on_spx_node_and_back():
    """Many pods each way, capacity on both kinds of node: every one lands on its own mode."""
    nodes = [{"name": "spx-0", "gpus": 2}, {"name": "spx-1", "gpus": 2},
             {"name": "cpx-0", "gpus": 1, "partition": "cpx_nps4"}, {"name": "qpx-0", "gpus": 1, "partition": "qpx_nps1"}]
    pods = [{"name": f"c{i}", "annotations": {"kaiwo.ai/gpu-fraction": "0.5", "kaiwo.ai/gpu-partition": "cpx"}}
            for i in range(6)]
    pods += [{"name": f"s{i}", "annotations": {"kaiwo.ai/gpu-fraction": "0.5", "kaiwo.ai/gpu-partition": "spx"}}
             for i in range(6)]
    pods += [{"name": "w", "gpu": 1, "annotations": {"kaiwo.ai/gpu-partition": "qpx|cpx"}}]
    doc = run(objects(nodes, pods), strategy="spread")
    where = {b["pod"].split("/")[1]: b["node"] for b in doc["bindings"]}
    assert len(where) == 13
    assert all(where[f"c{i}"] == "cpx-0" and where[f"s{i}"].startswith("spx") for i in range(6))
    assert where["w"] in ("cpx-0", "qpx-0")
