"""The deployment manifests, validated offline: CRDs, RBAC, Deployment and the Helm chart.

* every object validates against the Kubernetes OpenAPI schemas (``kubernetes-validate``, strict);
* the CRD schemas are *structural* (the rules kube-apiserver enforces on apiextensions.k8s.io/v1);
* the CRD schemas agree with ``kaiwo_core``: objects the core accepts validate, objects it rejects
  for a per-object reason are refused by the schema too (where OpenAPI can say it);
* the RBAC rules allow every request a full controller run sends (recorded by the emulator) --
  and the Helm chart's rules are the same;
* the Helm chart renders (a tiny renderer for the few template forms the chart uses: there is no
  helm binary here) to valid objects equal to the static manifests where they should be, and its
  ``config`` value to a ConfigMap holding a valid KaiwoSchedulerConfiguration.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kaiwo_core.scheduling.config import ConfigError, SchedulerConfiguration, decode
from kaiwo_core.scheduling.gangs import expand_jobs
from kaiwo_core.scheduling.queues import QueueError, queue_spec
from tests.controller.kube import node, pod, queue

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "kaiwo"
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _validate(doc: dict) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


# ----------------------------------------------------------------------------------- static

@pytest.mark.parametrize("name", ["crds/kaiwo.ai_kaiwoqueues.yaml", "crds/kaiwo.ai_kaiwojobs.yaml",
                                  "crds/kaiwo.ai_kaiworeservations.yaml", "rbac.yaml", "deployment.yaml"])
def test_static_manifests_validate(name):
    docs = _docs(DEPLOY / name)
    assert docs
    for doc in docs:
        _validate(doc)


def _crd(plural: str) -> dict:
    (doc,) = _docs(DEPLOY / "crds" / f"kaiwo.ai_{plural}.yaml")
    return doc


def _schema(plural: str) -> dict:
    (version,) = _crd(plural)["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


_FORBIDDEN_IN_JUNCTORS = {"type", "additionalProperties", "default", "nullable", "description",
                          "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
                          "x-kubernetes-int-or-string"}


def structural_errors(s: dict, path: str = "", in_junctor: bool = False) -> list[str]:
    """The structural-schema rules of apiextensions.k8s.io/v1 that a hand-written schema can break."""
    errs = []
    if not isinstance(s, dict):
        return [f"{path}: not a schema"]
    if in_junctor:
        bad = set(s) & _FORBIDDEN_IN_JUNCTORS
        if bad:
            errs.append(f"{path}: {sorted(bad)} inside anyOf/allOf/oneOf/not")
    elif "type" not in s and not s.get("x-kubernetes-int-or-string") \
            and not s.get("x-kubernetes-preserve-unknown-fields"):
        errs.append(f"{path}: no type")
    if s.get("x-kubernetes-int-or-string"):
        if "type" in s:
            errs.append(f"{path}: x-kubernetes-int-or-string with a type")
        if "anyOf" in s and [b.get("type") for b in s["anyOf"]] != ["integer", "string"]:
            errs.append(f"{path}: int-or-string anyOf must be [integer, string]")
    if "properties" in s and "additionalProperties" in s:
        errs.append(f"{path}: properties and additionalProperties are mutually exclusive")
    if "items" in s and not isinstance(s["items"], dict):
        errs.append(f"{path}: items must be one schema")
    if s.get("x-kubernetes-list-type") == "map":
        keys = s.get("x-kubernetes-list-map-keys") or []
        if not keys or not set(keys) <= set((s.get("items") or {}).get("required") or []):
            errs.append(f"{path}: list-type map needs required list-map-keys")
    for key, sub in (s.get("properties") or {}).items():
        errs += structural_errors(sub, f"{path}.{key}", False)
    if isinstance(s.get("items"), dict):
        errs += structural_errors(s["items"], f"{path}[]", False)
    for junctor in ("anyOf", "allOf", "oneOf"):
        for i, sub in enumerate(s.get(junctor) or []):
            if not (s.get("x-kubernetes-int-or-string") and junctor == "anyOf"):
                errs += structural_errors(sub, f"{path}.{junctor}[{i}]", True)
    return errs


@pytest.mark.parametrize("plural", ["kaiwoqueues", "kaiwojobs"])
def test_crds_are_structural_with_status_and_printer_columns(plural):
    crd = _crd(plural)
    assert structural_errors(_schema(plural)) == []
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    assert version["served"] and version["storage"] and version["name"] == "v1alpha2"
    assert crd["metadata"]["name"] == f"{plural}.kaiwo.ai" and crd["spec"]["group"] == "kaiwo.ai"
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert "Age" in columns
    for path in columns.values():  # every column points at a field the schema defines
        if path.startswith(".metadata"):
            continue
        node_ = _schema(plural)
        for part in re.sub(r"\[.*?\]", "", path).strip(".").split("."):
            node_ = node_["properties"][part] if "properties" in node_ else node_["items"]["properties"][part]


def test_structural_checker_catches_breaks():
    """The checker itself can fail: each rule on a broken schema."""
    broken = {"type": "object", "properties": {
        "a": {"description": "no type"},
        "b": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": False},
        "c": {"x-kubernetes-int-or-string": True, "type": "string"},
        "d": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
              "items": {"type": "object"}},
        "e": {"type": "string", "anyOf": [{"type": "string"}]},
    }}
    errs = structural_errors(broken)
    for field in (".a", ".b", ".c", ".d", ".e.anyOf[0]"):
        assert any(e.startswith(field + ":") for e in errs), (field, errs)


# ---------------------------------------------------------------- schema vs kaiwo_core semantics

def _schema_ok(plural: str, obj: dict) -> bool:
    return jsonschema.Draft4Validator(_schema(plural)).is_valid(obj)


def _queue_ok(obj: dict) -> bool:
    try:
        queue_spec(obj)
        return True
    except QueueError:
        return False


def _job_ok(obj: dict) -> bool:
    return not expand_jobs([obj], [])[1]


def _queue_variant(**spec) -> dict:
    q = queue("team")
    q["spec"] = spec
    return q


QUEUES = [  # (object, accepted by both sides)
    (_queue_variant(priority=10, resources={"gpu": {"quota": 8, "overQuotaWeight": 2, "limit": 24}}), True),
    (_queue_variant(resources={"gpu": {"quota": "0.5"}, "cpu": {"quota": "500m", "limit": -1},
                               "memory": {"quota": "512Gi", "limit": "1Ti"}}), True),
    (_queue_variant(resources={"gpu": {"quota": -1}}, fairness={"policy": "DRF", "reclaimStrategy": "conservative"},
                    preemptMinRuntime="10m", reclaimMinRuntime=90, parentQueue="org", displayName="Team"), True),
    (_queue_variant(resources={"gpu": {"quota": 4, "overQuotaWeight": 0}}), False),
    (_queue_variant(resources={"gpu": {"quota": 4, "overQuotaWeight": -1.5}}), False),
    (_queue_variant(resources={"gpu": {"quota": "lots"}}), False),
    (_queue_variant(resources={"memory": {"limit": "12 GiB"}}), False),
    (_queue_variant(fairness={"reclaimStrategy": "greedy"}), False),
    (_queue_variant(fairness={"policy": "fifo"}), False),
    (_queue_variant(priority="high"), False),
    (_queue_variant(preemptMinRuntime="soon"), False),
    # The maxima of kaiwo_core.model.limits, in the schema too (issue 10).
    (_queue_variant(priority=-(2**31), resources={"gpu": {"quota": 1, "overQuotaWeight": 1e6}}), True),
    (_queue_variant(priority=2**31), False),
    (_queue_variant(resources={"gpu": {"quota": 1, "overQuotaWeight": 1e7}}), False),
    (_queue_variant(preemptMinRuntime=4_000_000_000), False),
    # Per-GPU-model amounts (issue 11).
    (_queue_variant(resources={"gpu": {"quota": 16, "limit": 24}, "gpuModels": {
        "MI300X": {"quota": 8, "overQuotaWeight": 1, "limit": 16}, "MI355X": {"quota": "8"}}}), True),
    (_queue_variant(resources={"gpu": {"quota": 16}, "gpuModels": {"MI300X": {"overQuotaWeight": 0}}}), False),
    (_queue_variant(resources={"gpu": {"quota": 16}, "gpuModels": {"MI300X": {"quota": "lots"}}}), False),
    (_queue_variant(resources={"gpu": {"quota": 16}, "gpuModels": ["MI300X"]}), False),
    (_queue_variant(resources={"gpu": {"quota": 16}, "gpuModels": {"MI300X": 8}}), False),
]

TEMPLATE = {"spec": {"containers": [{"name": "t", "image": "rocm/pytorch"}]}}


def _job(**spec) -> dict:
    return {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoJob", "metadata": {"name": "j", "namespace": "ml"},
            "spec": spec}


JOBS = [
    (_job(replicas=4, minMembers=2, gpusPerReplica=8, template=TEMPLATE), True),
    (_job(template=TEMPLATE), True),
    (_job(replicas=0, template=TEMPLATE), False),
    (_job(replicas=2, minMembers=0, template=TEMPLATE), False),
    (_job(replicas=2, gpusPerReplica=-1, template=TEMPLATE), False),
    (_job(replicas="2", template=TEMPLATE), False),
    (_job(replicas=2, template={"spec": {"containers": []}}), False),
    (_job(replicas=2, template={"metadata": {}}), False),
    (_job(replicas=1000, minMembers=1000, gpusPerReplica=1024, template=TEMPLATE), True),
    (_job(replicas=100_001, template=TEMPLATE), False),
    (_job(replicas=2, minMembers=100_001, template=TEMPLATE), False),
    (_job(replicas=2, gpusPerReplica=1025, template=TEMPLATE), False),
]


@pytest.mark.parametrize("obj,ok", QUEUES, ids=lambda v: None if isinstance(v, bool) else str(v["spec"])[:60])
def test_queue_schema_agrees_with_kaiwo_core(obj, ok):
    assert _queue_ok(obj) is ok
    assert _schema_ok("kaiwoqueues", obj) is ok


@pytest.mark.parametrize("obj,ok", JOBS, ids=lambda v: None if isinstance(v, bool) else str(v["spec"])[:60])
def test_job_schema_agrees_with_kaiwo_core(obj, ok):
    assert _job_ok(obj) is ok
    assert _schema_ok("kaiwojobs", obj) is ok


def test_what_the_schema_leaves_to_cel_or_the_controller():
    """minMembers > replicas needs two fields: a CEL rule (evaluated by kube-apiserver, not here);
    the core rejects it too. A fractional GPU quota written as a YAML number is accepted by the core
    but must be a string for the API (int-or-string), as the CRD documents."""
    bad_min = _job(replicas=2, minMembers=3, template=TEMPLATE)
    assert not _job_ok(bad_min) and _schema_ok("kaiwojobs", bad_min)
    rules = _schema("kaiwojobs")["properties"]["spec"]["x-kubernetes-validations"]
    assert any("minMembers <=" in r["rule"] and "replicas" in r["rule"] for r in rules)
    float_quota = _queue_variant(resources={"gpu": {"quota": 0.5}})
    assert _queue_ok(float_quota) and not _schema_ok("kaiwoqueues", float_quota)


def test_every_watched_custom_kind_has_a_crd():
    from kaiwo.controller.api import PLURALS, WATCHED_KINDS

    for kind, plural in PLURALS.items():
        assert kind in WATCHED_KINDS
        crd = _crd(plural)
        assert crd["spec"]["names"]["kind"] == kind and crd["metadata"]["name"] == f"{plural}.kaiwo.ai"
        assert (crd["spec"]["scope"] == "Namespaced") is WATCHED_KINDS[kind]


def test_reservation_crd_is_structural_with_printer_columns():
    crd = _crd("kaiworeservations")
    schema = _schema("kaiworeservations")
    assert structural_errors(schema) == []
    (version,) = crd["spec"]["versions"]
    assert version["served"] and version["storage"] and version["name"] == "v1alpha2"
    for c in version["additionalPrinterColumns"]:
        if not c["jsonPath"].startswith(".metadata"):
            assert c["jsonPath"].split(".")[-1] in schema["properties"]["spec"]["properties"], c
    rules = " ".join(r["rule"] for r in schema["properties"]["spec"]["x-kubernetes-validations"])
    for both in ("has(self.queue) != has(self.job)", "(has(self.devices) ? 1 : 0) == 1",
                 "has(self.until) && has(self.ttl)", "!has(self.xcds) || has(self.node)"):
        assert both in rules


def _reservation(**spec) -> dict:
    return {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoReservation",
            "metadata": {"name": "hold", "creationTimestamp": "2026-11-28T10:00:00Z"}, "spec": spec}


RESERVATIONS = [
    (_reservation(queue="research", nodes=["a", "b"]), True),
    (_reservation(job="ml/train", gpus=16, start="2026-11-28T16:00:00Z", until="2026-11-28T20:00:00Z"), True),
    (_reservation(queue="research", gpus=8, ttl="4h"), True),
    (_reservation(queue="research", gpus=8, ttl=3600), True),
    (_reservation(queue="research", gpus=0), False),
    (_reservation(queue="research", gpus="8"), False),
    (_reservation(queue="research", nodes=[]), False),
    (_reservation(queue="research", nodes="a"), False),
    (_reservation(job="train", gpus=1), False),
    (_reservation(queue="research", gpus=1, until="tomorrow"), False),
    (_reservation(queue="research", gpus=1, start="soon"), False),
    (_reservation(queue="research", gpus=1, ttl="four hours"), False),
    (_reservation(queue="research", gpus=2**31), False),
    (_reservation(queue="research", gpus=1, ttl=4_000_000_000), False),
    (_reservation(queue="research", node="a", gpus=2), True),
    (_reservation(queue="research", node="a", xcds=4), True),
    (_reservation(queue="research", devices=[{"node": "a", "gpu": 3}, {"node": "a", "gpu": 4, "partition": 1},
                                             {"node": "a", "gpu": 5, "xcds": [0, 1]}]), True),
    (_reservation(queue="research", node="a", xcds=0), False),
    (_reservation(queue="research", node="", gpus=1), False),
    (_reservation(queue="research", devices=[]), False),
    (_reservation(queue="research", devices=[{"node": "a"}]), False),
    (_reservation(queue="research", devices=[{"node": "a", "gpu": -1}]), False),
    (_reservation(queue="research", devices=[{"node": "a", "gpu": 0, "partition": 8}]), False),
    (_reservation(queue="research", devices=[{"node": "a", "gpu": 0, "xcds": [8]}]), False),
    (_reservation(queue="research", devices=[{"node": "a", "gpu": 0, "xcds": []}]), False),
]


@pytest.mark.parametrize("obj,ok", RESERVATIONS, ids=lambda v: None if isinstance(v, bool) else str(v["spec"])[:60])
def test_reservation_schema_agrees_with_kaiwo_core(obj, ok):
    from kaiwo_core.scheduling.reservations import ReservationError, reservation_spec

    try:
        reservation_spec(obj, 1.8e9)
        core_ok = True
    except ReservationError:
        core_ok = False
    assert core_ok is ok
    checker = jsonschema.Draft4Validator(_schema("kaiworeservations"), format_checker=jsonschema.FormatChecker())
    assert checker.is_valid(obj) is ok


def test_the_bundled_example_validates_against_the_crds():
    from importlib.resources import files

    objs = list(yaml.safe_load_all((files("kaiwo") / "data" / "mi300x-example.yaml").read_text()))
    seen = 0
    for o in objs:
        if o["kind"] in ("KaiwoQueue", "KaiwoJob"):
            assert _schema_ok(o["kind"].lower() + "s", o), o["metadata"]["name"]
            seen += 1
    assert seen >= 2


# ----------------------------------------------------------------------------------- RBAC

def _rules(docs: list[dict], kinds=("ClusterRole", "Role")) -> list[dict]:
    return [r for d in docs if d["kind"] in kinds for r in d["rules"]]


def _allowed(rules: list[dict], verb: str, group: str, resource: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


def test_rbac_allows_every_request_of_a_controller_run(emulator, kube, make_controller):
    """Run the controller through bindings (ConfigMaps, annotations, events, conditions), KaiwoJob
    pod creation, queue and job status and leader election; every request must be allowed."""
    kube.create_all([node("n0"), queue("team", 2),
                     pod("whole", gpus=1, queue="team"), pod("shared", fraction="0.5"),
                     pod("huge", gpus=99),
                     {"apiVersion": "kaiwo.ai/v1alpha2", "kind": "KaiwoJob",
                      "metadata": {"name": "j", "namespace": "default"},
                      "spec": {"replicas": 2, "gpusPerReplica": 1, "template": TEMPLATE}}])
    emulator.forget_verbs()  # from here on, only the controller's requests
    controller = make_controller()
    controller.run_once(timeout=30)
    controller.stop()
    verbs = {tuple(v) for v in emulator.stats()["verbs"]}
    assert {("create", "", "pods/binding"), ("create", "", "configmaps"),
            ("create", "", "events"), ("watch", "", "pods"), ("create", "", "pods"),
            ("patch", "", "pods/status"), ("patch", "kaiwo.ai", "kaiwoqueues/status"),
            ("patch", "kaiwo.ai", "kaiwojobs/status"), ("create", "coordination.k8s.io", "leases")} <= verbs
    rules = _rules(_docs(DEPLOY / "rbac.yaml"))
    denied = sorted(v for v in verbs if not _allowed(rules, *v))
    assert not denied, denied
    # KaiwoJob pods are owned with blockOwnerDeletion, which kube-apiserver's owner-reference
    # admission (not emulated) allows only with update on the owner's finalizers.
    created = [p for p in kube.pods() if p["metadata"].get("ownerReferences")]
    assert created and all(r.get("blockOwnerDeletion") for p in created for r in p["metadata"]["ownerReferences"])
    assert _allowed(rules, "update", "kaiwo.ai", "kaiwojobs/finalizers")
    # ... and the check has teeth: without the binding rule, binding is denied.
    no_binding = [dict(r, resources=[x for x in r["resources"] if x != "pods/binding"]) for r in rules]
    assert not _allowed(no_binding, "create", "", "pods/binding")


# ------------------------------------------------------------------------------ Helm chart

#: ``{{- x }}`` / ``{{ x -}}`` drop the whitespace (newlines too) before / after, as in Helm.
_EXPR = re.compile(r"(\s*)\{\{(-?)\s*(.*?)\s*(?:(-)\}\}\s*|\}\})")


def _lookup(ctx: dict, dotted: str):
    value = ctx
    for part in dotted.strip(".").split("."):
        value = value[part]
    return value


def render(template: str, values: dict, release: str = "kaiwo", namespace: str = "kaiwo-system") -> str:
    """The chart's template forms: ``.Values.x.y``, ``.Release.Name/Namespace``, ``.Chart.Name/
    AppVersion``, ``| quote`` and ``toYaml X | nindent N``, with Helm's whitespace trimming
    (``{{-``, ``-}}``); anything else is an error (so a chart change that needs real Helm cannot
    pass unnoticed)."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    ctx = {"Values": values, "Release": {"Name": release, "Namespace": namespace},
           "Chart": {"Name": chart["name"], "AppVersion": chart["appVersion"]}}

    def expr(m):
        before, trim_left, text, _trim_right = m.groups()  # -}}: the whitespace after is in the match
        return ("" if trim_left else before) + value(text)

    def value(text):
        to_yaml = re.fullmatch(r"toYaml\s+(\S+)\s*\|\s*nindent\s+(\d+)", text)
        if to_yaml:
            value = _lookup(ctx, to_yaml.group(1))
            dumped = yaml.safe_dump(value, default_flow_style=False).rstrip("\n")
            if dumped in ("{}", "[]"):
                return dumped
            pad = " " * int(to_yaml.group(2))
            return "\n" + "\n".join(pad + line for line in dumped.splitlines())
        quoted = re.fullmatch(r"(\S+)\s*\|\s*quote", text)
        if quoted:
            return '"' + str(_lookup(ctx, quoted.group(1))) + '"'
        if re.fullmatch(r"\.[A-Za-z.]+", text):
            return str(_lookup(ctx, text))
        raise ValueError(f"template expression the test renderer does not know: {{{{ {text} }}}}")

    return _EXPR.sub(expr, template)


