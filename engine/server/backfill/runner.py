"""Running a backfill: pages of historical orders → stored webhooks → events, resumably.

For each page the platform's client gives, every order becomes the webhook of the
chosen topic (``Platform.webhook``) and is stored with its deterministic delivery id,
then processed by the same processor as a live webhook, in one transaction per page
when the rule set makes no lookups (``processor.page_transaction``). An order stored by
an earlier run (or an earlier window) is a duplicate: nothing is stored, and it is
processed only if that run stopped before processing it. Then the cursor moves past the
page, and ``send`` (the dispatcher's drain) sends what the page made, so an interrupted
run leaves at most one page unsent, which the next run or a running server sends.

``preview`` is the dry run: the same pages and webhooks through ``pipeline.process``,
with nothing stored, sent or saved.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from engine.errors import LookupFailed, PayloadError, PlatformApiError
from engine.lookups import Fetcher
from engine.pipeline import process
from engine.rules.model import RuleSet
from engine.server.backfill.cursor import CursorFile, Saved
from engine.server.backfill.source import Page, Platform, Position, Synthesized, Window
from engine.server.processor import Totals, page_transaction, process_page
from engine.server.store.base import Store
from engine.server.store.rows import StoredWebhook
from engine.webhook import Webhook


@dataclasses.dataclass(frozen=True)
class Job:
    """One backfill: a shop's orders in a window, through a rule set, as one topic."""

    ruleset: RuleSet
    shop: str
    platform: Platform
    topic: str
    window: Window

    @property
    def source(self) -> str:
        return self.ruleset.name

    @property
    def key(self) -> str:
        """What names the backfill's cursor: another window or topic is another backfill."""
        return "|".join((self.source, self.shop, self.platform.name, self.topic, self.window.key()))

    def webhook(self, order: Mapping[str, Any]) -> Synthesized:
        """``order`` as its platform's webhook, the topic also where the rule set reads it."""
        made = self.platform.webhook(order, self.topic)
        header = self.ruleset.topic_header
        if header and header.lower() not in {k.lower() for k in made.headers}:
            made.headers[header] = self.topic
        return made


@dataclasses.dataclass
class Tally:
    """What a run did so far."""

    pages: int = 0
    #: orders fetched and gone through (stored now, or found stored)
    orders: int = 0
    stored: int = 0
    duplicates: int = 0
    #: events stored for the first time; events the checks stopped; webhooks whose
    #: processing failed or waits for a lookup
    events: int = 0
    invalid: int = 0
    failed: int = 0

    def add(self, totals: Totals) -> None:
        self.events += totals.inserted
        self.invalid += totals.invalid
        self.failed += totals.failed


@dataclasses.dataclass
class Outcome:
    """How a run ended, and everything a summary says."""

    tally: Tally
    sent: Counter[str]
    #: orders in the window, when the platform says
    total: int | None
    #: the cursor the run started from (None: from the start)
    resumed: Saved | None
    #: the cursor as the run left it
    saved: Saved | None = None
    #: the listing was read to its end (not stopped by --limit or an error)
    finished: bool = False
    #: why the run stopped early (the platform's API failed), None otherwise
    error: PlatformApiError | None = None
    #: stopped by Ctrl-C (the pages done are kept, and so is the cursor)
    interrupted: bool = False
    started: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def earlier(self) -> int:
        """Orders the runs before this one went through."""
        return self.resumed.orders if self.resumed else 0


#: ``on_page(outcome)``: told after each page is stored, processed and sent
OnPage = Callable[[Outcome], None]
#: ``send()``: send what is due; the attempts' outcomes (sent / retry / dead)
Send = Callable[[], Mapping[str, int]]


def run(
    store: Store,
    job: Job,
    cursor: CursorFile,
    *,
    fetcher: Fetcher | None = None,
    restart: bool = False,
    limit: int | None = None,
    send: Send | None = None,
    on_page: OnPage | None = None,
) -> Outcome:
    """Backfill ``job`` into ``store`` from its cursor (``restart``: from the start), for at
    most ``limit`` newly stored orders. The platform's API failing ends the run with
    ``Outcome.error`` set (Ctrl-C: ``interrupted``), the cursor at the last page done."""
    resumed = None if restart else cursor.load()
    outcome = Outcome(Tally(), Counter(), None, resumed, resumed)
    position: Position | None = resumed.position if resumed else None
    rulesets = {(job.source, job.shop): job.ruleset}
    try:
        outcome.total = job.platform.count()
        for page in job.platform.pages(position):
            if outcome.total is None:
                outcome.total = page.total
            left = None if limit is None else limit - outcome.tally.stored
            done = _store_page(store, job, rulesets, page, fetcher, outcome.tally, left)
            outcome.tally.pages += 1
            whole = done == len(page.orders)
            at_end = whole and _last(page, job.platform)
            position = page.position if whole else page.again
            outcome.saved = cursor.save(
                position, outcome.earlier + outcome.tally.orders, _pages(outcome), at_end
            )
            if send is not None:
                outcome.sent.update(send())
            if on_page is not None:
                on_page(outcome)
            if not whole or (limit is not None and outcome.tally.stored >= limit):
                return outcome
        outcome.finished = True
        if outcome.saved is not None and not outcome.saved.finished:
            outcome.saved = cursor.save(
                position or {}, outcome.saved.orders, outcome.saved.pages, True
            )
    except PlatformApiError as exc:
        outcome.error = exc
    except KeyboardInterrupt:
        outcome.interrupted = True
    return outcome


