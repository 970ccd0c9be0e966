"""What commands read from the person typing them: moments (``--since 2h``) and how they
are shown back, and lookup answers given as files (``--mock NAME=FILE``).

Apart from ``options`` (which loads rules and stores) so that any command module can
use these without one more level of imports.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import UsageError


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def parse_since(text: str, option: str = "--since") -> float:
    """``2h``, ``30m``, ``1d``, ``45s`` ago, or an ISO 8601 date-time / date (local time
    when it names no offset)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if match:
        size = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        return time.time() - float(match[1]) * size
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{option} {text!r}: use 2h, 30m, 1d or an ISO date-time") from exc
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def read_mocks(specs: Sequence[str]) -> dict[str, Any]:
    """``--mock order=path.json`` → {"order": <the file's JSON>}."""
    out: dict[str, Any] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"--mock {spec!r}: expected LOOKUP=FILE")
        try:
            out[name] = json.loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--mock {name}: cannot read {file}: {exc}") from exc
    return out
