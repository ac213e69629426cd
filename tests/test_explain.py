"""Issue 11, items 4 and 5: pending reasons and ``kaiwo explain`` that name the filter and the value,
warnings for unknown annotations and fields, every error of an object, ``--now``, and the size of a
logical GPU (``kaiwo.ai/gpu-partition``, ``gpu-min-cus``, ``gpu-min-memory``). Outcomes worked out by
hand."""
import copy
import json

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kaiwo_core as kc
from kaiwo.cli import main
from tests.dumpgen import NOW, dumps
from tests.scenario_loader import node_obj, pod_objs


def objects(nodes, pods):
    out = [node_obj(n) for n in nodes]
    for i, p in enumerate(pods):
        out += pod_objs(p, start=i)
    return out


def run(objs, **kw):
    return kc.schedule(kc.Snapshot.from_objects(objs), **kw).to_dict()


# ------------------------------------------------------------------ item 5: the size of a logical GPU

SIZE_NODES = [{"name": "spx", "gpus": 1}, {"name": "cpx", "gpus": 1, "partition": "cpx_nps1"}]


def test_partition_annotation_places_by_mode_and_shows_absolute_sizes():
    # MI300X: SPX = one logical GPU of 304 CUs / 192 GiB; CPX = 8 of 38 CUs / 24 GiB.
    doc = run(objects(SIZE_NODES, [
        {"name": "a", "annotations": {"kaiwo.ai/gpu-fraction": "0.5", "kaiwo.ai/gpu-partition": "cpx"}},
        {"name": "b", "annotations": {"kaiwo.ai/gpu-fraction": "0.5", "kaiwo.ai/gpu-partition": "SPX"}},
        {"name": "c", "gpu": 1, "annotations": {"kaiwo.ai/gpu-partition": "spx|dpx"}},
        {"name": "d", "annotations": {"kaiwo.ai/gpu-fraction": "0.25", "kaiwo.ai/gpu-min-cus": "76"}},
        {"name": "e", "annotations": {"kaiwo.ai/gpu-fraction": "0.25", "kaiwo.ai/gpu-min-memory": "100Gi"}},
    ]))
    bound = {b["pod"]: b for b in doc["bindings"]}
    assert {p: b["node"] for p, b in bound.items()} == {
        "default/a": "cpx", "default/b": "spx", "default/d": "spx", "default/e": "spx"}
    a, b = bound["default/a"]["devices"][0], bound["default/b"]["devices"][0]
    assert (a["gpuCUs"], a["gpuMemoryGiB"], a["cus"], a["memoryGiB"]) == (38, 24, 19, 12)
    assert (b["gpuCUs"], b["gpuMemoryGiB"], b["cus"], b["memoryGiB"]) == (304, 192, 152, 96)
    # c may not use the CPX node; the SPX GPU is shared by b, d and e, so it is not idle.
    assert doc["pending"] == [{"pod": "default/c", "reason": "0/2 nodes can take it: 1 GPU partition CPX "
                               "(pod asks for DPX|SPX), 1 not enough idle GPUs"}]


def test_partition_annotation_bad_values_are_rejected_naming_the_field():
    doc = run(objects(SIZE_NODES, [
        {"name": "cpu-only", "annotations": {"kaiwo.ai/gpu-partition": "cpx"}},
        {"name": "typo", "gpu": 1, "annotations": {"kaiwo.ai/gpu-partition": "xpx"}},
        {"name": "zero", "gpu": 1, "annotations": {"kaiwo.ai/gpu-min-cus": "0"}},
        {"name": "huge", "gpu": 1, "annotations": {"kaiwo.ai/gpu-min-cus": "99999999"}},
        {"name": "mem", "gpu": 1, "annotations": {"kaiwo.ai/gpu-min-memory": "lots"}},
    ]))
    rejected = {r["pod"]: r for r in doc["rejected"]}
    assert {p: r["field"] for p, r in rejected.items()} == {
        "default/cpu-only": "metadata.annotations.kaiwo.ai/gpu-partition",
        "default/typo": "metadata.annotations.kaiwo.ai/gpu-partition",
        "default/zero": "metadata.annotations.kaiwo.ai/gpu-min-cus",
        "default/huge": "metadata.annotations.kaiwo.ai/gpu-min-cus",
        "default/mem": "metadata.annotations.kaiwo.ai/gpu-min-memory"}
    assert rejected["default/typo"]["error"] == ("'xpx': unknown compute partition mode 'xpx' "
                                                "(expected one of spx, dpx, tpx, qpx, cpx)")
    assert "asks for no GPU" in rejected["default/cpu-only"]["error"]


