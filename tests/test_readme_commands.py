"""Every command in the README runs as written from a fresh clone.

Shell blocks: each ``kaiwo`` command must parse with the real argument parser (subcommand, flags and
choices exist), each script, test path and bundled file it names must exist. Commands that need a
cluster, a registry or the network (kubectl, helm, docker, curl) cannot run here; the repository
paths they name are still checked. Python blocks are executed, in order, one namespace per README
section (the Python API's second block uses the first one's snapshot), in a scratch directory.
With ``KAIWO_README_RUN=1`` the runnable shell commands are executed too (minutes: the ten-seed
replay and the 20,000-job online replay are among them).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from kaiwo.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
NEEDS_A_CLUSTER = {"kubectl", "helm", "docker", "curl"}
# Files the README's commands expect the user (or an earlier command) to provide.
USER_FILES = {"dump.yaml", "dump.yaml.gz", "my_nodes.csv", "rules.yaml", "scrapes.prom", "history.npz", "out.json",
              "alloc.png", "report.html", "online.png", "online.html", "kaiwo-config.yaml"}


def blocks(lang: str) -> list[tuple[int, str, str]]:
    """(line, section heading, text) of every fenced block of ``lang``."""
    out, section, inside, start, lines = [], "", None, 0, []
    for i, line in enumerate(README.splitlines(), 1):
        if inside is None and line.startswith("#") and not line.startswith("#!"):
            section = line.lstrip("# ").strip()
        if line.startswith("```"):
            if inside is None:
                inside, start, lines = line[3:].strip(), i, []
            else:
                if inside == lang:
                    out.append((start, section, "\n".join(lines)))
                inside = None
        elif inside is not None:
            lines.append(line)
    return out


def shell_commands() -> list[tuple[int, list[str]]]:
    cmds = []
    for start, _, text in blocks("sh"):
        joined = re.sub(r"\\\n\s*", " ", text)
        for k, line in enumerate(joined.splitlines()):
            words = shlex.split(line, comments=True)
            while words:  # `a && b`, `a | b`: each part is a command
                ends = [i for i, w in enumerate(words) if w in ("&&", "|")]
                part = words[:ends[0]] if ends else words
                words = words[len(part) + 1:]
                part = [w for w in part if not re.fullmatch(r"[A-Z_]+=\S*", w)] if part else part
                # `> file`: the shell's redirection, not the command's argument
                part = [w for i, w in enumerate(part) if w not in (">", ">>", "<")
                        and (i == 0 or part[i - 1] not in (">", ">>", "<"))]
                if part:
                    cmds.append((start + k + 1, part))
    return cmds


COMMANDS = shell_commands()


def _paths(words: list[str]) -> list[str]:
    """Arguments that name a file of the repository (not a URL, an option or a user's file); for
    kubectl only its ``-f`` files (``deploy/kaiwo-controller`` there is a Deployment, not a path)."""
    out = []
    if words[0] == "kubectl":
        words = [w for prev, w in zip(words, words[1:]) if prev == "-f"]
    for w in words:
        w = w.split("=", 1)[1] if w.startswith("--") and "=" in w else w
        if w.startswith(("-", "http", "/")) or w in USER_FILES or "/" not in w:
            continue
        if w.split("/", 1)[0] in {"data", "deploy", "kaiwo", "kaiwo_core", "tests", "asv_bench", "tools"}:
            out.append(w.split(">", 1)[0])
    return out


def test_the_readme_has_commands():
    assert len(COMMANDS) > 20 and len(blocks("python")) >= 3


@pytest.mark.parametrize("line,words", COMMANDS, ids=[f"L{n}-{w[0]}" for n, w in COMMANDS])
def test_command_as_written(line, words):
    for path in _paths(words):
        assert (ROOT / path).exists(), f"README line {line}: {path} is not in the repository"
    prog = words[0]
    if prog == "kaiwo":
        try:
            build_parser().parse_args(words[1:])
        except SystemExit as e:  # 0: --version, --help
            if e.code != 0:
                pytest.fail(f"README line {line}: `{shlex.join(words)}` does not parse (exit {e.code})")
    elif prog == "python":
        if words[1:3] == ["-m", "pytest"]:
            for w in words[3:]:
                if not w.startswith(("-", "/")) and "/" in w:
                    assert (ROOT / w.split("::")[0]).exists(), f"README line {line}: {w}"
        elif words[1].endswith(".py"):
            assert (ROOT / words[1]).is_file(), f"README line {line}: {words[1]}"
    else:
        assert prog in NEEDS_A_CLUSTER | {"pip"}, f"README line {line}: unknown command {prog}"


SECTIONS: dict[str, list[tuple[int, str]]] = {}
for _start, _section, _text in blocks("python"):
    SECTIONS.setdefault(_section, []).append((_start, _text))


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_python_examples_run(section, tmp_path):
    code = "\n".join(f"# README line {n}\n{text}" for n, text in SECTIONS[section])
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                           [str(ROOT), os.environ.get("PYTHONPATH", "")])})
    assert r.returncode == 0, f"README section {section!r}:\n{r.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("KAIWO_README_RUN") != "1", reason="set KAIWO_README_RUN=1 to run them")
def _runnable(words: list[str]) -> bool:
    """Commands this machine can run on their own: not a benchmark (``pytest``), not reading a file
    the user or a skipped command provides (a user file, a benchmark's ``/tmp`` JSON, ``-`` fed by
    a pipe), not scraping a live endpoint (``http://``)."""
    return (words[0] in ("kaiwo", "python") and not set(words) & USER_FILES and "pytest" not in words
            and "-" not in words[1:] and not any(w.startswith("/tmp/") or "://" in w for w in words))


@pytest.mark.parametrize("line,words", [(n, w) for n, w in COMMANDS if _runnable(w)],
                         ids=lambda x: str(x) if isinstance(x, int) else x[0])
def test_command_runs(line, words):
    r = subprocess.run([sys.executable, "-m", "kaiwo", *words[1:]] if words[0] == "kaiwo" else
                       [sys.executable, *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"README line {line}: {shlex.join(words)}\n{r.stderr[-3000:]}"
