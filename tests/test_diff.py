"""`hookmap diff`: old and new rules over the same webhooks, as an integrator runs it before
shipping a rule change; stored webhooks in a real SQLite file, a folder of payloads, and
the rules a real server on loopback records that it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.errors import UsageError
from engine.impact import EventView, pair
from engine.sandbox.run import running as running_sandbox
from engine.sandbox.settings import SandboxConfig
from engine.server import leases
from engine.server.running import SUFFIX, read_running
from engine.server.store.sqlite import DB_NAME, Store
from tests.helpers_server import API_KEY, serving, wait_until

RULES = """name: shop
topic: {header: X-Topic}
verify: {scheme: none}
rules:
  - name: new-order
    topics: order.created
    events:
      - type: orderCreated
        key: email
        params:
          externalOrderId: to_string(id)
          totalCost: total
          status: "'INITIALIZED'"
          date: created
          currency: "'USD'"
          email: email
  - name: paid
    topics: order.paid
    events:
      - type: orderUpdated
        key: email
        params:
          externalOrderId: to_string(id)
          totalCost: total
          status: "'IN_PROGRESS'"
          date: created
          currency: "'USD'"
          email: email
"""


def order(n: int, total: str = "10.00") -> bytes:
    return json.dumps(
        {"id": n, "total": total, "created": "2026-10-14T09:41:27-04:00", "email": f"c{n}@x.org"}
    ).encode()


def write_rules(folder: Path, text: str = RULES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "shop.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def write_payload(folder: Path, name: str, body: bytes, topic: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_bytes(body)
    (folder / f"{name}.headers").write_text(f"X-Topic: {topic}\n", encoding="utf-8")


def diff(*args: str) -> tuple[int, Any, str]:
    result = CliRunner().invoke(main, ["diff", *args], catch_exceptions=False)
    out = result.stdout
    doc = json.loads(out) if "--json" in args and result.exit_code in (0, 1) else None
    return result.exit_code, doc, out + result.stderr


def group(doc: Any, event_type: str) -> Any:
    (found,) = [g for g in doc["groups"] if g["eventTypeKey"] == event_type]
    return found


def test_same_rules_exit_0_and_every_event_unchanged(tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules")
    write_payload(tmp_path / "in", "a", order(1), "order.created")
    code, doc, _ = diff(
        "--rules", str(rules), "--against", str(rules), "--webhooks-from", str(tmp_path / "in"),
        "--json",
    )  # fmt: skip
    assert code == 0
    assert doc["changed"] is False and doc["identical_rulesets"] == ["shop"]
    assert doc["totals"] == {"appeared": 0, "disappeared": 0, "changed": 0, "unchanged": 1}


def test_a_changed_param_is_shown_old_beside_new_and_exits_1(tmp_path: Path) -> None:
    old = write_rules(tmp_path / "old")
    new = write_rules(tmp_path / "new", RULES.replace("totalCost: total", "totalCost: '`0`'", 1))
    write_payload(tmp_path / "in", "a", order(1, "12.50"), "order.created")
    write_payload(tmp_path / "in", "b", order(2), "order.paid")
    args = ["--rules", str(new), "--against", str(old), "--webhooks-from", str(tmp_path / "in")]
    code, doc, _ = diff(*args, "--json")
    assert code == 1
    created = group(doc, "orderCreated")
    assert (created["changed"], created["unchanged"]) == (1, 0)
    assert created["fields"] == {"params.totalCost": 1}
    (example,) = created["examples"]
    assert example["webhook"].endswith("a.json")
    assert example["fields"] == [
        {"field": "params.totalCost", "old": "12.5", "new": "0", "in_old": True, "in_new": True}
    ]
    assert group(doc, "orderUpdated")["unchanged"] == 1
    code, _, text = diff(*args)
    assert code == 1
    assert "shop · order.created · orderCreated: 1 changed, 0 unchanged" in text
    (row,) = [line for line in text.splitlines() if line.strip().startswith("params.totalCost")]
    assert row.split() == ["params.totalCost", '"12.5"', '"0"']


def test_a_renamed_rule_pairs_its_events_by_type_and_index(tmp_path: Path) -> None:
    """Renaming a rule is not every event disappearing and appearing again."""
    old = write_rules(tmp_path / "old")
    new = write_rules(tmp_path / "new", RULES.replace("name: paid", "name: order-paid"))
    write_payload(tmp_path / "in", "b", order(2), "order.paid")
    code, doc, _ = diff(
        "--rules", str(new), "--against", str(old), "--webhooks-from", str(tmp_path / "in"),
        "--json",
    )  # fmt: skip
    assert code == 0, "the same request would be sent"
    assert doc["totals"]["unchanged"] == 1 and doc["totals"]["appeared"] == 0


def test_events_that_appear_and_disappear(tmp_path: Path) -> None:
    old = write_rules(tmp_path / "old")
    new = write_rules(
        tmp_path / "new",
        RULES.replace(
            "    topics: order.paid\n", '    topics: order.paid\n    when: "`false`"\n'
        ).replace("topics: order.created", "topics: [order.created, order.paid]"),
    )
    write_payload(tmp_path / "in", "b", order(2), "order.paid")
    code, doc, _ = diff(
        "--rules", str(new), "--against", str(old), "--webhooks-from", str(tmp_path / "in"),
        "--json",
    )  # fmt: skip
    assert code == 1
    assert group(doc, "orderCreated")["appeared"] == 1
    assert group(doc, "orderUpdated")["disappeared"] == 1


def test_an_event_the_new_rules_drop_says_which_problems(tmp_path: Path) -> None:
    old = write_rules(tmp_path / "old")
    new = write_rules(tmp_path / "new", RULES.replace("totalCost: total", "totalCost: nope", 1))
    write_payload(tmp_path / "in", "a", order(1), "order.created")
    code, doc, _ = diff(
        "--rules", str(new), "--against", str(old), "--webhooks-from", str(tmp_path / "in"),
        "--json",
    )  # fmt: skip
    assert code == 1
    (example,) = group(doc, "orderCreated")["examples"]
    fields = {f["field"]: (f["old"], f["new"]) for f in example["fields"]}
    assert fields["sent"] == (True, False)
    assert fields["problems"] == ([], ["V101 totalCost"])
    assert example["new"]["where"].endswith("shop.yaml:8:9")


def test_stored_webhooks_since_in_pages_with_a_source_filter(tmp_path: Path) -> None:
    """More webhooks than a page, read from a real SQLite store; another source's left out."""
    old = write_rules(tmp_path / "old")
    new = write_rules(tmp_path / "new", RULES.replace("totalCost: total", "totalCost: '`0`'", 1))
    data = tmp_path / "data"
    with Store(data / DB_NAME) as store:
        for n in range(205):
            store.add_webhook("shop", {"x-topic": "order.created"}, order(n), f"d{n}")
        store.add_webhook("other", {"x-topic": "order.created"}, order(999), "o1")
    args = ["--rules", str(new), "--against", str(old), "--data", str(data), "--since", "1d"]
    code, doc, _ = diff(*args, "--source", "shop", "--json", "--examples", "2")
    assert code == 1
    assert doc["webhooks"]["compared"] == 205
    assert group(doc, "orderCreated")["changed"] == 205
    assert [e["webhook"] for e in group(doc, "orderCreated")["examples"]] == ["#1", "#2"]
    code, doc, _ = diff(*args, "--json")
    assert doc["webhooks"]["compared"] == 206
    assert doc["webhooks"]["failed"]["both"] == 1
    assert doc["failures"][0]["old"] == "no rule set 'other'"


