"""One request to the CDP: what came back, and what it means for the event.

* 2xx → sent.
* 408, 429, 5xx, a timeout or a network error → retried (``"retry"``).
* any other status (400 validation, 401 key, 404, 413, a 3xx from a wrong URL) → dead,
  since sending the same body again cannot help.
"""

from __future__ import annotations

import dataclasses

import httpx

from engine.server.store.rows import RESPONSE_LIMIT, Outcome

#: statuses worth trying again besides 5xx
RETRY_STATUSES = frozenset({408, 429})


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


@dataclasses.dataclass(frozen=True)
class Call:
    """One POST: the status (None when no answer came) or the error, and its timing."""

    status: int | None
    error: str | None
    text: str | None
    started: float
    duration_ms: float


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
