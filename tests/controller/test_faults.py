"""The controller under faults: watch disconnects, 410 Gone, 409 and 5xx answers, API timeouts and
a controller restart half-way. In every case: no pod lost, none bound twice, no GPU booked twice."""
from __future__ import annotations

from tests.controller.kube import assignment, device_usage, node, pod, wait_until


def _nodes(n: int, gpus: int = 8) -> dict[str, dict]:
    return {f"n{i}": node(f"n{i}", gpus=gpus) for i in range(n)}


def _mixed_pods(count: int, prefix: str = "p") -> list[dict]:
    """Whole GPUs, time-sliced fractions and XCD-isolated fractions, in turn."""
    out = []
    for i in range(count):
        if i % 3 == 0:
            out.append(pod(f"{prefix}{i}", gpus=1))
        elif i % 3 == 1:
            out.append(pod(f"{prefix}{i}", fraction="0.5"))
        else:
            out.append(pod(f"{prefix}{i}", fraction="0.25", isolation="xcd"))
    return out


def _check_consistent(emulator, kube, nodes: dict, expect_bound: set[str]) -> None:
    bound = kube.bound()
    assert set(bound) >= expect_bound, sorted(expect_bound - set(bound))[:10]
    binds = emulator.stats()["binds"]
    twice = {k: n for k, n in binds.items() if n != 1}
    assert not twice, f"bound more than once: {twice}"
    problems = device_usage(bound, nodes)
    assert not problems, problems[:10]
    for key, p in bound.items():
        assert assignment(p) is not None, f"{key} bound without its device assignment"


def test_watch_disconnects_resume_from_the_last_version(emulator, kube, make_controller):
    nodes = _nodes(4)
    kube.create_all(nodes.values())
    controller = make_controller().start_background()
    wait_until(controller.synced)
    names = set()
    watched = len(controller.informers)
    for round_ in range(5):
        # Every informer is watching again before the next cut, so each cut ends a live stream.
        wait_until(lambda: sum(emulator.stats()["openWatches"].values()) == watched)
        batch = _mixed_pods(8, prefix=f"r{round_}-")
        kube.create_all(batch)
        names |= {f"default/{p['metadata']['name']}" for p in batch}
        emulator.disconnect_watches()
    wait_until(lambda: set(kube.bound()) >= names, describe=lambda: f"{len(kube.bound())}/{len(names)} bound")
    _check_consistent(emulator, kube, nodes, names)
    # Every stream was resumed from its resourceVersion: one list per informer, never a relist.
    assert all(inf.relists == 1 for inf in controller.informers), [(i.kind, i.relists) for i in controller.informers]
    restarts = controller.metrics.watch_restarts.labels(resource="Pod", reason="closed")._value.get()
    assert restarts >= 5


def test_410_gone_relists_and_sees_deletions_it_missed(emulator, kube, make_controller):
    nodes = _nodes(2)
    kube.create_all(nodes.values())
    kube.create_all(_mixed_pods(6, prefix="a"))
    controller = make_controller().start_background()
    wait_until(lambda: len(kube.bound()) == 6)
    # Keep the watches away (every watch request fails) while a pod goes and history is compacted:
    # the resumed watch then gets 410 Gone and only a relist can show the deletion.
    emulator.inject({"method": "GET", "path": r"watch=true", "status": 500})
    emulator.disconnect_watches()
    wait_until(lambda: emulator.stats()["faults"][0]["fired"] >= len(controller.informers))
    kube.delete_pod("default", "a0")
    kube.create_all(_mixed_pods(3, prefix="b"))
    emulator.compact()
    emulator.clear_faults()
    wait_until(lambda: all(inf.relists == 2 for inf in controller.informers),
               describe=lambda: str([(i.kind, i.relists, i.last_error) for i in controller.informers]))
    assert controller.cache.get("Pod", "default/a0") is None
    expect = {f"default/a{i}" for i in range(1, 6)} | {f"default/b{i}" for i in range(3)}
    wait_until(lambda: set(kube.bound()) >= expect)
    _check_consistent(emulator, kube, nodes, expect)
    assert controller.metrics.watch_restarts.labels(resource="Pod", reason="gone")._value.get() >= 1


