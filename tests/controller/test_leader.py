"""Leader election on a coordination.k8s.io Lease: two replicas, one schedules."""
from __future__ import annotations

import threading

from kaiwo.controller.api import read_json
from tests.controller.kube import node, pod, wait_until


def _lease(kube) -> dict:
    from kubernetes import client

    api = client.CoordinationV1Api(kube.core.api_client)
    return read_json(api.read_namespaced_lease("kaiwo-controller", "kaiwo-system", _preload_content=False))


class NeverBoth:
    """Samples two replicas' leadership in the background; remembers if both claimed it at once."""

    def __init__(self, a, b):
        self.a, self.b = a, b
        self.both = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.005):
            self.samples += 1
            if self.a.is_leader() and self.b.is_leader():
                self.both += 1

    def stop(self):
        self._stop.set()
        self._thread.join()


def _scheduled_events(kube, names) -> list[dict]:
    return [e for e in kube.events() if e["reason"] == "Scheduled" and e["involvedObject"]["name"] in names]


def _scheduled_by(kube, names) -> set:
    return {e.get("reportingInstance") for e in _scheduled_events(kube, names)}


def test_two_replicas_one_leader_and_clean_handover(emulator, kube, make_controller):
    kube.create_all([node("n0"), node("n1")])
    a = make_controller(identity="replica-a", lease_duration=3.0, renew_deadline=2.0).start_background()
    b = make_controller(identity="replica-b", lease_duration=3.0, renew_deadline=2.0).start_background()
    watch = NeverBoth(a, b)
    try:
        wait_until(lambda: a.is_leader() != b.is_leader())
        leader, standby = (a, b) if a.is_leader() else (b, a)
        assert _lease(kube)["spec"]["holderIdentity"] == leader.config.identity
        first = [pod(f"first-{i}", gpus=1) for i in range(4)]
        kube.create_all(first)
        wait_until(lambda: len(kube.bound()) == 4)
        names = {p["metadata"]["name"] for p in first}
        wait_until(lambda: len(_scheduled_events(kube, names)) == 4)
        assert _scheduled_by(kube, names) == {leader.config.identity}
        assert standby.cycles == 0 and standby.synced()   # warm cache, no scheduling

        transitions = _lease(kube)["spec"]["leaseTransitions"]
        leader.stop()   # clean: releases the lease, so the standby need not wait for it to expire
        wait_until(standby.is_leader)
        second = [pod(f"second-{i}", gpus=1) for i in range(3)]
        kube.create_all(second)
        wait_until(lambda: len(kube.bound()) == 7)
        names = {p["metadata"]["name"] for p in second}
        wait_until(lambda: len(_scheduled_events(kube, names)) == 3)
        assert _scheduled_by(kube, names) == {standby.config.identity}
        lease = _lease(kube)
        assert lease["spec"]["holderIdentity"] == standby.config.identity
        assert lease["spec"]["leaseTransitions"] == transitions + 1
    finally:
        watch.stop()
    assert watch.samples > 0 and watch.both == 0
    assert all(n == 1 for n in emulator.stats()["binds"].values())


def test_leader_that_cannot_renew_steps_down_and_stops_binding(emulator, kube, make_controller):
    kube.create_all([node("n0")])
    a = make_controller(identity="replica-a", lease_duration=3.0, renew_deadline=2.0).start_background()
    wait_until(a.is_leader)
    emulator.inject({"path": r"/leases", "status": 500})
    wait_until(lambda: not a.is_leader())
    kube.create(pod("waits", gpus=1))
    turns = a.iterations
    wait_until(lambda: a.iterations >= turns + 5 and a.cache.get("Pod", "default/waits") is not None)
    assert kube.bound() == {} and emulator.stats()["binds"] == {}
    emulator.clear_faults()
    wait_until(a.is_leader)   # still the holder on record: it renews and carries on
    wait_until(lambda: "default/waits" in kube.bound())


def test_binding_retries_end_within_the_takeover_gap(emulator, make_controller):
    """A binding decided as leader must not be retried past the moment a standby may take over."""
    c = make_controller(lease_duration=8.0, renew_deadline=6.0)  # the tests' retry deadline: 20 s
    assert c.binder.policy.deadline <= 0.9 * (8.0 - 6.0) + 1e-9
    assert make_controller(leader_election=False).binder.policy.deadline == 20.0


def test_stop_finishes_writes_before_releasing_the_lease(emulator, kube, make_controller):
    kube.create_all([node("n0")])
    c = make_controller().start_background()
    wait_until(c.is_leader)
    held_while_draining = []
    drain = c.binder.drain
    c.binder.drain = lambda timeout=None: (held_while_draining.append(c.leader.is_leader()), drain(timeout))[1]
    c.stop()
    assert held_while_draining == [True]
    assert not c.leader.is_leader() and not _lease(kube)["spec"].get("holderIdentity")
