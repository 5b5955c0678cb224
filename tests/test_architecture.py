"""docs/architecture.md stays true: every module of the package is placed in one layer of its
"Layers" table, and no import (module-level or inside a function) reaches up a layer."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "optical_viz"
DOC = ROOT / "docs" / "architecture.md"


def package_modules() -> dict[str, Path]:
    """Dotted names relative to the package ("transport", "data.loaders", "experiments")."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts) or "optical_viz"] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that ``name`` imports anywhere in its file (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] + ([node.module] if node.module else [])
                base = ".".join(p for p in base if p)
            elif node.module and (node.module == "optical_viz" or node.module.startswith("optical_viz.")):
                base = node.module.removeprefix("optical_viz").lstrip(".")
            else:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                found.add(sub if sub in modules else (base or "optical_viz"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("optical_viz."):
                    found.add(alias.name.removeprefix("optical_viz."))
    found.discard(name)
    return found


def layers_from_doc() -> tuple[dict[str, int], dict[str, set[str]]]:
    """The doc's "## Layers" code block: lines ``N  title: module module ...`` (bottom layer 0)
    and ``never: module -> module module`` (imports forbidden although the layers allow them)."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("## Layers", 1)[1].split("```", 2)[1]
    layer_of, never = {}, {}
    for line in block.splitlines():
        if m := re.match(r"\s*never:\s*(\S+)\s*->\s*(.*)", line):
            never.setdefault(m.group(1), set()).update(m.group(2).split())
        elif m := re.match(r"\s*(\d+)\s+[\w ,/-]+:\s*(.*)", line):
            for module in m.group(2).split():
                assert module not in layer_of, f"{module} is placed in two layers of docs/architecture.md"
                layer_of[module] = int(m.group(1))
    return layer_of, never


MODULES = package_modules()
LAYERS, NEVER = layers_from_doc()


def test_every_module_of_the_package_has_a_layer_in_the_doc():
    missing = sorted(set(MODULES) - set(LAYERS) - {"optical_viz"})
    stale = sorted(set(LAYERS) - set(MODULES))
    assert not missing, f"modules not placed in docs/architecture.md's Layers: {missing}"
    assert not stale, f"docs/architecture.md's Layers names modules that do not exist: {stale}"


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"optical_viz"}))
def test_no_import_reaches_up_a_layer(module):
    up = sorted(m for m in imports_of(module, MODULES[module], MODULES)
                if m != "optical_viz" and LAYERS.get(m, -1) > LAYERS[module])
    assert not up, (f"{module} (layer {LAYERS[module]}) imports {up} "
                    f"(layers {[LAYERS[m] for m in up]}): move the code or fix docs/architecture.md")


def test_no_forbidden_import():
    assert NEVER, "docs/architecture.md's Layers has no never: line (plots -> transport ...)"
    for module, forbidden in NEVER.items():
        bad = sorted(imports_of(module, MODULES[module], MODULES) & forbidden)
        assert not bad, f"{module} imports {bad}, which docs/architecture.md forbids"


def test_the_import_graph_has_no_cycle():
    graph = {m: imports_of(m, p, MODULES) - {"optical_viz"} for m, p in MODULES.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_the_checker_sees_a_function_level_import_and_a_cycle(tmp_path):
    """The graph reader counts imports inside functions (where circles hide)."""
    f = tmp_path / "a.py"
    f.write_text("def g():\n    from optical_viz.b import x\n    from . import c\n")
    mods = {"a": f, "b": tmp_path / "b.py", "c": tmp_path / "c.py"}
    assert imports_of("a", f, mods) == {"b", "c"}
