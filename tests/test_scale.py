"""Scale M through the command line: every pod exactly once, nothing overcommitted."""
import json

from kaiwo.cli import main
from kaiwo.simulator.synth import dump_objects
from tests.invariants import check_every_pod_once, check_no_overcommit


def test_schedule_scale_m_dump(tmp_path, capsys):
    objs = dump_objects("M", seed=3, running=True)
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"kind": "List", "items": objs}))
    assert main(["schedule", str(path), "--output", "json", "--compact"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["stats"]["nodes"] == 1000 and doc["stats"]["gpus"] == 8000
    assert doc["stats"]["bound"] > 0 and doc["stats"]["pending"] > 0
    assert not doc["warnings"], doc["warnings"][:3]
    check_every_pod_once(objs, doc)
    check_no_overcommit(objs, doc)


def test_schedule_cpx_dump_every_strategy(tmp_path, capsys):
    objs = dump_objects("S", seed=4, partition="cpx_nps4", running=True)
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"kind": "List", "items": objs}))
    for strategy in ("binpack", "spread", "frag"):
        assert main(["schedule", str(path), "-o", "json", "--strategy", strategy]) == 0
        doc = json.loads(capsys.readouterr().out)
        check_every_pod_once(objs, doc)
        check_no_overcommit(objs, doc)
