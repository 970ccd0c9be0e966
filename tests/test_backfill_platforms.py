"""``hookmap backfill`` for the platforms beyond Shopify, WooCommerce and BigCommerce, end
to end: each API stood in on loopback (tests/support/shop_apis.py), the CDP by the
sandbox, a real SQLite store.

For each: every order of the window is stored and sent once, through a 429 and a 5xx; a
run again sends nothing; an interrupted run resumes; ``--dry-run`` writes nothing; an
API error names the request and shows no credential.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.cli import main
from engine.sandbox.run import RunningSandbox, running
from engine.sandbox.settings import SandboxConfig
from engine.server.store.sqlite import DB_NAME, Store
from tests.support.shop_apis import FIRST, EcwidApi

CDP_KEY = "backfill-platforms-cdp-key"
SINCE = FIRST.date().isoformat()


@pytest.fixture
def box() -> Iterator[RunningSandbox]:
    with running(SandboxConfig(api_key=CDP_KEY)) as sandbox:
        yield sandbox


def backfill(rules: str, data: Path, env: Mapping[str, str], *extra: str) -> Result:
    args = ["backfill", "--rules", rules, "--data", str(data), *extra]
    if "--since" not in extra:
        args += ["--since", SINCE]
    args += ["--api-rate", "100"]  # the stand-ins have no plan to keep to
    env = {"HOOKMAP_API_KEY": CDP_KEY, **env}
    return CliRunner().invoke(main, args, env=dict(env))


def cdp(box: RunningSandbox) -> dict[str, str]:
    return {"HOOKMAP_API_URL": box.url}


def sent(box: RunningSandbox, param: str = "externalOrderId") -> list[str]:
    """``param`` of every event the CDP accepted, in order."""
    return [
        next(p["value"] for p in e["body"]["params"] if p["name"] == param)
        for e in box.sandbox.events()
    ]


def stored(data: Path) -> list[tuple[str, str | None, str]]:
    with Store(data / DB_NAME) as store:
        return sorted(
            (w.delivery_id or "", w.topic, w.state) for w in store.list_webhooks(limit=100)
        )


# -- Ecwid -------------------------------------------------------------------------------


@pytest.fixture
def ecwid() -> Iterator[EcwidApi]:
    with EcwidApi(7) as api:
        yield api


def ecwid_env(api: EcwidApi, box: RunningSandbox) -> dict[str, str]:
    return {
        "ECWID_STORE_ID": str(api.store),
        "ECWID_ACCESS_TOKEN": api.token,
        "ECWID_API_BASE": api.url,
        "ECWID_API_HOST": "127.0.0.1",
        **cdp(box),
    }


def ecwid_ids(*indexes: int) -> list[str]:
    return [f"BF{i:03d}" for i in indexes]


def test_ecwid_orders_come_in_once_through_the_rule_sets_lookups(
    ecwid: EcwidApi, box: RunningSandbox, tmp_path: Path
) -> None:
    listing = f"/api/v3/{ecwid.store}/orders"
    ecwid.once[2] = (429, {"Retry-After": "0.2"})
    ecwid.once[3] = (503, {})
    env = ecwid_env(ecwid, box)
    result = backfill("rules/ecwid", tmp_path, env, "--page-size", "3")
    assert result.exit_code == 0, result.output
    assert "3 page(s), 7 order(s): 7 stored, 0 stored before; 7 new event(s)" in result.stdout
    assert "waiting 0.2 s: HTTP 429" in result.stderr
    assert sorted(sent(box)) == ecwid_ids(*range(7))
    assert {e["body"]["eventTypeKey"] for e in box.sandbox.events()} == {"orderUpdated"}
    assert set(sent(box, "status")) == {"IN_PROGRESS", "DELIVERED"}  # the current statuses
    pages = [(q["offset"], status) for q, status in ecwid.requests(listing)]
    assert pages == [("0", 200), ("3", 429), ("3", 200), ("6", 503), ("6", 200)]
    (query, _), *_ = ecwid.requests(listing)
    since = datetime.datetime.fromisoformat(SINCE).astimezone()  # midnight here
    assert query["createdFrom"] == str(int(since.timestamp()))
    looked_up = {c.path for c in ecwid.calls} - {listing}
    assert {f"{listing}/{i}" for i in ecwid_ids(*range(7))} <= looked_up
    assert stored(tmp_path) == [
        (f"backfill:ecwid:{i}:order.updated", "order.updated", "processed")
        for i in ecwid_ids(*range(7))
    ]
    assert ecwid.token not in result.output
    again = backfill("rules/ecwid", tmp_path, env, "--page-size", "3", "--restart", "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert (summary["orders"], summary["stored"], summary["events"]) == (7, 0, 0)
    assert len(box.sandbox.events()) == 7


def test_an_interrupted_ecwid_run_resumes_one_page_back(
    ecwid: EcwidApi, box: RunningSandbox, tmp_path: Path
) -> None:
    listing = f"/api/v3/{ecwid.store}/orders"
    env = ecwid_env(ecwid, box)
    args = ("--page-size", "2", "--retries", "1")
    ecwid.broken_from = 3
    stopped = backfill("rules/ecwid", tmp_path, env, *args)
    assert stopped.exit_code == 1
    assert "stopped: the cursor is at offset 4" in stopped.stdout
    assert f"ecwid API: GET {listing}?" in stopped.output and "offset=4" in stopped.output
    assert "HTTP 500" in stopped.output and "(after 2 tries)" in stopped.output
    assert sorted(sent(box)) == ecwid_ids(0, 1, 2, 3)
    ecwid.broken_from = None
    before = len(ecwid.requests(listing))
    resumed = backfill("rules/ecwid", tmp_path, env, *args)
    assert resumed.exit_code == 0, resumed.output
    assert [q["offset"] for q, _ in ecwid.requests(listing)[before:]] == ["2", "4", "6"]
    assert "3 page(s), 5 order(s): 3 stored, 2 stored before" in resumed.stdout
    assert sorted(sent(box)) == ecwid_ids(*range(7))


def test_an_ecwid_dry_run_writes_nothing_and_a_refused_token_is_located(
    ecwid: EcwidApi, box: RunningSandbox, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = ecwid_env(ecwid, box)
    dry = backfill("rules/ecwid", data, env, "--dry-run", "--json", "--show", "1")
    assert dry.exit_code == 0, dry.output
    found = json.loads(dry.stdout)
    assert (found["orders"], found["events"], found["total"], found["invalid"]) == (7, 7, 7, 0)
    (event,) = found["first_events"]
    assert (event["order_id"], event["event_type"]) == ("BF000", "orderUpdated")
    assert not data.exists() and box.sandbox.events() == []
    wrong = backfill("rules/ecwid", data, {**env, "ECWID_ACCESS_TOKEN": "secret_wrong_77"})
    assert wrong.exit_code == 1
    assert f"ecwid API: GET /api/v3/{ecwid.store}/orders?" in wrong.output
    assert "HTTP 403, the credentials lack a permission" in wrong.output
    assert "secret_wrong_77" not in wrong.output
    unset = backfill("rules/ecwid", data, {**env, "ECWID_STORE_ID": ""})
    assert unset.exit_code == 2 and "ecwid: not set: ECWID_STORE_ID" in unset.output
