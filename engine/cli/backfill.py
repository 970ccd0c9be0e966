"""``hookmap backfill``: a shop's past orders from its platform's API, through the same
rules, store and ledger as its webhooks (docs/backfill.md).

The command picks the rule set, the shop and its credentials, the platform and the
topic, and prints; ``engine.server.backfill`` does the work.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from engine.cli.options import (
    Sender,
    data_option,
    load_tenancy,
    open_store,
    rules_option,
    shops_option,
)
from engine.cli.progress import Progress
from engine.errors import UsageError, did_you_mean
from engine.lookups import HttpFetcher
from engine.rules.model import RuleSet
from engine.rules.shops import Shop, load_shops
from engine.server.backfill import api, runner
from engine.server.backfill.cursor import FOLDER, CursorFile
from engine.server.backfill.platforms import PLATFORMS, PlatformInfo, open_platform, platform_info
from engine.server.backfill.source import Window
from engine.server.store.location import is_database_url
from engine.server.tenants import Tenancy

_DEFAULTS = api.Options()


@click.command("backfill")
@rules_option
@click.option("--source", help="The rule set the orders go through (default: the only one).")
@click.option(
    "--platform",
    type=click.Choice(sorted(PLATFORMS)),
    help="The API to read (default: the rule set's name, when it names a platform).",
)
@click.option("--shop", help="The shop to backfill (its id in the shops file).")
@shops_option
@click.option("--since", required=True, help="Orders created from: 2025-01-01 or a date-time.")
@click.option("--until", help="Orders created before this (default: no end).")
@click.option("--topic", help="The webhook topic each order goes through (default: per platform).")
@data_option
@click.option(
    "--cursors",
    "cursor_dir",
    type=click.Path(file_okay=False),
    help=f"Folder of the cursors that let a run resume (default: <data>/{FOLDER}).",
)
@click.option("--dry-run", is_flag=True, help="Fetch and show what would be stored and sent.")
@click.option("--restart", is_flag=True, help="Ignore the cursor: fetch from the start.")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after N newly stored orders.")
@click.option("--no-send", is_flag=True, help="Store and queue the events; let the server send.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON document.")
@click.option("--page-size", type=click.IntRange(min=1), help="Orders per request.")
@click.option(
    "--api-rate",
    type=click.FloatRange(min=0.01),
    help="Requests a second to the platform (Shopify: your plan's, 2 on standard plans).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=_DEFAULTS.attempts - 1,
    show_default=True,
    help="Tries again after a 429, 5xx or network error before the run stops.",
)
@click.option(
    "--show",
    type=click.IntRange(min=0),
    default=runner.SHOWN,
    show_default=True,
    help="Events --dry-run shows in full.",
)
def backfill_command(
    rules_paths: tuple[str, ...],
    source: str | None,
    platform: str | None,
    shop: str | None,
    shops_path: str | None,
    since: str,
    until: str | None,
    topic: str | None,
    data_dir: str,
    cursor_dir: str | None,
    dry_run: bool,
    restart: bool,
    limit: int | None,
    no_send: bool,
    as_json: bool,
    page_size: int | None,
    api_rate: float | None,
    retries: int,
    show: int,
) -> None:
    """Bring a shop's order history in: page through its platform's API, feed each order
    through the rules as a webhook of one topic, store it in the ledger and send.

    Every order is stored once (a run again, or an overlapping window, stores and sends
    nothing twice); an interrupted run resumes where it stopped. Credentials come from
    the environment (docs/backfill.md names them), a shop's own through its env: in the
    shops file.
    """
    window = Window(_moment(since, "--since"), _moment(until, "--until") if until else None)
    if shops_path is None and shop is not None:
        raise UsageError("--shop needs the shops file (--shops or HOOKMAP_SHOPS)")
    if shops_path is not None and shop is None:
        raise UsageError("the shops file lists shops: name the one to backfill with --shop")
    tenancy = load_tenancy(rules_paths, shops_path, only=shop)
    ruleset = _ruleset(tenancy, source, shop or "")
    info = platform_info(platform or _platform_of(ruleset))
    topic = topic or info.topic
    _check_topic(ruleset, topic)
    progress = Progress(f"backfill {ruleset.name}" + (f"/{shop}" if shop else ""), "orders")
    options = api.Options(
        rate=api_rate,
        attempts=retries + 1,
        page_size=page_size,
        on_wait=lambda seconds, why: progress.note(f"waiting {seconds:.1f} s: {why}"),
    )
    env = _credentials(info, shops_path, shop, ruleset.name)
    client = open_platform(info, env, window, options, f"shop '{shop}'" if shop else info.name)
    job = runner.Job(ruleset, shop or "", client, topic, window)
    name = "-".join([job.source, *([shop] if shop else []), window.since.date().isoformat()])
    cursor = CursorFile.in_folder(_cursor_folder(data_dir, cursor_dir), job.key, name)
    if not (dry_run or no_send):
        destination = tenancy.destinations.get(shop or "")
        if destination is None or not destination.api_key:
            raise UsageError("no CDP API key is set (HOOKMAP_API_KEY): cannot send (--no-send)")
    head = _head(job, info, dry_run)
    if not as_json:
        click.echo(head)
    with contextlib.closing(HttpFetcher()) as fetcher, contextlib.closing(client):
        if dry_run:
            found = runner.preview(
                job,
                cursor,
                fetcher=fetcher,
                restart=restart,
                limit=limit,
                show=show,
                on_page=lambda p: progress.update(p.tally.orders, p.total),
            )
            progress.close()
            _print_preview(job, found, as_json)
            if found.error is not None:
                raise found.error
            return
        with (
            cursor.locked(),
            open_store(data_dir, must_exist=False) as store,
            contextlib.nullcontext(None) if no_send else Sender(store, tenancy) as sender,
        ):
            earlier = None if restart else cursor.load()
            progress.start_at = earlier.orders if earlier else 0
            outcome = runner.run(
                store,
                job,
                cursor,
                fetcher=fetcher,
                restart=restart,
                limit=limit,
                send=None if sender is None else sender.send,
                on_page=lambda o: progress.update(o.earlier + o.tally.orders, o.total),
            )
            if outcome.tally.pages:
                progress.update(outcome.earlier + outcome.tally.orders, outcome.total, final=True)
            progress.close()
    _print_outcome(job, outcome, cursor, no_send, as_json)
    if outcome.error is not None:
        raise outcome.error
    if outcome.interrupted:
        raise click.exceptions.Exit(130)


def _moment(text: str, option: str) -> datetime.datetime:
    """A date or date-time with its offset (a date: midnight here; none: this machine's)."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise UsageError(
            f"{option} {text!r}: a date or date-time (2025-01-01, 2025-01-01T00:00:00+02:00); "
            "the cursor is kept per window, so not a duration"
        ) from exc
    return moment if moment.tzinfo else moment.astimezone()


