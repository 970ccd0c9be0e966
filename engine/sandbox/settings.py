"""How the sandbox behaves: its settings, checked when set (at start and live)."""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.events.destination import RATE_LIMIT

#: what ``POST /sandbox/config`` may change while the sandbox runs, and each one's type
LIVE_SETTINGS: dict[str, type] = {
    "fail_rate": float,
    "throttle_rate": float,
    "delay_seconds": float,
    "strict_contacts": bool,
    "rate_limit": int,
}


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox behaves; all but api_key and seed can change live (/sandbox/config)."""

    api_key: str = dataclasses.field(repr=False)
    rate_limit: int = int(RATE_LIMIT)  # requests per second, per path as the service counts
    strict_contacts: bool = False
    fail_rate: float = 0.0
    throttle_rate: float = 0.0
    delay_seconds: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if self.rate_limit < 1:
            raise ValueError("rate_limit must be at least 1")
        for name in ("fail_rate", "throttle_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if not 0.0 <= self.delay_seconds <= 60.0:
            raise ValueError("delay_seconds must be between 0 and 60")

    def public(self) -> dict[str, Any]:
        """The settings without the key (what /sandbox/config shows)."""
        return {name: getattr(self, name) for name in (*LIVE_SETTINGS, "seed")}
