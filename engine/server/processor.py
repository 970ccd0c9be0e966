"""Turn stored webhooks into stored events: the step between intake and dispatch.

The server runs it after each accepted webhook (and on start, for whatever a crash
left unprocessed); ``hookmap replay`` runs it over stored webhooks with the current
rules, and ``hookmap backfill`` over the historical orders it stores (both a page at a
time: ``process_page``). Either way the outcome lands in one transaction, and nothing
here raises for a bad webhook: every failure is recorded against it, to be seen and
replayed.

A failed lookup (the platform's API down, a 404 until the order exists) is not the
webhook's fault: the webhook stays 'received' and is processed again after the next
delay of ``LOOKUP_SCHEDULE``; once the schedule is used up it is 'failed' with the
lookup's error, for an operator to replay after fixing the cause.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager

from engine.errors import LookupFailed, PayloadError
from engine.lookups import Fetcher
from engine.pipeline import process
from engine.results import EventResult, Result
from engine.rules.model import RuleSet
from engine.server.store.base import Store
from engine.server.store.rows import NewEvent, RecordStats, StoredWebhook
from engine.webhook import Webhook

log = logging.getLogger("hookmap.processor")

#: delays before processing again a webhook whose lookup failed: about 16 h in all
LOOKUP_SCHEDULE: tuple[float, ...] = (30, 120, 600, 1800, 3600, 7200, 4 * 3600, 8 * 3600)


def as_webhook(stored: StoredWebhook) -> Webhook:
    """The ``Webhook`` that ``engine.pipeline.process`` takes, from a stored one."""
    return Webhook(stored.body, dict(stored.headers), origin=stored.origin)


def new_events(result: Result) -> list[NewEvent]:
    """The events of a pipeline ``Result``, as the store's ``record_result`` takes them."""
    return [
        NewEvent(
            e.rule,
            e.index,
            e.event_type,
            result.api_version,
            e.body,
            [p.as_dict() for p in e.problems],
            e.ok and e.body is not None,
            e.contact_request,
            e.wire if e.body is not None else None,
            _change_of(e),
        )
        for e in result.events
        if e.held is None  # held back: nothing is stored, nothing is sent
    ]


def _change_of(event: EventResult) -> tuple[str, str, float] | None:
    change = event.change
    if change is None or not event.ok:
        return None
    return change.entity, change.fingerprint, change.expire


class StoredChanges:
    """The store's memory of the values last sent (``changes:``), for one shop."""

    def __init__(self, store: Store, shop: str) -> None:
        self._store = store
        self._shop = shop

    def last(self, entity: str) -> str | None:
        return self._store.last_change(entity, shop=self._shop)


@dataclasses.dataclass(frozen=True)
class Processed:
    webhook_id: int
    source: str
    result: Result | None
    error: str | None
    stats: RecordStats
    #: when a lookup failed and the webhook will be processed again (None otherwise)
    deferred_until: float | None = None

    @property
    def state(self) -> str:
        """'processed', 'deferred' (a lookup failed; tried again later) or 'failed'."""
        if self.deferred_until is not None:
            return "deferred"
        return "failed" if self.error else "processed"


