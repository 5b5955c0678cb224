"""docs/architecture.md stays true, and the package's import graph stays a layered one.

- Every module of the package is placed in one layer of the doc's "Layers" table, and no
  import reaches up a layer or crosses a ``never:`` line of it.
- No circle anywhere, counting module-level AND function-level imports (a function-level
  import that only hides a circle is still a circle; imports under ``if TYPE_CHECKING:``
  never run and are not counted).
- No private name (``_x``) of one module imported by another.
- Tests mirror modules: every module has a test file by the doc's rule (its first paragraph).
"""
from __future__ import annotations

import ast
import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

import optical_viz

PACKAGE = Path(optical_viz.__file__).resolve().parent
DOC = PACKAGE.parent / "docs" / "architecture.md"
TESTS = PACKAGE.parent / "tests"


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package is its ``__init__``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["optical_viz", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of the package that ``name`` (a module or a name inside one) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) of every import statement in ``module``,
    wherever it stands (module level, function, method, ``if``)."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    out = []
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, "", node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full, "", node.lineno) if full in MODULES else (base, alias.name, node.lineno))
    return [(m, n, line) for m, n, line in out if m == "optical_viz" or m.startswith("optical_viz.")]


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but the bodies of ``if TYPE_CHECKING:`` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if _type_checking(node):
            todo += node.orelse
        else:
            todo += list(ast.iter_child_nodes(node))


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for m in MODULES:
        for target, _, _ in imports(m):
            owner = _owner(target)
            if owner is not None and owner != m:
                edges[m].add(owner)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_function_level_and_relative_imports():
    found = {(m, n) for m, n, _ in imports("optical_viz.experiments.scale_probe")}
    assert ("optical_viz.distill", "build_trainer") in found  # inside scale_probe_weights
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\n"
                     "def f():\n    import c\n")
    assert sorted(n.names[0].name for n in _runtime_nodes(tree) if isinstance(n, ast.Import)) == ["b", "c"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_the_package():
    found = cycles(graph())
    assert not found, "import circles (module-level and function-level imports): " + "; ".join(
        " <-> ".join(c) for c in found)


def test_no_private_name_is_imported_across_modules():
    found: dict[str, set[str]] = {}
    for m in MODULES:
        for target, n, _ in imports(m):
            if n.startswith("_") and not n.startswith("__") and _owner(target) != m:
                found.setdefault(m, set()).add(n)
    assert not found, f"private names imported across modules: {found}"


def test_no_private_name_is_reached_through_a_module_attribute():
    """``loaders._read_json(...)`` is the same private import as ``from loaders import _read_json``."""
    names = {m.rpartition(".")[2] for m in MODULES}
    found = []
    for m, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in names and node.value.id != "self"):
                found.append(f"{m}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not found, f"private names of other modules: {found}"


# ----------------------------------------------------------------------------- the doc's layers

def layers_from_doc() -> tuple[dict[str, int], dict[str, set[str]]]:
    """The doc's "## Layers" code block: lines ``N  title: module module ...`` (names relative to
    the package, bottom layer 0) and ``never: module -> module module`` (imports forbidden
    although the layers allow them)."""
    block = DOC.read_text(encoding="utf-8").split("## Layers", 1)[1].split("```", 2)[1]
    layer_of, never = {}, {}
    for line in block.splitlines():
        if m := re.match(r"\s*never:\s*(\S+)\s*->\s*(.*)", line):
            never.setdefault(f"optical_viz.{m.group(1)}", set()).update(f"optical_viz.{n}" for n in m.group(2).split())
        elif m := re.match(r"\s*(\d+)\s+[\w ,/-]+:\s*(.*)", line):
            for module in m.group(2).split():
                assert f"optical_viz.{module}" not in layer_of, f"{module} is in two layers of {DOC.name}"
                layer_of[f"optical_viz.{module}"] = int(m.group(1))
    return layer_of, never


LAYERS, NEVER = layers_from_doc()


def test_every_module_of_the_package_has_a_layer_in_the_doc():
    missing = sorted(set(MODULES) - set(LAYERS) - {"optical_viz"})
    stale = sorted(set(LAYERS) - set(MODULES))
    assert not missing, f"modules not placed in docs/architecture.md's Layers: {missing}"
    assert not stale, f"docs/architecture.md's Layers names modules that do not exist: {stale}"


EDGES = graph()


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"optical_viz"}))
def test_no_import_reaches_up_a_layer(module):
    up = sorted(m for m in EDGES[module] if m != "optical_viz" and LAYERS.get(m, -1) > LAYERS.get(module, 99))
    assert not up, (f"{module} (layer {LAYERS[module]}) imports {up} (layers {[LAYERS[m] for m in up]}): "
                    "move the code, or the module in docs/architecture.md's Layers")


