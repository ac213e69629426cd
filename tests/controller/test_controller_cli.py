"""``kaiwo controller`` on the command line, against the emulator."""
from __future__ import annotations

import json

import pytest

from kaiwo.cli import main
from tests.controller.kube import node, pod, wait_until

BASE = ["controller", "--metrics-port", "-1", "--lease-namespace", "kaiwo-system", "--period", "200ms",
        "--request-timeout", "2s"]


def test_once_binds_and_reports_json(emulator, kube, kubeconfig, capsys):
    kube.create_all([node("n0"), pod("a", gpus=2), pod("b", fraction="0.5"), pod("huge", gpus=64)])
    rc = main([*BASE, "--kubeconfig", kubeconfig, "--once", "-o", "json", "--identity", "cli"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["bindings"] == 2 and out["results"] == {"bound": 2} and out["pending"] == 1
    assert set(kube.bound()) == {"default/a", "default/b"}


def test_once_exits_3_while_another_replica_holds_the_lease(emulator, kube, kubeconfig, make_controller, capsys):
    kube.create_all([node("n0"), pod("a", gpus=1)])
    holder = make_controller(identity="holder").start_background()
    wait_until(holder.is_leader)
    rc = main([*BASE, "--kubeconfig", kubeconfig, "--once", "--sync-timeout", "1s", "--identity", "cli"])
    assert rc == 3
    assert "not acquired" in capsys.readouterr().err


def test_bad_configuration_exits_2(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main([*BASE, "--kubeconfig", str(missing), "--once"]) == 2
    assert "cannot load the Kubernetes configuration" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main([*BASE, "--period", "soon"])
    assert info.value.code == 2


def test_metrics_bind_address_reaches_the_probe_server(kubeconfig, make_controller, monkeypatch):
    import kaiwo.controller

    seen = {}

    class Built(Exception):
        pass

    def capture(api_client, config):
        seen["config"] = config
        raise Built

    monkeypatch.setattr(kaiwo.controller, "Controller", capture)
    with pytest.raises(Built):
        main([*BASE[:1], "--kubeconfig", kubeconfig, "--metrics-port", "0", "--metrics-bind-address", "127.0.0.1"])
    assert seen["config"].metrics_host == "127.0.0.1"
    monkeypatch.undo()
    c = make_controller(metrics_port=0, metrics_host="127.0.0.1")
    c.start()
    assert c.server._httpd.server_address[0] == "127.0.0.1"
