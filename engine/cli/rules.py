"""The rule commands: validate, dry-run, test, schema, docs."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from engine import ruletests
from engine.cli import report
from engine.cli.options import (
    diagnostic_order,
    load_clean,
    open_store,
    pick_ruleset,
    print_diagnostics,
    rules_option,
)
from engine.errors import LookupFailed, UsageError
from engine.events.destination import Destination
from engine.lookups import HttpFetcher, OfflineFetcher
from engine.pipeline import ChangeMemory, process
from engine.rules import compiler, docs
from engine.rules.schema import json_schema, shops_json_schema
from engine.ruletests import SentChanges
from engine.server.processor import StoredChanges
from engine.webhook import Webhook, parse_header_lines, read_webhook_file


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print diagnostics as JSON.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def validate(paths: tuple[str, ...], as_json: bool, strict: bool) -> None:
    """Check rule files: every problem with file:line:col, a code and a caret."""
    result = compiler.load(list(paths))
    diagnostics = sorted(result.diagnostics, key=diagnostic_order)
    errors = [d for d in diagnostics if d.severity == "error" or strict]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "rulesets": [r.name for r in result.rulesets],
                    "diagnostics": [d.as_dict() for d in diagnostics],
                },
                indent=2,
            )
        )
    else:
        print_diagnostics(diagnostics, sys.stdout)
        warnings = len(diagnostics) - sum(1 for d in diagnostics if d.severity == "error")
        names = ", ".join(r.name for r in result.rulesets) or "none"
        click.echo(
            f"{len(diagnostics) - warnings} error(s), {warnings} warning(s); "
            f"rule sets loaded: {names}"
        )
    sys.exit(1 if errors else 0)


@click.command("dry-run")
@rules_option
@click.option("--source", help="Rule set name (the /hooks/{source} of the server).")
@click.option("--topic", help="Use this topic instead of the one in the headers/body.")
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    metavar="'Name: value'",
    help="A request header (repeatable); overrides the .headers file.",
)
@click.option("--no-headers-file", is_flag=True, help="Do not read PAYLOAD's .headers file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option(
    "--explain",
    is_flag=True,
    help="Show why each rule matched or not, and each param's expression, value and location.",
)
@click.option("--curl", is_flag=True, help="Show each request as a curl command.")
@click.option(
    "--mock",
    "mocks",
    multiple=True,
    metavar="LOOKUP=FILE",
    help="Answer a lookup from a JSON file instead of the network (repeatable).",
)
@click.option(
    "--data",
    "data_dir",
    help=(
        "A server's data folder or database: `changes:` compares with the values it last "
        "sent (read only). Without it, with the payloads given before in this run."
    ),
)
@click.option("--shop", help="With --data: the shop whose last sent values count.")
@click.option(
    "--live",
    is_flag=True,
    help="Call the platform's API for lookups without a --mock, with the credentials in "
    "the environment (without it, dry-run makes no network call and says what to mock).",
)
@click.argument("payloads", nargs=-1, required=True, type=click.Path())
def dry_run(
    rules_paths: tuple[str, ...],
    source: str | None,
    topic: str | None,
    headers: tuple[str, ...],
    no_headers_file: bool,
    as_json: bool,
    explain: bool,
    curl: bool,
    mocks: tuple[str, ...],
    data_dir: str | None,
    shop: str | None,
    live: bool,
    payloads: tuple[str, ...],
) -> None:
    """Show exactly what would be sent for webhook bodies in PAYLOADS, or why not.

    Headers come from PAYLOAD's .headers file beside it (NAME.json → NAME.headers)
    and from -H. Lookups are answered by --mock files; no platform API is called unless
    --live says so. Exit 0 when every produced event is valid, 1 when one is dropped or
    a lookup has no answer. PAYLOADS are taken in order: an event held back by `changes:`
    is one whose values a payload before it sent already (or, with --data, the server
    sent last).
    """
    loaded = load_clean(rules_paths)
    with contextlib.ExitStack() as stack:
        changes: ChangeMemory = SentChanges()
        if data_dir is not None:
            store = stack.enter_context(open_store(data_dir))
            changes = StoredChanges(store, shop or "")
        _dry_run(
            loaded,
            headers,
            no_headers_file,
            as_json,
            explain,
            curl,
            mocks,
            payloads,
            source,
            topic,
            changes,
            live,
        )


def _dry_run(
    loaded: compiler.LoadResult,
    headers: tuple[str, ...],
    no_headers_file: bool,
    as_json: bool,
    explain: bool,
    curl: bool,
    mocks: tuple[str, ...],
    payloads: tuple[str, ...],
    source: str | None,
    topic: str | None,
    changes: ChangeMemory,
    live: bool,
) -> None:
    extra = parse_header_lines(headers, "-H")
    destination = Destination.from_env()
    fetcher = OfflineFetcher(_read_mocks(mocks), HttpFetcher() if live else None)
    documents: list[dict[str, Any]] = []
    dropped = False
    try:
        for index, payload in enumerate(payloads):
            path = Path(payload)
            if not path.is_file():
                raise UsageError(f"no such payload file: {payload}")
            webhook = read_webhook_file(path, use_sidecar=not no_headers_file)
            webhook = Webhook(webhook.body, {**webhook.headers, **extra}, topic, webhook.origin)
            ruleset = pick_ruleset(loaded.rulesets, source, webhook)
            fetcher.reset()
            if index and not as_json:
                click.echo()
            try:
                result = process(ruleset, webhook, fetcher=fetcher, changes=changes)
            except LookupFailed as exc:
                # the server keeps such a webhook and tries again later
                dropped = True
                if as_json:
                    documents.append(report.lookup_failed_json(exc, payload, ruleset.name))
                else:
                    click.echo(report.lookup_failed_text(exc, payload, ruleset.name))
                continue
            if fetcher.missing:  # the events were made from null answers: not shown
                dropped = True
                if as_json:
                    documents.append(report.missing_mocks_json(result, payload, fetcher.missing))
                else:
                    click.echo(report.missing_mocks_text(result, payload, fetcher.missing))
                continue
            if isinstance(changes, SentChanges):
                changes.remember(result)
            dropped = dropped or bool(result.dropped)
            if as_json:
                documents.append(report.result_json(result, payload, explain))
            else:
                click.echo(report.result_text(result, payload, destination, explain, curl))
    finally:
        fetcher.close()
    if as_json:
        doc: Any = documents[0] if len(documents) == 1 else {"results": documents}
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    sys.exit(1 if dropped else 0)


def _read_mocks(specs: Sequence[str]) -> dict[str, Any]:
    """``--mock order=path.json`` → {"order": <the file's JSON>}."""
    out: dict[str, Any] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"--mock {spec!r}: expected LOOKUP=FILE")
        try:
            out[name] = json.loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--mock {name}: cannot read {file}: {exc}") from exc
    return out


