"""The server and operator commands: serve, sandbox, status, webhooks, events, show, retry,
replay. They read the same data folder as the running server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
import httpx

from engine.errors import RuleLoadError, UsageError
from engine.events.destination import API_KEY_ENV, Destination
from engine.lookups import HttpFetcher
from engine.rules import compiler
from engine.rules.codegen import Evaluator
from engine.server import leases
from engine.server.dispatch import Dispatcher
from engine.server.intake import DEFAULT_MAX_BODY, ServeRefused, is_woocommerce_ping
from engine.server.processor import process_stored
from engine.server.queries import StoredWebhook
from engine.server.service import DB_NAME, ServiceConfig, serve
from engine.server.signatures import SecretError, read_pem, resign_jwt, resolve_secrets, sign
from engine.server.store import Store, StoreError, new_events
from engine.webhook import read_webhook_file

DATA_HELP = "Data folder of the server (SQLite file inside)."
#: header names whose values are credentials or signatures: never shown
_SECRET_HEADER = re.compile(
    r"signature|hmac|authorization|token|secret|cookie|api-key", re.IGNORECASE
)


def data_option(func: Any) -> Any:
    return click.option(
        "--data",
        "data_dir",
        default="hookmap-data",
        show_default=True,
        envvar="HOOKMAP_DATA",
        type=click.Path(file_okay=False),
        help=DATA_HELP,
    )(func)


def open_store(data_dir: str, must_exist: bool = True) -> Store:
    path = Path(data_dir) / DB_NAME
    if must_exist and not path.is_file():
        raise UsageError(
            f"no hookmap data in {data_dir}/ (start 'hookmap serve --data "
            f"{data_dir}' first, or pass --data)"
        )
    try:
        return Store(path)
    except StoreError as exc:
        raise UsageError(str(exc)) from exc


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


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


def parse_since(text: str) -> float:
    """``2h``, ``30m``, ``1d``, ``45s`` ago, or an ISO 8601 date-time / date."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if match:
        size = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        return time.time() - float(match[1]) * size
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"--since {text!r}: use 2h, 30m, 1d or an ISO date-time") from exc
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def signed_request(
    ruleset: Any,
    body: bytes,
    headers: dict[str, str] | Any,
    private_key: bytes | None = None,
) -> tuple[dict[str, str], bytes]:
    """``headers`` with the signature the rule set's scheme expects, and the body to send.

    Shared secrets come from the environment (the rule set's ``verify.secret_env``).
    ``rsa-sha256`` (Adobe) and ``jwt`` (Wix) sign with the platform's private key, which
    only a test setup has: ``private_key`` (a PEM); for ``jwt`` the body itself, a
    token, is signed again with fresh times.
    """
    out = {k: v for k, v in headers.items() if v != "PLACEHOLDER"}
    spec = ruleset.verify
    if spec is None or spec.scheme == "none" or is_woocommerce_ping(out, body):
        return out, body
    if spec.scheme in ("rsa-sha256", "jwt"):
        if private_key is None:
            raise UsageError(
                f"rule set '{ruleset.name}' verifies '{spec.scheme}' signatures, made with "
                "the platform's private key: give a test key's PEM with "
                "--private-key-env NAME (the server holding its public half)"
            )
        if spec.scheme == "jwt":
            try:
                return out, resign_jwt(private_key, body)
            except ValueError as exc:
                raise UsageError(f"cannot sign for '{ruleset.name}': {exc}") from None
        secret = private_key
    else:
        secret = resolve_secrets(spec, os.environ)[0]
    # keep a delivery id the file already has (Standard Webhooks signs it): it is
    # what the server deduplicates on
    msg_id = out.get("webhook-id") or out.get("svix-id")
    out.update({k.lower(): v for k, v in sign(spec, secret, body, msg_id=msg_id).items()})
    return out, body


#: ``--rules PATH`` (repeatable), shared by every command that loads rules
rules_option = click.option(
    "--rules",
    "rules_paths",
    multiple=True,
    required=True,
    type=click.Path(exists=True),
    help="Rule file or folder (repeatable).",
)


