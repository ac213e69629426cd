"""Fixtures of the controller tests: the Kubernetes API emulator and controllers pointed at it.

The emulator (:mod:`tests.controller.emulator`, kmock's KubernetesEmulator extended with
resourceVersions, resumable watches, 410 Gone, binding/eviction subresources, replace and injected
faults) runs in one child process for the session and is reset before every test. Controllers are
configured for speed -- short periods, short timeouts and leases, fast seeded retries -- never with
sleeps: tests wait for conditions (:func:`tests.controller.kube.wait_until`) and assert states.
"""
from __future__ import annotations

import pytest

from kaiwo.controller import Controller, ControllerConfig, RetryPolicy, make_api_client
from tests.controller.emulator import EmulatorProcess
from tests.controller.kube import Kube


@pytest.fixture(scope="session")
def emulator_process():
    proc = EmulatorProcess()
    yield proc
    proc.close()


@pytest.fixture
def emulator(emulator_process):
    """A clean emulator (objects, faults and counters reset; open watches ended)."""
    emulator_process.reset()
    yield emulator_process
    emulator_process.clear_faults()


@pytest.fixture
def kubeconfig(emulator, tmp_path) -> str:
    return emulator.kubeconfig(str(tmp_path / "kubeconfig"))


@pytest.fixture
def api_client(kubeconfig):
    client = make_api_client(kubeconfig=kubeconfig, pool_size=48)
    yield client
    client.close()


@pytest.fixture
def kube(api_client) -> Kube:
    return Kube(api_client)


def fast_config(**overrides) -> ControllerConfig:
    """A controller configuration for tests: everything short, retries seeded."""
    base = dict(period=0.2, min_interval=0.05, request_timeout=2.0, watch_timeout=30, assume_ttl=5.0,
                lease_namespace="kaiwo-system", lease_duration=8.0, renew_deadline=6.0, retry_period=0.25,
                metrics_port=None, pod_event_interval=0.5, identity="kaiwo-test", watch_backoff_max=0.5,
                retry=RetryPolicy(attempts=10, initial=0.01, maximum=0.2, deadline=20.0, seed=0))
    base.update(overrides)
    return ControllerConfig(**base)


@pytest.fixture
def make_controller(kubeconfig):
    """Factory of controllers on their own API clients (as separate replicas would be); every one
    is stopped at the end of the test."""
    made = []

    def factory(**overrides) -> Controller:
        client = make_api_client(kubeconfig=kubeconfig, pool_size=48)
        c = Controller(client, fast_config(**overrides))
        made.append((c, client))
        return c

    yield factory
    for c, client in made:
        if not c.stop_event.is_set():
            c.stop()
        client.close()
