"""What the store holds and hands out: rows as frozen records, and the states they pass.

``engine.server.store.sqlite`` (and any other store) takes ``NewEvent`` and gives back
these; nothing here touches a database.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

WEBHOOK_STATES = ("received", "processed", "failed")
EVENT_STATES = ("pending", "sent", "dead", "invalid")

Outcome = Literal["sent", "retry", "dead"]
OUTCOMES: tuple[Outcome, ...] = ("sent", "retry", "dead")
#: how much of a response body an attempt keeps
RESPONSE_LIMIT = 2000


@dataclasses.dataclass(frozen=True)
class StoredWebhook:
    """A webhook as stored: the raw body and lower-cased headers exactly as received."""

    id: int
    source: str
    received_at: float
    headers: dict[str, str]
    body: bytes
    delivery_id: str | None
    topic: str | None
    state: str
    summary: str | None
    error: str | None
    processed_at: float | None
    #: times processing was tried and put off (a lookup failed)
    process_attempts: int = 0
    #: when a put-off webhook is processed again (None: as soon as possible)
    next_process_at: float | None = None
    #: the shop it came for ("" when the server serves one shop per rule set)
    shop: str = ""

    @property
    def origin(self) -> str:
        """How messages name it: ``webhook #7 (shopify)``, ``webhook #7 (shopify/acme)``."""
        where = f"{self.source}/{self.shop}" if self.shop else self.source
        return f"webhook #{self.id} ({where})"


@dataclasses.dataclass(frozen=True)
class OutboxEvent:
    """A pending event, as the dispatcher needs it to send one request."""

    id: int
    webhook_id: int
    event_type: str
    api_version: str
    #: the JSON request body, exactly as sent
    body: str
    #: attempts made so far (reset when an operator re-queues the event)
    attempts: int
    #: the v1/contact body to post first when the CDP may not know the contact yet
    contact: dict[str, Any] | None = None
    #: the shop whose CDP account it goes to ("" for the default one)
    shop: str = ""


@dataclasses.dataclass(frozen=True)
class EventRow:
    """Every column of one event (listings, ``get_webhook``)."""

    id: int
    webhook_id: int
    rule: str
    idx: int
    event_type: str
    api_version: str
    body: str | None
    state: str
    problems: list[dict[str, Any]]
    attempts: int
    next_attempt_at: float | None
    last_status: int | None
    last_error: str | None
    created_at: float
    sent_at: float | None
    contact: dict[str, Any] | None = None
    #: the server instance sending it now (engine.server.leases); None when nobody is
    leased_by: str | None = None
    shop: str = ""


@dataclasses.dataclass(frozen=True)
class AttemptRow:
    """One delivery attempt: what was sent when, and what came back."""

    id: int
    event_id: int
    started_at: float
    duration_ms: float
    status: int | None
    error: str | None
    response: str | None
    outcome: str


@dataclasses.dataclass(frozen=True)
class WebhookDetail:
    """A webhook with the events it became and every attempt to send them."""

    webhook: StoredWebhook
    events: list[EventRow]
    attempts: list[AttemptRow]


@dataclasses.dataclass(frozen=True)
class Oldest:
    """When the oldest unfinished work arrived (health checks, alerts)."""

    now: float
    #: the oldest webhook still waiting to be processed
    webhook_received_at: float | None
    #: the oldest event still waiting to be sent
    event_created_at: float | None

    @property
    def webhook_age(self) -> float | None:
        return None if self.webhook_received_at is None else self.now - self.webhook_received_at

    @property
    def event_age(self) -> float | None:
        return None if self.event_created_at is None else self.now - self.event_created_at


#: Stored webhooks with their raw bodies: from webhook_bodies, or for a row stored before
#: that table existed, from its own body column (see the store's migrations). The


@dataclasses.dataclass(frozen=True)
class AddResult:
    """The stored webhook's id; ``duplicate`` when its delivery id was already stored."""

    id: int
    duplicate: bool


@dataclasses.dataclass(frozen=True)
class NewEvent:
    """One event produced by processing a webhook, ready to store."""

    rule: str
    idx: int
    event_type: str
    api_version: str
    body: dict[str, Any] | None
    problems: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: False when the checks dropped it: stored as 'invalid', never sent
    valid: bool = True
    #: the v1/contact body the dispatcher posts before the event (new customers)
    contact: dict[str, Any] | None = None
    #: ``body`` as ``encode.body_bytes`` writes it, when already encoded (not stored twice)
    wire: bytes | None = dataclasses.field(default=None, repr=False, compare=False)
    #: ``changes:``: (entity, fingerprint, seconds to remember it) to record with the event
    change: tuple[str, str, float] | None = None

    def __post_init__(self) -> None:
        if self.valid and self.body is None:
            raise ValueError(f"event {self.rule}[{self.idx}] is valid but has no body")


@dataclasses.dataclass(frozen=True)
class RecordStats:
    """What ``record_result`` changed: events inserted, existing events re-queued."""

    inserted: int
    requeued: int