def _ruleset(tenancy: Tenancy, source: str | None, shop: str) -> RuleSet:
    names = sorted({name for name, s in tenancy.rulesets if s == shop})
    if source is None:
        if len(names) != 1:
            raise UsageError(f"several rule sets ({', '.join(names)}): choose one with --source")
        source = names[0]
    found = tenancy.rulesets.get((source, shop))
    if found is None:
        hint = did_you_mean(source, names)
        whose = f" for shop '{shop}'" if shop else ""
        raise UsageError(
            f"no rule set '{source}'{whose} (have: {', '.join(names) or 'none'})"
            + (f"; {hint}" if hint else "")
        )
    return found


def _platform_of(ruleset: RuleSet) -> str:
    if ruleset.name in PLATFORMS:
        return ruleset.name
    raise UsageError(
        f"rule set '{ruleset.name}' is not named after a platform: say which API to read "
        f"with --platform ({', '.join(sorted(PLATFORMS))})"
    )


def _check_topic(ruleset: RuleSet, topic: str) -> None:
    """Refuse a topic no rule makes events of: every order would be stored for nothing."""
    matched = [r for r, m in zip(ruleset.rules, ruleset.matching(topic), strict=True) if m]
    if any(r.events for r in matched):
        return
    topics = sorted({t for r in ruleset.rules if r.events for t in r.topics})
    why = "its rules ignore it" if matched else "no rule matches it"
    raise UsageError(
        f"topic '{topic}': {why} in rule set '{ruleset.name}'; topics with events: "
        + ", ".join(topics)
    )


def _credentials(
    info: PlatformInfo, shops_path: str | None, shop_id: str | None, ruleset: str
) -> Mapping[str, str]:
    """The variables the platform's client reads. A shop's own come through its ``env:``
    in the shops file; a required one it does not map is refused rather than read from
    the shared environment (that would read another shop's orders into this account)."""
    if shops_path is None or shop_id is None:
        return os.environ
    shop = _shop(shops_path, shop_id, ruleset)
    values: dict[str, str] = {}
    unmapped: list[str] = []
    for variable in info.variables:
        holder = shop.env.get(variable.name)
        if holder is None:
            if variable.required:
                unmapped.append(variable.name)
            elif variable.name in os.environ:
                values[variable.name] = os.environ[variable.name]
        elif holder in os.environ:
            values[variable.name] = os.environ[holder]
        else:
            raise UsageError(f"shop '{shop.id}': {holder} is not set (read for {variable.name})")
    if unmapped:
        raise UsageError(
            f"shop '{shop.id}': its env: in {shops_path} names no variable for "
            + ", ".join(unmapped)
            + f" (e.g. {unmapped[0]}: {shop.id.upper().replace('-', '_')}_{unmapped[0]}); "
            "a backfill reads each shop's own API credentials"
        )
    return values


