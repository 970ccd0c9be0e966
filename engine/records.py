"""Frozen dataclasses that are cheap to build: ``@fast_init`` over ``@dataclass(frozen=True)``.

A frozen dataclass refuses assignment, so its generated ``__init__`` sets every field
through ``object.__setattr__``: about 0.15 µs a field on CPython 3.11, four times what
a plain assignment costs. Each webhook builds a dozen such records (its context, the
produced event, the checks' result, problems, the event result, the result), about
fifty fields, so that is several microseconds of every webhook spent on the setting
alone.

``fast_init`` keeps the dataclass exactly as ``dataclasses`` made it (fields, defaults,
default factories, equality, hashing, ``repr``, ``replace``, the refusal of assignment)
and gives it an ``__init__`` with the same signature that stores the fields in the
instance's ``__dict__`` directly, as ``object.__setattr__`` ends up doing. A class it
cannot treat so (slots, ``__post_init__``, init-only or keyword-only fields) keeps the
dataclass's own ``__init__``. The source is made from the class's own field names (code
of this package, never data), and ``tests/test_records.py`` holds every decorated class
to the dataclass-made ``__init__``.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, TypeVar

T = TypeVar("T")


class _Factory:
    """Stands for "not given" where a field has a default factory (shown as the
    dataclass's own ``__init__`` shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def fast_init(cls: type[T]) -> type[T]:
    """Give the frozen dataclass ``cls`` a faster ``__init__`` (see the module's doc)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__}: fast_init applies to frozen dataclasses")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    made = inspect.signature(cls.__init__)
    if (
        "__slots__" in vars(cls)
        or hasattr(cls, "__post_init__")
        or any(not f.init or f.kw_only for f in fields)
        # init-only (InitVar) pseudo-fields are not among fields(): they show here
        or list(made.parameters) != ["self", *(f.name for f in fields)]
    ):
        return cls
    namespace: dict[str, Any] = {"_FACTORY": _FACTORY}
    signature, body = ["self"], ["    _d = self.__dict__"]
    for index, f in enumerate(fields):
        name = f.name
        if not name.isidentifier() or name.startswith("_"):
            return cls  # never happens in this package; then the dataclass's own
        if f.default is not dataclasses.MISSING:
            namespace[f"_default{index}"] = f.default
            signature.append(f"{name}=_default{index}")
            body.append(f"    _d[{name!r}] = {name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory{index}"] = f.default_factory
            signature.append(f"{name}=_FACTORY")
            body.append(f"    _d[{name!r}] = _factory{index}() if {name} is _FACTORY else {name}")
        else:
            signature.append(name)
            body.append(f"    _d[{name!r}] = {name}")
    source = f"def __init__({', '.join(signature)}):\n" + "\n".join(body) + "\n"
    exec(compile(source, f"<fast_init {cls.__qualname__}>", "exec"), namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    cls.__dataclass_init__ = cls.__init__  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
