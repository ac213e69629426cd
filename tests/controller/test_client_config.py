"""The API client as the controller builds it: a missing kubeconfig named, and a down API server
not flooding the log with urllib3's retry warnings (issue 17)."""
import logging

import pytest
from kubernetes.config import ConfigException

from kaiwo.cli import main
from kaiwo.controller import make_api_client

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
users: [{name: u, user: {token: t}}]
"""


def test_missing_kubeconfig_is_named(tmp_path, capsys, monkeypatch):
    assert main(["controller", "--kubeconfig", str(tmp_path / "nope"), "--once"]) == 2
    assert f"kubeconfig {tmp_path / 'nope'}: no such file" in capsys.readouterr().err
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "env"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigException, match=f"kubeconfig {tmp_path / 'env'}: no such file .*--kubeconfig"):
        make_api_client()


def test_api_server_down_logs_no_urllib3_retries(tmp_path, caplog):
    from kubernetes import client
    (tmp_path / "kc").write_text(KUBECONFIG)
    api = client.CoreV1Api(make_api_client(str(tmp_path / "kc")))
    with caplog.at_level(logging.WARNING):
        with pytest.raises(Exception):  # noqa: B017 - refused, whichever exception the client wraps it in
            api.list_node(_request_timeout=2)
    assert not [r for r in caplog.records if r.name.startswith("urllib3")]
