"""GPU models, Node and Pod decoding: hand-checked facts and every error path."""
import numpy as np
import pytest

import kaiwo_core as kc
from kaiwo_core.model import gpu
from kaiwo_core.model.cluster import NodeError, node_spec
from kaiwo_core.model.requests import KIND_NONE, KIND_SHARED, KIND_WHOLE, KIND_XCD, PodError, pod_request
from tests.scenario_loader import node_obj


@pytest.mark.parametrize("mode,logical,xcds,mem,per_domain", [
    ("spx_nps1", 1, 8, 192 * 1024, 8), ("dpx_nps1", 2, 4, 96 * 1024, 8), ("dpx_nps2", 2, 4, 96 * 1024, 4),
    ("qpx_nps1", 4, 2, 48 * 1024, 8), ("qpx_nps4", 4, 2, 48 * 1024, 2), ("cpx_nps1", 8, 1, 24 * 1024, 8),
    ("cpx_nps4", 8, 1, 24 * 1024, 2),
])
def test_mi300x_modes(mode, logical, xcds, mem, per_domain):
    p = gpu.partitioning(gpu.MODELS["MI300X"], *gpu.parse_mode_label(mode))
    assert (p.logical_per_gpu, p.xcds_per_partition, p.memory_per_partition_mib, p.xcds_per_domain) == \
        (logical, xcds, mem, per_domain)
    masks = [p.xcd_mask(i) for i in range(logical)]
    assert sum(masks) == 0xFF and all(a & b == 0 for i, a in enumerate(masks) for b in masks[i + 1:])


@pytest.mark.parametrize("model,mode", [("MI300X", "spx_nps4"), ("MI300X", "spx_nps2"),
                                        ("MI300X", "qpx_nps2"), ("MI300A", "cpx_nps4")])
def test_invalid_modes(model, mode):
    with pytest.raises(gpu.PartitionError, match="not a valid partition mode"):
        gpu.partitioning(gpu.MODELS[model], *gpu.parse_mode_label(mode))


def test_mi35x_allows_nps2_with_qpx_and_cpx():
    assert gpu.partitioning(gpu.MODELS["MI355X"], "CPX", "NPS2").xcds_per_domain == 4


