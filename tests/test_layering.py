"""The layering rule, checked from the source: cluster -> actors -> learner -> data -> rewards.

A module may import its own package or any package to its right, never one to its left, and project modules
import each other without cycles. Every `import` statement counts, including those inside functions: a lazy
import still ties the two modules together, it only hides the tie from the interpreter at start-up.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("cluster", "actors", "learner", "data", "rewards")

# Violations that remain in files the lead engineer is rewriting (learner/*.py, cluster/config.py). Each entry is
# (importing module, imported module); the lead empties this set with that rewrite. Nothing else may be added.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path) -> dict[str, Path]:
    """Every module of the five packages under root, by dotted name."""
    found = {}
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[module_name(path, root)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module a dotted import name refers to (the longest prefix that is one), else None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, source: str, modules: dict[str, Path], is_package: bool = False) -> set[str]:
    """The project modules that `module` imports anywhere in its source (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub when there is one, else a name of pkg
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                found.add(target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: imports_of(name, path.read_text(), modules, path.name == "__init__.py")
            for name, path in modules.items()}


def layer_violations(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(importer, imported) pairs where the imported module's package lies to the importer's left."""
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    return {(src, dst) for src, targets in graph.items() for dst in targets
            if rank[dst.split(".")[0]] < rank[src.split(".")[0]]}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_the_project_graph_is_complete():
    graph = import_graph(ROOT)
    assert {name.split(".")[0] for name in graph} == set(LAYERS)
    # a few edges that must be seen, one of them inside a function (actors/prm.py imports transformers lazily,
    # and rewards.prm.verify inside its PRM set-up)
    assert "data.schema" in graph["data.questions"]
    assert "rewards.prm.verify" in graph["actors.prm"]


def test_no_module_imports_a_package_to_its_left():
    violations = layer_violations(import_graph(ROOT)) - KNOWN_VIOLATIONS
    assert not violations, "upward imports (cluster -> actors -> learner -> data -> rewards): " + ", ".join(
        f"{src} imports {dst}" for src, dst in sorted(violations))


def test_known_violations_are_still_real():
    """The allow-list only shrinks: an entry that no longer occurs must be removed from it."""
    assert KNOWN_VIOLATIONS <= layer_violations(import_graph(ROOT))


def test_no_import_cycles():
    cycles = import_cycles(import_graph(ROOT))
    assert not cycles, f"import cycles: {cycles}"


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for layer in LAYERS:
        (root / layer).mkdir(parents=True, exist_ok=True)
        (root / layer / "__init__.py").touch()
    for rel, text in files.items():
        (root / rel).write_text(text)


def test_an_upward_import_is_reported(tmp_path):
    _write_tree(tmp_path, {
        "cluster/config.py": "X = 1\n",
        "data/schema.py": "from rewards.errors import RowError\n",
        "rewards/errors.py": "class RowError(ValueError):\n    pass\n",
        # inside a function it still counts, and so does the plain `import a.b` form
        "rewards/bad.py": "def f():\n    from cluster.config import X\n    return X\n",
        "actors/worse.py": "import cluster.config as config\n",
    })
    graph = import_graph(tmp_path)
    assert layer_violations(graph) == {("rewards.bad", "cluster.config"), ("actors.worse", "cluster.config")}


def test_a_cycle_is_reported(tmp_path):
    (tmp_path / "rewards" / "prm").mkdir(parents=True)
    _write_tree(tmp_path, {
        "data/network.py": "def g():\n    from data.synthetic import random_network\n",
        "data/synthetic.py": "from data.network import TransitNetwork\n",
        "data/schema.py": "import data.images\n",
        "data/images.py": "X = 1\n",
        "rewards/prm/__init__.py": "",
        "rewards/prm/check.py": "from . import solutions\n",           # relative imports resolve too
        "rewards/prm/solutions.py": "from .check import _close\n",
    })
    graph = import_graph(tmp_path)
    assert graph["rewards.prm.check"] == {"rewards.prm.solutions"}
    assert import_cycles(graph) == [["data.network", "data.synthetic"], ["rewards.prm.check", "rewards.prm.solutions"]]
