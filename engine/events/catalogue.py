"""The standard eSputnik event types, as immutable data, and the load-time check on them.

Two stages read this table: ``static_check`` here (at load, names only: is a standard
type misspelled, is a required param undeclared, can the contact be identified) and
``engine.events.checks`` (per produced event, values too). The facts come from
``shared/reference/esputnik-api.md``; any eventTypeKey not listed is a custom event,
which gets the generic checks only.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from engine.errors import Severity, did_you_mean

# Limits of the Generate event resource (v1/event and v2/event alike).
EVENT_TYPE_KEY_MAX = 100
KEY_VALUE_MAX = 300
PARAM_NAME_MAX = 100
BODY_MAX_BYTES = 20 * 1024
#: Characters neither eventTypeKey nor keyValue may contain (’ is U+2019, then the backtick).
FORBIDDEN_CHARS = frozenset("<;’\\/|\"'^?!,>`")

#: Param names the service identifies a contact by; compared case-insensitively.
IDENTIFIER_NAMES: tuple[str, ...] = (
    "ContactId",
    "Contact_id",
    "externalCustomerId",
    "Email",
    "EmailAddress",
    "UserEmail",
    "ContactEmail",
    "Phone",
    "SMS",
    "PhoneNumber",
    "PushToken",
    "ContactKey",
    "Contact_key",
)
ORDER_STATUSES: tuple[str, ...] = (
    "INITIALIZED",
    "IN_PROGRESS",
    "DELIVERED",
    "CANCELLED",
    "ABANDONED_SHOPPING_CART",
)

# difflib ratio above which an unknown name counts as a misspelling. 0.8 would flag
# plausible custom events (orderDeleted ~ orderDelivered is 0.846) as errors.
CLOSE_MATCH = 0.85


class Kind(enum.Enum):
    """What a value must look like."""

    STRING = "a string"
    NUMBER = "a number"  # a JSON number or a numeric string: 188.09, "188.09", "-5"
    DATETIME = "an ISO 8601 date-time"
    ENUM = "one of the allowed values"  # Field.choices
    CURRENCY = "an ISO 4217 currency code"
    FLAG = "0 or 1"
    OBJECT = "a JSON object"  # of Field.shape
    OBJECT_LIST = "a JSON list of objects"  # each of Field.shape
    WRAPPED_LIST = 'a JSON object {"array": [...]}'  # the list under "array", each of Field.shape


class Extra(enum.Enum):
    """What an object's undocumented keys may hold."""

    ANY = "any"
    STRING_LIST = "a list of strings"  # product properties such as "color": ["green"]


@dataclasses.dataclass(frozen=True)
class Field:
    """A param of an event type, or a key of a JSON object inside one."""

    name: str
    kind: Kind = Kind.STRING
    required: bool = False
    choices: tuple[str, ...] = ()
    shape: Shape | None = None
    #: Why it matters when this optional param is absent (a W103 warning), if it does.
    if_absent: str | None = None
    #: Asked for by the docs but not enforced by the service: absent is a W104 warning.
    recommended: bool = False
    #: An amount of money: every one of an event is written in one form (``engine.events.money``).
    money: bool = False


@dataclasses.dataclass(frozen=True)
class Shape:
    """The keys of a JSON object param, or of each object in a list param."""

    fields: tuple[Field, ...]
    extra: Extra = Extra.ANY
    # Order items keep one level only: a nested array/object stays a string (W101).
    flat: bool = False

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    @functools.cached_property
    def names(self) -> frozenset[str]:
        """The names of ``fields`` (checked for every key of every object)."""
        return frozenset(f.name for f in self.fields)

    @functools.cached_property
    def money_keys(self) -> tuple[str, ...]:
        """The keys holding an amount of money (an item's cost)."""
        return tuple(f.name for f in self.fields if f.money)

    @functools.cached_property
    def rows(self) -> tuple[tuple[str, bool, bool, Kind | None, Field], ...]:
        """Per field: (name, required, recommended, kind of a scalar or None, the field),
        read once instead of attribute by attribute for every object checked."""
        return tuple(
            (f.name, f.required, f.recommended, f.kind if f.shape is None else None, f)
            for f in self.fields
        )


