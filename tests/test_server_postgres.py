"""The server and the operator commands on a PostgreSQL store, end to end: ``Service.run`` in
a thread with ``--data postgresql://...``, the sandbox as the CDP, and ``hookmap status``,
``webhooks``, ``events``, ``show``, ``retry`` and ``replay`` run as a user runs them
(``--data URL`` or ``HOOKMAP_DATABASE_URL``). Skipped, with the reason, when no
PostgreSQL server can be started."""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.sandbox.run import RunningSandbox, running
from engine.sandbox.settings import SandboxConfig
from tests.helpers_server import (
    API_KEY,
    RULES,
    serving,
    settled,
    signed_example,
    wait_until,
)

ORDER = "shopify/orders-create"


@pytest.fixture
def box() -> Iterator[RunningSandbox]:
    with running(SandboxConfig(api_key=API_KEY)) as served:
        yield served


PASSWORD = "sekrit-pw"


@pytest.fixture
def url(postgres_database: str) -> str:
    """The test database as a URL with a password in it (the throwaway cluster's trust
    auth ignores it; a server of HOOKMAP_TEST_DATABASE_URL keeps its own): nothing may
    ever show it."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(postgres_database)
    password = parts.get("password") or PASSWORD
    where = f"{parts.get('host') or ''}:{parts.get('port') or 5432}/{parts['dbname']}"
    return f"postgresql://{parts.get('user') or ''}:{password}@{where}"


def password_of(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(url)["password"])


def cli(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


def test_serve_and_operate_on_postgresql(
    box: RunningSandbox, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with (
        serving(box.destination(), url) as srv,
        httpx.Client(trust_env=False, timeout=10) as client,
    ):
        assert srv.store.describe().startswith("postgresql://")
        body, headers = signed_example(ORDER)
        answer = client.post(srv.hook("shopify"), content=body, headers=headers)
        assert answer.status_code == 200 and answer.json()["status"] == "accepted"
        wid = answer.json()["id"]
        again = client.post(srv.hook("shopify"), content=body, headers=headers)
        assert again.json() == {"status": "duplicate", "id": wid}
        wait_until(lambda: settled(srv.store), what="processed and sent")
        wait_until(box.sandbox.events, what="the event at the CDP")

        code, out = cli("status", "--data", url, "--json")
        assert code == 0, out
        status = json.loads(out)
        assert status["webhooks"] == {"received": 0, "processed": 1, "failed": 0}
        assert status["events"] == {"pending": 0, "sent": 1, "dead": 0, "invalid": 0}
        me = f"{os.getpid()}@{socket.gethostname()}"
        assert [s["pid"] for s in status["servers"]["running"]] == [me]
        assert status["servers"]["stopped_without_finishing"] == []

        # the database named by the environment instead of --data
        code, out = cli("status", env={"HOOKMAP_DATABASE_URL": url, "HOOKMAP_DATA": None})
        assert code == 0, out
        assert "webhooks: received 0, processed 1, failed 0" in out
        assert f"servers: 1 running (pid {me})" in out

        code, out = cli("webhooks", "--data", url)
        assert code == 0 and f"#{wid:<6}" in out and "1 webhook(s)" in out, out
        code, out = cli("events", "--data", url, "--state", "sent")
        assert code == 0 and "orderCreated" in out and "1 event(s)" in out, out
        code, out = cli("show", str(wid), "--data", url)
        assert code == 0, out
        assert f"webhook #{wid} from shopify" in out and "x-shopify-hmac-sha256: ****" in out
        assert "HTTP 200 -> sent" in out
        code, out = cli("retry", "--dead", "--data", url)
        assert (code, out.strip()) == (0, "0 event(s) re-queued; a running server sends them")

        env: dict[str, str | None] = {
            "HOOKMAP_API_URL": box.url,
            "HOOKMAP_API_KEY": API_KEY,
            "SHOPIFY_PHONE_COUNTRY_CODE": None,
        }
        replay = ("replay", "--webhook", str(wid), "--rules", RULES[0], "--data", url)
        code, out = cli(*replay, env=env)
        assert code == 0 and "1 webhook(s) replayed: 0 new event(s), 0 re-queued" in out, out
        code, out = cli(*replay, "--force", env=env)
        assert code == 0 and "0 new event(s), 1 re-queued" in out, out
        # the replay sends what it re-queued itself (through the shared rate limit)
        assert "sent: sent 1" in out, out
        assert len(box.sandbox.events()) == 2
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "data in postgresql://" in said
    assert password_of(url) not in said


def test_operator_commands_say_why_a_database_cannot_be_used(postgres_database: str) -> None:
    code, out = cli("status", "--data", postgres_database)
    assert code == 2 and "no hookmap data in this database" in out, out
    code, out = cli("status", "--data", "postgresql://me:sekrit-pw@127.0.0.1:1/nowhere")
    assert code == 2 and "postgresql://me@127.0.0.1:1/nowhere: " in out, out
    assert "sekrit" not in out
    import psycopg

    with psycopg.connect(postgres_database) as conn:  # a look set nothing up
        assert conn.execute("SELECT to_regclass('webhooks')").fetchone() == (None,)
