"""Compile stage for expressions: parse once, check against the function table, locate.

jmespath reports an unknown function or a wrong argument count only when an
expression *runs* (``jmespath.compile("length(a, b)")`` succeeds). Here the parsed
AST (plain dicts) is walked at load so those errors, and references to undefined
tables and vars, are reported with the column inside the expression.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import jmespath
from jmespath import exceptions as jp_exc
from jmespath.lexer import Lexer

from engine.errors import Location, did_you_mean
from engine.rules import functions
from engine.rules.diagnostics import Diagnostics
from engine.rules.model import Evaluator, Expression
from engine.rules.source import ExprText


@dataclasses.dataclass(frozen=True)
class Names:
    """What an expression may refer to by name."""

    tables: frozenset[str] = frozenset()
    vars: frozenset[str] = frozenset()
    lookups: frozenset[str] = frozenset()


def compile_expression(
    text: str, names: Names, diagnostics: Diagnostics, *, evaluator: Evaluator
) -> Expression | None:
    """Compile ``text`` for ``evaluator``; report every problem; None when it cannot be used."""

    def position(offset: int) -> Location | None:
        if isinstance(text, ExprText):
            return text.position(offset)
        return None

    def emit(code: str, message: str, offset: int, hint: str | None = None) -> None:
        diagnostics.report(code, message, position(offset), "error", hint)

    try:
        # jmespath warns (PendingDeprecationWarning) about `literal` strings that are not
        # JSON; that becomes a located warning here instead of a stray Python warning.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            parsed = jmespath.compile(str(text))
        for warning in caught:
            diagnostics.report(
                "W201",
                f"{warning.message}: write a JSON literal (`\"text\"`) or a raw string ('text')",
                position(0),
                "warning",
            )
    except jp_exc.LexerError as exc:
        emit("E203", f"JMESPath syntax error: {exc.msg}", exc.lex_position or 0)
        return None
    except jp_exc.ParseError as exc:
        found = f" near {exc.token_value!r}" if exc.token_value not in (None, "") else ""
        message = (
            "incomplete expression"
            if isinstance(exc, jp_exc.IncompleteExpressionError)
            else f"{exc.msg}{found}"
        )
        emit("E203", f"JMESPath syntax error: {message}", exc.lex_position or 0)
        return None
    except jp_exc.JMESPathError as exc:  # e.g. an invalid JSON literal
        emit("E203", f"JMESPath syntax error: {exc}", 0)
        return None
    except RecursionError:
        # jmespath parses by recursive descent: a few hundred nested brackets exhaust
        # Python's stack (and no rule needs more than a dozen)
        emit("E203", "JMESPath syntax error: nested too deeply", _deepest(str(text)))
        return None
    except ValueError:
        # jmespath's lexer reads a number with int(), which refuses more than 4,300 digits
        # (Python's guard against quadratic conversions) with a bare ValueError
        huge = _HUGE_NUMBER.search(str(text))
        digits = f"{len(huge[0]):,} digits" if huge else "too many digits"
        emit("E203", f"JMESPath syntax error: a number of {digits}", huge.start() if huge else 0)
        return None

    for offset, word in _bare_keywords(str(text)):
        diagnostics.report(
            "W202",
            f"{word} here is a field named '{word}' (JMESPath has no {word} keyword): "
            f'it reads the webhook\'s "{word}" key, if any',
            position(offset),
            "warning",
            f"write `{word}` in backticks for the JSON value",
        )

    ok = True
    used: set[str] = set()
    searched: dict[str, int] = {}
    for node in _walk(parsed.parsed):
        if node.get("type") != "function_expression":
            continue
        name = node["value"]
        offset = _find_call(str(text), name, searched)
        args = node.get("children", [])
        bounds = functions.arity(name)
        if bounds is None:
            ok = False
            emit(
                "E201",
                f"unknown function '{name}'",
                offset,
                did_you_mean(name, functions.function_table()),
            )
            continue
        low, high = bounds
        if len(args) < low or (high is not None and len(args) > high):
            ok = False
            wanted = (
                f"at least {low}"
                if high is None
                else str(low)
                if low == high
                else f"{low} to {high}"
            )
            emit("E202", f"{name}() takes {wanted} argument(s), got {len(args)}", offset)
            continue
        spec = functions.SPECS.get(name)
        for index, kind in spec.literal_args.items() if spec else ():
            arg = args[index]
            if arg.get("type") != "literal" or not isinstance(arg.get("value"), str):
                ok = False
                emit(
                    "E204",
                    f"{name}() needs the {kind} name as a quoted literal, e.g. {name}('name', ...)",
                    offset,
                )
                continue
            ref = arg["value"]
            known = {"table": names.tables, "var": names.vars, "lookup": names.lookups}[kind]
            if kind == "lookup":
                used.add(ref)
            if ref not in known:
                ok = False
                code = {"table": "E301", "var": "E302", "lookup": "E306"}[kind]
                emit(code, f"undefined {kind} '{ref}'", offset, did_you_mean(ref, known))
    if not ok:
        return None
    where = text.position(0) if isinstance(text, ExprText) else None
    compiled = evaluator.compile(parsed.parsed) if evaluator.compile is not None else None
    return Expression(str(text), parsed, where, frozenset(used), compiled)


_KEYWORDS = frozenset(("null", "true", "false"))
#: more digits than int() converts (sys.get_int_max_str_digits(): 4,300 by default)
_HUGE_NUMBER = re.compile(r"\d{4301,}")


def _deepest(text: str) -> int:
    """Where ``text``'s brackets first reach their deepest (quotes not heeded: a place to
    point at, not a parse)."""
    depth = deepest = at = 0
    for offset, char in enumerate(text):
        if char in "([{":
            depth += 1
            if depth > deepest:
                deepest, at = depth, offset
        elif char in ")]}":
            depth -= 1
    return at


def _bare_keywords(text: str) -> Iterator[tuple[int, str]]:
    """Offsets of unquoted ``null``/``true``/``false``: fields, not the JSON values."""
    try:
        for token in Lexer().tokenize(text):
            if token["type"] == "unquoted_identifier" and token["value"] in _KEYWORDS:
                yield token["start"], token["value"]
    except jp_exc.LexerError:  # parsed already: cannot happen, and nothing to warn of
        return


def _walk(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, dict):
        yield node
        children = node.get("children", [])
        if node.get("type") == "filter_projection" and len(children) == 3:
            # stored as [left, right, condition]; written as left[?condition].right, and
            # calls are located in the order they are written
            children = [children[0], children[2], children[1]]
        for child in children:
            yield from _walk(child)
        # key_val_pair and similar keep their child under "children" too; literals hold data
    elif isinstance(node, list):
        for child in node:
            yield from _walk(child)


def _find_call(text: str, name: str, searched: dict[str, int]) -> int:
    """Offset of the next ``name(`` outside quoted literals (AST nodes carry no position)."""
    start = searched.get(name, 0)
    for match in re.finditer(rf"\b{re.escape(name)}\s*\(", text[start:]):
        offset = start + match.start()
        if not _inside_literal(text, offset):
            searched[name] = offset + 1
            return offset
    return 0


def _inside_literal(text: str, offset: int) -> bool:
    quote: str | None = None
    escaped = False
    for char in text[:offset]:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quote:
            if char == quote:
                quote = None
        elif char in "'`\"":
            quote = char
    return quote is not None
