"""Turn stored webhooks into stored events: the step between intake and dispatch.

The server runs it after each accepted webhook (and on start, for whatever a crash
left unprocessed); ``hookmap replay`` runs it over stored webhooks with the current
rules. Either way the outcome lands in one transaction, and nothing here raises for a
bad webhook: every failure is recorded against it, to be seen and replayed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from engine.errors import PayloadError
from engine.pipeline import Result, process
from engine.rules import RuleSet
from engine.store import RecordStats, Store, new_events
from engine.store_queries import StoredWebhook

log = logging.getLogger("hookmap.processor")


@dataclasses.dataclass(frozen=True)
class Processed:
    webhook_id: int
    source: str
    result: Result | None
    error: str | None
    stats: RecordStats


def process_stored(
    store: Store,
    rulesets: Mapping[str, RuleSet],
    webhook: StoredWebhook,
    *,
    replay: bool = False,
    force: bool = False,
) -> Processed:
    """Run one stored webhook through the rules and record the outcome."""
    ruleset = rulesets.get(webhook.source)
    result: Result | None = None
    error: str | None = None
    if ruleset is None:
        error = f"no rule set named '{webhook.source}' is loaded"
    else:
        try:
            result = process(ruleset, webhook.as_webhook())
        except PayloadError as exc:
            error = str(exc)
        except Exception as exc:  # a rule or engine bug: keep the webhook, say what broke
            log.exception("processing webhook %s failed", webhook.id)
            error = f"processing failed: {type(exc).__name__}: {exc}"
    if result is None:
        stats = store.record_result(webhook.id, None, None, [], error, replay=replay, force=force)
    else:
        stats = store.record_result(
            webhook.id,
            result.topic,
            result.summary(),
            new_events(result),
            replay=replay,
            force=force,
        )
    return Processed(webhook.id, webhook.source, result, error, stats)
