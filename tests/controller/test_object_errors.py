"""The controller decodes every object inside the same guard as ``kaiwo schedule`` (issue 10): one
bad object is left out or rejected with its field and value, the cycle goes on, and the errors of
KaiwoQueues and KaiwoJobs name the field in their status and Events."""
from __future__ import annotations

from kaiwo.controller.cache import ClusterCache
from kaiwo.controller.events import EventRecorder
from kaiwo.controller.status import StatusWriter
from kaiwo_core import Snapshot, schedule
from tests.controller.kube import node, pod


def _cycle(cache: ClusterCache) -> dict:
    return schedule(cache.snapshot().snapshot, now=1.8e9).to_dict()


def test_cache_leaves_out_malformed_nodes_and_schedules_the_rest():
    cache = ClusterCache()
    huge = node("huge")
    huge["status"]["allocatable"]["amd.com/gpu"] = "1e12"  # once: a 3.6 TiB array
    listed = node("listed")
    listed["metadata"]["labels"] = ["amd.com/gpu.product-name"]
    cache.replace("Node", [node("n0"), huge, listed])
    cache.replace("Pod", [pod("p", gpus=1)])
    doc = _cycle(cache)
    assert [b["pod"] for b in doc["bindings"]] == ["default/p"]
    fields = {e["node"]: e["field"] for e in doc["invalidNodes"]}
    assert fields == {"huge": "status.allocatable.amd.com/gpu", "listed": "metadata.labels"}


def test_cache_reports_a_bad_priority_class_and_rejects_the_pods_that_name_it():
    cache = ClusterCache()
    cache.replace("Node", [node("n0")])
    bad = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "odd"},
           "value": "abc"}
    named = pod("named")
    named["spec"]["priorityClassName"] = "odd"
    cache.replace("PriorityClass", [bad])
    cache.replace("Pod", [named, pod("plain")])
    doc = _cycle(cache)
    assert [b["pod"] for b in doc["bindings"]] == ["default/plain"]
    (rej,) = doc["rejected"]
    assert rej["pod"] == "default/named" and rej["field"] == "spec.priorityClassName"
    assert "value" in rej["error"] and "abc" in rej["error"]
    assert doc["invalidPriorityClasses"] == [
        {"priorityclass": "odd", "field": "value", "error": "'abc': must be an integer"}]
    # The same guard and the same answer as a dump.
    assert Snapshot.from_objects([node("n0"), bad, named]).rejected[0].to_dict() == rej


class _Api:
    def __init__(self):
        self.job_patches, self.events = [], []

    def patch_job_status(self, ns, name, patch):
        self.job_patches.append(patch)

    def patch_queue_status(self, name, patch):
        self.job_patches.append(patch)

    def create_event(self, ns, body):
        self.events.append(body)


def test_invalid_job_and_queue_status_and_events_name_the_field():
    job = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoJob", "metadata": {"name": "j", "namespace": "ml"},
           "spec": {"replicas": 2, "minMembers": 5, "template": {"spec": {"containers": [{"name": "c"}]}}}}
    queue = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoQueue", "metadata": {"name": "q"},
             "spec": {"resources": {"gpu": {"quota": 1, "overQuotaWeight": float("nan")}}}}
    doc = schedule(Snapshot.from_objects([node("n0"), job, queue])).to_dict()
    api = _Api()
    writer = StatusWriter(api, EventRecorder(api))
    writer.jobs({"ml/j": job}, {}, doc)
    writer.queues({"q": queue}, doc)
    writer.flush(5)
    writer.shutdown()
    messages = [c["message"] for p in api.job_patches for c in p["conditions"]]
    assert "spec.minMembers: 5: larger than spec.replicas (2)" in messages
    assert any(m.startswith("spec.resources.gpu.overQuotaWeight: nan:") for m in messages), messages
    events = [e["message"] for e in api.events]
    assert "spec.minMembers: 5: larger than spec.replicas (2)" in events
    assert any(m.startswith("spec.resources.gpu.overQuotaWeight: nan:") for m in events), events
