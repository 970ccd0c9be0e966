"""Compiled rules: immutable objects that loading returns and evaluation reads.

Nothing here parses or does I/O; ``engine.rules.compiler`` builds these once, and every
webhook is evaluated against the same objects (cel-python's compile → program).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal

from engine.decoders import Decode
from engine.errors import Location
from engine.lookups import LookupSpec
from engine.rules.expressions import Expression
from engine.rules.functions import Table
from engine.server.signatures import VerifySpec

ApiVersion = Literal["v1", "v2"]


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    name: str
    expr: Expression | None
    const: Any = None
    required: bool = False
    default: Any = None
    has_default: bool = False
    on_null: Literal["omit", "error"] = "omit"
    on_empty: Literal["keep", "omit", "error"] = "keep"
    where: Location | None = None

    @property
    def source(self) -> str:
        """The expression text, or the constant as JSON-ish text (for explanations)."""
        return self.expr.source if self.expr else f"const {self.const!r}"


@dataclasses.dataclass(frozen=True)
class EventSpec:
    type: str
    params: tuple[ParamSpec, ...]
    key: Expression | None = None
    when: Expression | None = None
    for_each: Expression | None = None
    identify_by: tuple[str, ...] = ()
    where: Location | None = None
    #: how to create the contact first: v1/contact field → expression
    contact: tuple[tuple[str, Expression], ...] = ()
    #: where each param is declared, by name (problems are located with it)
    param_where: Mapping[str, Location | None] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        where = MappingProxyType({p.name: p.where for p in self.params})
        object.__setattr__(self, "param_where", where)


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    topics: tuple[str, ...]
    events: tuple[EventSpec, ...] = ()
    when: Expression | None = None
    ignore: str | None = None
    where: Location | None = None
    #: lookups its expressions read (with those their arguments need), fetched first
    lookups: frozenset[str] = frozenset()
    # ``topics`` prepared for matching, once: the plain names, and the globs compiled as
    # fnmatch.fnmatchcase compiles them (a name without * ? [ matches only itself)
    _names: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)
    _globs: tuple[Callable[[str], Any], ...] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        globs = [t for t in self.topics if _GLOB.search(t)]
        object.__setattr__(self, "_names", frozenset(t for t in self.topics if t not in globs))
        matchers = tuple(re.compile(fnmatch.translate(t)).match for t in globs)
        object.__setattr__(self, "_globs", matchers)

    def matches_topic(self, topic: str | None) -> bool:
        """True when any of the rule's topics (exact or glob) matches."""
        if topic is None:
            return False
        if topic in self._names:
            return True
        return any(match(topic) is not None for match in self._globs)


_GLOB = re.compile(r"[*?\[]")


@dataclasses.dataclass(frozen=True)
class RuleTest:
    name: str
    body: Any
    body_file: str | None
    headers: Mapping[str, str]
    topic: str | None
    expect: Mapping[str, Any]
    where: Location | None = None
    #: the raw bytes of the body file, when the test reads one
    raw: bytes | None = None
    #: lookup name → answer, instead of the network
    mocks: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RuleSet:
    """One platform's rules: the unit a webhook URL (``/hooks/{name}``) selects."""

    name: str
    api_version: ApiVersion
    topic_header: str | None
    topic_expr: Expression | None
    rules: tuple[Rule, ...]
    vars: Mapping[str, Any]
    tables: Mapping[str, Table]
    tests: tuple[RuleTest, ...] = ()
    description: str = ""
    files: tuple[str, ...] = ()
    where: Location | None = None
    #: how the server verifies requests; None = not declared (the server refuses it)
    verify: VerifySpec | None = None
    dedupe_header: str | None = None
    dedupe_expr: Expression | None = None
    max_body: int | None = None
    decode: Decode | None = None
    #: in declaration order: a lookup's arguments may read the ones before it
    lookups: tuple[LookupSpec, ...] = ()
    hosts: frozenset[str] = frozenset()
    # per topic a rule names: whether each rule matches it (see ``matching``)
    _matching: Mapping[str, tuple[bool, ...]] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        named = {t for rule in self.rules for t in rule.topics if not _GLOB.search(t)}
        table = {t: tuple(rule.matches_topic(t) for rule in self.rules) for t in named}
        object.__setattr__(self, "_matching", MappingProxyType(table))

    def matching(self, topic: str | None) -> tuple[bool, ...]:
        """Whether each rule matches ``topic`` (in ``rules`` order)."""
        found = self._matching.get(topic) if topic is not None else None
        if found is None:
            return tuple(rule.matches_topic(topic) for rule in self.rules)
        return found