def _pages(outcome: Outcome) -> int:
    return (outcome.resumed.pages if outcome.resumed else 0) + outcome.tally.pages


def _last(page: Page, platform: Platform) -> bool:
    return len(page.orders) < platform.page_size


def _store_page(
    store: Store,
    job: Job,
    rulesets: Mapping[tuple[str, str], RuleSet],
    page: Page,
    fetcher: Fetcher | None,
    tally: Tally,
    left: int | None,
) -> int:
    """Store and process the page's orders (all, or until ``left`` are newly stored);
    how many orders of the page were gone through."""
    todo: list[StoredWebhook] = []
    done = 0
    with page_transaction(store, [job.ruleset]):
        for order in page.orders:
            if left is not None and left <= 0:
                break
            made = job.webhook(order)
            added = store.add_webhook(
                job.source, made.headers, made.body, made.delivery_id, shop=job.shop
            )
            done += 1
            tally.orders += 1
            if added.duplicate:
                tally.duplicates += 1
                # stored by a run that stopped before processing it: process it now
                detail = store.get_webhook(added.id)
                if detail is not None and detail.webhook.state == "received":
                    todo.append(detail.webhook)
                continue
            tally.stored += 1
            if left is not None:
                left -= 1
            todo.append(_stored(added.id, job, made))
        tally.add(process_page(store, rulesets, todo, fetcher=fetcher))
    return done


def _stored(webhook_id: int, job: Job, made: Synthesized) -> StoredWebhook:
    """The webhook just stored, as the store would give it back (not read again)."""
    return StoredWebhook(
        id=webhook_id,
        source=job.source,
        received_at=time.time(),
        headers={k.lower(): v for k, v in made.headers.items()},
        body=made.body,
        delivery_id=made.delivery_id,
        topic=None,
        state="received",
        summary=None,
        error=None,
        processed_at=None,
        shop=job.shop,
    )


#: events a dry run shows in full unless told
SHOWN = 3


@dataclasses.dataclass(frozen=True)
class PreviewEvent:
    """One event a dry run made: what a run would store (and send, when valid)."""

    order_id: str
    rule: str
    event_type: str
    valid: bool
    body: Mapping[str, Any] | None
    problems: tuple[str, ...]


@dataclasses.dataclass
class Preview:
    """What a run would do: the counts, and the first events in full."""

    tally: Tally = dataclasses.field(default_factory=Tally)
    total: int | None = None
    resumed: Saved | None = None
    first: list[PreviewEvent] = dataclasses.field(default_factory=list)
    #: why an order would fail (first few), and the platform's error if it stopped
    failures: list[str] = dataclasses.field(default_factory=list)
    error: PlatformApiError | None = None
    finished: bool = False


def preview(
    job: Job,
    cursor: CursorFile,
    *,
    fetcher: Fetcher | None = None,
    restart: bool = False,
    limit: int | None = None,
    show: int = SHOWN,
    on_page: Callable[[Preview], None] | None = None,
) -> Preview:
    """Fetch what a run would, and show what it would store and send; write nothing."""
    resumed = None if restart else cursor.load()
    out = Preview(resumed=resumed)
    try:
        out.total = job.platform.count()
        for page in job.platform.pages(resumed.position if resumed else None):
            out.total = out.total if out.total is not None else page.total
            out.tally.pages += 1
            for order in page.orders:
                if limit is not None and out.tally.orders >= limit:
                    return out
                out.tally.orders += 1
                _preview_order(job, job.webhook(order), fetcher, out, show)
            if on_page is not None:
                on_page(out)
        out.finished = True
    except PlatformApiError as exc:
        out.error = exc
    return out


def _preview_order(
    job: Job, made: Synthesized, fetcher: Fetcher | None, out: Preview, show: int
) -> None:
    webhook = Webhook.make(made.body, made.headers, origin=f"order {made.order_id}")
    try:
        result = process(job.ruleset, webhook, fetcher=fetcher)
    except (PayloadError, LookupFailed) as exc:
        out.tally.failed += 1
        if len(out.failures) < show:
            out.failures.append(f"order {made.order_id}: {exc}")
        return
    for event in result.events:
        if event.held is not None:
            continue
        valid = event.ok and event.body is not None
        out.tally.events += 1
        out.tally.invalid += not valid
        if len(out.first) < show:
            problems = tuple(
                f"{p.severity}[{p.code}] {p.param or ''}: {p.message}" for p in event.problems
            )
            out.first.append(
                PreviewEvent(
                    made.order_id, event.rule, event.event_type, valid, event.body, problems
                )
            )
