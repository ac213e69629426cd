"""The command line on the bundled example and on bad input."""
import json
import os
import subprocess
import sys

import pytest

from kaiwo.cli import main


def test_bundled_example_table(capsys):
    assert main(["schedule"]) == 0
    out = capsys.readouterr().out
    assert "research/finetune-4gpu" in out and "typo-fraction" in out and "must be between 0.1 and 1.0" in out


def test_bundled_example_json(capsys):
    assert main(["schedule", "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) >= {"bindings", "preemptions", "pending", "rejected", "queues", "stats"}
    assert {r["pod"] for r in doc["running"]} == {"research/llm-pretrain-0"}
    xcd = next(b for b in doc["bindings"] if b["pod"] == "serving/inference-xcd")
    assert len(xcd["devices"][0]["xcds"]) == 3 and xcd["devices"][0]["fraction"] == 0.375
    assert doc["stats"]["pods"] == 12  # ten Pod objects and the two pods of the KaiwoJob
    assert {q["name"] for q in doc["queues"]} == {"default", "research", "product", "serving", "notebooks"}
    assert {b["pod"] for b in doc["bindings"]} >= {"research/sweep-0", "research/sweep-1"}


def test_missing_file(capsys, tmp_path):
    assert main(["schedule", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_not_objects(capsys, tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("- 1\n- 2\n")
    assert main(["schedule", str(p)]) == 2
    assert "not a Kubernetes object" in capsys.readouterr().err


def test_plugins_listed(capsys):
    assert main(["plugins"]) == 0
    assert "binpack" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["schedule", "--output", "json"], ["monitor"], ["recommend", "--json"]])
def test_a_closed_pipe_ends_quietly(args):
    """`kaiwo schedule | head -c 10`: the reader goes away; no BrokenPipeError traceback."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "kaiwo", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=root)
    proc.stdout.read(10)
    proc.stdout.close()  # what `head` does once it has its bytes
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