def test_cpx_pod_never_on_spx_node_and_back():
    """Many pods each way, capacity on both kinds of node: every one lands on its own mode."""
    nodes = [{"name": "spx-0", "gpus": 2}, {"name": "spx-1", "gpus": 2},
             {"name": "cpx-0", "gpus": 1, "partition": "cpx_nps4"}, {"name": "qpx-0", "gpus": 1, "partition": "qpx_nps1"}]
    pods = [{"name": f"c{i}", "annotations": {"kaiwo.ai/gpu-fraction": "0.5", "kaiwo.ai/gpu-partition": "cpx"}}
            for i in range(6)]
    pods += [{"name": f"s{i}", "annotations": {"kaiwo.ai/gpu-fraction": "0.5", "kaiwo.ai/gpu-partition": "spx"}}
             for i in range(6)]
    pods += [{"name": "w", "gpu": 1, "annotations": {"kaiwo.ai/gpu-partition": "qpx|cpx"}}]
    doc = run(objects(nodes, pods), strategy="spread")
    where = {b["pod"].split("/")[1]: b["node"] for b in doc["bindings"]}
    assert len(where) == 13
    assert all(where[f"c{i}"] == "cpx-0" and where[f"s{i}"].startswith("spx") for i in range(6))
    assert where["w"] in ("cpx-0", "qpx-0")


# ------------------------------------------------------------------------- item 4: warnings

def test_unknown_annotations_fields_and_models_are_warned_about():
    queue = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoQueue", "metadata": {"name": "research"},
             "spec": {"qouta": 4, "resources": {"gpu": {"quota": 2, "limt": 4}}}}
    job = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoJob", "metadata": {"name": "j", "namespace": "ml"},
           "spec": {"replicas": 1, "gpusPerReplica": 1, "minMember": 1,
                    "template": {"spec": {"containers": [{"name": "c"}], "anything": 1}}}}
    res = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoReservation", "metadata": {"name": "r"},
           "spec": {"queue": "research", "gpus": 1, "tll": "1h"}}
    objs = objects([{"name": "n0", "gpus": 2}], [
        {"name": "typo", "annotations": {"kaiwo.ai/gpu-fracton": "0.5"}},
        {"name": "label", "gpu": 1, "annotations": {"kaiwo.ai/queue": "research", "kaiwo.ai/zzz": "1"}},
        {"name": "m1", "gpu": 1, "annotations": {"kaiwo.ai/gpu-model": "MI300"}},
        {"name": "m0", "gpu": 1, "annotations": {"kaiwo.ai/gpu-model": "mi300"}},
        {"name": "fine", "gpu": 1, "annotations": {"kaiwo.ai/gpu-model": "MI300X|MI999"}},
    ]) + [queue, job, res]
    warnings = run(objs)["warnings"]
    assert warnings == [
        "pod default/typo: unknown annotation kaiwo.ai/gpu-fracton (did you mean kaiwo.ai/gpu-fraction?); ignored",
        "pod default/label: unknown annotation kaiwo.ai/queue (kaiwo.ai/queue is a label, not an annotation), "
        "unknown annotation kaiwo.ai/zzz; ignored",
        # quota is a field of spec.resources.<resource>, not of spec: nothing close at that level
        "KaiwoQueue research: spec.qouta: unknown field; spec.resources.gpu.limt: unknown field "
        "(did you mean limit?); ignored",
        "KaiwoJob ml/j: spec.minMember: unknown field (did you mean minMembers?); ignored",
        "KaiwoReservation r: spec.tll: unknown field (did you mean ttl?); ignored",
        "pod default/m0 (and 1 more): kaiwo.ai/gpu-model names MI300, which no node has (the cluster has: MI300X)",
    ]


