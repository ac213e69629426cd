"""Queue-kernel benchmarks: the compiled kernels and the pure-Python references on the same inputs.

``_core.fair_share`` / ``tests.naive_queues.fair_share_ref`` over the scale's running + pending pods,
and ``_core.order_pending`` / ``tests.naive_queues.order_pending_ref`` over its pending pods (M:
30,000 and 10,000), for 100 and 1,000 queues in 3 levels. The inputs come from
``asv_bench/benchmarks/queues.py:queue_workload`` so asv and pytest-benchmark time the same thing.
Scales come from ``KAIWO_BENCH_SCALES`` (default ``S``; see ``conftest.py``).

Each kernel/reference pair shares a ``benchmark.group`` (``<kernel> <scale> <queues>q``) and sets
``extra_info`` (scale, strategy = "<kernel> <queues>q", impl) so ``asv_bench/ratio.py`` prints the
ratios. Under the default ``--benchmark-disable`` each test calls its function once and the reference
tests assert that the kernel gives identical outputs (never a time). Timed run::

    KAIWO_BENCH_SCALES=S,M python -m pytest tests/benchmarks/test_bench_queues.py --benchmark-enable \\
        --benchmark-only --benchmark-json /tmp/bench_queues.json
    python asv_bench/ratio.py /tmp/bench_queues.json
"""
from __future__ import annotations

import numpy as np
import pytest

from asv_bench.benchmarks.queues import QUEUES, queue_workload
from kaiwo_core import _core
from tests.naive_queues import fair_share_ref, order_pending_ref

KERNEL_ROUNDS = {"S": 200, "M": 50, "L": 10}
REFERENCE_ROUNDS = {"S": 5, "M": 3, "L": 1}


@pytest.fixture(params=QUEUES, ids=lambda n: f"{n}q")
def queues(request):
    return request.param


def _label(benchmark, kernel, scale, queues, impl):
    benchmark.group = f"{kernel} {scale} {queues}q"
    benchmark.extra_info.update(scale=scale, strategy=f"{kernel} {queues}q", impl=impl, queues=queues)


def _same(out, ref):
    assert set(out) == set(ref)
    for k in out:
        assert out[k].dtype == ref[k].dtype, k
        np.testing.assert_array_equal(out[k], ref[k], err_msg=k)


def test_fair_share_kernel(benchmark, scale, queues):
    w = queue_workload(scale, queues)
    _label(benchmark, "fair_share", scale, queues, "kernel")
    out = benchmark.pedantic(_core.fair_share, args=(w["tree"], w["fs_pods"]),
                             rounds=KERNEL_ROUNDS[scale], warmup_rounds=1, iterations=1)
    assert out["admitted"].shape == (len(w["fs_pods"]["req"]),)


def test_fair_share_reference(benchmark, scale, queues):
    w = queue_workload(scale, queues)
    _label(benchmark, "fair_share", scale, queues, "reference")
    ref = benchmark.pedantic(fair_share_ref, args=(w["tree"], w["fs_pods"]),
                             rounds=REFERENCE_ROUNDS[scale], iterations=1)
    _same(_core.fair_share(w["tree"], w["fs_pods"]), ref)


def test_order_pending_kernel(benchmark, scale, queues):
    w = queue_workload(scale, queues)
    _label(benchmark, "order_pending", scale, queues, "kernel")
    out = benchmark.pedantic(_core.order_pending, args=(w["order_tree"], w["state"], w["order_pods"]),
                             rounds=KERNEL_ROUNDS[scale], warmup_rounds=1, iterations=1)
    assert out["status"].shape == (len(w["order_pods"]["req"]),)


def test_order_pending_reference(benchmark, scale, queues):
    w = queue_workload(scale, queues)
    _label(benchmark, "order_pending", scale, queues, "reference")
    ref = benchmark.pedantic(order_pending_ref, args=(w["order_tree"], w["state"], w["order_pods"]),
                             rounds=REFERENCE_ROUNDS[scale], iterations=1)
    _same(_core.order_pending(w["order_tree"], w["state"], w["order_pods"]), ref)
