"""Contact functions: ``phone`` (E.164 digits, read with libphonenumber), ``sha256``, ``md5``,
``sha1``."""

from __future__ import annotations

import hashlib

from engine.rules.functions.common import DIALLABLE, REGION, TEXT, Dropped, text_of
from engine.rules.functions.phones import normalize
from engine.rules.functions.registry import Example, function, signature


class ContactFunctions:
    #: what a function gave up on while evaluating (``EngineFunctions`` makes the list);
    #: the evaluate stage turns each into a W106 warning on the param
    dropped: list[Dropped]

    @function(
        "phone(value[, region, ...])",
        "E.164 digits without `+`, as eSputnik matches contacts: an international number as"
        " it is, a national one read in the first `region` it is valid in (a country, `'UA'`,"
        " or a calling code, `'380'`; null and `''` are skipped), checked by libphonenumber."
        " A value that is not a valid number (too short, no such area code, letters) gives"
        " null and a W106 warning on the param, never a wrong number; absent stays null.",
        Example("phone(phone)", "380501234567", {"phone": "+380 50 123 45 67"}),
        Example("phone('(050) 123-45-67', 'UA')", "380501234567"),
        Example("phone('050 123 4567', '380')", "380501234567"),
        Example(
            "phone(billing.phone, billing.country, shipping.country, 'UA')",
            "12075550142",
            {"billing": {"phone": "(207) 555-0142", "country": "US"}, "shipping": None},
        ),
        Example("phone('00380501234567')", "380501234567"),
        Example("phone('+1 207 555 0142 ext. 89')", "12075550142"),
        Example("phone(`380501234567`)", "380501234567"),
        Example("phone('(555) 555-5555', 'US')", None, dropped="not a valid number for US"),
        Example(
            "phone('1-800-FLOWERS', 'US')",
            None,
            dropped="letters in the number (a vanity number, 18003569377 on a keypad)",
        ),
        Example(
            "phone('050 123 4567')", None, dropped="a national number, and no region to read it in"
        ),
        Example("phone(billing.phone)", None, {"billing": {"phone": ""}}),
    )
    @signature({"types": DIALLABLE}, {"types": REGION, "variadic": True, "optional": True})
    def _func_phone(self, value: str | float | None, *regions: str | float | None) -> str | None:
        if value is None:
            return None
        read = normalize(value, [r if type(r) is str else text_of(r) for r in regions])
        if read.reason is not None:
            self.dropped.append(Dropped("phone", value, read.reason))
        return read.digits

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


def _digest(algorithm: str, text: str | None) -> str | None:
    if text is None:
        return None
    # identifiers, not security: usedforsecurity=False keeps md5 on FIPS-mode Pythons
    return hashlib.new(algorithm, text.encode(), usedforsecurity=False).hexdigest()
