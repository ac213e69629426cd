"""Unit tests of the controller's safety rules: bound pods always hold capacity, bindings whose
outcome is unknown keep their devices, failed and gated pods are not re-bound in a loop, writes
stop with the leadership, and status patches remove what no longer applies."""
from __future__ import annotations

import json
import threading

from kubernetes.client.exceptions import ApiException

from kaiwo.controller.binder import Binder, BindTask
from kaiwo.controller.cache import ClusterCache
from kaiwo.controller.errors import RetryPolicy
from kaiwo.controller.events import EventRecorder
from kaiwo_core import Snapshot, schedule
from tests.controller.kube import node, pod

WHOLE = {"partition": 0, "xcds": list(range(8)), "fraction": 1.0, "memoryMiB": 196608}


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _versioned(objs, start=1):
    for i, p in enumerate(objs):
        p["metadata"].setdefault("uid", f"uid-{p['metadata']['name']}")
        p["metadata"]["resourceVersion"] = str(start + i)
    return objs


def _cache(nodes, pods, clock=None, **kw) -> ClusterCache:
    cache = ClusterCache(assume_ttl=5.0, clock=clock or FakeClock(), **kw)
    cache.replace("Node", nodes)
    cache.replace("Pod", pods)
    for kind in ("PriorityClass", "KaiwoQueue", "KaiwoJob", "KaiwoReservation"):
        cache.replace(kind, [])
    return cache


def _running(name, gpu, **spec):
    p = pod(name, gpus=1, node_name="n1", scheduler="default-scheduler",
            annotations={"kaiwo.ai/gpu-assignment": json.dumps([{"gpu": gpu, **WHOLE}])})
    p["spec"].update(spec)
    p["status"] = {"phase": "Running"}
    return p


# ------------------------------------------------------------ bound pods that fail to decode

def test_running_pods_that_fail_to_decode_still_hold_their_gpus():
    running = [_running(f"run{i}", i, priorityClassName="deleted-class") for i in range(6)]
    bad = _running("badjson", 6)
    bad["metadata"]["annotations"]["kaiwo.ai/gpu-assignment"] = "[{not json"
    frac = _running("badfrac", 7)
    frac["metadata"]["annotations"]["kaiwo.ai/gpu-fraction"] = "lots"
    new = pod("new", gpus=1)
    objs = _versioned(running + [bad, frac, new])
    for snap in (_cache([node("n1", gpus=8)], objs).snapshot().snapshot,
                 Snapshot.from_objects([node("n1", gpus=8)] + objs)):
        assert not snap.rejected
        assert len(snap.running) == 8
        # Every GPU is in use (the bad assignment's devices are picked as for an unannotated pod).
        assert schedule(snap).to_dict()["bindings"] == []
        text = "\n".join(snap.warnings)
        assert "default/run0: spec.priorityClassName = 'deleted-class'" in text
        assert "default/badjson: metadata.annotations.kaiwo.ai/gpu-assignment = '[{not json'" in text
        assert "default/badfrac: metadata.annotations.kaiwo.ai/gpu-fraction = 'lots'" in text
        # Their priority is unknown: never preempted on a guess.
        assert [r.preemptible for r in snap.running if r.name.startswith("default/run")] == [False] * 6


def test_unbound_and_finished_pods_are_still_rejected():
    p = pod("pending", gpus=1, priority=None)
    p["spec"]["priorityClassName"] = "nope"
    done = _running("done", 0, priorityClassName="nope")
    done["status"]["phase"] = "Succeeded"
    snap = _cache([node("n1")], _versioned([p, done])).snapshot().snapshot
    assert sorted(e.name for e in snap.rejected) == ["default/done", "default/pending"]


# --------------------------------------------------------------------- unknown bind outcomes

class FakeApi:
    def __init__(self, bind_error=None):
        self.bind_error = bind_error
        self.binds = 0
        self.events = []

    def bind(self, ns, name, uid, node, annotations):
        self.binds += 1
        if callable(self.bind_error):
            return self.bind_error()
        if self.bind_error is not None:
            raise self.bind_error
        return 201

    def create_event(self, ns, body):
        self.events.append(body)

    def get_pod(self, ns, name):
        raise ApiException(status=503)


