"""Phone numbers as eSputnik matches contacts on them: E.164 digits without the "+".

``normalize(value, regions)`` reads a phone number as a shop sends it (``"+380 50 123 45 67"``,
``"(555) 555-5555"``, ``"0501234567"``, ``380501234567`` as a JSON number) and gives its
international digits, or None with a short reason when the value is there but is not a valid
number. Numbering plans are libphonenumber's (the ``phonenumbers`` package): which lengths and
prefixes each country uses is data that changes every month, not code to write here.

How a value is read:

* None, ``""`` or blanks: absent, no reason (a field left empty is not an error).
* Text without a digit (``"n/a"``, ``"-"``): not a phone number.
* ``+`` (or a leading ``00``) and digits: international; the regions play no part. A string
  that is already E.164 (``"+380501234567"``) is checked as it stands, without parsing.
* Otherwise a national number, read in each region of ``regions`` in turn (the payload's
  billing country, then the shipping country, then the shop's default, say); the first
  region in which it is a valid number wins. The region's own calling code in front
  (``"380501234567"`` read in UA) and its international prefix (``"011 ..."`` in US) are
  understood. When no region is given, or the value was a JSON number (which cannot hold a
  ``+``), the digits are also tried as international: ``380501234567`` as +380 50...
* An extension (``x12``, ``ext. 89``, ``;ext=12``, ``#12``) is dropped: no part of a contact.
* Letters inside the number are refused, vanity numbers included: ``1-800-FLOWERS`` is
  the valid toll-free +1 800 356 9377 on a keypad, but a shop's line, not a customer's
  SMS channel, and one letter among digits (``050 12a 4567``) is a typo that libphonenumber
  would silently drop, giving another number. Letters before the first digit are a label
  (``Tel: +380...``) and are ignored; after it, even ``... (mobile)``, they are refused.
* Validity is libphonenumber's ``is_valid_number``: the number's length and prefixes fit a
  range its country has assigned. Fiction ranges are not assigned ranges: US ``555-01xx``
  after a real area code (``+1 207 555 0142``) is valid, but ``+1 555 ...`` (no such area
  code), 7-digit ``555-0123`` and the UK drama range ``07700 900xxx`` are not.

A region is an ISO 3166 alpha-2 code (``"US"``, ``"br"``; ``"UK"`` is taken for ``"GB"``) or,
as the old ``phone(value, '380')`` argument, a calling code (``"380"``, ``"+380"``). A code
that several regions share stands for its main region, libphonenumber's
``region_code_for_country_code``: 1 is US, 7 RU, 44 GB, 61 AU. Nothing is lost by it: those
regions share one national dialling plan, so a Canadian ``(613) 555-0123`` read as US gives
the same +1 digits, and validity is judged against the number's own region (CA), not the one
it was read in. Unknown regions, and calling codes of no region (800, 882, ...), are skipped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat, ValidationResult

__all__ = ["ABSENT", "Normalized", "normalize", "region_of"]


class Normalized(NamedTuple):
    """A phone number as eSputnik takes it, or why there is none."""

    #: E.164 digits without "+" (``"380501234567"``), or None
    digits: str | None
    #: why ``digits`` is None although a value was given (``"not a valid number for US"``);
    #: None when the value was absent (None, ``""``) or when it was read
    reason: str | None = None
    #: the region the number belongs to (``"CA"`` for +1 613 ...), when it was read
    region: str | None = None


ABSENT = Normalized(None)

# Longer text is not a phone number typed into a form (libphonenumber's own limit is 250).
_MAX_LENGTH = 100
_NOT_A_NUMBER = Normalized(None, "not a phone number")
_CALLING_CODES = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_ALIASES = {"UK": "GB"}
_NO_REGION = ("ZZ", "001")  # unknown, and calling codes of no country (800, 882, ...)

# The extension markers libphonenumber understands that hold letters, after a digit or ")",
# taken off before letters are looked for. Others ("anexo 12") make the number refused.
_EXTENSION = re.compile(
    r"(?<=[\d)])\s*(?:[,;]?\s*(?:ext(?:ension|n)?|xtn|x|доб)\.?\s*[:=]?|;\s*ext=|#)\s*\d{1,7}#?\s*$",
    re.IGNORECASE,
)
# A letter (any script) after a digit. Letters after the last digit are no safer than
# letters between digits: libphonenumber reads "555-555-SHIP" and "... (mobile)" alike,
# three letters or more as keypad digits, fewer dropped.
_LETTER_INSIDE = re.compile(r"\d.*?[^\W\d_]", re.DOTALL)
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # at most 15 digits (ITU-T E.164)
_INTERNATIONAL = re.compile(r"^\D*?[+＋]")  # a plus before the first digit
_CALL_PREFIX = re.compile(r"^\D*?0\D*0")  # "00" before any other digit

_LENGTHS = {
    ValidationResult.IS_POSSIBLE: "not a valid number",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "a local number without its area code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "the wrong length",
    ValidationResult.INVALID_COUNTRY_CODE: "an unknown country code",
}


def normalize(value: str | int | float | None, regions: Sequence[str | None] = ()) -> Normalized:
    """``value``'s E.164 digits without "+", read in the first of ``regions`` that fits."""
    if type(value) is str:
        if _E164.fullmatch(value):
            exact = _exact(value[1:])  # already E.164: check it as it stands
            if exact is not None:
                return exact
        text, spoken = value, False
    elif value is None:
        return ABSENT
    elif isinstance(value, bool):
        return _NOT_A_NUMBER
    elif isinstance(value, int):
        if value <= 0:
            return _NOT_A_NUMBER
        text, spoken = str(value), True
    elif isinstance(value, float):
        if not math.isfinite(value) or value <= 0 or not value.is_integer():
            return _NOT_A_NUMBER
        text, spoken = str(int(value)), True
    elif isinstance(value, str):
        text, spoken = str(value), False
    else:
        return _NOT_A_NUMBER
    if isinstance(regions, str):  # one region given bare: not its letters one by one
        regions = (regions,)
    return _normalize(text, tuple(r for r in regions if isinstance(r, str)), spoken)


