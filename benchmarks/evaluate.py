"""How fast a Shopify order becomes its eSputnik event: a benchmark, not a test.

    python benchmarks/evaluate.py [--seconds 0.4] [--rounds 5] [--no-profile]

Contenders, side by side in one process, on the shipped ``order-created`` rule over
the bundled order (examples/shopify/orders-create.json) and a 50-line-item variant:

* ``handwritten``     plain Python producing the same key and params (asserted equal);
* ``compiled``        the rule's key and param expressions, compiled to Python
  (engine.rules.codegen), with the per-webhook context, nulls left out; each called as the
  evaluate stage calls it (the compiled function with the bound functions);
* ``interpreter``     the same expressions through jmespath's own interpreter (its
  ``search``, as ``Expression.search`` calls it);
* ``evaluate-stage``  the compiled expressions through the engine's evaluate stage
  (``evaluate_rule``: outcomes and problems too), to show what that stage adds;
* ``end-to-end``      bytes in, checked request bodies out (``engine.pipeline.process``):
  the body read in part, only what the rules read (``engine.rules.demand``), as the server
  reads it;
* ``handwritten-end-to-end``  the same bytes in and the same request bytes out by hand
  (asserted equal): the engine's reader, the hand-written mapping, the v1 body written
  with orjson; no checks, no results. What is left between it and ``end-to-end`` is the
  engine's own work per webhook.

Each prints ``<name> <evaluations per second>`` (the best of ``--rounds`` interleaved
rounds, which keeps a busy machine from favouring whoever ran first), then the ratios.
Then each stage of the per-webhook path timed alone (what is left of the end-to-end time
is ``process``'s own work: contexts, results, and freeing the parsed body), and a
cProfile of it.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import json
import platform
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.decoders import decode  # noqa: E402
from engine.evaluate import Produced, evaluate_rule  # noqa: E402
from engine.events import checks, money  # noqa: E402
from engine.events.encode import body_bytes, encode_request, request_body  # noqa: E402
from engine.pipeline import process  # noqa: E402
from engine.rules import compiler  # noqa: E402
from engine.rules.codegen import INTERPRETER  # noqa: E402
from engine.rules.functions import EngineFunctions, EvalContext, make_options  # noqa: E402
from engine.rules.model import (  # noqa: E402
    Expression,
    Rule,
    RuleSet,
)
from engine.webhook import Webhook, parse_json, read_webhook_file  # noqa: E402

EXAMPLE = ROOT / "examples" / "shopify" / "orders-create.json"
RULE = "order-created"


# -- the hand-written mapping ------------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or value == ""


def _first(*values: Any) -> Any:
    for value in values:
        if not _missing(value):
            return value
    return None


def _number(text: Any) -> Any:
    """number() / to_number() of the plain decimal strings Shopify sends."""
    if not isinstance(text, str):
        return text
    return float(text) if "." in text else int(text)


def _v1_text(value: Any) -> str:
    """A v1 param value: text as it is, numbers as Python writes them, lists as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return repr(value)


def _as_id(value: Any) -> Any:
    return value if isinstance(value, str) else str(value)