def _rendered(values: dict | None = None) -> dict[str, list[dict]]:
    values = values or yaml.safe_load((CHART / "values.yaml").read_text())
    out = {}
    for path in sorted((CHART / "templates").glob("*.yaml")):
        text = render(path.read_text(), values)
        assert "{{" not in text
        out[path.name] = _docs_from_text(text)
    return out


def _docs_from_text(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_helm_chart_renders_to_valid_objects():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "kaiwo"
    rendered = _rendered()
    kinds = sorted(d["kind"] for docs in rendered.values() for d in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Role", "RoleBinding",
                     "Service", "ServiceAccount"]
    for docs in rendered.values():
        for d in docs:
            _validate(d)
    # Helm installs crds/ before the templates and never templates them: they must be the CRDs.
    for crd in (CHART / "crds").glob("*.yaml"):
        assert crd.read_text() == (DEPLOY / "crds" / crd.name).read_text()
    assert {p.name for p in (CHART / "crds").glob("*.yaml")} == {p.name for p in (DEPLOY / "crds").glob("*.yaml")}


def test_helm_chart_matches_the_static_manifests():
    rendered = _rendered()
    static = _docs(DEPLOY / "rbac.yaml")
    chart_rules = _rules(rendered["rbac.yaml"])
    assert sorted(map(str, chart_rules)) == sorted(map(str, _rules(static)))
    (deploy,) = rendered["deployment.yaml"]
    (static_deploy,) = [d for d in _docs(DEPLOY / "deployment.yaml") if d["kind"] == "Deployment"]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    static_container = static_deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "controller" and "--in-cluster" in container["args"]
    for flag in ("--config=/etc/kaiwo/config.yaml", "--metrics-port=8080", "--lease-name=kaiwo-controller",
                 "--lease-namespace=$(POD_NAMESPACE)", "--identity=$(POD_NAME)"):
        assert flag in container["args"] and flag in static_container["args"]
    # Settings of the configuration file are not flags too: a flag would override the file for good.
    from kaiwo.cli.controller import FILE_FLAGS

    for args in (container["args"], static_container["args"]):
        assert not [a for a in args if a.split("=")[0].lstrip("-").replace("-", "_") in FILE_FLAGS]
    for key in ("startupProbe", "livenessProbe", "readinessProbe", "securityContext", "env", "volumeMounts"):
        assert container[key] == static_container[key], key
    assert deploy["spec"]["template"]["spec"]["volumes"] == static_deploy["spec"]["template"]["spec"]["volumes"]
    # The same configuration in both, and it is Kaiwo's default one.
    (config_map,) = rendered["configmap.yaml"]
    (static_map,) = [d for d in _docs(DEPLOY / "deployment.yaml") if d["kind"] == "ConfigMap"]
    assert config_map["data"] == static_map["data"] and config_map["metadata"]["name"] == "kaiwo-config"
    assert _configuration(config_map) == SchedulerConfiguration()
    # The chart's arguments are flags the CLI knows.
    from kaiwo.cli import build_parser

    args = [a.replace("$(POD_NAMESPACE)", "kaiwo-system").replace("$(POD_NAME)", "pod-0") for a in container["args"]]
    parsed = build_parser().parse_args(args)
    assert parsed.config == "/etc/kaiwo/config.yaml" and parsed.in_cluster and parsed.concurrency == 16


def _configuration(config_map: dict):
    """The configuration a ConfigMap's ``config.yaml`` holds, as the controller decodes it."""
    return decode(yaml.safe_load(config_map["data"]["config.yaml"]))


def test_metrics_service_has_one_name_everywhere():
    (static,) = [d for d in _docs(DEPLOY / "deployment.yaml") if d["kind"] == "Service"]
    (chart,) = _rendered()["service.yaml"]
    assert static["metadata"]["name"] == chart["metadata"]["name"] == "kaiwo-metrics"
    readme = (ROOT / "README.md").read_text()
    assert "svc/kaiwo-metrics" in readme and "Service `kaiwo-metrics`" in readme


def test_helm_values_change_the_rendering():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    changed = copy.deepcopy(values)
    changed.update(replicas=3, nodeSelector={"node-role.kubernetes.io/control-plane": ""},
                   tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}])
    changed["controller"]["namespaces"] = "ml,research"
    (deploy,) = _rendered(changed)["deployment.yaml"]
    spec = deploy["spec"]["template"]["spec"]
    assert deploy["spec"]["replicas"] == 3
    assert spec["nodeSelector"] == changed["nodeSelector"] and spec["tolerations"] == changed["tolerations"]
    assert "--namespace=ml,research" in spec["containers"][0]["args"]
    _validate(deploy)
    changed["config"] = {"strategy": "spread", "preemption": {"enabled": False},
                         "plugins": [{"name": "node-affinity"}]}
    with pytest.raises(ConfigError, match=r"plugins\[0\].name: 'node-affinity' is built in"):
        _configuration(_rendered(changed)["configmap.yaml"][0])
    del changed["config"]["plugins"]
    cfg = _configuration(_rendered(changed)["configmap.yaml"][0])
    assert cfg.strategy == "spread" and not cfg.preemption.enabled
    with pytest.raises(ValueError, match="does not know"):
        render("x: {{ include \"kaiwo.name\" . }}", values)


