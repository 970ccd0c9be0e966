"""The server and operator commands: serve, sandbox, status, webhooks, events, show, retry,
replay. They read the same data folder as the running server."""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterable, Mapping

import click

from engine.cli.inputs import parse_since, when
from engine.cli.options import (
    Sender,
    data_option,
    load_tenancy,
    open_store,
    rules_option,
    shop_option,
    shops_option,
)
from engine.errors import LookupFailed, UsageError
from engine.lookups import HttpFetcher
from engine.pipeline import process
from engine.rules.model import RuleSet
from engine.server.processor import as_webhook, new_events, page_transaction, process_page
from engine.server.store.base import Store
from engine.server.store.rows import StoredWebhook

#: header names whose values are credentials or signatures: never shown
_SECRET_HEADER = re.compile(
    r"signature|hmac|authorization|token|secret|cookie|api-key", re.IGNORECASE
)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def mask_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers with credential and signature values replaced."""
    return {k: ("****" if _SECRET_HEADER.search(k) else v) for k, v in headers.items()}


@click.command("status")
@data_option
@shop_option
@click.option("--json", "as_json", is_flag=True)
def status_command(data_dir: str, shop: str | None, as_json: bool) -> None:
    """Counts of webhooks and events by state, and the oldest pending work."""
    with open_store(data_dir) as store:
        counts = store.counts(shop=shop)
        oldest = store.oldest_pending()
        running, stopped = store.servers()
    if as_json:
        click.echo(
            json.dumps(
                {
                    **counts,
                    "oldest_pending_webhook_seconds": oldest.webhook_age,
                    "oldest_pending_event_seconds": oldest.event_age,
                    "servers": {
                        "running": [{"id": i, "pid": pid} for i, pid in running],
                        "stopped_without_finishing": stopped,
                    },
                },
                indent=2,
            )
        )
        return
    for table, states in counts.items():
        click.echo(f"{table}: " + ", ".join(f"{s} {n}" for s, n in states.items()))
    click.echo(
        f"oldest unprocessed webhook: {age(oldest.webhook_age)}; "
        f"oldest unsent event: {age(oldest.event_age)}"
    )
    pids = ", ".join(pid for _, pid in running)
    line = f"servers: {len(running)} running (pid {pids})" if running else "servers: none"
    if stopped:
        line += (
            f"; {len(stopped)} stopped without finishing (what they were sending is "
            "sent again when a server starts)"
        )
    click.echo(line)


@click.command("webhooks")
@data_option
@click.option("--state", type=click.Choice(["received", "processed", "failed"]))
@click.option("--source")
@shop_option
@click.option("--limit", default=50, show_default=True, type=int)
def webhooks_command(
    data_dir: str, state: str | None, source: str | None, shop: str | None, limit: int
) -> None:
    """The latest stored webhooks."""
    with open_store(data_dir) as store:
        rows = store.list_webhooks(state, source, limit, shop=shop)
    for w in rows:
        origin = f"{w.source}/{w.shop}" if w.shop else w.source
        click.echo(
            f"#{w.id:<6} {when(w.received_at)} {origin:<12} {w.state:<9} "
            f"{w.topic or '-':<24} {w.error or w.summary or ''}"
        )
    click.echo(f"{len(rows)} webhook(s)")


@click.command("events")
@data_option
@click.option("--state", type=click.Choice(["pending", "sent", "dead", "invalid"]))
@shop_option
@click.option("--limit", default=50, show_default=True, type=int)
def events_command(data_dir: str, state: str | None, shop: str | None, limit: int) -> None:
    """The latest events (dead: the status and response that stopped them)."""
    with open_store(data_dir) as store:
        rows = store.list_events(state, limit, shop=shop)
    for e in rows:
        extra = e.last_error or ""
        if e.state == "invalid":
            extra = "; ".join(
                f"{p.get('code')} {p.get('param') or ''}".strip()
                for p in e.problems
                if p.get("severity") == "error"
            )
        for_shop = f"shop {e.shop} " if e.shop else ""
        click.echo(
            f"#{e.id:<6} webhook #{e.webhook_id:<6} {for_shop}{e.event_type:<16} "
            f"{e.state:<8} attempts {e.attempts} {extra}"
        )
    click.echo(f"{len(rows)} event(s)")


@click.command("show")
@data_option
@click.argument("webhook_id", type=int)
def show_command(data_dir: str, webhook_id: int) -> None:
    """One webhook: raw body, headers (secrets masked), its events and every attempt."""
    with open_store(data_dir) as store:
        detail = store.get_webhook(webhook_id)
    if detail is None:
        raise UsageError(f"no webhook #{webhook_id}")
    w = detail.webhook
    origin = f"{w.source} (shop {w.shop})" if w.shop else w.source
    click.echo(
        f"webhook #{w.id} from {origin}, received {when(w.received_at)}, "
        f"state {w.state}, topic {w.topic or '-'}, delivery id {w.delivery_id or '-'}"
    )
    if w.error:
        click.echo(f"error: {w.error}")
    if w.summary:
        click.echo(f"summary: {w.summary}")
    click.echo("headers:")
    for name, value in sorted(mask_headers(w.headers).items()):
        click.echo(f"  {name}: {value}")
    click.echo(f"body ({len(w.body)} bytes):")
    click.echo(w.body.decode("utf-8", errors="replace"))
    for e in detail.events:
        click.echo(
            f"event #{e.id} {e.rule}[{e.idx}] {e.event_type}: {e.state}, {e.attempts} attempt(s)"
        )
        if e.body:
            click.echo(f"  body: {e.body}")
        for p in e.problems:
            click.echo(
                f"  {p.get('severity')}[{p.get('code')}] {p.get('param') or ''}: {p.get('message')}"
            )
        for a in detail.attempts:
            if a.event_id == e.id:
                result = f"HTTP {a.status}" if a.status else (a.error or "no answer")
                click.echo(
                    f"  attempt {when(a.started_at)} {a.duration_ms:.0f} ms "
                    f"{result} -> {a.outcome}" + (f": {a.response[:200]}" if a.response else "")
                )
                if a.status and a.error:  # what the answer asked for (Retry-After)
                    click.echo(f"    {a.error}")


@click.command("retry")
@data_option
@click.argument("event_id", type=int, required=False)
@click.option("--dead", "all_dead", is_flag=True, help="Re-queue every dead event.")
@shop_option
def retry_command(data_dir: str, event_id: int | None, all_dead: bool, shop: str | None) -> None:
    """Put a dead event (or all of them, of one shop with --shop) back in the queue."""
    if (event_id is None) == (not all_dead):
        raise UsageError("give an event id or --dead (one of them)")
    with open_store(data_dir) as store:
        count = store.retry_dead(shop=shop) if all_dead else store.retry(event_id or 0)
    if not all_dead and count == 0:
        raise UsageError(f"event #{event_id} is not dead (or does not exist)")
    click.echo(f"{count} event(s) re-queued; a running server sends them")


@click.command("replay")
@data_option
@rules_option
@click.option("--webhook", "webhook_id", type=int, help="Replay one webhook.")
@click.option("--since", help="Replay webhooks received since (2h, 1d, ISO date-time).")
@click.option("--source", help="Only webhooks of this source (with --since).")
@shop_option
@shops_option
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--force", is_flag=True, help="Also send again events the CDP accepted.")
@click.option("--no-send", is_flag=True, help="Queue the events; let the server send.")
def replay_command(
    data_dir: str,
    rules_paths: tuple[str, ...],
    webhook_id: int | None,
    since: str | None,
    source: str | None,
    shop: str | None,
    shops_path: str | None,
    dry_run: bool,
    force: bool,
    no_send: bool,
) -> None:
    """Re-run stored raw webhooks through the current rules; send only what is new.

    Events the CDP accepted are not sent again unless --force says so.
    """
    if (webhook_id is None) == (since is None):
        raise UsageError("give --webhook ID or --since TIME (one of them)")
    tenancy = load_tenancy(rules_paths, shops_path)
    rulesets = tenancy.rulesets
    with open_store(data_dir) as store:
        pages: Iterable[list[StoredWebhook]]
        if webhook_id is not None:
            detail = store.get_webhook(webhook_id)
            if detail is None:
                raise UsageError(f"no webhook #{webhook_id}")
            pages, total = [[detail.webhook]], 1
        else:
            when = parse_since(since or "")
            total = store.count_webhooks_since(when, source=source, shop=shop)
            pages = store.iter_webhooks_since(when, source=source, shop=shop)
        if dry_run:
            for page in pages:
                _replay_preview(store, rulesets, page)
            return

        inserted = requeued = replayed = 0
        with (
            contextlib.closing(HttpFetcher()) as fetcher,
            click.progressbar(
                length=total, label="replaying", file=sys.stderr, show_pos=True
            ) as bar,
        ):
            for page in pages:
                found = [rulesets.get((w.source, w.shop)) for w in page]
                with page_transaction(store, found):
                    totals = process_page(
                        store,
                        rulesets,
                        page,
                        fetcher=fetcher,
                        replay=True,
                        force=force,
                        each=lambda _done: bar.update(1),
                    )
                inserted += totals.inserted
                requeued += totals.requeued
                replayed += totals.webhooks
        click.echo(f"{replayed} webhook(s) replayed: {inserted} new event(s), {requeued} re-queued")
        if no_send or not (inserted or requeued):
            return
        with Sender(store, tenancy) as sender:
            outcomes = sender.send()
        click.echo(
            "sent: " + (", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "nothing due")
        )


def _replay_preview(
    store: Store, rulesets: Mapping[tuple[str, str], RuleSet], targets: list[StoredWebhook]
) -> None:
    fetcher = HttpFetcher()  # a preview reads lookups too; it writes nothing
    for webhook in targets:
        ruleset = rulesets.get((webhook.source, webhook.shop))
        if ruleset is None:
            shop = f" for shop '{webhook.shop}'" if webhook.shop else ""
            click.echo(f"#{webhook.id}: no rule set '{webhook.source}'{shop}")
            continue
        detail = store.get_webhook(webhook.id)
        existing = {(e.rule, e.idx): e.state for e in detail.events} if detail else {}
        try:
            result = process(ruleset, as_webhook(webhook), fetcher=fetcher)
        except (UsageError, LookupFailed) as exc:
            click.echo(f"#{webhook.id}: {exc}")
            continue
        for event in new_events(result):
            state = existing.get((event.rule, event.idx))
            action = (
                "new"
                if state is None
                else "unchanged (sent)"
                if state == "sent"
                else "unchanged (pending)"
                if state == "pending"
                else f"refresh ({state})"
            )
            verdict = "valid" if event.valid else "invalid"
            click.echo(
                f"#{webhook.id} {event.rule}[{event.idx}] {event.event_type}: {verdict}, {action}"
            )
