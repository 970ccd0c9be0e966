"""Real servers for the tests: PostgreSQL (`postgres`) and headless Chromium (`browser`).

Both modules are pytest plugins, registered by ``tests/conftest.py``. A fixture whose
server cannot be had skips the test and says why and how to get it; none passes silently.
"""

from __future__ import annotations


class Unavailable(Exception):
    """Why a server could not be had; the fixtures skip with this message."""
