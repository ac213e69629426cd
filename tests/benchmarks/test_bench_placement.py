"""Placement benchmarks: the compiled kernel and the pure-Python reference on the same inputs.

``_core.place_batch`` and ``tests.naive.place_batch_ref`` run on the same synthetic cluster and
batch in the same session; each pair shares a ``benchmark.group`` (``place <scale> <strategy>``)
so the report shows them side by side, and ``asv_bench/ratio.py`` turns a ``--benchmark-json``
file into kernel/reference ratios (DESIGN.md: times are always reported alongside the reference).

Under the default ``--benchmark-disable`` each test calls its function once, so the suite doubles as
a check that the kernel and the reference agree on every output and on the state they leave
(asserted, never a time). Timed run::

    KAIWO_BENCH_SCALES=S,M python -m pytest tests/benchmarks --benchmark-enable --benchmark-only \\
        --benchmark-json /tmp/bench.json
"""
from __future__ import annotations

import numpy as np

from kaiwo_core import _core
from tests.naive import place_batch_ref

# Timed rounds (one call each, fresh state per round). The reference takes ~1 s at S and
# ~1.5 min at M, so it gets few rounds.
KERNEL_ROUNDS = {"S": 50, "M": 15, "L": 3}
REFERENCE_ROUNDS = {"S": 5, "M": 3, "L": 1}
MUTABLE = ("node_cpu_free", "node_mem_free", "node_pods_free", "dev_milli_free", "dev_mem_free",
           "dev_xcd_free", "dev_state")


def _label(benchmark, scale, strategy, impl):
    benchmark.group = f"place {scale} {strategy}"
    benchmark.extra_info.update(scale=scale, strategy=strategy, impl=impl)


def test_place_kernel(benchmark, case, scale, strategy):
    _label(benchmark, scale, strategy, "kernel")
    out = benchmark.pedantic(_core.place_batch, setup=case.setup(strategy),
                             rounds=KERNEL_ROUNDS[scale], warmup_rounds=1, iterations=1)
    assert out["node"].shape == (case.n_pods,)


def test_place_reference(benchmark, case, scale, strategy):
    _label(benchmark, scale, strategy, "reference")
    ref = benchmark.pedantic(place_batch_ref, setup=case.setup(strategy),
                             rounds=REFERENCE_ROUNDS[scale], iterations=1)
    ref_cluster = case.last_cluster
    # Same inputs through the kernel: identical outputs and identical state left behind.
    out, kernel_cluster = case.run_kernel(strategy)
    assert set(out) == set(ref)
    for k in out:
        assert out[k].dtype == ref[k].dtype, k
        np.testing.assert_array_equal(out[k], ref[k], err_msg=k)
    for k in MUTABLE:
        np.testing.assert_array_equal(kernel_cluster[k], ref_cluster[k], err_msg=k)


def test_place_kernel_device_holds(benchmark, case, scale, strategy):
    """The kernel with device reservations: 2 GPUs held on every 10th node by a reservation no
    class may use (compare with test_place_kernel: the cost of the per-device checks)."""
    benchmark.group = f"place {scale} {strategy}"
    benchmark.extra_info.update(scale=scale, strategy=strategy, impl="kernel, device holds")
    G = int(case.cluster.node_dev_start[-1])
    resv = np.full(G, -1, np.int32)
    for n in range(0, case.cluster.n_nodes, 10):
        resv[case.cluster.node_dev_start[n]:case.cluster.node_dev_start[n] + 2] = 0
    batch = dict(case.batch_for(strategy), dev_resv=resv, dev_resv_xcds=np.zeros(G, np.uint32),
                 class_resv=np.zeros((case.batch["class_mask"].shape[0], 1), np.uint8))
    make = case.setup(strategy)

    def setup():
        (cluster, _, code), _ = make()
        return (cluster, batch, code), {}
    out = benchmark.pedantic(_core.place_batch, setup=setup, rounds=KERNEL_ROUNDS[scale], warmup_rounds=1,
                             iterations=1)
    held = np.flatnonzero(resv >= 0)
    assert not np.isin(out["asg_dev"], held).any()  # nobody may use the held GPUs


def test_place_kernel_gangs(benchmark, case, scale, strategy):
    """The kernel with every 4 consecutive pods a gang (no minimum, so nothing rolls back) and the
    nodes in 10 zones (compare with test_place_kernel: the cost of steering gangs onto few nodes)."""
    benchmark.group = f"place {scale} {strategy}"
    benchmark.extra_info.update(scale=scale, strategy=strategy, impl="kernel, gangs of 4")
    P, N = case.n_pods, case.cluster.n_nodes
    batch = dict(case.batch_for(strategy), gang=(np.arange(P) // 4).astype(np.int32),
                 gang_need=np.zeros(P, np.int32), node_domain=(np.arange(N) % 10).astype(np.int32))
    make = case.setup(strategy)

    def setup():
        (cluster, _, code), _ = make()
        return (cluster, batch, code), {}
    out = benchmark.pedantic(_core.place_batch, setup=setup, rounds=KERNEL_ROUNDS[scale], warmup_rounds=1,
                             iterations=1)
    assert not out["gang_failed"].any()  # no minimum: a gang never rolls back
