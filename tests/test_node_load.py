"""Node load statistics (kaiwo_core.monitoring.node_load): allocation joined with measurements,
stale or missing series neutral with a warning naming node and metric; values checked by hand."""
import numpy as np
import pytest

import kaiwo_core as kc
from kaiwo_core.monitoring.metrics_store import MetricsStore
from kaiwo_core.monitoring.node_load import node_load


@pytest.fixture
def snap():
    s = kc.Snapshot.from_arrays(["a", "b"], cpu=[100_000, 100_000], memory=[1 << 20, 1 << 20], gpus=[2, 2])
    s.state.dev_state[0] = 2            # a/gpu0 held whole
    s.state.dev_milli_free[0] = 0
    s.state.dev_milli_free[1] = 500     # a/gpu1 half shared
    s.state.dev_state[1] = 1
    s.state.node_cpu_free[0] -= 20_000
    return s


def fill(store, t, host, gpus, metric, values):
    sids = store.intern_many(metric, {"hostname": [host] * len(gpus), "gpu_id": [str(g) for g in gpus]})
    store.ingest(sids, np.asarray(values, float), timestamp=t)


def test_measured_and_allocated_columns(snap):
    store = MetricsStore(slots=16)
    for t in (1000.0, 1060.0):
        fill(store, t, "a", [0, 1], "gpu_gfx_activity", [90, 50])
        fill(store, t, "a", [0, 1], "gpu_used_vram", [96_000, 0])
        fill(store, t, "a", [0, 1], "gpu_junction_temperature", [80, 40])
        fill(store, t, "a", [0, 1], "gpu_package_power", [600, 150])
    nl = node_load(store, snap.cluster, snap.state, window=300)
    assert nl.dev_alloc_milli.tolist() == [1000, 500, 0, 0]
    assert nl.node_cpu_alloc.tolist() == [20_000, 0]
    assert nl.node_gpu_alloc.tolist() == [0.75, 0.0]
    assert nl.node_activity[0] == 70.0                   # (90 + 50) / 2
    assert nl.node_vram_frac[0] == pytest.approx(96_000 / (2 * snap.cluster.dev_mem_cap[0]))
    assert nl.node_temp_headroom[0] == pytest.approx(0.2)   # 1 - 80 / 100
    assert nl.node_power_headroom[0] == pytest.approx(0.2)  # 1 - 600 / 750
    assert nl.load[0] == pytest.approx(0.8)             # the largest pressure: temperature, power
    assert nl.measured.tolist() == [True, False]
    assert nl.load[1] == 0.0 and np.isnan(nl.node_activity[1])   # nothing measured: neutral


def test_stale_series_are_neutral_with_a_warning(snap):
    store = MetricsStore(slots=16)
    fill(store, 1000.0, "a", [0, 1], "gpu_gfx_activity", [100, 100])   # old: outside the window
    fill(store, 2000.0, "b", [0, 1], "gpu_gfx_activity", [10, 30])
    nl = node_load(store, snap.cluster, snap.state, window=300)
    assert np.isnan(nl.node_activity[0]) and nl.node_activity[1] == 20.0
    assert nl.load.tolist() == [0.0, pytest.approx(0.2)]
    assert any(w.startswith("node a: gpu_gfx_activity missing or stale for 2 of 2 GPUs") for w in nl.warnings)
    assert not any(w.startswith("node b: gpu_gfx_activity") for w in nl.warnings)
    # A metric nobody reports is one warning, not one per node.
    assert sum("gpu_package_power" in w for w in nl.warnings) == 1


def test_series_of_unknown_nodes_and_devices_are_ignored(snap):
    store = MetricsStore(slots=16)
    fill(store, 1000.0, "elsewhere", [0], "gpu_gfx_activity", [100])
    fill(store, 1000.0, "a", [7], "gpu_gfx_activity", [100])          # a has GPUs 0 and 1 only
    nl = node_load(store, snap.cluster, snap.state)
    assert not nl.measured.any() and nl.load.tolist() == [0.0, 0.0]


def test_refresh_after_new_devices_and_another_store(snap):
    # The id maps are extended as the store interns new devices, and rebuilt for another store.
    store = MetricsStore(slots=16)
    fill(store, 1000.0, "a", [0], "gpu_gfx_activity", [40])
    assert node_load(store, snap.cluster, snap.state).node_activity[0] == 40.0
    fill(store, 1060.0, "b", [1], "gpu_gfx_activity", [60])          # a new node and device
    fill(store, 1060.0, "a", [0], "gpu_gfx_activity", [40])
    nl = node_load(store, snap.cluster, snap.state, window=30)
    assert nl.node_activity.tolist() == [40.0, 60.0]
    other = MetricsStore(slots=16)
    fill(other, 1000.0, "b", [0], "gpu_gfx_activity", [10])          # device ids mean other devices
    nl = node_load(other, snap.cluster, snap.state)
    assert np.isnan(nl.node_activity[0]) and nl.node_activity[1] == 10.0
