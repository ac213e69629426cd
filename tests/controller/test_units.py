"""Unit tests of the controller's pure parts: error policy, GPU environment, charge book, cache.

No emulator here: these check the pieces the end-to-end tests rely on, against plain-Python
references (``Snapshot.from_objects`` for the cache, a bit loop for the CU mask).
"""
from __future__ import annotations

import json
import random
import threading

import numpy as np
import pytest
from kubernetes.client.exceptions import ApiException

from kaiwo.controller.binder import _ranges, config_map_name, cu_mask_bits, device_env
from kaiwo.controller.cache import ChargeBook, ClusterCache
from kaiwo.controller.errors import (ControllerError, Disposition, RetryPolicy, StoppedError,
                                     call_with_retry, classify)
from kaiwo_core import Snapshot, schedule
from kaiwo_core.model.cluster import cluster_from_nodes
from kaiwo_core.model.requests import KIND_SHARED, KIND_WHOLE, KIND_XCD, pod_request
from tests.controller.kube import node, pod


# ----------------------------------------------------------------------------- error policy

@pytest.mark.parametrize("status,expected", [
    (409, Disposition.CONFLICT), (404, Disposition.GONE), (410, Disposition.GONE),
    (429, Disposition.RETRY), (500, Disposition.RETRY), (503, Disposition.RETRY), (504, Disposition.RETRY),
    (400, Disposition.PERMANENT), (403, Disposition.PERMANENT), (422, Disposition.PERMANENT),
])
def test_classify_api_statuses(status, expected):
    assert classify(ApiException(status=status)) is expected


def test_classify_network_errors_as_temporary():
    import urllib3.exceptions as u3

    assert classify(u3.ReadTimeoutError(None, "/api", "read timed out")) is Disposition.RETRY
    assert classify(ConnectionResetError()) is Disposition.RETRY
    assert classify(KeyError("bug")) is Disposition.PERMANENT


def test_retry_retries_temporary_then_succeeds():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ApiException(status=503)
        return "ok"

    assert call_with_retry(flaky, "op", RetryPolicy(attempts=5, initial=0.001, maximum=0.002, seed=1)) == "ok"
    assert len(calls) == 3


def test_retry_stops_at_once_on_conflict_and_on_permanent():
    for status, disposition in ((409, Disposition.CONFLICT), (422, Disposition.PERMANENT)):
        calls = []

        def fail():
            calls.append(1)
            raise ApiException(status=status)

        with pytest.raises(ControllerError) as info:
            call_with_retry(fail, "op", RetryPolicy(attempts=5, initial=0.001, maximum=0.002))
        assert len(calls) == 1 and info.value.disposition is disposition and info.value.status == status


def test_retry_gives_up_after_the_attempt_budget():
    calls = []

    def down():
        calls.append(1)
        raise ApiException(status=500)

    with pytest.raises(ControllerError) as info:
        call_with_retry(down, "bind x", RetryPolicy(attempts=4, initial=0.001, maximum=0.002))
    assert len(calls) == 4 and info.value.attempts == 4 and "bind x" in str(info.value)


def test_retry_is_interrupted_by_stop():
    stop = threading.Event()
    stop.set()
    with pytest.raises(StoppedError):
        call_with_retry(lambda: (_ for _ in ()).throw(ApiException(status=500)), "op",
                        RetryPolicy(attempts=5, initial=10, maximum=10), stop)


def test_backoff_grows_with_jitter_and_stays_capped():
    p = RetryPolicy(attempts=10, initial=0.1, maximum=1.0, seed=3)
    waits = [p.backoff(a) for a in range(1, 9)]
    for a, w in enumerate(waits, start=1):
        cap = min(1.0, 0.1 * 2 ** (a - 1))
        assert cap / 2 <= w <= cap
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


# ------------------------------------------------------------------------ GPU environment

def _cu_mask_reference(partition_mask: int, xcds: list[int], cus_per_xcd: int) -> list[int]:
    """Walk every CU bit of the logical device and keep those on an allowed XCD (bit i runs on the
    partition's XCD number i mod X)."""
    part = [b for b in range(32) if partition_mask >> b & 1]
    return [i for i in range(len(part) * cus_per_xcd) if part[i % len(part)] in xcds]