LOOKUP_RULES = """name: ids
topic: {header: X-Topic}
hosts: [api.example.com]
lookups:
  order:
    url: https://api.example.com/orders/{id}
    args: {id: id}
rules:
  - name: created
    topics: created
    events:
      - type: custom
        key: fetched('order').email
        params:
          total: fetched('order').total
"""


def test_lookups_are_answered_by_mocks_never_the_network(tmp_path: Path) -> None:
    old = write_rules(tmp_path / "old", LOOKUP_RULES)
    new = write_rules(tmp_path / "new", LOOKUP_RULES.replace("total: fetched", "sum: fetched"))
    write_payload(tmp_path / "in", "a", b'{"id": 7}', "created")
    args = ["--rules", str(new), "--against", str(old), "--webhooks-from", str(tmp_path / "in")]
    code, doc, _ = diff(*args, "--json")
    assert code == 0, "neither side could be processed, the same way"
    assert doc["webhooks"]["failed"] == {"old": 0, "new": 0, "both": 1}
    assert "give --mock NAME=FILE, or --live" in doc["failures"][0]["new"]
    mock = tmp_path / "order.json"
    mock.write_text('{"email": "a@example.com", "total": 5}', encoding="utf-8")
    code, doc, _ = diff(*args, "--mock", f"order={mock}", "--json")
    assert code == 1
    (example,) = group(doc, "custom")["examples"]
    assert {f["field"] for f in example["fields"]} == {"params.total", "params.sum"}


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules")
    (tmp_path / "in").mkdir()
    code, _, out = diff("--rules", str(rules), "--webhooks-from", str(tmp_path / "in"))
    assert code == 2 and "--against PATH or --against-running" in out
    code, _, out = diff("--rules", str(rules), "--against", str(rules))
    assert code == 2 and "--since TIME or --webhooks-from DIR" in out
    broken = write_rules(tmp_path / "broken", RULES.replace("to_string(id)", "to_strin(id)", 1))
    code, _, out = diff("--rules", str(broken), "--against", str(rules), "--since", "1d")
    assert code == 2
    assert f"{broken}:11:28: error[E201]" in out and "the new rules have 1 error(s)" in out


