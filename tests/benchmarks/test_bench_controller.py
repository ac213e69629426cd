"""Controller throughput: pods bound per second against the Kubernetes API emulator.

One scheduling cycle decides the whole pending batch (batching); the binder then carries the
bindings out with ``concurrency`` workers -- per pod a ConfigMap (shared and XCD-isolated pods), the
binding with its device annotation, and a ``Scheduled`` Event. The timed span runs from the
controller's start (caches synced) until the emulator has recorded every binding; creating the
nodes and pods is set-up and is not timed. The emulator runs in its own process on loopback
(``tests.controller.emulator``), so the number includes real HTTP and JSON on both sides.

* ``KAIWO_BENCH_CONTROLLER_PODS`` -- pods per run (default 500);
* ``KAIWO_BENCH_CONTROLLER_CONCURRENCY`` -- comma list of binder worker counts (default ``16``).

Under the default ``--benchmark-disable`` each case runs once and checks that every pod was bound
exactly once (never a time). Timed run, with the pods/s figure in ``extra_info`` and printed::

    KAIWO_BENCH_CONTROLLER_PODS=1000 KAIWO_BENCH_CONTROLLER_CONCURRENCY=1,4,16,32 \\
        python -m pytest tests/benchmarks/test_bench_controller.py --benchmark-enable -s
"""
from __future__ import annotations

import os
import time

import pytest

from kaiwo.controller import Controller, make_api_client
from tests.controller.conftest import fast_config
from tests.controller.emulator import EmulatorProcess
from tests.controller.kube import node, pod, wait_until

PODS = int(os.environ.get("KAIWO_BENCH_CONTROLLER_PODS", "500"))
CONCURRENCY = [int(c) for c in os.environ.get("KAIWO_BENCH_CONTROLLER_CONCURRENCY", "16").split(",") if c.strip()]


@pytest.fixture(scope="module")
def emulator_process():
    proc = EmulatorProcess()
    yield proc
    proc.close()


def _workload(pods: int) -> tuple[list[dict], list[dict]]:
    """Enough MI300X nodes for every pod; whole GPUs, fractions and XCD-isolated fractions."""
    n_nodes = max(2, pods // 12)
    nodes = [node(f"n{i:04d}") for i in range(n_nodes)]
    out = []
    for i in range(pods):
        if i % 3 == 0:
            out.append(pod(f"w{i:05d}", gpus=1))
        elif i % 3 == 1:
            out.append(pod(f"f{i:05d}", fraction="0.25"))
        else:
            out.append(pod(f"x{i:05d}", fraction="0.25", isolation="xcd"))
    return nodes, out


@pytest.mark.parametrize("concurrency", CONCURRENCY)
def test_bind_throughput(benchmark, emulator_process, tmp_path, concurrency):
    kubeconfig = emulator_process.kubeconfig(str(tmp_path / "kubeconfig"))
    state: dict = {}

    def setup():
        emulator_process.reset()
        nodes, pods = _workload(PODS)
        emulator_process.load(nodes + pods)
        config = fast_config(concurrency=concurrency, request_timeout=10.0, lease_duration=15.0,
                             renew_deadline=10.0)
        state["controller"] = Controller(make_api_client(kubeconfig=kubeconfig, pool_size=concurrency + 16), config)
        return (), {}

    def run():
        controller = state["controller"]
        controller.start()
        controller.wait_synced(60)
        t0 = time.perf_counter()
        controller.start_background()
        wait_until(lambda: len(emulator_process.stats()["binds"]) >= PODS, timeout=600, interval=0.05)
        state["seconds"] = time.perf_counter() - t0

    try:
        benchmark.pedantic(run, setup=setup, rounds=1, iterations=1)
    finally:
        if "controller" in state:
            state["controller"].stop()
    rate = PODS / state["seconds"]
    benchmark.extra_info.update(pods=PODS, concurrency=concurrency, pods_per_second=round(rate, 1),
                                cycles=state["controller"].cycles)
    print(f"\nkaiwo controller: {PODS} pods bound in {state['seconds']:.2f} s = {rate:.1f} pods/s "
          f"(concurrency {concurrency}, {state['controller'].cycles} cycles)")
    binds = emulator_process.stats()["binds"]
    assert len(binds) == PODS and set(binds.values()) == {1}
