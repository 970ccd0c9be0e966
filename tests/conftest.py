"""Shared fixtures: where the project and the read-only reference material are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Real servers (PostgreSQL, headless Chromium) and both stores as fixtures; tests/support/
#: says how.
pytest_plugins = ["tests.support.postgres", "tests.support.browser", "tests.support.stores"]

ROOT = Path(__file__).resolve().parents[1]
#: ../shared beside the checkout (CI lays a copy there); HOOKMAP_SHARED overrides it.
SHARED = Path(os.environ.get("HOOKMAP_SHARED", ROOT.parent / "shared"))


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture(autouse=True)
def _run_from_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule files name paths relative to the project, as a user running hookmap there does."""
    monkeypatch.chdir(ROOT)
