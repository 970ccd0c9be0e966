"""What processing a webhook gives: the result, each event's outcome, and why.

``engine.pipeline.process`` builds these; dry-run prints them, rule tests compare them,
the server stores them. Traces (which rule matched and why, which lookups were made)
are kept for ``--explain``; the costlier ones are built only when asked.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from engine.errors import Location, Problem, has_errors
from engine.evaluate import Change, ParamTrace, Produced
from engine.events.contacts import Contact
from engine.records import fast_init
from engine.rules.model import Rule


@fast_init
@dataclasses.dataclass(frozen=True)
class EventResult:
    """One produced event: its request body, or the problems that stop it."""

    rule: str
    index: int
    event_type: str
    body: dict[str, Any] | None
    problems: tuple[Problem, ...]
    contact: Contact | None
    produced: Produced = dataclasses.field(repr=False, compare=False)
    where: Location | None
    #: the v1/contact request to make before this event (new customers), if declared
    contact_request: dict[str, Any] | None = None
    #: ``body`` as sent on the wire (``encode.body_bytes(body)``), encoded once
    wire: bytes | None = dataclasses.field(default=None, repr=False, compare=False)
    #: why the event is held back, not sent (``changes:``: nothing changed), or None
    held: str | None = None
    #: ``changes:``: its entity and the fingerprint of its values (None: not declared)
    change: Change | None = None

    @property
    def ok(self) -> bool:
        """True when the event would be sent."""
        return not has_errors(self.problems)

    @property
    def traces(self) -> tuple[ParamTrace, ...]:
        """How each param got its value (``--explain``): built only when asked."""
        return self.produced.traces

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")


@fast_init
@dataclasses.dataclass(frozen=True)
class RuleTrace:
    """Whether a rule matched this webhook, and why (or why not)."""

    rule: str
    matched: bool
    reason: str
    where: Location | None
    ignored: str | None = None


@fast_init
@dataclasses.dataclass(frozen=True)
class Result:
    ruleset: str
    api_version: str
    topic: str | None
    events: tuple[EventResult, ...]
    #: each rule of the rule set with its trace; None where the topic did not match, which
    #: ``rules`` words when asked (most rules of a set are for other topics)
    checked: tuple[tuple[Rule, RuleTrace | None], ...]
    skipped: tuple[str, ...] = ()
    lookups: tuple[LookupTrace, ...] = ()

    @functools.cached_property
    def rules(self) -> tuple[RuleTrace, ...]:
        """Whether each rule matched this webhook, and why."""
        return tuple(
            trace
            if trace is not None
            else RuleTrace(
                rule.name,
                False,
                f"topic '{self.topic}' is not one of {', '.join(rule.topics)}",
                rule.where,
            )
            for rule, trace in self.checked
        )

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [e.body for e in self.events if e.ok and e.body is not None and e.held is None]

    @property
    def held(self) -> list[EventResult]:
        """Valid events held back because nothing changed (``changes:``)."""
        return [e for e in self.events if e.ok and e.held is not None]

    @property
    def dropped(self) -> list[EventResult]:
        return [e for e in self.events if not e.ok]

    @property
    def matched(self) -> bool:
        return any(t is not None and t.matched for _, t in self.checked)

    @property
    def ignored(self) -> str | None:
        return next(
            (t.ignored for _, t in self.checked if t is not None and t.matched and t.ignored),
            None,
        )

    def summary(self) -> str:
        """One line saying what happened (logs, dry-run, the store's record of it)."""
        if self.topic is None:
            return "no topic found: nothing matched"
        if not self.matched:
            return f"no rule matches topic '{self.topic}': nothing to send"
        if self.ignored and not self.events:
            text = f"ignored: {self.ignored}"
        else:
            text = f"{len(self.sent)} event(s) to send, {len(self.dropped)} dropped"
            held = self.held
            if held:
                text += f", {len(held)} held back (unchanged)"
        skipped = [f"lookup '{t.name}' not made: {t.skipped}" for t in self.lookups if t.skipped]
        return f"{text} ({'; '.join(skipped)})" if skipped else text


@fast_init
@dataclasses.dataclass(frozen=True)
class LookupTrace:
    """One lookup made for a webhook: its URL and answer (``--explain`` shows these)."""

    name: str
    url: str  #: the URL asked; the template when the lookup was not made
    answer: Any
    #: why the lookup was not made (an argument null on this webhook), or None
    skipped: str | None = None
