"""The scheduler configuration file (KaiwoSchedulerConfiguration): decoding, every error with its path,
defaults equal to the cycle's own, bounded reading, and --config changing what ``kaiwo schedule``
and ``kaiwo simulate`` decide."""
from __future__ import annotations

import dataclasses
import inspect
import json
import math

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import kaiwo_core as kc
from kaiwo.cli import main
from kaiwo.dump import MAX_CONFIG_BYTES, DumpError, load_config, read_config
from kaiwo_core.scheduling.config import (API_VERSION, KIND, SECTIONS, ConfigError, ControllerSettings,
                                          SchedulerConfiguration, decode, render_default)
from kaiwo_core.scheduling.fairness import OrderingConfig
from kaiwo_core.scheduling.preemption import PreemptionConfig
from kaiwo_core.scheduling.reservations import ReservationConfig
from tests.controller.kube import node, pod, queue
from tests.test_hostile_corpus import RAW as HOSTILE_FILES

HEAD = {"apiVersion": API_VERSION, "kind": KIND}


def doc(**body) -> dict:
    return {**HEAD, **body}


def errors_of(d, overrides=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        decode(d, overrides)
    return info.value.errors


class KeepFree(kc.Plugin):
    """Test plugin: keeps one node free of new pods."""

    name = "test-config-keep-free"
    config_schema = {"node": (str, "n0", "node to keep free"), "strict": (bool, True, "unused")}

    def filter(self, ctx):
        mask = np.ones(ctx.shape, bool)
        mask[:, ctx.cluster.index(self.config["node"])] = False
        return mask


def setup_module():
    kc.register(KeepFree)


# ---------------------------------------------------------------------------------- defaults

def test_defaults_are_todays_defaults():
    """No file, an empty file body and the printed default file all give exactly what
    ``kaiwo_core.schedule`` and the controller use without any configuration."""
    cfg = SchedulerConfiguration()
    params = inspect.signature(kc.schedule).parameters
    assert cfg.strategy == params["strategy"].default == "binpack"
    assert cfg.ordering == params["ordering"].default == OrderingConfig()
    assert cfg.preemption == params["preempting"].default == PreemptionConfig()
    assert cfg.reservation == params["reserving"].default == ReservationConfig()
    assert cfg.plugins == ()
    assert decode(dict(HEAD)) == cfg
    assert load_config(None) == cfg
    assert decode(yaml.safe_load(render_default())) == cfg
    # Today's values, written out: a change of default is a decision, not an accident.
    assert (cfg.ordering.age_boost_per_hour, cfg.ordering.age_boost_max, cfg.ordering.gpu_demand_factor) == \
        (10.0, 100.0, 0.0)
    assert cfg.preemption == PreemptionConfig(enabled=True, nonpreemptible_priority=2_000_000_000,
                                              check_resources="quota", max_preemptors=256)
    assert cfg.reservation == ReservationConfig(starvation=600.0, ttl=1800.0, min_gpus=2, max_automatic=2,
                                                max_node_fraction=0.1)
    assert cfg.controller == ControllerSettings(period=1.0, resync_period=300.0, assume_ttl=30.0,
                                                event_interval=60.0)
    names = [p.name for p in cfg.pipeline().plugins]
    assert names == [p.name for p in kc.default_pipeline().plugins]


def test_every_field_of_a_section_is_a_key_of_the_file():
    """A setting added to one of the dataclasses must be given a key (and a reader) in SECTIONS."""
    for name, section in SECTIONS.items():
        attrs = [s.attr for s in section.settings]
        assert sorted(attrs) == sorted(f.name for f in dataclasses.fields(section.cls)), name
        assert name in {f.name for f in dataclasses.fields(SchedulerConfiguration)}
        default = getattr(SchedulerConfiguration(), name)
        for s in section.settings:  # every default reads back as itself
            assert s.read(s.write(getattr(default, s.attr))) == getattr(default, s.attr), (name, s.key)


def test_default_file_lists_every_key_with_a_comment(tmp_path, capsys):
    assert main(["config", "default"]) == 0
    text = capsys.readouterr().out
    assert text == render_default()
    out = tmp_path / "kaiwo-config.yaml"
    assert main(["config", "default", "-o", str(out)]) == 0 and out.read_text() == text
    assert main(["config", "default", "-o", str(out)]) == 2  # an existing file is never overwritten
    assert "File exists" in capsys.readouterr().err
    for name, section in SECTIONS.items():
        assert f"\n{name}:\n" in text
        for s in section.settings:
            line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"{s.key}:"))
            assert "# " in line, line


