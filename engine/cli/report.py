"""How results are shown: dry-run summaries, ``--explain``, ``--curl`` and JSON documents."""

from __future__ import annotations

import json
from typing import Any

from engine.errors import LookupFailed, Problem
from engine.events.destination import API_KEY_ENV, USER, Destination
from engine.events.encode import body_bytes
from engine.results import EventResult, Result


def _problem_line(p: Problem) -> str:
    param = f" {p.param}" if p.param else ""
    where = f"  ({p.where})" if p.where else ""
    return f"{p.severity}[{p.code}]{param}: {p.message}{where}"


def contact_text(event: EventResult) -> str:
    if event.contact is None:
        return "contact: none"
    c = event.contact
    return (
        f"contact: {c.by} {c.name}={c.value!r}"
        if c.by == "param"
        else (f"contact: keyValue={c.value!r}")
    )


def result_json(result: Result, origin: str, explain: bool = False) -> dict[str, Any]:
    """The ``--json`` document: events exactly as sent, dropped events with their problems."""
    doc: dict[str, Any] = {
        "events": result.sent,
        "dropped": [
            {
                "rule": e.rule,
                "index": e.index,
                "eventTypeKey": e.event_type,
                "where": str(e.where) if e.where else None,
                "problems": [p.as_dict() for p in e.problems],
            }
            for e in result.dropped
        ],
        "ruleset": result.ruleset,
        "api_version": result.api_version,
        "topic": result.topic,
        "matched": [r.rule for r in result.rules if r.matched],
        "summary": result.summary(),
        "webhook": origin,
        "details": [
            {
                "rule": e.rule,
                "index": e.index,
                "eventTypeKey": e.event_type,
                "sent": e.ok and e.held is None,
                **_change_json(e),
                "contact": None
                if e.contact is None
                else {"by": e.contact.by, "name": e.contact.name, "value": e.contact.value},
                "warnings": [p.as_dict() for p in e.warnings],
                "contact_request": e.contact_request,
            }
            for e in result.events
        ],
        "held": [
            {"rule": e.rule, "index": e.index, "eventTypeKey": e.event_type, "reason": e.held}
            for e in result.held
        ],
        "lookups": [
            {"name": lk.name, "url": lk.url, "answer": lk.answer}
            if lk.skipped is None
            else {"name": lk.name, "url": lk.url, "skipped": lk.skipped}
            for lk in result.lookups
        ],
    }
    if explain:
        doc["explain"] = {
            "rules": [
                {
                    "rule": r.rule,
                    "matched": r.matched,
                    "reason": r.reason,
                    "where": str(r.where) if r.where else None,
                }
                for r in result.rules
            ],
            "skipped": list(result.skipped),
            "params": [
                {
                    "rule": e.rule,
                    "index": e.index,
                    "eventTypeKey": e.event_type,
                    "params": [
                        {
                            "name": t.name,
                            "expression": t.source,
                            "value": t.value,
                            "outcome": t.outcome,
                            "where": str(t.where) if t.where else None,
                        }
                        for t in e.traces
                    ],
                }
                for e in result.events
            ],
        }
    return doc


def result_text(
    result: Result, origin: str, destination: Destination, explain: bool = False, curl: bool = False
) -> str:
    """The readable dry-run report of one webhook."""
    lines = [
        f"{origin}: rule set '{result.ruleset}' ({result.api_version}), "
        f"topic {result.topic or '(none)'}"
    ]
    for lk in result.lookups:
        if lk.skipped is not None:
            lines.append(f"  lookup {lk.name}: not made: {lk.skipped}")
            continue
        lines.append(f"  lookup {lk.name}: GET {lk.url}")
        if explain:
            answer = json.dumps(lk.answer, ensure_ascii=False)
            lines.append(f"    -> {answer[:300] + '...' if len(answer) > 300 else answer}")
    if explain:
        for r in result.rules:
            mark = "matched" if r.matched else "skipped"
            where = f"  [{r.where}]" if r.where else ""
            lines.append(f"  rule {r.rule}: {mark}: {r.reason}{where}")
            if r.matched and r.ignored:
                lines.append(f"    ignored: {r.ignored}")
        for reason in result.skipped:
            lines.append(f"  no event: {reason}")
    url = destination.event_url(result.api_version)
    for e in result.events:
        status = "DROP" if not e.ok else "HOLD" if e.held else "SEND"
        lines.append(
            f"  {status} {e.event_type} #{e.index} (rule {e.rule}"
            f"{f', {e.where}' if e.where else ''}) {contact_text(e)}"
        )
        if e.held:
            lines.append(f"    held back: {e.held}")
        for p in e.problems:
            lines.append(f"    {_problem_line(p)}")
        change = e.change
        if explain and change is not None:
            lines.append(
                f"    changes: entity {change.entity!r}, values {change.fingerprint[:12]}: "
                + (
                    "held back (the last sent were the same)"
                    if e.held
                    else "sent unless the "
                    "last values sent for it were the same (the server remembers them)"
                )
            )
        if explain:
            for t in e.traces:
                value = json.dumps(t.value, ensure_ascii=False)
                if len(value) > 120:
                    value = value[:117] + "..."
                lines.append(
                    f"    {t.name} = {value}  [{t.outcome}] <- {t.source}"
                    f"{f'  ({t.where})' if t.where else ''}"
                )
        if e.held:
            continue
        if e.ok and e.contact_request is not None:
            contact_url = f"{destination.base_url}/v1/contact"
            lines.append("    first, unless hookmap created this contact before:")
            if curl:
                lines.append(curl_command(contact_url, e.contact_request))
            else:
                lines.append(f"    POST {contact_url}")
                lines.append(f"    {json.dumps(e.contact_request, ensure_ascii=False)}")
        if e.ok and e.body is not None:
            if curl:
                # not indented: the heredoc's closing word must start its line
                lines.append(curl_command(url, e.body))
            else:
                lines.append(f"    POST {url}")
                lines.append(_indent(pretty_body(e.body), 4))
    lines.append(f"  {result.summary()}")
    return "\n".join(lines)


