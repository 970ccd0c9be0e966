"""Compiled rules: immutable objects that loading returns and evaluation reads.

Nothing here parses or does I/O; ``engine.rules.compiler`` builds these once, and every
webhook is evaluated against the same objects (cel-python's compile → program). The
option values of rule files (``api_version``, ``on_null``, a lookup's ``not_found``...)
and their defaults are declared here once: the schema, the loader and the compiler
take them from these names.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal, get_args

import jmespath
from jmespath import functions as jp_functions
from jmespath.parser import ParsedResult

from engine.errors import Location, LookupFailed, UnknownLookupValue
from engine.rules.schemes import VerifySpec

ApiVersion = Literal["v1", "v2"]
API_VERSIONS: tuple[ApiVersion, ...] = get_args(ApiVersion)
DEFAULT_API_VERSION: ApiVersion = "v1"

#: how a rule set's bodies are read (``decode.format``)
Format = Literal["auto", "json", "form", "jwt", "pubsub", "cloudevents"]
FORMATS: tuple[Format, ...] = get_args(Format)
DEFAULT_FORMAT: Format = "auto"

#: what a param's null or missing value does; what its empty string does
OnNull = Literal["omit", "error"]
ON_NULL: tuple[OnNull, ...] = get_args(OnNull)
DEFAULT_ON_NULL: OnNull = "omit"
OnEmpty = Literal["keep", "omit", "error"]
ON_EMPTY: tuple[OnEmpty, ...] = get_args(OnEmpty)
DEFAULT_ON_EMPTY: OnEmpty = "keep"

#: what a lookup's 404 means: keep the webhook and try later, or the resource is gone
NotFound = Literal["retry", "null"]
NOT_FOUND: tuple[NotFound, ...] = get_args(NotFound)
DEFAULT_NOT_FOUND: NotFound = "retry"
#: a lookup's seconds per attempt, attempts after the first, seconds an answer is reused
DEFAULT_TIMEOUT = 10
DEFAULT_RETRIES = 2
DEFAULT_CACHE_TTL = 0

#: how long the last values of a ``changes:`` entity are remembered; the duration form
DEFAULT_CHANGES_EXPIRE = "30d"
DURATION = r"^[0-9]+(?:\.[0-9]+)?[smhd]$"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> float:
    """``30d``, ``12h``, ``45m``, ``90s`` in seconds."""
    return float(duration[:-1]) * _UNITS[duration[-1]]


#: how a rule test compares the events sent with the expected ones
Match = Literal["exact", "subset"]
MATCHES: tuple[Match, ...] = get_args(Match)
DEFAULT_MATCH: Match = "exact"

#: What an expression compiled to Python is: called with the data and the bound functions.
Compiled = Callable[[Any, jp_functions.Functions], Any]

#: jmespath's built-ins alone: what the interpreter uses when no custom functions are given.
BUILTINS = jp_functions.Functions()


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """How rule expressions are evaluated, chosen once (``hookmap --interpreter``).

    ``compile`` turns a parsed expression into Python (None: jmespath's interpreter
    walks it on every webhook); ``reads_in_part`` lets plain JSON bodies be read only as
    far as the expressions look (``engine.rules.demand``). The two evaluators are
    ``engine.rules.codegen.COMPILED`` and ``INTERPRETER``.
    """

    name: str
    compile: Callable[[Mapping[str, Any]], Compiled] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )
    reads_in_part: bool = False


@dataclasses.dataclass(frozen=True)
class Expression:
    """A compiled expression with its source text and where it stands."""

    source: str
    parsed: ParsedResult = dataclasses.field(repr=False, compare=False)
    where: Location | None = None
    #: lookups it reads with fetched('name'): the pipeline fetches them first
    lookups: frozenset[str] = frozenset()
    #: the expression as Python (engine.rules.codegen); None evaluates with the interpreter
    compiled: Compiled | None = dataclasses.field(default=None, repr=False, compare=False)

    def search(self, data: Any, options: jmespath.Options) -> Any:
        if self.compiled is not None and options.dict_cls is None:
            found = options.custom_functions
            return self.compiled(data, BUILTINS if found is None else found)
        return self.parsed.search(data, options=options)


@dataclasses.dataclass(frozen=True)
class Table:
    """A named lookup table: ``mapping`` keys are strings (see ``table_key``)."""

    name: str
    mapping: Mapping[str, Any]
    default: Any = None
    has_default: bool = False
    strict: bool = False

    def get(self, value: Any) -> Any:
        key = table_key(value)
        if key in self.mapping:
            return self.mapping[key]
        if self.strict:
            raise UnknownLookupValue(self.name, value)
        return self.default


def table_key(value: Any) -> str:
    """The string a value is looked up by: ``3`` and ``"3"`` find the same entry."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclasses.dataclass(frozen=True)
class Decode:
    """How a rule set's bodies are decoded. ``unwrap``: paths of JSON-encoded strings
    to parse in place, in order (Wix: ``data``, then ``data.data``, ``data.identity``)."""

    format: Format = DEFAULT_FORMAT
    unwrap: tuple[str, ...] = ()
    #: reads only what the rule set's expressions can observe of a plain JSON body
    #: (engine.rules.demand); None reads it whole
    reader: Callable[[bytes], Any] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )


#: ``{name}`` in a lookup's URL template
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def template_host(url: str) -> str | None:
    """The host of a URL template, or None when a placeholder sits in the host part."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or "{" in parts.netloc:
        return None
    return parts.hostname


@dataclasses.dataclass(frozen=True)
class LookupSpec:
    """A named HTTP GET (``lookups:``); ``engine.lookups`` makes it."""

    name: str
    url: str  # template, ${ENV} already resolved
    args: tuple[tuple[str, Expression], ...]
    headers: tuple[tuple[str, str], ...] = dataclasses.field(repr=False, default=())
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    cache_ttl: float = DEFAULT_CACHE_TTL
    hosts: frozenset[str] = frozenset()
    where: Location | None = None
    #: environment variables its headers need that are not set (the server refuses)
    missing_env: tuple[str, ...] = ()
    not_found: NotFound = DEFAULT_NOT_FOUND

    def build_url(self, values: Mapping[str, Any]) -> str:
        """The URL with each ``{name}`` filled by its value, percent-encoded.

        Encoding keeps a value from adding a path, a query or a host, but not from
        being a whole path segment HTTP resolves: ``..`` (and ``.``) are unreserved
        characters, so ``/orders/..`` reaches ``/`` on the declared host, with the
        lookup's token. A value that fills a path segment to a dot segment (after the
        decoding and Unicode folding a server may apply), or leaves it empty, is
        refused: the lookup cannot apply to this webhook.
        """
        path_end = min((i for i in (self.url.find("?"), self.url.find("#")) if i >= 0), default=-1)

        def fill(match: re.Match[str]) -> str:
            value = values.get(match[1])
            if value is None:
                raise LookupFailed(self.name, self.url, f"argument '{match[1]}' is null")
            text = value if isinstance(value, str) else _plain(value)
            try:
                return urllib.parse.quote(text, safe="")
            except UnicodeEncodeError as exc:  # a lone surrogate (JSON "\ud800")
                raise LookupFailed(
                    self.name, self.url, f"argument '{match[1]}' is not valid text ({exc.reason})"
                ) from exc

        url = PLACEHOLDER.sub(fill, self.url)
        template_path = self.url if path_end < 0 else self.url[:path_end]
        filled_path = urllib.parse.urlsplit(url).path
        template_segments = urllib.parse.urlsplit(template_path).path.split("/")
        for written, filled in zip(template_segments, filled_path.split("/"), strict=False):
            if PLACEHOLDER.search(written) and _unsafe_segment(filled):
                raise LookupFailed(
                    self.name,
                    self.url,
                    f"a value fills the path segment '{written}' as {filled!r}, which a URL "
                    "resolves as a step up, in place or to nothing: refused",
                )
        host = urllib.parse.urlsplit(url).hostname or ""
        if host not in self.hosts:  # checked at load too; this guards the filled URL
            raise LookupFailed(self.name, url, f"host '{host}' is not in the rule set's hosts")
        return url


def _unsafe_segment(segment: str) -> bool:
    """Whether a filled path segment is empty or would be read as ``.`` or ``..``.

    Servers differ in what they decode before resolving dot segments: percent-encoding
    (``%2E``, even twice), a backslash as a separator (IIS), NFKC folding (``．``,
    ``‥``), trailing dots and spaces (Windows). Any of those reaching dots alone counts.
    """
    if segment == "":
        return True
    text = segment
    for _ in range(3):  # %252E -> %2E -> .
        decoded = urllib.parse.unquote(text)
        if decoded == text:
            break
        text = decoded
    text = unicodedata.normalize("NFKC", text)
    parts = text.replace("\\", "/").split("/")
    return any(part.strip(" \t") != "" and set(part.strip(" \t")) <= {"."} for part in parts)


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    name: str
    expr: Expression | None
    const: Any = None
    required: bool = False
    default: Any = None
    has_default: bool = False
    on_null: OnNull = DEFAULT_ON_NULL
    on_empty: OnEmpty = DEFAULT_ON_EMPTY
    where: Location | None = None

    @property
    def source(self) -> str:
        """The expression text, or the constant as JSON-ish text (for explanations)."""
        return self.expr.source if self.expr else f"const {self.const!r}"


@dataclasses.dataclass(frozen=True)
class ChangeSpec:
    """``changes:``: the event is sent only when ``values`` differ from the last ones sent
    for the entity ``key`` (None: the event's keyValue), remembered ``expire`` seconds."""

    values: tuple[Expression, ...]
    key: Expression | None = None
    expire: float = seconds(DEFAULT_CHANGES_EXPIRE)
    where: Location | None = None


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
    #: sent only when these values changed for the entity (``changes:``)
    changes: ChangeSpec | None = None
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
    #: webhooks processed first (``before:``): (their file, its bytes, their headers)
    before: tuple[tuple[str, bytes, Mapping[str, str]], ...] = ()


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
    #: the path it was loaded from (its folder, or its file): loading it again (for a
    #: shop that reads other variables) starts there
    root: str = ""
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