def test_conflicts_and_server_errors_are_retried(emulator, kube, make_controller):
    nodes = _nodes(3)
    kube.create_all(nodes.values())
    pods = _mixed_pods(24)
    kube.create_all(pods)
    emulator.inject(
        {"method": "POST", "path": r"/binding$", "status": 500, "times": 6},
        {"method": "POST", "path": r"/binding$", "status": 409, "times": 2, "after": 10},
        {"method": "POST", "path": r"/configmaps$", "status": 409, "times": 2},   # exists: replaced
        {"method": "PUT", "path": r"/configmaps/", "status": 503, "times": 1},
        {"method": "POST", "path": r"/configmaps$", "status": 502, "times": 3, "after": 4},
    )
    controller = make_controller().start_background()
    names = {f"default/{p['metadata']['name']}" for p in pods}
    wait_until(lambda: set(kube.bound()) >= names, describe=lambda: f"{len(kube.bound())} bound")
    _check_consistent(emulator, kube, nodes, names)
    fired = [f["fired"] for f in emulator.stats()["faults"]]
    # Every injected failure was met and overcome. A ConfigMap is replaced (PUT) only when a create
    # meets one that really exists (left by an earlier attempt at the same pod); whether any attempt
    # does depends on timing, so the PUT fault may not be reached.
    assert fired[:3] == [6, 2, 2] and fired[3] <= 1 and fired[4] == 3, fired
    results = controller.binder.stats.results
    assert results.get("failed", 0) == 2  # the bindings' 409s on unbound pods: dropped, re-decided
    # Every assumption was confirmed by the watch (or dropped with its failed binding).
    wait_until(lambda: controller.cache.assumed_count == 0)


def test_api_timeouts_never_bind_twice(emulator, kube, make_controller):
    """A binding whose answer is lost (the server applies it after the client gave up) is retried;
    the retry's 409 is resolved by reading the pod: already ours."""
    nodes = _nodes(2)
    kube.create_all(nodes.values())
    pods = _mixed_pods(12)
    kube.create_all(pods)
    emulator.inject(
        {"method": "POST", "path": r"/binding$", "hold": 1.0, "times": 3},    # applied, answer lost
        {"method": "POST", "path": r"/binding$", "delay": 1.0, "times": 2},   # applied late
        {"method": "POST", "path": r"/configmaps$", "delay": 1.0, "times": 2},
    )
    controller = make_controller(request_timeout=0.4).start_background()
    names = {f"default/{p['metadata']['name']}" for p in pods}
    wait_until(lambda: set(kube.bound()) >= names, describe=lambda: f"{len(kube.bound())} bound")
    assert controller.binder.drain(20)
    _check_consistent(emulator, kube, nodes, names)
    assert controller.binder.stats.results.get("already-bound", 0) >= 3, controller.binder.stats.results
    assert [f["fired"] for f in emulator.stats()["faults"]] == [3, 2, 2]


def test_startup_waits_for_every_cache_and_survives_api_errors(emulator, kube, make_controller):
    nodes = _nodes(1)
    kube.create_all(nodes.values())
    kube.create_all(_mixed_pods(3))
    emulator.inject({"method": "GET", "path": r"/(pods|nodes)\?", "status": 500, "times": 4},
                    {"method": "GET", "path": r"kaiwoqueues\?", "status": 503})
    controller = make_controller().start_background()
    pods = next(i for i in controller.informers if i.kind == "Pod")
    wait_until(pods.synced.is_set)
    ready, text = controller.readyz()
    assert not ready and "KaiwoQueue" in text
    assert kube.bound() == {} and controller.cycles == 0  # no cycle on an incomplete cache
    emulator.clear_faults()
    wait_until(lambda: len(kube.bound()) == 3)
    assert controller.readyz() == (True, "ok")
    _check_consistent(emulator, kube, nodes, {f"default/p{i}" for i in range(3)})


