"""What only the PostgreSQL store has: servers sharing one database.

Claims ``FOR UPDATE SKIP LOCKED`` from two stores (two pools) at once, intake of one
delivery by two servers at once, liveness by advisory lock with a real child killed by
SIGKILL, migrations from several processes at once, durable commits whatever the
database's default, the rate limit shared by processes, and a store that cannot be
opened saying why without a password. Every test runs on a fresh database of a real
server (``postgres_database``) and skips, with the reason, when none can be started; the
semantics both stores share are in ``test_store.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.errors import StoreError, StoreUnavailable, UsageError
from engine.server.store.location import open_store
from engine.server.store.pg_limiter import SharedLimiter
from engine.server.store.pg_schema import SCHEMA_VERSION
from engine.server.store.postgres import Store
from engine.server.store.rows import NewEvent
from tests.conftest import ROOT
from tests.helpers_server import wait_until

T0 = 1_700_000_000.0


@pytest.fixture
def store(postgres_database: str) -> Iterator[Store]:
    with Store(postgres_database) as s:
        yield s


def query(url: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows as another connection sees them (committed)."""
    import psycopg

    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]


def event(idx: int) -> NewEvent:
    body = {"eventTypeKey": "orderCreated", "keyValue": "a@b.c", "params": []}
    return NewEvent("orders", idx, "orderCreated", "v2", body)


def child(code: str, *args: str) -> subprocess.Popen[str]:
    """A Python child process running ``code`` from the project's root."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def in_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(0..count-1)`` in threads released together; re-raise what one raised."""
    gate = threading.Barrier(count)
    failures: list[BaseException] = []

    def run(n: int) -> None:
        try:
            gate.wait(10)
            work(n)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    if failures:
        raise failures[0]


# -- servers sharing the database ------------------------------------------------------------


def test_two_stores_claiming_at_once_never_get_the_same_event(postgres_database: str) -> None:
    """Two pools, four threads claiming a few events at a time until none is due: every
    event is claimed exactly once (SKIP LOCKED; a plain read-then-lease would hand the
    same rows to two claimers)."""
    count = 300
    with Store(postgres_database) as first, Store(postgres_database) as second:
        for n in range(count):
            wid = first.add_webhook("shopify", {}, b"{}", f"d-{n}", received_at=T0).id
            first.record_result(wid, "t", "s", [event(0)])
        claimed: list[list[int]] = [[] for _ in range(4)]

        def claim(n: int) -> None:
            mine = (first, second)[n % 2]
            while found := mine.claim_due(time.time(), 3, 600.0, owner=f"server-{n}"):
                claimed[n].extend(e.id for e in found)

        in_threads(4, claim)
        every = [i for ids in claimed for i in ids]
        assert len(every) == count and len(set(every)) == count
        assert all(claimed), "a claimer got nothing: the claims did not run side by side"
        owners = dict(query(postgres_database, "SELECT id, leased_by FROM events"))
        for n, ids in enumerate(claimed):
            assert {owners[i] for i in ids} == {f"server-{n}"}


def test_two_stores_claiming_webhooks_at_once_never_process_one_twice(
    postgres_database: str,
) -> None:
    count = 200
    with Store(postgres_database) as first, Store(postgres_database) as second:
        ids = {first.add_webhook("shopify", {}, b"{}", None).id for _ in range(count)}
        claimed: list[list[int]] = [[] for _ in range(4)]

        def claim(n: int) -> None:
            mine = (first, second)[n % 2]
            while found := mine.claim_webhooks(time.time(), 3, 600.0, owner=f"server-{n}"):
                claimed[n].extend(w.id for w in found)

        in_threads(4, claim)
        every = [i for found in claimed for i in found]
        assert sorted(every) == sorted(ids)
        assert all(claimed)


def test_one_delivery_received_by_two_servers_at_once_is_stored_once(
    postgres_database: str,
) -> None:
    with Store(postgres_database) as first, Store(postgres_database) as second:
        results: list[tuple[int, bool]] = []
        lock = threading.Lock()

        def add(n: int) -> None:
            for k in range(20):
                added = (first, second)[n % 2].add_webhook("shopify", {}, b"{}", f"same-{k}")
                with lock:
                    results.append((added.id, added.duplicate))

        in_threads(4, add)
        stored = query(postgres_database, "SELECT delivery_id, id FROM webhooks")
        assert len(stored) == 20
        ids = dict(stored)
        assert sum(1 for _, duplicate in results if not duplicate) == 20
        assert {i for i, _ in results} == set(ids.values())


