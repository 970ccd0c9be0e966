"""What a platform's backfill client gives, whatever the platform: pages of orders, each
order as the webhook the platform would have sent for it, and the variables it reads.

A historical order becomes a webhook of the topic the rule set maps (``Platform.topic``
unless the operator names another), with the headers the platform's own webhooks carry,
so the shipped rules read it as they read a live one. Its delivery id is
``backfill:{platform}:{order id}:{topic}``: the store keeps one webhook per delivery id and
the ledger one event per (webhook, rule, index), so running a backfill again, or over an
overlapping window, stores and sends nothing it stored before.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from engine.errors import UsageError

#: where a run continues: a platform's own small JSON object (``{"since_id": 42}``)
Position = dict[str, Any]
#: the header every backfilled webhook carries, so it can be told from a live one
BACKFILL_HEADER = "X-Hookmap-Backfill"
#: hosts a credential may be sent to over plain HTTP (a local stand-in of the API)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def delivery_id(platform: str, order_id: str, topic: str) -> str:
    """The delivery id of a backfilled order: the same for the same order and topic."""
    return f"backfill:{platform}:{order_id}:{topic}"


def order_body(order: Mapping[str, Any]) -> bytes:
    """An order as a webhook body: the API's JSON object, written back as compact JSON."""
    return json.dumps(order, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclasses.dataclass(frozen=True)
class Window:
    """Orders created from ``since`` (inclusive) until ``until`` (None: until now)."""

    since: datetime.datetime
    until: datetime.datetime | None = None

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or (self.until and self.until.tzinfo is None):
            raise ValueError("a window's moments carry their offset")
        if self.until is not None and self.until <= self.since:
            raise UsageError("--until must be later than --since")

    def utc(self, moment: datetime.datetime) -> str:
        """``2025-01-01T00:00:00`` in UTC, without an offset."""
        return moment.astimezone(datetime.UTC).replace(tzinfo=None).isoformat(timespec="seconds")

    def key(self) -> str:
        """The window in a cursor's key: both ends in UTC."""
        return f"{self.utc(self.since)}..{self.utc(self.until) if self.until else ''}"


@dataclasses.dataclass(frozen=True)
class Page:
    """One answer of a platform's order listing."""

    #: 1 for the first page a run fetches
    number: int
    orders: tuple[Mapping[str, Any], ...]
    #: where a run continues once every order of this page is stored
    position: Position
    #: where a run continues to fetch this page again (stopped part way through it)
    again: Position
    #: orders in the window, when the answer says (WooCommerce's ``X-WP-Total``)
    total: int | None = None


def by_min_id(
    position: Position | None,
    page_size: int,
    fetch: Callable[[int], Sequence[Mapping[str, Any]]],
    id_key: str = "id",
) -> Iterator[Page]:
    """Pages of a listing sorted by id and asked for from an id on (``fetch(min_id)``:
    at most ``page_size`` orders whose ``id_key`` is ``min_id`` or more): an order
    deleted or added meanwhile cannot shift a page, and a run goes on after the last id
    it stored. The listing ends at the first page shorter than ``page_size``."""
    min_id = int((position or {}).get("min_id", 1))
    number = 0
    while True:
        orders = fetch(min_id)
        after = max([min_id - 1, *(int(o[id_key]) for o in orders)]) + 1
        number += 1
        yield Page(number, tuple(orders), {"min_id": after}, {"min_id": min_id})
        if len(orders) < page_size:
            return
        min_id = after


@dataclasses.dataclass(frozen=True)
class Synthesized:
    """A historical order as the webhook its platform would have sent for it."""

    order_id: str
    headers: dict[str, str]
    body: bytes
    delivery_id: str


@dataclasses.dataclass(frozen=True)
class Variable:
    """An environment variable a platform's client reads (a shop's own, in a shops file)."""

    name: str
    meaning: str
    required: bool = True
    #: its value is a credential: never printed, masked in what an API answers
    secret: bool = False


class Platform(Protocol):
    """One platform's order listing, for one shop and one window."""

    #: the platform, as in ``--platform`` and delivery ids
    name: str
    #: orders fetched per request
    page_size: int

    def count(self) -> int | None:
        """Orders in the window, when the API can tell in one request (None otherwise)."""

    def pages(self, position: Position | None) -> Iterator[Page]:
        """The orders of the window, page by page, from ``position`` (None: the start)."""

    def webhook(self, order: Mapping[str, Any], topic: str) -> Synthesized:
        """``order`` as the webhook of ``topic`` the platform would have sent."""

    def close(self) -> None:
        """Close its HTTP connections."""


def read_variables(
    variables: tuple[Variable, ...], env: Mapping[str, str], where: str
) -> dict[str, str]:
    """The values of ``variables`` in ``env``; ``UsageError`` naming every required one that
    is unset (``where``: whose they are, e.g. "shop 'acme'")."""
    values = {v.name: env[v.name] for v in variables if env.get(v.name)}
    missing = [v for v in variables if v.required and v.name not in values]
    if missing:
        raise UsageError(
            f"{where}: not set: " + "; ".join(f"{v.name} ({v.meaning})" for v in missing)
        )
    return values


def site_url(value: str, variable: str) -> str:
    """A shop's base URL from a variable: ``https://`` added to a bare host; plain HTTP
    refused but for loopback (credentials would cross the network readable)."""
    text = value.strip().rstrip("/")
    if "://" not in text:
        text = f"https://{text}"
    parts = urllib.parse.urlsplit(text)
    if parts.username or parts.password:  # checked first: the value is not echoed then
        raise UsageError(f"{variable}: put credentials in their own variables, not the URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{variable}: {value!r} is not a URL or host name")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise UsageError(
            f"{variable}: {parts.scheme}://{parts.hostname}: the API is read over HTTPS only "
            "(plain HTTP is allowed on loopback, for a local stand-in)"
        )
    return text