def process_stored(
    store: Store,
    rulesets: Mapping[tuple[str, str], RuleSet],
    webhook: StoredWebhook,
    *,
    fetcher: Fetcher | None = None,
    replay: bool = False,
    force: bool = False,
    schedule: Sequence[float] = LOOKUP_SCHEDULE,
    clock: Callable[[], float] = time.time,
) -> Processed:
    """Run one stored webhook through the rules and record the outcome.

    ``fetcher`` answers the rule set's lookups; when one fails the webhook is put off
    by the next delay of ``schedule`` (keyed on its ``process_attempts``), or failed
    when the schedule is used up. A replay starts the schedule afresh: the operator
    asked for this attempt.
    """
    ruleset = rulesets.get((webhook.source, webhook.shop))
    result: Result | None = None
    error: str | None = None
    if ruleset is None:
        error = (
            f"no rule set named '{webhook.source}' is loaded"
            if not webhook.shop
            else f"no rule set '{webhook.source}' is loaded for shop '{webhook.shop}'"
        )
    else:
        try:
            changes = StoredChanges(store, webhook.shop)
            result = process(ruleset, as_webhook(webhook), fetcher=fetcher, changes=changes)
        except LookupFailed as exc:
            return _lookup_failed(store, webhook, exc, replay, schedule, clock)
        except PayloadError as exc:
            error = str(exc)
        except Exception as exc:  # a rule or engine bug: keep the webhook, say what broke
            log.exception("processing webhook %s failed", webhook.id)
            error = f"processing failed: {type(exc).__name__}: {exc}"
    if result is None:
        stats = store.record_result(webhook.id, None, None, [], error, replay=replay, force=force)
    else:
        stats = store.record_result(
            webhook.id,
            result.topic,
            result.summary(),
            new_events(result),
            replay=replay,
            force=force,
        )
    return Processed(webhook.id, webhook.source, result, error, stats)


def _lookup_failed(
    store: Store,
    webhook: StoredWebhook,
    exc: LookupFailed,
    replay: bool,
    schedule: Sequence[float],
    clock: Callable[[], float],
) -> Processed:
    """Put the webhook off until the next delay of ``schedule``, or fail it when none is left.

    The error is the lookup's name, URL and reason; a lookup URL holds no secret (tokens
    go in its headers, which no message includes).
    """
    attempt = 0 if replay else webhook.process_attempts
    nothing = RecordStats(0, 0)
    if attempt >= len(schedule):
        error = f"{exc} (gave up after {attempt + 1} attempts)"
        store.fail_webhook(webhook.id, error)
        return Processed(webhook.id, webhook.source, None, error, nothing)
    next_at = clock() + schedule[attempt]
    due = datetime.datetime.fromtimestamp(next_at, datetime.UTC).isoformat(timespec="seconds")
    error = f"{exc} (attempt {attempt + 1} of {len(schedule) + 1}; processed again at {due})"
    store.defer_webhook(webhook.id, error, next_at, restart=replay)
    return Processed(webhook.id, webhook.source, None, error, nothing, next_at)


@dataclasses.dataclass
class Totals:
    """What processing a run of webhooks did, added up (replay and backfill print it)."""

    webhooks: int = 0
    #: events stored for the first time; existing ones refreshed (a replay)
    inserted: int = 0
    requeued: int = 0
    #: events the checks stopped (stored as 'invalid', never sent)
    invalid: int = 0
    #: webhooks whose processing failed, or waits for a lookup to answer
    failed: int = 0

    def add(self, done: Processed) -> None:
        self.webhooks += 1
        self.inserted += done.stats.inserted
        self.requeued += done.stats.requeued
        if done.state != "processed":
            self.failed += 1
        elif done.result is not None:
            self.invalid += sum(
                1 for e in done.result.events if e.held is None and not (e.ok and e.body)
            )


def page_transaction(
    store: Store, rulesets: Iterable[RuleSet | None]
) -> AbstractContextManager[None]:
    """One transaction for a page of webhooks: one commit and one sync instead of one per
    webhook (each webhook's result is still all or nothing, and an interrupted run keeps
    what it finished). Not when a rule set among them makes lookups: the batch holds the
    write lock, and a slow API would hold up a running server's intake with it."""
    if any(r is not None and r.lookups for r in rulesets):
        return contextlib.nullcontext()
    return store.batch()


def process_page(
    store: Store,
    rulesets: Mapping[tuple[str, str], RuleSet],
    page: Sequence[StoredWebhook],
    *,
    fetcher: Fetcher | None = None,
    replay: bool = False,
    force: bool = False,
    each: Callable[[Processed], None] | None = None,
) -> Totals:
    """``process_stored`` for each webhook of ``page`` (call it inside ``page_transaction``);
    ``each`` is told of every one as it is done (a progress bar)."""
    totals = Totals()
    for webhook in page:
        done = process_stored(store, rulesets, webhook, fetcher=fetcher, replay=replay, force=force)
        totals.add(done)
        if each is not None:
            each(done)
    return totals