def test_a_batch_holds_up_no_other_thread(store: Store, postgres_database: str) -> None:
    """Unlike SQLite's, a PostgreSQL batch keeps its own connection: another thread writes
    and commits while it is open, and the batch's writes appear at its end."""
    first = store.add_webhook("shopify", {}, b"{}", None).id
    other: list[int] = []
    with store.batch():
        store.record_result(first, "t", "s", [event(0)])
        thread = threading.Thread(
            target=lambda: other.append(store.add_webhook("shopify", {}, b"{}", None).id)
        )
        thread.start()
        thread.join(30)
        assert other, "the other thread waited for the batch"
        seen = query(postgres_database, "SELECT id, state FROM webhooks ORDER BY id")
        assert seen == [(first, "received"), (other[0], "received")]
    assert query(postgres_database, "SELECT state FROM webhooks WHERE id = %s", (first,)) == [
        ("processed",)
    ]


# -- liveness --------------------------------------------------------------------------------

_SERVER = (
    "import sys, time\n"
    "from engine.server.store.postgres import Store\n"
    "store = Store(sys.argv[1])\n"
    "me = store.instance()\n"
    "print(me.id, len(store.claim_due(time.time(), 10, 600.0, owner=me.id)), flush=True)\n"
    "time.sleep(120)\n"
)


def test_a_server_killed_with_sigkill_is_found_gone_and_its_claims_released(
    store: Store, postgres_database: str
) -> None:
    wid = store.add_webhook("shopify", {}, b"{}", None).id
    store.record_result(wid, "t", "s", [event(0), event(1)])
    proc = child(_SERVER, postgres_database)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert len(line) == 2, proc.stderr.read() if proc.stderr else ""
        dead, held = line[0], int(line[1])
        assert held == 2
        me = store.instance()
        assert me.gone() == [], "a live server was taken for gone"
        running, stopped = store.servers()
        assert (dead, f"{proc.pid}@{socket.gethostname()}") in running
        assert (me.id, f"{os.getpid()}@{socket.gethostname()}") in running
        assert stopped == []
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # the database drops the lock once it has seen the connection close
        assert wait_until(me.gone, timeout=10, what="the killed server found gone") == [dead]
        assert store.servers() == ([(me.id, f"{os.getpid()}@{socket.gethostname()}")], [dead])
        assert store.release_leases(dead) == 2
        assert len(store.due_events(time.time(), 10)) == 2
        me.forget(dead)
        assert me.gone() == []
        me.close()
        assert store.servers() == ([], [])
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_a_server_that_stops_cleanly_leaves_nothing_to_find(store: Store) -> None:
    first, second = store.instance(), store.instance()
    assert first.id != second.id
    assert first.gone() == [] and second.gone() == []
    first.close()
    first.close()  # twice is harmless
    assert second.gone() == []
    assert [i for i, _ in store.servers()[0]] == [second.id]
    second.close()


# -- migrations ------------------------------------------------------------------------------

_MIGRATE = (
    "import sys, time, psycopg\n"
    "from pathlib import Path\n"
    "from engine.server.store.pg_schema import migrate\n"
    "gate = Path(sys.argv[2])\n"
    "with psycopg.connect(sys.argv[1], autocommit=True) as conn:\n"
    "    while not gate.exists():\n"
    "        time.sleep(0.001)\n"
    "    print(migrate(conn), flush=True)\n"
)


def test_processes_starting_at_once_on_a_new_database_migrate_it_once(
    postgres_database: str, tmp_path: Path
) -> None:
    """Four processes, connected, released together: one creates the schema, the others
    wait for it (the migration's advisory lock) and find it up to date."""
    gate = tmp_path / "go"
    procs = [child(_MIGRATE, postgres_database, str(gate)) for _ in range(4)]
    time.sleep(0.5)  # let them connect, so that they start the migration together
    gate.touch()
    found = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        found.append(int(out))
    assert sorted(found) == [0, SCHEMA_VERSION, SCHEMA_VERSION, SCHEMA_VERSION]
    assert query(postgres_database, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_a_database_with_a_newer_schema_is_refused(postgres_database: str) -> None:
    Store(postgres_database).close()
    import psycopg

    with psycopg.connect(postgres_database) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        Store(postgres_database)


def test_operator_commands_refuse_a_database_without_hookmap_data(postgres_database: str) -> None:
    with pytest.raises(UsageError, match="no hookmap data in this database"):
        open_store(postgres_database, must_exist=True)
    assert query(postgres_database, "SELECT to_regclass('webhooks')") == [(None,)]


# -- durability and outside text ---------------------------------------------------------


def test_commits_are_durable_even_where_the_database_says_otherwise(
    store: Store, postgres_database: str
) -> None:
    """The test cluster runs with synchronous_commit off; the store's sessions turn it on,
    so add_webhook has reached the disk when it returns."""
    import psycopg

    with psycopg.connect(postgres_database) as conn:
        default = conn.execute("SHOW synchronous_commit").fetchone()
    if os.environ.get("HOOKMAP_TEST_DATABASE_URL") is None:
        assert default == ("off",)  # tests/support/postgres.py sets it so
    with store._pool.connection() as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)