def _binder(api, cache, is_leader=lambda: True, **policy):
    base = dict(attempts=3, initial=0.001, maximum=0.002, deadline=5.0, seed=0)
    base.update(policy)
    return Binder(api, cache, EventRecorder(api), RetryPolicy(**base), concurrency=1, is_leader=is_leader)


def _one_gpu_cache(clock):
    a, b = _versioned([pod("a", gpus=1), pod("b", gpus=1)])
    cache = _cache([node("n0", gpus=1)], [a, b], clock)
    devices = [{"gpu": 0, **WHOLE}]
    cache.assume("default/a", "uid-a", "n0", devices)
    return cache, BindTask("default", "a", "uid-a", "n0", devices)


def test_binding_with_unknown_outcome_keeps_its_devices_until_checked():
    clock = FakeClock()
    cache, task = _one_gpu_cache(clock)
    binder = _binder(FakeApi(ApiException(status=504)), cache)
    out = binder.submit([task])[0].result()
    assert out.result == "failed"
    # The API may have bound it: the GPU is not given to b before the expiry check.
    assert cache.assumed_count == 1
    assert schedule(cache.snapshot().snapshot).to_dict()["bindings"] == []
    clock.t += 6
    assert cache.expired_assumptions() == ["default/a"]
    binder.shutdown()


def test_definite_failure_frees_the_devices_and_backs_the_pod_off():
    clock = FakeClock()
    cache, task = _one_gpu_cache(clock)
    api = FakeApi(ApiException(status=422, reason="Unprocessable"))
    binder = _binder(api, cache)
    assert binder.submit([task])[0].result().result == "failed"
    assert cache.assumed_count == 0
    d = schedule(cache.snapshot().snapshot).to_dict()
    assert [x["pod"] for x in d["bindings"]] == ["default/b"]
    reasons = {p["pod"]: p["reason"] for p in d["pending"]}
    assert "binding failed 1 time" in reasons["default/a"] and "422" in reasons["default/a"]
    clock.t += 1.1  # first backoff: 1 s
    assert "default/a" in {r.name for r in cache.snapshot().snapshot.pending}
    # A second failure doubles it.
    cache.assume("default/a", "uid-a", "n0", task.devices)
    binder.submit([task])[0].result()
    clock.t += 1.1
    assert "default/a" not in {r.name for r in cache.snapshot().snapshot.pending}
    clock.t += 1.0
    assert "default/a" in {r.name for r in cache.snapshot().snapshot.pending}
    binder.shutdown()


def test_lost_leadership_ends_the_retry_loop_at_once():
    cache, task = _one_gpu_cache(FakeClock())
    leader = [True]

    def timeout_then_depose():
        leader[0] = False
        raise ApiException(status=503)
    api = FakeApi(timeout_then_depose)
    binder = _binder(api, cache, is_leader=lambda: leader[0], attempts=50)
    out = binder.submit([task])[0].result()
    assert out.result == "not-leader" and api.binds == 1
    binder.shutdown()


# ------------------------------------------------------------------ scheduling gates, gangs

def _gang(name, members, gated=()):
    out = []
    for i in range(members):
        p = pod(f"{name}-{i}", gpus=1, annotations={"kaiwo.ai/gang": name})
        if i in gated:
            p["spec"]["schedulingGates"] = [{"name": "example.com/quota"}]
        out.append(p)
    return out


def test_gated_pods_wait_and_so_does_their_gang():
    objs = _versioned([*_gang("g", 3, gated=(1,)), pod("solo", gpus=1)])
    solo_gated = pod("solo-gated", gpus=1)
    solo_gated["spec"]["schedulingGates"] = [{"name": "x"}]
    objs += _versioned([solo_gated], start=10)
    for snap in (_cache([node("n0")], objs).snapshot().snapshot, Snapshot.from_objects([node("n0")] + objs)):
        d = schedule(snap).to_dict()
        assert [b["pod"] for b in d["bindings"]] == ["default/solo"]
        reasons = {p["pod"]: p["reason"] for p in d["pending"]}
        assert reasons["default/solo-gated"].startswith("SchedulingGated")
        assert reasons["default/g-1"].startswith("SchedulingGated")
        assert reasons["default/g-0"].startswith("gang default/g waits for its member default/g-1")


# ------------------------------------------------------------------------------- namespaces

