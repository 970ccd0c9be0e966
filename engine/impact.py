"""Impact of a rule change: what the same webhooks become under old and new rules.

``hookmap diff`` runs every webhook through ``engine.pipeline.process`` twice, once per
side, and compares the two results here, event by event. An event is the same event on
both sides when it has the same (rule, index), as the server identifies events, and the
same event type; events left over on both sides are then paired by (event type, index),
in order, so renaming a rule reads as a change of that rule's events rather than as
every one of them disappearing and appearing again. Events of different types are
never paired: the report counts per event type, and an orderCancelled that becomes an
orderUpdated is one fewer of the first and one more of the second.

Two paired events are the same when the same request would be sent (the body's fields,
params by name: their order is not compared) or, for events the checks drop, the same
error problems stop them. What changed is said per param, old value beside new.

A ``Tally`` keeps counts per (rule set, topic, event type), how often each param
changed, and a few examples of each kind, never the events themselves: its memory does
not grow with the number of webhooks compared.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from engine.decoders import decode
from engine.errors import HookmapError, LookupFailed
from engine.lookups import Fetcher
from engine.pipeline import find_topic, process
from engine.results import EventResult, Result
from engine.rules.model import LookupSpec, RuleSet
from engine.webhook import Webhook

Kind = Literal["appeared", "disappeared", "changed", "unchanged"]
KINDS: tuple[Kind, ...] = ("appeared", "disappeared", "changed", "unchanged")


@dataclasses.dataclass(frozen=True)
class EventView:
    """One side's event, as compared: what would be sent, or what stops it."""

    rule: str
    index: int
    event_type: str
    sent: bool
    #: the request body when sent
    body: dict[str, Any] | None
    #: the error problems that drop it, as ``CODE param``
    problems: tuple[str, ...]
    where: str | None

    @classmethod
    def of(cls, event: EventResult) -> EventView:
        problems = tuple(
            f"{p.code} {p.param}" if p.param else p.code
            for p in event.problems
            if p.severity == "error"
        )
        where = None if event.where is None else str(event.where)
        body = event.body if event.ok else None
        return cls(event.rule, event.index, event.event_type, event.ok, body, problems, where)

    def params(self) -> dict[str, Any]:
        return {p.get("name"): p.get("value") for p in (self.body or {}).get("params") or ()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "index": self.index,
            "eventTypeKey": self.event_type,
            "sent": self.sent,
            "body": self.body,
            "problems": list(self.problems),
            "where": self.where,
        }


@dataclasses.dataclass(frozen=True)
class FieldChange:
    """One field of an event that differs: a param (``params.NAME``) or a body field."""

    field: str
    old: Any
    new: Any
    #: False where the field is absent on that side (its value then reads None)
    in_old: bool = True
    in_new: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "old": self.old,
            "new": self.new,
            "in_old": self.in_old,
            "in_new": self.in_new,
        }


@dataclasses.dataclass(frozen=True)
class EventChange:
    kind: Kind
    old: EventView | None
    new: EventView | None
    fields: tuple[FieldChange, ...] = ()

    @property
    def event_type(self) -> str:
        side = self.new or self.old
        assert side is not None
        return side.event_type


@dataclasses.dataclass(frozen=True)
class Side:
    """One webhook under one side's rules: the result, or why there is none."""

    result: Result | None = None
    error: str | None = None

    @property
    def events(self) -> list[EventView]:
        return [] if self.result is None else [EventView.of(e) for e in self.result.events]


def run_side(
    ruleset: RuleSet | None, webhook: Webhook, fetcher: Fetcher | None, missing: str
) -> Side:
    """``webhook`` through the pipeline under ``ruleset`` (None: ``missing`` says why)."""
    if ruleset is None:
        return Side(error=missing)
    try:
        return Side(process(ruleset, webhook, fetcher=fetcher))
    except HookmapError as exc:
        return Side(error=str(exc))


def fits(ruleset: RuleSet, webhook: Webhook) -> bool:
    """Whether ``ruleset`` reads ``webhook`` and has a rule for its topic: how a payload
    file found in a folder is given to a rule set (nothing says which it was sent to)."""
    try:
        decoded = decode(webhook, ruleset.decode)
    except HookmapError:
        return False
    topic = find_topic(ruleset, webhook, decoded.data, decoded.envelope)
    return any(ruleset.matching(topic))


def pair(
    old: list[EventView], new: list[EventView]
) -> list[tuple[EventView | None, EventView | None]]:
    """Old and new events paired: by (rule, index, type), then what is left by (type,
    index). Never two of different types: an event whose type changed disappeared from
    its old type and appeared in its new one, so each type's counts add up."""
    pairs: list[tuple[EventView | None, EventView | None]] = []
    by_rule = {(e.rule, e.index, e.event_type): e for e in new}
    left_old = []
    for event in old:
        match = by_rule.pop((event.rule, event.index, event.event_type), None)
        if match is None:
            left_old.append(event)
        else:
            pairs.append((event, match))
    left_new = [e for e in new if (e.rule, e.index, e.event_type) in by_rule]
    for event in left_old:
        match = next(
            (e for e in left_new if (e.event_type, e.index) == (event.event_type, event.index)),
            None,
        )
        if match is not None:
            left_new.remove(match)
        pairs.append((event, match))
    pairs.extend((None, e) for e in left_new)
    return pairs


