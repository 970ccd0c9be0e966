"""Everything hookmap reports to a user: located diagnostics, event problems, exceptions.

Two kinds of findings flow through the engine, and neither stops at the first:

* ``Diagnostic``: a problem in a rule file, found while loading it, located at
  ``file:line:col`` with the source line for a caret (the linter prints these).
* ``Problem``: a problem with one produced event, found while evaluating or checking
  it; an event with an error-level problem is not sent.

Exceptions are for things that stop an operation, and carry an exit code for the CLI
(as click's ``ClickException.exit_code`` does). Every exception of the package is
defined here (``tests/test_layout.py`` holds every module to it)::

    HookmapError                      exit 1
    ├── RuleLoadError                 the rules did not load: .diagnostics holds why
    ├── EvaluationError               an expression failed on a webhook (type, arity)
    │   ├── UnknownLookupValue        a strict table has no entry for a value
    │   └── InvalidArgument           a function got a value it cannot use (also ValueError)
    ├── LookupFailed                  a lookup got no usable answer: the webhook waits
    ├── SecretError                   a verify spec names no usable secret or key
    ├── ServeRefused                  rule sets that cannot be served as declared
    ├── StoreError                    the store cannot do what was asked
    │   └── StoreUnavailable          a write failed for now (disk full): try again later
    ├── PlatformApiError              a shop platform's API stopped a backfill: it resumes
    └── UsageError                    exit 2: bad command line or unreadable input
        └── PayloadError              a webhook body is not valid JSON (with line/col)

    Signal                            internal, caught where raised: never reaches a user
    ├── BodyTooLarge                  a request body passed the limit while being read
    ├── NotReadInPart                 an expression the demand analysis does not know
    └── NotForOrjson                  a value orjson would write differently from json
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from engine.records import fast_init

Severity = Literal["error", "warning"]

#: characters a source line shown under a diagnostic must not carry to a terminal
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")

#: Every stable code a user can see, with a one-line meaning (docs/rules.md lists them).
CODES: dict[str, str] = {
    # E1xx: the rule file's shape
    "E100": "the file cannot be read",
    "E101": "YAML syntax error",
    "E102": "unknown key",
    "E103": "wrong value type",
    "E104": "required key missing",
    "E105": "duplicate key",
    "E106": "value not allowed here",
    "E107": "duplicate name",
    "E108": "rule set structure (name, folder) is inconsistent",
    "E109": "a YAML value cannot be read (an unknown tag, an impossible date, bad base64)",
    # E2xx: expressions
    "E201": "unknown function",
    "E202": "wrong number of arguments",
    "E203": "JMESPath syntax error",
    "E204": "bad argument to a function (must be a literal)",
    "W201": "deprecated JMESPath literal (a backtick literal that is not JSON)",
    "W202": "bare null, true or false: a field of that name, not the JSON value",
    # E3xx: references
    "E301": "undefined table",
    "E302": "undefined var",
    "E303": "environment variable not set",
    "W303": "environment variable for a lookup credential not set (the server refuses)",
    "E304": "undefined template",
    "E305": "test fixture not found or unreadable",
    "E306": "undefined lookup",
    "E307": "lookup URL host not declared in hosts (or not fixed in the template)",
    "E308": "a shop names a rule set that is not loaded",
    # E4xx: the event catalogue
    "E401": "event type looks like a misspelled standard type",
    "E402": "a required param of a standard event type is not declared",
    "E403": "no way to identify the contact is declared",
    "E404": "constant value does not fit the param",
    # W: warnings
    "W401": "param name looks like a misspelled standard param",
    "W402": "param is not part of the standard event type",
    # W5xx: receiving
    "W501": "the dedupe header is not covered by the signature (the signed body is used)",
    # V: problems with a produced event (it is not sent)
    "V101": "required param is missing (null, absent or empty)",
    "V102": "param value is not a number",
    "V103": "value not among the allowed ones",
    "V104": "date-time is not ISO 8601",
    "V105": "currency is not an ISO 4217 code",
    "V106": "the contact cannot be identified",
    "V107": "items / products do not have the documented shape",
    "V108": "eventTypeKey or keyValue too long or with a forbidden character",
    "V109": "param names are not unique",
    "V110": "event body exceeds 20 KB",
    "V111": "an expression failed on this webhook",
    "V112": "a strict lookup table has no entry for the value",
    "V113": "param name too long",
    "V114": "value has the wrong type",
    "W101": "nested array or object inside an item (stays a string in the CDP)",
    "W102": "optional value has an unexpected shape",
    "W103": "an optional param is absent and the service reads a default (cartUpdated: empty cart)",
    "W104": "an item lacks a key the event docs ask for (url, imageUrl)",
    "W105": "the declared contact has no email, phone or externalCustomerId on this webhook",
    "W106": "a function dropped a value it cannot use (phone(): not a valid number); left out",
    "W107": "changes: the entity key is null on this webhook (the event is sent as usual)",
}


@dataclasses.dataclass(frozen=True)
class Location:
    """A place in a rule file: 1-based line and column."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclasses.dataclass(frozen=True)