# -------------------------------------------------------------------------------- decoding

def test_a_full_file_decodes_into_the_dataclasses():
    cfg = decode(yaml.safe_load("""
apiVersion: kaiwo.ai/v1alpha1
kind: KaiwoSchedulerConfiguration
strategy: spread
plugins:
  - name: test-config-keep-free
    args: {node: n1}
ordering: {ageBoostPerHour: 2.5, ageBoostMax: 20, gpuDemandFactor: -1}
preemption: {enabled: false, nonpreemptiblePriority: 1000, checkResources: all, maxPreemptors: 0}
reservation: {starvation: 1h30m, ttl: 90, minGpus: 4, maxAutomatic: 0, maxNodeFraction: 0.5}
controller: {period: 500ms, resyncPeriod: 0, assumeTtl: 1m, eventInterval: 10s}
"""))
    assert cfg.strategy == "spread" and cfg.plugins == (("test-config-keep-free", {"node": "n1"}),)
    assert cfg.ordering == OrderingConfig(2.5, 20.0, -1.0)
    assert cfg.preemption == PreemptionConfig(False, 1000, "all", 0)
    assert cfg.reservation == ReservationConfig(5400.0, 90.0, 4, 0, 0.5)
    assert cfg.controller == ControllerSettings(0.5, 0.0, 60.0, 10.0)
    assert [p.name for p in cfg.pipeline().plugins][-2:] == ["test-config-keep-free", "spread"]
    assert cfg.pipeline("frag").strategy.name == "frag"


def test_every_error_of_a_file_is_listed_with_its_path():
    """The hand-written bad file: each mistake once, in file order within a section, nothing else."""
    bad = yaml.safe_load("""
apiVersion: kaiwo.ai/v1
kind: KaiwoSchedulerConfiguration
stratgy: spread
strategy: sprad
plugins:
  - name: test-config-keep-fre
  - {name: binpack}
  - {name: taints}
  - {name: test-config-keep-free, args: {nod: n1}}
  - {name: test-config-keep-free, args: {node: 3}}
  - {name: test-config-keep-free, arg: {}}
  - just-a-name
ordering: [1, 2]
preemption:
  maxPreemptors: -3
  enable: false
  checkResources: every
  nonpreemptiblePriority: 1.5
reservation:
  ttl: soon
  starvation: -1
  maxNodeFraction: 2
  minGpus: 100000
controller:
  period: 0
  assumeTtl: .nan
""")
    assert errors_of(bad) == [
        "stratgy: unknown key (did you mean strategy?)",
        "apiVersion: 'kaiwo.ai/v1': must be kaiwo.ai/v1alpha1",
        "strategy: 'sprad': not a strategy plugin (did you mean spread?) (strategies: best-fit, binpack, "
        "dot-product, fgd, frag, gpu-clustering, gpu-packing, load, random, spread)",
        "plugins[0].name: 'test-config-keep-fre': no such plugin (did you mean test-config-keep-free?) "
        "(kaiwo plugins lists them)",
        "plugins[1].name: 'binpack' is a strategy: choose it with strategy:",
        "plugins[2].name: 'taints' is built in and always on",
        "plugins[3].args.nod: unknown key (did you mean node?)",
        "plugins[4].args: plugin 'test-config-keep-free': config 'node' = 3: expected str",
        "plugins[5].arg: unknown key (did you mean args?)",
        "plugins[6]: 'just-a-name': must be a map {name, args}",
        "ordering: [1, 2]: must be a map, not a list",
        "preemption.enable: unknown key (did you mean enabled?)",
        "preemption.maxPreemptors: -3: must be >= 0",
        "preemption.checkResources: 'every': must be one of quota, all",
        "preemption.nonpreemptiblePriority: 1.5: must be an integer",
        "reservation.ttl: 'soon': not a duration (expected e.g. 10m, 1h30m, 90s)",
        "reservation.starvation: -1: must not be negative",
        "reservation.maxNodeFraction: 2: must be <= 1",
        "reservation.minGpus: 100000: must be <= 1024",
        "controller.period: 0: must be longer than 0",
        "controller.assumeTtl: nan: must be a finite number of seconds, at most 3.15576e+09",
    ]


