"""Decode stage: a webhook's raw body → the data its rules read.

Most platforms post plain JSON. Some wrap it: Wix posts a JWT whose claims hold
JSON-encoded strings, commercetools arrives through a Pub/Sub push envelope with
base64 ``message.data`` or as a CloudEvent, WooCommerce pings with a form body. A
rule set declares its format; the envelope stays reachable as ``envelope()``.

Verifying a JWT's signature is the intake's job (``verify: {scheme: jwt}``): decoding
here only reads it, so dry-run and rule tests work without the platform's key.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

from engine.errors import PayloadError
from engine.records import fast_init
from engine.rules.demand import READ_ERRORS
from engine.rules.model import Decode
from engine.webhook import Webhook, parse_json


@fast_init
@dataclasses.dataclass(frozen=True)
class Decoded:
    data: Any
    #: the outer document (JWT claims, Pub/Sub or CloudEvents envelope); the body if none
    envelope: Any


def decode(webhook: Webhook, spec: Decode | None = None) -> Decoded:
    """Decode ``webhook`` per ``spec``; a ``PayloadError`` says where it went wrong."""
    spec = spec or _PLAIN
    fmt = spec.format
    content_type = webhook.headers.get("content-type", "").split(";")[0].strip().lower()
    if fmt == "auto":
        fmt = "form" if content_type == "application/x-www-form-urlencoded" else "json"
    if fmt == "json" and not spec.unwrap:  # most webhooks: the body is the data
        if spec.reader is not None:
            try:
                data = spec.reader(webhook.body)
            except READ_ERRORS:  # not read as json.loads reads it: read it whole
                data = parse_json(webhook.body, webhook.origin)
        else:
            data = parse_json(webhook.body, webhook.origin)
        return Decoded(data, data)
    if fmt == "form":
        decoded = Decoded(_form(webhook), None)
    elif fmt == "jwt":
        claims = _jwt_claims(webhook)
        decoded = Decoded(claims, claims)
    elif fmt == "pubsub":
        decoded = _pubsub(webhook)
    elif fmt == "cloudevents":
        decoded = _cloudevents(webhook, content_type)
    else:
        decoded = Decoded(parse_json(webhook.body, webhook.origin), None)
    data = _unwrap(decoded.data, spec.unwrap, webhook.origin)
    return Decoded(data, decoded.envelope if decoded.envelope is not None else data)


_PLAIN = Decode()


def _form(webhook: Webhook) -> dict[str, str]:
    try:
        text = webhook.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"{webhook.origin}: form body is not UTF-8") from exc
    return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))


def _b64(text: str, where: str, urlsafe: bool = False) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        if urlsafe:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadError(f"{where}: not base64") from exc


def _jwt_claims(webhook: Webhook) -> Any:
    text = webhook.body.decode("utf-8", errors="replace").strip()
    parts = text.split(".")
    if len(parts) != 3:
        raise PayloadError(f"{webhook.origin}: body is not a compact JWT (header.claims.sig)")
    raw = _b64(parts[1], f"{webhook.origin}: JWT claims", urlsafe=True)
    return parse_json(raw, f"{webhook.origin}: JWT claims")


def _pubsub(webhook: Webhook) -> Decoded:
    envelope = parse_json(webhook.body, webhook.origin)
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("data"), str):
        raise PayloadError(f"{webhook.origin}: message.data: missing (not a Pub/Sub push)")
    raw = _b64(message["data"], f"{webhook.origin}: message.data")
    return Decoded(parse_json(raw, f"{webhook.origin}: message.data"), envelope)


def _cloudevents(webhook: Webhook, content_type: str) -> Decoded:
    if content_type != "application/cloudevents+json" and "ce-specversion" in webhook.headers:
        # binary mode: attributes in ce-* headers, the body is the data
        attributes = {k[3:]: v for k, v in webhook.headers.items() if k.startswith("ce-")}
        data = parse_json(webhook.body, webhook.origin)
        return Decoded(data, {**attributes, "data": data})
    envelope = parse_json(webhook.body, webhook.origin)
    if not isinstance(envelope, dict) or "specversion" not in envelope:
        raise PayloadError(f"{webhook.origin}: specversion: missing (not a CloudEvent)")
    if "data_base64" in envelope:
        raw = _b64(str(envelope["data_base64"]), f"{webhook.origin}: data_base64")
        return Decoded(parse_json(raw, f"{webhook.origin}: data_base64"), envelope)
    return Decoded(envelope.get("data"), envelope)


def _unwrap(data: Any, paths: Sequence[str], origin: str) -> Any:
    """Parse the JSON-encoded strings at ``paths`` (dotted), each after the previous."""
    for path in paths:
        keys = path.split(".")
        parent = data
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or keys[-1] not in parent:
            raise PayloadError(f"{origin}: {path}: missing (declared in decode.unwrap)")
        value = parent[keys[-1]]
        if isinstance(value, str):
            try:
                parent[keys[-1]] = json.loads(value)
            except ValueError as exc:
                raise PayloadError(f"{origin}: {path}: not a JSON string ({exc})") from exc
    return data