class Diagnostic:
    """A located problem in a rule file (the linter's unit of output)."""

    code: str
    message: str
    location: Location | None
    severity: Severity = "error"
    source_line: str | None = None
    hint: str | None = None

    def render(self) -> str:
        """``file:line:col: error[E201]: message`` + the source line + a caret."""
        where = f"{self.location}: " if self.location else ""
        text = f"{where}{self.severity}[{self.code}]: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        if self.source_line is not None and self.location is not None:
            gutter = f"{self.location.line:>4} | "
            # a control character from the file (a NUL) is shown, not sent to the terminal
            line = _CONTROL.sub("\N{REPLACEMENT CHARACTER}", self.source_line)
            text += f"\n{gutter}{line}\n{' ' * (len(gutter) + self.location.col - 1)}^"
        return text

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
        }
        if self.location:
            out.update(file=self.location.file, line=self.location.line, col=self.location.col)
        if self.hint:
            out["hint"] = self.hint
        return out


@fast_init
@dataclasses.dataclass(frozen=True)
class Problem:
    """A problem with one produced event; error-level problems stop it being sent."""

    code: str
    message: str
    param: str | None = None
    severity: Severity = "error"
    where: Location | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "param": self.param, "message": self.message}
        out["severity"] = self.severity
        if self.where:
            out["where"] = str(self.where)
        return out


def has_errors(items: Iterable[Diagnostic | Problem]) -> bool:
    return any(item.severity == "error" for item in items)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """``"did you mean 'x'?"`` for the closest choice, or None (difflib, as click does)."""
    pool = list(choices)
    found = difflib.get_close_matches(word, pool, n=1, cutoff=0.75)
    if not found:
        lowered = {c.lower(): c for c in pool}
        found = [lowered[word.lower()]] if word.lower() in lowered else []
    return f"did you mean '{found[0]}'?" if found else None


class HookmapError(Exception):
    """Base of every error hookmap raises on purpose."""

    exit_code = 1


class RuleLoadError(HookmapError):
    """Rules failed to load; ``diagnostics`` holds every problem found."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        super().__init__(f"{len(errors)} error(s) in the rules")


class EvaluationError(HookmapError):
    """An expression raised on a webhook (wrong type, arity...)."""


class UnknownLookupValue(EvaluationError):
    """A strict lookup table has no entry for the value."""

    def __init__(self, table: str, value: Any) -> None:
        self.table = table
        self.value = value
        super().__init__(f"table '{table}' has no entry for {value!r}")


class InvalidArgument(EvaluationError, ValueError):
    """A function got a value of the right type that it cannot use.

    A ValueError too, as jmespath's own errors are, so callers catching either see it.
    ``code`` is the problem it makes of a param: V111 (an expression failed), or a more
    precise one (V102 for text that is not a number).
    """

    def __init__(self, function: str, message: str, code: str = "V111") -> None:
        self.function = function
        self.code = code
        super().__init__(f"{function}(): {message}")


class UsageError(HookmapError):
    """Bad command line or unreadable input."""

    exit_code = 2


class PayloadError(UsageError):
    """A webhook body that is not valid JSON."""


class LookupFailed(HookmapError):
    """A lookup could not be answered: the webhook is kept and processed again later."""

    def __init__(self, name: str, url: str, reason: str) -> None:
        self.name, self.url, self.reason = name, url, reason
        super().__init__(f"lookup '{name}' ({url}) failed: {reason}")


class SecretError(HookmapError):
    """A verify spec names no usable secret or key (to serve, or to sign with)."""


class ServeRefused(HookmapError):
    """A rule set cannot be served as declared (no verify, no secret in the environment)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class StoreError(HookmapError):
    """The store cannot do what was asked (unknown webhook, schema newer than the code)."""


class StoreUnavailable(StoreError):
    """A write the store could not make now (the disk is full, the file is locked or
    read-only): nothing was written, and the same write may succeed later."""


class PlatformApiError(HookmapError):
    """A shop platform's API gave no usable answer to a backfill's listing (an error status,
    retries used up): the run stops where it is, and running it again resumes there."""

    def __init__(self, platform: str, target: str, reason: str) -> None:
        self.platform, self.target, self.reason = platform, target, reason
        super().__init__(f"{platform} API: GET {target}: {reason}")


class Signal(Exception):
    """Base of the exceptions one stage raises for its own caller to handle at once."""


class BodyTooLarge(Signal):
    """The request body passed the limit while being read."""


class NotReadInPart(Signal):
    """An AST node the demand analysis does not know: the body is read whole."""


class NotForOrjson(Signal):
    """A value orjson would write differently from ``json.dumps`` (or refuse)."""
