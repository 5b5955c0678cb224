"""The package's import graph: no circle anywhere, counting module-level AND function-level
imports (a function-level import that only hides a circle is still a circle; imports under
``if TYPE_CHECKING:`` never run and are not counted), and no private name (``_x``) of one
module imported by another, but for the known cases of :data:`KNOWN_PRIVATE` (each to be
removed when its owner makes the name public)."""
from __future__ import annotations

import ast
from pathlib import Path

import optical_viz

PACKAGE = Path(optical_viz.__file__).resolve().parent
# importer -> private names it still imports from another module (issue 23: to be made public)
KNOWN_PRIVATE = {
    "optical_viz.distill": {"_apply_start", "_load_models", "_Models", "_save_student", "_set_checkpointing",
                            "_tokenize"},  # of optical_viz.models
    "optical_viz.data.loaders": {"_manifest_index"},  # of optical_viz.data.manifest
    "optical_viz.experiments.alignment_sweep": {"_Tokens", "_tokens_of", "_alignments",
                                                "_plans_nonempty"},  # of optical_viz.alignment
}


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
    new = {m: sorted(names - KNOWN_PRIVATE.get(m, set())) for m, names in found.items()}
    assert not any(new.values()), f"private names imported across modules: { {m: n for m, n in new.items() if n} }"
    gone = {m: sorted(names - found.get(m, set())) for m, names in KNOWN_PRIVATE.items()}
    assert not any(gone.values()), f"now public (remove them from KNOWN_PRIVATE): {gone}"
