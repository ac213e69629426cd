"""Numba kernels of the metrics collector against their plain-Python references, and the store.

Every kernel of ``kaiwo_core.monitoring.metrics_kernels`` is compared with ``tests.naive_monitoring`` on random
ring buffers with missing samples (hypothesis): max/min/last/count/quantiles must be identical,
means and rates equal to 1e-12 relative (same summation order, so in practice identical). The
store is checked for ring wrap-around, windows, selectors, group keys, pod info and pruning.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiwo_core.monitoring import metrics_kernels as mk
from kaiwo_core.monitoring.metrics_store import (Matcher, MetricsStore, SelectorError, StoreError,
                                      parse_selector)
from tests.naive_monitoring import (naive_group_slot_sum, naive_group_window, naive_quantile,
                                    naive_series_window, naive_write)

STATS = ["mean", "max", "min", "p50", "p95", "rate", "last", "count"]
EXACT = {"max", "min", "last", "count", "p50", "p95"}


@st.composite
def ring(draw, max_slots=12, max_series=9):
    """(values [T, S] with NaNs and repeated values, time-ordered slot window, timestamps, sids)."""
    t = draw(st.integers(1, max_slots))
    s = draw(st.integers(1, max_series))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    values = rng.choice([0.0, 1.0, 2.5, -3.0, 100.0, np.nan], size=(t, s)) if draw(st.booleans()) \
        else np.round(rng.normal(50, 30, (t, s)), 3)
    values[rng.random((t, s)) < draw(st.sampled_from([0.0, 0.2, 0.6]))] = np.nan
    # a window: some slots in some ring order (the kernels take them already time-ordered)
    w = draw(st.integers(0, t))
    slots = rng.permutation(t)[:w].astype(np.int64)
    ts = np.cumsum(rng.choice([1.0, 15.0, 60.0], size=w))
    sids = rng.integers(0, s, draw(st.integers(0, 2 * s))).astype(np.int64)
    return np.ascontiguousarray(values), slots, ts, sids


def check(got, ref, stat):
    got = np.asarray(got, float)
    ref = np.asarray(ref, float)
    assert got.shape == ref.shape
    assert np.array_equal(np.isnan(got), np.isnan(ref)), (got, ref)
    if stat in EXACT:
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)


def split(stat):
    code = {"p50": ("quantile", 0.5), "p95": ("quantile", 0.95)}
    return code.get(stat, (stat, 0.0))


@settings(max_examples=150, deadline=None)
@given(ring(), st.sampled_from(STATS))
def test_series_window_matches_reference(r, stat):
    values, slots, ts, sids = r
    got = mk.series_window(values, slots, ts, sids, stat)
    name, q = split(stat)
    check(got, naive_series_window(values.tolist(), slots.tolist(), ts.tolist(), sids.tolist(), name, q), stat)


@settings(max_examples=150, deadline=None)
@given(ring(), st.sampled_from(STATS), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_group_window_matches_reference(r, stat, n_groups, seed):
    values, slots, ts, sids = r
    gkey = np.random.default_rng(seed).integers(-1, n_groups, len(sids)).astype(np.int64)
    got, cnt = mk.group_window(values, slots, ts, sids, gkey, n_groups, stat)
    name, q = split(stat)
    ref, rcnt = naive_group_window(values.tolist(), slots.tolist(), ts.tolist(), sids.tolist(),
                                   gkey.tolist(), n_groups, name, q)
    check(got, ref, stat)
    assert cnt.tolist() == rcnt


@settings(max_examples=100, deadline=None)
@given(ring(), st.booleans(), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_group_slot_sum_matches_reference(r, counter, n_groups, seed):
    values, slots, ts, sids = r
    rng = np.random.default_rng(seed)
    gkey = rng.integers(-1, n_groups, len(sids)).astype(np.int64)
    scale = rng.choice([1.0, 0.5, 10.0], len(sids))
    got = mk.group_slot_sum(values, slots, ts, sids, gkey, n_groups, scale, counter)
    ref = naive_group_slot_sum(values.tolist(), slots.tolist(), ts.tolist(), sids.tolist(), gkey.tolist(),
                               n_groups, scale.tolist(), counter)
    check(got, np.array(ref, float).reshape(got.shape), "sum")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, 1.0, 1.0, 2.0])), min_size=1, max_size=60),
       st.floats(0.0, 1.0))
def test_quantile_selection_matches_sorting(xs, q):
    got = mk.quantile(xs, q)
    assert got == naive_quantile(xs, q)
    assert got == pytest.approx(float(np.quantile(xs, q)), rel=1e-12, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 20), st.integers(0, 2**32 - 1), st.booleans())
def test_write_kernel_matches_reference(n, seed, fresh):
    rng = np.random.default_rng(seed)
    s = 8
    row = rng.normal(size=s)
    stamp = rng.integers(0, 3, s).astype(np.int64)
    sids = rng.integers(0, s, n).astype(np.int64)
    vals = rng.normal(size=n)
    ref_row, ref_stamp, ref_dups = naive_write(row.tolist(), sids.tolist(), vals.tolist(), stamp.tolist(), 2, fresh)
    dup = np.empty(n, np.int64)
    nd = mk._write_kernel(row, sids, vals, stamp, 2, fresh, dup)
    assert dup[:nd].tolist() == ref_dups
    np.testing.assert_array_equal(row, np.array(ref_row))
    assert stamp.tolist() == ref_stamp


def test_rate_handles_counter_reset():
    v = np.array([[10.0], [20.0], [5.0], [15.0]])
    # increase 10, reset (+5), +10 = 25 over 3 intervals of 10 s
    assert mk.series_window(v, [0, 1, 2, 3], [0.0, 10.0, 20.0, 30.0], [0], "rate")[0] == 25.0 / 30.0
    assert math.isnan(mk.series_window(v, [0], [0.0], [0], "rate")[0])


def test_wrapper_validation_names_the_argument():
    v = np.zeros((3, 2))
    with pytest.raises(ValueError, match="sids: series index out of range"):
        mk.series_window(v, [0], [0.0], [5])
    with pytest.raises(ValueError, match="slots: index out of range"):
        mk.series_window(v, [3], [0.0], [0])
    with pytest.raises(ValueError, match="ts: window slots must be in time order"):
        mk.series_window(v, [0, 1], [5.0, 1.0], [0])
    with pytest.raises(ValueError, match="unknown stat 'median'"):
        mk.series_window(v, [0], [0.0], [0], "median")
    with pytest.raises(ValueError, match="quantile = 2"):
        mk.series_window(v, [0], [0.0], [0], "quantile", 2)
    with pytest.raises(ValueError, match="gkey: group 3 >= n_groups = 2"):
        mk.group_window(v, [0], [0.0], [0], [3], 2)
    with pytest.raises(ValueError, match="values: expected a C-contiguous float64"):
        mk.series_window(v.astype(np.float32), [0], [0.0], [0])


# ------------------------------------------------------------------------------------- store

class _Scrape:
    """Text of one scrape of 2 nodes x 4 GPUs given a value per (node, gpu)."""

    def format(self, **vals) -> str:
        return "\n".join(
            f'gpu_gfx_activity{{hostname="n{n}",gpu_id="{g}",gpu_partition_id="0",namespace="ns",'
            f'pod="p{n}{g // 2}"}} {vals[f"v{n}{g}"]}' for n in range(2) for g in range(4))


def small_store(slots=8):
    st_ = MetricsStore(slots=slots, series_capacity=2)  # tiny capacity: growth is exercised
    return st_, _Scrape()


def test_ring_wraps_and_windows_are_time_ordered():
    st_, text = small_store(slots=4)
    for k in range(7):
        vals = {f"v{n}{g}": 10 * k + n + g for n in range(2) for g in range(4)}
        st_.ingest_text(text.format(**vals) + "\n", 100.0 + 10 * k)
    _, ts = st_.ordered_slots()
    assert ts.tolist() == [130.0, 140.0, 150.0, 160.0]      # the 4 newest
    w_slots, w_ts = st_.window(25)
    assert w_ts.tolist() == [140.0, 150.0, 160.0]
    sid = st_.intern("gpu_gfx_activity", {"hostname": "n1", "gpu_id": "3", "gpu_partition_id": "0",
                                          "namespace": "ns", "pod": "p11"})
    assert st_.values[w_slots, sid].tolist() == [44.0, 54.0, 64.0]
    assert st_.latest == 160.0 and st_.n_series == 8


def test_aggregate_by_node_queue_cluster_matches_reference():
    st_, text = small_store()
    rng = np.random.default_rng(3)
    for k in range(6):
        vals = {f"v{n}{g}": float(rng.integers(0, 100)) for n in range(2) for g in range(4)}
        st_.ingest_text(text.format(**vals) + "\n", 1000.0 + 60 * k)
    st_.set_pod_info(["ns/p00", "ns/p01", "ns/p10", "ns/p11"], ["qa", "qb", "qa", None])
    order, ts = st_.ordered_slots()
    rows = st_.values[order].tolist()
    for by in ("node", "queue", "cluster", "pod", "device"):
        for stat in ("mean", "p95", "max"):
            agg = st_.aggregate("gpu_gfx_activity", stat, window=200, by=by)
            sids = st_.select("gpu_gfx_activity")
            gkey, names = st_.group_keys(sids, by)
            idx = [k for k, t in enumerate(ts) if ts[-1] - 200 < t]
            name, q = split(stat)
            ref, cnt = naive_group_window(rows, idx, [ts[k] for k in idx], sids.tolist(), gkey.tolist(),
                                          len(names), name, q)
            want = {names[g]: v for g, v in enumerate(ref) if cnt[g]}
            assert dict(zip(agg.names, agg.values.tolist())) == pytest.approx(want, rel=1e-12), (by, stat)
    q = st_.aggregate("gpu_gfx_activity", "mean", 200, "queue")
    assert q.names == ["qa", "qb"]       # p11 has no queue: left out of every queue


def test_selectors():
    st_, text = small_store()
    st_.ingest_text(text.format(**{f"v{n}{g}": 1 for n in range(2) for g in range(4)}) + "\n", 1.0)
    assert len(st_.select("gpu_gfx_activity", 'hostname="n1"')) == 4
    assert len(st_.select("gpu_gfx_activity", {"hostname": "n1", "gpu_id": "2"})) == 1
    assert len(st_.select("gpu_gfx_activity", 'gpu_id=~"[01]", hostname!="n0"')) == 2
    assert len(st_.select("gpu_gfx_activity", '{pod!~"p0.*"}')) == 4
    assert len(st_.select("gpu_gfx_activity", 'missing=""')) == 8      # absent label = ""
    assert len(st_.select("gpu_gfx_activity", 'missing!=""')) == 0
    assert len(st_.select("nope")) == 0
    assert parse_selector('a="x\\"y", b=~"gpu-\\d+"') == (Matcher("a", "=", 'x"y'), Matcher("b", "=~", "gpu-\\d+"))
    with pytest.raises(SelectorError, match="invalid regular expression"):
        parse_selector('a=~"("')
    with pytest.raises(SelectorError, match="cannot parse at character 1"):
        parse_selector("a=x")
    with pytest.raises(SelectorError, match="expected ','"):
        parse_selector('a="x" b="y"')


def test_ingest_arrays_validation_and_duplicates():
    st_ = MetricsStore(slots=4)
    sids = st_.intern_many("m", {"i": [0, 1, 2]})
    rep = st_.ingest(np.array([sids[0], sids[1], sids[0]]), [1.0, 2.0, 3.0], 10.0)
    assert rep.samples == 2 and rep.duplicates == 1
    assert st_.values[0, sids[0]] == 1.0 and math.isnan(st_.values[0, sids[2]])
    with pytest.raises(StoreError, match="series id 7 is not interned"):
        st_.ingest([7], [1.0], 11.0)
    with pytest.raises(StoreError, match="not a finite"):
        st_.ingest(sids, [1.0, 2.0, 3.0], float("nan"))
    with pytest.raises(StoreError, match=r"\(2,\) values for \(3,\)"):
        st_.ingest(sids, [1.0, 2.0], 12.0)


def test_prune_drops_dead_series_and_keeps_ids_of_pods():
    st_ = MetricsStore(slots=2)
    st_.ingest_text('a{pod="x"} 1\nb{pod="y"} 2\n', 1.0)
    st_.ingest_text('b{pod="y"} 3\n', 2.0)
    st_.ingest_text('b{pod="y"} 4\nc 5\n', 3.0)   # the slot with a's sample is overwritten
    keep = st_.prune()
    assert [st_.keys[i][0] for i in range(st_.n_series)] == ["b", "c"] and keep.tolist() == [1, 2]
    assert st_.pods.index == {"x": 0, "y": 1}
    rep = st_.ingest_text('b{pod="y"} 6\nc 7\n', 4.0)   # the hash table was rebuilt with new ids
    assert rep.new_series == 0 and rep.samples == 2
    assert st_.values[st_.ordered_slots()[0][-1], st_.intern("c", {})] == 7.0
