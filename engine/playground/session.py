"""What the playground page asks for: what there is to pick, and one run of rules edited as
text over a webhook pasted or picked.

A run is ``hookmap validate`` and ``hookmap dry-run --explain --curl`` at once: the
texts are loaded as the files they stand for (``compiler.load_groups``: the same
diagnostics, rendered the same, at their paths), the webhook goes through
``engine.pipeline.process``, and what comes back is ``engine.report``'s documents
plus one card per event for the page to show. The rule tests declared in the texts
run too. Nothing is sent: there is no client for the CDP here at all, and lookups are
answered from the mocks given, as ``dry-run --mock`` answers them: one without an
answer is named with its URL (every one the webhook needs, in one run) rather than
shown made from a null answer, unless the playground was started with ``--live``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine import report, ruletests
from engine.errors import Diagnostic, HookmapError, UsageError
from engine.events.destination import Destination
from engine.lookups import HttpFetcher, OfflineFetcher
from engine.pipeline import process
from engine.playground.app import Handlers
from engine.results import EventResult, Result
from engine.rules import compiler
from engine.rules.codegen import COMPILED
from engine.rules.discovery import RULESET_FILE, Group, discover, display
from engine.webhook import Webhook, parse_header_lines, webhook_files

#: environment variables kept from the rules unless --live: credentials never reach the
#: page (a pasted rule could name any variable; those fall back to their defaults)
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASS|CREDENTIAL|AUTH|PRIVATE|COOKIE", re.I)
#: more files than a rule set has (shipped ones have four)
MAX_FILES = 50


def safe_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variables whose names say they hold a credential."""
    return {k: v for k, v in env.items() if not SECRET_NAME.search(k)}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What ``hookmap playground`` was started with."""

    rules: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()
    #: let lookups call the platforms' APIs (and the rules read every variable)
    live: bool = False
    env: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(os.environ))

    @property
    def rules_env(self) -> Mapping[str, str]:
        return self.env if self.live else safe_env(self.env)

    def destination(self) -> Destination:
        """Where requests would go, shown in the curl commands; no key: nothing is sent."""
        return Destination(Destination.from_env(self.env).base_url)


def _name(group: Group) -> str:
    return group.folder.name if group.folder is not None else group.files[0].stem


def catalog(settings: Settings) -> dict[str, Any]:
    """The rule sets (their files' texts) and example webhooks the page offers; each
    example comes with the lookup answers a rule test of the given rules mocks for it."""
    loaded = compiler.load(list(settings.rules), settings.rules_env, COMPILED)
    named = {g.files: r.name for r, g in zip(loaded.rulesets, loaded.sources, strict=True)}
    rulesets = []
    for group in discover(settings.rules):
        files = []
        for path in group.files:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                files.append({"path": display(path), "text": path.read_text(encoding="utf-8")})
        rulesets.append({"name": named.get(group.files) or _name(group), "files": files})
    mocks = _mocks_by_file(loaded)
    webhooks = []
    for folder in settings.webhooks:
        for path in webhook_files(Path(folder)):
            headers = path.with_suffix(".headers").read_text(encoding="utf-8", errors="replace")
            webhooks.append(
                {
                    "name": display(path),
                    "source": path.parent.name,
                    "body": path.read_bytes().decode("utf-8", errors="replace"),
                    "headers": headers,
                    "mocks": mocks.get(path.resolve()),
                }
            )
    return {"rulesets": rulesets, "webhooks": webhooks, "live": settings.live}


def _mocks_by_file(loaded: compiler.LoadResult) -> dict[Path, str]:
    """Webhook file → the mocks (as JSON text) of the first rule test that names it."""
    found: dict[Path, str] = {}
    for ruleset in loaded.rulesets:
        for test in ruleset.tests:
            if test.body_file is None or not test.mocks or test.where is None:
                continue
            path = (Path(test.where.file).parent / test.body_file).resolve()
            found.setdefault(path, json.dumps(test.mocks, indent=2, ensure_ascii=False))
    return found


def _text(doc: Mapping[str, Any], key: str, limit: int = 4 * 1024 * 1024) -> str:
    value = doc.get(key) or ""
    if not isinstance(value, str) or len(value) > limit:
        raise UsageError(f"'{key}' must be text (at most {limit} characters)")
    return value


def _group(files: Any) -> Group:
    if not isinstance(files, list) or not files or len(files) > MAX_FILES:
        raise UsageError(f"'files' must list 1 to {MAX_FILES} rule files")
    paths, texts = [], []
    for index, item in enumerate(files):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise UsageError(f"files[{index}] must have a 'path' and a 'text'")
        path = item["path"].strip() or "playground.yaml"
        paths.append(Path(path))
        texts.append(_text(item, "text"))
    folder = next((p.parent for p in paths if p.name == RULESET_FILE), None)
    return Group(tuple(paths), folder, tuple(texts))


def _diagnostic(d: Diagnostic) -> dict[str, Any]:
    return {**d.as_dict(), "rendered": d.render()}


def _card(event: EventResult, version: str, destination: Destination) -> dict[str, Any]:
    """Everything the page shows of one event, in one place."""
    card: dict[str, Any] = {
        "rule": event.rule,
        "index": event.index,
        "eventTypeKey": event.event_type,
        "sent": event.ok,
        "where": None if event.where is None else str(event.where),
        "contact": report.contact_text(event),
        "problems": [{**p.as_dict(), "line": report.problem_line(p)} for p in event.problems],
        "params": [
            {
                "name": t.name,
                "expression": t.source,
                "value": t.value,
                "outcome": t.outcome,
                "where": None if t.where is None else str(t.where),
            }
            for t in event.traces
        ],
        "body": event.body if event.ok else None,
        "curl": None,
        "contact_curl": None,
    }
    if event.ok and event.body is not None:
        card["curl"] = report.curl_command(destination.event_url(version), event.body)
        if event.contact_request is not None:
            url = f"{destination.base_url}/v1/contact"
            card["contact_curl"] = report.curl_command(url, event.contact_request)
    return card


def _tests(loaded: compiler.LoadResult) -> dict[str, Any]:
    outcomes = ruletests.run_all(loaded.rulesets)
    return {
        "passed": sum(1 for o in outcomes if o.passed),
        "failed": [
            {"id": o.id, "where": None if o.where is None else str(o.where), "failures": o.failures}
            for o in outcomes
            if not o.passed
        ],
    }


def _fetcher(settings: Settings, mocks_text: str) -> OfflineFetcher:
    """The page's mocks first (as dry-run's --mock), the APIs only with --live."""
    try:
        mocks = json.loads(mocks_text) if mocks_text.strip() else {}
    except ValueError as exc:
        raise UsageError(f"lookup answers (mocks): not JSON: {exc}") from exc
    if not isinstance(mocks, dict):
        raise UsageError("lookup answers (mocks): a JSON object of lookup name → answer")
    return OfflineFetcher(mocks, HttpFetcher() if settings.live else None)


def _unanswered(missing: list[tuple[str, str]]) -> str:
    """Why no events are shown: the lookups that had no answer, and how to give them."""
    names = list(dict.fromkeys(name for name, _ in missing))
    asked = "; ".join(f"{name} (GET {url})" for name, url in dict.fromkeys(missing))
    shape = ", ".join(f'"{n}": ...' for n in names)
    return (
        f"no answer for lookup(s) {asked}: give each as JSON under Lookup answers, "
        f"{{{shape}}} (the events would be made from null answers)"
    )


def handlers(settings: Settings) -> Handlers:
    """The app's endpoints, bound to ``settings``."""
    return Handlers(lambda: catalog(settings), lambda request: run(settings, request))