def evaluator_from_context() -> Evaluator:
    """The evaluator ``hookmap --interpreter`` chose (compiled by default)."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    chosen = ((root.obj if root else None) or {}).get("evaluator", "compiled")
    return "interpreter" if chosen == "interpreter" else "compiled"


def register(main: click.Group) -> None:
    """Add the server and operator commands to ``main``."""

    @main.command("serve")
    @rules_option
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8000, show_default=True, type=int)
    @data_option
    @click.option(
        "--max-body",
        default=DEFAULT_MAX_BODY,
        show_default=True,
        type=int,
        help="Largest accepted body in bytes (a rule set's max_body wins).",
    )
    @click.option(
        "--concurrency", default=8, show_default=True, type=int, help="Sends in flight at once."
    )
    @click.option(
        "--rate",
        default=350.0,
        show_default=True,
        type=float,
        help="Sends per second at most (the service's documented limit).",
    )
    @click.option(
        "--grace",
        default=10.0,
        show_default=True,
        type=float,
        help="Seconds sends in flight get on shutdown.",
    )
    @click.option(
        "--reload",
        "reload_watch",
        is_flag=True,
        help="Reload the rules when a rule file changes (SIGHUP always does).",
    )
    @click.option(
        "--log-level",
        default="info",
        show_default=True,
        type=click.Choice(["debug", "info", "warning", "error"]),
    )
    def serve_command(
        rules_paths: tuple[str, ...],
        host: str,
        port: int,
        data_dir: str,
        max_body: int,
        concurrency: int,
        rate: float,
        grace: float,
        reload_watch: bool,
        log_level: str,
    ) -> None:
        """Receive webhooks at POST /hooks/{source} and deliver their events.

        The CDP is HOOKMAP_API_URL (default https://esputnik.com/api) with the key in
        HOOKMAP_API_KEY. Platform secrets come from the variables each rule set's
        `verify.secret_env` names.
        """
        logging.basicConfig(
            level=log_level.upper(),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        destination = Destination.from_env()
        if not destination.api_key:
            raise UsageError(f"{API_KEY_ENV} is not set: the CDP needs the API key")
        config = ServiceConfig(
            rules=rules_paths,
            data_dir=Path(data_dir),
            max_body=max_body,
            concurrency=concurrency,
            rate_per_second=rate,
            grace_seconds=grace,
            reload_watch=reload_watch,
            evaluator=evaluator_from_context(),
        )
        try:
            serve(config, destination, host, port)
        except RuleLoadError as exc:
            for d in exc.diagnostics:
                click.echo(d.render(), err=True)
            raise
        except ServeRefused as exc:
            for problem in exc.problems:
                click.echo(f"refused: {problem}", err=True)
            sys.exit(1)

    @main.command("sandbox")
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8020, show_default=True, type=int)
    @click.option(
        "--rate-limit",
        default=350,
        show_default=True,
        type=int,
        help="Requests per second before answering 429.",
    )
    @click.option(
        "--strict-contacts",
        is_flag=True,
        help="Reject order events for contacts not created first.",
    )
    @click.option("--fail-rate", default=0.0, type=float, help="Share of requests that get 500.")
    @click.option("--throttle-rate", default=0.0, type=float, help="Share that get 429.")
    @click.option("--delay", default=0.0, type=float, help="Seconds added to every answer.")
    def sandbox_command(
        host: str,
        port: int,
        rate_limit: int,
        strict_contacts: bool,
        fail_rate: float,
        throttle_rate: float,
        delay: float,
    ) -> None:
        """Run a local stand-in of the CDP (v1/v2 event, contact, orders) for trying hookmap.

        Basic auth is required with the key in HOOKMAP_API_KEY. Point the server at it
        with HOOKMAP_API_URL=http://HOST:PORT/api. What it accepted: GET /sandbox/events.
        """
        from engine.sandbox.app import SandboxConfig
        from engine.sandbox.app import serve as serve_sandbox

        key = os.environ.get(API_KEY_ENV)
        if not key:
            raise UsageError(f"{API_KEY_ENV} is not set: the sandbox checks Basic auth with it")
        config = SandboxConfig(
            api_key=key,
            rate_limit=rate_limit,
            strict_contacts=strict_contacts,
            fail_rate=fail_rate,
            throttle_rate=throttle_rate,
            delay_seconds=delay,
        )
        serve_sandbox(config, host, port, printer=click.echo)

    @main.command("post")
    @rules_option
    @click.option("--source", help="Rule set name (else chosen as dry-run does).")
    @click.option(
        "--url",
        default="http://127.0.0.1:8000",
        show_default=True,
        help="The server's base URL; files go to URL/hooks/{source}.",
    )
    @click.option(
        "--private-key-env",
        metavar="NAME",
        help=(
            "Environment variable holding a PEM private key, for rule sets verified with "
            "the platform's public key (rsa-sha256: Adobe Commerce; jwt: Wix)."
        ),
    )
    @click.argument("payloads", nargs=-1, required=True, type=click.Path(exists=True))
    def post_command(
        rules_paths: tuple[str, ...],
        source: str | None,
        url: str,
        private_key_env: str | None,
        payloads: tuple[str, ...],
    ) -> None:
        """Post webhook files to a server, signed as the platform would sign them.

        The secret is the first variable of the rule set's `verify.secret_env` that is
        set; headers come from each file's .headers file (its signature is replaced).
        Schemes signed with a private key take it from --private-key-env.
        """
        from engine.cli.group import pick_ruleset

        private_key = None
        if private_key_env is not None:
            found = os.environ.get(private_key_env, "")
            if not found.strip():
                raise UsageError(f"--private-key-env: {private_key_env} is not set")
            try:  # the PEM itself (escaped newlines too), or @path to a file
                private_key = read_pem(private_key_env, found)
            except SecretError as exc:
                raise UsageError(str(exc)) from None
        loaded = compiler.load(list(rules_paths), evaluator=evaluator_from_context())
        if not loaded.ok:
            raise RuleLoadError(loaded.diagnostics)
        failed = 0
        with httpx.Client(timeout=10.0) as client:
            for payload in payloads:
                webhook = read_webhook_file(Path(payload))
                ruleset = pick_ruleset(loaded.rulesets, source, webhook)
                headers, body = signed_request(ruleset, webhook.body, webhook.headers, private_key)
                try:
                    response = client.post(
                        f"{url.rstrip('/')}/hooks/{ruleset.name}",
                        content=body,
                        headers=headers,
                    )
                except httpx.HTTPError as exc:
                    raise UsageError(f"cannot reach {url}: {exc}") from exc
                failed += response.status_code >= 300
                click.echo(f"{payload}: {response.status_code} {response.text.strip()}")
        sys.exit(1 if failed else 0)

    @main.command("status")
    @data_option
    @click.option("--json", "as_json", is_flag=True)
    def status_command(data_dir: str, as_json: bool) -> None:
        """Counts of webhooks and events by state, and the oldest pending work."""
        with open_store(data_dir) as store:
            counts = store.counts()
            oldest = store.oldest_pending()
        running, stopped = leases.survey(Path(data_dir))
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

    @main.command("webhooks")
    @data_option
    @click.option("--state", type=click.Choice(["received", "processed", "failed"]))
    @click.option("--source")
    @click.option("--limit", default=50, show_default=True, type=int)
    def webhooks_command(data_dir: str, state: str | None, source: str | None, limit: int) -> None:
        """The latest stored webhooks."""
        with open_store(data_dir) as store:
            rows = store.list_webhooks(state, source, limit)
        for w in rows:
            click.echo(
                f"#{w.id:<6} {when(w.received_at)} {w.source:<12} {w.state:<9} "
                f"{w.topic or '-':<24} {w.error or w.summary or ''}"
            )
        click.echo(f"{len(rows)} webhook(s)")

    @main.command("events")
    @data_option
    @click.option("--state", type=click.Choice(["pending", "sent", "dead", "invalid"]))
    @click.option("--limit", default=50, show_default=True, type=int)
    def events_command(data_dir: str, state: str | None, limit: int) -> None:
        """The latest events (dead: the status and response that stopped them)."""
        with open_store(data_dir) as store:
            rows = store.list_events(state, limit)
        for e in rows:
            extra = e.last_error or ""
            if e.state == "invalid":
                extra = "; ".join(
                    f"{p.get('code')} {p.get('param') or ''}".strip()
                    for p in e.problems
                    if p.get("severity") == "error"
                )
            click.echo(
                f"#{e.id:<6} webhook #{e.webhook_id:<6} {e.event_type:<16} "
                f"{e.state:<8} attempts {e.attempts} {extra}"
            )
        click.echo(f"{len(rows)} event(s)")

    @main.command("show")
    @data_option
    @click.argument("webhook_id", type=int)
    def show_command(data_dir: str, webhook_id: int) -> None:
        """One webhook: raw body, headers (secrets masked), its events and every attempt."""
        with open_store(data_dir) as store:
            detail = store.get_webhook(webhook_id)
        if detail is None:
            raise UsageError(f"no webhook #{webhook_id}")
        w = detail.webhook
        click.echo(
            f"webhook #{w.id} from {w.source}, received {when(w.received_at)}, "
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
                f"event #{e.id} {e.rule}[{e.idx}] {e.event_type}: {e.state}, "
                f"{e.attempts} attempt(s)"
            )
            if e.body:
                click.echo(f"  body: {e.body}")
            for p in e.problems:
                click.echo(
                    f"  {p.get('severity')}[{p.get('code')}] {p.get('param') or ''}: "
                    f"{p.get('message')}"
                )
            for a in detail.attempts:
                if a.event_id == e.id:
                    result = f"HTTP {a.status}" if a.status else (a.error or "no answer")
                    click.echo(
                        f"  attempt {when(a.started_at)} {a.duration_ms:.0f} ms "
                        f"{result} -> {a.outcome}" + (f": {a.response[:200]}" if a.response else "")
                    )

    @main.command("retry")
    @data_option
    @click.argument("event_id", type=int, required=False)
    @click.option("--dead", "all_dead", is_flag=True, help="Re-queue every dead event.")
    def retry_command(data_dir: str, event_id: int | None, all_dead: bool) -> None:
        """Put a dead event (or all of them) back in the queue, due now."""
        if (event_id is None) == (not all_dead):
            raise UsageError("give an event id or --dead (one of them)")
        with open_store(data_dir) as store:
            count = store.retry_dead() if all_dead else store.retry(event_id or 0)
        if not all_dead and count == 0:
            raise UsageError(f"event #{event_id} is not dead (or does not exist)")
        click.echo(f"{count} event(s) re-queued; a running server sends them")

    @main.command("replay")
    @data_option
    @rules_option
    @click.option("--webhook", "webhook_id", type=int, help="Replay one webhook.")
    @click.option("--since", help="Replay webhooks received since (2h, 1d, ISO date-time).")
    @click.option("--source", help="Only webhooks of this source (with --since).")
    @click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
    @click.option("--force", is_flag=True, help="Also send again events the CDP accepted.")
    @click.option("--no-send", is_flag=True, help="Queue the events; let the server send.")
    def replay_command(
        data_dir: str,
        rules_paths: tuple[str, ...],
        webhook_id: int | None,
        since: str | None,
        source: str | None,
        dry_run: bool,
        force: bool,
        no_send: bool,
    ) -> None:
        """Re-run stored raw webhooks through the current rules; send only what is new.

        Events the CDP accepted are not sent again unless --force says so.
        """
        if (webhook_id is None) == (since is None):
            raise UsageError("give --webhook ID or --since TIME (one of them)")
        loaded = compiler.load(list(rules_paths), evaluator=evaluator_from_context())
        if not loaded.ok:
            raise RuleLoadError(loaded.diagnostics)
        rulesets = {r.name: r for r in loaded.rulesets}
        with open_store(data_dir) as store:
            pages: Iterable[list[StoredWebhook]]
            if webhook_id is not None:
                detail = store.get_webhook(webhook_id)
                if detail is None:
                    raise UsageError(f"no webhook #{webhook_id}")
                pages, total = [[detail.webhook]], 1
            else:
                when = parse_since(since or "")
                total = store.count_webhooks_since(when, source=source)
                pages = store.iter_webhooks_since(when, source=source)
            if dry_run:
                for page in pages:
                    _replay_preview(store, rulesets, page)
                return

            # One commit per page, not one sync per webhook: each webhook's result is still
            # all or nothing, and an interrupted replay keeps what it finished. Not for a
            # page with lookups to make: the batch holds the write lock, and a slow API
            # would hold up a running server's intake with it.
            def batched(page: list[StoredWebhook]) -> bool:
                found = (rulesets.get(w.source) for w in page)
                return not any(r is not None and r.lookups for r in found)

            inserted = requeued = replayed = 0
            with (
                contextlib.closing(HttpFetcher()) as fetcher,
                click.progressbar(
                    length=total, label="replaying", file=sys.stderr, show_pos=True
                ) as bar,
            ):
                for page in pages:
                    with store.batch() if batched(page) else contextlib.nullcontext():
                        for webhook in page:
                            stats = process_stored(
                                store, rulesets, webhook, fetcher=fetcher, replay=True, force=force
                            ).stats
                            inserted += stats.inserted
                            requeued += stats.requeued
                            replayed += 1
                            bar.update(1)
            click.echo(
                f"{replayed} webhook(s) replayed: {inserted} new event(s), {requeued} re-queued"
            )
            if no_send or not (inserted or requeued):
                return
            outcomes = asyncio.run(_drain(store))
            click.echo(
                "sent: "
                + (", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "nothing due")
            )

    async def _drain(store: Store) -> dict[str, int]:
        destination = Destination.from_env()
        if not destination.api_key:
            raise UsageError(f"{API_KEY_ENV} is not set: cannot send (use --no-send)")
        async with Dispatcher(store, destination) as dispatcher:
            return dict(await dispatcher.drain())


def _replay_preview(store: Store, rulesets: dict[str, Any], targets: list[Any]) -> None:
    from engine.lookups import HttpFetcher, LookupFailed
    from engine.pipeline import process

    fetcher = HttpFetcher()  # a preview reads lookups too; it writes nothing
    for webhook in targets:
        ruleset = rulesets.get(webhook.source)
        if ruleset is None:
            click.echo(f"#{webhook.id}: no rule set '{webhook.source}'")
            continue
        detail = store.get_webhook(webhook.id)
        existing = {(e.rule, e.idx): e.state for e in detail.events} if detail else {}
        try:
            result = process(ruleset, webhook.as_webhook(), fetcher=fetcher)
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
