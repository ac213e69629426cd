"""Crashes and rough edges of the command line found by trying it as a new user (issue 17)."""
import warnings

import pytest

from kaiwo.cli import main


def test_generate_unknown_partition_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", "--partition", "foo"])
    assert e.value.code == 2 and "cannot read partition mode 'foo'" in capsys.readouterr().err


def test_generate_partition_spelled_with_a_dash(capsys):
    assert main(["generate", "--partition", "CPX-nps4"]) == 0
    assert '"cpx_nps4"' in capsys.readouterr().out


@pytest.mark.parametrize("ratio", ["-1", "0", "nan", "11"])
def test_simulate_ratio_out_of_range(capsys, ratio):
    assert main(["simulate", "--ratio", ratio, "--quiet"]) == 2
    assert f"--ratio {float(ratio):g}: must be above 0" in capsys.readouterr().err


def test_simulate_unknown_gpu_model_says_what_it_is(capsys):
    assert main(["simulate", "--gpu-model", "MI999", "--quiet"]) == 2
    assert "'MI999': not an AMD Instinct model (known: MI300A" in capsys.readouterr().err


@pytest.fixture
def two_nodes(tmp_path):
    p = tmp_path / "n.csv"
    p.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\nn1,64000,262144,2,P100\n")
    return str(p)


def test_simulate_on_a_tiny_node_list(capsys, two_nodes):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's 'Mean of empty slice' leaked before
        assert main(["simulate", "--nodes", two_nodes, "--policy", "best-fit", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and "PAPER" not in out  # the paper's numbers are for its node list
    row = next(line.split() for line in out.splitlines() if line.startswith("best-fit"))
    assert float(row[2]) > 0  # 100% is reached: the ratio as of the last offer below it


def test_simulate_ratio_below_130_shows_dashes(capsys, two_nodes):
    assert main(["simulate", "--nodes", two_nodes, "--policy", "best-fit", "--quiet", "--ratio", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and "never reached that share" in out