@pytest.mark.parametrize("partition_mask,xcds", [
    (0xFF, [0, 1]), (0xFF, [3]), (0xFF, [2, 3, 4, 5, 6, 7]), (0xF0, [4, 7]), (0x0C, [3]), (0x3F, [0, 5]),
])
def test_cu_mask_bits_interleave_across_the_partition_xcds(partition_mask, xcds):
    bits = cu_mask_bits(partition_mask, xcds, 38)
    assert bits == _cu_mask_reference(partition_mask, xcds, 38)
    assert len(bits) == 38 * len(xcds)


def test_ranges():
    assert _ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert _ranges([4]) == "4"
    assert _ranges([]) == ""


def _cluster(*nodes):
    return cluster_from_nodes(list(nodes))


def test_device_env_xcd_pod_on_spx():
    c = _cluster(node("a"))
    devices = [{"gpu": 3, "partition": 0, "xcds": [0, 1], "fraction": 0.25, "memoryMiB": 49152}]
    env = device_env(c, 0, KIND_XCD, devices)
    assert env["ROCR_VISIBLE_DEVICES"] == "3" and env["HIP_VISIBLE_DEVICES"] == "0"
    gpu, cus = env["HSA_CU_MASK"].split(":")
    assert gpu == "0"
    expanded = []
    for part in cus.split(","):
        lo, _, hi = part.partition("-")
        expanded += list(range(int(lo), int(hi or lo) + 1))
    assert expanded == _cu_mask_reference(0xFF, [0, 1], 38)
    assert env["HIP_DEVICE_MEMORY_LIMIT_0"] == "49152m"
    assert json.loads(env["KAIWO_GPU_ASSIGNMENT"]) == devices


def test_device_env_indices_on_cpx_and_dpx():
    c = _cluster(node("a", partition="cpx_nps4"), node("b", partition="dpx_nps1"))
    # CPX: GPU 2 partition 5 is the node's logical GPU 2*8+5; one XCD per partition, so an XCD pod
    # holds the whole partition and needs no CU mask.
    env = device_env(c, 0, KIND_XCD, [{"gpu": 2, "partition": 5, "xcds": [5], "fraction": 1.0, "memoryMiB": 24576}])
    assert env["ROCR_VISIBLE_DEVICES"] == "21" and "HSA_CU_MASK" not in env
    # DPX partition 1 owns XCDs 4-7; a pod on XCD 6 is local XCD 2 of 4: bits 2, 6, 10, ...
    env = device_env(c, 1, KIND_XCD, [{"gpu": 1, "partition": 1, "xcds": [6], "fraction": 0.25, "memoryMiB": 1000},
                                      {"gpu": 0, "partition": 0, "xcds": [0, 1, 2, 3], "fraction": 1.0,
                                       "memoryMiB": 0}])
    assert env["ROCR_VISIBLE_DEVICES"] == "3,0" and env["HIP_VISIBLE_DEVICES"] == "0,1"
    assert env["HSA_CU_MASK"].startswith("0:2,6,10,") and ";" not in env["HSA_CU_MASK"]
    assert "HIP_DEVICE_MEMORY_LIMIT_1" not in env


def test_device_env_only_for_shared_and_isolated_pods():
    c = _cluster(node("a"))
    whole = [{"gpu": 0, "partition": 0, "xcds": list(range(8)), "fraction": 1.0, "memoryMiB": 196608}]
    assert device_env(c, 0, KIND_WHOLE, whole) is None
    shared = [{"gpu": 1, "partition": 0, "xcds": list(range(8)), "fraction": 0.5, "memoryMiB": 98304}]
    env = device_env(c, 0, KIND_SHARED, shared)
    assert "HSA_CU_MASK" not in env  # every XCD free: no confinement needed
    with pytest.raises(ValueError, match="does not have"):
        device_env(c, 0, KIND_SHARED, [{"gpu": 9, "partition": 0, "xcds": [], "fraction": 0.5, "memoryMiB": 1}])


def test_config_map_names_fit_and_stay_distinct():
    assert config_map_name("train-0") == "kaiwo-gpu-train-0"
    a, b = config_map_name("x" * 250 + "a"), config_map_name("x" * 250 + "b")
    assert len(a) <= 253 and len(b) <= 253 and a != b