def test_against_running_compares_with_the_rules_the_server_loaded(tmp_path: Path) -> None:
    """A real server on loopback records its rules; the file is then edited on disk (the
    change to ship): diff compares the edit with what the server still runs. Once the
    server stops, nothing runs and diff says so."""
    rules = write_rules(tmp_path / "rules")
    data = tmp_path / "data"
    with (
        running_sandbox(SandboxConfig(api_key=API_KEY)) as box,
        serving(box.destination(), data, rules=(str(rules),), env={}) as served,
    ):
        ((record,),) = [read_running(data)]
        assert record.paths == (str(rules.resolve()),)
        assert record.groups[0].texts == (RULES,)
        assert served.service.loaded_from[0].texts == (RULES,)
        with Store(data / DB_NAME) as store:
            store.add_webhook("shop", {"x-topic": "order.created"}, order(1, "3.00"), "a")
        rules.write_text(RULES.replace("totalCost: total", "totalCost: '`0`'", 1), "utf-8")
        args = ["--rules", str(rules), "--against-running", "--data", str(data)]
        code, doc, _ = diff(*args, "--since", "1h", "--json")
        assert code == 1, doc
        assert doc["old"]["server"]["id"] == record.server
        (example,) = group(doc, "orderCreated")["examples"]
        assert example["fields"][0]["old"] == "3"
        # a reload (SIGHUP) records the new rules: nothing differs any more
        assert served.service.reload()
        code, doc, _ = diff(*args, "--since", "1h", "--json")
        assert code == 0 and doc["identical_rulesets"] == ["shop"]
    assert not list((data / leases.FOLDER).glob(f"*{SUFFIX}")), "the record goes with it"
    code, _, out = diff(*args, "--since", "1h")
    assert code == 2 and "no hookmap server is running" in out


def test_a_server_that_died_leaves_no_record_behind(tmp_path: Path) -> None:
    """The record of a server whose lock is gone is not read, and the next server removes
    it."""
    data = tmp_path / "data"
    folder = data / leases.FOLDER
    folder.mkdir(parents=True)
    (folder / f"dead{SUFFIX}").write_text("{}", encoding="utf-8")
    (folder / "dead.lock").write_text("1\n", encoding="utf-8")  # nobody holds its lock
    with pytest.raises(UsageError, match="no hookmap server is running"):
        read_running(data)
    rules = write_rules(tmp_path / "rules")
    with (
        running_sandbox(SandboxConfig(api_key=API_KEY)) as box,
        serving(box.destination(), data, rules=(str(rules),), env={}),
    ):
        wait_until(lambda: not (folder / f"dead{SUFFIX}").exists(), what="the stale record")
        assert len(read_running(data)) == 1


