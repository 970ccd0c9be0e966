"""The backfill's parts one at a time: the API client's retries and pacing against a real
server on loopback (its sleeps recorded, not slept), each platform's rate-limit headers,
the cursor file, the window and the URL checks, and the progress line."""

from __future__ import annotations

import datetime
import io
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.cli.progress import Progress, duration
from engine.errors import PlatformApiError, UsageError
from engine.server.backfill import bigcommerce, shopify
from engine.server.backfill.api import ApiClient, Options, retry_after
from engine.server.backfill.cursor import CursorFile
from engine.server.backfill.source import Window, site_url
from tests.support.http_stub import Call, HttpStub, Reply

UTC = datetime.UTC


class Queue(HttpStub):
    """Answers with the queued replies in turn, then 200 ``{"ok": true}``."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        super().__init__(self._next)

    def _next(self, call: Call) -> Reply:
        return self.replies.pop(0) if self.replies else Reply(200, {"ok": True})


class Clock:
    """A clock the client's sleeps move forward: waits are recorded, not slept."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def client(url: str, clock: Clock, **kwargs: object) -> ApiClient:
    settings: dict[str, object] = {"rate": 1000.0, "backoff": (0.5, 1.0), "secrets": ["s3cret"]}
    settings.update(kwargs)
    headers = {"X-Token": "s3cret"}
    return ApiClient("shop", url, headers, sleep=clock.sleep, clock=clock, **settings)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_429_waits_what_retry_after_says_and_a_5xx_backs_off(clock: Clock) -> None:
    slow = Reply(429, "slow down", headers={"Retry-After": "2.5"})
    with Queue(slow, Reply(503, "busy")) as api, client(api.url, clock) as api_client:
        answer = api_client.get("/orders", {"page": "1"})
    assert answer.json() == {"ok": True}
    assert [c.status for c in api.calls] == [429, 503, 200]
    # the second try failed: the second backoff step (1.0 s), ± 20% jitter
    assert clock.slept[0] == 2.5 and 0.8 <= clock.slept[1] <= 1.2
    assert all(c.header("X-Token") == "s3cret" for c in api.calls)


def test_an_answer_no_retry_changes_stops_at_once_and_masks_echoed_secrets(clock: Clock) -> None:
    with (
        Queue(Reply(401, "bad token s3cret")) as api,
        client(api.url, clock) as api_client,
        pytest.raises(PlatformApiError) as stopped,
    ):
        api_client.get("/orders", {"page": "1"})
    assert str(stopped.value) == (
        "shop API: GET /orders?page=1: HTTP 401, the credentials were refused (check the "
        "token or key variables): bad token ****"
    )
    assert len(api.calls) == 1 and clock.slept == []


def test_retries_used_up_and_no_answer_at_all_stop_the_run(clock: Clock) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening
        with (
            client(url, clock, attempts=3) as api_client,
            pytest.raises(PlatformApiError) as stopped,
        ):
            api_client.get("/orders")
    assert "ConnectError (no answer) (after 3 tries)" in str(stopped.value)
    assert len(clock.slept) == 2


def test_requests_keep_to_the_rate_and_to_what_the_platform_headers_ask(clock: Clock) -> None:
    full = {"X-Shopify-Shop-Api-Call-Limit": "39/40"}
    with Queue(Reply(200, {}, headers=full), Reply(200, {})) as api:
        shop = shopify.Shopify(
            {"SHOPIFY_SHOP": api.url, "SHOPIFY_ADMIN_TOKEN": "t"},
            Window(datetime.datetime(2026, 1, 1, tzinfo=UTC)),
            Options(sleep=clock.sleep, clock=clock),
        )
        shop.client.get("/a")
        shop.client.get("/b")
        shop.close()
    # 39 of 40 used: wait until 4 calls of room are back, at 2 a second (the standard plan)
    assert clock.slept == [2.0]


