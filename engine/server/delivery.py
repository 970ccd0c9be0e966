"""One request to the CDP: what came back, and what it means for the event.

* 2xx → sent.
* 408, 429, 5xx, a timeout or a network error → retried (``"retry"``).
* any other status (400 validation, 401 key, 404, 413, a 3xx from a wrong URL) → dead,
  since sending the same body again cannot help.

A 429 or 503 may say when to come back (``Retry-After``: seconds or an HTTP date). The
CDP does not document one, but a proxy or a throttled account may send it: the next
attempt then waits at least that long (``retry_after``), at most ``MAX_RETRY_AFTER``,
and never less than the schedule's own delay.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import math

import httpx

from engine.server.store.rows import RESPONSE_LIMIT, Outcome

#: statuses worth trying again besides 5xx
RETRY_STATUSES = frozenset({408, 429})
#: statuses whose Retry-After is honoured
RETRY_AFTER_STATUSES = frozenset({429, 503})
#: the longest wait a Retry-After can ask for (6 h): a bad header cannot park the queue
MAX_RETRY_AFTER = 6 * 3600.0


def classify(status: int) -> Outcome:
    """What a response status means for the event (before the schedule is consulted)."""
    if 200 <= status < 300:
        return "sent"
    if status in RETRY_STATUSES or status >= 500:
        return "retry"
    return "dead"


def describe(exc: BaseException) -> str:
    """A connection error as text: its class and message (httpx puts no headers in it)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` value asks to wait (0 for a date past), or None when
    absent or unreadable (RFC 9110: a non-negative integer, or an HTTP date)."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; the asctime form says no zone
        when = when.replace(tzinfo=datetime.UTC)
    wait = when.timestamp() - now
    return max(wait, 0.0) if math.isfinite(wait) else None


@dataclasses.dataclass(frozen=True)
class Call:
    """One POST: the status (None when no answer came) or the error, and its timing."""

    status: int | None
    error: str | None
    text: str | None
    started: float
    duration_ms: float
    #: seconds a 429/503's Retry-After asked to wait, and the header as sent
    retry_after: float | None = None
    retry_after_header: str | None = None


async def read_text(response: httpx.Response) -> str:
    """The start of a response body as text (enough for the record), tolerating errors."""
    data = b""
    try:
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) >= RESPONSE_LIMIT * 4:  # up to 4 bytes a character
                break
    except httpx.RequestError:
        pass  # the status is what counts
    return data[: RESPONSE_LIMIT * 4].decode("utf-8", errors="replace")
