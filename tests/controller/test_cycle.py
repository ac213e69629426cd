"""Whole cycles against the emulator: objects in; bindings, annotations, ConfigMaps, status and
events out -- and the decisions equal to ``kaiwo schedule`` on the same cluster."""
from __future__ import annotations

import json
from importlib.resources import files

import yaml

from kaiwo.controller.binder import config_map_name, device_env
from kaiwo_core import Snapshot, schedule
from kaiwo_core.model.cluster import cluster_from_nodes
from kaiwo_core.scheduling.gangs import expand_jobs
from kaiwo_core.model.requests import ASSIGNMENT_KEYS, pod_request, priority_classes
from tests.controller.kube import assignment, device_usage, node, pod, wait_until

NOW = 1_800_000_000.0  # a fixed "now" for the pods' age, so both sides decide identically


def _example_objects() -> list[dict]:
    return list(yaml.safe_load_all((files("kaiwo") / "data" / "mi300x-example.yaml").read_text()))


def _cluster_dump(kube) -> list[dict]:
    """What ``kubectl get nodes,pods,priorityclasses,kaiwoqueues,kaiwojobs -A -o yaml`` would give."""
    core, custom = kube.core, kube.custom
    from kaiwo.controller.api import GROUP, VERSION, read_json
    objs = []
    for kind, items in (("Node", read_json(core.list_node(_preload_content=False))["items"]),
                        ("Pod", kube.pods()),
                        ("PriorityClass", read_json(kube.scheduling.list_priority_class(_preload_content=False))["items"]),
                        ("KaiwoQueue", read_json(custom.list_cluster_custom_object(GROUP, VERSION, "kaiwoqueues",
                                                                                    _preload_content=False))["items"]),
                        ("KaiwoJob", read_json(custom.list_cluster_custom_object(GROUP, VERSION, "kaiwojobs",
                                                                                  _preload_content=False))["items"])):
        objs += [dict(o, kind=kind) for o in items]
    return objs


def _canon(entries: list[dict]) -> list[str]:
    return sorted(json.dumps(e, sort_keys=True) for e in entries)


def test_example_cluster_cycle_matches_kaiwo_schedule_and_writes_everything(emulator, kube, make_controller):
    objs = _example_objects()
    kube.create_all(objs)
    # The KaiwoJob's pods as the controller creates them, so both sides see the same pods.
    jobs = [o for o in objs if o["kind"] == "KaiwoJob"]
    created, errors = expand_jobs(jobs, [o for o in objs if o["kind"] == "Pod"])
    assert not errors and created
    for p in created:
        p["metadata"].pop("creationTimestamp", None)
        kube.create(p)
    dump = _cluster_dump(kube)
    expected = schedule(Snapshot.from_objects(dump), now=NOW).to_dict()
    assert expected["bindings"] and expected["pending"] and expected["rejected"]

    controller = make_controller(now=lambda: NOW)
    report = controller.run_once(timeout=30)
    got = report.doc
    for key in ("bindings", "pending", "rejected", "queues", "invalidQueues", "invalidJobs"):
        assert _canon(got[key]) == _canon(expected[key]), key
    assert report.created_pods == 0  # the job's pods existed already

    # Bindings happened, each once, with the decided devices in the annotation.
    stats = emulator.stats()
    bound = kube.bound()
    nodes = {n["metadata"]["name"]: n for n in dump if n["kind"] == "Node"}
    cluster = cluster_from_nodes(list(nodes.values()))
    classes = priority_classes([o for o in dump if o["kind"] == "PriorityClass"])
    cms = {}
    for ns in {b["pod"].split("/")[0] for b in expected["bindings"]}:
        cms.update({f"{ns}/{k}": v for k, v in kube.config_maps(ns).items()})
    for b in expected["bindings"]:
        p = bound[b["pod"]]
        assert p["spec"]["nodeName"] == b["node"] and stats["binds"][b["pod"]] == 1
        # the annotation holds its own keys; the output adds the devices' absolute sizes
        assert assignment(p) == [{k: d[k] for k in ASSIGNMENT_KEYS} for d in b["devices"]]
        ns, name = b["pod"].split("/")
        env = device_env(cluster, cluster.index(b["node"]), pod_request(p, classes).kind, b["devices"])
        cm = cms.get(f"{ns}/{config_map_name(name)}")
        if env is None:
            assert cm is None, f"{b['pod']}: a whole-GPU or CPU pod got a ConfigMap"
        else:
            assert cm["data"] == env
            assert cm["metadata"]["ownerReferences"][0]["uid"] == p["metadata"]["uid"]
        assert kube.events_for(name, "Scheduled"), b["pod"]
    assert not device_usage(bound, nodes)
    # The running pod kept its node and was never bound again.
    assert "research/llm-pretrain-0" not in stats["binds"]

    # Rejected and pending pods stay visible: an Event and the PodScheduled condition, with reasons.
    for entry, reason in [(r, "SchedulerError") for r in expected["rejected"]] + \
                         [(p, "Unschedulable") for p in expected["pending"]]:
        ns, name = entry["pod"].split("/")
        pod_now = kube.pod(ns, name)
        assert not pod_now["spec"].get("nodeName")
        why = entry.get("field") or entry.get("reason")
        events = kube.events_for(name, "FailedScheduling")
        assert events and why in events[-1]["message"], (entry, events)
        (cond,) = [c for c in pod_now["status"]["conditions"] if c["type"] == "PodScheduled"]
        assert cond["status"] == "False" and cond["reason"] == reason and why in cond["message"]

    # Queue status: what the cycle computed, per queue.
    for q in expected["queues"]:
        if q["name"] == "default":
            continue  # implicit queue: there is no object to write to
        status = kube.queue(q["name"])["status"]
        assert {k: status[k] for k in ("deserved", "fairShare", "allocated", "pendingPods")} == \
            {k: q[k] for k in ("deserved", "fairShare", "allocated", "pendingPods")}
        assert status["conditions"][0]["type"] == "Valid" and status["conditions"][0]["status"] == "True"
    job = kube.job("research", "sweep")
    assert job["status"]["replicas"] == 2 and job["status"]["phase"] in ("Running", "Pending")