def handwritten(
    order: dict[str, Any], headers: dict[str, str], functions: EngineFunctions
) -> tuple[Any, list[tuple[str, Any]]]:
    """The shipped Shopify order mapping as a Python programmer would write it.

    Dates and phones go through the same library functions the rule calls (a hand
    mapping would not write its own date parser either), called directly.
    """
    customer = order.get("customer") or {}
    billing = order.get("billing_address") or {}
    shipping_address = order.get("shipping_address")
    shipping = shipping_address if isinstance(shipping_address, dict) else {}
    email = _first(order.get("email"), order.get("contact_email"), customer.get("email"))
    regions = (billing.get("country_code"), shipping.get("country_code"))
    shop_region = functions.context.vars.get("phone_country")
    key = email or functions._func_phone(
        _first(order.get("phone"), customer.get("phone")), *regions, shop_region
    )
    lines = order.get("shipping_lines") or []
    statuses = [s for s in (order.get("financial_status"), order.get("fulfillment_status")) if s]
    if order.get("cancelled_at") or order.get("financial_status") in ("refunded", "voided"):
        status = "CANCELLED"
    else:
        status = functions.context.tables["order_status"].get(order.get("fulfillment_status"))
    address = None
    if isinstance(shipping_address, dict):
        parts = ("address1", "address2", "city", "province", "zip", "country")
        address = ", ".join(shipping[p] for p in parts if shipping.get(p)) or None
    items = []
    for line in order.get("line_items") or []:
        item = {
            "externalItemId": _as_id(
                line.get("variant_id") or line.get("product_id") or line.get("id")
            ),
            "name": line.get("name"),
            "quantity": line.get("quantity"),
            "cost": _number(line.get("price")),
            "category": line.get("vendor"),
            "description": line.get("variant_title"),
        }
        items.append({k: v for k, v in item.items() if not _missing(v)})
    params = [
        ("externalOrderId", _as_id(order.get("id"))),
        ("externalCustomerId", customer.get("id") and _as_id(customer["id"])),
        ("totalCost", order.get("total_price")),
        ("status", status),
        ("date", functions._func_iso_datetime(order.get("created_at"))),
        ("currency", order.get("currency")),
        ("email", email),
        (
            "phone",
            functions._func_phone(
                _first(
                    order.get("phone"),
                    customer.get("phone"),
                    billing.get("phone"),
                    shipping.get("phone"),
                ),
                *regions,
                (customer.get("default_address") or {}).get("country_code"),
                shop_region,
            ),
        ),
        (
            "firstName",
            _first(
                customer.get("first_name"), billing.get("first_name"), shipping.get("first_name")
            ),
        ),
        (
            "lastName",
            _first(customer.get("last_name"), billing.get("last_name"), shipping.get("last_name")),
        ),
        ("shipping", sum(_number(line.get("price")) for line in lines if line.get("price"))),
        ("discount", order.get("total_discounts")),
        ("taxes", order.get("total_tax")),
        ("statusDescription", " / ".join(statuses) or None),
        ("storeId", headers.get("x-shopify-shop-domain")),
        ("source", order.get("source_name")),
        ("paymentMethod", ", ".join(order.get("payment_gateway_names") or []) or None),
        ("deliveryMethod", lines[0].get("title") if lines else None),
        ("deliveryAddress", address),
        ("additionalInfo", order.get("name")),
        ("items", items),
    ]
    return key, [(name, value) for name, value in params if value is not None]


# -- inputs ------------------------------------------------------------------------------


def big_order(order: dict[str, Any], count: int = 50) -> dict[str, Any]:
    """The bundled order with ``count`` line items (copies of its own, renumbered)."""
    out = copy.deepcopy(order)
    lines = order["line_items"]
    out["line_items"] = []
    for index in range(count):
        line = copy.deepcopy(lines[index % len(lines)])
        for field in ("id", "variant_id", "product_id"):
            if isinstance(line.get(field), int):
                line[field] += 1000 * (index + 1)
        line["name"] = f"{line.get('name')} #{index + 1}"
        out["line_items"].append(line)
    return out