# ---------------------------------------------------------------------------- charge book

def _running_pod(name: str, node_name: str, req_kind: str, devices: list[dict]) -> dict:
    kw = {"gpus": 1} if req_kind == "whole" else {"fraction": str(devices[0]["fraction"])}
    if req_kind == "xcd":
        kw["isolation"] = "xcd"
    return pod(name, node_name=node_name, annotations={"kaiwo.ai/gpu-assignment": json.dumps(devices)}, **kw)


def _random_running(rng: random.Random, nodes: list[str], count: int) -> list[dict]:
    """Running pods that fit together: whole GPUs, and GPUs shared by XCD-isolated pods (disjoint
    XCD pairs) next to time-sliced pods (on the XCDs the isolated ones leave)."""
    out = []
    slots = [(n, g) for n in nodes for g in range(8)]
    rng.shuffle(slots)
    for n, g in slots:
        if len(out) >= count:
            break
        if rng.random() < 0.3:
            devices = [{"gpu": g, "partition": 0, "xcds": list(range(8)), "fraction": 1.0, "memoryMiB": 196608}]
            out.append(_running_pod(f"r{len(out)}", n, "whole", devices))
            continue
        isolated = rng.randint(0, 2)
        for j in range(isolated):
            devices = [{"gpu": g, "partition": 0, "xcds": [2 * j, 2 * j + 1], "fraction": 0.25, "memoryMiB": 24576}]
            out.append(_running_pod(f"r{len(out)}", n, "xcd", devices))
        free = list(range(2 * isolated, 8))
        for _ in range(rng.randint(0, 3)):
            devices = [{"gpu": g, "partition": 0, "xcds": free, "fraction": 0.125, "memoryMiB": 12288}]
            out.append(_running_pod(f"r{len(out)}", n, "shared", devices))
    return out


def _state_tuple(state, held):
    return tuple(np.asarray(getattr(state, k)).tolist() for k in
                 ("node_cpu_free", "node_mem_free", "node_pods_free", "dev_milli_free", "dev_mem_free",
                  "dev_xcd_free", "dev_state")) + (np.asarray(held).tolist(),)


@pytest.mark.parametrize("seed", range(6))
def test_charge_book_incremental_equals_rebuild(seed):
    """Random arrivals and departures of running pods: the incrementally kept state always equals
    the one ``Snapshot.from_objects`` computes from scratch."""
    rng = random.Random(seed)
    nodes = [node(f"n{i}") for i in range(3)]
    cluster = cluster_from_nodes(nodes)
    pool = _random_running(rng, [n["metadata"]["name"] for n in nodes], 40)
    book = ChargeBook(cluster)
    present: dict[str, dict] = {}
    for _ in range(40):
        for p in rng.sample(pool, rng.randint(0, 6)):
            present[p["metadata"]["name"]] = p
        for k in rng.sample(sorted(present), min(len(present), rng.randint(0, 3))):
            del present[k]
        running = {}
        for k, p in present.items():
            req = pod_request(p)
            running[k] = ((req.node, p["metadata"]["annotations"]["kaiwo.ai/gpu-assignment"]), req)
        book.sync(running)
        reference = Snapshot.from_objects(nodes + list(present.values()))
        assert _state_tuple(book.state, book.held) == _state_tuple(reference.state, reference.dev_xcd_held)
    assert book.rebuilds == 0  # consistent input: never needed a rebuild


def test_charge_book_rebuilds_after_inexact_input():
    nodes = [node("n0")]
    cluster = cluster_from_nodes(nodes)
    dev = [{"gpu": 0, "partition": 0, "xcds": list(range(8)), "fraction": 1.0, "memoryMiB": 196608}]
    a, b = _running_pod("a", "n0", "whole", dev), _running_pod("b", "n0", "whole", dev)  # same GPU twice
    book = ChargeBook(cluster)
    reqs = {p["metadata"]["name"]: ((p["metadata"]["name"],), pod_request(p)) for p in (a, b)}
    book.sync(reqs)
    assert not book.exact and book.warnings
    del reqs["b"]
    book.sync(reqs)
    assert book.rebuilds == 1
    ref = Snapshot.from_objects(nodes + [a])
    assert _state_tuple(book.state, book.held) == _state_tuple(ref.state, ref.dev_xcd_held)