def test_known_spec_fields_mirror_the_crd_schemas():
    """kaiwo_core.model.fields.SPEC_FIELDS must name exactly what deploy/crds accepts."""
    from pathlib import Path

    import yaml

    from kaiwo_core.model.fields import SPEC_FIELDS

    def tree(schema):
        props = schema.get("properties")
        if not props or schema.get("x-kubernetes-preserve-unknown-fields"):
            return None
        return {k: tree(v) for k, v in props.items()}

    for path in sorted(Path(__file__).parent.parent.joinpath("deploy", "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
            assert tree(spec) == SPEC_FIELDS[kind], (path.name, version["name"])


# ---------------------------------------------------------------- item 4: reasons and kaiwo explain

EXPLAIN_NODES = [
    {"name": "n1", "gpus": 1, "taints": [{"key": "gpu", "value": "reserved", "effect": "NoSchedule"}]},
    {"name": "n2", "gpus": 1, "cpu": 64, "labels": {"zone": "b", "pool": "x"}},
    {"name": "n3", "gpus": 1, "labels": {"zone": "b", "pool": "ml"}},
]
EXPLAIN_PODS = [
    # already running on n3, holding 0.6 of its one GPU (the kernel picks the device)
    {"name": "holder", "nodeName": "n3", "annotations": {"kaiwo.ai/gpu-fraction": "0.6"}},
    {"name": "p", "cpu": 100, "nodeSelector": {"pool": "ml"}, "annotations": {"kaiwo.ai/gpu-fraction": "0.6"}},
]


def explain_dump(tmp_path):
    path = tmp_path / "dump.yaml"
    path.write_text(yaml.safe_dump_all(objects(EXPLAIN_NODES, EXPLAIN_PODS)))
    return str(path)


def test_pending_reason_and_explain_name_every_filter_and_the_near_miss(tmp_path, capsys):
    # n1: not pool=ml and tainted (its GPU and CPU would do); n2: pool=x and 64 < 100 cores;
    # n3: pool=ml, 192 cores, but 1 - 0.6 = 0.4 of its GPU free < 0.6.
    dump = explain_dump(tmp_path)
    assert main(["schedule", dump, "-o", "json", "--now", "dump", "--pod", "default/p"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["pod"] for k in ("bindings", "pending", "rejected", "running") for e in doc[k]] == ["default/p"]
    assert doc["pending"][0]["reason"] == ("0/3 nodes can take it: 2 node selector pool=ml not matched, "
                                           "1 insufficient GPU share (largest free share 0.4 < 0.6 needed)")
    assert main(["explain", dump, "default/p", "--now", "dump"]) == 0
    assert capsys.readouterr().out.splitlines()[2:] == [
        "node classes (nodes grouped by what the pod sees):",
        "  1 node (n1): filter node-affinity: node selector pool=ml not matched; "
        "filter taints: untolerated taint gpu=reserved:NoSchedule",
        "  1 node (n2): filter node-affinity: node selector pool=ml not matched; insufficient CPU",
        "  1 node (n3): insufficient GPU share",
        "best near miss: node n3: GPU share 0.4 free < 0.6 needed; everything else fits",
    ]
    assert main(["explain", dump, "default/holder", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "running"
    assert main(["explain", dump, "default/nobody"]) == 1
    assert "no such pod" in capsys.readouterr().out


def test_now_defaults_to_the_wall_clock_and_is_checked(tmp_path, capsys):
    """An automatic reservation needs 10 minutes of waiting: with the dump's own time the pod has
    waited 0 s, with the wall clock far longer (the pods are from 2026-01-01)."""
    objs = objects([{"name": "n0", "gpus": 2}], [
        {"name": "small", "gpu": 1, "nodeName": "n0"},
        {"name": "big", "gpu": 2},
    ])
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump_all(objs))
    assert main(["schedule", str(path), "-o", "json", "--now", "dump"]) == 0
    assert json.loads(capsys.readouterr().out)["reservations"] == []
    assert main(["schedule", str(path), "-o", "json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)["reservations"]] == ["auto-default-big"]
    assert main(["schedule", str(path), "-o", "json", "--now", "2026-11-28T00:00:00Z"]) == 0
    capsys.readouterr()
    for bad in ("yesterday", "nan", "1e300", "-5"):
        assert main(["schedule", str(path), f"--now={bad}"]) == 2
        assert f"--now {bad!r}" in capsys.readouterr().err
    # the last second a date can show: an automatic reservation made then has no showable end
    assert main(["schedule", str(path), "-o", "json", "--now", "9999-12-31T23:59:59Z"]) == 0
    (r,) = json.loads(capsys.readouterr().out)["reservations"]
    assert r["until"] is None


# ------------------------------------------------------------------- item 4: every error at once

def test_every_independent_error_of_a_pod_is_reported_on_one_line():
    objs = objects([{"name": "n0", "gpus": 1}], [
        {"name": "bad", "priority": "high",
         "tolerations": [{"key": "k", "operator": "Maybe"}],
         "annotations": {"kaiwo.ai/gpu-fraction": "1.5", "kaiwo.ai/expected-runtime": "soon"}},
        {"name": "one", "annotations": {"kaiwo.ai/gpu-fraction": "1.5"}},
    ])
    rejected = {r["pod"]: r for r in run(objs)["rejected"]}
    assert rejected["default/bad"] == {
        "pod": "default/bad", "field": "spec.priority",
        "error": "'high': must be an integer; "
                 "metadata.annotations.kaiwo.ai/expected-runtime = 'soon': " + kc_duration_error("soon") + "; "
                 "metadata.annotations.kaiwo.ai/gpu-fraction = '1.5': must be between 0.1 and 1.0; "
                 "spec.tolerations[0].operator = 'Maybe': must be Equal or Exists"}
    assert rejected["default/one"]["error"] == "'1.5': must be between 0.1 and 1.0"  # one error: as before
    assert "\n" not in rejected["default/bad"]["error"]


def kc_duration_error(text):
    from kaiwo_core.model.durations import parse_duration
    try:
        parse_duration(text)
    except ValueError as e:
        return str(e)
    raise AssertionError(text)


def test_every_independent_error_of_a_queue_and_a_reservation():
    queue = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoQueue", "metadata": {"name": "q"},
             "spec": {"priority": "high", "resources": {"gpu": {"quota": "lots"}, "cpu": {"overQuotaWeight": 0}},
                      "fairness": {"reclaimStrategy": "sometimes"}}}
    res = {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoReservation", "metadata": {"name": "r"},
           "spec": {"job": "no-namespace", "gpus": 0, "ttl": "a while"}}
    doc = run(objects([{"name": "n0", "gpus": 1}], []) + [queue, res])
    assert doc["invalidQueues"] == [{
        "kaiwoqueue": "q", "field": "spec.priority",
        "error": "'high': must be an integer; spec.resources.gpu.quota = 'lots': not a number; "
                 "spec.resources.cpu.overQuotaWeight = 0: must be a finite number > 0 and at most 1e+06; "
                 "spec.fairness.reclaimStrategy = 'sometimes': expected one of aggressive, conservative"}]
    assert doc["invalidReservations"] == [{
        "kaiworeservation": "r", "field": "spec.job",
        "error": "'no-namespace': expected namespace/name; spec.gpus = 0: must be between 1 and 2147483647; "
                 "spec.ttl = 'a while': not a duration (expected e.g. 10m, 1h30m, 90s)"}]


# ----------------------------------------- property: explain agrees with the placement kernel's counts

@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(dumps())
def test_explain_judges_every_node_as_the_kernel_did(objs):
    """For every unplaced pod (gangs aside: their members are judged without their gang), the first
    thing each node lacks in the kernel's order -- a filter, CPU, memory, a pod slot, then the GPU
    verdict -- counted over the nodes, is the kernel's own reason count: the replayed state is the
    one the pod met, and no node is judged to fit where the kernel found none."""
    from kaiwo_core.scheduling.explain import node_views

    d = kc.schedule(kc.Snapshot.from_objects(copy.deepcopy(objs)), now=NOW)
    p = d.placement
    if p is None:
        return
    order = {"CPU": 1, "memory": 2, "pods": 3}
    gpu = {"GPUs": None, "idle GPUs": 5, "GPU share": 6, "GPU memory": 7, "XCDs": 8}
    reserved = kc._core.REASON_RESERVED
    rows = [i for i in np.flatnonzero(~p.placed).tolist() if not p.gang_failed[i]
            and (p.batch.gang is None or p.batch.gang[i] < 0)][:6]
    for i in rows:
        counts = np.zeros(len(p.reason_counts[i]), dtype=np.int64)
        for v in node_views(p, i, d.snapshot.state):
            assert v.missing, (p.batch.names[i], v.node)
            what, detail = v.missing[0]
            if what.startswith("filter "):
                code = 0
            elif what in order:
                code = order[what]
            else:
                code = gpu[what] if gpu[what] is not None else (4 if "on the node" in detail else
                                                                 reserved if "reservation" in detail else -1)
            counts[code] += 1
        assert counts.tolist() == p.reason_counts[i].tolist(), p.batch.names[i]


def test_a_reason_lists_a_few_filter_values_and_a_broken_plugin_explanation_is_generic():
    nodes = [{"name": f"n{i}", "gpus": 1, "taints": [{"key": f"t{i}", "effect": "NoSchedule"}]} for i in range(9)]
    doc = run(objects(nodes, [{"name": "p", "gpu": 1}]))
    assert doc["pending"][0]["reason"] == (
        "0/9 nodes can take it: 4 excluded by other filter values, 1 untolerated taint t0:NoSchedule, "
        "1 untolerated taint t1:NoSchedule, 1 untolerated taint t2:NoSchedule, "
        "1 untolerated taint t3:NoSchedule, 1 untolerated taint t4:NoSchedule")  # most nodes first

    class Broken(kc.Plugin):
        name = "broken-explainer"

        def filter(self, ctx):
            return np.zeros(ctx.shape, bool)

        def explain(self, ctx, con, nodes):
            raise RuntimeError("oops")

    pipeline = kc.Pipeline([*kc.filters.DEFAULT_PLUGINS, Broken(), "binpack"])
    snap = kc.Snapshot.from_objects(objects([{"name": "n0", "gpus": 1}], [{"name": "p", "gpu": 1}]))
    doc = kc.schedule(snap, pipeline=pipeline).to_dict()
    assert doc["pending"][0]["reason"] == "0/1 nodes can take it: 1 excluded by plugin broken-explainer"


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(dumps(), st.sampled_from(["cpx", "spx|dpx", "qpx", "spx"]))
def test_random_dumps_with_partition_annotations_keep_every_invariant(objs, modes):
    """Every third unbound GPU pod of a random dump asks for ``modes``: no binding breaks an invariant
    of tests/invariants.py (which decodes the annotation itself: a pod is only on nodes of its modes)."""
    from tests.invariants import violations

    objs = copy.deepcopy(objs)
    pods = [o for o in objs if o.get("kind") == "Pod" and not (o.get("spec") or {}).get("nodeName")]
    for o in pods[::3]:
        o["metadata"].setdefault("annotations", {})["kaiwo.ai/gpu-partition"] = modes
    doc = kc.schedule(kc.Snapshot.from_objects(copy.deepcopy(objs)), now=NOW).to_dict()
    assert not violations(objs, doc, NOW)
