"""One full scheduling cycle (``kaiwo_core.schedule``) on the compiled kernels and on the references.

The input is the scale's synthetic dump as Kubernetes objects -- nodes, 100 queues in three levels at
M, running pods with their assignments and the pending backlog -- read into a Snapshot once
(untimed). The timed call is the whole cycle: checks, fair shares, ordering, placement, reclaim and
preemption. The "reference" run is the very same cycle with the four compiled kernels swapped for
their plain-Python references (``tests/naive.py``, ``tests/naive_queues.py``,
``tests/naive_preempt.py``), so the ratio is what the compiled core buys for a whole decision, glue
included. The decisions must be identical.

Timed run (the reference at M takes minutes; one round)::

    KAIWO_BENCH_SCALES=S,M python -m pytest tests/benchmarks/test_bench_cycle.py --benchmark-enable \\
        --benchmark-only --benchmark-json /tmp/bench_cycle.json
    python asv_bench/ratio.py /tmp/bench_cycle.json
"""
from __future__ import annotations

import contextlib
import json

import pytest

import kaiwo_core as kc
from kaiwo.simulator import synth
from kaiwo_core import _core
from tests.naive import place_batch_ref
from tests.naive_preempt import plan_preemptions_ref
from tests.naive_queues import fair_share_ref, order_pending_ref

KERNEL_ROUNDS = {"S": 20, "M": 7, "L": 3}
REFERENCE_ROUNDS = {"S": 2, "M": 1, "L": 1}
_SNAPSHOTS: dict = {}


def snapshot(scale: str) -> kc.Snapshot:
    if scale not in _SNAPSHOTS:
        _SNAPSHOTS[scale] = kc.Snapshot.from_objects(synth.dump_objects(scale, seed=5, running=True))
    return _SNAPSHOTS[scale]


@contextlib.contextmanager
def references(monkeypatch):
    """The cycle's compiled kernels replaced by the plain-Python references."""
    for name, ref in (("place_batch", place_batch_ref), ("fair_share", fair_share_ref),
                      ("order_pending", order_pending_ref), ("plan_preemptions", plan_preemptions_ref)):
        monkeypatch.setattr(_core, name, ref)
    yield


def _label(benchmark, scale, impl):
    benchmark.group = f"cycle {scale}"
    benchmark.extra_info.update(scale=scale, strategy="full cycle", impl=impl)


def _decisions(d: kc.Decisions) -> str:
    doc = d.to_dict()
    doc["stats"].pop("timingsMs")
    return json.dumps(doc, sort_keys=True)


def test_cycle_kernel(benchmark, scale):
    snap = snapshot(scale)
    _label(benchmark, scale, "kernel")
    d = benchmark.pedantic(kc.schedule, args=(snap,), rounds=KERNEL_ROUNDS[scale],
                           warmup_rounds=1, iterations=1)
    assert d.to_dict()["stats"]["bound"] > 0


def test_cycle_kernel_gpu_models(benchmark, scale):
    """The same cycle with per-GPU-model quotas (issue 11): every queue with a GPU quota sets MI300X
    (the dump's model) to that quota with a limit of twice it, and MI355X to 0 -- R = 5 resource
    columns, and pods of no fixed model narrowed by the MI300X limits."""
    objs = synth.dump_objects(scale, seed=5, running=True)
    for o in objs:
        if o["kind"] == "KaiwoQueue":
            gpu = o["spec"].get("resources", {}).get("gpu", {})
            q = gpu.get("quota", 0)
            if isinstance(q, (int, float)) and q > 0:
                o["spec"]["resources"]["gpuModels"] = {"MI300X": {"quota": q, "limit": 2 * q},
                                                       "MI355X": {"quota": 0}}
    snap = kc.Snapshot.from_objects(objs)
    benchmark.group = f"cycle {scale}"
    benchmark.extra_info.update(scale=scale, strategy="full cycle, GPU-model quotas", impl="kernel")
    d = benchmark.pedantic(kc.schedule, args=(snap,), rounds=KERNEL_ROUNDS[scale], warmup_rounds=1,
                           iterations=1)
    assert d.tree.n_res == 5 and d.to_dict()["stats"]["bound"] > 0


def test_cycle_reference(benchmark, scale, monkeypatch):
    if scale == "L":
        pytest.skip("the pure-Python cycle at L would take hours")
    snap = snapshot(scale)
    expected = _decisions(kc.schedule(snap))
    _label(benchmark, scale, "reference")
    with references(monkeypatch):
        d = benchmark.pedantic(kc.schedule, args=(snap,), rounds=REFERENCE_ROUNDS[scale],
                               iterations=1)
    assert _decisions(d) == expected
