"""Contact functions: ``phone`` (international digits), ``sha256``, ``md5``, ``sha1``."""

from __future__ import annotations

import hashlib
import re

from engine.rules.functions.common import DIALLABLE, TEXT, text_of
from engine.rules.functions.registry import Example, function, signature

# An extension after the number ("x12", "ext. 12", ";ext=12") is no part of what
# eSputnik matches contacts on. It must follow a digit, or "Fax: +380..." would lose all.
_EXTENSION = re.compile(r"(?<=[0-9)])\s*[;,]?\s*(?:ext(?:ension)?|x)\s*[.:=]?\s*[0-9]+\s*$", re.I)
_NON_DIGIT = re.compile(r"[^0-9]")
_INTERNATIONAL = re.compile(r"[^0-9]*\+")


class ContactFunctions:
    @function(
        "phone(value[, country_code])",
        "International digits without `+`: `00` dropped; a national number with a trunk 0"
        " gets `country_code` instead; an extension (`x12`, `ext. 12`) dropped; no digits: null.",
        Example("phone(phone)", "380501234567", {"phone": "+380 50 123 45 67"}),
        Example("phone('(050) 123-45-67', '380')", "380501234567"),
        Example("phone('00380501234567')", "380501234567"),
        Example("phone('050.123.45.67')", "0501234567"),
        Example("phone('+1 (555) 123-4567 ext. 89')", "15551234567"),
        Example("phone(`380501234567`)", "380501234567"),
        Example("phone(billing.phone)", None, {"billing": {"phone": ""}}),
    )
    @signature({"types": DIALLABLE}, {"types": DIALLABLE, "optional": True})
    def _func_phone(
        self, value: str | float | None, country_code: str | float | None = None
    ) -> str | None:
        if value is None:
            return None
        if country_code is None:
            code = None
        elif type(country_code) is str and country_code.isascii() and country_code.isdigit():
            code = country_code  # digits already: nothing to take out
        elif country_code == "":
            code = ""
        else:
            code = _NON_DIGIT.sub("", text_of(country_code))
        return _phone(text_of(value), code or None)

    @function(
        "sha256(text)",
        "Hex SHA-256 of the UTF-8 text, as for hashed emails: `sha256(lower(trim(email)))`.",
        Example(
            "sha256(lower(trim(email)))",
            "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476",
            {"email": " Ann@Example.com "},
        ),
        Example("sha256(`null`)", None),
    )
    @signature({"types": TEXT})
    def _func_sha256(self, text: str | None) -> str | None:
        return _digest("sha256", text)

    @function(
        "md5(text)",
        "Hex MD5 of the UTF-8 text; null stays null.",
        Example("md5('ann@example.com')", "257c57037d384ae37ea27a07e8a01665"),
    )
    @signature({"types": TEXT})
    def _func_md5(self, text: str | None) -> str | None:
        return _digest("md5", text)

    @function(
        "sha1(text)",
        "Hex SHA-1 of the UTF-8 text; null stays null.",
        Example("sha1('ann@example.com')", "85e20fa15f500fa17c1b6975c6647445094c26d9"),
    )
    @signature({"types": TEXT})
    def _func_sha1(self, text: str | None) -> str | None:
        return _digest("sha1", text)


def _phone(number: str, country_code: str | None) -> str | None:
    """International digits without "+", as eSputnik matches contacts on them."""
    if number.isascii() and number.isdigit():  # digits only: no extension, no "+"
        digits = number
    elif number[:1] == "+" and number[1:].isascii() and number[1:].isdigit():
        return number[1:]  # E.164 as Shopify sends it
    else:
        if "x" in number or "X" in number:  # every extension marker has an x
            number = _EXTENSION.sub("", number)
        digits = _NON_DIGIT.sub("", number)
        if not digits:
            return None
        if _INTERNATIONAL.match(number):  # "+" before the first digit: already international
            return digits
    if digits.startswith("00"):  # the international call prefix
        return digits[2:] or None
    if digits.startswith("0") and country_code:  # national, with its trunk 0
        return country_code + digits[1:]
    return digits


def _digest(algorithm: str, text: str | None) -> str | None:
    if text is None:
        return None
    # identifiers, not security: usedforsecurity=False keeps md5 on FIPS-mode Pythons
    return hashlib.new(algorithm, text.encode(), usedforsecurity=False).hexdigest()
