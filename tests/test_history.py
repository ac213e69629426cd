"""History: the .npz round trip of a store, and loading from a fake Prometheus ``query_range`` API.

The fake server runs on 127.0.0.1 in a thread and answers ``/api/v1/query_range`` from a function
of (series, time), so the loaded samples can be checked exactly; it also records the requests, to
check that long ranges are split under the server's points-per-series limit.
"""
from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from kaiwo.data.make_example_scrapes import example_scrapes
from kaiwo_core.monitoring import history
from kaiwo_core.monitoring.exposition import split_scrapes
from kaiwo_core.monitoring.history import HistoryError, load, load_prometheus, save
from kaiwo_core.monitoring.metrics_store import MetricsStore


def example_store(slots=64):
    st_ = MetricsStore(slots)
    for ch in split_scrapes(example_scrapes().encode()):
        st_.ingest_text(ch.text, ch.timestamp)
    st_.pod_info_from_kube_labels()
    return st_


def test_npz_round_trip(tmp_path):
    st_ = example_store()
    path = save(st_, tmp_path / "h.npz")
    back = load(path)
    assert back.n_series == st_.n_series and back.filled == st_.filled
    o1, t1 = st_.ordered_slots()
    o2, t2 = back.ordered_slots()
    np.testing.assert_array_equal(t1, t2)
    ids = back.intern_keys([(name, dict(items)) for name, items in st_.keys])
    np.testing.assert_array_equal(back.values[np.ix_(o2, ids)], st_.values[np.ix_(o1, np.arange(st_.n_series))])
    assert back.queues.names and back.pod_queue[back.pods.index["batch/eval-3"]] >= 0
    assert back.queues.names[back.pod_queue[back.pods.index["batch/eval-3"]]] == "batch"
    # compact: far below the in-memory float64 buffer of the same scrapes
    assert path.stat().st_size < 0.5 * st_.filled * st_.n_series * 8
    agg1 = st_.aggregate("gpu_gfx_activity", "mean", 600, "queue")
    agg2 = back.aggregate("gpu_gfx_activity", "mean", 600, "queue")
    assert agg1.names == agg2.names and np.array_equal(agg1.values, agg2.values)


def test_load_appends_only_newer_scrapes(tmp_path):
    st_ = example_store()
    path = save(st_, tmp_path / "h.npz")
    target = MetricsStore(64)
    target.ingest_text("other 1\n", st_.ordered_slots()[1][7])  # holds a scrape from the middle
    load(path, store=target)
    ts = target.ordered_slots()[1]
    assert ts[0] == st_.ordered_slots()[1][7] and len(ts) == 16 - 7


def test_bad_files(tmp_path):
    p = tmp_path / "x.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(HistoryError, match="x.npz: not a readable .npz"):
        load(p)
    np.savez(tmp_path / "y.npz", format=np.array("other/9"))
    with pytest.raises(HistoryError, match="format 'other/9'"):
        load(tmp_path / "y.npz")


# ------------------------------------------------------------------------------ Prometheus

SERIES = [{"__name__": "gpu_gfx_activity", "hostname": "n1", "gpu_id": "0", "namespace": "ns", "pod": "a"},
          {"__name__": "gpu_gfx_activity", "hostname": "n1", "gpu_id": "1"}]


def value_at(j: int, t: float) -> float:
    return float((t // 60) % 100 + j)


class _FakePrometheus(BaseHTTPRequestHandler):
    requests: list = []
    mode = "ok"

    def do_GET(self):  # noqa: N802 - http.server API
        url = urllib.parse.urlparse(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        type(self).requests.append((url.path, q))
        if self.mode == "bad_query":
            return self._send(400, {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"})
        if self.mode == "vector":
            return self._send(200, {"status": "success", "data": {"resultType": "vector", "result": []}})
        if url.path != "/api/v1/query_range":
            return self._send(404, {"status": "error", "error": "not found"})
        start, end, step = float(q["start"]), float(q["end"]), float(q["step"])
        times = np.arange(start, end + step / 2, step)
        result = []
        for j, labels in enumerate(SERIES):
            if q["query"] not in (labels["__name__"], f'{labels["__name__"]}{{hostname="n1"}}'):
                continue
            result.append({"metric": labels, "values": [[t, str(value_at(j, t))] for t in times
                                                        if not (j == 1 and int(t) % 600 == 0)]})
        self._send(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})

    def _send(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def prometheus():
    _FakePrometheus.requests, _FakePrometheus.mode = [], "ok"
    srv = HTTPServer(("127.0.0.1", 0), _FakePrometheus)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", _FakePrometheus
    srv.shutdown()
    srv.server_close()


def test_load_prometheus_aligns_and_chunks(prometheus, monkeypatch):
    url, fake = prometheus
    monkeypatch.setattr(history, "MAX_POINTS", 50)   # force several requests
    start, step = 1_700_000_400.0, 60.0
    end = start + 119 * step                          # 120 points
    st_ = load_prometheus(url, ["gpu_gfx_activity"], start, end, step, selector='hostname="n1"')
    assert len(fake.requests) == 3 and all(p == "/api/v1/query_range" for p, _ in fake.requests)
    assert fake.requests[0][1]["query"] == 'gpu_gfx_activity{hostname="n1"}'
    assert float(fake.requests[1][1]["start"]) == start + 50 * step   # no overlap, no gap
    order, ts = st_.ordered_slots()
    np.testing.assert_array_equal(ts, start + step * np.arange(120))
    a = st_.intern("gpu_gfx_activity", {k: v for k, v in SERIES[0].items() if k != "__name__"})
    b = st_.intern("gpu_gfx_activity", {k: v for k, v in SERIES[1].items() if k != "__name__"})
    assert st_.n_series == 2 and st_.pods.names == ["ns/a"]
    np.testing.assert_array_equal(st_.values[order, a], [value_at(0, t) for t in ts])
    want_b = [np.nan if int(t) % 600 == 0 else value_at(1, t) for t in ts]
    np.testing.assert_array_equal(st_.values[order, b], want_b)     # its gaps stay gaps
    agg = st_.aggregate("gpu_gfx_activity", "max", 3600, "node")
    assert agg.names == ["n1"] and agg.values[0] == max(value_at(j, t) for j in (0, 1) for t in ts[-60:])


def test_prometheus_errors_name_the_query(prometheus):
    url, fake = prometheus
    fake.mode = "bad_query"
    with pytest.raises(HistoryError, match=r"query=up: HTTP 400 .*parse error at char 3"):
        load_prometheus(url, ["up"], 0, 60, 60)
    fake.mode = "vector"
    with pytest.raises(HistoryError, match="expected a matrix result"):
        load_prometheus(url, ["up"], 0, 60, 60)
    with pytest.raises(HistoryError, match="cannot reach the server"):
        load_prometheus("http://127.0.0.1:9", ["up"], 0, 60, 60, timeout=2)
    with pytest.raises(HistoryError, match="need step > 0"):
        history.query_range(url, "up", 10, 0, 60)
