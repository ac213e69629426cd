"""Rebalancing planner benchmarks: the compiled kernel and the pure-Python reference on the same inputs.

``_core.plan_rebalance`` and ``tests.naive_rebalance.plan_rebalance_ref`` on
``asv_bench/benchmarks/rebalance.py:rebalance_workload`` (the state a cycle leaves on ``kaiwo generate
--running``'s dump, migratable pods, a measured load). Scales come from ``KAIWO_BENCH_SCALES``
(default ``S``; see ``conftest.py``); the reference takes seconds at S and far longer at M, where it
runs only with ``KAIWO_BENCH_REFERENCE_M=1``.

The pair shares a ``benchmark.group`` (``rebalance <scale>``) and sets ``extra_info`` (scale,
strategy = "rebalance", impl) so ``asv_bench/ratio.py`` prints the ratio. Under the default
``--benchmark-disable`` the kernel runs once and the reference is skipped (it takes ~15 s at S; tests/test_rebalance_random.py
compares the two on every run); timed runs assert that the kernel gives identical outputs. Timed run::

    KAIWO_BENCH_SCALES=S,M python -m pytest tests/benchmarks/test_bench_rebalance.py --benchmark-enable \\
        --benchmark-only --benchmark-json /tmp/bench_rebalance.json
    python asv_bench/ratio.py /tmp/bench_rebalance.json
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from asv_bench.benchmarks.rebalance import rebalance_workload
from kaiwo_core import _core
from tests.naive_rebalance import plan_rebalance_ref

KERNEL_ROUNDS = {"S": 50, "M": 20, "L": 3}


def _label(benchmark, scale, impl):
    benchmark.group = f"rebalance {scale}"
    benchmark.extra_info.update(scale=scale, strategy="rebalance", impl=impl)


def test_rebalance_kernel(benchmark, scale):
    _label(benchmark, scale, "kernel")
    args = rebalance_workload(scale)
    out = benchmark.pedantic(_core.plan_rebalance, args=args, rounds=KERNEL_ROUNDS[scale],
                             warmup_rounds=1, iterations=1)
    assert out["units_blocked"] > 0 and out["hot_nodes"] > 0  # the workload has work for both goals


def test_rebalance_reference(benchmark, scale):
    if benchmark.disabled:  # ~15 s even at S; the hypothesis test compares the two on every run
        pytest.skip("timed runs only (--benchmark-enable)")
    if scale != "S" and not os.environ.get("KAIWO_BENCH_REFERENCE_M"):
        pytest.skip("the reference takes very long beyond S (KAIWO_BENCH_REFERENCE_M=1 runs it)")
    _label(benchmark, scale, "reference")
    args = rebalance_workload(scale)
    ref = benchmark.pedantic(plan_rebalance_ref, args=args, rounds=1, iterations=1)
    out = _core.plan_rebalance(*args)
    assert set(out) == set(ref)
    for k in out:
        np.testing.assert_array_equal(np.asarray(out[k]), np.asarray(ref[k]), err_msg=k)
