"""The house's layers: imports inside service/ flow one way, with no cycles, in short modules.

Read from the source with ast (every import, a lazy one inside a function included), so the
rule holds for what the code says, not for what one run happened to import.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Set
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parent.parent / "service"

# Highest first: a module may import its own unit and any unit after its own, never one before.
UNITS = (
    "service.server",  # what gunicorn loads; reaches the app only through wsgi
    "service.wsgi",
    "service.app",
    "service.oip",
    "service.http",
    "service.jobs",
    "service.serving",
    "service.drift",
    "service.schemas",
    "service.metrics",
    "service.store",
    "service.model",
    "service.logs",
    "service.settings",
    "service.errors",
    "service",  # the package itself: __version__
)
MAX_TOP_LEVEL_MODULES = 10
MAX_LINES = 400

Graph = Mapping[str, set[str]]


def _module_name(path: Path) -> str:
    parts = path.relative_to(SERVICE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(SERVICE.rglob("*.py"))}


def _targets(node: ast.AST, module: str, is_package: bool, known: Set[str]) -> set[str]:
    """The modules of ours one import statement names ('from x import y' may name x.y)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name.split(".")[0] == "service"}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(
            package[: len(package) - node.level + 1] + ([node.module] if node.module else [])
        )
    else:
        base = node.module or ""
    if base.split(".")[0] != "service":
        return set()
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}


def import_graph() -> dict[str, set[str]]:
    """Each module of service/ -> the modules of service/ it imports."""
    sources = _sources()
    graph: dict[str, set[str]] = {}
    for module, path in sources.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        graph[module] = set().union(
            *(_targets(node, module, is_package, sources.keys()) for node in ast.walk(tree))
        ) - {module}
    return graph


def unit(module: str) -> str:
    """The entry of UNITS a module belongs to: the longest one that is it or holds it."""
    return max((u for u in UNITS if module == u or module.startswith(u + ".")), key=len)


def upward(graph: Graph) -> list[str]:
    """Every import that climbs: to a unit listed before the importer's own."""
    rank = {name: i for i, name in enumerate(UNITS)}
    return sorted(
        f"{importer} -> {imported}"
        for importer, imports in graph.items()
        for imported in imports
        if unit(imported) != unit(importer) and rank[unit(imported)] < rank[unit(importer)]
    )


def cycles(graph: Graph) -> list[list[str]]:
    """The import cycles among modules (strongly connected components of more than one)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_belongs_to_a_listed_unit() -> None:
    graph = import_graph()
    assert all(unit(module) for module in graph)
    assert {unit(module) for module in graph} == set(UNITS)


def test_imports_flow_one_way() -> None:
    assert upward(import_graph()) == []


def test_there_are_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("service.model.neuron", "service.serving"),  # the model reaching up to orchestration
        ("service.store.document", "service.metrics"),
        ("service.serving", "service.http.web"),  # the layer below HTTP reaching for Flask
        ("service.http.openapi", "service.oip.schemas"),
        ("service.app", "service.server.fairworker"),
        ("service", "service.errors"),  # the package itself importing a layer
    ],
)
def test_an_arrow_added_upward_is_caught(importer: str, imported: str) -> None:
    graph = import_graph()
    assert imported not in graph[importer]
    graph[importer] = graph[importer] | {imported}
    assert upward(graph) == [f"{importer} -> {imported}"]


def test_an_added_cycle_is_caught() -> None:
    graph = import_graph()
    assert "service.model.neuron" in graph["service.model.validation"]
    graph["service.model.neuron"] = graph["service.model.neuron"] | {"service.model.validation"}
    assert cycles(graph) == [["service.model.neuron", "service.model.validation"]]


def test_the_graph_sees_relative_lazy_and_submodule_imports() -> None:
    graph = import_graph()
    assert "service.store.postgres" in graph["service.store"]  # lazy, inside open_store
    assert "service.http.docs" in graph["service.http.ops"]  # from . import docs
    assert "service" in graph["service.http.openapi"]  # from .. import __version__
    assert "service.app" in graph["service.wsgi"]


def test_the_top_level_keeps_only_what_ties_the_layers_together() -> None:
    top = sorted(path.name for path in SERVICE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_modules_stay_short() -> None:
    # Generated gRPC stubs (make grpc-stubs) are not written here: only what is written is kept short.
    lengths = {
        module: len(path.read_text().splitlines())
        for module, path in _sources().items()
        if not module.endswith(("_pb2", "_pb2_grpc"))
    }
    assert {module: n for module, n in lengths.items() if n > MAX_LINES} == {}
