"""Reading the date-times shop webhooks carry (pure helpers for the date-time functions).

Shops disagree on how to write a moment: Shopify sends ISO 8601 with the shop's offset,
WooCommerce, Magento and PrestaShop a naive site-local ``YYYY-MM-DD HH:MM:SS``,
BigCommerce and Ecwid unix seconds, JavaScript platforms epoch milliseconds, mail-era
APIs RFC 2822. ``parse_datetime`` reads all of them into one ``datetime``: aware when the
input states its offset, naive when it does not (guessing a zone here would silently
shift every order by hours; the rule decides, with ``iso_datetime(value, tz)``).

Choices the function docs repeat:

* Sub-second digits are dropped: eSputnik dates carry whole seconds, and Shopify's
  nanosecond stamps would otherwise be truncated differently by each consumer.
* UTC is written ``+00:00``, also when the input said ``Z``: one spelling per offset
  keeps outputs comparable (the spelling ``datetime.isoformat`` uses).
* An epoch number above 10**11 is milliseconds: 10**11 seconds is the year 5138, and
  10**11 milliseconds is March 1973, before any shop's data.
* A string of digits is an epoch, never a basic-format ISO date such as ``20261014``.
* ``""``, ``0000-00-00`` and ``0000-00-00 00:00:00`` (PrestaShop's unset date) are no
  date at all: ``None``, like null.
"""

from __future__ import annotations

import email.utils
import functools
import math
import re
import reprlib
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_EPOCH_MS_ABOVE = 10**11
_ZERO_DATE = re.compile(r"0000-00-00(?:[ T]00:00:00)?")
_EPOCH = re.compile(r"-?\d+(?:\.\d+)?")
_SUBSECOND = re.compile(r"(?<=:\d\d)[.,]\d+")  # the fraction after HH:MM:SS
_OFFSET = re.compile(r"([+-])(\d\d):?(\d\d)")


def parse_datetime(value: str | int | float | None) -> datetime | None:
    """The moment ``value`` names, whole seconds; None for null and unset dates.

    Raises ValueError naming the value when it is no date-time this module reads.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        return from_epoch(value)
    text = value.strip()
    if not text or _ZERO_DATE.fullmatch(text):
        return None
    if _EPOCH.fullmatch(text):
        return from_epoch(float(text) if "." in text else int(text))
    try:
        moment = datetime.fromisoformat(_SUBSECOND.sub("", text, count=1))
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"cannot read {reprlib.repr(value)} as a date-time") from exc
    return moment.replace(microsecond=0)


def from_epoch(value: int | float) -> datetime:
    """The UTC moment of epoch seconds, or milliseconds when above 10**11."""
    if abs(value) > _EPOCH_MS_ABOVE:
        value = value // 1000 if isinstance(value, int) else value / 1000
    try:
        return datetime.fromtimestamp(math.floor(value), UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"epoch {value!r} is out of range") from exc


@functools.lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    """An IANA zone (``Europe/Kyiv``) or a fixed offset (``+03:00``, ``-0430``)."""
    offset = _OFFSET.fullmatch(name.strip())
    if offset:
        sign, hours, minutes = offset.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        try:
            return timezone(-delta if sign == "-" else delta)
        except ValueError as exc:
            raise ValueError(f"offset {name!r} is out of range") from exc
    if name.strip() == "Z":
        return UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (an IANA name or +HH:MM)") from exc


def assume_zone(moment: datetime, where: tzinfo) -> datetime:
    """``moment`` unchanged if it has an offset; else its wall time read in ``where``."""
    if moment.tzinfo is not None:
        return moment
    # fold=0 reads an autumn wall time that happens twice as the first (summer) one; the
    # round trip through UTC moves a spring wall time that never happens forward by the
    # gap, so the offset written is the one in force at that instant.
    return moment.replace(tzinfo=where).astimezone(UTC).astimezone(where)


def to_epoch(moment: datetime) -> int:
    """Epoch seconds; a naive moment counts as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())
