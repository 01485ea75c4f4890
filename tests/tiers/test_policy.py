"""The tier policy: every refusal is typed and saves nothing; a policy set is versioned, audited
and read back (cached by revision) by every connection."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.errors import DomainError
from points.rules.model import FundingShare, TierPolicyRule, TierRule
from points.tiers.policy import current_policy, policy_for_revision, policy_in_force
from tests.conftest import make_partner
from tests.tiers.helpers import GOLD, SILVER, counts, set_policy


def _tier(
    code: str = "T", threshold: int = 0, multiplier: str = "1", name: str = "Tier"
) -> TierRule:
    return TierRule(code, name, threshold, Decimal(multiplier))


BAD_POLICIES: dict[str, tuple[dict[str, object], str, list[str]]] = {
    "window 0": ({"window_days": 0}, "INVALID_TIER_POLICY", ["windowDays"]),
    "window past three years": ({"window_days": 1097}, "INVALID_TIER_POLICY", ["windowDays"]),
    "negative grace": ({"grace_days": -1}, "INVALID_TIER_POLICY", ["graceDays"]),
    "empty code": (
        {"tiers": (_tier(""),)},
        "INVALID_TIER_POLICY",
        ["tiers", "0", "code"],
    ),
    "code with a space": (
        {"tiers": (_tier("GO LD"),)},
        "INVALID_TIER_POLICY",
        ["tiers", "0", "code"],
    ),
    "code too long": (
        {"tiers": (_tier("G" * 33),)},
        "INVALID_TIER_POLICY",
        ["tiers", "0", "code"],
    ),
    "code twice": (
        {"tiers": (_tier("A", 0), _tier("A", 10))},
        "INVALID_TIER_POLICY",
        ["tiers", "1", "code"],
    ),
    "blank name": (
        {"tiers": (_tier("A", name="  "),)},
        "INVALID_TIER_POLICY",
        ["tiers", "0", "name"],
    ),
    "name too long": (
        {"tiers": (_tier("A", name="n" * 101),)},
        "INVALID_TIER_POLICY",
        ["tiers", "0", "name"],
    ),
    "negative threshold": (
        {"tiers": (_tier("A", -1),)},
        "INVALID_TIER_POLICY",
        ["tiers", "0", "threshold"],
    ),
    "equal thresholds": (
        {"tiers": (_tier("A", 100), _tier("B", 100))},
        "INVALID_TIER_POLICY",
        ["tiers", "1", "threshold"],
    ),
    "descending thresholds": (
        {"tiers": (_tier("A", 100), _tier("B", 50))},
        "INVALID_TIER_POLICY",
        ["tiers", "1", "threshold"],
    ),
    "multiplier below 1": (
        {"tiers": (_tier("A", multiplier="0.9"),)},
        "INVALID_TIER_POLICY",
        ["tiers", "0", "multiplier"],
    ),
    "negative multiplier": (
        {"tiers": (_tier("A", multiplier="-2"),)},
        "INVALID_TIER_POLICY",
        ["tiers", "0", "multiplier"],
    ),
    "multiplier above 10": (
        {"tiers": (_tier("A", multiplier="10.5"),)},
        "INVALID_TIER_POLICY",
        ["tiers", "0", "multiplier"],
    ),
    "multiplier with 7 decimals": (
        {"tiers": (_tier("A", multiplier="1.0000001"),)},
        "INVALID_TIER_POLICY",
        ["tiers", "0", "multiplier"],
    ),
    "multiplier not a number": (
        {"tiers": (_tier("A", multiplier="NaN"),)},
        "INVALID_TIER_POLICY",
        ["tiers", "0", "multiplier"],
    ),
    "21 tiers": (
        {"tiers": tuple(_tier(f"T{n}", n) for n in range(21))},
        "INVALID_TIER_POLICY",
        ["tiers"],
    ),
    "shares below 1": (
        {"funding": (FundingShare(None, Decimal("0.9")),)},
        "INVALID_FUNDING",
        ["funding"],
    ),
    "shares above 1": (
        {
            "funding": (
                FundingShare(None, Decimal("0.6")),
                FundingShare(uuid.uuid4(), Decimal("0.6")),
            )
        },
        "INVALID_FUNDING",
        ["funding"],  # (the sum is checked before the partner's existence)
    ),
    "a zero share": (
        {"funding": (FundingShare(None, Decimal(1)), FundingShare(uuid.uuid4(), Decimal(0)))},
        "INVALID_FUNDING",
        ["funding", "1", "share"],
    ),
    "the operator twice": (
        {"funding": (FundingShare(None, Decimal("0.5")), FundingShare(None, Decimal("0.5")))},
        "INVALID_FUNDING",
        ["funding", "1", "partnerId"],
    ),
    "an unknown partner": (
        {"funding": (FundingShare(uuid.uuid4(), Decimal(1)),)},
        "INVALID_FUNDING",
        ["funding", "0", "partnerId"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_POLICIES))
async def test_a_bad_policy_is_refused_with_its_code_and_field_and_nothing_is_saved(
    tiers_engine: AsyncEngine, case: str
) -> None:
    changes, code, field = BAD_POLICIES[case]
    before = await counts(tiers_engine)
    kwargs: dict[str, object] = {"tiers": (SILVER, GOLD), "window_days": 365, "grace_days": 0}
    kwargs.update(changes)
    with pytest.raises(DomainError) as refused:
        await set_policy(tiers_engine, **kwargs)  # type: ignore[arg-type]
    assert (refused.value.code, refused.value.field) == (code, field), refused.value.message
    assert await counts(tiers_engine) == before


async def test_a_policy_is_versioned_audited_and_read_by_every_connection(
    tiers_engine: AsyncEngine,
) -> None:
    partner = await make_partner(tiers_engine)
    versions, revision, audited = await counts(tiers_engine)
    bronze = TierRule("BRONZE", "Bronze", 0, Decimal("1.000"))
    gold = TierRule("GOLD", "Gold", 5000, Decimal("1.5"))
    funding = (FundingShare(partner.id, Decimal("0.25")), FundingShare(None, Decimal("0.75")))
    stored = await set_policy(
        tiers_engine, tiers=(bronze, gold), window_days=180, grace_days=30, funding=funding
    )
    assert stored.version == versions + 1
    assert await counts(tiers_engine) == (versions + 1, revision + 1, audited + 1)
    expected = TierPolicyRule(window_days=180, tiers=(bronze, gold), funding=funding, grace_days=30)
    async with tiers_engine.connect() as c:
        assert await policy_in_force(c) == expected
        assert await policy_for_revision(c, revision + 1) == expected
        found = await current_policy(c)
        assert found is not None and found.version == stored.version
        assert found.rule.tiers[1].multiplier == Decimal("1.5")
        assert str(found.rule.tiers[0].multiplier) == "1"  # the column's zeros are not shown
        entry = (
            await c.execute(
                text(
                    "SELECT actor, action, subject_type, details FROM audit_log"
                    " ORDER BY id DESC LIMIT 1"
                )
            )
        ).one()
    assert entry.actor == "test" and entry.action == "COALITION_SETTINGS_UPDATED"
    assert entry.subject_type == "CoalitionSettings"
    assert entry.details["tierPolicy"]["version"] == stored.version
    assert entry.details["tierPolicy"]["tiers"][1] == {
        "code": "GOLD",
        "name": "Gold",
        "threshold": 5000,
        "multiplier": "1.5",
    }
    assert entry.details["tierPolicy"]["funding"][0] == {
        "partnerId": str(partner.id),
        "share": "0.25",
    }

    # A change made elsewhere (another process) is seen at the next read: the revision moved.
    async with tiers_engine.begin() as c:
        await c.execute(
            text("UPDATE tier_policy_tiers SET name = 'Renamed' WHERE policy_version = :v"),
            {"v": stored.version},
        )  # (never done in production: versions are immutable; it shows what is cached)
    async with tiers_engine.connect() as c:
        cached = await policy_in_force(c)
        assert cached is not None and cached.tiers[1].name == "Gold"  # same revision: cached
    newer = await set_policy(tiers_engine, tiers=(SILVER, GOLD), window_days=365, grace_days=10)
    async with tiers_engine.connect() as c:
        assert (await current_policy(c)) == newer
    assert newer.version == stored.version + 1


async def test_no_policy_reads_as_none_in_another_database(
    tiers_engine: AsyncEngine, database_url: str
) -> None:
    """A process may open several databases (tests, tools): a policy cached for one is never
    taken for another's."""
    from db.engine import create_engine
    from tests.outbox.helpers import own_database

    await set_policy(tiers_engine)
    async with tiers_engine.connect() as c:
        assert await policy_in_force(c) is not None

    async with own_database(database_url) as url:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as c:
                assert await policy_in_force(c) is None
                assert await current_policy(c) is None
        finally:
            await engine.dispose()
