"""The package layout holds: no module imports one that imports it back (directly or round a
loop), and each layer imports only the layers below it, so a newcomer can read the tree
bottom-up (README, "Layout")."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Lowest first; a module may import its own layer and the layers listed before it. Layers on
# one line share a rank and must not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("models",),
    ("jobqueue",),
    ("store",),
    ("reports",),
    ("export",),
    ("workers.meta",),
    ("workers.runtime",),
    ("workers.webhooks", "workers.captures"),
    ("workers",),
    ("receiver", "dashboard"),
    ("metasim",),  # the demo runs the simulator; the simulator imports nothing of ours
    ("archiver",),
]
SIMULATOR = "metasim"
PACKAGES = {layer.split(".")[0] for rank in LAYERS for layer in rank}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in sorted(PACKAGES):
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def imported(path: Path, name: str, known: dict[str, Path]) -> Iterator[str]:
    """Every project module `name` imports, at any depth of the file (type-only ones too)."""
    is_package = path.name == "__init__.py"
    base = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                source = f"{anchor}.{source}".rstrip(".")
            for alias in node.names:
                if f"{source}.{alias.name}" in known:
                    yield f"{source}.{alias.name}"
                elif source in known:
                    yield source


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imported(path, name, known)) - {name} for name, path in known.items()}


def layer_rank(module: str) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for rank, layers in enumerate(LAYERS):
        for layer in layers:
            if (module == layer or module.startswith(layer + ".")) and (
                best is None or len(layer) > len(best[1])
            ):
                best = (rank, layer)
    return best


def cycle(edges: dict[str, set[str]]) -> list[str]:
    """One import loop (its modules, the first repeated at the end), or [] when there is none."""
    try:
        TopologicalSorter(edges).prepare()
    except CycleError as exc:
        return list(exc.args[1])
    return []


def test_the_layout_is_what_the_test_reads() -> None:
    """The walk finds the packages' modules and their imports (guards the checks below)."""
    edges = graph()
    assert "workers.main" in edges
    assert "core.config" in edges["workers.main"] or any(
        "core.config" in edges[m] for m in edges["workers.main"]
    )


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert cycle(graph()) == []


def test_cycles_are_detected() -> None:
    """The detector itself: a three-module loop is reported, a chain is not."""
    loop = cycle({"c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"c"}})
    assert sorted(set(loop)) == ["c", "d", "e"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_each_layer_imports_only_downwards() -> None:
    wrong = []
    for module, targets in graph().items():
        if module.split(".")[0] == SIMULATOR:
            wrong += [f"{module} -> {t}" for t in targets if t.split(".")[0] != SIMULATOR]
            continue
        mine = layer_rank(module)
        assert mine is not None, f"{module} is in no layer"
        for target in targets:
            theirs = layer_rank(target)
            assert theirs is not None, f"{target} is in no layer"
            if theirs[0] > mine[0] or (theirs[0] == mine[0] and theirs[1] != mine[1]):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_folder_holds_more_than_a_dozen_modules(package: str) -> None:
    for folder in [ROOT / package, *(p for p in (ROOT / package).rglob("*") if p.is_dir())]:
        if "migrations" in folder.parts or folder.name == "__pycache__":
            continue
        count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        assert count <= 12, f"{folder.relative_to(ROOT)} holds {count} modules"


def test_arq_internals_are_imported_in_one_place() -> None:
    """arq's private modules (key layout, job encoding) only through jobqueue.arq_internals,
    the module whose assumptions pyproject.toml's pin on arq protects."""
    private = ("arq.constants", "arq.jobs")
    users = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(private):
                users.append(name)
    assert sorted(set(users)) == ["jobqueue.arq_internals"]