def test_the_cli_lists_every_error_and_never_runs(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("apiVersion: kaiwo.ai/v1alpha1\nkind: KaiwoSchedulerConfiguration\n"
                    "preemption: {maxPreemptors: -3, enabeld: false}\n")
    assert main(["config", "validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: 2 errors" in err
    assert "  preemption.maxPreemptors: -3: must be >= 0" in err
    assert "  preemption.enabeld: unknown key (did you mean enabled?)" in err
    for command in (["schedule"], ["simulate", "--quiet"]):
        assert main([*command, "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert "invalid configuration (2 errors)" in err and "preemption.maxPreemptors: -3" in err
    path.write_text(render_default())
    assert main(["config", "validate", str(path)]) == 0
    assert "valid (strategy binpack, plugins: none, preemption on)" in capsys.readouterr().out
    assert main(["config", "validate", str(tmp_path / "missing.yaml")]) == 2


@pytest.mark.parametrize("bad, first", [
    (None, "the file must be a map (a KaiwoSchedulerConfiguration), not empty"),
    ([HEAD], "the file must be a map (a KaiwoSchedulerConfiguration), not a list"),
    ({}, "apiVersion: must be kaiwo.ai/v1alpha1"),
    ({**HEAD, "kind": "KubeSchedulerConfiguration"}, "kind: 'KubeSchedulerConfiguration': must be "
                                                      "KaiwoSchedulerConfiguration"),
    (doc(plugins={"name": "x"}), "plugins: {'name': 'x'}: must be a list of {name, args}, not a dict"),
    (doc(plugins=[{"name": "x"}] * 65), "plugins: 65 entries: must be at most 64"),
    (doc(plugins=[{"name": ["x"]}]), "plugins[0].name: ['x']: no such plugin (kaiwo plugins lists them)"),
    (doc(plugins=[{"args": {}}]), "plugins[0].name: missing (the plugin's name)"),
    (doc(plugins=[{"name": "test-config-keep-free", "args": [1]}]), "plugins[0].args: [1]: must be a map"),
    (doc(plugins=[{"name": "test-config-keep-free", "args": {1: 2}}]),
     "plugins[0].args.1: unknown key (known: node, strict)"),
    (doc(ordering={"ageBoostMax": 10**400}), "ordering.ageBoostMax: <integer of 401 digits>: must be a "
                                             "finite number"),
    (doc(ordering={"gpuDemandFactor": True}), "ordering.gpuDemandFactor: True: must be a number"),
    (doc(ordering={"ageBoostPerHour": -1}), "ordering.ageBoostPerHour: -1: must be >= 0"),
    (doc(ordering={"ageBoostPerHour": math.inf}), "ordering.ageBoostPerHour: inf: must be a finite number"),
    (doc(preemption={"enabled": "no"}), "preemption.enabled: 'no': must be true or false"),
    (doc(preemption={"maxPreemptors": 2.0, "checkResources": ["all"]}),
     "preemption.checkResources: ['all']: must be one of quota, all"),
    (doc(reservation="off"), "reservation: 'off': must be a map, not a str"),
    (doc(controller={"resyncPeriod": "5 minutes"}),
     "controller.resyncPeriod: '5 minutes': not a duration (expected e.g. 10m, 1h30m, 90s)"),
    (doc(**{"1": 2}), "1: unknown key (known: apiVersion, kind, strategy, plugins, ordering, preemption, "
                      "reservation, load, controller)"),
])
def test_hostile_values_are_errors_with_their_path(bad, first):
    assert errors_of(bad)[0] == first


def test_a_section_left_empty_keeps_its_defaults():
    assert decode(doc(ordering=None, preemption={})) == SchedulerConfiguration()
    assert decode(doc(preemption={"maxPreemptors": 2.0})).preemption.max_preemptors == 2


def test_overrides_win_over_the_file():
    cfg = decode(doc(strategy="frag", controller={"period": "5s", "assumeTtl": "1m"}),
                 {"strategy": "spread", "controller.period": 0.25, "controller.eventInterval": 3})
    assert cfg.strategy == "spread"
    assert cfg.controller == ControllerSettings(period=0.25, assume_ttl=60.0, event_interval=3.0)
    # a section that is not a map keeps its own error; the override does not hide it
    assert errors_of(doc(controller=[1]), {"controller.period": 2}) == [
        "controller: [1]: must be a map, not a list"]


def test_errors_beyond_the_shown_ones_are_counted():
    e = ConfigError([f"k{i}: unknown key" for i in range(250)])
    lines = str(e).splitlines()
    assert len(e.errors) == 250 and len(lines) == 201 and lines[-1] == "... and 50 more errors"


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=12)
_keys = st.sampled_from(["strategy", "plugins", *SECTIONS, "nope"])
_section_keys = st.sampled_from(sorted({s.key for sec in SECTIONS.values() for s in sec.settings}
                                       | {"name", "args"}))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_keys, _json | st.dictionaries(_section_keys, _json, max_size=4)
                       | st.lists(st.dictionaries(_section_keys, _json, max_size=3), max_size=3), max_size=5))
def test_any_mapping_decodes_or_is_refused_with_errors(body):
    """Whatever the file holds: a configuration, or a ConfigError whose every line names a path."""
    try:
        cfg = decode({**HEAD, **body})
    except ConfigError as e:
        assert e.errors and all(": " in line for line in e.errors)
        return
    assert isinstance(cfg, SchedulerConfiguration)
    cfg.pipeline()


# ---------------------------------------------------------------------------- reading a file

def test_reading_is_bounded(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("apiVersion: kaiwo.ai/v1alpha1\n#" + "x" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(DumpError, match="larger than 1048576 bytes"):
        read_config(big)
    two = tmp_path / "two.yaml"
    two.write_text("apiVersion: kaiwo.ai/v1alpha1\n---\nkind: KaiwoSchedulerConfiguration\n")
    with pytest.raises(DumpError, match="2 YAML documents"):
        read_config(two)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)))
    with pytest.raises(DumpError, match="expands to more than"):
        read_config(bomb)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"strategy: caf\xe9\n")
    with pytest.raises(DumpError, match="not UTF-8"):
        read_config(latin)
    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps(doc(strategy="spread")))
    assert load_config(as_json).strategy == "spread"