class Case:
    """One order, with everything each contender needs prepared outside the timing."""

    def __init__(
        self, label: str, raw: bytes, headers: dict[str, str], compiled: RuleSet, interp: RuleSet
    ) -> None:
        self.label = label
        self.raw = raw
        self.body = json.loads(raw)
        self.headers = headers
        self.webhook = Webhook(raw, headers)
        self.compiled, self.interp = compiled, interp
        self.topic = headers["x-shopify-topic"]
        # per rule set: (param name, expression, constant), the key first (name None)
        self.plan: dict[int, list[tuple[str | None, Expression | None, Any]]] = {}
        for ruleset in (compiled, interp):
            spec = _rule(ruleset).events[0]
            plan = [(p.name, p.expr, p.const) for p in spec.params]
            self.plan[id(ruleset)] = [(None, spec.key, None), *plan] if spec.key else plan

    def context(self, ruleset: RuleSet) -> EvalContext:
        return EvalContext(
            root=self.body,
            headers=self.headers,
            topic=self.topic,
            vars=ruleset.vars,
            tables=ruleset.tables,
        )

    def handwritten(self) -> Any:
        return handwritten(self.body, self.headers, EngineFunctions(self.context(self.compiled)))

    def params(self, ruleset: RuleSet) -> Any:
        """The rule's key and params: each expression once, nulls left out (no traces)."""
        options = make_options(self.context(ruleset))
        functions = options.custom_functions
        body = self.body
        key = None
        params = []
        for name, expr, const in self.plan[id(ruleset)]:
            if expr is None:
                params.append((name, const))
                continue
            if expr.compiled is not None:
                value = expr.compiled(body, functions)
            else:
                value = expr.parsed.search(body, options=options)
            if name is None:
                key = value
            elif value is not None:
                params.append((name, value))
        return key, params

    def evaluate_stage(self, ruleset: RuleSet) -> Any:
        """The same through the engine's evaluate stage (traces, problems, Produced)."""
        items = list(evaluate_rule(_rule(ruleset), self.body, make_options(self.context(ruleset))))
        produced = [i for i in items if isinstance(i, Produced)]
        assert len(produced) == 1 and not produced[0].problems, produced
        return produced[0].key_value, list(produced[0].params)

    def end_to_end(self) -> Any:
        result = process(self.compiled, self.webhook)
        assert len(result.sent) == 1, result.summary()
        return result.sent

    def handwritten_end_to_end(self) -> bytes:
        """The request bytes by hand, from the raw body (see the module's doc)."""
        ruleset = self.compiled
        reader = ruleset.decode.reader
        order = reader(self.raw) if reader is not None else json.loads(self.raw)
        context = EvalContext(
            root=order,
            headers=self.headers,
            topic=self.topic,
            vars=ruleset.vars,
            tables=ruleset.tables,
        )
        key, params = handwritten(order, self.headers, EngineFunctions(context))
        params = list(money.normalize("orderCreated", params))  # amounts as the engine writes them
        body = {
            "eventTypeKey": _rule(ruleset).events[0].type,
            "keyValue": key,
            "params": [{"name": name, "value": _v1_text(value)} for name, value in params],
        }
        return orjson.dumps(body)


def _rule(ruleset: RuleSet) -> Rule:
    return next(r for r in ruleset.rules if r.name == RULE)


# -- timing ------------------------------------------------------------------------------


def rate(function: Callable[[], Any], seconds: float) -> float:
    """Calls per second over about ``seconds``."""
    count, batch = 0, 4
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            function()
        count += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed
        if elapsed < seconds / 4:
            batch *= 2


def best_rates(contenders: dict[str, Callable[[], Any]], seconds: float, rounds: int) -> Any:
    """The best rate of each over ``rounds`` interleaved rounds (a busy machine only slows)."""
    best = dict.fromkeys(contenders, 0.0)
    for _ in range(rounds):
        for name, function in contenders.items():
            best[name] = max(best[name], rate(function, seconds / rounds))
    return best


def compare(case: Case, seconds: float, rounds: int) -> dict[str, float]:
    return best_rates(  # type: ignore[no-any-return]
        {
            "handwritten": case.handwritten,
            "compiled": lambda: case.params(case.compiled),
            "interpreter": lambda: case.params(case.interp),
            "evaluate-stage": lambda: case.evaluate_stage(case.compiled),
            "end-to-end": case.end_to_end,
            "handwritten-end-to-end": case.handwritten_end_to_end,
        },
        seconds,
        rounds,
    )


