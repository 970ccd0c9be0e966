"""The ``hookmap`` command line: a thin layer over the stages; exit codes live on the errors.

One module per family of commands (``rules``: validate, dry-run, test, schema, docs;
``serve``: serve, sandbox, post; ``ops``: the data folder's status, listings, retry and
replay; ``backfill``: a shop's order history; ``diff``: what a rule change does to real
traffic; ``capture``: fixtures from it; ``playground``: a local page to try rules), the
options they share in ``options``, and the group that holds them here.
"""

from __future__ import annotations

import io
import sys
from typing import Any

import click

from engine.cli import backfill, capture, diff, ops, playground, rules, serve
from engine.cli.options import choose_evaluator
from engine.errors import HookmapError, did_you_mean


class HookmapGroup(click.Group):
    """Turns ``HookmapError`` into its exit code and suggests commands for typos."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HookmapError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            hint = did_you_mean(name, self.list_commands(ctx))
            raise click.UsageError(f"no such command '{name}'" + (f"; {hint}" if hint else ""))
        return super().resolve_command(ctx, args)


@click.group(cls=HookmapGroup)
@click.version_option(package_name="hookmap")
@click.option(
    "--interpreter",
    is_flag=True,
    help=(
        "The reference path: bodies read whole and expressions run by jmespath's "
        "interpreter, not compiled (same results, slower)."
    ),
)
@click.pass_context
def main(ctx: click.Context, interpreter: bool) -> None:
    """Map shop webhooks to eSputnik (Yespo) events with declarative YAML rules."""
    ctx.ensure_object(dict)["evaluator"] = choose_evaluator(interpreter)
    # a webhook's JSON may hold a lone surrogate ("\ud800"), which no encoding can write:
    # printed as that same escape (valid in JSON output too) instead of a traceback
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


for command in (
    rules.validate,
    rules.dry_run,
    rules.test_command,
    rules.schema,
    rules.docs_command,
    serve.serve_command,
    serve.sandbox_command,
    serve.post_command,
    ops.status_command,
    ops.webhooks_command,
    ops.events_command,
    ops.show_command,
    ops.retry_command,
    ops.replay_command,
    backfill.backfill_command,
    diff.diff_command,
    capture.capture_command,
    playground.playground_command,
):
    main.add_command(command)

__all__ = ["main"]