def _values_errors(values: dict) -> list[str]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(values)]


def test_values_schema_accepts_the_defaults_and_refuses_retired_or_misspelt_keys():
    """Helm checks values.schema.json before rendering: the chart's own values pass, and the keys
    that moved into the scheduler configuration (controller.strategy, controller.period) fail the
    install with their path instead of being silently ignored."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    # No image is published: the defaults fail on image.repository alone, until it is set.
    assert [e.split(":")[0] for e in _values_errors(values)] == ["image.repository"]
    values["image"]["repository"] = "registry.example.com/kaiwo"
    assert _values_errors(values) == []
    assert _values_errors({**values, "image": {"tag": "0.1.0"}}) == ["image: 'repository' is a required property"]
    # the test renderer's values (what every other test renders) with the repository set
    assert "registry.example.com/kaiwo:0.1.0" in render((CHART / "templates" / "deployment.yaml").read_text(), values)
    for key, value in (("strategy", "spread"), ("period", "2s"), ("schedulername", "kaiwo")):
        bad = {**values, "controller": {**values["controller"], key: value}}
        errors = _values_errors(bad)
        assert len(errors) == 1 and key in errors[0] and errors[0].startswith("controller"), errors
    assert _values_errors({**values, "replicas": 0})
    assert _values_errors({**values, "metrics": {"port": 70000}})
