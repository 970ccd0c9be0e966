"""Personal data out of a stored webhook, everything else kept: the body byte for byte but
for the values replaced, and the headers but for signatures and credentials.

Which values are personal is told by their key, as platforms name them (``email``,
``phone``, ``first_name``, ``billing_address.address1``, ``zip``, ``browser_ip``; the
words of a key, split at ``_``, ``-`` and camelCase, are what is looked at), and for
e-mail addresses also by their look, wherever they stand. A ``name`` is a person's
only under a customer, billing, shipping or similar key (a line item's ``name`` is a
product). The values are replaced by ``engine.fakes``.

JSON bodies are rewritten in place: the tokens are walked, and only the string
values (and coordinates) replaced are written again, so the platform's formatting,
key order and escapes stay as they were. A string that holds JSON itself (Wix's
claims) is scrubbed the same way inside. A JWT body (Wix) has its claims scrubbed and
its signature replaced by ``PLACEHOLDER``; a form body is scrubbed field by field.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from engine.errors import PayloadError
from engine.fakes import Faker

#: header names whose values are credentials or signatures: replaced by PLACEHOLDER
SECRET_HEADER = re.compile(
    r"signature|hmac|authorization|token|secret|cookie|api-key|password", re.IGNORECASE
)
PLACEHOLDER = "PLACEHOLDER"
#: headers that describe the request as it was sent, wrong for a fixture
DROPPED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
#: keys under which a ``name`` is a person's
_PERSON = (
    "customer billing shipping address addresses recipient buyer contact user person owner "
    "consumer client member shopper sender receiver payer purchaser delivery"
)
PERSON = frozenset(_PERSON.split())
#: ``customer_name``, ``full_name``: a ``*_name`` key that is a person's
_WHOSE_WORDS = (
    "customer contact recipient buyer billing full display person user client consumer "
    "shopper payer receiver sender member"
)
_WHOSE = frozenset(_WHOSE_WORDS.split())
#: words of a key that hold things, not people (``shipping_lines``, ``shipping_method_name``)
_THINGS = frozenset(("line", "lines", "item", "items", "method", "methods", "rate", "rates"))
_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)'
    r"|(?P<word>true|false|null)|(?P<punct>[{}\[\]:,]))",
    re.DOTALL,
)
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_JWT = re.compile(r"\s*[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\s*")


def words(key: str) -> tuple[str, ...]:
    """``billingAddress`` / ``billing_address`` / ``X-Customer-Email`` → their words."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key)
    return tuple(w for w in re.split(r"[\W_]+", spaced.lower()) if w)


def kind_of(path: tuple[str, ...], extra: frozenset[str] = frozenset()) -> str | None:
    """What personal value the key path ends in: ``email``, ``phone``, ``first``,
    ``last``, ``name``, ``company``, ``address``, ``city``, ``postcode``, ``ip``,
    ``coordinate``, ``text`` (a key given by ``--scrub``), or None."""
    if not path:
        return None
    key = path[-1]
    if key.lower() in extra:
        return "text"
    own = words(key)
    joined = "".join(own)
    if "email" in joined or "mail" in own:
        return "email"
    if {"phone", "telephone", "tel", "mobile", "sms", "fax", "cell", "msisdn"} & set(own) or (
        "phone" in joined
    ):
        return "phone"
    if joined in ("firstname", "givenname", "forename", "middlename"):
        return "first"
    if joined in ("lastname", "surname", "familyname"):
        return "last"
    if "company" in own or "organization" in own or "organisation" in own:
        return "company"
    if own[-1:] == ("name",) and len(own) > 1 and own[0] in _WHOSE and not set(own) & _THINGS:
        return "name"
    if own == ("name",) and _personal(path[:-1]):
        return "name"
    if joined in ("city", "town", "locality", "suburb", "village"):
        return "city"
    if joined in ("zip", "zipcode", "postcode", "postalcode", "postal", "postcodezip"):
        return "postcode"
    if joined in ("lat", "latitude", "lng", "lon", "long", "longitude"):
        return "coordinate"
    if "ip" in own or joined in ("xforwardedfor", "forwardedfor", "xrealip"):
        return "ip"
    if ({"street", "line1", "line2", "line3", "house", "apartment", "building"} & set(own)) or (
        re.fullmatch(r"(address|addr)(line)?\d?|(street)(address|name|number)?\d?", joined)
    ):
        return "address"
    return None


