"""Cold start: the controller compiles nothing at import, and a shipped kernel cache is used as is."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kaiwo.warmup import seed_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code_or_args, **env) -> str:
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    full = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])), **env)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True, env=full,
                          cwd=ROOT, timeout=600).stdout


def test_the_controller_imports_no_jit_kernel():
    # Importing the store's kernels compiled them for ~12 CPU-seconds before the probe server could
    # answer (the kubelet killed slow starters); the controller uses no Numba kernel in its cycle.
    out = _python("import sys, kaiwo.cli, kaiwo.controller; print(sorted({m.split('.')[0] for m in sys.modules}))")
    assert "numba" not in out


def test_seed_cache_copies_missing_files_only(tmp_path):
    seed, target = tmp_path / "seed", tmp_path / "target"
    (seed / "a" / "b").mkdir(parents=True)
    (seed / "top.nbi").write_text("index")
    (seed / "a" / "b" / "k.nbc").write_text("code")
    (target / "a" / "b").mkdir(parents=True)
    (target / "a" / "b" / "k.nbc").write_text("kept")
    assert seed_cache(str(seed), str(target)) == 1
    assert (target / "top.nbi").read_text() == "index"
    assert (target / "a" / "b" / "k.nbc").read_text() == "kept"   # a restarted container keeps its own
    assert seed_cache(str(seed), str(target)) == 0
    assert seed_cache(str(tmp_path / "missing"), str(target)) == 0
    assert seed_cache("", str(target)) == 0 and seed_cache(str(seed), "") == 0
    assert seed_cache(str(seed), str(seed)) == 0


@pytest.mark.slow
def test_a_seeded_cache_compiles_nothing(tmp_path):
    """What the image does: `kaiwo warmup` at build time into a seed; at start, copied into an empty
    NUMBA_CACHE_DIR, after which every kernel loads from the cache."""
    seed, fresh = str(tmp_path / "seed"), str(tmp_path / "fresh")
    built = json.loads(_python(["-m", "kaiwo.cli", "warmup", "--json"], NUMBA_CACHE_DIR=seed))
    assert built["compiled"] > 0 and built["kernels"] >= 30
    started = json.loads(_python(["-m", "kaiwo.cli", "warmup", "--json"], NUMBA_CACHE_DIR=fresh,
                                 KAIWO_NUMBA_CACHE_SEED=seed))
    assert started["seededFiles"] > 0
    assert started["compiled"] == 0 and started["loadedFromCache"] > 0
