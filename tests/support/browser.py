"""Headless Chromium for the tests: Debian's ``/usr/bin/chromium``, driven by Playwright.

Fixtures (a pytest plugin, registered by ``tests/conftest.py``):

- ``chromium_executable`` (session): the Chromium binary, once found (else every browser
  test skips, saying why).
- ``page`` (function): a Playwright page in a fresh browser, closed after the test.

Playwright's own browser download (``playwright install``) cannot work on a machine that
reaches only the package registries, so the fixture launches the distribution's Chromium
with the flags that keep it off the network. Playwright's sync API marks its event loop as
the thread's running loop between calls, which makes ``asyncio.run`` fail in the same
thread ("cannot be called from a running event loop"); so each test gets its own
Playwright, stopped after it, and the many tests that call ``asyncio.run`` keep working.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.support import Unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Page

#: Another Chromium binary to launch (a path that holds none shows the skip).
ENV_CHROMIUM = "HOOKMAP_TEST_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
#: Headless, as root (no sandbox), no GPU, and none of the background connections that a
#: machine without a network refuses (QUIC, component updates, sync, first-run pings).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
LAUNCH_TIMEOUT_MS = 30_000


def find_chromium(explicit: str | None = None) -> str:
    """*explicit* when it names a program, else ``/usr/bin/chromium``, else ``chromium`` on
    ``PATH``."""
    if explicit is not None:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise Unavailable(
            f"Chromium not found at {explicit!r} (set by {ENV_CHROMIUM}):"
            " apt-get install chromium, or name another binary"
        )
    if os.access(DEFAULT_CHROMIUM, os.X_OK):
        return DEFAULT_CHROMIUM
    found = shutil.which("chromium")
    if found is not None:
        return found
    raise Unavailable(
        f"Chromium not found at {DEFAULT_CHROMIUM} or on PATH: apt-get install chromium"
        f" (or set {ENV_CHROMIUM} to a Chromium binary)"
    )


def _require_playwright() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as error:
        raise Unavailable(
            f"Playwright for Python is not installed ({error}): pip install -e '.[dev]'"
            " (its own browser download is not needed: the tests use Debian's Chromium)"
        ) from None


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """The Chromium binary the browser tests launch."""
    try:
        _require_playwright()
        return find_chromium(os.environ.get(ENV_CHROMIUM))
    except Unavailable as why:
        pytest.skip(str(why))


@pytest.fixture
def page(chromium_executable: str) -> Iterator[Page]:
    """A page in a fresh headless Chromium (its own empty profile), closed after the test."""
    from playwright.sync_api import Error, sync_playwright

    playwright = sync_playwright().start()
    try:
        try:
            browser = playwright.chromium.launch(
                executable_path=chromium_executable,
                headless=True,
                args=list(FLAGS),
                timeout=LAUNCH_TIMEOUT_MS,
            )
        except Error as error:
            first = str(error).strip().splitlines()[0]
            pytest.skip(
                f"Chromium at {chromium_executable} did not start through Playwright: {first}"
            )
        try:
            yield browser.new_page()
        finally:
            browser.close()
    finally:
        playwright.stop()