@lru_cache(maxsize=512)
def region_of(region: str | None) -> str | None:
    """The region code ``region`` names (``"br"`` → BR, ``"+1"`` → US), or None if none."""
    if not region:
        return None
    code = region.strip().upper()
    digits = code[1:] if code[:1] == "+" else code
    if digits.isascii() and digits.isdigit():
        found = phonenumbers.region_code_for_country_code(int(digits))
        return None if found in _NO_REGION else found
    code = _ALIASES.get(code, code)
    return code if code in phonenumbers.SUPPORTED_REGIONS else None


@lru_cache(maxsize=1024)  # libphonenumber's check is some 20 µs; a shop's customers repeat
def _exact(digits: str) -> Normalized | None:
    """``"+" + digits`` read without parsing, if it is a valid number written exactly so."""
    for size in (1, 2, 3):  # calling codes are prefix-free: at most one fits
        code = int(digits[:size])
        if code not in _CALLING_CODES:
            continue
        national = digits[size:]
        number = PhoneNumber(country_code=code, national_number=int(national))
        if national[:1] == "0":  # Italy's 06..., kept as the number's own digits
            number.italian_leading_zero = True
            zeros = len(national) - len(national.lstrip("0"))
            if zeros > 1:
                number.number_of_leading_zeros = zeros
        if not phonenumbers.is_valid_number(number):
            return None
        if phonenumbers.format_number(number, PhoneNumberFormat.E164) != "+" + digits:
            return None
        return Normalized(digits, None, phonenumbers.region_code_for_number(number))
    return None


@lru_cache(maxsize=1024)
def _normalize(text: str, regions: tuple[str | None, ...], spoken: bool) -> Normalized:
    text = text.strip()
    if not text:
        return ABSENT
    if len(text) > _MAX_LENGTH:
        return Normalized(None, "too long to be a phone number")
    core = _EXTENSION.sub("", text)
    if not phonenumbers.normalize_digits_only(core):  # "n/a", "none", "-"
        return _NOT_A_NUMBER
    if _LETTER_INSIDE.search(core):
        return Normalized(None, _letters(core, regions))
    if _INTERNATIONAL.match(core):
        return _read(text, None)
    candidates = list(dict.fromkeys(r for r in map(region_of, regions) if r is not None))
    failed = []
    for region in candidates:
        read = _read(text, region)
        if read.digits is not None:
            return read
        failed.append(read)
    if _CALL_PREFIX.match(core):  # "00" + international number, in any region
        read = _read("+" + phonenumbers.normalize_digits_only(core)[2:], None)
        if read.digits is not None or not failed:
            return read
    elif not candidates or spoken:  # no region to go by, or a JSON number: no room for "+"
        read = _read("+" + phonenumbers.normalize_digits_only(core), None)
        if read.digits is not None:
            return read
    if not failed:
        return Normalized(None, "a national number, and no region to read it in")
    reason = failed[0].reason
    if len(candidates) > 1:
        reason = f"{reason} (nor for {', '.join(candidates[1:])})"
    return Normalized(None, reason)


def _read(text: str, region: str | None) -> Normalized:
    """One reading of ``text``: in ``region``, or international when None."""
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as error:
        return Normalized(None, _unparsed(error, region))
    where = f"for {region}" if region else f"for +{number.country_code}"
    if phonenumbers.is_valid_number(number):
        e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
        return Normalized(e164[1:], None, phonenumbers.region_code_for_number(number))
    why = phonenumbers.is_possible_number_with_reason(number)
    if why == ValidationResult.INVALID_COUNTRY_CODE:
        return Normalized(None, f"an unknown country code +{number.country_code}")
    return Normalized(None, f"{_LENGTHS.get(why, 'not a valid number')} {where}")


def _unparsed(error: NumberParseException, region: str | None) -> str:
    kind = error.error_type
    if kind == NumberParseException.INVALID_COUNTRY_CODE:
        return "an unknown country code" if region is None else f"not a number for {region}"
    if kind in (NumberParseException.TOO_SHORT_NSN, NumberParseException.TOO_SHORT_AFTER_IDD):
        return "too short" if region is None else f"too short for {region}"
    if kind == NumberParseException.TOO_LONG:
        return "too long"
    return "not a phone number"


def _letters(core: str, regions: tuple[str | None, ...]) -> str:
    """Why a number with letters is refused, with its keypad digits if they make a number."""
    region = next((r for r in map(region_of, regions) if r is not None), None)
    try:
        number = phonenumbers.parse(core, region)
    except NumberParseException:
        return "letters in the number"
    if not phonenumbers.is_valid_number(number):
        return "letters in the number"
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return f"letters in the number (a vanity number, {e164[1:]} on a keypad)"
