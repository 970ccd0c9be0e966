"""One GET at a time to a shop platform's API, paced and retried, for a backfill.

A backfill reads thousands of orders from an API that limits its callers: Shopify's
REST Admin API is a leaky bucket (40 requests, leaking 2 a second on standard plans)
that answers 429 with ``Retry-After`` once full; BigCommerce says how many requests
are left in its window; a WooCommerce host may answer 429 or 503 when busy. So every
request here:

* waits its turn: at most ``rate`` requests a second, and longer when the last answer's
  rate-limit headers say the limit is near (``Pace``, one per platform), so a run slows
  down before it is refused;
* is tried again after a 429 (waiting what ``Retry-After`` or the platform's headers
  say), a 408 or 5xx (``Retry-After`` on a 503 too, else exponential backoff with
  jitter) or a network error, up to ``attempts`` times in all;
* stops the run with ``PlatformApiError`` on any other answer (401, 403, 404 ...),
  saying what the status usually means.

Credentials travel in headers only, never in a URL: messages name the path and query
of what failed, and any credential value a platform echoes in its answer is masked.
A link the platform returns (Shopify's ``Link: <...>; rel="next"``) is followed only on
the API's own origin, so a token is never sent to another host.
"""

from __future__ import annotations

import dataclasses
import email.utils
import random
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

import httpx

from engine.errors import PlatformApiError

#: ``pace(headers)``: seconds to wait before the next request, from the last answer's
#: headers (the platform's rate-limit headers); 0 when they say nothing of it
Pace = Callable[[httpx.Headers], float]
#: ``on_wait(seconds, why)``: told before each wait longer than a pause (progress output)
OnWait = Callable[[float, str], None]

#: tries per request, the first included (``hookmap backfill --retries`` is this minus 1)
DEFAULT_ATTEMPTS = 7
#: seconds before the 2nd, 3rd ... try when the answer names no wait (then doubled)
BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
#: longest wait honoured from a Retry-After (a longer one counts as this much)
MAX_WAIT = 600.0
DEFAULT_TIMEOUT = 30.0
#: what a status that no retry can change usually means, for the message
_MEANING = {
    400: "the API refused the request",
    401: "the credentials were refused (check the token or key variables)",
    402: "the shop is frozen or unpaid",
    403: "the credentials lack a permission (an access scope) to read orders",
    404: "not found: check the shop's URL (and the API version)",
}


@dataclasses.dataclass(frozen=True)
class Options:
    """How a run talks to a platform's API: the operator's overrides (None: the platform's
    default) and, for tests, the transport and the sleep."""

    #: requests a second at most (Shopify: the plan's leak rate, 2 on standard plans)
    rate: float | None = None
    attempts: int = DEFAULT_ATTEMPTS
    #: orders per request (each platform has its largest)
    page_size: int | None = None
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    on_wait: OnWait | None = None
    backoff: tuple[float, ...] = BACKOFF

    def client(
        self,
        platform: str,
        base_url: str,
        headers: Mapping[str, str],
        *,
        rate: float,
        pace: Pace | None = None,
        secrets: Iterable[str] = (),
    ) -> ApiClient:
        """An ``ApiClient`` with these options; ``rate`` is the platform's default."""
        return ApiClient(
            platform,
            base_url,
            headers,
            rate=self.rate or rate,
            pace=pace,
            attempts=self.attempts,
            backoff=self.backoff,
            secrets=secrets,
            transport=self.transport,
            sleep=self.sleep,
            clock=self.clock,
            on_wait=self.on_wait,
        )

    def size(self, default: int, largest: int) -> int:
        """Orders per page: ``page_size`` if given (at most ``largest``), else ``default``."""
        return min(self.page_size or default, largest)


def retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (a number, or an HTTP date), or None."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class ApiClient:
    """GETs to one platform API's origin, paced by ``rate`` and ``pace``, retried."""

    def __init__(
        self,
        platform: str,
        base_url: str,
        headers: Mapping[str, str],
        *,
        rate: float,
        pace: Pace | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: Iterable[float] = BACKOFF,
        secrets: Iterable[str] = (),
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_wait: OnWait | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be above 0")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.platform = platform
        self.base_url = base_url.rstrip("/")
        self.on_wait = on_wait
        self._origin = _origin(self.base_url)
        self._interval = 1.0 / rate
        self._pace = pace
        self._attempts = attempts
        self._backoff = tuple(backoff) or (1.0,)
        self._secrets = tuple(s for s in secrets if s)
        self._sleep = sleep
        self._clock = clock
        self._next_at = 0.0
        # trust_env=False: no proxy or .netrc from the environment sees the credentials
        self._client = httpx.Client(
            headers=dict(headers),
            transport=transport,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def url(self, target: str) -> str:
        """``target`` (a path, or a full URL the API gave) as a URL on the API's origin."""
        if target.startswith(("http://", "https://")):
            if _origin(target) != self._origin:
                raise PlatformApiError(
                    self.platform, _shown(target), "a link to another host: not followed"
                )
            return target
        return self.base_url + target

    def get(self, target: str, params: Mapping[str, str] | None = None) -> httpx.Response:
        """The 2xx answer to ``GET target``; ``PlatformApiError`` when none came."""
        url = self.url(target)
        request = self._client.build_request("GET", url, params=params)
        shown = _shown(str(request.url))
        reason = "no attempt"
        for attempt in range(self._attempts):
            self._wait_turn()
            try:
                response = self._client.send(request)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__} (no answer)"
                wait = self._backoff_for(attempt)
            else:
                self._after(response)
                status = response.status_code
                if 200 <= status < 300:
                    return response
                if status not in (408, 429) and status < 500:
                    meaning = _MEANING.get(status, "an answer no retry changes")
                    raise PlatformApiError(
                        self.platform, shown, f"HTTP {status}, {meaning}: {self._text(response)}"
                    )
                reason = f"HTTP {status}: {self._text(response)}"
                asked = retry_after(response.headers)
                if asked is None and status == 429 and self._pace is not None:
                    asked = self._pace(response.headers) or None
                wait = min(asked, MAX_WAIT) if asked is not None else self._backoff_for(attempt)
            if attempt + 1 < self._attempts:
                if self.on_wait is not None:
                    self.on_wait(wait, reason)
                self._sleep(wait)
        raise PlatformApiError(self.platform, shown, f"{reason} (after {self._attempts} tries)")

    def _wait_turn(self) -> None:
        delay = self._next_at - self._clock()
        if delay > 0:
            self._sleep(delay)
        self._next_at = self._clock() + self._interval

    def _after(self, response: httpx.Response) -> None:
        """Push the next request back as far as the answer's rate-limit headers ask."""
        if self._pace is None:
            return
        extra = self._pace(response.headers)
        if extra > 0:
            if extra >= 1.0 and self.on_wait is not None:
                self.on_wait(extra, "the API's rate limit is near")
            self._next_at = max(self._next_at, self._clock() + extra)

    def _backoff_for(self, attempt: int) -> float:
        base = self._backoff[min(attempt, len(self._backoff) - 1)]
        return base * random.uniform(0.8, 1.2)

    def _text(self, response: httpx.Response) -> str:
        text = " ".join(response.text[:200].split())
        for secret in self._secrets:
            text = text.replace(secret, "****")
        return text or "(empty answer)"


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _shown(url: str) -> str:
    """The path and query of ``url``: what a message names (no host, no credentials)."""
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