@click.command("test")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-k", "select", help="Run only tests whose 'ruleset::name' contains this.")
@click.option("-v", "--verbose", is_flag=True, help="List passing tests too.")
def test_command(paths: tuple[str, ...], select: str | None, verbose: bool) -> None:
    """Run the rule tests declared with the rules."""
    loaded = load_clean(paths)
    outcomes = ruletests.run_all(loaded.rulesets)
    if select:
        outcomes = [o for o in outcomes if select in o.id]
    for outcome in outcomes:
        if outcome.passed:
            if verbose:
                click.echo(f"PASS {outcome.id}")
            continue
        where = f" ({outcome.where})" if outcome.where else ""
        click.echo(f"FAIL {outcome.id}{where}")
        for failure in outcome.failures:
            click.echo(f"  {failure}")
    passed = sum(1 for o in outcomes if o.passed)
    failed = len(outcomes) - passed
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or not outcomes else 0)


@click.command()
@click.option("--shops", "shops", is_flag=True, help="The shops file's schema instead.")
def schema(shops: bool) -> None:
    """Print the JSON Schema of rule files (for editors)."""
    click.echo(json.dumps(shops_json_schema() if shops else json_schema(), indent=2))


@click.command("docs")
@click.option("--output", type=click.Path(), default="docs/rules.md", show_default=True)
@click.option("--check", is_flag=True, help="Exit 1 if the file is not up to date.")
def docs_command(output: str, check: bool) -> None:
    """Write the rule format reference (docs/rules.md) from the schema declaration."""
    text = docs.render()
    path = Path(output)
    if check:
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != text:
            click.echo(f"{output} is out of date: run 'hookmap docs'", err=True)
            sys.exit(1)
        click.echo(f"{output} is up to date")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}")
