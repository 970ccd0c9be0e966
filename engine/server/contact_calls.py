"""New customers: the contact is created through ``v1/contact`` before its first event.

The CDP accepts events only for contacts it knows. An event stored with a ``contact``
(the rule's ``contact:``) first gets its contact created, unless the store remembers
that contact's key (``engine.events.contacts.contact_key``); a 2xx, or the 409 the CDP
documents for a repeat within a minute, is remembered and the event follows. A
408/429/5xx or network error retries the event on its own schedule; any other status
kills it with "contact rejected: ...". One event per key at a time looks and creates,
so two events for one new customer create it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from engine.events.contacts import contact_key
from engine.events.destination import Destination
from engine.server.delivery import Call, classify
from engine.server.store.rows import OutboxEvent, Outcome

log = logging.getLogger("hookmap.dispatch")

#: what stops an event before it is sent: the verdict, the contact call, the error text
Blocked = tuple[Outcome, Call, str]
#: ``post(destination, url, body, what)``: one POST through the dispatcher's client, with
#: the destination's auth and rate limit
Post = Callable[[Destination, str, bytes, str], Awaitable[Call]]


class ContactMemory(Protocol):
    """Where the contacts created at the CDP are remembered (the store)."""

    #: what its operations raise when the database fails
    errors: tuple[type[Exception], ...]

    def contact_known(self, key: str, *, shop: str = "") -> bool: ...

    def remember_contact(self, key: str, contact_id: int | None, *, shop: str = "") -> None: ...


class _KeyLock:
    """The lock of one contact key, who holds or waits for it, and a failure to share."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0
        self.failure: Blocked | None = None


class ContactCalls:
    """Creates the contacts of the events a dispatcher sends, each once."""

    def __init__(self, memory: ContactMemory, post: Post) -> None:
        self._memory = memory
        self._post = post
        self._locks: dict[tuple[str, str], _KeyLock] = {}

    async def ensure(self, event: OutboxEvent, destination: Destination) -> Blocked | None:
        """Make sure the CDP knows the event's contact; what stops the event, or None.

        Under the key's lock: known (remembered) → nothing to do; else POST v1/contact,
        and a 2xx or 409 is remembered. Events that waited for a call that failed
        with a retryable answer share that answer instead of calling again, so a CDP
        that is down costs one contact call per round, not one per waiting event.
        """
        assert event.contact is not None
        key = contact_key(event.contact)
        if key is None:  # nothing identifies it (the rule's checks warned): send as is
            return None
        async with self._lock((event.shop, key)) as entry:
            if entry.failure is not None:
                return entry.failure
            if await self._known(event.shop, key):
                return None
            content = json.dumps(event.contact, ensure_ascii=False).encode("utf-8")
            url = f"{destination.base_url}/v1/contact"
            call = await self._post(destination, url, content, f"contact of #{event.id}")
            if call.status is not None and (200 <= call.status < 300 or call.status == 409):
                await self._remember(event.shop, key, call, event.id)
                return None
            blocked = _contact_failure(call)
            if blocked[0] == "retry":
                entry.failure = blocked
            return blocked

    @contextlib.asynccontextmanager
    async def _lock(self, key: tuple[str, str]) -> AsyncIterator[_KeyLock]:
        """Hold one contact key's lock; its entry goes once nobody holds or awaits it."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield entry
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]

    async def _known(self, shop: str, key: str) -> bool:
        try:
            return await asyncio.to_thread(self._memory.contact_known, key, shop=shop)
        except self._memory.errors:
            # creating a known contact again only updates it: better than not sending
            log.exception("cannot read the known contacts; creating the contact again")
            return False

    async def _remember(self, shop: str, key: str, call: Call, event_id: int) -> None:
        contact_id = _contact_id(call.text) if call.status != 409 else None
        try:
            await asyncio.to_thread(self._memory.remember_contact, key, contact_id, shop=shop)
        except self._memory.errors:
            log.exception(
                "cannot remember the contact of event #%d: it may be created again", event_id
            )
        log.info(
            "contact of event #%d: HTTP %s%s",
            event_id,
            call.status,
            "" if contact_id is None else f" (id {contact_id})",
        )


def _contact_failure(call: Call) -> Blocked:
    """What a failed contact call means for its event: retry it later, or dead."""
    if call.status is None:
        return "retry", call, f"contact: {call.error}"
    text = (call.text or "").strip()[:200]
    answer = f"HTTP {call.status}: {text}" if text else f"HTTP {call.status}"
    if classify(call.status) == "retry":
        return "retry", call, f"contact: {answer}"
    return "dead", call, f"contact rejected: {answer}"


def _contact_id(text: str | None) -> int | None:
    """The id in v1/contact's ``{"id": n}`` answer, when there is one."""
    try:
        value = json.loads(text or "")
    except ValueError:
        return None
    found = value.get("id") if isinstance(value, dict) else None
    return found if isinstance(found, int) and not isinstance(found, bool) else None