# ---------------------------------------------------------------------------------- cache

class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _objects():
    nodes = [node("n0"), node("n1", partition="cpx_nps4")]
    running = _running_pod("busy", "n0", "whole",
                           [{"gpu": 0, "partition": 0, "xcds": list(range(8)), "fraction": 1.0, "memoryMiB": 196608}])
    pending = [pod(f"p{i}", gpus=1 + i % 2, priority=i) for i in range(6)]
    pending += [pod("frac", fraction="0.3"), pod("iso", fraction="0.5", isolation="xcd"),
                pod("bad", annotations={"kaiwo.ai/gpu-memory": "lots"}), pod("other", gpus=1, scheduler="default-scheduler")]
    for i, p in enumerate([running, *pending]):
        p["metadata"]["uid"] = f"uid-{i}"
        p["metadata"]["resourceVersion"] = str(i + 1)
        p["metadata"]["creationTimestamp"] = f"2026-01-01T00:00:{i:02d}Z"
    return nodes, [running, *pending]


def _cache_with(nodes, pods, clock=None) -> ClusterCache:
    cache = ClusterCache(assume_ttl=5.0, clock=clock or FakeClock())
    cache.replace("Node", nodes)
    cache.replace("Pod", pods)
    for kind in ("PriorityClass", "KaiwoQueue", "KaiwoJob", "KaiwoReservation"):
        cache.replace(kind, [])
    return cache


def test_cache_snapshot_decides_like_from_objects():
    nodes, pods = _objects()
    cs = _cache_with(nodes, pods).snapshot()
    now = 1.8e9
    got = schedule(cs.snapshot, now=now).to_dict()
    want = schedule(Snapshot.from_objects(nodes + pods), now=now).to_dict()
    for key in ("bindings", "pending", "rejected", "queues", "invalidNodes"):
        assert sorted(map(json.dumps, got[key])) == sorted(map(json.dumps, want[key])), key


def test_assumed_binding_holds_capacity_until_confirmed_or_expired():
    nodes = [node("n0", gpus=1)]
    a, b = pod("a", gpus=1), pod("b", gpus=1)
    for i, p in enumerate((a, b)):
        p["metadata"].update(uid=f"u{i}", resourceVersion=str(i + 1))
    clock = FakeClock()
    cache = _cache_with(nodes, [a, b], clock)
    d = schedule(cache.snapshot().snapshot).to_dict()
    (first,) = d["bindings"]
    cache.assume(first["pod"], "u0", first["node"], first["devices"])
    # While assumed (binding in flight), the only GPU is taken: the other pod must wait.
    assert schedule(cache.snapshot().snapshot).to_dict()["bindings"] == []
    cache.binding_done(first["pod"], ok=True)
    clock.t += 4.0
    assert cache.expired_assumptions() == []
    clock.t += 2.0
    assert cache.expired_assumptions() == [first["pod"]]
    # The API says the pod is not bound (the binding never took effect): capacity returns.
    unbound = a if first["pod"] == "default/a" else b
    assert cache.resolve_assumption(first["pod"], unbound) is True
    assert len(schedule(cache.snapshot().snapshot).to_dict()["bindings"]) == 1


