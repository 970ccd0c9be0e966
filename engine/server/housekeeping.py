"""What a running server does beside its work, every few seconds: take back what servers
on the same store that died (kill -9, a crash, a power cut) had claimed, and forget the
expired values remembered for ``changes:``.

With several servers on one store the others take a dead one's claims back without
waiting for a restart; a server starting takes them back at once (``release_gone``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from engine.server.store.base import Instance, Store

log = logging.getLogger("hookmap.service")

#: called with the id of each server found gone
Forget = Callable[[str], None] | None

#: seconds between looks for servers that died (their claims are released)
SERVERS_CHECK = 5.0
#: seconds between purges of the expired values remembered for ``changes:``
CHANGES_PURGE = 3600.0


def release_gone(store: Store, instance: Instance, forget: Forget = None) -> None:
    """What servers on this store that died had claimed was cut short mid-send or
    mid-processing: due again now, not when its lease ends. ``forget`` is called with
    each dead server's id (to remove what else it left, such as its rules record)."""
    for other in instance.gone():
        events = store.release_leases(other)
        webhooks = store.release_webhooks(other)
        if forget is not None:
            forget(other)
        instance.forget(other)
        if events:
            log.warning(
                "%d event(s) claimed by a server that stopped without finishing "
                "(instance %s) are due again",
                events,
                other[:8],
            )
        if webhooks:
            log.warning(
                "%d webhook(s) a server that stopped without finishing was processing "
                "(instance %s) are due again",
                webhooks,
                other[:8],
            )


async def keep_house(
    store: Store, instance: Instance, stop: asyncio.Event, forget: Forget = None
) -> None:
    """Every ``SERVERS_CHECK`` seconds until ``stop``: ``release_gone``, and once every
    ``CHANGES_PURGE`` seconds the purge of expired changes."""
    next_purge = 0.0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=SERVERS_CHECK)
        if stop.is_set():
            return
        try:
            await asyncio.to_thread(release_gone, store, instance, forget)
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + CHANGES_PURGE
                await asyncio.to_thread(store.forget_expired_changes)
        except store.errors:
            log.warning("cannot look for servers that stopped; trying again later")
