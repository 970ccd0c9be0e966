"""The real-server fixtures work: a PostgreSQL query and pool, a click in headless Chromium,
and a skip that says why when a server's binaries are missing."""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import ROOT
from tests.support import Unavailable, postgres
from tests.support.browser import ENV_CHROMIUM, find_chromium
from tests.support.postgres import ENV_BINDIR, ENV_URL, SESSION_DATABASE, find_bindir

if TYPE_CHECKING:
    from playwright.sync_api import Page

#: Where the tests leave files for a person to look at (git-ignored).
OUTPUT = ROOT / "tests-output"

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hookmap test page</title></head>
<body style="font: 20px sans-serif; margin: 2em">
  <h1>hookmap</h1>
  <p id="status">Not sent yet</p>
  <button id="send" onclick="document.getElementById('status').textContent = 'Sent: orderCreated'">
    Send
  </button>
</body></html>
"""


def test_postgres_query(postgres_url: str) -> None:
    """psycopg 3 connects to the session's server and runs a query."""
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT current_database(), 6 * 7, current_setting('fsync')").fetchone()
        assert conn.info.server_version >= 120000
    assert row is not None
    database, answer, fsync = row
    assert answer == 42
    if not os.environ.get(ENV_URL):  # our throwaway cluster: its own database, fsync off
        assert (database, fsync) == (SESSION_DATABASE, "off")


def test_postgres_database_is_fresh_per_test(postgres_database: str, postgres_url: str) -> None:
    """Each test gets an empty database of its own, apart from the session's."""
    import psycopg

    with psycopg.connect(postgres_database) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE webhooks (id bigint PRIMARY KEY, body jsonb NOT NULL)")
        conn.execute("INSERT INTO webhooks VALUES (1, %s::jsonb)", ['{"topic": "orders/create"}'])
        assert conn.execute("SELECT body->>'topic' FROM webhooks").fetchone() == ("orders/create",)
        name = conn.execute("SELECT current_database()").fetchone()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() != name


def test_postgres_async_pool(postgres_database: str) -> None:
    """psycopg's AsyncConnectionPool serves concurrent queries from several connections."""
    from psycopg_pool import AsyncConnectionPool

    async def main() -> set[int]:
        # open=False, then `async with` opens it: opening an async pool in its constructor
        # is deprecated (a RuntimeWarning, an error under this project's filterwarnings).
        async with AsyncConnectionPool(
            postgres_database, min_size=2, max_size=4, open=False
        ) as pool:
            await pool.wait(timeout=10)

            async def backend() -> int:
                async with pool.connection() as conn:
                    cursor = await conn.execute("SELECT pg_backend_pid() FROM pg_sleep(0.2)")
                    row = await cursor.fetchone()
                    assert row is not None
                    pid: int = row[0]
                    return pid

            return set(await asyncio.gather(*(backend() for _ in range(4))))

    assert len(asyncio.run(main())) >= 2


@contextmanager
def serve(body: bytes) -> Iterator[str]:
    """Serve *body* as an HTML page on a free loopback port, in a thread; yield its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # pytest shows what the test prints; requests are noise

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_browser_click(page: Page) -> None:
    """Headless Chromium opens a local page, a click changes its text, a screenshot is kept."""
    from playwright.sync_api import expect

    with serve(PAGE) as url:
        page.goto(url)
        expect(page.locator("#status")).to_have_text("Not sent yet")
        page.click("#send")
        expect(page.locator("#status")).to_have_text("Sent: orderCreated")
        OUTPUT.mkdir(exist_ok=True)
        shot = OUTPUT / "browser_click.png"
        page.screenshot(path=str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    print(f"screenshot: {shot}")


def test_missing_postgres_binaries_say_how() -> None:
    """Without initdb and pg_ctl, the reason names them and the package that has them."""
    with pytest.raises(Unavailable) as caught:
        find_bindir(path="", lib_pattern="/nonexistent/postgresql/*/bin")
    assert str(caught.value) == (
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in"
        " /nonexistent/postgresql/*/bin: install them (apt-get install postgresql) or set"
        " HOOKMAP_TEST_DATABASE_URL to a server's URL"
    )


def test_root_without_postgres_user_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """As root with no 'postgres' user to run the server as, the reason says so."""

    def no_such_user(name: str) -> pwd.struct_passwd:
        raise KeyError(name)

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(pwd, "getpwnam", no_such_user)
    with pytest.raises(Unavailable, match=r"refuses.*no 'postgres' system user"):
        postgres.Cluster.create(Path("/usr/lib/postgresql/15/bin"))


def test_missing_chromium_says_how() -> None:
    with pytest.raises(Unavailable, match=r"apt-get install chromium"):
        find_chromium("/nonexistent/chromium")


def test_fixtures_skip_and_say_why_without_servers() -> None:
    """With the binaries hidden, the server tests are reported skipped with their reason,
    never passed."""
    env = {key: value for key, value in os.environ.items() if key != ENV_URL}
    env |= {ENV_BINDIR: "/nonexistent/pg/bin", ENV_CHROMIUM: "/nonexistent/chromium"}
    env["COLUMNS"] = "1000"  # the summary line keeps the whole reason
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            f"{__file__}::test_postgres_query",
            f"{__file__}::test_postgres_async_pool",
            f"{__file__}::test_browser_click",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 skipped" in done.stdout and "passed" not in done.stdout, done.stdout
    assert (
        "PostgreSQL server binaries (initdb, pg_ctl) not found in '/nonexistent/pg/bin'"
        " (set by HOOKMAP_TEST_PG_BINDIR): install them (apt-get install postgresql)"
    ) in done.stdout
    assert "Chromium not found at '/nonexistent/chromium'" in done.stdout
    assert "apt-get install chromium" in done.stdout
