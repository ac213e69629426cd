"""Consistency of the cache with the API under stalled watches, leader changes and other writers:
a new leader never decides on a cache older than its takeover, a 409 teaches the cache, dead
watches are noticed, a periodic resync repairs drift, and a bound pod's GPU ConfigMap always ends
up matching its ``kaiwo.ai/gpu-assignment``. Every scenario is judged by an independent checker
over the emulator's final objects (:func:`tests.controller.kube.overcommit`)."""
from __future__ import annotations

import json
import threading

from tests.controller.kube import node, overcommit, pod, wait_until


def _key(p: dict) -> str:
    return f"{p['metadata'].get('namespace') or 'default'}/{p['metadata']['name']}"


def _mixed(prefix: str, whole: int, halves: int, xcd: int, priority: int | None = None) -> list[dict]:
    out = [pod(f"{prefix}-w{i}", gpus=1, priority=priority) for i in range(whole)]
    out += [pod(f"{prefix}-h{i}", fraction="0.5", priority=priority) for i in range(halves)]
    out += [pod(f"{prefix}-x{i}", fraction="0.25", isolation="xcd", priority=priority) for i in range(xcd)]
    return out


def test_new_leader_with_a_stalled_pod_watch_never_overcommits(emulator, kube, make_controller):
    """The issue's scenario: the old leader's last bindings land while the standby's pod watch is
    stalled; the old leader dies; the standby takes over blind. It must not re-decide what the old
    leader bound, nor put new pods on the devices those pods hold."""
    nodes = [node("n0", gpus=4), node("n1", gpus=4)]
    kube.create_all(nodes)
    lease = dict(lease_duration=3.0, renew_deadline=2.0, request_timeout=10.0)
    a = make_controller(identity="replica-a", **lease).start_background()
    wait_until(a.is_leader)
    b = make_controller(identity="replica-b", **lease).start_background()
    wait_until(b.synced)
    # A's bindings reach the API late (a slow API server): A is killed with them in flight.
    emulator.inject({"method": "POST", "path": r"/binding$", "agent": "replica-a", "delay": 4.0})
    old = _mixed("old", whole=4, halves=4, xcd=4)            # 7 of the 8 GPUs
    kube.create_all(old)
    wait_until(lambda: emulator.stats()["faults"][0]["seen"] >= len(old)
               and all(b.cache.get("Pod", _key(p)) for p in old))
    crash = threading.Thread(target=a.stop, kwargs={"graceful": False})
    crash.start()
    wait_until(a.stop_event.is_set)
    # Higher-priority pods A never saw: B sees them (and the old ones) pending, then goes blind.
    new = _mixed("new", whole=2, halves=2, xcd=2, priority=1000)
    kube.create_all(new)
    wait_until(lambda: all(b.cache.get("Pod", _key(p)) for p in new))
    emulator.stall("pods", agent="replica-b")
    wait_until(lambda: len(emulator.stats()["binds"]) >= len(old), timeout=30)  # A's bindings land
    crash.join(30)
    wait_until(b.is_leader, timeout=30)
    wait_until(lambda: b.cycles >= 3, timeout=30)
    assert b.binder.drain(30)
    pods = kube.pods()
    problems = overcommit(pods, nodes)
    assert not problems, problems
    assert all(n == 1 for n in emulator.stats()["binds"].values()), emulator.stats()["binds"]


# --------------------------------------------------------------------- GPU ConfigMaps (item 2)

HALF = {"partition": 0, "xcds": list(range(8)), "fraction": 0.5, "memoryMiB": 98304}


def _expected_env(pod_obj: dict, nodes: list[dict]) -> dict:
    """The ConfigMap data a bound shared pod's annotation calls for (what the binder writes)."""
    from kaiwo.controller.binder import device_env
    from kaiwo_core.model.cluster import cluster_from_nodes
    from kaiwo_core.model.requests import KIND_SHARED

    cluster = cluster_from_nodes(nodes)
    devices = json.loads(pod_obj["metadata"]["annotations"]["kaiwo.ai/gpu-assignment"])
    return device_env(cluster, cluster.index(pod_obj["spec"]["nodeName"]), KIND_SHARED, devices)


def _config_map_matches(kube, nodes, name: str) -> bool:
    p = kube.pod("default", name)
    cm = kube.config_maps("default").get(f"kaiwo-gpu-{name}")
    return bool(p["spec"].get("nodeName")) and cm is not None and cm.get("data") == _expected_env(p, nodes)