def test_against_running_on_a_database_says_there_is_no_record() -> None:
    """Servers on a shared PostgreSQL store keep no rules record: the URL as given is
    recognised (a ``Path`` would fold its ``//``) and the answer says what to do."""
    with pytest.raises(UsageError, match="compare with --against OLD_RULES"):
        read_running("postgresql://hookmap@db.example/hookmap")


def view(rule: str, index: int, event_type: str) -> EventView:
    return EventView(rule, index, event_type, True, {"params": []}, (), None)


def test_pairing_by_rule_then_by_type_and_index() -> None:
    a0, a1, b0 = view("a", 0, "t"), view("a", 1, "t"), view("b", 0, "u")
    renamed0, renamed1, other = view("z", 0, "t"), view("z", 1, "t"), view("c", 0, "u")
    assert pair([a0, a1, b0], [renamed1, renamed0, other]) == [
        (a0, renamed0),
        (a1, renamed1),
        (b0, other),
    ]
    assert pair([a0], []) == [(a0, None)]
    assert pair([], [a0]) == [(None, a0)]


def test_an_event_whose_type_changed_disappears_from_one_type_and_appears_in_the_other(
    tmp_path: Path,
) -> None:
    """Same rule, same index, another event type: counted per type, one fewer of the old
    and one more of the new, never as a change inside the new type's group."""
    old = write_rules(tmp_path / "old")
    new = write_rules(
        tmp_path / "new", RULES.replace("type: orderUpdated", "type: orderDelivered", 1)
    )
    write_payload(tmp_path / "in", "a", order(1), "order.paid")
    args = ["--rules", str(new), "--against", str(old), "--webhooks-from", str(tmp_path / "in")]
    code, doc, _ = diff(*args, "--json")
    assert code == 1
    assert group(doc, "orderUpdated")["disappeared"] == 1
    assert group(doc, "orderDelivered")["appeared"] == 1
    assert doc["totals"] == {"appeared": 1, "disappeared": 1, "changed": 0, "unchanged": 0}
    assert pair([view("a", 0, "t")], [view("a", 0, "u")]) == [
        (view("a", 0, "t"), None),
        (None, view("a", 0, "u")),
    ]


def test_shop_compares_only_that_shops_stored_webhooks(tmp_path: Path) -> None:
    """--shop (as every operator command has) picks one shop's webhooks out of a store
    that serves several; it means nothing for a folder of payloads."""
    old = write_rules(tmp_path / "old")
    new = write_rules(tmp_path / "new", RULES.replace("totalCost: total", "totalCost: '`0`'", 1))
    data = tmp_path / "data"
    data.mkdir()
    with Store(data / DB_NAME) as store:
        store.add_webhook("shop", {"x-topic": "order.paid"}, order(1), "a", shop="acme")
        store.add_webhook("shop", {"x-topic": "order.created"}, order(2), "b", shop="zeta")
    args = ["--rules", str(new), "--against", str(old), "--data", str(data), "--since", "1h"]
    code, doc, _ = diff(*args, "--shop", "zeta", "--json")
    assert code == 1 and doc["input"]["shop"] == "zeta"
    assert doc["webhooks"]["compared"] == 1
    assert [g["eventTypeKey"] for g in doc["groups"]] == ["orderCreated"]
    code, doc, _ = diff(*args, "--shop", "acme", "--json")
    assert code == 0 and [g["eventTypeKey"] for g in doc["groups"]] == ["orderUpdated"]
    code, _, out = diff(*args, "--shop", "nobody")
    assert code == 0 and "0 stored in" in out and ", shop nobody" in out
    code, _, out = diff(*args[:4], "--webhooks-from", str(tmp_path), "--shop", "acme")
    assert code == 2 and "--shop picks stored webhooks" in out
