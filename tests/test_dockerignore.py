"""The image build context (.dockerignore) leaves out build outputs, virtual environments, Git and
test caches, but keeps everything the wheel the Dockerfile builds is made of."""
import fnmatch
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ignored(path: str, patterns: list[str]) -> bool:
    # Docker's rules as this file uses them: a pattern matches from the context's root (``**/``:
    # at any depth), and a matched directory takes everything below it.
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pat in patterns:
        if pat.startswith("**/"):
            if any(fnmatch.fnmatch(part, pat[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch(p, pat) for p in prefixes):
            return True
    return False


def test_dockerignore_keeps_the_wheel_sources_and_drops_the_rest():
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    needed = [f for f in tracked if f.startswith(("kaiwo/", "kaiwo_core/", "csrc/", "bindings/"))
              or f in ("setup.py", "pyproject.toml", "README.md")]
    assert needed and not [f for f in needed if _ignored(f, patterns)]
    for path in (".git/HEAD", "build/lib/x.so", "kaiwo_core/_placement.cpython-311-x86_64-linux-gnu.so",
                 ".venv/bin/python", ".hypothesis/examples/x", "data/openb/x.csv.gz", "dist/kaiwo.whl"):
        assert _ignored(path, patterns), path