def test_processing_a_webhook_leaves_its_stored_body_as_it_was(
    store: Store, postgres_database: str
) -> None:
    """The body row is written once: its row version (xmin) survives the webhook's claim
    and processing, which rewrite the webhook's own row."""
    body = json.dumps({"note": "y" * 64_000}).encode()
    wid = store.add_webhook("shopify", {}, body, "big").id
    sql = (
        "SELECT b.xmin::text, w.xmin::text FROM webhook_bodies b"
        " JOIN webhooks w ON w.id = b.webhook_id"
    )
    ((body_before, row_before),) = query(postgres_database, sql)
    store.claim_webhooks(time.time(), 10, 60.0, owner="me")
    store.record_result(wid, "orders/create", "1 event(s) to send", [event(0)])
    ((body_after, row_after),) = query(postgres_database, sql)
    assert body_after == body_before and row_after != row_before
    found = store.get_webhook(wid)
    assert found is not None and found.webhook.body == body


def test_a_nul_in_outside_text_is_kept_as_a_replacement_character(store: Store) -> None:
    """PostgreSQL text cannot hold NUL; a topic or a CDP answer carrying one is stored
    with U+FFFD instead of failing the write (and losing the attempt)."""
    wid = store.add_webhook("shopify", {}, b"{}", None).id
    store.record_result(wid, "orders\x00create", "s", [event(0)])
    (due,) = store.claim_due(time.time() + 1, 10, 60.0)
    assert store.record_attempt(due.id, "dead", 400, None, "bad\x00answer", T0, 1.0)
    detail = store.get_webhook(wid)
    assert detail is not None
    assert detail.webhook.topic == "orders\ufffdcreate"
    assert detail.attempts[0].response == "bad\ufffdanswer"
    assert detail.events[0].last_error == "HTTP 400: bad\ufffdanswer"


# -- where the store is, and what is said about it ---------------------------------------------


def test_describe_and_errors_never_show_the_password(postgres_database: str) -> None:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    parts = conninfo_to_dict(postgres_database)
    with Store(postgres_database) as store:
        assert store.describe() == (
            f"postgresql://{parts['user']}@{parts['host']}:{parts['port']}/{parts['dbname']}"
        )
    with_password = make_conninfo(postgres_database, password="sekrit-pw")
    with Store(with_password) as store:
        assert "sekrit" not in store.describe()
    refused = "postgresql://hookmap:sekrit-pw@127.0.0.1:1/nowhere"
    with pytest.raises(UsageError) as caught:
        open_store(refused)
    assert "sekrit" not in str(caught.value)
    assert str(caught.value).startswith("postgresql://hookmap@127.0.0.1:1/nowhere: ")


def test_without_psycopg_the_module_imports_and_opening_says_which_extra() -> None:
    """The postgresql extra is optional: hookmap imports without it, and a PostgreSQL URL
    then gets a usage error that names it."""
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None; sys.modules['psycopg_pool'] = None\n"
        "from engine.server.store.location import open_store\n"
        "from engine.errors import UsageError\n"
        "try:\n"
        "    open_store('postgresql://nobody@127.0.0.1:1/none')\n"
        "except UsageError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "PostgreSQL stores need the postgresql extra: pip install 'hookmap[postgresql]'"
    )


# -- the shared rate limit -------------------------------------------------------------------

_ACQUIRE = (
    "import asyncio, json, sys, time\n"
    "from pathlib import Path\n"
    "from engine.server.store.pg_limiter import SharedLimiter\n"
    "async def main():\n"
    "    limiter = SharedLimiter(sys.argv[1], float(sys.argv[3]))\n"
    "    await limiter.acquire('warm-up')\n"
    "    gate = Path(sys.argv[2])\n"
    "    while not gate.exists():\n"
    "        await asyncio.sleep(0.001)\n"
    "    times = []\n"
    "    for _ in range(int(sys.argv[4])):\n"
    "        await limiter.acquire('account')\n"
    "        times.append(time.time())\n"
    "    await limiter.aclose()\n"
    "    print(json.dumps(times))\n"
    "asyncio.run(main())\n"
)