def run(settings: Settings, request: Mapping[str, Any]) -> dict[str, Any]:
    """One run of the page's rules over its webhook (see the module's docstring)."""
    out: dict[str, Any] = {
        "diagnostics": [],
        "ruleset": None,
        "tests": None,
        "result": None,
        "cards": [],
        "report": None,
        "error": None,
    }
    try:
        group = _group(request.get("files"))
        loaded = compiler.load_groups([group], settings.rules_env, COMPILED)
    except HookmapError as exc:
        out["error"] = str(exc)
        return out
    order = sorted(loaded.diagnostics, key=_order)
    out["diagnostics"] = [_diagnostic(d) for d in order]
    if not loaded.rulesets:
        errors = sum(1 for d in order if d.severity == "error")
        out["error"] = f"the rules have {errors} error(s): nothing can run until they are fixed"
        return out
    ruleset = loaded.rulesets[0]
    out["ruleset"] = ruleset.name
    out["tests"] = _tests(loaded)
    webhook_doc = request.get("webhook") or {}
    try:
        if not isinstance(webhook_doc, dict):
            raise UsageError("'webhook' must be an object")
        headers = parse_header_lines(_text(webhook_doc, "headers").splitlines(), "headers")
        topic = _text(webhook_doc, "topic").strip() or None
        body = _text(webhook_doc, "body").encode("utf-8")
        webhook = Webhook(body, headers, topic, "webhook")
        fetcher = _fetcher(settings, _text(webhook_doc, "mocks"))
        try:
            result = process(ruleset, webhook, fetcher=fetcher)
        finally:
            fetcher.close()
    except HookmapError as exc:
        out["error"] = str(exc)
        return out
    if fetcher.missing:
        return {
            **out,
            "error": _unanswered(fetcher.missing),
            **_unanswered_documents(result, fetcher.missing),
        }
    return {**out, **_documents(result, settings.destination())}


def _unanswered_documents(result: Result, missing: list[tuple[str, str]]) -> dict[str, Any]:
    """A run whose lookups had no answer: which rules matched, what to give (``needs_mock``,
    as dry-run --json has it), no events (they were made from null answers)."""
    explain = report.result_json(result, "webhook", explain=True)["explain"]
    doc = report.missing_mocks_json(result, "webhook", missing)
    names = ", ".join(dict.fromkeys(name for name, _ in missing))
    summary = f"not evaluated: no answer for lookup(s) {names} under Lookup answers"
    return {"result": {**doc, "summary": summary, "explain": {**explain, "params": []}}}


def _documents(result: Result, destination: Destination) -> dict[str, Any]:
    return {
        "result": report.result_json(result, "webhook", explain=True),
        "cards": [_card(e, result.api_version, destination) for e in result.events],
        "report": report.result_text(result, "webhook", destination, explain=True),
    }


def _order(d: Diagnostic) -> tuple[str, int, int]:
    loc = d.location
    return (loc.file, loc.line, loc.col) if loc else ("", 0, 0)
