"""`python -m bench.cel`: the CEL libraries measured on campaign conditions, and the engine.

For each candidate installed: compile time per condition, the cost of building one purchase's
variables (shared by every campaign), evaluation per condition, and so the CEL cost of a
purchase with 20 campaigns, one by one and as one list (what the engine does); then each one's message for bad conditions. Candidates not in the
project's environment are skipped (`pip install cel-python common-expression-language` to
compare). Last, the engine itself: a purchase priced with 20 campaigns and a tier policy
against the base rate alone.
"""

from __future__ import annotations

import functools
import importlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(width=160)

CONDITIONS = (
    'purchase.amount >= 1000.0 && "coffee" in purchase.categories',
    "purchase.local_hour >= 15 && purchase.local_hour < 17",
    'member.tier == "gold" || member.purchases == 0',
    'partner.slug in ["grocer", "fuel"]',
)
BAD = ("purchase.amout > 1.0", "member.tier == 1", "purchase.local_hour >=")
CAMPAIGNS = 20

NESTED: dict[str, Any] = {
    "purchase": {
        "amount": 1250.0,
        "categories": ["coffee", "dairy", "bakery"],
        "skus": ["C-1", "M-2", "B-3"],
        "local_hour": 15,
        "weekday": 3,
        "channel": "app",
        "store": "S-12",
    },
    "member": {"tier": "gold", "purchases": 12},
    "partner": {"slug": "grocer"},
}
FLAT = {f"{top}.{key}": value for top, fields in NESTED.items() for key, value in fields.items()}


@dataclass
class Candidate:
    name: str
    module: str
    checks_types: str
    licence: str
    compile: Callable[[str], Any]
    context: Callable[[], Any]
    evaluate: Callable[[Any, Any], Any]


def _cel_expr_python() -> Candidate:
    cel = importlib.import_module("cel_expr_python.cel")
    t = cel.Type
    strings = t.List(t.STRING)
    types = {
        "purchase.amount": t.DOUBLE,
        "purchase.categories": strings,
        "purchase.skus": strings,
        "purchase.local_hour": t.INT,
        "purchase.weekday": t.INT,
        "purchase.channel": t.STRING,
        "purchase.store": t.STRING,
        "member.tier": t.STRING,
        "member.purchases": t.INT,
        "partner.slug": t.STRING,
    }
    env = cel.NewEnv(variables=types)
    return Candidate(
        "cel-expr-python",
        "cel_expr_python",
        "yes (names, types, result)",
        "Apache-2.0",
        env.compile,
        lambda: env.Activation(data=FLAT),
        lambda program, context: program.eval(context).value(),
    )


def _common_expression_language() -> Candidate:
    cel = importlib.import_module("cel")
    return Candidate(
        "common-expression-language",
        "cel",
        "no (parse only)",
        "MIT",
        cel.compile,
        lambda: cel.Context(variables=NESTED),
        lambda program, context: program.execute(context),
    )


def _cel_python() -> Candidate:
    celpy = importlib.import_module("celpy")
    env = celpy.Environment()
    return Candidate(
        "cel-python",
        "celpy",
        "no",
        "Apache-2.0",
        lambda source: env.program(env.compile(source)),
        lambda: {k: celpy.json_to_cel(v) for k, v in NESTED.items()},
        lambda program, context: program.evaluate(context),
    )


def _per_call_us(call: Callable[[], object], budget_s: float = 0.2) -> float:
    """Best of 3 runs of a loop sized to take about `budget_s / 3`."""
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-7)
    loops = max(int(budget_s / 3 / once), 1)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(loops):
            call()
        best = min(best, (time.perf_counter() - start) / loops)
    return best * 1e6


@dataclass
class Measured:
    candidate: Candidate
    compile_us: float
    context_us: float
    eval_us: float

    set_us: float  # the purchase's variables and its 20 conditions as one list, one evaluation

    @property
    def purchase_us(self) -> float:
        return self.context_us + CAMPAIGNS * self.eval_us


def measure(candidate: Candidate) -> Measured:
    compiles: list[float] = []
    evals: list[float] = []
    context = candidate.context()
    for source in CONDITIONS:
        compiles.append(_per_call_us(functools.partial(candidate.compile, source)))
        program = candidate.compile(source)
        assert bool(candidate.evaluate(program, context)) is True, (candidate.name, source)
        evals.append(_per_call_us(functools.partial(candidate.evaluate, program, context)))
    listed = candidate.compile(f"[{', '.join(CONDITIONS * (CAMPAIGNS // len(CONDITIONS)))}]")
    return Measured(
        candidate,
        sum(compiles) / len(compiles),
        _per_call_us(candidate.context),
        sum(evals) / len(evals),
        _per_call_us(lambda: candidate.evaluate(listed, candidate.context())),
    )


def message(candidate: Candidate, source: str) -> str:
    try:
        program = candidate.compile(source)
    except Exception as error:
        return f"compile: {error}"
    try:
        result = candidate.evaluate(program, candidate.context())
    except Exception as error:
        return f"evaluation: {error}"
    return f"accepted; evaluates to {result!r}"


def _refusal(source: str) -> str:
    from points.rules.cel import ConditionError, compile_condition

    try:
        compile_condition(source)
    except ConditionError as error:
        return str(error)
    return "accepted"


