"""Logs that hostile traffic cannot flood: repeated warnings are counted, not repeated.

Every refused connection, timed-out request or bad signature is worth one line, but a
client that sends thousands a second must not fill the disk with them (400 idle sockets
once grew the log by 208 MB in 15 s). ``RepeatFilter`` lets the first ``burst`` records
of one kind (logger, level and message template) through per ``window`` seconds, drops
the rest, and says how many it dropped on the next line of that kind it lets through.
Warnings and errors are limited; for ``hookmap.guard``, whose every line is a client's
doing, INFO lines too.

asyncio's "socket.accept() out of system resource" (the process ran out of file
descriptors) comes with a traceback each time: the filter keeps the line, drops the
traceback, and says what to do about it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

GUARD = "hookmap.guard"
#: loggers whose repeats (warnings; for the guard, INFO too) are limited while serving
LIMITED_LOGGERS = ("hookmap.server", GUARD, "hookmap.service", "uvicorn.error", "asyncio")

_ACCEPT_FAILED = "socket.accept() out of system resource"


class RepeatFilter(logging.Filter):
    """At most ``burst`` records of one kind per ``window`` seconds; the rest are counted."""

    def __init__(
        self,
        burst: int = 10,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._clock = clock
        # kind -> [window start, records let through in it, records dropped since last]
        self._kinds: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # a client's doings are logged at INFO too (a disconnect mid-body): limited alike
        if record.levelno < (logging.INFO if record.name == GUARD else logging.WARNING):
            return True
        message = str(record.msg)
        if message.startswith(_ACCEPT_FAILED):
            record.msg = (
                f"{message}: out of file descriptors; lower --max-connections or raise "
                "the open-file limit (ulimit -n)"
            )
            record.exc_info = record.exc_text = None
        now = self._clock()
        kind = (record.name, record.levelno, message)
        state = self._kinds.get(kind)
        if state is None or now - state[0] >= self.window:
            dropped = int(state[2]) if state is not None else 0
            state = self._kinds[kind] = [now, 0.0, float(dropped)]
            if len(self._kinds) > 1000:  # templates are few; ids in messages are not
                self._kinds = {kind: state}
        if state[1] >= self.burst:
            state[2] += 1
            return False
        state[1] += 1
        if state[2]:
            record.msg = f"{record.getMessage()} ({int(state[2])} more like it not logged)"
            record.args = None
            state[2] = 0
        return True


@contextmanager
def limited(
    names: tuple[str, ...] = LIMITED_LOGGERS, burst: int = 10, window: float = 10.0
) -> Iterator[RepeatFilter]:
    """``RepeatFilter`` on each named logger while the block runs."""
    repeat = RepeatFilter(burst, window)
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(repeat)
    try:
        yield repeat
    finally:
        for logger in loggers:
            logger.removeFilter(repeat)