def test_nps4_quadrants_pair_xcds():
    p = gpu.partitioning(gpu.MODELS["MI300X"], "CPX", "NPS4")
    assert [p.domain_of_partition(i) for i in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_product_names():
    assert gpu.model_from_product_name("AMD_Instinct_MI300X").name == "MI300X"
    assert gpu.model_from_product_name("AMD Instinct MI300A").name == "MI300A"
    assert gpu.model_from_product_name("Tesla-T4") is None


def test_node_single_strategy_cpx():
    n = node_spec(node_obj({"name": "a", "partition": "cpx_nps4", "gpus": 8}))
    assert n.gpus[0].count == 8 and n.gpus[0].part.logical_per_gpu == 8
    c = kc.cluster_from_nodes([node_obj({"name": "a", "partition": "cpx_nps4", "gpus": 8})])
    assert c.n_devices == 64 and set(c.dev_mem_cap) == {24576}
    assert c.device_index(0, 3, 5) == 29


def test_node_mixed_resources_on_one_node():
    obj = node_obj({"name": "m", "gpus": 0})
    obj["status"]["allocatable"].update({"amd.com/cpx_nps4": "32", "amd.com/spx_nps1": "4"})
    c = kc.cluster_from_nodes([obj])
    assert c.n_devices == 36 and c.nodes[0].resources == {"amd.com/cpx_nps4", "amd.com/spx_nps1"}
    assert c.device_index(0, 4, 0) == 32  # the SPX group follows the four CPX GPUs


def test_generic_nvidia_node():
    c = kc.cluster_from_nodes([node_obj({"name": "g", "model": "V100M32", "gpus": 4})])
    assert c.n_devices == 4 and set(c.dev_mem_cap) == {32 * 1024} and not c.dev_xcd_mask.any()


@pytest.mark.parametrize("patch,field", [
    ({"cpu": "lots"}, "status.allocatable.cpu"),
    ({"amd.com/gpu": "12"}, None),  # CPX: 12 logical GPUs do not divide into 8 per GPU
])
def test_node_errors_name_field(patch, field):
    obj = node_obj({"name": "bad", "partition": "cpx_nps1", "gpus": 1})
    obj["status"]["allocatable"].update(patch)
    c = kc.cluster_from_nodes([obj, node_obj({"name": "ok"})])
    assert c.names == ["ok"] and len(c.errors) == 1
    e = c.errors[0]
    assert e.name == "bad" and (field is None or e.field == field)
    assert "bad" in str(e)


def pod(ann=None, limits=None, requests=None, init=None, **spec):
    obj = {"kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "annotations": ann or {}},
           "spec": {"containers": [{"name": "c", "resources": {"limits": limits or {},
                                                                "requests": requests or {}}}], **spec}}
    if init:
        obj["spec"]["initContainers"] = [{"name": "i", "resources": {"requests": init}}]
    return obj


def test_effective_requests():
    r = pod_request(pod(requests={"cpu": "500m", "memory": "1Gi"}, init={"cpu": "2", "memory": "100M"}))
    assert (r.cpu, r.memory, r.kind) == (2000, 1024, KIND_NONE)
    r = pod_request(pod(limits={"cpu": "1.5", "amd.com/gpu": "2"}))  # limit alone sets the request
    assert (r.cpu, r.kind, r.count, r.milli) == (1500, KIND_WHOLE, 2, 1000)


def test_annotation_kinds():
    r = pod_request(pod({"kaiwo.ai/gpu-fraction": "0.25", "kaiwo.ai/gpu-fraction-num-devices": "2"}))
    assert (r.kind, r.count, r.milli, r.exclusive) == (KIND_SHARED, 2, 250, False)
    r = pod_request(pod({"kaiwo.ai/gpu-fraction": "0.3", "kaiwo.ai/gpu-isolation": "xcd"}))
    assert (r.kind, r.milli) == (KIND_XCD, 300)
    r = pod_request(pod({"kaiwo.ai/gpu-memory": "4Gi"}))
    assert (r.kind, r.milli, r.gpu_memory) == (KIND_SHARED, 0, 4096)
    r = pod_request(pod({"kaiwo.ai/gpu-fraction": "0.5", "kaiwo.ai/gpu-sharing": "false"}))
    assert r.exclusive


@pytest.mark.parametrize("ann,limits,field", [
    ({"kaiwo.ai/gpu-fraction": "1.5"}, {}, "kaiwo.ai/gpu-fraction"),
    ({"kaiwo.ai/gpu-fraction": "abc"}, {}, "kaiwo.ai/gpu-fraction"),
    ({"kaiwo.ai/gpu-fraction": "0"}, {}, "kaiwo.ai/gpu-fraction"),
    ({"kaiwo.ai/gpu-memory": "-1"}, {}, "kaiwo.ai/gpu-memory"),
    ({"kaiwo.ai/gpu-isolation": "mig"}, {}, "kaiwo.ai/gpu-isolation"),
    ({"kaiwo.ai/gpu-isolation": "xcd"}, {}, "kaiwo.ai/gpu-isolation"),
    ({"kaiwo.ai/gpu-fraction-num-devices": "2"}, {}, "kaiwo.ai/gpu-fraction-num-devices"),
    ({"kaiwo.ai/gpu-fraction": "0.5", "kaiwo.ai/gpu-fraction-num-devices": "0"}, {},
     "kaiwo.ai/gpu-fraction-num-devices"),
    ({"kaiwo.ai/gpu-fraction": "0.5"}, {"amd.com/gpu": "1"}, "kaiwo.ai/gpu-fraction"),
    ({"kaiwo.ai/gpu-sharing": "maybe", "kaiwo.ai/gpu-fraction": "0.5"}, {}, "kaiwo.ai/gpu-sharing"),
    ({"kaiwo.ai/gpu-sharing": "true"}, {"amd.com/gpu": "1"}, "kaiwo.ai/gpu-sharing"),
    ({}, {"amd.com/gpu": "1.5"}, "limits.amd.com/gpu"),
    ({}, {"memory": "4Gx"}, "limits.memory"),
])
def test_pod_errors_name_field_and_value(ann, limits, field):
    with pytest.raises(PodError) as ei:
        pod_request(pod(ann, limits))
    e = ei.value
    assert e.name == "ns/p" and e.field.endswith(field) and e.reason
    assert e.to_dict()["pod"] == "ns/p"


def test_unknown_priority_class_is_an_error():
    with pytest.raises(PodError, match="PriorityClass"):
        pod_request(pod(priorityClassName="gold"), {})


def test_batch_from_arrays_validates():
    with pytest.raises(ValueError, match=r"cpu\[1\] = -1"):
        kc.batch_from_arrays(cpu=[1, -1], memory=[0, 0])
    with pytest.raises(ValueError, match=r"fraction\[0\] = 1500"):
        kc.batch_from_arrays(cpu=[1], memory=[0], fraction=[1500])
    b = kc.batch_from_arrays(cpu=[1, 1, 1], memory=[0, 0, 0], gpus=[2, 0, 0], fraction=[0, 300, 300],
                             isolation=[False, False, True])
    assert b.kind.tolist() == [KIND_WHOLE, KIND_SHARED, KIND_XCD] and b.count.tolist() == [2, 1, 1]
    assert np.array_equal(b.take([2, 0]).kind, [KIND_XCD, KIND_WHOLE])