def test_restart_half_way_rebuilds_from_annotations(emulator, kube, make_controller):
    """Replica A dies in the middle of binding (no draining, no lease release); replica B takes
    over when the lease expires, rebuilds device usage from the pods' annotations and binds the
    rest -- never a GPU twice, never a pod twice, and A's pods keep their nodes."""
    nodes = _nodes(12)
    kube.create_all(nodes.values())
    pods = _mixed_pods(150)
    kube.create_all(pods)
    names = {f"default/{p['metadata']['name']}" for p in pods}
    emulator.inject({"method": "POST", "path": r"/binding$", "delay": 0.15})  # slow API: A is caught mid-way
    short_lease = dict(lease_duration=3.0, renew_deadline=2.0)
    a = make_controller(identity="replica-a", concurrency=4, **short_lease).start_background()
    wait_until(lambda: len(emulator.stats()["binds"]) >= 40, timeout=60)
    a.stop(graceful=False)
    emulator.clear_faults()
    before = {k: p["spec"]["nodeName"] for k, p in kube.bound().items()}
    assert 40 <= len(before) < len(names)
    b = make_controller(identity="replica-b", **short_lease).start_background()
    wait_until(lambda: set(kube.bound()) >= names, timeout=60,
               describe=lambda: f"{len(kube.bound())}/{len(names)} bound; leader b: {b.is_leader()}")
    _check_consistent(emulator, kube, nodes, names)
    after = kube.bound()
    assert all(after[k]["spec"]["nodeName"] == n for k, n in before.items())
    assert b.cycles > 0 and b.is_leader()


def test_a_missing_crd_counts_as_no_objects(emulator, kube, make_controller):
    """A cluster without the KaiwoReservation CRD (404 on its list) still schedules."""
    kube.create_all([node("n0"), pod("a", gpus=1)])
    emulator.inject({"method": "GET", "path": r"/kaiworeservations", "status": 404})
    controller = make_controller()
    report = controller.run_once(timeout=30)
    assert report.bindings == 1 and set(kube.bound()) == {"default/a"}
    informer = next(i for i in controller.informers if i.kind == "KaiwoReservation")
    assert informer.synced.is_set() and "404" in informer.last_error


def test_a_missing_crd_is_reported_once_and_looked_for_less_often(caplog):
    """A 404 on the list (CRD not installed) is logged once, retried with a growing wait, and the
    kind is picked up when the CRD appears."""
    import logging
    import threading

    from kubernetes.client.exceptions import ApiException

    from kaiwo.controller.cache import ClusterCache, Informer

    class Api:
        def __init__(self):
            self.lists = 0
            self.installed = threading.Event()

        def list(self, kind, namespace):
            self.lists += 1
            if not self.installed.is_set():
                raise ApiException(status=404, reason="Not Found")
            return [{"metadata": {"name": "r", "resourceVersion": "1"}}], "1"

        def watch(self, kind, namespace, rv, timeout, read_timeout=None):
            stop.wait(5)
            return iter(())

    api, stop = Api(), threading.Event()
    cache = ClusterCache()
    informer = Informer(api, cache, "KaiwoReservation", None, stop)
    informer.missing_wait = (0.01, 0.04)
    waits = []
    real_wait = stop.wait
    stop.wait = lambda t=None: (waits.append(t), real_wait(t))[1]
    with caplog.at_level(logging.DEBUG, logger="kaiwo.controller.cache"):
        informer.start()
        wait_until(lambda: api.lists >= 5, timeout=10)
        api.installed.set()
        wait_until(lambda: cache.counts()["KaiwoReservation"] == 1, timeout=10)
        stop.set()
        informer.join(5)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "KaiwoReservation" in warnings[0].getMessage()
    assert "404" in warnings[0].getMessage()
    assert waits[:4] == [0.01, 0.02, 0.04, 0.04]
    assert any("available now" in r.getMessage() for r in caplog.records)
