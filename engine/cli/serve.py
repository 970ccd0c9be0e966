"""The server commands: serve, sandbox, post (a signed delivery, as the platform sends it)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import httpx

from engine.cli.options import (
    data_option,
    evaluator_from_context,
    pick_ruleset,
    rules_option,
    shops_option,
)
from engine.errors import RuleLoadError, SecretError, ServeRefused, UsageError, did_you_mean
from engine.events.destination import API_KEY_ENV, Destination
from engine.rules import compiler
from engine.rules.model import RuleSet
from engine.rules.shops import load_shops_or_raise
from engine.sandbox.run import SANDBOX_PORT
from engine.sandbox.run import serve as serve_sandbox
from engine.sandbox.settings import SandboxConfig
from engine.server.guard import DEFAULT_MAX_CONNECTIONS, FD_RESERVE, Limits
from engine.server.intake import DEFAULT_MAX_BODY, is_woocommerce_ping
from engine.server.listeners import ADMIN_TOKEN_ENV
from engine.server.secrets import read_pem, resolve_secrets
from engine.server.service import DEFAULT_HOST, DEFAULT_PORT, ServiceConfig, serve
from engine.server.signing import resign_jwt, sign
from engine.server.store.location import is_database_url
from engine.server.tenants import with_shop_secrets
from engine.webhook import read_webhook_file

#: the defaults the commands show, as the service and the sandbox define them
_SERVE = ServiceConfig(rules=())
_SANDBOX = SandboxConfig(api_key="-")


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


@click.command("serve")
@rules_option
@click.option("--host", default=DEFAULT_HOST, show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@data_option
@click.option(
    "--max-body",
    default=DEFAULT_MAX_BODY,
    show_default=True,
    type=int,
    help="Largest accepted body in bytes (a rule set's max_body wins).",
)
@click.option(
    "--concurrency",
    default=_SERVE.concurrency,
    show_default=True,
    type=int,
    help="Sends in flight at once.",
)
@click.option(
    "--lanes",
    default=_SERVE.lanes,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rule sets (per shop) whose webhooks are processed at once, each waiting only "
    "on its own lookups.",
)
@click.option(
    "--rate",
    default=_SERVE.rate_per_second,
    show_default=True,
    type=float,
    help="Sends per second at most (the service's documented limit).",
)
@click.option(
    "--grace",
    default=_SERVE.grace_seconds,
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
    "--idle-timeout",
    default=_SERVE.limits.idle_timeout,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a connection may wait before its request begins (closed after).",
)
@click.option(
    "--header-timeout",
    default=_SERVE.limits.header_timeout,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a request's line and headers may take (408 after).",
)
@click.option(
    "--body-timeout",
    default=_SERVE.limits.body_timeout,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a request's body may take after its headers (408 after).",
)
@click.option(
    "--max-connections",
    default=_SERVE.limits.max_connections,
    type=click.IntRange(min=1),
    help=(
        "Connections open at once; then a new one closes the longest idle, or gets 503. "
        f"[default: {DEFAULT_MAX_CONNECTIONS}, or the open-file limit less {FD_RESERVE}]"
    ),
)
@click.option(
    "--admin-port",
    default=_SERVE.admin_port,
    type=int,
    help=(
        "Serve /healthz, /readyz and /metrics on this port instead of beside the hooks. "
        f"With {ADMIN_TOKEN_ENV} set they need 'Authorization: Bearer <token>' either way."
    ),
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@shops_option
def serve_command(
    rules_paths: tuple[str, ...],
    host: str,
    port: int,
    data_dir: str,
    max_body: int,
    concurrency: int,
    lanes: int,
    rate: float,
    grace: float,
    reload_watch: bool,
    idle_timeout: float,
    header_timeout: float,
    body_timeout: float,
    max_connections: int | None,
    admin_port: int | None,
    log_level: str,
    shops_path: str | None,
) -> None:
    """Receive webhooks at POST /hooks/{source} and deliver their events.

    The CDP is HOOKMAP_API_URL (default https://esputnik.com/api) with the key in
    HOOKMAP_API_KEY. Platform secrets come from the variables each rule set's
    `verify.secret_env` names. With --shops, each shop listed is served at
    POST /hooks/{source}/{shop} with its own secret and CDP account.
    """
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    destination = Destination.from_env()
    if not destination.api_key and shops_path is None:
        raise UsageError(f"{API_KEY_ENV} is not set: the CDP needs the API key")
    config = ServiceConfig(
        rules=rules_paths,
        data_dir=data_dir if is_database_url(data_dir) else Path(data_dir),
        shops=shops_path,
        max_body=max_body,
        concurrency=concurrency,
        lanes=lanes,
        rate_per_second=rate,
        grace_seconds=grace,
        reload_watch=reload_watch,
        evaluator=evaluator_from_context(),
        limits=Limits(idle_timeout, header_timeout, body_timeout, max_connections),
        admin_port=admin_port,
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


@click.command("sandbox")
@click.option("--host", default=DEFAULT_HOST, show_default=True)
@click.option("--port", default=SANDBOX_PORT, show_default=True, type=int)
@click.option(
    "--rate-limit",
    default=_SANDBOX.rate_limit,
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


@click.command("post")
@rules_option
@click.option("--source", help="Rule set name (else chosen as dry-run does).")
@click.option(
    "--url",
    default=f"http://{DEFAULT_HOST}:{DEFAULT_PORT}",
    show_default=True,
    help="The server's base URL; files go to URL/hooks/{source} (or {source}/{shop}).",
)
@shops_option
@click.option(
    "--shop",
    help="Post as this shop of the shops file: to /hooks/{source}/{shop}, signed with its secret.",
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
    shops_path: str | None,
    shop: str | None,
    private_key_env: str | None,
    payloads: tuple[str, ...],
) -> None:
    """Post webhook files to a server, signed as the platform would sign them.

    The secret is the first variable of the rule set's `verify.secret_env` that is
    set; headers come from each file's .headers file (its signature is replaced).
    Schemes signed with a private key take it from --private-key-env.
    """
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
    rulesets = loaded.rulesets
    suffix = ""
    if shop is not None:
        rulesets = (_as_shop(rulesets, shops_path, shop),)
        suffix = f"/{shop}"
    failed = 0
    with httpx.Client(timeout=10.0) as client:
        for payload in payloads:
            webhook = read_webhook_file(Path(payload))
            ruleset = pick_ruleset(rulesets, source, webhook)
            headers, body = signed_request(ruleset, webhook.body, webhook.headers, private_key)
            try:
                response = client.post(
                    f"{url.rstrip('/')}/hooks/{ruleset.name}{suffix}",
                    content=body,
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                raise UsageError(f"cannot reach {url}: {exc}") from exc
            failed += response.status_code >= 300
            click.echo(f"{payload}: {response.status_code} {response.text.strip()}")
    sys.exit(1 if failed else 0)


def _as_shop(rulesets: Sequence[RuleSet], shops_path: str | None, shop_id: str) -> RuleSet:
    """The rule set ``shop_id`` of the shops file uses, verified with that shop's secrets."""
    if shops_path is None:
        raise UsageError("--shop needs the shops file: --shops FILE (or HOOKMAP_SHOPS)")
    shops = load_shops_or_raise(shops_path, [r.name for r in rulesets])
    found = next((s for s in shops if s.id == shop_id), None)
    if found is None:
        hint = did_you_mean(shop_id, [s.id for s in shops])
        raise UsageError(f"no shop '{shop_id}' in {shops_path}" + (f"; {hint}" if hint else ""))
    return with_shop_secrets(next(r for r in rulesets if r.name == found.ruleset), found)