def test_namespace_scope_limits_what_is_placed_not_what_is_charged():
    other = _running("elsewhere", 0)
    other["metadata"]["namespace"] = "team-b"
    theirs = pod("theirs", namespace="team-b", gpus=1)
    mine = pod("mine", namespace="team-a", gpus=1)
    cache = _cache([node("n1", gpus=1)], _versioned([other, theirs, mine]), namespaces=("team-a",))
    snap = cache.snapshot().snapshot
    assert [r.name for r in snap.running] == ["team-b/elsewhere"]
    assert [r.name for r in snap.pending] == ["team-a/mine"]
    assert "not among the namespaces" in dict(snap.ignored)["team-b/theirs"]
    assert not snap.running[0].preemptible  # charged, but not this controller's to evict
    assert schedule(snap).to_dict()["bindings"] == []  # the only GPU is used by team-b's pod


# --------------------------------------------------------------------------- scheduler name

def test_kaiwo_job_pods_get_the_controllers_scheduler_name():
    def job(name, template_scheduler=None):
        spec = {"containers": [{"name": "t", "image": "x"}]}
        if template_scheduler:
            spec["schedulerName"] = template_scheduler
        return {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoJob",
                "metadata": {"name": name, "namespace": "ns", "uid": name, "resourceVersion": "1"},
                "spec": {"replicas": 1, "template": {"spec": spec}}}
    cache = ClusterCache(scheduler_name="gpu-sched", clock=FakeClock())
    for kind in ("Node", "Pod", "PriorityClass", "KaiwoQueue", "KaiwoReservation"):
        cache.replace(kind, [])
    cache.replace("KaiwoJob", [job("plain"), job("own", "custom")])
    got = {p["metadata"]["name"]: p["spec"]["schedulerName"] for p in cache.snapshot().missing_job_pods}
    assert got == {"plain-0": "gpu-sched", "own-0": "custom"}
    snap = Snapshot.from_objects([node("n0"), job("plain")], scheduler_name="gpu-sched")
    assert [r.name for r in snap.pending] == ["ns/plain-0"]


# ----------------------------------------------------------------------------------- status

def test_status_patches_delete_keys_that_no_longer_apply():
    from kaiwo.controller.status import StatusWriter, queue_status

    class Api:
        """Applies merge patches to the object, as kube-apiserver and the watch would."""

        def __init__(self, obj):
            self.obj, self.writes = obj, []

        def patch_queue_status(self, name, patch):
            self.writes.append(patch)
            status = dict(self.obj.get("status") or {})
            for k, v in patch.items():
                if v is None:
                    status.pop(k, None)
                else:
                    status[k] = v
            self.obj["status"] = status

        def create_event(self, ns, body):
            pass

    clock = FakeClock()
    valid = {"deserved": {"gpu": 4}, "fairShare": {"gpu": 4}, "allocated": {"gpu": 4}, "pendingPods": 0}
    obj = {"metadata": {"name": "q"}, "status": {**valid, **queue_status(None, "unknown parent", None)}}
    api = Api(obj)
    writer = StatusWriter(api, EventRecorder(api), clock=clock)
    doc = {"queues": [], "invalidQueues": [{"kaiwoqueue": "q", "error": "unknown parent"}]}
    for _ in range(4):
        writer.queues({"q": obj}, doc)
        writer.flush(5)
        clock.t += 11  # past the resync interval each time
    assert len(api.writes) == 1
    assert api.writes[0]["deserved"] is None and api.writes[0]["pendingPods"] is None
    assert set(obj["status"]) == {"conditions"}
    writer.shutdown()


def test_resource_versions_compare_numerically_only_when_both_are_integers():
    from kaiwo.controller.cache import _older

    assert _older("9", "10") and not _older("10", "10") and _older("10", "10", or_equal=True)
    assert not _older("11", "10")
    assert not _older("abc", "10") and not _older("", "10") and not _older("10", "")  # unknown order


# ------------------------------------------------------------------------ 409: already bound