@dataclasses.dataclass(frozen=True)
class EventType:
    """A standard event type: its known params (names are case-sensitive)."""

    key: str
    params: tuple[Field, ...]
    #: At least one of these params must be present (orders: who the order belongs to).
    one_of: tuple[str, ...] = ()

    def param(self, name: str) -> Field | None:
        return self.by_name.get(name)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.params if f.required)

    # Precomputed once per type: the checks read them for every event.

    @functools.cached_property
    def by_name(self) -> Mapping[str, Field]:
        """Each param by its name (the first, should a name repeat). A plain dict, read
        for every param of every event: a read-only proxy would double the cost."""
        found: dict[str, Field] = {}
        for f in self.params:
            found.setdefault(f.name, f)
        return found

    @functools.cached_property
    def money_fields(self) -> Mapping[str, Field]:
        """The params that are amounts of money, or lists and objects holding some."""
        return {
            f.name: f
            for f in self.params
            if f.money or (f.shape is not None and f.shape.money_keys)
        }

    @functools.cached_property
    def required_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.params if f.required)

    @functools.cached_property
    def if_absent_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.params if f.if_absent)

    @functools.cached_property
    def expected_names(self) -> frozenset[str]:
        """The names whose absence is a problem (required) or a warning (if_absent)."""
        return frozenset(f.name for f in (*self.required_fields, *self.if_absent_fields))


def _s(name: str, required: bool = False) -> Field:
    return Field(name, Kind.STRING, required)


def _n(name: str, required: bool = False) -> Field:
    return Field(name, Kind.NUMBER, required)


def _money(name: str, required: bool = False) -> Field:
    return Field(name, Kind.NUMBER, required, money=True)


_ORDER_ITEM = Shape(
    fields=(
        # The orders spec requires externalItemId and quantity; the event docs add the
        # rest. name and cost every platform has; url and imageUrl many order payloads
        # lack (Shopify line items carry neither), so their absence warns (W104) rather
        # than dropping the whole order.
        _s("externalItemId", True),
        _s("name", True),
        _n("quantity", True),
        _money("cost", True),
        Field("url", Kind.STRING, recommended=True),
        Field("imageUrl", Kind.STRING, recommended=True),
        _s("category"),
        _s("description"),
    ),
    flat=True,
)
_ORDER_PARAMS = (
    _s("externalOrderId", True),
    _money("totalCost", True),
    Field("status", Kind.ENUM, True, choices=ORDER_STATUSES),
    Field("date", Kind.DATETIME, True),
    # Older docs left it optional; the current orders spec requires it.
    Field("currency", Kind.CURRENCY, True),
    _s("externalCustomerId"),
    _s("email"),
    _s("phone"),
    _s("firstName"),
    _s("lastName"),
    # Adjustments may be negative (a refund, a discount written as -10).
    _money("shipping"),
    _money("discount"),
    _money("taxes"),
    _s("restoreUrl"),
    _s("statusDescription"),
    _s("storeId"),
    _s("source"),
    _s("deliveryMethod"),
    _s("paymentMethod"),
    _s("deliveryAddress"),
    _s("additionalInfo"),
    Field("items", Kind.OBJECT_LIST, shape=_ORDER_ITEM),
    # Only needed to show products in an email.
    Field("products", Kind.WRAPPED_LIST, shape=_ORDER_ITEM),
)
_ORDER_CONTACT = ("externalCustomerId", "email", "phone")

_PRODUCT = Shape(
    fields=(
        _s("productId", True),
        _money("price", True),
        Field("isInStock", Kind.FLAG),
        _n("quantity"),
    ),
    extra=Extra.STRING_LIST,
)
_CART_PRODUCT = Shape(
    fields=(
        _s("productId", True),
        _n("quantity", True),
        _money("price", True),
        _s("name"),
        _s("category"),
        _s("discount"),  # documented as a string
    ),
    extra=Extra.STRING_LIST,
)
_CURRENCY_CODE = Field("currencyCode", Kind.CURRENCY)


def _types(*types: EventType) -> Mapping[str, EventType]:
    return MappingProxyType({t.key: t for t in types})


#: Every standard event type by its eventTypeKey.
EVENT_TYPES: Mapping[str, EventType] = _types(
    *(
        EventType(key, _ORDER_PARAMS, one_of=_ORDER_CONTACT)
        for key in ("orderCreated", "orderUpdated", "orderDelivered", "orderCancelled")
    ),
    EventType(
        "pageViewed",
        (Field("page", Kind.OBJECT, True, shape=Shape((_s("location", True),))),),
    ),
    EventType(
        "productViewed", (Field("product", Kind.OBJECT, True, shape=_PRODUCT), _CURRENCY_CODE)
    ),
    EventType(
        "productCategoryViewed",
        (Field("category", Kind.OBJECT, True, shape=Shape((_s("productCategoryId", True),))),),
    ),
    EventType(
        "cartUpdated",
        (
            _s("recycleStateId", True),
            # [] is an emptied cart; an absent param reads the same, which is rarely meant.
            Field(
                "products",
                Kind.OBJECT_LIST,
                shape=_CART_PRODUCT,
                if_absent="the cart will be read as empty (send [] to say so)",
            ),
            _CURRENCY_CODE,
        ),
    ),
    EventType(
        "productAddedToWishlist",
        (Field("product", Kind.OBJECT, True, shape=_PRODUCT), _CURRENCY_CODE),
    ),
    EventType("searchRequest", (_s("search", True), Field("isFound", Kind.FLAG))),
    EventType(
        "productImpressions",
        (
            _s("recomVariantId", True),
            Field("products", Kind.OBJECT_LIST, True, shape=Shape((_s("productId", True),))),
        ),
    ),
)


