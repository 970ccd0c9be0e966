"""``hookmap capture``: rule-test fixtures from real traffic, without the people in it.

Each stored webhook becomes ``NAME.json`` (or ``.txt``) and ``NAME.headers``, as the
bundled examples are laid out: personal values replaced by shape-keeping fakes
(``engine.scrub``), signatures and credentials by ``PLACEHOLDER``. With ``--rules``,
the webhook is run through the current rules (``engine.pipeline.process``, as
``hookmap test`` will) and the rule test that expects what they make of it is
printed, or added to ``--tests FILE``; the answers its lookups get (``--mock``,
``--live``) are scrubbed with the same fakes and written beside it under ``api/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from engine.cli.inputs import read_mocks
from engine.cli.options import data_option, load_clean, open_store
from engine.decoders import decode
from engine.errors import HookmapError, UsageError
from engine.impact import SameAnswers
from engine.lookups import Fetcher, HttpFetcher, MockFetcher
from engine.pipeline import find_topic, process
from engine.results import Result
from engine.rules.model import RuleSet
from engine.rules.testfile import add_cases, case_text, expectation
from engine.scrub import Scrubber, header_lines
from engine.server.processor import as_webhook
from engine.server.store.rows import StoredWebhook
from engine.webhook import Webhook

#: why a lookup failed when neither --mock nor --live answers it
UNANSWERED = "no answer for this lookup: give --mock LOOKUP=FILE, or --live to ask the platform"


def topic_of(webhook: StoredWebhook, ruleset: RuleSet | None) -> str | None:
    """The stored webhook's topic, or the one its rule set reads in it (a webhook not
    processed yet has none stored)."""
    if webhook.topic is not None or ruleset is None:
        return webhook.topic
    try:
        decoded = decode(as_webhook(webhook), ruleset.decode)
    except HookmapError:
        return None
    return find_topic(ruleset, as_webhook(webhook), decoded.data, decoded.envelope)


def file_name(webhook: StoredWebhook, topic: str | None) -> str:
    """``orders/create`` → ``orders-create-17``, as examples/README.md names files."""
    slug = re.sub(r"[^A-Za-z0-9_]+", "-", topic or "webhook").strip("-")
    return f"{slug or 'webhook'}-{webhook.id}"


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _expect(result: Result) -> dict[str, Any]:
    if not result.matched:
        return {"unmatched": True}
    if result.ignored and not result.events:
        return {"ignored": True}
    dropped = [
        {
            "eventTypeKey": e.event_type,
            "rule": e.rule,
            "problems": sorted({p.code for p in e.problems if p.severity == "error"}),
        }
        for e in result.dropped
    ]
    return dict(expectation(result.sent, dropped))


def _unique(name: str, taken: set[str]) -> str:
    found, n = name, 2
    while found in taken:
        found, n = f"{name} ({n})", n + 1
    taken.add(found)
    return found


class _Capture:
    """One webhook's fixture: its files' texts, what was replaced, and its rule test."""

    def __init__(
        self,
        webhook: StoredWebhook,
        topic: str | None,
        name: str,
        target: Path,
        extra: frozenset[str],
    ):
        self.webhook = webhook
        self.topic = topic
        self.name = name
        self.scrubber = Scrubber(extra)
        content_type = webhook.headers.get("content-type", "")
        self.body = self.scrubber.body(webhook.body, content_type)
        self.headers, self.hidden = self.scrubber.headers(webhook.headers)
        suffix = ".json" if _is_json(self.body) else ".txt"
        self.body_path = target / f"{name}{suffix}"
        self.headers_path = target / f"{name}.headers"
        #: lookup name → (path, scrubbed answer text)
        self.mocks: dict[str, tuple[Path, str]] = {}
        self.case: dict[str, Any] | None = None
        self.test_error: str | None = None

    def files(self) -> list[Path]:
        return [self.body_path, self.headers_path, *(p for p, _ in self.mocks.values())]

    def expect(
        self, ruleset: RuleSet, fetcher: Fetcher | None, base: Path, taken: set[str]
    ) -> None:
        """The rule test: the original webhook fetches the lookups (their answers are
        scrubbed with the same fakes), then the fixture itself is run."""
        try:
            original = process(ruleset, as_webhook(self.webhook), fetcher=fetcher)
        except HookmapError as exc:
            self.test_error = str(exc)
            return
        answers: dict[str, Any] = {}
        for trace in original.lookups:
            answers.setdefault(trace.name, {})[trace.url] = trace.answer
        scrubbed: dict[str, Any] = {}
        for lookup, by_url in answers.items():
            value = next(iter(by_url.values())) if len(by_url) == 1 else by_url
            text = self.scrubber.json_text(json.dumps(value, indent=2, ensure_ascii=False))
            path = self.body_path.parent / "api" / f"{self.name}-{lookup}.json"
            self.mocks[lookup] = (path, text + "\n")
            scrubbed[lookup] = json.loads(text)
        fixture = Webhook(self.body, dict(self.headers), None, str(self.body_path))
        try:
            result = process(ruleset, fixture, fetcher=MockFetcher(scrubbed))
        except HookmapError as exc:  # the fake values broke something: say so, keep the files
            self.test_error = f"the fixture could not be processed: {exc}"
            return
        title = f"captured webhook #{self.webhook.id}: {result.topic or 'no topic'}"
        case: dict[str, Any] = {
            "name": _unique(title, taken),
            "webhook": os.path.relpath(self.body_path, base),
        }
        if self.mocks:
            case["mocks"] = {k: os.path.relpath(p, base) for k, (p, _) in self.mocks.items()}
        case["expect"] = _expect(result)
        self.case = case

    def write(self) -> None:
        self.body_path.parent.mkdir(parents=True, exist_ok=True)
        self.body_path.write_bytes(self.body)
        self.headers_path.write_text("".join(f"{line}\n" for line in header_lines(self.headers)))
        for path, text in self.mocks.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")

    def as_dict(self) -> dict[str, Any]:
        w = self.webhook
        return {
            "webhook": w.id,
            "source": w.source,
            "topic": self.topic,
            "body": str(self.body_path),
            "headers": str(self.headers_path),
            "replaced": dict(sorted(self.scrubber.counts.items())),
            "placeholders": self.hidden,
            "mocks": {k: str(p) for k, (p, _) in self.mocks.items()},
            "test": self.case,
            "test_error": self.test_error,
        }


def _taken_names(rulesets: Sequence[RuleSet], tests_file: Path | None) -> set[str]:
    taken = {t.name for r in rulesets for t in r.tests}
    if tests_file is not None and tests_file.is_file():
        with contextlib.suppress(Exception):
            taken |= set(re.findall(r"^\s*- name: (.+?)\s*$", tests_file.read_text("utf-8"), re.M))
    return taken


@click.command("capture")
@click.argument("webhook_ids", nargs=-1, required=True, type=int)
@click.option(
    "--to", "target", required=True, type=click.Path(file_okay=False), help="Folder to write."
)
@data_option
@click.option("--name", help="File name (without extension), for one webhook; else TOPIC-ID.")
@click.option(
    "--rules",
    "rules_paths",
    multiple=True,
    type=click.Path(exists=True),
    help="Also give the rule test expecting what these rules make of it (repeatable).",
)
@click.option(
    "--tests",
    "tests_file",
    type=click.Path(dir_okay=False),
    help="Add the rule tests to this file (its tests: list) instead of printing them.",
)
@click.option(
    "--mock",
    "mocks",
    multiple=True,
    metavar="LOOKUP=FILE",
    help="Answer a lookup from a JSON file (repeatable); written scrubbed beside the fixture.",
)
@click.option("--live", is_flag=True, help="Let lookups call the platforms' APIs.")
@click.option(
    "--scrub",
    "extra_keys",
    multiple=True,
    metavar="KEY",
    help="Also replace the text under this key (a note, a comment), keeping its shape.",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def capture_command(
    webhook_ids: tuple[int, ...],
    target: str,
    data_dir: str,
    name: str | None,
    rules_paths: tuple[str, ...],
    tests_file: str | None,
    mocks: tuple[str, ...],
    live: bool,
    extra_keys: tuple[str, ...],
    force: bool,
    as_json: bool,
) -> None:
    """Write stored webhooks as rule-test fixtures, personal data replaced by fakes.

    Each webhook ID (see 'hookmap webhooks', 'hookmap show ID') becomes NAME.json (or
    .txt) and NAME.headers in --to: e-mails, phones, names, addresses and IP addresses
    replaced by fakes of the same shape (the same fake for the same value within a
    webhook), signatures and credentials by PLACEHOLDER. With --rules, the rule test
    expecting what the rules make of the fixture is printed, or added to --tests FILE.
    """
    if name is not None and len(webhook_ids) != 1:
        raise UsageError("--name names one webhook's files: give one ID, or leave it out")
    if tests_file is not None and not rules_paths:
        raise UsageError("--tests needs --rules: the test expects what those rules make")
    if (mocks or live) and not rules_paths:
        raise UsageError("--mock and --live answer lookups for the rule test: give --rules")
    loaded = load_clean(rules_paths).rulesets if rules_paths else ()
    rulesets = {r.name: r for r in loaded}
    tests_path = None if tests_file is None else Path(tests_file)
    taken = _taken_names(loaded, tests_path)
    folder = Path(target)
    captured: list[_Capture] = []
    failed: list[dict[str, Any]] = []
    extra = frozenset(k.lower() for k in extra_keys)
    fetcher: Fetcher | None = MockFetcher(read_mocks(mocks)) if mocks else None
    with contextlib.ExitStack() as stack:
        if live:
            fetcher = stack.enter_context(contextlib.closing(HttpFetcher()))
        if fetcher is None:
            fetcher = SameAnswers(None, UNANSWERED)
        store = stack.enter_context(open_store(data_dir))
        for webhook_id in webhook_ids:
            detail = store.get_webhook(webhook_id)
            if detail is None:
                raise UsageError(f"no webhook #{webhook_id} in {data_dir}/")
            webhook = detail.webhook
            ruleset = rulesets.get(webhook.source)
            topic = topic_of(webhook, ruleset)
            try:
                capture = _Capture(webhook, topic, name or file_name(webhook, topic), folder, extra)
            except HookmapError as exc:
                failed.append({"webhook": webhook_id, "error": str(exc)})
                continue
            if rules_paths:
                if ruleset is None:
                    capture.test_error = f"no rule set '{webhook.source}' in --rules"
                else:
                    base = tests_path.parent if tests_path else Path(ruleset.files[0]).parent
                    capture.expect(ruleset, fetcher, base, taken)
            captured.append(capture)
    existing = [str(p) for c in captured for p in c.files() if p.exists()]
    if existing and not force:
        raise UsageError(f"would overwrite {', '.join(existing)} (use --force)")
    for capture in captured:
        capture.write()
    cases = [c.case for c in captured if c.case is not None]
    if tests_path is not None and cases:
        text = add_cases(tests_path, cases)
        tests_path.parent.mkdir(parents=True, exist_ok=True)
        tests_path.write_text(text, encoding="utf-8")
    if as_json:
        doc = {
            "captured": [c.as_dict() for c in captured],
            "tests_file": tests_file,
            "failed": failed,
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        _print(captured, failed, tests_file, cases)
    sys.exit(1 if failed or any(c.test_error for c in captured) else 0)


def _print(
    captured: Sequence[_Capture],
    failed: Sequence[dict[str, Any]],
    tests_file: str | None,
    cases: Sequence[dict[str, Any]],
) -> None:
    for c in captured:
        w = c.webhook
        click.echo(
            f"webhook #{w.id} ({w.source}, {c.topic or 'no topic'}) -> {c.body_path}, "
            f"{c.headers_path.name}"
        )
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(c.scrubber.counts.items()))
        click.echo(f"  replaced: {counts or 'nothing personal found'}")
        if c.hidden:
            click.echo(f"  PLACEHOLDER: {', '.join(c.hidden)}")
        for lookup, (path, _) in c.mocks.items():
            click.echo(f"  lookup {lookup} answer -> {path}")
        if c.test_error:
            click.echo(f"  no rule test: {c.test_error}")
        elif c.case is not None and tests_file:
            click.echo(f"  test '{c.case['name']}' added to {tests_file}")
    for f in failed:
        click.echo(f"webhook #{f['webhook']}: not captured: {f['error']}")
    if cases and not tests_file:
        click.echo("\n# rule tests to paste under 'tests:' (paths from the rule set's folder):")
        click.echo("".join(case_text(c) for c in cases), nl=False)
