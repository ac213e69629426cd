"""asv benchmarks of placement, snapshot building and the scheduling cycle at DESIGN.md scales.

Inputs are the seeded synthetic clusters of :mod:`kaiwo.simulator.synth` (S = 100 nodes x 8 MI300X,
M = 1,000 nodes x 8 MI300X with 10,000 pending pods); L is left to ``kaiwo`` scale tests.

Fresh state per timed call
--------------------------
Placement updates the cluster state in place, so every timed call must start from the same free
state. asv re-runs ``setup`` before each *sample* (not between the calls inside one sample), so the
placement classes set ``number = 1``: one call per sample, and ``setup`` hands it a fresh
``state.copy()`` (a few 8,000-element arrays at M: microseconds, and outside the timed line). The
expensive part (building the cluster and charging the running pods) is memoised per process in
:func:`_arrays`, so re-running ``setup`` per sample costs only the copy. ``repeat`` asks for at
least 5 samples per process; asv runs 2 processes (``rounds``) and reports the median.

The pure-Python reference (``tests/naive.py``) is not timed here: it takes minutes at M. The
kernel/reference ratio comes from pytest-benchmark (``tests/benchmarks``, ``asv_bench/ratio.py``).
"""
from __future__ import annotations

import functools

import numpy as np

import kaiwo_core as kc
from kaiwo.simulator import synth
from kaiwo_core import _core
from kaiwo_core.model.cluster import kernel_view

SCALES = ["S", "M"]
#: ``load`` without metrics in Place and Schedule (every node unmeasured: neutral); PlaceKernel gives
#: it a seeded synthetic load per node (tests/benchmarks/conftest.py's ``synthetic_load``).
STRATEGIES = ["binpack", "spread", "frag", "load"]
SEED = 0


@functools.lru_cache(maxsize=None)
def _arrays(scale):
    """(snapshot with running pods charged, pending batch), built once per process."""
    return synth.scale_arrays(scale, seed=SEED)


_SNAPSHOTS: dict = {}


def _snapshot(objs, scale):
    """Snapshot of ``objs[scale]``, built once per process (``schedule`` does not change it)."""
    if scale not in _SNAPSHOTS:
        _SNAPSHOTS[scale] = kc.Snapshot.from_objects(objs[scale])
    return _SNAPSHOTS[scale]


class Place:
    """``kaiwo_core.place``: the public call (plugins' class mask + compiled kernel) on a batch."""

    params = (SCALES, STRATEGIES)
    param_names = ["scale", "strategy"]
    number = 1               # one call per sample: each call sees the fresh state from setup
    repeat = (5, 20, 20.0)   # min samples, max samples, max seconds per process
    timeout = 300

    def setup(self, scale, strategy):
        snap, self.batch = _arrays(scale)
        self.cluster = snap.cluster
        self.state = snap.state.copy()
        self.pipeline = kc.default_pipeline(strategy)

    def time_place(self, scale, strategy):
        kc.place(self.cluster, self.state, self.batch, self.pipeline)

    def peakmem_place(self, scale, strategy):
        kc.place(self.cluster, self.state, self.batch, self.pipeline)


class PlaceKernel:
    """``_core.place_batch`` alone, on the dicts ``place`` would pass (one class, all nodes)."""

    params = (SCALES, STRATEGIES)
    param_names = ["scale", "strategy"]
    number = 1
    repeat = (5, 20, 20.0)
    timeout = 300

    def setup(self, scale, strategy):
        snap, batch = _arrays(scale)
        self.cluster = kernel_view(snap.cluster, snap.state.copy())
        self.batch = batch.kernel_view()
        self.batch["class_mask"] = np.ones((len(batch.constraints), snap.cluster.n_nodes), np.uint8)
        if strategy == "load":
            rng = np.random.default_rng(SEED)
            self.batch.update(node_load=rng.random(snap.cluster.n_nodes), load_weights=np.array([1.0, 1.0]))
        self.code = kc.default_pipeline(strategy).strategy.strategy

    def time_place_batch(self, scale, strategy):
        _core.place_batch(self.cluster, self.batch, self.code)


class SnapshotFromObjects:
    """``Snapshot.from_objects`` on Nodes and pending Pods, and with running pods (assignments)."""

    params = (SCALES, [False, True])
    param_names = ["scale", "running"]
    timeout = 300

    def setup_cache(self):
        return {(s, r): synth.dump_objects(s, seed=SEED, running=r) for s in SCALES for r in (False, True)}

    def setup(self, objs, scale, running):
        self.objs = objs[scale, running]

    def time_from_objects(self, objs, scale, running):
        kc.Snapshot.from_objects(self.objs)

    def peakmem_from_objects(self, objs, scale, running):
        kc.Snapshot.from_objects(self.objs)


class Schedule:
    """One whole cycle, ``kaiwo_core.schedule(snapshot)``: nodes, running pods with assignments and
    pending pods; the cycle copies the state itself, so the snapshot is shared by all samples."""

    params = (SCALES, STRATEGIES)
    param_names = ["scale", "strategy"]
    timeout = 300

    def setup_cache(self):
        return {s: synth.dump_objects(s, seed=SEED, running=True) for s in SCALES}

    def setup(self, objs, scale, strategy):
        self.snap = _snapshot(objs, scale)

    def time_schedule(self, objs, scale, strategy):
        kc.schedule(self.snap, strategy)