def test_expired_assumption_of_a_bound_pod_is_kept_as_running():
    nodes = [node("n0", gpus=1)]
    a = pod("a", gpus=1)
    a["metadata"].update(uid="u0", resourceVersion="1")
    clock = FakeClock()
    cache = _cache_with(nodes, [a], clock)
    devices = [{"gpu": 0, "partition": 0, "xcds": list(range(8)), "fraction": 1.0, "memoryMiB": 196608}]
    cache.assume("default/a", "u0", "n0", devices)
    cache.binding_done("default/a", ok=True)
    clock.t += 10
    bound = json.loads(json.dumps(a))
    bound["spec"]["nodeName"] = "n0"
    bound["metadata"]["annotations"]["kaiwo.ai/gpu-assignment"] = json.dumps(devices)
    bound["metadata"]["resourceVersion"] = "2"
    assert cache.resolve_assumption("default/a", bound) is False
    snap = cache.snapshot().snapshot
    assert [r.name for r in snap.running] == ["default/a"] and not snap.pending
    # A lagging watch then replays an older, unbound version (a status update before binding):
    # the pod stays charged until the watch shows it bound.
    stale = json.loads(json.dumps(a))
    stale["status"] = {"phase": "Pending"}
    cache.upsert("Pod", stale)
    other = pod("b", gpus=1)
    other["metadata"].update(uid="u1", resourceVersion="3")
    cache.upsert("Pod", other)
    snap = cache.snapshot().snapshot
    assert [r.name for r in snap.running] == ["default/a"]
    assert schedule(snap).to_dict()["bindings"] == []
    watched = json.loads(json.dumps(bound))
    watched["metadata"]["resourceVersion"] = "4"
    cache.upsert("Pod", watched)
    assert [r.name for r in cache.snapshot().snapshot.running] == ["default/a"]
    # Versions that cannot be compared (not integers): an unbound one is still never taken over
    # the bound pod of the same uid (nodeName is never unset).
    opaque = json.loads(json.dumps(a))
    opaque["metadata"]["resourceVersion"] = "zz"
    cache.upsert("Pod", opaque)
    assert [r.name for r in cache.snapshot().snapshot.running] == ["default/a"]


def test_failed_binding_returns_capacity_at_once():
    nodes = [node("n0", gpus=1)]
    a = pod("a", gpus=1)
    a["metadata"].update(uid="u0", resourceVersion="1")
    cache = _cache_with(nodes, [a])
    cache.assume("default/a", "u0", "n0", [{"gpu": 0, "partition": 0, "xcds": [], "fraction": 1.0, "memoryMiB": 0}])
    assert not cache.snapshot().snapshot.pending
    cache.changed.clear()
    cache.binding_done("default/a", ok=False)
    assert cache.changed.is_set()
    assert [r.name for r in cache.snapshot().snapshot.pending] == ["default/a"]


def test_node_heartbeats_do_not_rebuild_the_cluster():
    nodes, pods = _objects()
    cache = _cache_with(nodes, pods)
    first = cache.snapshot().snapshot.cluster
    beat = json.loads(json.dumps(nodes[0]))
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T00:10:00Z"
    beat["metadata"]["resourceVersion"] = "99"
    cache.changed.clear()
    cache.upsert("Node", beat)
    assert not cache.changed.is_set()
    assert cache.snapshot().snapshot.cluster is first
    relabel = json.loads(json.dumps(beat))
    relabel["metadata"]["labels"]["team"] = "a"
    relabel["metadata"]["resourceVersion"] = "100"
    cache.upsert("Node", relabel)
    assert cache.changed.is_set() and cache.snapshot().snapshot.cluster is not first


def test_relist_deletes_what_is_gone_and_keeps_other_namespaces():
    nodes, pods = _objects()
    extra = pod("elsewhere", namespace="team-b", gpus=1)
    extra["metadata"]["resourceVersion"] = "50"
    cache = _cache_with(nodes, pods + [extra])
    cache.replace("Pod", pods[:3], namespace="default")
    names = {r.name for r in cache.snapshot().snapshot.pending + cache.snapshot().snapshot.running}
    assert "team-b/elsewhere" in names and "default/p5" not in names


def test_kaiwo_job_pods_to_create_are_reported_once():
    nodes = [node("n0")]
    job = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoJob",
           "metadata": {"name": "sweep", "namespace": "research", "uid": "j1", "resourceVersion": "1"},
           "spec": {"replicas": 3, "minMembers": 2, "gpusPerReplica": 1,
                    "template": {"spec": {"containers": [{"name": "t", "image": "x"}]}}}}
    cache = _cache_with(nodes, [])
    cache.replace("KaiwoJob", [job])
    missing = cache.snapshot().missing_job_pods
    assert sorted(p["metadata"]["name"] for p in missing) == ["sweep-0", "sweep-1", "sweep-2"]
    assert all(p["metadata"]["annotations"]["kaiwo.ai/gang-min-members"] == "2" for p in missing)
    for p in missing:
        cache.expect_created(f"research/{p['metadata']['name']}")
    assert cache.snapshot().missing_job_pods == []