def mock_option(name: str) -> str:
    """The option that answers lookup ``name`` from a file (its JSON answer)."""
    return f"--mock {name}=FILE"


def missing_mocks_text(result: Result, origin: str, missing: list[tuple[str, str]]) -> str:
    """Dry-run's report of a webhook whose lookups have no mock: what to pass, not events."""
    lines = [
        f"{origin}: rule set '{result.ruleset}' ({result.api_version}), "
        f"topic {result.topic or '(none)'}"
    ]
    for name, url in missing:
        lines.append(f"  NO ANSWER lookup {name}: GET {url}")
        lines.append(
            f"    dry-run calls no platform API: pass {mock_option(name)} (a JSON file "
            "holding that GET's answer), or --live to call the API"
        )
    lines.append(f"  {_missing_summary(missing)}")
    return "\n".join(lines)


def missing_mocks_json(
    result: Result, origin: str, missing: list[tuple[str, str]]
) -> dict[str, Any]:
    """The ``--json`` document of a webhook whose lookups have no mock."""
    return {
        "events": [],
        "dropped": [],
        "ruleset": result.ruleset,
        "api_version": result.api_version,
        "topic": result.topic,
        "summary": _missing_summary(missing),
        "webhook": origin,
        "needs_mock": [
            {"lookup": name, "url": url, "option": mock_option(name)} for name, url in missing
        ],
    }


def _missing_summary(missing: list[tuple[str, str]]) -> str:
    names = list(dict.fromkeys(name for name, _ in missing))
    options = " ".join(mock_option(name) for name in names)
    return f"not evaluated: no answer for lookup(s) {', '.join(names)}: pass {options}, or --live"


def lookup_failed_text(exc: LookupFailed, origin: str, ruleset: str) -> str:
    """A lookup that failed (``--live``, or a mock lacking the URL asked), and the way out."""
    return (
        f"{origin}: rule set '{ruleset}': {exc}\n"
        f"  answer it from a file instead: {mock_option(exc.name)} (the server keeps such a "
        "webhook and tries again later)"
    )


def lookup_failed_json(exc: LookupFailed, origin: str, ruleset: str) -> dict[str, Any]:
    return {
        "events": [],
        "dropped": [],
        "ruleset": ruleset,
        "summary": f"not evaluated: {exc}",
        "webhook": origin,
        "lookup_failed": {
            "lookup": exc.name,
            "url": exc.url,
            "reason": exc.reason,
            "option": mock_option(exc.name),
        },
    }


def pretty_body(body: dict[str, Any]) -> str:
    """The request body as JSON with one param per line: exact, and still readable."""
    head = {k: v for k, v in body.items() if k != "params"}
    text = json.dumps(head, ensure_ascii=False)[:-1]
    params = [json.dumps(p, ensure_ascii=False) for p in body.get("params", [])]
    if not params:
        return text + ', "params": []}'
    return text + ', "params": [\n  ' + ",\n  ".join(params) + "\n]}"


def curl_command(url: str, body: dict[str, Any]) -> str:
    """The exact request as a curl command; the key comes from the environment, never shown."""
    payload = body_bytes(body).decode("utf-8")
    return (
        f"curl -sS -X POST '{url}' \\\n"
        f'  -u "{USER}:${API_KEY_ENV}" \\\n'
        "  -H 'Content-Type: application/json; charset=UTF-8' \\\n"
        "  -H 'Accept: application/json' \\\n"
        "  --data-binary @- <<'HOOKMAP_BODY'\n"
        f"{payload}\n"
        "HOOKMAP_BODY"
    )


def _indent(text: str, width: int) -> str:
    pad = " " * width
    return "\n".join(pad + line for line in text.splitlines())


def _change_json(event: EventResult) -> dict[str, Any]:
    """``changes:`` in ``--json`` details: the entity and fingerprint, and why held."""
    change = event.change
    out: dict[str, Any] = {}
    if change is not None:
        out["changes"] = {"entity": change.entity, "fingerprint": change.fingerprint}
    if event.held is not None:
        out["held"] = event.held
    return out
