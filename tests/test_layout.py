"""The package reads as the data flow: each layer imports only the layers before it,
no module reaches into another's private names, and there is no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ikeflow"

# sources -> decode -> model -> diagnose -> render, then the commands that wire them up.
# A module may import its own layer and the layers listed before it.
LAYERS = ["", "limits", "decode", "keys", "sources", "model", "diagnose", "render", "pipeline", "compare", "live",
          "cli", "__main__"]
SAME_RANK = {"live": "compare", "check": "compare", "explain": "compare"}  # the commands are peers: none imports another


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import at any depth of the file, except
    those under `if TYPE_CHECKING:` (annotations only: no dependency when the code runs)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.append((base, [a.name for a in node.names], node.lineno))
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _rank(module: str) -> int:
    layer = _layer(module)
    return LAYERS.index(SAME_RANK.get(layer, layer))


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for target, names, _ in _imports(path, mod):
            if not target.startswith("ikeflow"):
                continue
            for n in names or [""]:
                full = f"{target}.{n}" if n and f"{target}.{n}" in mods else target
                if full in mods and full != mod:
                    graph[mod].add(full)
    return graph


def test_every_module_is_in_a_layer():
    assert {_layer(m) for m in _modules()} <= set(LAYERS) | set(SAME_RANK)


def test_layers_import_only_earlier_layers():
    wrong = []
    for mod, deps in _graph().items():
        for dep in deps:
            if dep == "ikeflow":  # __version__ and the exit codes
                continue
            if _rank(dep) > _rank(mod) or (_rank(dep) == _rank(mod) and _layer(dep) != _layer(mod)):
                wrong.append(f"{mod} imports {dep}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_private_names_across_modules():
    wrong = []
    for mod, path in _modules().items():
        for target, names, line in _imports(path, mod):
            if target.startswith("ikeflow") and target != mod:
                wrong += [f"{path.name}:{line} takes {target}.{n}" for n in names if n.startswith("_")
                          and not n.startswith("__")]
        tree = ast.parse(path.read_text())
        imported = {a.asname or a.name.rsplit(".", 1)[-1] for node in ast.walk(tree)
                    if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names
                    if (getattr(node, "module", None) or a.name).startswith("ikeflow")}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                wrong.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)
