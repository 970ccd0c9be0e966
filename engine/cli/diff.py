"""``hookmap diff``: what a rule change does to real traffic, before it ships.

Old and new rules are loaded as every command loads them; stored webhooks (a page at a
time, as replay reads them) or a folder of payload files go through
``engine.pipeline.process`` once per side, and ``engine.impact`` compares the results.
Nothing is written and nothing is sent; lookups are answered by ``--mock`` files, and
reach the platform's API only with ``--live``.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from engine.cli.inputs import parse_since, read_mocks, when
from engine.cli.options import (
    data_option,
    evaluator_from_context,
    open_store,
    print_diagnostics,
    shop_option,
)
from engine.errors import HookmapError, UsageError
from engine.impact import SameAnswers, Side, Tally, fits, run_side
from engine.lookups import Fetcher, HttpFetcher, MockFetcher
from engine.rules import compiler
from engine.rules.discovery import Group, discover
from engine.rules.model import RuleSet
from engine.server.processor import as_webhook
from engine.server.running import RunningRules, read_running
from engine.webhook import Webhook, read_webhook_file, webhook_files

#: why a lookup failed when neither --mock nor --live answers it
UNANSWERED = "no answer for this lookup: give --mock NAME=FILE, or --live to ask the platform"
#: a value wider than this is cut in the side-by-side table (--json has it whole)
CELL = 40


def _load(groups: Sequence[Group], side: str) -> compiler.LoadResult:
    result = compiler.load_groups(groups, evaluator=evaluator_from_context(), with_tests=False)
    if not result.ok:
        print_diagnostics(result.diagnostics)
        errors = sum(1 for d in result.diagnostics if d.severity == "error")
        raise UsageError(f"the {side} rules have {errors} error(s): see above")
    return result


def _identity(group: Group) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    return tuple(f.name for f in group.files), group.texts


def _unchanged(old: compiler.LoadResult, new: compiler.LoadResult) -> set[str]:
    """Rule sets compiled from the same texts on both sides (files of the same names,
    wherever they are): their webhooks are evaluated once, and can only be unchanged."""
    before = {r.name: _identity(g) for r, g in zip(old.rulesets, old.sources, strict=True)}
    return {
        r.name
        for r, g in zip(new.rulesets, new.sources, strict=True)
        if before.get(r.name) == _identity(g)
    }


def _pick(
    path: Path, webhook: Webhook, source: str | None, sides: Sequence[Mapping[str, RuleSet]]
) -> str | None:
    """The rule set of a payload file: --source, the only one, else the first with a rule
    for its topic, trying the one named like its folder (examples/shopify/) first, then
    those whose topic header it carries, then the rest by name."""
    if source is not None:
        return source
    rulesets = {n: r for side in reversed(sides) for n, r in side.items()}
    if len(rulesets) == 1:
        return next(iter(rulesets))
    order = sorted(
        rulesets.values(),
        key=lambda r: (
            r.name != path.parent.name,
            r.topic_header is None or r.topic_header not in webhook.headers,
            r.name,
        ),
    )
    return next((r.name for r in order if fits(r, webhook)), None)


def _cell(value: Any, present: bool) -> str:
    if not present:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def _event_line(mark: str, label: str, view: dict[str, Any]) -> str:
    state = "SEND" if view["sent"] else "DROP " + ", ".join(view["problems"])
    where = f" ({view['where']})" if view["where"] else ""
    return f"  {mark} {label} {view['rule']}[{view['index']}] {state}{where}"


def _example_lines(example: dict[str, Any]) -> list[str]:
    kind, label = example["kind"], example["webhook"]
    if kind != "changed":
        view = example["new"] if kind == "appeared" else example["old"]
        return [_event_line("+" if kind == "appeared" else "-", label, view)]
    old, new = example["old"], example["new"]
    renamed = f" (rule was {old['rule']})" if old["rule"] != new["rule"] else ""
    lines = [_event_line("~", label, new) + renamed]
    fields = example["fields"]
    width = max(len("field"), *(len(f["field"]) for f in fields))
    lines.append(f"      {'field':<{width}}  {'old':<{CELL}}  new")
    for f in fields:
        left = _cell(f["old"], f["in_old"])
        lines.append(f"      {f['field']:<{width}}  {left:<{CELL}}  {_cell(f['new'], f['in_new'])}")
    return lines


def _text_report(doc: dict[str, Any], examples: int) -> str:
    lines = [f"old: {doc['old']['described']}", f"new: {doc['new']['described']}"]
    lines.append(f"webhooks: {doc['input']['described']}")
    if doc["identical_rulesets"]:
        lines.append("the same on both sides: " + ", ".join(doc["identical_rulesets"]))
    quiet = []
    for group in doc["groups"]:
        head = f"{group['ruleset']} · {group['topic'] or '(no topic)'} · {group['eventTypeKey']}"
        kinds = [k for k in ("changed", "appeared", "disappeared") if group[k]]
        if not kinds:
            quiet.append(f"  {head}: {group['unchanged']}")
            continue
        counts = ", ".join(f"{group[k]} {k}" for k in kinds)
        lines.extend(("", f"{head}: {counts}, {group['unchanged']} unchanged"))
        if group["fields"]:
            fields = ", ".join(f"{k} ({n})" for k, n in group["fields"].items())
            lines.append(f"  what changed: {fields}")
        for example in group["examples"]:
            lines.extend(_example_lines(example))
        rest = sum(group[k] for k in kinds) - len(group["examples"])
        if rest > 0:
            lines.append(f"  ... and {rest} more (--examples N shows more)")
    if quiet:
        lines.extend(("", "unchanged (same events on both sides):", *quiet))
    failed = doc["webhooks"]["failed"]
    if any(failed.values()):
        lines.append("")
        lines.append(
            f"not processed: {failed['new']} webhook(s) with the new rules only, "
            f"{failed['old']} with the old only, {failed['both']} with both"
        )
        for f in doc["failures"][:examples]:
            if f["old"] == f["new"]:
                lines.append(f"  {f['webhook']} ({f['ruleset']}), both: {f['new']}")
                continue
            for side in ("old", "new"):
                if f[side] is not None:
                    lines.append(f"  {f['webhook']} ({f['ruleset']}), {side}: {f[side]}")
        rest = sum(failed.values()) - min(examples, len(doc["failures"]))
        if rest > 0:
            lines.append(f"  ... and {rest} more")
    totals = doc["totals"]
    lines.append("")
    lines.append(
        f"{doc['webhooks']['compared']} webhook(s) compared, {doc['webhooks']['changed']} "
        f"changed; events: {totals['changed']} changed, {totals['appeared']} appeared, "
        f"{totals['disappeared']} disappeared, {totals['unchanged']} unchanged"
    )
    return "\n".join(lines)


def _running_groups(data_dir: str) -> tuple[tuple[Group, ...], dict[str, Any]]:
    servers = read_running(data_dir)
    first = servers[0]
    for other in servers[1:]:
        if other.groups != first.groups:
            raise UsageError(
                f"{len(servers)} servers run on {data_dir}/ with different rules "
                f"(pids {', '.join(s.pid for s in servers)}): compare with --against PATH"
            )
    return first.groups, _describe_server(first, data_dir)


def _describe_server(server: RunningRules, data_dir: str) -> dict[str, Any]:
    return {
        "rules": list(server.paths),
        "server": {"id": server.server, "pid": server.pid, "loaded_at": server.loaded_at},
        "described": (
            f"the rules the server on {data_dir}/ runs (pid {server.pid}, loaded "
            f"{when(server.loaded_at)}: {', '.join(server.paths)})"
        ),
    }


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Any]:
    """A progress bar on stderr (a terminal only) with the count, the rate, the time left."""
    started = time.monotonic()
    made: list[Any] = []  # the bar, once made: click asks for the rate while making it

    def rate(_: Any) -> str:
        seconds = time.monotonic() - started
        done = made[0].pos if made else 0
        return f"{done / seconds:,.0f}/s" if seconds > 0 and done else ""

    with click.progressbar(
        length=total,
        label="comparing",
        file=sys.stderr,
        show_pos=True,
        show_eta=True,
        item_show_func=rate,
        hidden=not sys.stderr.isatty(),
    ) as bar:
        made.append(bar)
        yield bar


@click.command("diff")
@click.option(
    "--rules",
    "rules_paths",
    multiple=True,
    required=True,
    type=click.Path(exists=True),
    help="The new rules: file or folder (repeatable).",
)
@click.option(
    "--against",
    "against_paths",
    multiple=True,
    type=click.Path(exists=True),
    help="The old rules to compare with: file or folder (repeatable).",
)
@click.option(
    "--against-running",
    is_flag=True,
    help="Compare with the rules the server running on --data loaded (as it loaded them).",
)
@click.option("--since", help="Stored webhooks received since (7d, 2h, ISO date-time).")
@click.option(
    "--webhooks-from",
    type=click.Path(exists=True, file_okay=False),
    help="A folder of payloads instead: NAME.json (or .txt) beside NAME.headers.",
)
@click.option("--source", help="Only this rule set's webhooks (stored); the rule set (folder).")
@shop_option
@data_option
@click.option(
    "--mock",
    "mocks",
    multiple=True,
    metavar="LOOKUP=FILE",
    help="Answer a lookup from a JSON file (repeatable); no API is called without --live.",
)
@click.option("--live", is_flag=True, help="Let lookups call the platforms' APIs.")
@click.option(
    "--examples", default=3, show_default=True, type=click.IntRange(0), help="Shown per group."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (for CI).")
def diff_command(
    rules_paths: tuple[str, ...],
    against_paths: tuple[str, ...],
    against_running: bool,
    since: str | None,
    webhooks_from: str | None,
    source: str | None,
    shop: str | None,
    data_dir: str,
    mocks: tuple[str, ...],
    live: bool,
    examples: int,
    as_json: bool,
) -> None:
    """Show what new rules change in the events real webhooks become.

    Runs stored webhooks (--since) or a folder of payloads (--webhooks-from) through the
    old rules (--against PATH, or --against-running) and the new (--rules), and shows,
    per rule set, topic and event type, the events that appear, disappear or change,
    with each changed field old beside new. Writes nothing, sends nothing. Exit 0: no
    change; 1: changes; 2: usage.
    """
    if bool(against_paths) == against_running:
        raise UsageError("give the old rules: --against PATH or --against-running (one of them)")
    if (since is None) == (webhooks_from is None):
        raise UsageError("give the webhooks: --since TIME or --webhooks-from DIR (one of them)")
    if shop is not None and webhooks_from is not None:
        raise UsageError("--shop picks stored webhooks: use it with --since, not --webhooks-from")
    moment = None if since is None else parse_since(since)
    if against_running:
        old_groups, old_doc = _running_groups(data_dir)
    else:
        old_groups = tuple(discover(against_paths))
        old_doc = {"rules": list(against_paths), "described": ", ".join(against_paths)}
    old = _load(old_groups, "old")
    new = _load(discover(rules_paths), "new")
    sides = ({r.name: r for r in old.rulesets}, {r.name: r for r in new.rulesets})
    identical = _unchanged(old, new)
    fetcher: Fetcher | None = MockFetcher(read_mocks(mocks)) if mocks else None
    tally = Tally(examples)
    with contextlib.ExitStack() as stack:
        if live:
            fetcher = stack.enter_context(contextlib.closing(HttpFetcher()))
        answers = SameAnswers(fetcher, UNANSWERED)

        def one(label: str, name: str | None, webhook: Webhook) -> None:
            answers.next_webhook()
            if name is None:
                why = "no rule set has a rule for its topic (or give --source)"
                tally.add(label, "?", Side(error=why), Side(error=why))
                return
            old_side = run_side(sides[0].get(name), webhook, answers, f"no rule set '{name}'")
            new_side = (
                old_side
                if name in identical
                else run_side(sides[1].get(name), webhook, answers, f"no rule set '{name}'")
            )
            tally.add(label, name, old_side, new_side)

        if webhooks_from is not None:
            files = webhook_files(Path(webhooks_from))
            described = f"{len(files)} payload file(s) in {webhooks_from}"
            with _progress(len(files)) as bar:
                for path in files:
                    try:
                        webhook = read_webhook_file(path)
                    except HookmapError as exc:
                        tally.add(str(path), "?", Side(error=str(exc)), Side(error=str(exc)))
                    else:
                        one(str(path), _pick(path, webhook, source, sides), webhook)
                    bar.update(1)
        else:
            assert moment is not None
            store = stack.enter_context(open_store(data_dir))
            total = store.count_webhooks_since(moment, source=source, shop=shop)
            described = (
                f"{total} stored in {data_dir}/ since {when(moment)}"
                + (f", source {source}" if source else "")
                + (f", shop {shop}" if shop else "")
            )
            with _progress(total) as bar:
                for page in store.iter_webhooks_since(moment, source=source, shop=shop):
                    for stored in page:
                        one(f"#{stored.id}", stored.source, as_webhook(stored))
                        bar.update(1)
    doc: dict[str, Any] = {
        "old": old_doc,
        "new": {"rules": list(rules_paths), "described": ", ".join(rules_paths)},
        "input": {
            "since": None if moment is None else when(moment),
            "webhooks_from": webhooks_from,
            "source": source,
            "shop": shop,
            "described": described,
        },
        "identical_rulesets": sorted(identical),
        "changed": tally.changed,
        **tally.as_dict(),
    }
    click.echo(
        json.dumps(doc, indent=2, ensure_ascii=False) if as_json else _text_report(doc, examples)
    )
    sys.exit(1 if tally.changed else 0)