def test_shopify_waits_only_near_a_full_bucket_and_bigcommerce_at_its_last_request() -> None:
    shop = shopify.Shopify(
        {"SHOPIFY_SHOP": "acme.myshopify.com", "SHOPIFY_ADMIN_TOKEN": "t"},
        Window(datetime.datetime(2026, 1, 1, tzinfo=UTC)),
        Options(rate=4.0),
    )
    pace = shop._pace
    shop.close()
    assert pace(httpx.Headers({"X-Shopify-Shop-Api-Call-Limit": "10/40"})) == 0.0
    assert pace(httpx.Headers({"X-Shopify-Shop-Api-Call-Limit": "40/40"})) == 5 / 4.0
    assert pace(httpx.Headers({})) == 0.0
    left = {"X-Rate-Limit-Requests-Left": "1", "X-Rate-Limit-Time-Reset-Ms": "1500"}
    assert bigcommerce._pace(httpx.Headers(left)) == 1.5
    assert bigcommerce._pace(httpx.Headers({**left, "X-Rate-Limit-Requests-Left": "20"})) == 0.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after(httpx.Headers({"Retry-After": "2.0"})) == 2.0
    date = "Wed, 21 Oct 2026 07:28:00 GMT"
    moment = datetime.datetime(2026, 10, 21, 7, 27, 30, tzinfo=UTC).timestamp()
    assert retry_after(httpx.Headers({"Retry-After": date}), now=moment) == 30.0
    assert retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after(httpx.Headers({})) is None


def test_a_link_to_another_host_is_not_followed(clock: Clock) -> None:
    with Queue() as api, client(api.url, clock) as api_client:
        assert api_client.url(f"{api.url}/next?page_info=x") == f"{api.url}/next?page_info=x"
        with pytest.raises(PlatformApiError, match="a link to another host: not followed"):
            api_client.get("https://elsewhere.example/next?page_info=x")
    assert api.calls == []


# -- the cursor --------------------------------------------------------------------------


@pytest.fixture
def cursor(tmp_path: Path) -> Iterator[CursorFile]:
    yield CursorFile.in_folder(tmp_path / "backfill", "shopify||shopify|t|w", "shopify-2026-01-01")


def test_a_cursor_is_saved_whole_and_read_back(cursor: CursorFile) -> None:
    assert cursor.load() is None
    cursor.save({"since_id": 42}, orders=250, pages=1, finished=False)
    saved = cursor.load()
    assert saved is not None
    assert (saved.position, saved.orders, saved.pages, saved.finished) == (
        {"since_id": 42},
        250,
        1,
        False,
    )
    assert cursor.path.name.startswith("shopify-2026-01-01-")
    assert [p.name for p in cursor.path.parent.iterdir()] == [cursor.path.name]  # no temp left


def test_a_damaged_or_foreign_cursor_is_a_clear_error(cursor: CursorFile) -> None:
    cursor.path.parent.mkdir(parents=True)
    cursor.path.write_text("{not json", encoding="utf-8")
    with pytest.raises(UsageError, match=r"not a backfill cursor .*--restart starts afresh"):
        cursor.load()
    CursorFile(cursor.path, "another|key").save({}, 0, 0, False)
    with pytest.raises(UsageError, match="the cursor of another backfill"):
        cursor.load()


def test_a_second_run_of_the_same_backfill_is_refused_while_one_runs(cursor: CursorFile) -> None:
    with (
        cursor.locked(),
        pytest.raises(UsageError, match="this backfill is running already"),
        CursorFile(cursor.path, cursor.key).locked(),
    ):
        pass
    with cursor.locked():  # released: a next run may start
        pass


# -- windows, URLs, progress -------------------------------------------------------------


def test_windows_and_site_urls_are_checked() -> None:
    since = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert Window(since).key() == "2025-12-31T22:00:00.."
    with pytest.raises(UsageError, match="--until must be later"):
        Window(since, since)
    assert site_url("acme.myshopify.com", "V") == "https://acme.myshopify.com"
    assert site_url("http://127.0.0.1:8080/", "V") == "http://127.0.0.1:8080"
    with pytest.raises(UsageError, match="HTTPS only"):
        site_url("http://shop.example", "V")
    with pytest.raises(UsageError, match="credentials in their own variables") as refused:
        site_url("https://ck:cs@shop.example", "V")
    assert "cs@" not in str(refused.value)


def test_the_progress_line_shows_a_bar_rate_and_eta_or_a_count() -> None:
    ticks = iter([0.0, 10.0, 10.0])
    progress = Progress("backfill shopify", "orders", io.StringIO(), clock=lambda: next(ticks))
    line = progress.line(500, 2000)
    assert "500/2,000 orders  25%" in line and "50.0/s" in line and "ETA 0:30" in line
    assert progress.line(500, None).endswith("500 orders  50.0/s")
    assert duration(3725) == "1:02:05" and duration(65) == "1:05"
