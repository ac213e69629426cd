"""Dynamic allocator: the compiled recommendation kernel against its reference, and the policies.

``_recommend_kernel`` must give the reference's decision, target and percentile for every pod on
random usage histories (hypothesis). Scenarios check each decision (increase, decrease, keep, new,
no data, cooldown), bounds, the adjustment history and usage time lines read from a store.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiwo.data.make_example_scrapes import example_scrapes
from kaiwo_core.monitoring.efficiency import Allocations
from kaiwo_core.monitoring.exposition import split_scrapes
from kaiwo_core.monitoring.metrics_store import MetricsStore
from kaiwo_core.monitoring.rightsizing import (COOLDOWN, DECREASE, DEFAULT_POLICIES, INCREASE, KEEP, NEW, NO_DATA,
                                    ResourcePolicy, Rightsizer, usage_from_store)
from tests.naive_monitoring import naive_recommend

POLICIES = st.builds(
    ResourcePolicy, quantile=st.sampled_from([0.5, 0.9, 0.95, 1.0]), margin=st.sampled_from([0.0, 0.15, 0.3]),
    minimum=st.sampled_from([0.0, 10.0, 100.0]), maximum=st.sampled_from([math.inf, 1000.0, 300.0]),
    step=st.sampled_from([1.0, 10.0, 50.0, 0.5]), up=st.sampled_from([0.0, 0.05]),
    down=st.sampled_from([0.1, 0.15, 0.5]), min_samples=st.integers(1, 6))


@settings(max_examples=150, deadline=None)
@given(POLICIES, st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(0, 10))
def test_kernel_matches_reference(policy, seed, n_pods, w):
    rng = np.random.default_rng(seed)
    usage = rng.choice([0.0, 5.0, 120.0, 250.0, 999.0, np.nan], (n_pods, w)) if rng.random() < 0.5 \
        else np.round(rng.gamma(2.0, 100.0, (n_pods, w)), 2)
    usage[rng.random((n_pods, w)) < 0.2] = np.nan
    current = rng.choice([np.nan, 0.0, 100.0, 250.0, 500.0, 1000.0], n_pods)
    last = rng.choice([-np.inf, 0.0, 3000.0, 3500.0], n_pods)
    rs = Rightsizer({"cpu": policy}, cooldown=1000.0)
    pods = [f"p{i}" for i in range(n_pods)]
    for i, p in enumerate(pods):
        if np.isfinite(last[i]):
            rs._last[(p, "cpu")] = float(last[i])
    rec = rs.recommend_arrays(pods, {"cpu": usage}, {"cpu": current}, now=4000.0).by_resource["cpu"]
    ref = naive_recommend(usage.tolist(), current.tolist(), last.tolist(), 4000.0, policy, 1000.0)
    assert rec.code.tolist() == [r[0] for r in ref]
    assert rec.samples.tolist() == [r[3] for r in ref]
    np.testing.assert_array_equal(rec.target, np.array([r[1] for r in ref]))
    np.testing.assert_array_equal(rec.percentile, np.array([r[2] for r in ref]))
    for i in range(n_pods):       # every decision can be explained
        assert rec.reason(i)


def usage_rows(*rows, w=20):
    return np.array([np.full(w, v, float) if np.isscalar(v) else np.asarray(v, float) for v in rows])


def test_each_decision():
    pol = ResourcePolicy(quantile=0.95, margin=0.0, minimum=100, maximum=1000, step=50, up=0.05,
                         down=0.15, min_samples=5)
    rs = Rightsizer({"gpu": pol}, cooldown=600)
    usage = usage_rows(900, 200, 480, 300, [300] * 3 + [np.nan] * 17, 20, 2000)
    current = np.array([500, 1000, 500, np.nan, 500, 500, 500], float)
    rec = rs.recommend_arrays(list("abcdefg"), {"gpu": usage}, {"gpu": current}, now=0).by_resource["gpu"]
    assert rec.code.tolist() == [INCREASE, DECREASE, KEEP, NEW, NO_DATA, DECREASE, INCREASE]
    assert rec.target[:4].tolist() == [900, 200, 500, 300]
    assert rec.target[5] == 100 and "raised to the minimum 100" in rec.reason(5)
    assert rec.target[6] == 1000 and "capped at the maximum 1000" in rec.reason(6)
    assert "3 usage samples, 5 needed" == rec.reason(4)
    assert "within the hysteresis band" in rec.reason(2)
    assert rec.reason(1).endswith("was 1000m-GPU/device (-80%)")


def test_apply_records_history_and_cooldown():
    rs = Rightsizer({"cpu": ResourcePolicy(margin=0.0, step=10, min_samples=1)}, cooldown=3600)
    pods = ["ns/a", "ns/b"]
    recs = rs.recommend_arrays(pods, {"cpu": usage_rows(100, 4000, w=5)}, {"cpu": np.array([1000.0, 4000.0])}, 0)
    done = rs.apply(recs)
    assert [(a.pod, a.old, a.new) for a in done] == [("ns/a", 1000.0, 100.0)]
    assert "p95 of 5 samples 100m" in done[0].reason and list(rs.history) == done
    again = rs.recommend_arrays(pods, {"cpu": usage_rows(10, 4000, w=5)}, {"cpu": np.array([100.0, 4000.0])}, 1800)
    assert again.by_resource["cpu"].code.tolist() == [COOLDOWN, KEEP]
    later = rs.recommend_arrays(pods, {"cpu": usage_rows(10, 4000, w=5)}, {"cpu": np.array([100.0, 4000.0])}, 3601)
    assert later.by_resource["cpu"].code.tolist() == [DECREASE, KEEP]


def test_policy_and_input_validation():
    with pytest.raises(ValueError, match="quantile = 1.5"):
        ResourcePolicy(quantile=1.5)
    with pytest.raises(ValueError, match="maximum = 5"):
        ResourcePolicy(minimum=10, maximum=5)
    with pytest.raises(ValueError, match="step = 0"):
        ResourcePolicy(step=0)
    with pytest.raises(ValueError, match="unknown resource 'disk'"):
        Rightsizer({"disk": ResourcePolicy()})
    rs = Rightsizer()
    with pytest.raises(ValueError, match=r"usage\['cpu'\] has shape \(3,\)"):
        rs.recommend_arrays(["a"], {"cpu": np.zeros(3)}, {}, 0)
    assert rs.with_policy("cpu", margin=0.5).policies["cpu"].margin == 0.5
    assert rs.policies["cpu"] == DEFAULT_POLICIES["cpu"]


def example_store():
    st_ = MetricsStore(64)
    for ch in split_scrapes(example_scrapes().encode()):
        st_.ingest_text(ch.text, ch.timestamp)
    return st_


def test_usage_from_store_and_recommendations_on_the_example():
    st_ = example_store()
    alloc = Allocations.from_store(st_, window=3600)
    usage, current = usage_from_store(st_, alloc, window=3600)
    row = {p: i for i, p in enumerate(alloc.pods)}
    llm = row["research/llm-pretrain-0"]
    assert usage["gpu"].shape == (len(alloc.pods), 16)
    assert 850 < np.nanmean(usage["gpu"][llm]) < 980          # ~92% of each of its 4 GPUs, in milli
    assert current["gpu"][llm] == 1000 and current["cpu"][llm] == 32000
    chat = row["serving/chat-api-0"]
    assert 1300 < np.nanmean(usage["cpu"][chat]) < 1700     # 1.5 cores of 8 requested
    assert np.isnan(usage["cpu"][chat][0])                   # a counter gives no rate at its first sample
    recs = Rightsizer().recommend(st_, alloc, window=3600)
    by = recs.by_resource
    assert by["gpu"].code[row["research/notebook-jin"]] == DECREASE
    assert by["gpu"].target[row["research/notebook-jin"]] == 100   # the 0.1 minimum
    assert by["cpu"].code[chat] == DECREASE and by["gpu"].code[llm] == KEEP
    doc = recs.to_dict()
    assert {p["pod"] for p in doc["pods"]} >= {"research/notebook-jin", "serving/chat-api-0"}
    assert doc["summary"]["gpu"]["decrease"] >= 2
