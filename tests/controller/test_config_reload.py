"""``kaiwo controller --config``: the file sets the cycle, explicit flags win, and a running
controller reloads it when it changes -- a bad version is rejected, logged and counted, and the
previous configuration kept. The file is swapped the way the kubelet updates a ConfigMap volume."""
from __future__ import annotations

import json
import logging
import os
import re

import pytest
import yaml

from kaiwo.cli import main
from kaiwo.controller import ControllerConfig
from kaiwo_core.scheduling.config import API_VERSION, KIND, ConfigError, ControllerSettings
from tests.controller.kube import node, pod, wait_until

FAST = {"period": "200ms", "eventInterval": "500ms", "assumeTtl": "5s"}


class ConfigMapVolume:
    """A directory laid out as the kubelet lays out a ConfigMap volume: ``config.yaml`` ->
    ``..data/config.yaml``, ``..data`` -> ``..<version>``; an update is a new version directory and
    an atomic rename of the ``..data`` symlink."""

    def __init__(self, root):
        self.root, self.version = root, 0
        self.path = str(root / "config.yaml")

    def write(self, body: dict | str) -> None:
        self.version += 1
        version = self.root / f"..v{self.version}"
        version.mkdir()
        text = body if isinstance(body, str) else yaml.safe_dump({"apiVersion": API_VERSION, "kind": KIND, **body})
        (version / "config.yaml").write_text(text)
        tmp = self.root / "..data_tmp"
        os.symlink(version.name, tmp)
        os.replace(tmp, self.root / "..data")
        if not os.path.islink(self.path):
            os.symlink("..data/config.yaml", self.path)


def _metric(controller, name: str) -> float | None:
    m = re.search(rf"^{re.escape(name)} (\S+)$", controller.metrics.render(), re.M)
    return float(m.group(1)) if m else None


def test_controller_defaults_are_the_files():
    c, s = ControllerConfig(), ControllerSettings()
    assert (c.period, c.resync_period, c.assume_ttl, c.pod_event_interval) == \
        (s.period, s.resync_period, s.assume_ttl, s.event_interval)


def test_reload_applies_a_new_version_and_keeps_the_old_on_errors(emulator, kube, make_controller, tmp_path,
                                                                 caplog, monkeypatch):
    monkeypatch.setenv("POD_NAME", "kaiwo-controller-0")  # as the Deployment's downward API sets them
    monkeypatch.setenv("POD_NAMESPACE", "kaiwo-system")
    volume = ConfigMapVolume(tmp_path)
    volume.write({"strategy": "binpack", "controller": FAST})
    controller = make_controller(config_file=volume.path).start_background()
    assert controller.config.period == 0.2 and controller.config.pod_event_interval == 0.5
    kube.create_all([node("n0"), node("n1"), pod("a", gpus=1), pod("b", gpus=1)])
    wait_until(lambda: len(kube.bound()) == 2)
    first = {p["spec"]["nodeName"] for p in kube.bound().values()}
    assert len(first) == 1  # binpack: together

    caplog.set_level(logging.ERROR, logger="kaiwo.controller")
    volume.write({"strategy": "sprad", "preemption": {"maxPreemptors": -3}, "controller": FAST})
    wait_until(lambda: _metric(controller, 'kaiwo_config_reloads_total{outcome="rejected"}') == 1)
    assert _metric(controller, "kaiwo_config_last_reload_successful") == 0
    assert controller.config.scheduling.strategy == "binpack"
    logged = caplog.text
    assert "rejected, the previous one is kept (2 errors)" in logged
    assert "strategy: 'sprad': not a strategy plugin (did you mean spread?)" in logged
    assert "preemption.maxPreemptors: -3: must be >= 0" in logged
    (event,) = wait_until(lambda: kube.events_for("kaiwo-controller-0", "InvalidConfiguration"))
    assert event["type"] == "Warning" and "preemption.maxPreemptors: -3: must be >= 0" in event["message"]

    volume.write({"strategy": "spread", "controller": {**FAST, "assumeTtl": "7s"}})
    wait_until(lambda: _metric(controller, 'kaiwo_config_reloads_total{outcome="applied"}') == 1)
    assert _metric(controller, "kaiwo_config_last_reload_successful") == 1
    assert controller.config.scheduling.strategy == "spread" and controller.cache.assume_ttl == 7.0
    kube.create_all([pod("c", gpus=1), pod("d", gpus=1)])
    wait_until(lambda: len(kube.bound()) == 4)
    later = {kube.bound()[k]["spec"]["nodeName"] for k in ("default/c", "default/d")}
    assert later == {"n0", "n1"} - first  # spread: onto the emptier node (binpack: the fuller one)
    # The same bytes again (a swap that changes nothing) is no reload.
    volume.write({"strategy": "spread", "controller": {**FAST, "assumeTtl": "7s"}})
    n = controller.iterations
    wait_until(lambda: controller.iterations > n + 2)
    assert _metric(controller, 'kaiwo_config_reloads_total{outcome="applied"}') == 1


def test_a_bad_file_at_start_is_refused(emulator, make_controller, tmp_path):
    volume = ConfigMapVolume(tmp_path)
    volume.write({"ordering": {"ageBoostPerHr": 5}})
    with pytest.raises(ConfigError, match=r"ordering.ageBoostPerHr: unknown key \(did you mean ageBoostPerHour\?\)"):
        make_controller(config_file=volume.path)


BASE = ["controller", "--metrics-port", "-1", "--lease-namespace", "kaiwo-system", "--request-timeout", "2s",
        "--identity", "cli", "--once", "-o", "json"]


def test_cli_takes_the_file_and_explicit_flags_win(emulator, kube, kubeconfig, tmp_path, capsys):
    volume = ConfigMapVolume(tmp_path)
    volume.write({"strategy": "spread", "controller": FAST})
    kube.create_all([node("n0"), node("n1"), pod("a", gpus=1), pod("b", gpus=1)])
    assert main([*BASE, "--kubeconfig", kubeconfig, "--config", volume.path]) == 0
    assert json.loads(capsys.readouterr().out)["bindings"] == 2
    assert {p["spec"]["nodeName"] for p in kube.bound().values()} == {"n0", "n1"}
    kube.create_all([pod("c", gpus=1), pod("d", gpus=1)])
    assert main([*BASE, "--kubeconfig", kubeconfig, "--config", volume.path, "--strategy", "binpack"]) == 0
    capsys.readouterr()
    bound = kube.bound()
    assert bound["default/c"]["spec"]["nodeName"] == bound["default/d"]["spec"]["nodeName"]


def test_cli_refuses_a_bad_file_before_connecting(tmp_path, capsys):
    volume = ConfigMapVolume(tmp_path)
    volume.write({"strategy": 3, "controller": {"period": "-1s"}})
    assert main([*BASE, "--kubeconfig", str(tmp_path / "no-kubeconfig"), "--config", volume.path]) == 2
    err = capsys.readouterr().err
    assert "invalid configuration (2 errors)" in err and "cannot load the Kubernetes" not in err
    assert "strategy: 3: not a strategy plugin" in err and "controller.period: '-1s'" in err
