"""``hookmap playground``: the local page to try rules on a webhook (``engine.playground``)."""

from __future__ import annotations

from pathlib import Path

import click

from engine.errors import UsageError
from engine.playground.run import DEFAULT_HOST, PLAYGROUND_PORT, serve
from engine.playground.session import Settings, handlers

#: the examples the page offers when --webhooks is not given (if the folder is there)
EXAMPLES = "examples"


@click.command("playground")
@click.option(
    "--rules",
    "rules_paths",
    multiple=True,
    type=click.Path(exists=True),
    help="Rule files or folders to pick from (repeatable); rules can also be pasted.",
)
@click.option(
    "--webhooks",
    "webhook_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help=f"Folders of NAME.json + NAME.headers to pick from (repeatable; default ./{EXAMPLES}).",
)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=PLAYGROUND_PORT, show_default=True, type=int, help="Port to listen on."
)
@click.option(
    "--live",
    is_flag=True,
    help="Let lookups the page has no answer for call the platforms' APIs (with every "
    "variable, credentials too).",
)
def playground_command(
    rules_paths: tuple[str, ...],
    webhook_dirs: tuple[str, ...],
    host: str,
    port: int,
    live: bool,
) -> None:
    """Serve a local page: edit rules and a webhook, see the events live as you type.

    The page shows every located problem in the rules (as 'hookmap validate' does),
    the events with their checks, why each rule matched, each param's expression and
    value, and the requests as curl commands (as 'hookmap dry-run --explain --curl').
    Nothing is sent to the CDP. Lookups are answered from the mocks on the page (one
    without an answer is named, with its URL, instead of events made from nulls), and
    variables whose names hold KEY, SECRET, TOKEN, PASS, AUTH... are left out of the
    rules, unless --live.
    """
    if not webhook_dirs and Path(EXAMPLES).is_dir():
        webhook_dirs = (EXAMPLES,)
    settings = Settings(rules=rules_paths, webhooks=webhook_dirs, live=live)
    try:
        serve(handlers(settings), host, port, printer=click.echo)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