def _fields(old: EventView, new: EventView) -> tuple[FieldChange, ...]:
    out: list[FieldChange] = []
    if old.sent != new.sent:
        out.append(FieldChange("sent", old.sent, new.sent))
    if old.problems != new.problems:
        out.append(FieldChange("problems", list(old.problems), list(new.problems)))
    if old.rule != new.rule:
        out.append(FieldChange("rule", old.rule, new.rule))
    if not (old.sent and new.sent):
        return tuple(out)
    head_old = {k: v for k, v in (old.body or {}).items() if k != "params"}
    head_new = {k: v for k, v in (new.body or {}).items() if k != "params"}
    for key in dict.fromkeys([*head_old, *head_new]):
        if head_old.get(key) != head_new.get(key) or (key in head_old) != (key in head_new):
            out.append(
                FieldChange(
                    key, head_old.get(key), head_new.get(key), key in head_old, key in head_new
                )
            )
    params_old, params_new = old.params(), new.params()
    for name in dict.fromkeys([*params_old, *params_new]):
        a, b = params_old.get(name), params_new.get(name)
        if a != b or (name in params_old) != (name in params_new):
            out.append(FieldChange(f"params.{name}", a, b, name in params_old, name in params_new))
    return tuple(out)


def compare(old: Side, new: Side) -> list[EventChange]:
    """Every event of the webhook on either side, with how it changed."""
    out: list[EventChange] = []
    for a, b in pair(old.events, new.events):
        if a is None:
            out.append(EventChange("appeared", None, b))
        elif b is None:
            out.append(EventChange("disappeared", a, None))
        else:
            fields = tuple(f for f in _fields(a, b) if f.field != "rule")
            out.append(EventChange("changed" if fields else "unchanged", a, b, fields))
    return out


class SameAnswers:
    """A fetcher that gives both sides of a webhook the same lookup answers: each URL is
    fetched once per webhook (``next_webhook`` forgets them), so a difference comes from
    the rules, not from an API that answered differently the second time. Without a
    fetcher every lookup fails with ``unanswered`` as the reason."""

    def __init__(self, fetcher: Fetcher | None, unanswered: str = "no answer given") -> None:
        self.fetcher = fetcher
        self.unanswered = unanswered
        self._answers: dict[tuple[str, str], Any] = {}

    def next_webhook(self) -> None:
        self._answers.clear()

    def fetch(self, spec: LookupSpec, url: str) -> Any:
        key = (spec.name, url)
        if key not in self._answers:
            if self.fetcher is None:
                raise LookupFailed(spec.name, url, self.unanswered)
            self._answers[key] = self.fetcher.fetch(spec, url)
        return self._answers[key]


@dataclasses.dataclass
class Group:
    """The counts of one (rule set, topic, event type), a few examples of each kind."""

    ruleset: str
    topic: str | None
    event_type: str
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    #: how many changed events each field changed in
    fields: dict[str, int] = dataclasses.field(default_factory=dict)
    examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ruleset": self.ruleset,
            "topic": self.topic,
            "eventTypeKey": self.event_type,
            **self.counts,
            "fields": dict(sorted(self.fields.items(), key=lambda kv: (-kv[1], kv[0]))),
            "examples": self.examples,
        }


class Tally:
    """Everything ``hookmap diff`` reports, added to one webhook at a time."""

    def __init__(self, examples: int = 3) -> None:
        self.examples = examples
        self.groups: dict[tuple[str, str, str], Group] = {}
        self.webhooks = {"compared": 0, "changed": 0}
        #: webhooks that one side or both could not process, by side
        self.failed: dict[str, int] = {"old": 0, "new": 0, "both": 0}
        self.failures: list[dict[str, Any]] = []

    def add(self, label: str, ruleset: str, old: Side, new: Side) -> bool:
        """Count one webhook; True when anything about it changed."""
        self.webhooks["compared"] += 1
        if old.error is not None or new.error is not None:
            return self._failed(label, ruleset, old, new)
        changes = compare(old, new)
        produced = new.result or old.result
        topic = produced.topic if produced is not None else None
        changed = False
        for change in changes:
            group = self._group(ruleset, topic, change.event_type)
            group.counts[change.kind] += 1
            if change.kind == "unchanged":
                continue
            changed = True
            for f in change.fields:
                group.fields[f.field] = group.fields.get(f.field, 0) + 1
            if len(group.examples) < self.examples:
                group.examples.append(_example(label, change))
        self.webhooks["changed"] += changed
        return changed

    def _failed(self, label: str, ruleset: str, old: Side, new: Side) -> bool:
        if old.error is not None and new.error is not None:
            side = "both"
        else:
            side = "old" if old.error is not None else "new"
        changed = side != "both" or old.error != new.error
        self.failed[side] += 1
        self.webhooks["changed"] += changed
        if len(self.failures) < self.examples * 4:
            self.failures.append(
                {"webhook": label, "ruleset": ruleset, "old": old.error, "new": new.error}
            )
        return changed

    def _group(self, ruleset: str, topic: str | None, event_type: str) -> Group:
        key = (ruleset, topic or "", event_type)
        found = self.groups.get(key)
        if found is None:
            found = self.groups[key] = Group(ruleset, topic, event_type)
        return found

    def totals(self) -> dict[str, int]:
        out: dict[str, int] = dict.fromkeys(KINDS, 0)
        for group in self.groups.values():
            for kind in KINDS:
                out[kind] += group.counts[kind]
        return out

    @property
    def changed(self) -> bool:
        return self.webhooks["changed"] > 0

    def sorted_groups(self) -> list[Group]:
        return [self.groups[k] for k in sorted(self.groups)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "webhooks": {**self.webhooks, "failed": dict(self.failed)},
            "totals": self.totals(),
            "groups": [g.as_dict() for g in self.sorted_groups()],
            "failures": self.failures,
        }


def _example(label: str, change: EventChange) -> dict[str, Any]:
    return {
        "webhook": label,
        "kind": change.kind,
        "old": None if change.old is None else change.old.as_dict(),
        "new": None if change.new is None else change.new.as_dict(),
        "fields": [f.as_dict() for f in change.fields],
    }
