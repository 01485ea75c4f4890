"""Pricing a purchase as a marketer checks it: the points, and each explanation line with who
pays it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from points.rules import cel, engine
from points.rules.campaigns import compile_campaign
from points.rules.engine import price_earn, purchase_facts
from points.rules.model import (
    CampaignRule,
    CampaignStatus,
    Effect,
    Funded,
    Headroom,
    LimitPeriod,
    MemberFacts,
    PricedEarn,
    PurchaseFacts,
    TierPolicyRule,
    TierRule,
)
from tests.rules.builders import (
    CINEMA,
    FUEL,
    GROCER,
    NOON,
    START,
    campaign,
    line,
    member,
    purchase,
    shares,
)

RATE = Decimal("0.1")  # 1 point per 10 spent
POLICY = TierPolicyRule(
    window_days=365,
    tiers=(
        TierRule("silver", "Silver", 1000, Decimal("1")),
        TierRule("gold", "Gold", 5000, Decimal("1.5")),
    ),
)


def price(
    bought: PurchaseFacts | None = None,
    *rules: CampaignRule,
    who: MemberFacts | None = None,
    rate: Decimal = RATE,
    policy: TierPolicyRule | None = None,
    headroom: dict[Any, Headroom] | None = None,
) -> PricedEarn:
    return price_earn(
        bought or purchase(),
        who or member(),
        earn_rate=rate,
        campaigns=[compile_campaign(r) for r in rules],
        tier_policy=policy,
        headroom=headroom or {},
    )


def summary(priced: PricedEarn) -> list[tuple[str, int, tuple[Funded, ...]]]:
    return [(ln.rule, ln.points, ln.funded_by) for ln in priced.lines]


def descriptions(priced: PricedEarn) -> list[str]:
    return [ln.description for ln in priced.lines]


# The base rate and tiers


def test_base_rate_only_is_todays_earn() -> None:
    priced = price(purchase("123.45"))
    assert priced.points == 12
    assert summary(priced) == [("BASE_RATE", 12, (Funded(GROCER, 12),))]
    assert descriptions(priced) == ["123.45 × 0.1 points per unit, rounded down"]


def test_nothing_to_earn_still_explains_the_base_rate() -> None:
    priced = price(purchase("9.99"))
    assert priced.points == 0
    assert [(line.rule, line.points) for line in priced.lines] == [("BASE_RATE", 0)]
    assert priced.by_funder() == {}


def test_gold_tier_adds_half_the_base_paid_by_the_earning_partner() -> None:
    priced = price(purchase("1010"), who=member("gold"), policy=POLICY)
    assert priced.points == 101 + 50
    assert summary(priced)[1] == ("TIER", 50, (Funded(GROCER, 50),))
    assert descriptions(priced)[1] == "Gold tier: ×1.5 base points, rounded down"


def test_tier_bonus_funded_by_the_policys_shares() -> None:
    policy = TierPolicyRule(365, POLICY.tiers, funding=shares((None, "0.5"), (GROCER, "0.5")))
    priced = price(purchase("1010"), who=member("gold"), policy=policy)
    assert summary(priced)[1] == ("TIER", 50, (Funded(None, 25), Funded(GROCER, 25)))


@pytest.mark.parametrize("tier", ["", "silver", "platinum"])
def test_no_tier_line_without_a_multiplier_above_one(tier: str) -> None:
    priced = price(purchase("1000"), who=member(tier), policy=POLICY)
    assert [ln.rule for ln in priced.lines] == ["BASE_RATE"]


# Effects


def test_double_points_campaign() -> None:
    rule = campaign("Double Tuesday", effect=Effect(multiplier=Decimal("2")))
    priced = price(purchase("255"), rule)
    assert priced.points == 50
    assert summary(priced)[1] == ("CAMPAIGN", 25, (Funded(GROCER, 25),))
    assert descriptions(priced)[1] == "Campaign 'Double Tuesday': ×2 points"
    assert (priced.lines[1].campaign_id, priced.lines[1].campaign_version) == (rule.campaign_id, 1)


def test_points_per_unit_and_bonus_add_up() -> None:
    rule = campaign("Welcome", effect=Effect(points_per_unit=Decimal("0.05"), bonus_points=100))
    priced = price(purchase("250"), rule)
    assert summary(priced)[1] == ("CAMPAIGN", 12 + 100, (Funded(GROCER, 112),))
    assert descriptions(priced)[1] == (
        "Campaign 'Welcome': 0.05 extra points per unit and 100 bonus points"
    )


def test_category_multiplier_counts_only_matching_lines() -> None:
    rule = campaign("Coffee ×3", effect=Effect(multiplier=Decimal("3"), categories=("coffee",)))
    bought = purchase(
        "100", line("C1", "coffee", "30"), line("C2", "coffee", "25"), line("M1", "milk", "45")
    )
    priced = price(bought, rule)
    # base of the coffee (55 → 5 points) × (3 − 1) = 10
    assert summary(priced)[1] == ("CAMPAIGN", 10, (Funded(GROCER, 10),))
    assert descriptions(priced)[1] == "Campaign 'Coffee ×3': ×3 points on 55 of coffee"


def test_sku_filter_and_either_filter_matches() -> None:
    rule = campaign(
        "Beans", effect=Effect(points_per_unit=Decimal("1"), categories=("tea",), skus=("B1",))
    )
    bought = purchase(
        "30", line("B1", "coffee", "10"), line("T1", "tea", "5"), line("X", None, "15")
    )
    assert price(bought, rule).lines[1].points == 15


def test_no_matching_line_means_the_campaign_does_not_apply() -> None:
    rule = campaign("Coffee", effect=Effect(bonus_points=50, categories=("coffee",)))
    assert price(purchase("100", line("M1", "milk", "100")), rule).points == 10
    assert price(purchase("100"), rule).points == 10  # no lines at all


def test_a_multiplier_of_one_or_less_gives_nothing() -> None:
    for m in ("1", "0.5"):
        rule = campaign("Odd", effect=Effect(multiplier=Decimal(m)))
        assert [ln.rule for ln in price(purchase("100"), rule).lines] == ["BASE_RATE"]


# Stacking


def test_campaigns_stack_in_priority_order() -> None:
    low = campaign("Low", n=1, priority=1, effect=Effect(bonus_points=1))
    high = campaign("High", n=2, priority=5, effect=Effect(bonus_points=5))
    tied_later = campaign(
        "Later", n=3, priority=1, starts_at=START + timedelta(days=1), effect=Effect(bonus_points=2)
    )
    tied_same_start = campaign("Same start", n=0, priority=1, effect=Effect(bonus_points=3))
    priced = price(purchase("100"), low, high, tied_later, tied_same_start)
    assert [ln.description for ln in priced.lines[1:]] == [
        "Campaign 'High': 5 bonus points",
        "Campaign 'Same start': 3 bonus points",  # same start: the smaller id first
        "Campaign 'Low': 1 bonus point",
        "Campaign 'Later': 2 bonus points",
    ]
    assert priced.points == 10 + 11


def test_an_exclusive_campaign_stops_lower_ones_not_higher_ones() -> None:
    top = campaign("Top", n=1, priority=9, effect=Effect(bonus_points=9))
    exclusive = campaign("Only me", n=2, priority=5, exclusive=True, effect=Effect(bonus_points=5))
    below = campaign("Below", n=3, priority=1, effect=Effect(bonus_points=1))
    priced = price(purchase("100"), below, exclusive, top)
    assert [ln.points for ln in priced.lines] == [10, 9, 5]


def test_an_exclusive_campaign_that_does_not_match_stops_nothing() -> None:
    exclusive = campaign(
        "App only",
        n=1,
        priority=5,
        exclusive=True,
        condition='purchase.channel == "app"',
        effect=Effect(bonus_points=5),
    )
    below = campaign("Below", n=2, effect=Effect(bonus_points=1))
    assert price(purchase("100"), exclusive, below).points == 11


def test_an_exclusive_campaign_with_its_budget_spent_steps_aside() -> None:
    exclusive = campaign("Spent", n=1, priority=5, exclusive=True, effect=Effect(bonus_points=5))
    below = campaign("Below", n=2, effect=Effect(bonus_points=1))
    spent = {exclusive.campaign_id: Headroom(budget_points_left=0)}
    priced = price(purchase("100"), exclusive, below, headroom=spent)
    assert descriptions(priced)[1:] == ["Campaign 'Below': 1 bonus point"]


# Caps and headroom


def test_capped_per_purchase() -> None:
    rule = campaign("Big", effect=Effect(multiplier=Decimal("5")), max_points_per_purchase=30)
    priced = price(purchase("1000"), rule)
    assert priced.lines[1].points == 30
    assert priced.lines[1].description == (
        "Campaign 'Big': ×5 points, capped at the campaign's points per purchase (30 of 400)"
    )


def test_the_tightest_of_cap_member_limit_and_budget_wins() -> None:
    rule = campaign(
        "Big",
        effect=Effect(bonus_points=100),
        max_points_per_purchase=80,
        per_member_limit=500,
        limit_period=LimitPeriod.WEEK,
        budget_points=10_000,
    )
    member_bound = {rule.campaign_id: Headroom(member_points_left=60, budget_points_left=70)}
    priced = price(purchase("100"), rule, headroom=member_bound)
    assert priced.lines[1].points == 60
    assert priced.lines[1].description.endswith("capped by your limit this week (60 of 100)")
    budget_bound = {rule.campaign_id: Headroom(member_points_left=60, budget_points_left=7)}
    priced = price(purchase("100"), rule, headroom=budget_bound)
    assert priced.lines[1].points == 7
    assert priced.lines[1].description.endswith("capped by the campaign's budget (7 of 100)")


def test_the_rules_own_totals_bound_without_headroom() -> None:
    rule = campaign("Small budget", effect=Effect(bonus_points=100), budget_points=40)
    assert price(purchase("100"), rule).lines[1].points == 40


@pytest.mark.parametrize(
    "headroom",
    [
        Headroom(member_points_left=0),
        Headroom(budget_points_left=0),
        Headroom(budget_points_left=-3),
    ],
)
def test_limits_used_up_give_no_line(headroom: Headroom) -> None:
    rule = campaign("Used up", effect=Effect(bonus_points=100))
    priced = price(purchase("100"), rule, headroom={rule.campaign_id: headroom})
    assert [ln.rule for ln in priced.lines] == ["BASE_RATE"]


# Funding


def test_cross_brand_campaign_split_between_funders() -> None:
    rule = campaign(
        "Fill up and shop",
        effect=Effect(bonus_points=101),
        funding=shares((GROCER, "0.5"), (FUEL, "0.5")),
    )
    priced = price(purchase("100", partner_id=FUEL, slug="fuel"), rule)
    assert summary(priced) == [
        ("BASE_RATE", 10, (Funded(FUEL, 10),)),
        ("CAMPAIGN", 101, (Funded(GROCER, 51), Funded(FUEL, 50))),
    ]
    assert priced.by_funder() == {FUEL: 60, GROCER: 51}


def test_operator_funded_campaign() -> None:
    rule = campaign("Coalition week", effect=Effect(bonus_points=20), funding=shares((None, "1")))
    assert price(purchase("100"), rule).by_funder() == {GROCER: 10, None: 20}


# Schedule and targeting


def test_starts_at_is_inclusive_and_ends_at_exclusive() -> None:
    rule = campaign(
        "Weekend", starts_at=NOON, ends_at=NOON + timedelta(hours=1), effect=Effect(bonus_points=5)
    )
    at = [
        NOON - timedelta(microseconds=1),
        NOON,
        NOON + timedelta(minutes=59),
        NOON + timedelta(hours=1),
    ]
    assert [price(purchase("100", occurred_at=t), rule).points for t in at] == [10, 15, 15, 10]


@pytest.mark.parametrize(
    "status",
    [CampaignStatus.DRAFT, CampaignStatus.PAUSED, CampaignStatus.ENDED, CampaignStatus.ARCHIVED],
)
def test_only_an_active_campaign_applies(status: CampaignStatus) -> None:
    rule = campaign("Not live", status=status, effect=Effect(bonus_points=5))
    assert price(purchase("100"), rule).points == 10


@pytest.mark.parametrize(
    ("targeting", "bought", "who", "applies"),
    [
        ({"partner_ids": frozenset({GROCER})}, purchase("100"), member(), True),
        ({"partner_ids": frozenset({FUEL, CINEMA})}, purchase("100"), member(), False),
        ({"store_ids": frozenset({"S1"})}, purchase("100", store="S1"), member(), True),
        ({"store_ids": frozenset({"S1"})}, purchase("100", store="S2"), member(), False),
        ({"store_ids": frozenset({"S1"})}, purchase("100"), member(), False),
        ({"channels": frozenset({"app"})}, purchase("100", channel="app"), member(), True),
        ({"channels": frozenset({"app"})}, purchase("100"), member(), False),
        ({"tiers": frozenset({"gold"})}, purchase("100"), member("gold"), True),
        ({"tiers": frozenset({"gold"})}, purchase("100"), member("silver"), False),
        ({"owner_partner_id": GROCER}, purchase("100"), member(), True),
        ({"owner_partner_id": FUEL}, purchase("100"), member(), False),
    ],
)
def test_targeting(
    targeting: dict[str, Any], bought: PurchaseFacts, who: MemberFacts, applies: bool
) -> None:
    rule = campaign("Targeted", effect=Effect(bonus_points=5), **targeting)
    assert (price(bought, rule, who=who).points == 15) is applies


# Conditions


def test_happy_hour_condition() -> None:
    rule = campaign(
        "Coffee afternoons",
        condition="purchase.local_hour >= 15 && purchase.local_hour < 17",
        effect=Effect(multiplier=Decimal("2")),
    )
    assert price(purchase("100", local_hour=15), rule).points == 20
    assert price(purchase("100", local_hour=17), rule).points == 10


def test_a_condition_that_fails_at_run_time_does_not_match_and_the_earn_goes_on() -> None:
    broken = campaign(
        "Broken",
        n=1,
        condition="member.purchases / member.purchases == 1",
        effect=Effect(bonus_points=5),
    )
    fine = campaign("Fine", n=2, effect=Effect(bonus_points=1))
    assert price(purchase("100"), broken, fine, who=member(purchases=0)).points == 11
    assert price(purchase("100"), broken, fine, who=member(purchases=3)).points == 16


def test_facts_are_built_once_per_purchase(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[PurchaseFacts] = []

    def counting(p: PurchaseFacts, m: MemberFacts) -> cel.Facts:
        built.append(p)
        return cel.facts(p, m)

    monkeypatch.setattr(engine, "facts", counting)
    rules = [
        campaign(f"C{i}", n=i, condition=f"member.purchases >= {i}", effect=Effect(bonus_points=1))
        for i in range(20)
    ]
    assert price(purchase("100"), *rules, who=member(purchases=2)).points == 13
    assert len(built) == 1
    price(purchase("100"), campaign("Always", effect=Effect(bonus_points=1)))
    assert len(built) == 1  # "true" needs no activation


# Local time


def test_local_hour_and_weekday_in_the_coalitions_time_zone() -> None:
    def local(at: datetime, zone: str) -> tuple[int, int]:
        facts = purchase_facts(
            partner_id=GROCER,
            partner_slug="grocer",
            amount=Decimal("1"),
            occurred_at=at,
            time_zone=zone,
        )
        return facts.local_hour, facts.weekday

    wednesday_late = datetime(2026, 3, 4, 23, 30, tzinfo=UTC)
    assert local(wednesday_late, "UTC") == (23, 3)
    assert local(wednesday_late, "Europe/Berlin") == (0, 4)  # already Thursday
    assert local(wednesday_late, "America/New_York") == (18, 3)
    assert local(datetime(2026, 3, 8, 12, 0), "UTC") == (12, 7)  # naive: taken as UTC; Sunday
    # Summer time: Berlin is UTC+2 in July.
    assert local(datetime(2026, 7, 1, 13, 0, tzinfo=UTC), "Europe/Berlin") == (15, 3)
