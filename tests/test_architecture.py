"""The three floors hold: imports only point down (models < flows, migrations < aligncycle),
no module imports another in a circle (function-local imports included), and the domain
(models/) never imports Prefect, Typer or FastAPI. Read from the source with ast, nothing is
imported."""

from __future__ import annotations

import ast
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
FLOORS = {"models": 1, "migrations": 2, "flows": 2, "aligncycle": 3}
FACES = ("prefect", "typer", "fastapi", "starlette", "uvicorn")


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in FLOORS:
        for path in sorted((PROJECT / root).rglob("*.py")):
            name = ".".join(path.relative_to(PROJECT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imported_names(name: str, path: Path) -> list[str]:
    """Every module name an ``import`` or ``from ... import`` in the file names, wherever the
    statement is (module level or inside a function)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            out += [base, *(f"{base}.{a.name}" for a in node.names)]
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()

    def resolve(target: str) -> str | None:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for target in imported_names(m, path):
            r = resolve(target)
            # A module importing its own package (the package's face) is not an edge.
            if r and r != m and not m.startswith(r + "."):
                edges[m].add(r)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def floor(module: str) -> int:
    return FLOORS[module.split(".")[0]]


def test_no_module_imports_another_in_a_circle() -> None:
    assert circles(graph()) == []


def test_imports_only_point_down_the_floors() -> None:
    upward = sorted(
        f"{m} -> {r}" for m, targets in graph().items() for r in targets if floor(r) > floor(m)
    )
    assert upward == []


def test_the_domain_never_imports_a_face_library() -> None:
    bad = sorted(
        f"{name} imports {target}"
        for name, path in modules().items()
        if name.startswith("models")
        for target in imported_names(name, path)
        if target.split(".")[0] in FACES
    )
    assert bad == []


def test_the_checks_see_a_circle_and_an_upward_import() -> None:
    """The detectors themselves: a made-up graph with one circle and one upward edge."""
    edges = {
        "models.a": {"models.b"},
        "models.b": {"models.a", "aligncycle.x"},
        "aligncycle.x": set(),
    }
    assert circles(edges) == [["models.a", "models.b"]]
    assert [(m, r) for m in edges for r in edges[m] if floor(r) > floor(m)] == [
        ("models.b", "aligncycle.x")
    ]