def test_the_rate_limit_holds_across_processes(postgres_database: str, tmp_path: Path) -> None:
    """Two processes, each sending as fast as its limiter lets it, share one account's
    rate: together they take as long as one process sending both shares would (a limiter
    per process would let them finish in half that)."""
    Store(postgres_database).close()
    rate, each = 20.0, 20
    gate = tmp_path / "go"
    procs = [child(_ACQUIRE, postgres_database, str(gate), str(rate), str(each)) for _ in "ab"]
    time.sleep(1.0)  # both connected and warmed up, then released together
    gate.touch()
    times: list[float] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        times.extend(json.loads(out))
    times.sort()
    # 2 × 20 requests spaced 1/20 s apart span 39/20 s; two separate limits would span 19/20
    assert times[-1] - times[0] >= (2 * each - 1) / rate - 0.2


def test_accounts_have_limits_of_their_own(postgres_database: str) -> None:
    """Requests for one account do not use up another's: reserved together, five for one
    account push its next slot four intervals past the other's."""
    Store(postgres_database).close()
    limiter = SharedLimiter(postgres_database, 10.0)

    async def main() -> None:
        try:
            await asyncio.gather(
                *(limiter.acquire("busy") for _ in range(5)), limiter.acquire("calm")
            )
        finally:
            await limiter.aclose()

    asyncio.run(main())
    tat = dict(query(postgres_database, "SELECT account, tat FROM rate_limits"))
    assert tat["busy"] - tat["calm"] == pytest.approx(0.4, abs=0.05)


def test_a_limiter_whose_database_is_unreachable_limits_locally(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = SharedLimiter("postgresql://nobody:sekrit@127.0.0.1:1/none", 1000.0, timeout=0.2)

    async def main() -> None:
        try:
            for _ in range(3):
                await limiter.acquire("account")
        finally:
            await limiter.aclose()

    asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if r.name == "hookmap.ratelimit"]
    assert len(warnings) == 1 and "limiting in this process alone" in warnings[0]
    assert "sekrit" not in warnings[0]


def test_a_request_that_wakes_too_late_for_its_slot_takes_the_next_one(
    postgres_database: str,
) -> None:
    """A busy process wakes after its slot; sending then could crowd the second after it.
    The request gives the slot up and waits for a fresh one instead."""
    Store(postgres_database).close()
    limiter = SharedLimiter(postgres_database, 10.0)

    async def main() -> None:
        try:
            await limiter.acquire("account")  # the first slot: now
            second = asyncio.create_task(limiter.acquire("account"))  # about 0.1 s on
            await asyncio.sleep(0.02)
            time.sleep(0.3)  # the event loop is held up past the second's slot
            await second
        finally:
            await limiter.aclose()

    started = time.time()
    asyncio.run(main())
    assert limiter.late == 1
    # three slots reserved: the first, the one given up (about 0.1 s on), and one after
    # the hold-up (0.3 s): the next one would come 0.1 s after that
    ((tat,),) = query(postgres_database, "SELECT tat FROM rate_limits")
    assert tat - started >= 0.3 + limiter.interval - 0.05


def test_without_a_server_the_postgresql_tests_skip_and_say_why() -> None:
    """With no PostgreSQL to be had, the store tests of the postgresql backend are reported
    skipped with the reason, never passed, and SQLite's still run."""
    env = {key: value for key, value in os.environ.items() if key != "HOOKMAP_TEST_DATABASE_URL"}
    env |= {"HOOKMAP_TEST_PG_BINDIR": "/nonexistent/pg/bin", "COLUMNS": "1000"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests/test_store.py::test_claim_due_leases_events_so_they_are_not_claimed_twice",
            f"{__file__}::test_two_stores_claiming_at_once_never_get_the_same_event",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 2 skipped" in done.stdout, done.stdout
    assert "PostgreSQL server binaries (initdb, pg_ctl) not found" in done.stdout


def test_a_webhook_the_database_cannot_take_now_is_store_unavailable(
    store: Store, postgres_database: str
) -> None:
    """A database that refuses writes (here: made read-only, as a standby or a full disk
    would) raises StoreUnavailable, which intake answers 503 'send it again later'; the
    message names the database without its password and in one line."""
    import psycopg

    store.add_webhook("shop", {}, b"1", "d-1")
    db = psycopg.conninfo.conninfo_to_dict(postgres_database)["dbname"]
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{db}" SET default_transaction_read_only = on')
        # the store's pooled connections are replaced by ones that see the setting
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (db,),
        )
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.add_webhook("shop", {}, b"2", "d-2")
        assert "read-only" in str(caught.value) and "\n" not in str(caught.value)
    finally:
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")
            conn.execute(f'ALTER DATABASE "{db}" SET default_transaction_read_only = off')
    assert query(postgres_database, "SELECT count(*) FROM webhooks") == [(1,)]
