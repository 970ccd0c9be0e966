"""The vocabulary the rule-file format is declared in: types, fields, objects.

``engine.rules.schema`` declares the format with these; the loader walks YAML nodes
against them, ``json_schema()`` turns them into a JSON Schema and ``engine.rules.docs``
into the reference tables.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Type:
    """Base of the schema's types; ``label`` is how docs and errors name it."""

    label: str = "any"

    def json_schema(self) -> dict[str, Any]:
        return {}


@dataclasses.dataclass(frozen=True)
class Str(Type):
    label: str = "string"
    pattern: str | None = None

    def json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.pattern:
            out["pattern"] = self.pattern
        return out


@dataclasses.dataclass(frozen=True)
class Expr(Type):
    """A JMESPath expression, compiled and checked at load."""

    label: str = "expression"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "description": "JMESPath expression"}


@dataclasses.dataclass(frozen=True)
class Bool(Type):
    label: str = "boolean"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclasses.dataclass(frozen=True)
class Int(Type):
    label: str = "integer"
    minimum: int | None = None

    def json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        return out


@dataclasses.dataclass(frozen=True)
class Scalar(Type):
    """Any YAML scalar: string, number, boolean or null."""

    label: str = "scalar"

    def json_schema(self) -> dict[str, Any]:
        return {"type": ["string", "number", "boolean", "null"]}


@dataclasses.dataclass(frozen=True)
class AnyValue(Type):
    """Any YAML value (scalars, lists, mappings)."""

    label: str = "any"


@dataclasses.dataclass(frozen=True)
class Enum(Type):
    values: tuple[str, ...] = ()
    label: str = "enum"

    def json_schema(self) -> dict[str, Any]:
        return {"enum": list(self.values)}


@dataclasses.dataclass(frozen=True)
class ListOf(Type):
    item: Type = dataclasses.field(default_factory=Type)
    #: a lone item is accepted where a list is expected (``topics: orders/create``)
    single_ok: bool = False
    label: str = "list"

    def json_schema(self) -> dict[str, Any]:
        as_list: dict[str, Any] = {"type": "array", "items": self.item.json_schema()}
        if self.single_ok:
            return {"anyOf": [self.item.json_schema(), as_list]}
        return as_list


@dataclasses.dataclass(frozen=True)
class MapOf(Type):
    """A mapping with free keys (names the user chooses) and values of one type."""

    value: Type = dataclasses.field(default_factory=Type)
    key_doc: str = "name"
    label: str = "mapping"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": self.value.json_schema()}


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    type: Type
    doc: str
    required: bool = False
    default: Any = None
    example: str | None = None


@dataclasses.dataclass(frozen=True)
class Obj(Type):
    """A mapping with declared keys; unknown keys are an error (E102).

    The loader applies what is declared here: unknown keys, each value's type, required
    keys, ``exclusive`` and ``one_of`` groups, and each absent key's default. A mapping
    whose rules depend on one of its values (``verify``: the keys a scheme reads) names
    its ``checker`` instead: the loader then reads the values as written, and the
    checker judges the whole mapping once.
    """

    title: str = ""
    doc: str = ""
    fields: tuple[Field, ...] = ()
    #: at most one of these keys may be given
    exclusive: tuple[tuple[str, ...], ...] = ()
    #: exactly one of these keys must be given
    one_of: tuple[tuple[str, ...], ...] = ()
    #: where the mapping is checked as a whole (a module, for readers), when it is
    checker: str = ""
    label: str = "mapping"

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def json_schema(self) -> dict[str, Any]:
        return {"$ref": f"#/$defs/{self.title}"}

    def definition(self) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for f in self.fields:
            prop = dict(f.type.json_schema())
            prop["description"] = f.doc
            if f.default is not None:
                prop["default"] = f.default
            props[f.name] = prop
        out: dict[str, Any] = {
            "type": "object",
            "description": self.doc,
            "properties": props,
            "additionalProperties": False,
        }
        required = [f.name for f in self.fields if f.required]
        if required:
            out["required"] = required
        if self.one_of:
            out["allOf"] = [{"oneOf": [{"required": [k]} for k in keys]} for keys in self.one_of]
        return out


@dataclasses.dataclass(frozen=True)
class OneOf(Type):
    """One of several shapes, chosen by the YAML node's kind (scalar, list or mapping)."""

    options: tuple[Type, ...] = ()
    label: str = "one of"

    def json_schema(self) -> dict[str, Any]:
        return {"anyOf": [o.json_schema() for o in self.options]}
