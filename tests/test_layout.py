"""The package's layout: layers that import only downwards, no import circle, a shallow import
graph, small modules, and one home for every exception.

The import graph is read from the source (``ast``): every ``import`` of an ``engine``
module counts, wherever it stands (at the top, under ``TYPE_CHECKING``), and imports
inside functions are refused outright, so no dependency hides from these checks.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import engine
from engine import errors

PACKAGE = Path(engine.__file__).parent

#: Lowest first. A module may import modules of its own layer or of a lower one.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("engine.errors", "engine.records")),
    ("input and the CDP's rules", ("engine.webhook", "engine.events")),
    ("the rule language", ("engine.rules",)),
    (
        "the flow",
        (
            "engine.decoders",
            "engine.lookups",
            "engine.evaluate",
            "engine.results",
            "engine.pipeline",
            "engine.ruletests",
            "engine.report",
            "engine.impact",
            "engine.fakes",
            "engine.scrub",
        ),
    ),
    ("services", ("engine.server", "engine.sandbox", "engine.playground")),
    ("the command line", ("engine.cli",)),
)
#: Longest chain of imports between engine modules, counted in modules (httpx: 11).
MAX_LEVELS = 10
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    found = {"engine": PACKAGE / "__init__.py"}
    for info in pkgutil.walk_packages(engine.__path__, "engine."):
        module = importlib.util.find_spec(info.name)
        assert module is not None and module.origin is not None
        found[info.name] = Path(module.origin)
    return found


MODULES = _modules()


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _targets(node: ast.Import | ast.ImportFrom, name: str, path: Path) -> list[str]:
    """The engine modules an import statement names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in MODULES]
    base = node.module or ""
    if node.level:
        parts = _package_of(name, path).split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
    out = []
    for alias in node.names:
        if f"{base}.{alias.name}" in MODULES:
            out.append(f"{base}.{alias.name}")
        elif base in MODULES:
            out.append(base)
    return out


@functools.cache
def _graph() -> dict[str, frozenset[str]]:
    graph: dict[str, frozenset[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.update(t for t in _targets(node, name, path) if t != name)
        graph[name] = frozenset(found)
    return graph


def _layer(name: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{name} belongs to no layer: add it to LAYERS")


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        if name != "engine":
            _layer(name)


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    upward = [
        f"{name} ({LAYERS[_layer(name)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
        for name, targets in _graph().items()
        if name != "engine"
        for target in sorted(targets)
        if _layer(target) > _layer(name)
    ]
    assert upward == []


def test_no_import_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_the_import_graph_is_shallow() -> None:
    graph = _graph()

    @functools.cache
    def chain(name: str) -> tuple[str, ...]:
        longest = max((chain(t) for t in graph[name]), key=len, default=())
        return (name, *longest)

    deepest = max((chain(name) for name in graph), key=len)
    assert len(deepest) <= MAX_LEVELS, " -> ".join(deepest)


def test_no_engine_import_inside_a_function() -> None:
    """Imports at the top only: a lazy import would hide a dependency from the checks."""
    hidden = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import | ast.ImportFrom) and _targets(node, name, path):
                    hidden.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert hidden == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_small(name: str) -> None:
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{MODULES[name]}: {lines} lines"


def test_every_exception_lives_in_errors_and_its_tree() -> None:
    """One tree in engine/errors.py, each class named in its docstring."""
    elsewhere = []
    for name in MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and name != "engine.errors"
            ):
                elsewhere.append(f"{name}.{value.__qualname__}")
    assert elsewhere == []
    doc = errors.__doc__ or ""
    defined = [
        value.__name__
        for value in vars(errors).values()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == "engine.errors"
    ]
    assert defined and [n for n in defined if f" {n} " not in doc] == []