def _personal(parents: tuple[str, ...]) -> bool:
    """Whether the nearest key above a ``name`` says it is a person's (``customer``,
    ``billing_address``), not a list of things (``shipping_lines``, ``line_items``)."""
    keys = [k for k in parents if not k.isdigit()]
    if not keys:
        return False
    own = set(words(keys[-1]))
    return bool(own & PERSON) and not own & _THINGS


def fake(faker: Faker, kind: str | None, value: str) -> str:
    """``value`` replaced as its kind asks (e-mails in any string are replaced too)."""
    if kind in ("email", None):
        return faker.emails_in(value)
    if kind == "phone":
        return faker.phone(value) if sum(c.isdigit() for c in value) >= 5 else value
    if kind in ("first", "last", "name"):
        return faker.name(value, last=kind == "last")
    if kind == "ip":
        return ", ".join(faker.ip(part) for part in value.split(","))
    method = {
        "company": faker.company,
        "address": faker.address,
        "city": faker.city,
        "postcode": faker.postcode,
        "text": faker.text,
    }.get(kind)
    return method(value) if method is not None and value.strip() else value


@dataclasses.dataclass
class Scrubber:
    """One captured webhook's replacements: one ``Faker`` for its body, headers and the
    API answers its lookups got; ``counts`` says how many values of each kind changed."""

    extra: frozenset[str] = frozenset()
    faker: Faker = dataclasses.field(default_factory=Faker)
    counts: Counter[str] = dataclasses.field(default_factory=Counter)
    #: the kinds replaced in this pass (None: all); see ``json_text``
    _only: frozenset[str] | None = None

    def value(self, path: tuple[str, ...], value: str) -> str:
        kind = kind_of(path, self.extra)
        if kind is None:
            inner = self._nested(path, value)
            if inner is not None:
                return inner
        if self._only is not None and kind not in self._only:
            return value
        if kind == "coordinate":
            return self._coordinate(value) if re.fullmatch(r"-?\d+(\.\d+)?", value) else value
        new = fake(self.faker, kind, value)
        if new != value:
            self.counts[kind or "email"] += 1
        return new

    def _nested(self, path: tuple[str, ...], value: str) -> str | None:
        """A string holding JSON (Wix's claims), or base64 of JSON (a Pub/Sub message's
        ``data``, a CloudEvent's ``data_base64``), scrubbed inside; None for any other."""
        if value.lstrip()[:1] in ("{", "["):
            try:
                json.loads(value)
            except ValueError:
                return None
            return self._json(value, path)
        if len(value) < 8 or len(value) % 4 or not _BASE64.fullmatch(value):
            return None
        try:
            text = base64.b64decode(value, validate=True).decode("utf-8")
            if text.lstrip()[:1] not in ("{", "["):
                return None
            json.loads(text)
        except (binascii.Error, ValueError):
            return None
        return base64.b64encode(self._json(text, path).encode("utf-8")).decode("ascii")

    def json_text(self, text: str, base: tuple[str, ...] = ()) -> str:
        """``text`` (JSON) with its personal values replaced, everything else as it was.

        Names go first, in a pass of their own: an e-mail's words then take the fakes
        of the names they match, wherever in the document the e-mail stands."""
        if self._only is not None:
            return self._json(text, base)
        saved = Counter(self.counts)
        self._only = frozenset({"first", "last", "name"})
        try:
            self._json(text, base)
        finally:
            self._only = None
            self.counts = saved
        return self._json(text, base)

    def _json(self, text: str, base: tuple[str, ...] = ()) -> str:
        out: list[str] = []
        stack: list[list[Any]] = []  # [container, key or index, expecting a key]
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:
                if text[position:].strip():
                    raise PayloadError(f"not JSON at character {position}")
                out.append(text[position:])
                break
            out.append(text[position : match.start(match.lastgroup or 0)])
            token = match.group(match.lastgroup or 0)
            position = match.end()
            top = stack[-1] if stack else None
            if match.lastgroup == "punct":
                if token in "{[":
                    stack.append([token, 0 if token == "[" else None, token == "{"])
                elif token in "}]":
                    stack.pop()
                elif token == "," and top is not None:
                    if top[0] == "[":
                        top[1] += 1
                    else:
                        top[2] = True
                out.append(token)
                continue
            path = base + tuple(str(f[1]) for f in stack if f[1] is not None)
            if top is not None and top[0] == "{" and top[2]:  # a key
                top[1], top[2] = json.loads(token), False
                out.append(token)
                continue
            if match.lastgroup == "string":
                old = json.loads(token)
                new = self.value(path, old)
                ascii_only = "\\u" in token
                out.append(token if new == old else json.dumps(new, ensure_ascii=ascii_only))
            elif match.lastgroup == "number" and kind_of(path, self.extra) == "coordinate":
                out.append(self._coordinate(token))
            else:
                out.append(token)
        return "".join(out)

    def _coordinate(self, token: str) -> str:
        """A latitude or longitude: 0 with as many decimals, the point at 0°, 0° in the Gulf
        of Guinea (a JSON number: no leading zeros)."""
        self.counts["coordinate"] += 1
        _, _, fraction = token.partition(".")
        return "0." + "0" * len(fraction) if fraction else "0"

    def body(self, raw: bytes, content_type: str) -> bytes:
        """The body with personal values replaced; ``PayloadError`` for a body of no form
        this knows (it is then not captured rather than captured unscrubbed)."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError(f"the body is not UTF-8 (byte {exc.start})") from exc
        if "x-www-form-urlencoded" in content_type:
            pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
            done = [(k, self.value(tuple(re.findall(r"[^\[\]]+", k)), v)) for k, v in pairs]
            return urllib.parse.urlencode(done).encode("utf-8")
        if _JWT.fullmatch(text):
            return self._jwt(text.strip()).encode("utf-8")
        try:
            json.loads(text)
        except ValueError as exc:
            raise PayloadError(
                f"the body is neither JSON, a form nor a JWT ({exc}): not captured"
            ) from exc
        scrubbed = self.json_text(text)
        if _shape(json.loads(scrubbed)) != _shape(json.loads(text)):  # never: a guard
            raise PayloadError("scrubbing changed the body's structure: not captured")
        return scrubbed.encode("utf-8")

    def _jwt(self, token: str) -> str:
        header, claims, _ = token.split(".")
        try:
            raw = base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4))
            text = self.json_text(raw.decode("utf-8"))
        except (binascii.Error, ValueError) as exc:
            raise PayloadError(f"the JWT's claims are not JSON: {exc}") from exc
        encoded = base64.urlsafe_b64encode(text.encode("utf-8")).rstrip(b"=").decode("ascii")
        return f"{header}.{encoded}.{PLACEHOLDER}"

    def headers(self, headers: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        """The headers to write: signatures and credentials as PLACEHOLDER (their names
        returned too), personal values faked, the request's own framing left out."""
        out: dict[str, str] = {}
        hidden: list[str] = []
        for name, value in headers.items():
            if name.lower() in DROPPED_HEADERS:
                continue
            if SECRET_HEADER.search(name):
                out[name] = PLACEHOLDER
                hidden.append(name)
                continue
            out[name] = self.value((name,), value)
        return out, hidden


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def header_lines(headers: Mapping[str, str]) -> Iterable[str]:
    """``Name: value`` lines, names capitalised as platforms write them."""
    for name, value in headers.items():
        yield "-".join(part[:1].upper() + part[1:] for part in name.split("-")) + f": {value}"
