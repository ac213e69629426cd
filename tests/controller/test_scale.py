"""1,000 pods through the controller under random API faults: none lost, none bound twice, no GPU
booked twice."""
from __future__ import annotations

from tests.controller.kube import assignment, device_usage, node, pod, wait_until


def test_thousand_pods_bound_once_each_under_faults(emulator, kube, make_controller):
    nodes = {f"n{i:03d}": node(f"n{i:03d}", partition="cpx_nps4" if i % 4 == 3 else "spx_nps1")
             for i in range(80)}
    emulator.load(list(nodes.values()))
    pods = []
    for i in range(1000):
        if i % 4 == 0:
            pods.append(pod(f"w{i:04d}", gpus=1, cpu="2", memory="8Gi"))
        elif i % 4 == 1:
            pods.append(pod(f"f{i:04d}", fraction="0.25", cpu="1", memory="4Gi"))
        elif i % 4 == 2:
            pods.append(pod(f"x{i:04d}", fraction="0.25", isolation="xcd", cpu="1", memory="4Gi"))
        else:
            pods.append(pod(f"m{i:04d}", memory_mib=16000, cpu="1", memory="4Gi"))
    emulator.load(pods)
    # Seeded random faults on every write path the binder uses, and a few watch disconnects.
    emulator.inject(
        {"method": "POST", "path": r"/binding$", "status": 500, "probability": 0.05, "seed": 1},
        {"method": "POST", "path": r"/binding$", "status": 409, "probability": 0.01, "seed": 2},
        {"method": "POST", "path": r"/binding$", "hold": 1.0, "probability": 0.005, "seed": 3},
        {"method": "POST", "path": r"/events$", "status": 503, "probability": 0.03, "seed": 4},
        {"method": "POST", "path": r"/configmaps$", "status": 500, "probability": 0.03, "seed": 5},
    )
    controller = make_controller(concurrency=32, request_timeout=0.8).start_background()
    names = {f"default/{p['metadata']['name']}" for p in pods}
    for _ in range(3):
        wait_until(lambda: len(emulator.stats()["binds"]) >= 250 * (_ + 1), timeout=120, interval=0.2)
        emulator.disconnect_watches()
    # Poll the emulator's counters (cheap), not a list of 1,000 pods, so the test does not load the
    # API server it measures.
    wait_until(lambda: len(emulator.stats()["binds"]) >= len(names), timeout=120, interval=0.2,
               describe=lambda: f"{len(emulator.stats()['binds'])}/{len(names)} bound; "
                                f"{controller.binder.stats.results}")
    bound = kube.bound()
    stats = emulator.stats()
    assert set(stats["binds"]) == names and set(stats["binds"].values()) == {1}
    assert all(assignment(p) is not None for p in bound.values())
    assert not device_usage(bound, nodes)
    assert all(f["fired"] > 0 for f in stats["faults"]), stats["faults"]
    wait_until(lambda: controller.cache.assumed_count == 0)
