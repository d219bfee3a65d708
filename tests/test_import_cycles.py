"""No import cycles between the modules of hgq_rewrite.

Imports inside functions count as well as module-level ones: an import deferred into a function
to break a cycle still leaves the two modules depending on each other. Imports under
``if TYPE_CHECKING:`` do not count. An edge goes to the module named (``from .a import b`` goes to
``a.b`` when that is a module, else to ``a``); importing a submodule also runs its package's
``__init__``, but that implicit edge is not counted (every module would then cycle with its package).
"""

import ast
import os

import hgq_rewrite

ROOT = os.path.dirname(hgq_rewrite.__file__)
PACKAGE = "hgq_rewrite"

# Cycles still being removed, each with the reason; empty when there are none.
ALLOWED_CYCLES = {}


def modules():
    """``{dotted name: path}`` of every module of the package."""
    found = {}
    for directory, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, os.path.dirname(ROOT))[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_type_checking(node):
    test = node.test
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports(tree):
    """Every Import/ImportFrom node, outside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name, path, known):
    """The package modules that module ``name`` imports."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    out = set()
    for node in _imports(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        out.update(t for t in targets if t in known and t != name)
    return out


def find_cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
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
                cycles.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_finder_sees_a_cycle_through_a_deferred_import(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    known = {"pkg": str(pkg / "__init__.py"), **{f"pkg.{m}": str(pkg / f"{m}.py") for m in "abc"}}
    graph = {m: imports_of(m, p, known) for m, p in known.items()}
    assert graph["pkg.c"] == set()
    assert find_cycles(graph) == [frozenset({"pkg.a", "pkg.b"})]


def test_no_import_cycles():
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    cycles = [sorted(c) for c in find_cycles(graph) if c not in ALLOWED_CYCLES]
    assert not cycles, f"import cycles: {cycles}"
    stale = [sorted(c) for c in ALLOWED_CYCLES if c not in find_cycles(graph)]
    assert not stale, f"allowed cycles that no longer exist (remove them from ALLOWED_CYCLES): {stale}"