def report_candidates(measured: list[Measured]) -> None:
    chosen = measured[0]
    table = Table(
        title=f"CEL libraries ({len(CONDITIONS)} conditions; a purchase = {CAMPAIGNS} campaigns)"
    )
    for column in (
        "library",
        "compile µs",
        "variables µs",
        "eval µs each",
        "µs/purchase",
        "µs/purchase as a list",
        "× chosen",
        "type-checked",
        "licence",
    ):
        table.add_column(
            column, justify="left" if column in ("library", "type-checked") else "right"
        )
    for m in measured:
        table.add_row(
            m.candidate.name,
            f"{m.compile_us:,.1f}",
            f"{m.context_us:,.2f}",
            f"{m.eval_us:,.2f}",
            f"{m.purchase_us:,.1f}",
            f"{m.set_us:,.1f}",
            f"{m.purchase_us / chosen.purchase_us:,.2f} / {m.set_us / chosen.set_us:,.2f}",
            m.candidate.checks_types,
            m.candidate.licence,
        )
    console.print(table)
    for source in BAD:
        console.print(f"\n[bold]{source}[/bold]")
        for m in measured:
            console.print(f"  {m.candidate.name}: {message(m.candidate, source)}", markup=False)
        console.print(f"  as INVALID_CONDITION says it: {_refusal(source)}", markup=False)


def _engine_figures() -> None:
    from points.rules.campaigns import compile_campaign
    from points.rules.engine import price_earn, purchase_facts
    from points.rules.model import (
        CampaignRule,
        CampaignStatus,
        Effect,
        MemberFacts,
        PricedEarn,
        PurchaseLine,
        TierPolicyRule,
        TierRule,
    )

    partner = uuid.uuid4()
    at = datetime(2026, 3, 4, 14, 30, tzinfo=UTC)
    lines = (
        PurchaseLine("C-1", "coffee", Decimal(2), Decimal("450.00")),
        PurchaseLine("M-2", "dairy", Decimal(1), Decimal("800.00")),
    )
    purchase = purchase_facts(
        partner_id=partner,
        partner_slug="grocer",
        amount=Decimal("1250.00"),
        occurred_at=at,
        time_zone="Europe/Berlin",
        lines=lines,
    )
    member = MemberFacts(uuid.uuid4(), tier="gold", purchases=12)
    # 17 that do not match (conditions false or targeted elsewhere), 3 that do.
    conditions = [*CONDITIONS[:3], *[f"member.purchases == {100 + i}" for i in range(14)]]
    conditions += [
        "purchase.weekday == 1",
        "purchase.amount > 5000.0",
        'purchase.channel == "kiosk"',
    ]
    rules = [
        CampaignRule(
            campaign_id=uuid.uuid4(),
            version=1,
            name=f"Campaign {i}",
            owner_partner_id=None,
            status=CampaignStatus.ACTIVE,
            starts_at=datetime(2026, 1, 1, tzinfo=UTC),
            ends_at=None,
            partner_ids=frozenset(),
            store_ids=frozenset(),
            channels=frozenset(),
            tiers=frozenset(),
            condition=source,
            effect=Effect(multiplier=Decimal(2), categories=("coffee",) if i == 0 else ()),
            funding=(),
            priority=i,
        )
        for i, source in enumerate(conditions)
    ]
    campaigns = [compile_campaign(r) for r in rules]
    policy = TierPolicyRule(365, (TierRule("gold", "Gold", 5000, Decimal("1.5")),))
    rate = Decimal("0.1")

    def plain() -> PricedEarn:
        return price_earn(
            purchase, member, earn_rate=rate, campaigns=(), tier_policy=None, headroom={}
        )

    def full() -> PricedEarn:
        return price_earn(
            purchase, member, earn_rate=rate, campaigns=campaigns, tier_policy=policy, headroom={}
        )

    from points.rules.cel import condition_set, facts

    conditional = tuple(c.condition for c in campaigns)

    def each() -> list[bool]:
        shared = facts(purchase, member)  # once per purchase either way
        return [c.holds(shared) for c in conditional]

    one_by_one = _per_call_us(each)
    as_a_set = _per_call_us(lambda: condition_set(conditional).holds(facts(purchase, member)))
    console.print(
        f"points.rules.cel, {CAMPAIGNS} conditions of a purchase: one by one {one_by_one:,.1f} µs,"
        f" as one set {as_a_set:,.1f} µs ({one_by_one / as_a_set:,.1f}× faster)"
    )
    priced = full()
    plain_us, full_us = _per_call_us(plain, 1.0), _per_call_us(full, 1.0)
    table = Table(title="The engine (points.rules.engine.price_earn), one purchase")
    for column in ("case", "µs/purchase", "lines"):
        table.add_column(column, justify="right" if column != "case" else "left")
    table.add_row("base rate only", f"{plain_us:,.1f}", "1")
    table.add_row(
        f"{CAMPAIGNS} campaigns (3 matching) + tier", f"{full_us:,.1f}", str(len(priced.lines))
    )
    console.print(table)
    console.print(
        f"engine cost of {CAMPAIGNS} campaigns: {full_us - plain_us:,.1f} µs per purchase "
        "(compare with `bench load`'s server CPU ms/req for the plain earn)"
    )


def main() -> None:
    measured = []
    for make in (_cel_expr_python, _common_expression_language, _cel_python):
        try:
            candidate = make()
        except ImportError as error:
            console.print(f"skipped: {error.name} is not installed")
            continue
        measured.append(measure(candidate))
    report_candidates(measured)
    _engine_figures()


if __name__ == "__main__":
    main()
