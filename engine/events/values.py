"""Predicates on produced values, and how messages quote them (no event type needed).

A leaf module: the checks (``engine.events.checks``, ``kinds``) and the contact rules
(``engine.events.contacts``) share these.
"""

from __future__ import annotations

import json
from typing import Any


def is_scalar(value: Any) -> bool:
    kind = type(value)
    if kind is str or kind is int or kind is float:
        return True
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def blank(value: Any) -> bool:
    # isspace() is strip()'s test of every character, without building the stripped copy
    return value is None or (isinstance(value, str) and (not value or value.isspace()))


def show(value: Any, limit: int = 60) -> str:
    """The value as JSON, cut to ``limit`` characters: messages quote what was wrong."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"
