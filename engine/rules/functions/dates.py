"""Date-time functions: ``iso_datetime``, ``format_datetime``, ``to_epoch``
(reading with ``engine.rules.datetimes``)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from engine.errors import InvalidArgument
from engine.rules import datetimes
from engine.rules.functions.common import MOMENT, TEXT
from engine.rules.functions.registry import Example, function, signature

# ISO 8601 as most shops write it: whole seconds, an offset or none (see _plain_iso)
_PLAIN_ISO = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:[+-][0-9]{2}:[0-9]{2})?"
)


class DateFunctions:
    @function(
        "iso_datetime(value[, tz])",
        "ISO 8601 date-time in whole seconds; UTC written `+00:00`; `tz` (IANA name or `+03:00`)"
        ' applies only to input without an offset; null, `""` and PrestaShop\'s'
        " `0000-00-00 00:00:00` give null.",
        Example(
            "iso_datetime(created_at)",
            "2026-10-14T09:41:27-04:00",
            {"created_at": "2026-10-14T09:41:27-04:00"},
        ),
        Example("iso_datetime('2026-10-14T13:41:27.123Z')", "2026-10-14T13:41:27+00:00"),
        Example(
            "iso_datetime(date_created)",
            "2026-10-14T09:41:27",
            {"date_created": "2026-10-14T09:41:27"},
        ),
        Example("iso_datetime('2026-10-14 09:41:27')", "2026-10-14T09:41:27"),
        Example("iso_datetime('2026-10-14 09:41:27', 'Europe/Kyiv')", "2026-10-14T09:41:27+03:00"),
        Example("iso_datetime('2026-12-14 09:41:27', 'Europe/Kyiv')", "2026-12-14T09:41:27+02:00"),
        Example("iso_datetime('2026-10-14 09:41:27', '+05:30')", "2026-10-14T09:41:27+05:30"),
        Example(
            "iso_datetime('2026-10-14T09:41:27-04:00', 'Europe/Kyiv')", "2026-10-14T09:41:27-04:00"
        ),
        Example("iso_datetime('2026-10-14')", "2026-10-14T00:00:00"),
        Example(
            "iso_datetime(created_at)", "2026-10-14T13:41:27+00:00", {"created_at": 1791985287}
        ),
        Example("iso_datetime('1791985287')", "2026-10-14T13:41:27+00:00"),
        Example("iso_datetime(`1791985287123`)", "2026-10-14T13:41:27+00:00"),
        Example("iso_datetime('Wed, 14 Oct 2026 09:41:27 +0000')", "2026-10-14T09:41:27+00:00"),
        Example("iso_datetime(invoice_date)", None, {"invoice_date": "0000-00-00 00:00:00"}),
        Example("iso_datetime(`null`)", None),
    )
    @signature({"types": MOMENT}, {"types": TEXT, "optional": True})
    def _func_iso_datetime(self, value: str | float | None, tz: str | None = None) -> str | None:
        if tz is None and isinstance(value, str) and _is_written_as_iso(value):
            return value  # what parsing it and isoformat() would give back
        moment = _moment("iso_datetime", value, tz)
        return None if moment is None else moment.isoformat()

    @function(
        "format_datetime(value, pattern)",
        "A date-time (any form `iso_datetime` reads) written with a strftime `pattern`.",
        Example(
            "format_datetime(date_add, '%d.%m.%Y')",
            "14.10.2026",
            {"date_add": "2026-10-14 09:41:27"},
        ),
        Example("format_datetime(`1791985287`, '%Y-%m-%d %H:%M %z')", "2026-10-14 13:41 +0000"),
    )
    @signature({"types": MOMENT}, {"types": ["string"]})
    def _func_format_datetime(self, value: str | float | None, pattern: str) -> str | None:
        moment = _moment("format_datetime", value)
        return None if moment is None else moment.strftime(pattern)

    @function(
        "to_epoch(value)",
        "A date-time (any form `iso_datetime` reads) as integer unix seconds; input without"
        " an offset counts as UTC (use `to_epoch(iso_datetime(value, tz))` otherwise).",
        Example("to_epoch('2026-10-14T09:41:27-04:00')", 1791985287),
        Example("to_epoch('2026-10-14 13:41:27')", 1791985287),
        Example("to_epoch(iso_datetime('2026-10-14 16:41:27', 'Europe/Kyiv'))", 1791985287),
    )
    @signature({"types": MOMENT})
    def _func_to_epoch(self, value: str | float | None) -> int | None:
        moment = _moment("to_epoch", value)
        return None if moment is None else datetimes.to_epoch(moment)


def _moment(function: str, value: str | float | None, tz: str | None = None) -> datetime | None:
    try:
        # the zone is checked even when unused, so a typo shows on the first webhook
        where = datetimes.zone(tz) if tz else None
    except ValueError as exc:
        raise InvalidArgument(function, str(exc)) from exc
    try:
        moment = _plain_iso(value)
        if moment is None:
            moment = datetimes.parse_datetime(value)
    except ValueError as exc:  # the webhook's value: a date-time problem (V104) on the param
        raise InvalidArgument(function, str(exc), code="V104") from exc
    if moment is None or where is None:
        return moment
    return datetimes.assume_zone(moment, where)


def _plain_iso(value: Any) -> datetime | None:
    """The moment of the usual ``2026-10-14T09:41:27-04:00`` (whole seconds), else None.

    ``datetimes.parse_datetime`` reads such text the same way, after checks (blank, zero
    date, epoch, fraction) that cannot apply to it; anything else is left to it.
    """
    if type(value) is not str or _PLAIN_ISO.fullmatch(value) is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # month 13, or PrestaShop's 0000-00-00T00:00:00: parse_datetime says
        return None


def _is_written_as_iso(text: str) -> bool:
    """Whether ``text`` is a valid date-time exactly as ``datetime.isoformat`` writes it."""
    # with an offset, isoformat() writes a zero one "+00:00", and 60 minutes or more in
    # hours: "-00:60" is "-01:00"
    if len(text) > 19 and (text[-2] not in "012345" or text.endswith("-00:00")):
        return False
    return _plain_iso(text) is not None
