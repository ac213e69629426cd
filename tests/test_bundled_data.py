"""The evaluation data the README's commands use is in the repository, readable, and attributed."""
from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path

import pytest

from kaiwo_core.model.trace import TraceError, read_node_csv, read_pod_csv
from kaiwo.simulator.online import read_jobs_csv, read_vc_nodes

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


def _bundled() -> list[Path]:
    return sorted(p for p in DATA.rglob("*") if p.is_file() and p.name != "README.md")


def test_every_bundled_file_is_gzipped_and_attributed():
    files = _bundled()
    assert len(files) == 29  # 24 openb pod lists, 2 node lists, the paper's summary, 2 Philly files
    readme = (DATA / "README.md").read_text()
    for p in files:
        assert p.suffix == ".gz", p
        stem = p.name[:-len(".csv.gz")]
        # Named in data/README.md, directly or as a {a,b,c} family.
        families = re.findall(r"`(\w+?)\{([\w,]+)\}\.csv\.gz`", readme)
        named = f"`{p.name}`" in readme or any(stem.startswith(f) and stem[len(f):] in v.split(",")
                                               for f, v in families)
        assert named, f"{p.relative_to(ROOT)} is not described in data/README.md"


def test_readme_commands_use_only_bundled_data():
    readme = (ROOT / "README.md").read_text()
    assert "../shared" not in readme
    for path in re.findall(r"\bdata/[\w/.-]+\.gz", readme):
        assert (ROOT / path).is_file(), path


@pytest.mark.parametrize("path", sorted((DATA / "openb").glob("openb_pod_list_*.csv.gz")), ids=lambda p: p.name)
def test_openb_pod_lists_read(path):
    assert len(read_pod_csv(path).names) > 1000


def test_node_lists_and_philly_read():
    assert read_node_csv(DATA / "openb" / "openb_node_list_gpu_node.csv.gz").gpus.sum() == 6212
    assert len(read_node_csv(DATA / "openb" / "openb_node_list_all_node.csv.gz").gpus) == 1523
    assert len(read_jobs_csv(DATA / "philly" / "philly_jobs_titansched.csv.gz").arrival) == 82247
    assert read_vc_nodes(DATA / "philly" / "philly_vc_nodes_helios_artifact.csv.gz") == {
        "6214e9": 64, "7f04ca": 32, "11cb48": 16, "b436b2": 64, "ee9e8c": 64, "e13805": 16,
        "6c71a0": 32, "2869ce": 16, "ed69ec": 8, "103959": 8, "0e4a51": 32}


def test_trace_error_survives_a_process_boundary():
    e = TraceError("x.csv", 3, "cpu_milli", "abc", "not an integer")
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == str(e) and (back.line, back.column) == (3, "cpu_milli")


def _eval_openb():
    sys.path.insert(0, str(ROOT / "asv_bench"))
    try:
        import eval_openb
    finally:
        sys.path.pop(0)
    return eval_openb


def test_eval_openb_names_missing_files(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _eval_openb().main(["--data", str(tmp_path), "--variants", "default"])
    assert e.value.code == 2
    assert "openb_pod_list_default.csv" in capsys.readouterr().err


def test_eval_openb_reports_a_malformed_file_without_a_traceback(tmp_path, capsys):
    (tmp_path / "openb_node_list_gpu_node.csv").write_text("sn,cpu_milli,memory_mib,gpu,model\nn,1000,1000,1,A10\n")
    (tmp_path / "openb_pod_list_default.csv").write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\nx,abc,1,1,1\n")
    assert _eval_openb().main(["--data", str(tmp_path), "--variants", "default", "--policies", "fgd",
                               "--seeds", "42", "--jobs", "1"]) == 2
    assert "column 'cpu_milli' = 'abc': not an integer" in capsys.readouterr().err


def test_eval_openb_runs_on_the_bundled_data(capsys):
    assert _eval_openb().main(["--variants", "multigpu50", "--policies", "frag", "--seeds", "42", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    # FGD's published mean for multigpu50 comes from the bundled summary file.
    assert re.search(r"multigpu50\s+\d+\.\d+\s+97\.18", out), out
