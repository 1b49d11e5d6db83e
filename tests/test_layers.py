"""The package's layers point one way: core at the bottom, frontends / passes / targets / models on
it, converter (convert, pipeline, report, recipes, CLI) on top. Read from the source's imports."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ocrgraft"

# Which of ocrgraft's packages each may import (itself always).
ALLOWED = {
    "core": set(),
    "models": {"core"},
    "frontends": {"core", "models"},
    "passes": {"core"},
    "targets": {"core"},
    "recipes": set(),
    "converter": {"core", "models", "frontends", "passes", "targets", "recipes"},
}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "ocrgraft" and len(parts) > 1 and parts[1] in ALLOWED else None


def imports() -> dict[str, set[tuple[str, str]]]:
    """Per layer, the (importing file, imported ocrgraft module) pairs, deferred imports included."""
    found: dict[str, set[tuple[str, str]]] = {layer: set() for layer in ALLOWED}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts)
        layer = layer_of(module)
        if layer is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "ocrgraft":  # from ocrgraft import models
                names = [f"ocrgraft.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("ocrgraft"):
                    found[layer].add((str(rel), name))
    return found


def test_every_package_imports_only_the_layers_below_it():
    wrong = []
    for layer, pairs in imports().items():
        for where, name in pairs:
            other = layer_of(name)
            if layer_of(name) is None:
                wrong.append(f"{where} imports {name}: the package's face, not a layer")
            elif other and other != layer and other not in ALLOWED[layer]:
                wrong.append(f"{where} ({layer}) imports {name} ({other})")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_package_graph_has_no_cycle():
    edges = {layer: {layer_of(n) for _, n in pairs} - {None, layer} for layer, pairs in imports().items()}
    state: dict[str, str] = {}

    def visit(node, path):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", f"import cycle: {' -> '.join(path + [node])}"
        state[node] = "open"
        for nxt in edges[node]:
            visit(nxt, path + [node])
        state[node] = "done"

    for layer in edges:
        visit(layer, [])


@pytest.mark.parametrize("module", ["ocrgraft.passes", "ocrgraft.targets", "ocrgraft.frontends.onnx"])
def test_lower_layers_import_without_the_pipeline_or_cli(module):
    code = (
        f"import sys, {module}; print(sorted(m for m in sys.modules "
        "if m.startswith(('ocrgraft.converter', 'torch', 'paddle'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
