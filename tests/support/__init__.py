"""What the tests share (no ``test_`` prefix, so not collected).

``http_stub``: one loopback HTTP server answering with a function of each request.
``expressions``: both evaluators by name and a JMESPath grammar for property tests.
``postgres`` and ``browser``: real servers (PostgreSQL, headless Chromium) as pytest
plugins, registered by ``tests/conftest.py``; a fixture whose server cannot be had skips
the test and says why and how to get it; none passes silently.
"""

from __future__ import annotations


class Unavailable(Exception):
    """Why a server could not be had; the fixtures skip with this message."""