def stages(case: Case, seconds: float, rounds: int) -> None:
    """Each stage of ``process`` timed alone, as the pipeline calls it (no profiler)."""
    ruleset, webhook = case.compiled, case.webhook
    spec = _rule(ruleset).events[0]
    key, params = case.params(ruleset)
    body = request_body(spec.type, key, params, ruleset.api_version)
    timed = {
        "parse (decode JSON)": lambda: decode(webhook, ruleset.decode),
        "match (every rule's topic)": lambda: [r.matches_topic(case.topic) for r in ruleset.rules],
        "evaluate (evaluate stage)": lambda: case.evaluate_stage(ruleset),
        "validate (check_event)": lambda: checks.check_event(
            spec.type, key, params, spec.identify_by
        ),
        "serialize (encode_request)": lambda: checks.check_body_size(
            encode_request(spec.type, key, params, ruleset.api_version)[1]
        ),
        "end to end (process)": case.end_to_end,
    }
    best = best_rates(timed, seconds, rounds)
    total = 1e6 / best.pop("end to end (process)")
    print(f"\nstages of process() on {case.label} (each timed alone, best of {rounds}):")
    rest = total
    for stage, per_second in best.items():
        micros = 1e6 / per_second
        rest -= micros
        print(f"  {stage:34} {micros:8.1f} us  {micros / total:6.1%}")
    print(f"  {'other (contexts, results, freeing)':34} {rest:8.1f} us  {rest / total:6.1%}")
    print(f"  {'end to end':34} {total:8.1f} us  ({len(body_bytes(body))} request bytes)")
    whole = best_rates({"whole": lambda: parse_json(webhook.body, webhook.origin)}, seconds, rounds)
    micros = 1e6 / whole["whole"]
    print(f"  (reading the body whole, not only what the rules read: {micros:.1f} us)")


def profile(case: Case, count: int) -> None:
    """cProfile of ``process`` over ``count`` webhooks: the functions that cost most."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        process(case.compiled, case.webhook)
    profiler.disable()
    raw: Any = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    print(f"\ncProfile of process() on {case.label}: own time per webhook (profiler-inflated)")
    top = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:14]
    for (file, line, name), (_cc, calls, own, _cum, _callers) in top:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else ""
        print(f"  {own / count * 1e6:7.1f} us  {calls / count:6.1f} calls  {name}  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.5, help="time per contender")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()

    env = {"SHOPIFY_PHONE_COUNTRY_CODE": ""}
    compiled = compiler.load_or_raise([ROOT / "rules"], env).get("shopify")
    interp = compiler.load_or_raise([ROOT / "rules"], env, evaluator=INTERPRETER).get("shopify")
    assert compiled is not None and interp is not None
    example = read_webhook_file(EXAMPLE)
    headers = dict(example.headers)
    order = json.loads(example.body)
    items = len(order["line_items"])
    cases = [
        Case(f"{EXAMPLE.name} ({items} line items)", example.body, headers, compiled, interp),
        Case(
            "the same order with 50 line items",
            json.dumps(big_order(order)).encode(),
            headers,
            compiled,
            interp,
        ),
    ]
    print(f"python {platform.python_version()}, {platform.machine()}, {platform.platform()}")
    for case in cases:
        expected = case.evaluate_stage(case.interp)
        assert case.handwritten() == expected, "the hand-written mapping drifted from the rule"
        for ruleset in (case.compiled, case.interp):
            assert case.params(ruleset) == expected
        assert case.evaluate_stage(case.compiled) == expected
        wire = process(case.compiled, case.webhook).events[0].wire
        assert case.handwritten_end_to_end() == wire, "the hand-written bytes drifted"
        best = compare(case, args.seconds, args.rounds)
        print(f"\n# {case.label}, {len(case.raw)} bytes: evaluations per second")
        for name, value in best.items():
            print(f"{name} {value:.0f}")
        print(f"ratio compiled/interpreter {best['compiled'] / best['interpreter']:.1f}x")
        print(f"ratio handwritten/compiled {best['handwritten'] / best['compiled']:.2f}x")
        print(f"ratio compiled/evaluate-stage {best['compiled'] / best['evaluate-stage']:.2f}x")
        print(f"ratio compiled/end-to-end {best['compiled'] / best['end-to-end']:.1f}x")
        hand = best["handwritten-end-to-end"]
        print(f"ratio handwritten-end-to-end/end-to-end {hand / best['end-to-end']:.2f}x")
    if not args.no_profile:
        for case in cases:
            stages(case, args.seconds, args.rounds)
            profile(case, 1000)


if __name__ == "__main__":
    main()
