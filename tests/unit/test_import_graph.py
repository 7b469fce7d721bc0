"""The import graph of ``src/iovctl``, read from the source (imports inside functions
too): no circle, and dependencies point inward (issue 9, item 1)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _graph() -> dict[str, set[str]]:
    modules: dict[str, Path] = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_even_through_imports_inside_functions():
    assert _circles(_graph()) == []


def test_the_circle_check_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_dependencies_point_inward():
    graph = _graph()
    for name, deps in graph.items():
        if name.startswith(("iovctl.services", "iovctl.domain", "iovctl.ports")):
            assert not {d for d in deps if d.startswith("iovctl.cli")}, name
        if name.startswith("iovctl.domain"):
            outside = {d for d in deps if not d.startswith(("iovctl.domain", "iovctl.errors"))}
            assert not outside, (name, outside)
    # Views are pure: built from what they are handed, no port or adapter.
    assert {
        d
        for d in graph["iovctl.services.views"]
        if d.startswith(("iovctl.ports", "iovctl.adapters", "iovctl.services"))
    } == set()
    # The front-end API reaches hardware only through the services.
    assert not {d for d in graph["iovctl.services.api"] if d.startswith("iovctl.adapters")}


def _reaching_into(graph: dict[str, set[str]], package: str, layer: str) -> dict[str, set[str]]:
    """Modules of ``package`` that import a module of ``layer`` directly, with those."""

    def within(name: str, pkg: str) -> bool:
        return name == pkg or name.startswith(pkg + ".")

    found = {
        name: {d for d in deps if within(d, layer)}
        for name, deps in graph.items()
        if within(name, package)
    }
    return {name: deps for name, deps in found.items() if deps}


def test_bench_uses_ports_and_services_only():
    """``iovctl bench`` is a front end: the machine comes through ports, built by
    wiring (``wiring.traffic_lab``, the Context), never from an adapter (issue 8,
    item 4), also not in an import inside a function."""
    graph = _graph()
    assert _reaching_into(graph, "iovctl.bench", "iovctl.adapters") == {}
    assert _reaching_into(graph, "iovctl.bench", "iovctl.cli") == {}
    allowed = ("iovctl.bench", "iovctl.services", "iovctl.ports", "iovctl.domain")
    for name, deps in graph.items():
        if name.startswith("iovctl.bench"):
            outside = {
                d
                for d in deps
                if not d.startswith(allowed) and d not in ("iovctl.errors", "iovctl.wiring")
            }
            assert not outside, (name, outside)


def test_the_layer_check_finds_an_adapter_import():
    graph = {
        "iovctl.bench.datapath": {"iovctl.adapters.netns.kernel", "iovctl.services.vms"},
        "iovctl.bench.report": {"iovctl.bench.datapath"},
        "iovctl.benchmarks": {"iovctl.adapters.sim"},  # another package, same prefix
    }
    assert _reaching_into(graph, "iovctl.bench", "iovctl.adapters") == {
        "iovctl.bench.datapath": {"iovctl.adapters.netns.kernel"}
    }
