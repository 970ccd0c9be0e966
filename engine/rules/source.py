"""Rule files as read: their text, and values that remember where they stand.

PyYAML's composed nodes carry ``start_mark`` (0-based line and column); the loader keeps
them on what it reads (``LocatedDict``, ``LocatedList``, ``ExprText``) so every later
stage can point at ``file:line:col``, even inside an expression (``scalar_position``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from engine.errors import Location


@dataclasses.dataclass
class SourceFile:
    """One rule file's text, for locations and carets."""

    path: str
    text: str

    def __post_init__(self) -> None:
        self.lines = self.text.splitlines()

    def line(self, number: int) -> str | None:
        """The 1-based source line, or None past the end."""
        if 1 <= number <= len(self.lines):
            return self.lines[number - 1]
        return None

    def location(self, mark: yaml.Mark) -> Location:
        return Location(self.path, mark.line + 1, mark.column + 1)


#: what a value that failed its type reads as (already reported; compile skips it)
INVALID: Any = object()


class LocatedDict(dict[str, Any]):
    """A mapping read from YAML, with where it and each key and value stand."""

    loc: Location
    key_locs: dict[str, Location]
    value_locs: dict[str, Location]
    source: SourceFile


class LocatedList(list[Any]):
    """A list read from YAML, with where it and each item stand."""

    loc: Location
    item_locs: list[Location]


class ExprText(str):
    """An expression string that remembers its YAML node, to locate errors inside it."""

    node: yaml.ScalarNode
    source: SourceFile

    def position(self, offset: int) -> Location:
        """Where character ``offset`` of the expression stands in the file."""
        return scalar_position(self.source, self.node, offset)


def scalar_position(source: SourceFile, node: yaml.ScalarNode, offset: int) -> Location:
    """Map an offset inside a scalar's value to a file location.

    Exact for plain and quoted scalars on one line, and for block scalars (``|`` and
    ``>``) whose lines share one indentation; otherwise the scalar's start.
    """
    start = node.start_mark
    if node.style in ("'", '"') and node.start_mark.line == node.end_mark.line:
        column = _quoted_column(source.line(start.line + 1) or "", start.column, node.style, offset)
        return Location(source.path, start.line + 1, column + 1)
    if node.style in (None, "") and node.start_mark.line == node.end_mark.line:
        return Location(source.path, start.line + 1, start.column + 1 + offset)
    if node.style in ("|", ">"):
        remaining = offset
        for number in range(start.line + 2, node.end_mark.line + 2):
            text = source.line(number)
            if text is None:
                break
            content = text.lstrip(" ")
            if not content and node.style == ">":
                continue  # folding turns the break and the blank line into one "\n"
            indent = len(text) - len(content)
            if remaining <= len(content):
                return Location(source.path, number, indent + remaining + 1)
            remaining -= len(content) + 1
    if node.start_mark.line != node.end_mark.line and node.style in (None, ""):
        # a plain scalar folded over several lines: walk the lines the same way
        remaining = offset
        first = True
        for number in range(start.line + 1, node.end_mark.line + 2):
            text = source.line(number)
            if text is None:
                break
            begin = start.column if first else len(text) - len(text.lstrip(" "))
            content = text[begin:].rstrip()
            if remaining <= len(content):
                return Location(source.path, number, begin + remaining + 1)
            remaining -= len(content) + 1
            first = False
    return Location(source.path, start.line + 1, start.column + 1)


def _quoted_column(line: str, quote_column: int, style: str, offset: int) -> int:
    """0-based column of value character ``offset`` in a one-line quoted scalar.

    Walks the source after the opening quote, so escapes (``\\"`` in double quotes,
    ``''`` in single quotes) that are one character of the value but two of the text
    do not shift the columns after them.
    """
    column = quote_column + 1
    produced = 0
    while column < len(line) and produced < offset:
        char = line[column]
        if style == '"' and char == "\\":
            column += _escape_width(line, column)
        elif style == "'" and char == "'" and line[column + 1 : column + 2] == "'":
            column += 2
        else:
            column += 1
        produced += 1
    return column


def _escape_width(line: str, column: int) -> int:
    """Source width of the double-quoted escape starting at ``column``."""
    kind = line[column + 1 : column + 2]
    return {"x": 4, "u": 6, "U": 10}.get(kind, 2)
