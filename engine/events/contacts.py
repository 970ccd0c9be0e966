"""Who an event is about: the contact rules, in one place.

The CDP stores an event against a contact it identifies by the ``keyValue`` or by a
param named one of the identifier names (``catalogue.IDENTIFIER_NAMES``, any case, or the
account's own ``identify_by``); a new customer must be created first, through
``v1/contact``, and the dispatcher remembers whom it created by a ``contact_key``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from engine.errors import Problem
from engine.events.catalogue import IDENTIFIER_NAMES, is_identifier
from engine.events.values import blank, is_scalar
from engine.records import fast_init


@fast_init
@dataclasses.dataclass(frozen=True)
class Contact:
    """What identifies the event's contact: the keyValue, or a param by its name."""

    by: Literal["keyValue", "param"]
    name: str
    value: str


def identify_contact(
    key_value: str | None, params: Sequence[tuple[str, Any]], identify_by: Sequence[str] = ()
) -> Contact | None:
    """The keyValue if set, else the first identifier param with a value, else None."""
    if key_value is not None and key_value.strip():
        return Contact("keyValue", "keyValue", key_value)
    for name, value in params:
        if is_identifier(name, identify_by) and is_scalar(value) and not blank(value):
            return Contact("param", name, value if isinstance(value, str) else json.dumps(value))
    return None


def no_contact(params: Sequence[tuple[str, Any]], identify_by: Sequence[str]) -> Problem:
    names = ", ".join((*IDENTIFIER_NAMES, *identify_by))
    empty = [name for name, _ in params if is_identifier(name, identify_by)]
    why = f" ({', '.join(repr(n) for n in empty)} has no value)" if empty else ""
    return Problem(
        "V106",
        f"nothing identifies the contact{why}: expected a keyValue or a param with a value "
        f"named one of {names} (any case)",
    )


def contact_request(fields: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``v1/contact`` body for a contact's fields, or None when nothing identifies it."""
    channels = []
    if fields.get("email"):
        channels.append({"type": "email", "value": str(fields["email"])})
    if fields.get("phone"):
        channels.append({"type": "sms", "value": str(fields["phone"])})
    if not channels and not fields.get("externalCustomerId"):
        return None
    body: dict[str, Any] = {"channels": channels}
    for name in ("firstName", "lastName", "externalCustomerId"):
        if fields.get(name) not in (None, ""):
            body[name] = str(fields[name])
    return body


def contact_key(contact: Mapping[str, Any]) -> str | None:
    """The key a v1/contact body is remembered by, or None when nothing identifies it.

    ``email:`` + the lower-cased email, else ``sms:`` + the phone's digits, else
    ``ext:`` + the externalCustomerId: the CDP matches emails in any case and phones
    by their digits, so spellings of one contact share a key.
    """
    channels = [c for c in contact.get("channels") or () if isinstance(c, Mapping)]
    for kind in ("email", "sms"):
        for channel in channels:
            if channel.get("type") != kind or channel.get("value") in (None, ""):
                continue
            value = str(channel["value"])
            if kind == "email":
                ident = value.strip().lower()
            else:
                ident = "".join(ch for ch in value if ch.isdigit())
            if ident:
                return f"{kind}:{ident}"
    external = contact.get("externalCustomerId")
    return None if external in (None, "") else f"ext:{external}"
