"""Reclaim/preemption benchmarks: the compiled kernel and the pure-Python reference on the same inputs.

``_core.plan_preemptions`` and ``tests.naive_preempt.plan_preemptions_ref`` on the scale's cluster
with its running pods, 100 queues, and the first pending pods the cycle's placement could not place
(S 100, M 1,000; see ``asv_bench/benchmarks/preempt.py:preempt_workload``, which asv times too).
Scales come from ``KAIWO_BENCH_SCALES`` (default ``S``; see ``conftest.py``). The reference takes a
few seconds at S and many minutes at M.

The pair shares a ``benchmark.group`` (``preempt <scale>``) and sets ``extra_info`` (scale,
strategy = "preempt", impl) so ``asv_bench/ratio.py`` prints the ratio. Under the default
``--benchmark-disable`` each test calls its function once and the reference test asserts that the
kernel gives identical outputs (never a time). Timed run::

    KAIWO_BENCH_SCALES=S,M python -m pytest tests/benchmarks/test_bench_preempt.py --benchmark-enable \\
        --benchmark-only --benchmark-json /tmp/bench_preempt.json
    python asv_bench/ratio.py /tmp/bench_preempt.json
"""
from __future__ import annotations

import numpy as np

from asv_bench.benchmarks.preempt import preempt_workload
from kaiwo_core import _core
from tests.naive_preempt import plan_preemptions_ref

KERNEL_ROUNDS = {"S": 50, "M": 10, "L": 3}
REFERENCE_ROUNDS = {"S": 3, "M": 1, "L": 1}


def _label(benchmark, scale, impl):
    benchmark.group = f"preempt {scale}"
    benchmark.extra_info.update(scale=scale, strategy="preempt", impl=impl)


def _args(scale):
    w = preempt_workload(scale)
    return w["cluster"], w["running"], w["pending"], w["queues"]


def test_preempt_kernel(benchmark, scale):
    _label(benchmark, scale, "kernel")
    args = _args(scale)
    out = benchmark.pedantic(_core.plan_preemptions, args=args, rounds=KERNEL_ROUNDS[scale],
                             warmup_rounds=1, iterations=1)
    assert out["node"].shape == (len(args[2]["cpu"]),) and out["fit_mismatch"] == 0
    assert len(out["vic"]) > 0  # the workload does preempt and reclaim


def test_preempt_reference(benchmark, scale):
    _label(benchmark, scale, "reference")
    args = _args(scale)
    ref = benchmark.pedantic(plan_preemptions_ref, args=args, rounds=REFERENCE_ROUNDS[scale], iterations=1)
    out = _core.plan_preemptions(*args)
    assert set(out) == set(ref)
    for k in out:
        np.testing.assert_array_equal(np.asarray(out[k]), np.asarray(ref[k]), err_msg=k)