# ------------------------------------------------------------------- --config changes decisions

def _dump(tmp_path, objs) -> str:
    path = tmp_path / "dump.yaml"
    for o in objs:
        o["metadata"].setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
    path.write_text(yaml.safe_dump_all(objs))
    return str(path)


def _schedule(capsys, *args) -> dict:
    assert main(["schedule", "-o", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_config_strategy_and_plugins_change_the_bindings(tmp_path, capsys):
    # Two empty 8-GPU nodes, two 1-GPU pods: binpack puts them together, spread apart.
    dump = _dump(tmp_path, [node("n0"), node("n1"), pod("a", gpus=1), pod("b", gpus=1)])
    cfg = tmp_path / "c.yaml"

    def nodes(*args):
        return sorted(b["node"] for b in _schedule(capsys, dump, *args)["bindings"])

    assert len(set(nodes())) == 1
    cfg.write_text(yaml.safe_dump(doc(strategy="spread")))
    assert nodes("--config", str(cfg)) == ["n0", "n1"]
    assert len(set(nodes("--config", str(cfg), "--strategy", "binpack"))) == 1  # the flag wins
    cfg.write_text(yaml.safe_dump(doc(strategy="spread", plugins=[{"name": "test-config-keep-free",
                                                                   "args": {"node": "n0"}}])))
    assert nodes("--config", str(cfg)) == ["n1", "n1"]


def test_config_turns_preemption_off(tmp_path, capsys):
    dump = _dump(tmp_path, [node("n0"), queue("team", 8),
                            pod("low", gpus=8, queue="team", node_name="n0", priority=0),
                            pod("high", gpus=8, queue="team", priority=1000)])
    on = _schedule(capsys, dump)
    assert [(p["pod"], p["preemptor"]) for p in on["preemptions"]] == [("default/low", "default/high")]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("apiVersion: kaiwo.ai/v1alpha1\nkind: KaiwoSchedulerConfiguration\npreemption: {enabled: false}\n")
    off = _schedule(capsys, dump, "--config", str(cfg))
    assert off["preemptions"] == [] and off["bindings"] == []
    assert [p["pod"] for p in off["pending"]] == ["default/high"]


def test_config_ordering_changes_who_goes_first(tmp_path, capsys):
    # One free GPU, two pending 1-GPU pods in one queue. "old" waited five hours (50 of age boost at
    # 10 per hour); "new" has priority 30. By default "old" goes first; without age boost, "new".
    old, new = pod("old", gpus=1), pod("new", gpus=1, priority=30)
    old["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    new["metadata"]["creationTimestamp"] = "2026-01-01T05:00:00Z"
    dump = _dump(tmp_path, [node("n0", gpus=1), old, new])
    # --now dump: ages measured at the newest creation time (05:00), not the wall clock
    assert [b["pod"] for b in _schedule(capsys, dump, "--now", "dump")["bindings"]] == ["default/old"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(doc(ordering={"ageBoostPerHour": 0})))
    assert [b["pod"] for b in _schedule(capsys, dump, "--now", "dump", "--config", str(cfg))["bindings"]] \
        == ["default/new"]


def test_simulate_takes_strategy_and_plugins_from_the_file(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(doc(strategy="best-fit")))
    assert main(["simulate", "--config", str(cfg), "--quiet", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["policy"] for p in out["policies"]] == ["best-fit"]
    assert out["policies"][0]["allocationAt130"]["mean"] == 93.13  # the published run, unchanged
    assert main(["simulate", "--config", str(cfg), "--policy", "fgd", "--quiet", "--json"]) == 0
    assert [p["policy"] for p in json.loads(capsys.readouterr().out)["policies"]] == ["fgd"]


def test_simulate_online_takes_preemption_from_the_file(tmp_path, capsys):
    # The reclaim scenario of test_simulate: one node, VC b's eight jobs fill it, then VC a's job
    # (within quota) reclaims one. With preemption off in the file, nothing is evicted.
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("timestamp,duration,num_gpus,cluster\n" + "0,100,1,b\n" * 8 + "15,1000,1,a\n")
    vc = tmp_path / "vc.csv"
    vc.write_text("vc,node num\na,1\nb,0\n")
    base = ["simulate", "--online", "--trace", str(jobs), "--vc-nodes", str(vc), "--period", "10", "--quiet",
            "--json"]
    assert main(base) == 0
    assert json.loads(capsys.readouterr().out)["preemptions"] == 1
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(doc(preemption={"enabled": False})))
    assert main([*base, "--config", str(cfg)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preemptions"] == 0 and out["reclaim"] == "none"


class MyFilter(KeepFree):
    name = "my-filter"  # the README example's stand-in for a user's plugin


def test_the_readme_example_is_a_valid_file(tmp_path, capsys):
    from pathlib import Path

    kc.register(MyFilter)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = decode(yaml.safe_load(example))
    assert cfg.strategy == "spread" and cfg.plugins == (("my-filter", {"node": "gpu-07"}),)
    assert cfg.ordering == OrderingConfig(gpu_demand_factor=5.0)
    assert (cfg.preemption, cfg.reservation, cfg.controller) == (PreemptionConfig(), ReservationConfig(),
                                                                ControllerSettings())
    # ... and the errors it shows are what `kaiwo config validate` says
    shown = section.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    path = tmp_path / "kaiwo-config.yaml"
    path.write_text("apiVersion: kaiwo.ai/v1\nkind: KaiwoSchedulerConfiguration\n"
                    "preemption: {enabeld: false, maxPreemptors: -3}\n")
    assert main(["config", "validate", str(path)]) == 1
    assert capsys.readouterr().err.replace(str(path), "kaiwo-config.yaml").splitlines() == shown


@pytest.mark.parametrize("case", HOSTILE_FILES, ids=lambda c: c[0])
def test_hostile_files_are_refused_with_a_message(case, tmp_path, capsys):
    """The hostile corpus's unreadable files, given as --config: a message, exit code 2, and no cycle."""
    _, name, data, says = case
    p = tmp_path / name
    p.write_bytes(data)
    assert main(["schedule", "--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kaiwo schedule: ") and "Traceback" not in err
    assert (says if says != "not a Kubernetes object" else "must be a map") in err
