"""The controller's HTTP endpoints: /metrics (Prometheus exposition), /healthz and /readyz."""
from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.controller.kube import node, pod, queue, wait_until


def _get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def _samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_health_and_readiness(emulator, kube, make_controller):
    kube.create_all([node("n0"), queue("team", 2)])
    kube.create_all([pod("a", gpus=1, queue="team"), pod("b", gpus=1, queue="team"), pod("c", gpus=16)])
    emulator.inject({"method": "GET", "path": r"kaiwojobs\?", "status": 503})
    controller = make_controller(metrics_port=0, metrics_host="127.0.0.1").start_background()
    port = controller.server.port
    wait_until(lambda: next(i for i in controller.informers if i.kind == "Pod").synced.is_set())
    code, _, body = _get(port, "/readyz")
    assert code == 503 and "KaiwoJob" in body
    assert _get(port, "/healthz")[0] == 200   # alive, only not ready
    emulator.clear_faults()
    wait_until(lambda: _get(port, "/readyz")[0] == 200)
    wait_until(lambda: len(kube.bound()) == 2)
    wait_until(lambda: controller.binder.stats.results.get("bound") == 2)

    def metrics():
        code, ctype, text = _get(port, "/metrics")
        assert code == 200 and ctype.startswith("text/plain")
        return _samples(text)

    wait_until(lambda: metrics().get(("kaiwo_queue_allocated", (("queue", "team"), ("resource", "gpu")))) == 2000.0)
    m = metrics()
    assert m[("kaiwo_bindings_total", (("result", "bound"),))] == 2.0
    assert m[("kaiwo_leader", ())] == 1.0
    assert m[("kaiwo_cycle_duration_seconds_count", ())] >= 1
    assert m[("kaiwo_pods_pending", ())] == 1.0          # pod c: 16 GPUs never fit
    assert m[("kaiwo_cache_objects", (("resource", "Pod"),))] == 3.0
    assert ("kaiwo_binding_duration_seconds_count", ()) in m
    assert m[("kaiwo_watch_restarts_total", (("reason", "error"), ("resource", "KaiwoJob")))] >= 1
    code, _, body = _get(port, "/healthz")
    assert code == 200 and "leader: True" in body
    assert _get(port, "/nope")[0] == 404
