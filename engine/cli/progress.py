"""A progress line on stderr with a count, a rate and an ETA, for long runs (backfill).

On a terminal it is one line redrawn in place: a bar and the ETA when the total is
known, a turning spinner and the count when it is not. Elsewhere (a log file, cron) it
is a plain line at most every ``LOG_EVERY`` seconds, and always the last one. Notes
(the API asked to wait ...) go on lines of their own. Nothing goes to stdout, which
holds the results (and ``--json``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

#: seconds between two progress lines when stderr is not a terminal
LOG_EVERY = 10.0
_SPINNER = "|/-\\"
_WIDTH = 24


def duration(seconds: float) -> str:
    """``1:02:03``, ``2:03``: hours shown only when there are some."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """``update(done, total)`` as work goes on; ``note(text)`` for what a user should see."""

    def __init__(
        self,
        label: str,
        unit: str,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        start_at: int = 0,
    ) -> None:
        """``start_at``: what was done before this run (a resume); the rate counts only
        what this run does."""
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self._clock = clock
        self._started = clock()
        self.start_at = start_at
        self._last_log = float("-inf")
        self._turn = 0
        self._drawn = False
        self._line = ""
        self._logged: int | None = None

    def line(self, done: int, total: int | None) -> str:
        """The progress text for ``done`` of ``total`` (None: not known)."""
        elapsed = max(self._clock() - self._started, 1e-9)
        rate = max(done - self.start_at, 0) / elapsed
        count = f"{done:,} {self.unit}"
        speed = f"{rate:,.1f}/s"
        if total is None or total <= 0:
            self._turn += 1
            return f"{self.label} {_SPINNER[self._turn % 4]} {count}  {speed}"
        shown = min(done, total)
        share = shown / total
        filled = int(share * _WIDTH)
        eta = "ETA " + (duration((total - shown) / rate) if rate > 0 else "-")
        return (
            f"{self.label} [{'#' * filled}{'.' * (_WIDTH - filled)}] {shown:,}/{total:,} "
            f"{self.unit} {share:4.0%}  {speed}  {eta}"
        )

    def update(self, done: int, total: int | None, *, final: bool = False) -> None:
        text = self.line(done, total)
        if self.terminal:
            pad = " " * max(len(self._line) - len(text), 0)
            self.stream.write(f"\r{text}{pad}")
            self.stream.flush()
            self._drawn, self._line = True, text
            return
        now = self._clock()
        if (final and done != self._logged) or now - self._last_log >= LOG_EVERY:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last_log, self._logged = now, done

    def note(self, text: str) -> None:
        """A line of its own, above the progress line on a terminal."""
        if self.terminal and self._drawn:
            self.stream.write("\r" + " " * len(self._line) + "\r")
        self.stream.write(f"{self.label}: {text}\n")
        if self.terminal and self._drawn:
            self.stream.write(self._line)
        self.stream.flush()

    def close(self) -> None:
        """End the redrawn line (a terminal): what follows starts on a line of its own."""
        if self.terminal and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