def test_a_409_teaches_the_cache_where_the_pod_really_is():
    """Our binding of ``a`` (gpu 1) gets 409: someone bound it to gpu 0 while our watch was
    behind. The pod as read goes into the cache -- gpu 0 stays charged -- instead of ``a``
    looking pending again with gpu 0 free for the next pod."""
    a, b = _versioned([pod("a", gpus=1), pod("b", gpus=1)])
    cache = _cache([node("n0", gpus=2)], [a, b], FakeClock())
    ours = [{"gpu": 1, **WHOLE}]
    cache.assume("default/a", "uid-a", "n0", ours)
    theirs = json.loads(json.dumps(a))
    theirs["spec"]["nodeName"] = "n0"
    theirs["metadata"]["annotations"]["kaiwo.ai/gpu-assignment"] = json.dumps([{"gpu": 0, **WHOLE}])
    theirs["metadata"]["resourceVersion"] = "10"
    api = FakeApi(ApiException(status=409, reason="Conflict"))
    api.get_pod = lambda ns, name: theirs
    binder = _binder(api, cache)
    assert binder.submit([BindTask("default", "a", "uid-a", "n0", ours)])[0].result().result == "conflict"
    snap = cache.snapshot().snapshot
    assert [r.name for r in snap.running] == ["default/a"]
    d = schedule(snap).to_dict()
    assert [(x["pod"], x["devices"][0]["gpu"]) for x in d["bindings"]] == [("default/b", 1)]
    # The watch, still behind, then replays the unbound version: it changes nothing.
    cache.apply_event("Pod", None, {"type": "MODIFIED", "object": a})
    assert [r.name for r in cache.snapshot().snapshot.running] == ["default/a"]
    binder.shutdown()


# ---------------------------------------------------------------- versions, scopes, currency

def test_a_stale_watch_never_takes_the_cache_back_past_a_relist():
    """A relist at version 20 (the takeover check's) and a watch still delivering version 5..12
    events: none of them undoes what the list showed, deletions included."""
    p1, p2 = _versioned([pod("p1", gpus=1), pod("p2", gpus=1)], start=3)   # versions 3, 4
    cache = ClusterCache(clock=FakeClock())
    cache.track("Pod")
    cache.replace("Pod", [p1, p2], version="4", started=0.0)
    bound = json.loads(json.dumps(p1))
    bound["spec"]["nodeName"] = "n0"
    bound["metadata"]["resourceVersion"] = "15"
    assert cache.replace("Pod", [bound], version="20", started=1.0) == 2   # p1 changed, p2 deleted
    stale_p2 = json.loads(json.dumps(p2))
    stale_p2["metadata"]["resourceVersion"] = "9"
    for typ, obj in (("MODIFIED", p1), ("MODIFIED", stale_p2), ("ADDED", stale_p2)):
        cache.apply_event("Pod", None, {"type": typ, "object": obj})
    assert cache.get("Pod", "default/p1")["spec"]["nodeName"] == "n0"
    assert cache.get("Pod", "default/p2") is None
    assert cache.replace("Pod", [p1, p2], version="12", started=0.5) == 0  # an older list: ignored
    assert cache.get("Pod", "default/p2") is None
    # Newer events apply as usual.
    later = json.loads(json.dumps(bound))
    later["metadata"]["resourceVersion"] = "21"
    later["status"] = {"phase": "Running"}
    cache.apply_event("Pod", None, {"type": "MODIFIED", "object": later})
    assert cache.get("Pod", "default/p1")["status"]["phase"] == "Running"


def test_the_cache_is_current_after_a_list_or_a_bookmark_past_the_takeover():
    cache = ClusterCache(clock=FakeClock())
    cache.track("Pod")
    cache.track("KaiwoJob", "team-a")
    cache.replace("Pod", [], version="5", started=1.0)
    cache.replace("KaiwoJob", [], "team-a", version="6", started=1.0)
    # Leadership taken with a Lease write at version 10, at clock 2.0: nothing is current yet.
    assert cache.stale_scopes("10", 2.0) == ["Pod", "KaiwoJob/team-a"]
    cache.apply_event("Pod", None, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "11"}}})
    assert cache.stale_scopes("10", 2.0) == ["KaiwoJob/team-a"]
    cache.replace("KaiwoJob", [], "team-a", version="9", started=2.5)   # listed after the takeover
    assert cache.stale_scopes("10", 2.0) == []
    # Versions that are not integers: only a list after the takeover counts.
    assert cache.stale_scopes("x", 3.0) == ["Pod", "KaiwoJob/team-a"]
