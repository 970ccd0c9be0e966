"""What the sandbox (``engine.sandbox.app``) checks in a request, answering as the service does.

Each check returns the plain-text reason for a 400, or None when the request passes.
The limits and the order requirements are not restated here: events go through
``engine.events.checks.check_event``, the same checks hookmap runs before sending, so what
hookmap would have dropped the sandbox refuses too.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from typing import Any

from engine.events.catalogue import ORDER_STATUSES
from engine.events.checks import check_event
from engine.sandbox.settings import LIVE_SETTINGS

ORDER_EVENTS = frozenset({"orderCreated", "orderUpdated", "orderDelivered", "orderCancelled"})
#: check_event codes that are the service's own limits (length, forbidden characters,
#: unique param names): refused for every event type, custom ones included.
LIMIT_CODES = frozenset({"V108", "V109", "V113"})
#: What v1/orders lists in failedOrders when absent.
ORDER_REQUIRED = ("externalOrderId", "totalCost", "status", "date")
#: Settings POST /sandbox/config may change, with their JSON type.


def json_object(raw: bytes) -> tuple[dict[str, Any], str | None]:
    """The body as a JSON object, or ``{}`` and why not."""
    try:
        body = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        return {}, f"the body is not valid JSON: {exc}"
    if not isinstance(body, dict):
        return {}, "the body must be a JSON object"
    return body, None


def batch(raw: bytes, key: str, limit: int) -> tuple[list[Any], str | None]:
    """The list under ``key`` of a batch body (v1/contacts, v1/orders), or why not."""
    body, problem = json_object(raw)
    if problem is not None:
        return [], problem
    items = body.get(key)
    if not isinstance(items, list) or not 0 < len(items) <= limit:
        return [], f"'{key}' must be a list of 1 to {limit} items"
    return items, None


def event_problem(body: dict[str, Any], version: str) -> str | None:
    """Why the service would refuse this Generate event body, or None."""
    problem = _event_shape(body, version)
    if problem is not None:
        return problem
    event_type = body["eventTypeKey"]
    params = [(p["name"], p["value"]) for p in body.get("params") or []]
    # v1 JSON-string values need no decoding first: the checks read a structured param
    # (items, products) from its JSON string and a number from a numeric string.
    errors = [
        p
        for p in check_event(event_type, body.get("keyValue"), params).problems
        if p.severity == "error" and (event_type in ORDER_EVENTS or p.code in LIMIT_CODES)
    ]
    if not errors:
        return None
    return "; ".join(f"{p.code}: {p.message}" for p in errors[:3])


def _event_shape(body: dict[str, Any], version: str) -> str | None:
    if not isinstance(body.get("eventTypeKey"), str) or not body["eventTypeKey"]:
        return "eventTypeKey is required and must be a string"
    if body.get("keyValue") is not None and not isinstance(body["keyValue"], str):
        return "keyValue must be a string"
    params = body.get("params") or []
    if not isinstance(params, list):
        return "params must be a list of {name, value}"
    for index, param in enumerate(params):
        if not isinstance(param, dict) or not isinstance(param.get("name"), str):
            return f"params[{index}] must be an object with a string name and a value"
        where = f"params[{index}] ('{param['name']}')"
        if "value" not in param:
            return f"{where} has no value"
        value = param["value"]
        if version == "v1" and not isinstance(value, str):
            return (
                f"{where}: v1 values must be strings, got {_json_type(value)} "
                "(send numbers and JSON as text)"
            )
        if version == "v2" and not isinstance(value, str | dict | list):
            return (
                f"{where}: v2 values must be a string or a JSON object or array, "
                f"got {_json_type(value)}"
            )
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number" if isinstance(value, int | float) else f"a {type(value).__name__}"


def contact_problem(contact: Any) -> str | None:
    """Why a v1/contact body (or one of v1/contacts) is no contact, or None."""
    if not isinstance(contact, dict):
        return "a contact must be a JSON object"
    channels = contact.get("channels", [])
    if not isinstance(channels, list) or not all(
        isinstance(c, dict) and isinstance(c.get("type"), str) and isinstance(c.get("value"), str)
        for c in channels
    ):
        return "channels must be a list of {type, value} with string type and value"
    if not channels and not contact.get("externalCustomerId"):
        return "a contact needs at least one channel or an externalCustomerId"
    return None


def order_problem(order: Any) -> str | None:
    """Why v1/orders would list this order in failedOrders, or None."""
    if not isinstance(order, dict):
        return "an order must be a JSON object"
    missing = [name for name in ORDER_REQUIRED if order.get(name) in (None, "")]
    if missing:
        return f"missing required field(s): {', '.join(missing)}"
    if order["status"] not in ORDER_STATUSES:
        return f"status must be one of {', '.join(ORDER_STATUSES)}"
    return None


def settings_problem(changes: dict[str, Any]) -> str | None:
    """Why a POST /sandbox/config body cannot be applied (ranges are the config's own)."""
    for name, value in changes.items():
        kind = LIVE_SETTINGS.get(name)
        if kind is None:
            return f"'{name}' cannot be set; settable: {', '.join(LIVE_SETTINGS)}"
        # bool is an int to Python, not to JSON: true is no rate, and 1 is no switch.
        if kind is bool or isinstance(value, bool):
            fits = kind is bool and isinstance(value, bool)
        else:
            fits = isinstance(value, int if kind is int else int | float)
        if not fits:
            return f"'{name}' must be a {kind.__name__}"
    return None


def identifies(contact: dict[str, Any], value: str) -> bool:
    """Whether ``value`` (a keyValue or an identifier param) names this known contact."""
    # Emails match in any case, as the service matches them; phones by their digits,
    # so "+380 50 123 45 67" finds the contact created with "380501234567".
    if value.casefold() in (email.casefold() for email in contact["email"]):
        return True
    if _PHONE.fullmatch(value) and _digits(value) in map(_digits, contact["sms"]):
        return True
    return bool(value == contact["externalCustomerId"])


_PHONE = re.compile(r"\+?[\d\s().-]{5,}")


def _digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())


def authorized(header: str | None, api_key: str) -> bool:
    """Basic auth whose password is the key; the user name is ignored, as by the service."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    _, colon, password = decoded.partition(":")
    return bool(colon) and hmac.compare_digest(password.encode(), api_key.encode())
