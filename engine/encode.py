"""Serialize stage: produced values → the exact request body for v1 or v2.

v1 sends every param value as a string (objects and arrays JSON-encoded, as the
source page's ``items`` example does); v2 sends objects and arrays as native JSON and
every scalar as a string (its spec allows only those). Both print
numbers without binary float noise: ``0.1 + 0.2`` is sent as ``0.3``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal

ApiVersion = Literal["v1", "v2"]


def clean_number(value: float) -> float:
    """The float with 15 significant digits, which drops the noise of binary arithmetic."""
    if not math.isfinite(value):
        return value
    return float(format(value, ".15g"))


def clean(value: Any) -> Any:
    """``value`` with every float cleaned, recursively."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return clean_number(value)
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """Compact JSON, unicode kept as is, floats cleaned."""
    return json.dumps(clean(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def as_text(value: Any) -> str:
    """A param value as v1 sends it: a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        cleaned = clean_number(value)
        return repr(cleaned) if math.isfinite(cleaned) else str(cleaned)
    return to_json(value)


def request_body(
    event_type: str,
    key_value: str | None,
    params: Sequence[tuple[str, Any]],
    version: ApiVersion,
) -> dict[str, Any]:
    """The Generate event request body, as a JSON-ready dict."""
    body: dict[str, Any] = {"eventTypeKey": event_type}
    if key_value is not None:
        body["keyValue"] = key_value
    if version == "v1":
        body["params"] = [{"name": n, "value": as_text(v)} for n, v in params]
    else:
        body["params"] = [{"name": n, "value": as_v2(v)} for n, v in params]
    return body


def as_v2(value: Any) -> Any:
    """A param value as v2 sends it: objects and arrays native, every scalar a string.

    The v2 spec types ``value`` as string or JSON object/array: a bare number or
    boolean is not among them, so scalars are written as v1 writes them.
    """
    if isinstance(value, (dict, list, tuple)):
        return clean(value)
    return as_text(value)


def body_bytes(body: dict[str, Any]) -> bytes:
    """The bytes sent on the wire (also what the 20 KB limit is measured on)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )
