"""engine.records.fast_init: the same frozen dataclass, built by a faster __init__."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from typing import Any

import pytest

import engine
from engine.records import fast_init


def _decorated() -> list[type]:
    found: dict[str, type] = {}
    for module in pkgutil.walk_packages(engine.__path__, "engine."):
        loaded = importlib.import_module(module.name)
        for value in vars(loaded).values():
            if isinstance(value, type) and "__dataclass_init__" in vars(value):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


DECORATED = _decorated()


def _shown(init: Any) -> list[tuple[Any, ...]]:
    """The signature, a default factory standing as the dataclass's own marker does."""
    return [
        (p.name, p.kind, p.annotation, repr(p.default))
        for p in inspect.signature(init).parameters.values()
    ]


def test_the_hot_records_are_decorated() -> None:
    names = {cls.__name__ for cls in DECORATED}
    assert {"Problem", "Produced", "EventResult", "Result", "EvalContext"} <= names


@pytest.mark.parametrize("cls", DECORATED, ids=lambda cls: cls.__qualname__)
def test_same_signature_and_same_instances_as_the_dataclass_init(cls: Any) -> None:
    fast, made = cls.__init__, cls.__dataclass_init__
    assert _shown(fast) == _shown(made)
    fields = dataclasses.fields(cls)
    values = {f.name: object() for f in fields}
    for given in (
        values,  # every field by keyword
        {f.name: values[f.name] for f in fields if f.default is dataclasses.MISSING},
    ):
        a, b = object.__new__(cls), object.__new__(cls)
        fast(a, **given)
        made(b, **given)
        assert vars(a) == vars(b)
    a, b = object.__new__(cls), object.__new__(cls)
    fast(a, *values.values())  # every field by position
    made(b, **values)
    assert vars(a) == vars(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cls(**values), fields[0].name, 1)


@pytest.mark.parametrize("cls", DECORATED, ids=lambda cls: cls.__qualname__)
def test_default_factories_give_each_instance_its_own(cls: Any) -> None:
    fields = dataclasses.fields(cls)
    needed = {
        f.name: None
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    first, second = cls(**needed), cls(**needed)
    assert first == second
    for f in fields:
        if f.default_factory is not dataclasses.MISSING:
            assert getattr(first, f.name) == f.default_factory()
            assert getattr(first, f.name) is not getattr(second, f.name)


def test_replace_and_equality_are_the_dataclasses() -> None:
    @fast_init
    @dataclasses.dataclass(frozen=True)
    class Point:
        x: int
        y: int = 0
        tags: list[str] = dataclasses.field(default_factory=list)

    p = Point(1)
    assert p == Point(1, 0, []) and hash(Point(1, 2, ())) == hash(Point(1, 2, ()))  # type: ignore[arg-type]
    assert dataclasses.replace(p, y=5) == Point(1, 5)
    assert (
        repr(p) == "test_replace_and_equality_are_the_dataclasses.<locals>.Point(x=1, y=0, tags=[])"
    )
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, z=2)  # type: ignore[call-arg]


def test_classes_it_cannot_treat_keep_the_dataclass_init() -> None:
    @dataclasses.dataclass(frozen=True)
    class Checked:
        x: int

        def __post_init__(self) -> None:
            if self.x < 0:
                raise ValueError("negative")

    assert fast_init(Checked) is Checked and "__dataclass_init__" not in vars(Checked)
    with pytest.raises(ValueError):
        Checked(-1)

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class KeywordOnly:
        x: int

    assert "__dataclass_init__" not in vars(fast_init(KeywordOnly))

    @dataclasses.dataclass(frozen=True)
    class InitOnly:
        x: int
        scale: dataclasses.InitVar[int] = 1

    assert "__dataclass_init__" not in vars(fast_init(InitOnly))
    assert InitOnly(2, 3) == InitOnly(2)


def test_only_frozen_dataclasses() -> None:
    @dataclasses.dataclass
    class Plain:
        x: int

    with pytest.raises(TypeError, match="frozen dataclasses"):
        fast_init(Plain)
    with pytest.raises(TypeError, match="frozen dataclasses"):
        fast_init(int)
