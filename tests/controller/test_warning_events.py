"""Issue 11: a warning that names an object (an unknown kaiwo.ai/ annotation, an unknown KaiwoQueue
field) reaches that object as a Warning Event, once, besides the log line."""
from __future__ import annotations

from tests.controller.kube import node, pod, queue, wait_until


def test_unknown_annotation_and_queue_field_become_events_on_their_objects(emulator, kube, make_controller):
    typo = pod("typo", annotations={"kaiwo.ai/gpu-fracton": "0.5"})
    q = queue("research", gpu_quota=2)
    q["spec"]["resources"]["gpu"]["limt"] = 4
    kube.create_all([node("n0"), typo, q])
    c = make_controller().start_background()
    wait_until(lambda: kube.events_for("typo", "KaiwoWarning") and kube.events_for("research", "KaiwoWarning"))
    turns = c.cycles
    wait_until(lambda: c.cycles >= turns + 3)
    c.events.flush(5)
    (event,) = kube.events_for("typo", "KaiwoWarning")
    assert event["type"] == "Warning" and event["involvedObject"]["kind"] == "Pod"
    assert "kaiwo.ai/gpu-fracton (did you mean kaiwo.ai/gpu-fraction?)" in event["message"]
    (event,) = kube.events_for("research", "KaiwoWarning")
    assert "spec.resources.gpu.limt: unknown field (did you mean limit?)" in event["message"]
