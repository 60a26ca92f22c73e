"""The import rules of docs/architecture.md, checked on the source: no cycle among the project's
modules (imports inside functions count; ``if TYPE_CHECKING:`` blocks do not), layers that
point one way (``pipeline`` -> ``models``, ``streams``; never back), and a comment beside every
import inside a function saying why it is there (keeping TensorFlow out of start-up)."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("harstream", "streams", "models", "pipeline")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the project's packages by dotted name (a package by its own name)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.AST, name: str, is_package: bool) -> list[str]:
    """Dotted names ``tree`` imports at run time (``TYPE_CHECKING`` blocks left out)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(module)
            found.extend(f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the project modules it imports (a submodule's packages included)."""
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        targets = set()
        for dotted in _imported(tree, name, path.name == "__init__.py"):
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
                prefix = ".".join(parts[:i])
                if prefix in known and prefix != name and not name.startswith(prefix + "."):
                    targets.add(prefix)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_import_cycle_among_the_project_modules():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_sees_function_level_imports_and_skips_type_checking(tmp_path):
    pkg = tmp_path / "pipeline"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pipeline import b\n")
    (pkg / "b.py").write_text("import pipeline.a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from pipeline.a import f\n")  # fmt: skip
    for other in PACKAGES[:3]:
        (tmp_path / other).mkdir()
    graph = import_graph(tmp_path)
    assert cycles(graph) == [["pipeline.a", "pipeline.b"]]
    assert graph["pipeline.c"] == set()


def test_layers_point_one_way():
    allowed = {
        "harstream": set(),
        "streams": {"harstream"},
        "models": {"harstream"},
        "pipeline": {"harstream", "streams", "models"},
    }
    wrong = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if (top := target.split(".")[0]) != module.split(".")[0]
        and top not in allowed[module.split(".")[0]]
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_subsystem_imports_the_cli():
    """Only the command line and the tools run from it (reports) use ``pipeline.cli``."""
    users = sorted(
        module
        for module, targets in import_graph().items()
        if any(t == "pipeline.cli" or t.startswith("pipeline.cli.") for t in targets)
        and not module.startswith(("pipeline.cli", "pipeline.reports"))
    )
    assert users == []


def _function_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The imports inside functions (``TYPE_CHECKING`` blocks left out)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child, in_function)
            return
        if in_function and isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return found


def uncommented_function_imports(root: Path = ROOT) -> list[str]:
    """``path:line: import`` of every import inside a function without a comment on its line
    or, for an import over several lines, on its first line or the line before."""
    found = []
    for path in modules(root).values():
        source = path.read_text()
        lines = source.splitlines()
        tokens = tokenize.generate_tokens(io.StringIO(source).readline)
        comments = {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT}
        for node in _function_imports(ast.parse(source, str(path))):
            first = node.lineno
            above = lines[first - 2].lstrip() if first > 1 else ""
            if first in comments or (node.end_lineno > first and above.startswith("#")):
                continue
            found.append(f"{path.relative_to(root)}:{first}: {lines[first - 1].strip()}")
    return found


def test_every_import_inside_a_function_says_why():
    """Imports inside functions only where they keep TensorFlow (or another heavy package: Kafka
    clients, matplotlib, the datasets, the benchmarks) out of start-up, each with a comment
    saying so; any other import belongs at the top of its module."""
    missing = "\n".join(uncommented_function_imports())
    assert not missing, f"imports inside functions without a comment saying why:\n{missing}"


def test_the_comment_check_sees_each_uncommented_function_import(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "models" / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import json\n"
        "def f():\n"
        "    import os  # why\n"
        "    import re\n"  # 5: no comment
        "    # why, for the import below\n"
        "    from json import (\n"
        "        dumps,\n"
        "    )\n"
        "    if TYPE_CHECKING:\n"
        "        import keras\n"
        "    class C:\n"
        "        def g(self):\n"
        "            from os import (  # why\n"
        "                path,\n"
        "            )\n"
        "            # a comment above a one-line import is not beside it\n"
        "            import sys\n"  # 18
        "            import csv; x = '#'\n"  # 19: a '#' in a string is no comment
    )
    assert [line.split(": ")[0] for line in uncommented_function_imports(tmp_path)] == [
        "models/a.py:5",
        "models/a.py:18",
        "models/a.py:19",
    ]