def test_config_map_of_a_pod_another_writer_bound_is_never_left_ours(emulator, kube, make_controller):
    """Another writer binds a shared pod while our pod watch is stalled and our own ConfigMap
    write (for other devices) is on its way. Whether that writer wrote the ConfigMap first (as an
    earlier Kaiwo leader does) or not, the pod's ConfigMap ends up matching its annotation; the
    writer's own ConfigMap is never overwritten."""
    nodes = [node("n0", gpus=2)]
    kube.create_all(nodes)
    c = make_controller(resync_period=0).start_background()
    wait_until(lambda: c.cycles >= 1)   # past its takeover relist: from here on only the watch informs it
    emulator.inject({"method": "POST", "path": r"/configmaps$", "agent": "kaiwo-test", "delay": 1.5})
    # We would put the first pod on gpu 0, the second next to it (shared GPUs first): the writer
    # picks the other GPU each time.
    for n, (name, gpu, writer_writes_config_map) in enumerate((("kaiwo-like", 1, True), ("plain", 0, False))):
        kube.create(pod(name, fraction="0.5"))
        wait_until(lambda: c.cache.get("Pod", f"default/{name}") is not None)
        emulator.stall("pods", agent="kaiwo-test")
        wait_until(lambda: emulator.stats()["faults"][0]["seen"] >= n + 1)  # our write is under way
        theirs = [{"gpu": gpu, **HALF}]
        annotated = pod(name, fraction="0.5", node_name="n0",
                        annotations={"kaiwo.ai/gpu-assignment": json.dumps(theirs, separators=(",", ":"))})
        written = None
        if writer_writes_config_map:
            written = kube.create_config_map("default", f"kaiwo-gpu-{name}", _expected_env(annotated, nodes))
        kube.bind("default", name, "n0", theirs)
        wait_until(lambda: c.binder.stats.results.get("conflict", 0) >= n + 1,
                   describe=lambda: str(c.binder.stats.results))
        assert c.binder.drain(20)
        emulator.unstall()
        wait_until(lambda: (c.cache.get("Pod", f"default/{name}") or {}).get("spec", {}).get("nodeName"))
        wait_until(lambda: _config_map_matches(kube, nodes, name), timeout=20,
                   describe=lambda: str(kube.config_maps("default").get(f"kaiwo-gpu-{name}", {}).get("data")))
        if written is not None:
            cm = kube.config_maps("default")[f"kaiwo-gpu-{name}"]
            assert cm["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]
    problems = overcommit(kube.pods(), nodes)
    assert not problems, problems


def _bound_elsewhere_with_a_wrong_config_map(kube, nodes, name: str) -> None:
    """Another writer creates ``name`` bound to gpu 1, and its ConfigMap says gpu 0 (another
    decision's, e.g. an earlier leader's that never bound)."""
    theirs = json.dumps([{"gpu": 1, **HALF}], separators=(",", ":"))
    bound = pod(name, fraction="0.5", node_name="n0", annotations={"kaiwo.ai/gpu-assignment": theirs})
    kube.create(bound)
    wrong = dict(bound, metadata=dict(bound["metadata"], annotations={
        "kaiwo.ai/gpu-assignment": json.dumps([{"gpu": 0, **HALF}])}))
    kube.create_config_map("default", f"kaiwo-gpu-{name}", _expected_env(wrong, nodes))


def test_config_map_of_a_pod_seen_bound_late_is_repaired_on_its_watch_event(emulator, kube, make_controller):
    """A pod bound (by someone else) while our watch was stalled, whose ConfigMap holds another
    decision: the watch event that finally shows it bound triggers the repair (no resync here)."""
    nodes = [node("n0", gpus=2)]
    kube.create_all(nodes)
    c = make_controller(resync_period=0).start_background()
    wait_until(lambda: c.cycles >= 1)   # past its takeover relist: from here on only the watch informs it
    emulator.stall("pods", agent="kaiwo-test")
    _bound_elsewhere_with_a_wrong_config_map(kube, nodes, "late")
    assert not _config_map_matches(kube, nodes, "late")
    emulator.unstall()
    wait_until(lambda: _config_map_matches(kube, nodes, "late"), timeout=20)
    assert c.metrics.config_maps.labels(result="replaced")._value.get() >= 1


# ------------------------------------------------------------------ watch liveness, resync

def _restarts(c, kind: str, reason: str) -> float:
    return c.metrics.watch_restarts.labels(resource=kind, reason=reason)._value.get()


def test_a_silent_watch_is_taken_for_dead_and_resumed(emulator, kube, make_controller):
    """A watch that stays open and delivers nothing (not even the end at timeoutSeconds) is given
    up after the read timeout and resumed; what was held back arrives late but arrives."""
    from kaiwo.controller import ControllerConfig
    from kaiwo.controller.cache import ClusterCache, Informer

    # Defaults: a dead watch is noticed within tens of seconds, not minutes.
    default = Informer(None, ClusterCache(), "Pod", None, threading.Event(), ControllerConfig().watch_timeout)
    assert default.read_timeout <= 60
    kube.create_all([node("n0")])
    c = make_controller(watch_timeout=1, watch_read_timeout=2.0, resync_period=0).start_background()
    wait_until(lambda: c.cycles >= 1)   # past its takeover relist: from here on only the watch informs it
    before = emulator.stats().get("watchRequests", {}).get("pods", 0)
    emulator.stall("pods", agent="kaiwo-test")
    kube.create(pod("held", gpus=1))
    wait_until(lambda: _restarts(c, "Pod", "stalled") >= 2, timeout=20)
    assert emulator.stats()["watchRequests"]["pods"] >= before + 2
    assert c.cache.get("Pod", "default/held") is None   # still blind: the new watches stall too
    emulator.unstall()
    wait_until(lambda: "default/held" in kube.bound())
    assert all(inf.relists == 1 for inf in c.informers)   # resumed from its version, never relisted


def test_bookmarks_keep_a_quiet_watch_resumable(emulator, kube, make_controller):
    """Bookmarks move a quiet informer's version forward, so after a compaction and a disconnect
    its watch resumes from the bookmark instead of hitting 410 and relisting."""
    kube.create_all([node("n0")])
    c = make_controller(resync_period=0).start_background()
    wait_until(c.synced)
    emulator.bookmarks(0.2)
    for i in range(3):   # writes of a kind nobody watches move the cluster's version on
        kube.create_config_map("default", f"unrelated-{i}", {"k": "v"})
    emulator.compact()   # history up to now is gone (the Lease renewals keep writing after it)
    horizon = emulator.stats()["rv"]
    wait_until(lambda: all(int(i.resource_version or 0) >= horizon for i in c.informers),
               describe=lambda: str([(i.kind, i.resource_version) for i in c.informers]))
    emulator.disconnect_watches()
    kube.create(pod("after", gpus=1))
    wait_until(lambda: "default/after" in kube.bound())
    assert all(inf.relists == 1 for inf in c.informers), [(i.kind, i.relists) for i in c.informers]


def test_periodic_resync_repairs_what_a_stalled_watch_missed(emulator, kube, make_controller):
    """With the pod watch stalled for good, the periodic resync alone brings the cache in line
    (a pod deleted, a pod bound by another writer), counts the repairs, and fixes the ConfigMap
    of the pod the other writer bound with another decision's ConfigMap."""
    nodes = [node("n0", gpus=2)]
    kube.create_all(nodes + [pod("gone", scheduler="other")])
    c = make_controller(resync_period=1.0).start_background()
    wait_until(lambda: c.cycles >= 1 and c.cache.get("Pod", "default/gone") is not None)
    emulator.stall("pods", agent="kaiwo-test")
    kube.delete_pod("default", "gone")
    _bound_elsewhere_with_a_wrong_config_map(kube, nodes, "theirs")
    wait_until(lambda: c.cache.get("Pod", "default/gone") is None
               and c.cache.get("Pod", "default/theirs") is not None, timeout=20)
    assert c.metrics.cache_repairs.labels(resource="Pod")._value.get() >= 2
    wait_until(lambda: _config_map_matches(kube, nodes, "theirs"), timeout=20)
    # A new pod is placed beside it, not on its devices, though the watch never told us.
    kube.create(pod("mine", fraction="0.5"))
    wait_until(lambda: "default/mine" in kube.bound(), timeout=20)
    problems = overcommit(kube.pods(), nodes)
    assert not problems, problems


# ------------------------------------------------------------------- invalid nodes, standby

def test_an_invalid_node_is_told_once_in_an_event_a_log_line_and_a_metric(emulator, kube, make_controller, caplog):
    import logging

    field = "amd.com/gpu.compute-memory-partition"
    bad = node("bad", partition="spx_nps4")   # SPX+NPS4: not a valid MI300X mode
    kube.create_all([node("good"), bad])
    with caplog.at_level(logging.WARNING, logger="kaiwo.controller"):
        c = make_controller().start_background()
        wait_until(lambda: kube.events_for("bad", "InvalidNode"))
        turns = c.iterations
        wait_until(lambda: c.iterations >= turns + 10 and c.cycles >= 3)
        c.events.flush(5)
    events = kube.events_for("bad", "InvalidNode")
    assert len(events) == 1, events
    assert events[0]["involvedObject"]["kind"] == "Node" and events[0]["type"] == "Warning"
    assert field in events[0]["message"] and "spx_nps4" in events[0]["message"]
    lines = [r.getMessage() for r in caplog.records if "bad" in r.getMessage() and field in r.getMessage()]
    assert len(lines) == 1, lines
    assert c.metrics.invalid.labels(kind="Node")._value.get() == 1
    kube.patch("Node", "bad", {"metadata": {"labels": {field: "cpx_nps4"}}})
    wait_until(lambda: c.metrics.invalid.labels(kind="Node")._value.get() == 0)


def test_the_standby_reports_its_warm_cache(emulator, kube, make_controller):
    kube.create_all([node("n0"), node("n1"), pod("p", gpus=1)])
    a = make_controller(identity="replica-a").start_background()
    wait_until(a.is_leader)
    b = make_controller(identity="replica-b").start_background()
    wait_until(lambda: b.synced() and b.iterations > 2)
    assert not b.is_leader() and b.cycles == 0
    assert b.metrics.cache_objects.labels(resource="Node")._value.get() == 2
    assert b.metrics.cache_objects.labels(resource="Pod")._value.get() == 1
