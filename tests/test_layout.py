"""The tree shows the architecture, and the imports keep to it.

``kaiwo_core.model`` (GPU facts, quantities, Nodes and Pods decoded) is the base; ``scheduling`` and
``monitoring`` build on it and never on each other. The modules at the top of ``kaiwo_core`` are
what joins them: ``plugins`` (the extension framework both use) and ``self_metrics`` (the plugin that
records a cycle's results as Prometheus metrics and, optionally, as series in a metrics store).
Module-level imports have no cycles, so any module can be imported first.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "kaiwo_core"


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules of kaiwo_core that ``path`` imports (relative imports resolved)."""
    mod = _module(path)
    return _parse_imports(path.read_text(), mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0],
                          top_level_only)


def _parse_imports(source: str, package: str, top_level_only: bool) -> set[str]:
    tree = ast.parse(source)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)  # "from . import module"
    known = {_module(p) for p in CORE.rglob("*.py")}
    return {m for m in out if m in known}


def _files(sub: str):
    return sorted((CORE / sub).rglob("*.py"))


@pytest.mark.parametrize("sub, forbidden", [
    ("model", ("kaiwo_core.scheduling", "kaiwo_core.monitoring")),
    ("scheduling", ("kaiwo_core.monitoring",)),
    ("monitoring", ("kaiwo_core.scheduling",)),
])
def test_subsystems_keep_to_their_layer(sub, forbidden):
    bad = [f"{_module(p)} imports {m}" for p in _files(sub) for m in sorted(_imports(p, top_level_only=False))
           if m.startswith(forbidden)]
    assert not bad, "\n".join(bad)


def test_no_library_module_imports_the_application():
    bad = [str(p.relative_to(ROOT)) for p in CORE.rglob("*.py")
           if any(line.lstrip().startswith(("import kaiwo.", "from kaiwo.", "from kaiwo import"))
                  for line in p.read_text().splitlines())]
    assert not bad


def test_module_level_imports_have_no_cycle():
    graph = {_module(p): _imports(p, top_level_only=True) for p in CORE.rglob("*.py")}
    # A package's __init__ importing its own modules is how re-exports work, not a cycle.
    graph = {m: {d for d in deps if not m.startswith(d + ".") and d != m} for m, deps in graph.items()}
    state: dict = {}

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_the_checker_sees_forbidden_imports():
    """The layer test can fail: relative, absolute and function-level imports are all resolved."""
    found = _parse_imports("from ..monitoring import alerts\nimport kaiwo_core.model.gpu\n"
                           "def f():\n    from ..monitoring.history import save\n",
                           "kaiwo_core.scheduling", top_level_only=False)
    assert {"kaiwo_core.monitoring.alerts", "kaiwo_core.model.gpu", "kaiwo_core.monitoring.history"} <= found
    assert "kaiwo_core.monitoring.history" not in _parse_imports(
        "def f():\n    from ..monitoring.history import save\n", "kaiwo_core.scheduling", top_level_only=True)