def test_kaiwo_jobs_get_their_pods_and_are_placed_all_or_nothing(emulator, kube, make_controller):
    kube.create_all([node("n0"), node("n1")])
    template = {"metadata": {"labels": {"app": "trainer"}},
                "spec": {"containers": [{"name": "t", "image": "rocm/pytorch",
                                         "resources": {"limits": {"cpu": 8, "memory": "64Gi"}}}]}}
    fits = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoJob",
            "metadata": {"name": "fits", "namespace": "ml"},
            "spec": {"replicas": 3, "minMembers": 3, "gpusPerReplica": 4, "template": template}}
    too_big = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoJob",
               "metadata": {"name": "too-big", "namespace": "ml"},
               "spec": {"replicas": 2, "gpusPerReplica": 8, "template": template}}
    kube.create_all([fits, too_big])
    controller = make_controller().start_background()

    def done():
        pods = kube.pods("ml")
        bound = [p for p in pods if p["spec"].get("nodeName")]
        return len(pods) == 5 and len(bound) == 3 and kube.job("ml", "too-big").get("status", {}).get("phase")

    wait_until(done, describe=lambda: f"pods {[(p['metadata']['name'], p['spec'].get('nodeName')) for p in kube.pods('ml')]}")
    pods = {p["metadata"]["name"]: p for p in kube.pods("ml")}
    for name in ("fits-0", "fits-1", "fits-2"):
        p = pods[name]
        assert p["spec"]["nodeName"] and len(assignment(p)) == 4
        assert p["metadata"]["ownerReferences"][0]["name"] == "fits"
        assert p["spec"]["containers"][0]["envFrom"] == [{"configMapRef": {"name": config_map_name(name), "optional": True}}]
        assert p["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "8"
    # 3 x 4 GPUs took 12 of 16: the 2 x 8 gang cannot have both members, so it has none.
    assert not pods["too-big-0"]["spec"].get("nodeName") and not pods["too-big-1"]["spec"].get("nodeName")
    wait_until(lambda: kube.job("ml", "fits").get("status", {}).get("phase") == "Running")
    status = kube.job("ml", "too-big")["status"]
    assert status["phase"] == "Pending" and status["scheduled"] == 0 and status["created"] == 2
    (sched,) = [c for c in status["conditions"] if c["type"] == "Scheduled"]
    assert sched["status"] == "False" and "gang" in sched["message"]
    assert emulator.stats()["binds"].keys() == {"ml/fits-0", "ml/fits-1", "ml/fits-2"}


def test_capacity_returns_when_pods_leave_or_finish(emulator, kube, make_controller):
    kube.create_all([node("n0", gpus=2)])
    kube.create_all([pod(f"p{i}", gpus=1) for i in range(4)])
    controller = make_controller().start_background()
    wait_until(lambda: len(kube.bound()) == 2)
    waiting = sorted(set(f"default/p{i}" for i in range(4)) - set(kube.bound()))
    wait_until(lambda: all(kube.events_for(w.split("/")[1], "FailedScheduling") for w in waiting))
    first, second = sorted(kube.bound())
    kube.delete_pod("default", first.split("/")[1])               # deleted: its GPU comes back
    wait_until(lambda: len(kube.bound()) == 2 and first not in kube.bound())
    kube.patch_pod_status("default", second.split("/")[1], {"phase": "Succeeded"})  # finished too
    wait_until(lambda: all(k in kube.bound() for k in waiting))
    bound = kube.bound()
    live = {k: v for k, v in bound.items() if v.get("status", {}).get("phase") != "Succeeded"}
    assert not device_usage(live, {"n0": node("n0", gpus=2)})
    assert all(n == 1 for n in emulator.stats()["binds"].values())
    assert controller.cache.counts()["Pod"] == 3


def test_bound_pods_are_charged_and_never_bound_again(emulator, kube, make_controller):
    """Pods placed by another scheduler (no annotation) and pods bound earlier use their GPUs;
    Kaiwo neither re-binds them nor gives their GPUs away."""
    kube.create_all([node("n0", gpus=2)])
    kube.create(pod("by-default-scheduler", gpus=1, scheduler="default-scheduler", node_name="n0"))
    kube.create(pod("already-bound", gpus=1, node_name="n0",
                    annotations={"kaiwo.ai/gpu-assignment": json.dumps(
                        [{"gpu": 1, "partition": 0, "xcds": list(range(8)), "fraction": 1.0, "memoryMiB": 196608}])}))
    kube.create(pod("newcomer", gpus=1))
    controller = make_controller()
    report = controller.run_once(timeout=30)
    assert report.bindings == 0
    assert emulator.stats()["binds"] == {}
    (entry,) = [p for p in report.doc["pending"] if p["pod"] == "default/newcomer"]
    assert "GPU" in entry["reason"] or "idle" in entry["reason"]


def test_pod_bound_by_someone_else_meanwhile_is_not_bound_twice(emulator, kube, make_controller):
    """The binder's 409: the pod was bound elsewhere between decision and binding."""
    kube.create_all([node("n0"), node("other")])
    kube.create(pod("contested", gpus=1))
    # Hold Kaiwo's binding long enough for a rival to bind the pod first.
    emulator.inject({"method": "POST", "path": r"/pods/contested/binding$", "delay": 1.0, "times": 1})
    controller = make_controller(request_timeout=5.0).start_background()
    wait_until(lambda: emulator.stats()["faults"][0]["fired"] == 1)
    kube.core.create_namespaced_pod_binding(
        "contested", "default", {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "contested"},
                                 "target": {"apiVersion": "v1", "kind": "Node", "name": "other"}},
        _preload_content=False)
    wait_until(lambda: controller.binder.stats.results.get("conflict") == 1,
               describe=lambda: str(controller.binder.stats.results))
    assert kube.pod("default", "contested")["spec"]["nodeName"] == "other"
    assert emulator.stats()["binds"] == {"default/contested": 1}
    assert controller.cache.assumed_count == 0