def _shop(shops_path: str, shop_id: str, ruleset: str) -> Shop:
    # the file was checked whole when the tenancy was loaded: only this shop is read here
    for shop in load_shops(shops_path, [ruleset]).shops:
        if shop.id == shop_id:
            return shop
    raise UsageError(f"no shop '{shop_id}' using rule set '{ruleset}' in {shops_path}")


def _cursor_folder(data_dir: str, cursor_dir: str | None) -> Path:
    if cursor_dir is not None:
        return Path(cursor_dir)
    if is_database_url(data_dir):
        raise UsageError("with a database URL for --data, say where cursors go with --cursors")
    return Path(data_dir) / FOLDER


def _head(job: runner.Job, info: PlatformInfo, dry_run: bool) -> str:
    until = f" until {job.window.until.isoformat()}" if job.window.until else ""
    shop = f" for shop '{job.shop}'" if job.shop else ""
    what = "dry run (nothing stored, sent or saved): " if dry_run else ""
    return (
        f"{what}backfill {info.name} orders created since {job.window.since.isoformat()}"
        f"{until}{shop}, as topic {job.topic} through rule set '{job.source}'"
    )


def _summary(job: runner.Job, tally: runner.Tally, total: int | None) -> dict[str, Any]:
    return {
        "source": job.source,
        "shop": job.shop,
        "platform": job.platform.name,
        "topic": job.topic,
        "since": job.window.since.isoformat(),
        "until": job.window.until.isoformat() if job.window.until else None,
        "total": total,
        **{k: v for k, v in vars(tally).items()},
    }


def _print_outcome(
    job: runner.Job,
    outcome: runner.Outcome,
    cursor: CursorFile,
    no_send: bool,
    as_json: bool,
) -> None:
    t = outcome.tally
    if as_json:
        doc = {
            **_summary(job, t, outcome.total),
            "dry_run": False,
            "resumed": outcome.resumed.as_dict() if outcome.resumed else None,
            "sent": dict(outcome.sent),
            "finished": outcome.finished,
            "cursor": {
                "file": str(cursor.path),
                **(outcome.saved.as_dict() if outcome.saved else {}),
            },
            "error": str(outcome.error) if outcome.error else None,
            "interrupted": outcome.interrupted,
        }
        click.echo(json.dumps(doc, indent=2))
        return
    if outcome.resumed is not None:
        click.echo(
            f"resumed at {_position(outcome.resumed.position)} after "
            f"{outcome.resumed.orders:,} order(s) of earlier runs"
        )
    click.echo(
        f"{t.pages} page(s), {t.orders:,} order(s): {t.stored:,} stored, "
        f"{t.duplicates:,} stored before; {t.events:,} new event(s), {t.invalid:,} invalid, "
        f"{t.failed:,} webhook(s) failed"
    )
    if no_send:
        click.echo("not sent (--no-send): a running server sends them")
    else:
        sent = ", ".join(f"{k} {v}" for k, v in sorted(outcome.sent.items()))
        click.echo(f"sent: {sent or 'nothing due'}")
    if outcome.error is not None or outcome.interrupted:
        at = _position(outcome.saved.position) if outcome.saved else "the start"
        why = "interrupted" if outcome.interrupted else "stopped"
        click.echo(f"{why}: the cursor is at {at}: run the same command again to resume")
    elif outcome.finished:
        click.echo(f"done: the listing was read to its end; cursor {cursor.path}")
    else:
        click.echo(f"stopped at --limit: run the same command again to continue ({cursor.path})")


def _print_preview(job: runner.Job, found: runner.Preview, as_json: bool) -> None:
    t = found.tally
    if as_json:
        doc = {
            **_summary(job, t, found.total),
            "dry_run": True,
            "resumed": found.resumed.as_dict() if found.resumed else None,
            "finished": found.finished,
            "first_events": [
                {
                    "order_id": e.order_id,
                    "rule": e.rule,
                    "event_type": e.event_type,
                    "valid": e.valid,
                    "body": e.body,
                    "problems": list(e.problems),
                }
                for e in found.first
            ],
            "failures": found.failures,
            "error": str(found.error) if found.error else None,
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    if found.resumed is not None:
        click.echo(f"a run would resume at {_position(found.resumed.position)} (--restart: not)")
    click.echo(
        f"{t.pages} page(s), {t.orders:,} order(s) fetched: {t.events:,} event(s) to store, "
        f"{t.events - t.invalid:,} to send, {t.invalid:,} invalid, {t.failed:,} order(s) failing"
        " (a run skips orders stored before)"
    )
    for e in found.first:
        verdict = "SEND" if e.valid else "DROP"
        click.echo(f"  {verdict} order {e.order_id}: {e.event_type} (rule {e.rule})")
        if e.body is not None:
            click.echo("    " + json.dumps(e.body, ensure_ascii=False))
        for problem in e.problems:
            click.echo(f"    {problem}")
    for failure in found.failures:
        click.echo(f"  FAIL {failure}")


def _position(position: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(position.items())) or "the start"