def is_identifier(name: str, identify_by: Iterable[str] = ()) -> bool:
    """Whether a param of this name identifies the contact (names are case-insensitive)."""
    folded = name.casefold()
    return any(folded == known.casefold() for known in (*IDENTIFIER_NAMES, *identify_by))


def close_match(word: str, choices: Iterable[str]) -> str | None:
    """The choice ``word`` looks like a misspelling of: a close difflib match or a case variant."""
    pool = list(choices)
    found = difflib.get_close_matches(word, pool, n=1, cutoff=CLOSE_MATCH)
    if found:
        return found[0]
    return next((c for c in pool if c.casefold() == word.casefold()), None)


@dataclasses.dataclass(frozen=True)
class StaticFinding:
    """A load-time problem with a rule's event; the loader adds the location."""

    code: str
    message: str
    param: str | None = None
    hint: str | None = None
    severity: Severity = "error"


def static_check(
    event_type: str,
    declared_params: Sequence[str],
    has_key_value: bool,
    identify_by: Sequence[str] = (),
) -> list[StaticFinding]:
    """Check a rule's event type and declared param names against the catalogue."""
    findings: list[StaticFinding] = []
    declared = set(declared_params)
    spec = EVENT_TYPES.get(event_type)
    if spec is None:
        guess = close_match(event_type, EVENT_TYPES)
        if guess is not None:
            findings.append(
                StaticFinding(
                    "E401",
                    f"event type '{event_type}' is not a standard type but looks like "
                    f"'{guess}' (a custom type gets none of its meaning)",
                    hint=did_you_mean(event_type, [guess]),
                )
            )
    else:
        findings += _undeclared(spec, declared)
        findings += _misspelled(spec, declared_params, identify_by)
    identified = has_key_value or any(is_identifier(p, identify_by) for p in declared)
    # Orders name their contact with one of their own fields (E402 above covers it).
    if not identified and not (spec and spec.one_of):
        findings.append(
            StaticFinding(
                "E403",
                f"'{event_type}' has no keyValue and no param that identifies the contact "
                f"(one of {', '.join(IDENTIFIER_NAMES)}, case-insensitive)",
                hint="set keyValue, add e.g. an 'email' param, or name it in identify_by",
            )
        )
    return findings


def _undeclared(spec: EventType, declared: set[str]) -> list[StaticFinding]:
    findings = [
        StaticFinding(
            "E402",
            f"'{spec.key}' requires param '{name}': without it the service ignores the event",
            param=name,
        )
        for name in spec.required
        if name not in declared
    ]
    if spec.one_of and not declared.intersection(spec.one_of):
        findings.append(
            StaticFinding(
                "E402",
                f"'{spec.key}' requires at least one of {', '.join(spec.one_of)} "
                "(names are case-sensitive): without one the service ignores the order",
                hint=_one_of_hint(spec.one_of, declared),
            )
        )
    return findings


def _one_of_hint(one_of: Sequence[str], declared: set[str]) -> str | None:
    """A hint when a declared name is a near miss of one of ``one_of`` ("Email" for "email")."""
    for name in sorted(declared):
        guess = close_match(name, one_of)
        if guess is not None:
            return f"for '{name}', {did_you_mean(name, [guess])}"
    return None


def _misspelled(
    spec: EventType, declared_params: Sequence[str], identify_by: Sequence[str]
) -> list[StaticFinding]:
    known = [f.name for f in spec.params]
    findings: list[StaticFinding] = []
    for name in declared_params:
        # Identifier names are matched case-insensitively by the service: "Email" is fine.
        if name in known or is_identifier(name, identify_by):
            continue
        guess = close_match(name, known)
        if guess is not None:
            findings.append(
                StaticFinding(
                    "W401",
                    f"param '{name}' is not a param of '{spec.key}' but looks like '{guess}' "
                    "(param names are case-sensitive)",
                    param=name,
                    hint=did_you_mean(name, [guess]),
                    severity="warning",
                )
            )
    return findings
