"""Inputs of the placement benchmarks: seeded synthetic clusters from :mod:`kaiwo.simulator.synth`.

Which scales and strategies run comes from the environment, so the default test run stays fast:

* ``KAIWO_BENCH_SCALES``: comma list of ``S``/``M``/``L`` (default ``S``; ``S,M`` for the
  DESIGN.md reference scale, where the pure-Python reference takes over a minute per call).
* ``KAIWO_BENCH_STRATEGIES``: comma list of ``binpack``/``spread``/``frag``/``load`` (default all
  four; ``load`` with a synthetic measured load per node, :func:`synthetic_load`).

Every timed call gets a fresh copy of the free state (placement updates it in place) from the
``setup`` of ``benchmark.pedantic``, so the copy is not timed.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from kaiwo.simulator import synth
from kaiwo_core import _core
from kaiwo_core.model.cluster import kernel_view

STRATEGY_CODES = {"binpack": _core.STRATEGY_BINPACK, "spread": _core.STRATEGY_SPREAD,
                  "frag": _core.STRATEGY_FRAG_AWARE, "load": _core.STRATEGY_LOAD}
SEED = 0


def _env_list(var: str, default: str, allowed) -> list[str]:
    values = [v.strip() for v in os.environ.get(var, default).split(",") if v.strip()]
    bad = [v for v in values if v not in allowed]
    if bad:
        raise pytest.UsageError(f"{var}: unknown {', '.join(bad)} (expected some of {', '.join(allowed)})")
    return values


def pytest_generate_tests(metafunc):
    if "scale" in metafunc.fixturenames:
        metafunc.parametrize("scale", _env_list("KAIWO_BENCH_SCALES", "S", list(synth.SCALES)))
    if "strategy" in metafunc.fixturenames:
        metafunc.parametrize("strategy", _env_list("KAIWO_BENCH_STRATEGIES", "binpack,spread,frag,load",
                                                   list(STRATEGY_CODES)))


def synthetic_load(n_nodes: int, seed: int = SEED) -> dict:
    """The load strategy's extra batch keys for a benchmark: a seeded measured load per node,
    uniform in [0, 1) (what node_load would give), weights 1 and 1."""
    rng = np.random.default_rng(seed)
    return {"node_load": rng.random(n_nodes), "load_weights": np.array([1.0, 1.0])}


class PlacementCase:
    """The kernel's inputs at one scale: static cluster arrays, free state and pending batch."""

    def __init__(self, scale: str):
        snap, batch = synth.scale_arrays(scale, seed=SEED)
        self.cluster, self.state = snap.cluster, snap.state
        self.batch = batch.kernel_view()
        self.batch["class_mask"] = np.ones((len(batch.constraints), snap.cluster.n_nodes), np.uint8)
        self.n_pods = len(batch.names)
        self.load_batch = dict(self.batch, **synthetic_load(snap.cluster.n_nodes))
        self.last_cluster: dict | None = None

    def batch_for(self, strategy: str) -> dict:
        return self.load_batch if strategy == "load" else self.batch

    def cluster_dict(self) -> dict:
        """Kernel cluster dict on a fresh copy of the free state."""
        return kernel_view(self.cluster, self.state.copy())

    def setup(self, strategy: str):
        """``benchmark.pedantic`` setup: (args, kwargs) on a fresh state; remembers the dict so the
        caller can check the state the last round left."""
        code = STRATEGY_CODES[strategy]

        def make():
            self.last_cluster = self.cluster_dict()
            return (self.last_cluster, self.batch_for(strategy), code), {}

        return make

    def run_kernel(self, strategy: str) -> tuple[dict, dict]:
        """(kernel output, cluster dict it updated), untimed, on a fresh state."""
        cluster = self.cluster_dict()
        return _core.place_batch(cluster, self.batch_for(strategy), STRATEGY_CODES[strategy]), cluster


_CASES: dict[str, PlacementCase] = {}


@pytest.fixture
def case(scale: str) -> PlacementCase:
    """The inputs at ``scale``, built once per session (S: 20 ms, M: 0.4 s, L: minutes)."""
    if scale not in _CASES:
        _CASES[scale] = PlacementCase(scale)
    return _CASES[scale]