def test_no_import_crosses_a_never_line():
    assert NEVER, "docs/architecture.md's Layers has no never: line (plots -> transport ...)"
    for module, forbidden in NEVER.items():
        assert not EDGES[module] & forbidden, f"{module} imports {sorted(EDGES[module] & forbidden)}, which the doc forbids"


# ----------------------------------------------------------------------------- tests mirror modules

def accepted_test_files(module: str) -> list[str]:
    """The names (fnmatch patterns) of the files of tests/ that may hold ``module``'s tests, by
    docs/architecture.md's rule; [] for a package (its ``__init__``: exempt).

    ``x.py`` -> ``test_x.py``; ``pkg/x.py`` -> ``test_pkg_x.py``, or ``test_x.py`` when no other
    module is named ``x``; ``commands/x.py`` also -> ``test_cli.py``; a private ``pkg/_x.py`` ->
    the package's tests, ``test_pkg.py`` or ``test_pkg_*.py``."""
    if MODULES[module].name == "__init__.py":
        return []
    *pkg, name = module.split(".")[1:]
    if not pkg:
        return [f"test_{name}.py"]
    prefix = "_".join(pkg)
    if name.startswith("_"):
        return [f"test_{prefix}.py", f"test_{prefix}_*.py"]
    names = [f"test_{prefix}_{name}.py"]
    if sum(m.rpartition(".")[2] == name for m in MODULES) == 1:
        names.append(f"test_{name}.py")
    if pkg == ["commands"]:
        names.append("test_cli.py")
    return names


def test_the_mirror_rule_names_the_files_the_doc_promises():
    assert accepted_test_files("optical_viz") == accepted_test_files("optical_viz.data") == []
    assert accepted_test_files("optical_viz.transport") == ["test_transport.py"]
    assert accepted_test_files("optical_viz.data.loaders") == ["test_data_loaders.py", "test_loaders.py"]
    assert accepted_test_files("optical_viz.experiments.grid") == ["test_experiments_grid.py", "test_grid.py"]
    # a name two modules share: only the package-prefixed file (test_transport.py is transport.py's)
    assert accepted_test_files("optical_viz.benchmarks.transport") == ["test_benchmarks_transport.py"]
    assert accepted_test_files("optical_viz.commands.data") == ["test_commands_data.py", "test_cli.py"]
    assert accepted_test_files("optical_viz.retrieval._trec") == ["test_retrieval.py", "test_retrieval_*.py"]
    doc = " ".join(DOC.read_text().split())
    assert "mirror modules (`optical_viz/x.py` -> `tests/test_x.py`" in doc
    assert "`pkg/x.py` -> `test_pkg_x.py`, or `test_x.py` when no other module is named `x`" in doc


def test_every_module_has_a_test_file():
    present = sorted(p.name for p in TESTS.glob("test_*.py"))
    missing = {m: names for m in MODULES if (names := accepted_test_files(m))
               and not any(fnmatch(f, n) for f in present for n in names)}
    assert not missing, "modules without a test file (docs/architecture.md: tests mirror modules): " + "; ".join(
        f"{m} (tests/{' or tests/'.join(names)})" for m, names in missing.items())