def test_namespace_scope_still_charges_pods_of_other_namespaces(emulator, kube, make_controller):
    """--namespace limits what is placed, not what is watched: a pod of another namespace running
    on the only GPU keeps it."""
    busy = pod("busy", namespace="team-b", gpus=1, scheduler="default-scheduler", node_name="n0")
    kube.create_all([node("n0", gpus=1), busy, pod("mine", namespace="team-a", gpus=1),
                     pod("theirs", namespace="team-c", gpus=1)])
    controller = make_controller(namespaces=("team-a",))
    assert {i.namespace for i in controller.informers if i.kind == "Pod"} == {None}
    report = controller.run_once(timeout=30)
    assert report.bindings == 0 and set(kube.bound()) == {"team-b/busy"}
    pending = {p["pod"]: p["reason"] for p in report.doc["pending"]}
    assert "team-a/mine" in pending and "not among the namespaces" in pending["team-c/theirs"]


def test_running_pod_with_a_deleted_priority_class_keeps_its_gpu(emulator, kube, make_controller, caplog):
    busy = pod("busy", gpus=1, scheduler="default-scheduler", node_name="n0")
    busy["spec"]["priorityClassName"] = "deleted-class"
    kube.create_all([node("n0", gpus=1), busy, pod("new", gpus=1)])
    controller = make_controller()
    report = controller.run_once(timeout=30)
    assert report.bindings == 0 and report.rejected == 0 and set(kube.bound()) == {"default/busy"}
    assert any("default/busy: spec.priorityClassName = 'deleted-class'" in r.getMessage()
               for r in caplog.records if r.name == "kaiwo.controller")


def test_gated_pods_and_their_gangs_are_not_bound(emulator, kube, make_controller):
    def gated(p):
        p["spec"]["schedulingGates"] = [{"name": "example.com/admission"}]
        return p
    gang = [pod(f"g-{i}", gpus=1, annotations={"kaiwo.ai/gang": "g"}) for i in range(2)]
    kube.create_all([node("n0"), gated(pod("solo", gpus=1)), gang[0], gated(gang[1]), pod("free", gpus=1)])
    report = make_controller().run_once(timeout=30)
    assert set(kube.bound()) == {"default/free"} and not emulator.stats()["refusedBinds"]
    pending = {p["pod"]: p["reason"] for p in report.doc["pending"]}
    assert pending["default/solo"].startswith("SchedulingGated")
    assert pending["default/g-0"].startswith("gang default/g waits for its member default/g-1")
