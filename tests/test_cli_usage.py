"""What users of kubectl-style tools expect of every kaiwo command (issue 17): --version, YAML
output, -v/--log-level, documented exit statuses, --fail-on-rejected, completion, help text for
every option without reStructuredText markup, progress only on a terminal."""
import argparse
import io
import json
import logging
import shutil
import subprocess

import pytest
import yaml

from kaiwo.cli import build_parser, main, summary
from kaiwo.cli.completion import bash_script
from kaiwo.cli.usage import EXIT_STATUS, plain, subparsers, version

PARSERS = list(subparsers(build_parser()))


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"kaiwo {version()}"
    assert version()[0].isdigit()  # from the installed package's metadata


@pytest.mark.parametrize("argv", [["schedule"], ["explain", "-", "research/sweep-0"], ["rebalance"]])
def test_yaml_output_is_the_json_document(capsys, monkeypatch, argv):
    from kaiwo.cli import example_path

    class _In:
        buffer = io.BytesIO(open(example_path(), "rb").read())
    monkeypatch.setattr("sys.stdin", _In)
    main(argv + ["-o", "json", "--now", "dump"] if argv[0] != "rebalance" else argv + ["-o", "json"])
    as_json = json.loads(capsys.readouterr().out)
    _In.buffer.seek(0)
    main(argv + ["-o", "yaml", "--now", "dump"] if argv[0] != "rebalance" else argv + ["-o", "yaml"])
    as_yaml = yaml.safe_load(capsys.readouterr().out)
    for doc in (as_json, as_yaml):  # timings differ from run to run
        doc.get("stats", {}).pop("timingsMs", None)
    assert as_yaml == as_json


def test_fail_on_rejected(capsys):
    assert main(["schedule"]) == 0  # the example has a rejected pod: findings only with the flag
    assert main(["schedule", "--fail-on-rejected"]) == 1
    assert main(["schedule", "--fail-on-rejected", "--pod", "research/sweep-0"]) == 0  # only those listed


def test_every_option_has_help_and_no_rst_markup():
    for p in PARSERS:
        for a in p._actions:
            if not isinstance(a, argparse._SubParsersAction):
                assert a.help, f"{p.prog} {a.option_strings or a.dest}: no help text"
        text = p.format_help()
        for markup in ("``", ":mod:", ":func:", ":class:", ":data:"):
            assert markup not in text, f"{p.prog} --help shows {markup}"
        assert "exit status: 0 success" in " ".join(text.split())


def test_every_command_takes_verbose_and_log_level():
    for p in PARSERS:
        if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions) and p.prog != "kaiwo":
            assert {"-v", "--log-level"} <= set(p._option_string_actions), p.prog


def test_verbose_sets_the_log_level():
    root = logging.getLogger()
    saved = root.level, root.handlers[:]
    try:
        root.handlers[:] = []
        assert main(["plugins", "-vv"]) == 0
        assert root.level == logging.DEBUG
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


def test_plain_converts_rst():
    assert plain("see :mod:`kaiwo.cli.monitor` and :func:`~a.b.load`, ``x``") == "see kaiwo.cli.monitor and load, x"


def test_plugin_summary_is_a_whole_sentence():
    doc = """Keeps pods off nodes held by reservations: nodes by its filter, devices
    through the kernel's checks, e.g. XCDs.

    More detail."""
    assert summary(doc) == ("Keeps pods off nodes held by reservations: nodes by its filter, devices "
                            "through the kernel's checks, e.g. XCDs.")


def test_exit_status_is_in_the_readme():
    from pathlib import Path
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for code in ("0", "1", "2", "3", "141"):
        assert f"| {code} " in readme and f" {code} " in EXIT_STATUS.replace(";", " ") + " "


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
@pytest.mark.parametrize("line,expect", [
    ("kaiwo sch", {"schedule"}),
    ("kaiwo schedule --fail", {"--fail-on-rejected"}),
    ("kaiwo schedule -o ", {"table", "json", "yaml"}),
    ("kaiwo config v", {"validate"}),
    ("kaiwo simulate --reclaim c", {"conservative"}),
])
def test_bash_completion(line, expect):
    script = bash_script(build_parser())
    words = line.split(" ")
    prog = (script + f"\nCOMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}; "
            "_kaiwo; printf '%s\\n' \"${COMPREPLY[@]}\"")
    out = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, check=True).stdout.split()
    assert set(out) >= expect and all(w.startswith(words[-1]) for w in out)


def test_completion_command(capsys):
    assert main(["completion", "zsh"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("autoload -U +X bashcompinit") and "complete -o filenames -F _kaiwo kaiwo" in out


def test_progress_bar_only_on_a_terminal(capsys, tmp_path):
    nodes = tmp_path / "n.csv"
    nodes.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\n")
    assert main(["simulate", "--nodes", str(nodes), "--policy", "best-fit"]) == 0
    assert "\r" not in capsys.readouterr().err  # pytest's stderr is no terminal


def test_plugins_lines_are_whole_sentences(capsys):
    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 10 and all(line.rstrip().endswith((".", ")")) for line in lines), lines
