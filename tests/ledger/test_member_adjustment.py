"""A member adjustment with a reason: a partner-funded credit (a lot with the funder as
issuer), a debit oldest expiry first into the operator's account, idempotency, the audit row,
and how a credited point settles when it is redeemed at another partner."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.caller import OPERATOR_PARTY
from core.errors import DomainError, ErrorCode
from ledger.accounts import OPERATOR_ADJUSTMENT_ACCOUNT
from members.service import MemberRef
from points.adjustment import AdjustmentOutcome, adjust_member_points
from settlement.verify import verify_period
from tests.conftest import OPERATOR, make_partner, partner_caller
from tests.ledger.helpers import assert_invariants, balance, earn, key, lot_of, new_member
from tests.settlement.helpers import coalition_terms, obligations_of
from tests.settlement.helpers import redeem as redeem_at


async def _adjust(
    engine: AsyncEngine,
    member_id: uuid.UUID,
    points: int,
    funded_by: uuid.UUID | None = None,
    *,
    reason: str = "goodwill: lost receipt",
    idempotency_key: str | None = None,
) -> AdjustmentOutcome:
    async with engine.begin() as c:
        return await adjust_member_points(
            c,
            OPERATOR,
            actor="staff:support@example.com",
            member=MemberRef(id=member_id),
            points=points,
            funded_by=funded_by,
            reason=reason,
            idempotency_key=idempotency_key or key(),
        )


async def _refused(engine: AsyncEngine, *args: object, **kwargs: object) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await _adjust(engine, *args, **kwargs)  # type: ignore[arg-type]
    return caught.value


async def test_credit_creates_a_lot_issued_by_the_funder(engine: AsyncEngine) -> None:
    funder = await make_partner(engine, points_validity_days=30)
    member_id = await new_member(engine, [funder.id])
    outcome = await _adjust(engine, member_id, 250, funder.id)
    assert (await balance(engine, member_id)).available == 250
    async with engine.begin() as c:
        lot = await lot_of(c, outcome.transfer_id)
        assert lot.issuer_partner_id == funder.id and lot.remaining == 250
        assert timedelta(days=29) < lot.expires_at - lot.available_at <= timedelta(days=30)
        row = (
            await c.execute(
                text("SELECT code, partner_id, metadata_ FROM transfers WHERE id = :t"),
                {"t": uuid.UUID(outcome.transfer_id)},
            )
        ).one()
        assert row.code == "ADJUSTMENT" and row.partner_id == funder.id
        assert row.metadata_["reason"] == "goodwill: lost receipt"
        assert row.metadata_["actor"] == "staff:support@example.com"
        entry = (
            await c.execute(
                text(
                    "SELECT actor, subject_type, subject_id, details FROM audit_log"
                    " WHERE action = 'MEMBER_ADJUSTED' AND details ->> 'transfer_id' = :t"
                ),
                {"t": outcome.transfer_id},
            )
        ).one()
        assert entry.actor == "staff:support@example.com"
        assert (entry.subject_type, entry.subject_id) == ("Member", str(member_id))
        assert entry.details["points"] == 250
        assert entry.details["reason"] == "goodwill: lost receipt"
        await assert_invariants(c, [member_id])


async def test_debit_takes_oldest_expiry_first_and_never_below_zero(
    engine: AsyncEngine,
) -> None:
    soon = await make_partner(engine, points_validity_days=10)
    late = await make_partner(engine, points_validity_days=300)
    member_id = await new_member(engine, [soon.id, late.id])
    late_earn = await earn(engine, late.id, member_id, 100)
    soon_earn = await earn(engine, soon.id, member_id, 50)
    outcome = await _adjust(engine, member_id, -70)
    assert (await balance(engine, member_id)).available == 80
    async with engine.begin() as c:
        assert (await lot_of(c, soon_earn.transfer_id or "")).remaining == 0
        assert (await lot_of(c, late_earn.transfer_id or "")).remaining == 80
        row = (
            await c.execute(
                text(
                    "SELECT credit_account_id, partner_id,"
                    " (SELECT sum(points) FROM consumptions WHERE transfer_id = t.id) AS taken,"
                    " (SELECT count(*) FROM obligations WHERE transfer_id = t.id) AS owed"
                    " FROM transfers t WHERE id = :t"
                ),
                {"t": uuid.UUID(outcome.transfer_id)},
            )
        ).one()
        assert row.credit_account_id == OPERATOR_ADJUSTMENT_ACCOUNT
        assert row.partner_id is None and row.taken == 70 and row.owed == 0
    refused = await _refused(engine, member_id, -81)
    assert (refused.code, refused.field) == (ErrorCode.INSUFFICIENT_POINTS, ["points"])
    await _adjust(engine, member_id, -80)
    assert (await balance(engine, member_id)).available == 0
    async with engine.begin() as c:
        await assert_invariants(c, [member_id])


async def test_refusals_book_nothing(engine: AsyncEngine) -> None:
    funder = await make_partner(engine)
    member_id = await new_member(engine, [funder.id])
    cases = [
        ((member_id, 0, funder.id), {}, ErrorCode.INVALID_AMOUNT, ["points"]),
        ((member_id, 5, None), {}, ErrorCode.INVALID_INPUT, ["fundedBy"]),
        ((member_id, 5, uuid.uuid4()), {}, ErrorCode.PARTNER_NOT_FOUND, ["fundedBy"]),
        ((member_id, 5, funder.id), {"reason": "  "}, ErrorCode.INVALID_INPUT, ["reason"]),
        ((member_id, 5, funder.id), {"reason": "x" * 501}, ErrorCode.INVALID_INPUT, ["reason"]),
        ((uuid.uuid4(), 5, funder.id), {}, ErrorCode.MEMBER_NOT_FOUND, ["member"]),
        ((member_id, -1, None), {}, ErrorCode.INSUFFICIENT_POINTS, ["points"]),
    ]
    for args, kwargs, code, field in cases:
        error = await _refused(engine, *args, **kwargs)
        assert (error.code, error.field) == (code, field), args
    assert (await balance(engine, member_id)).available == 0


async def test_replay_books_once_and_a_reused_key_is_refused(engine: AsyncEngine) -> None:
    funder = await make_partner(engine)
    member_id = await new_member(engine, [funder.id])
    same = key()
    first = await _adjust(engine, member_id, 40, funder.id, idempotency_key=same)
    again = await _adjust(engine, member_id, 40, funder.id, idempotency_key=same)
    assert again.replayed and again.transfer_id == first.transfer_id
    assert (await balance(engine, member_id)).available == 40
    reused = await _refused(engine, member_id, 41, funder.id, idempotency_key=same)
    assert reused.code == ErrorCode.IDEMPOTENCY_KEY_REUSED


async def test_only_the_operator_adjusts(engine: AsyncEngine) -> None:
    funder = await make_partner(engine)
    member_id = await new_member(engine, [funder.id])
    with pytest.raises(DomainError):
        async with engine.begin() as c:
            await adjust_member_points(
                c,
                partner_caller(funder.id),
                actor="x",
                member=MemberRef(id=member_id),
                points=10,
                funded_by=funder.id,
                reason="r",
                idempotency_key=key(),
            )


async def test_a_credited_point_redeemed_elsewhere_makes_the_funder_owe(
    engine: AsyncEngine,
) -> None:
    funder = await make_partner(engine)
    redeemer = await make_partner(engine)
    member_id = await new_member(engine, [funder.id, redeemer.id])
    await _adjust(engine, member_id, 100, funder.id)
    async with engine.connect() as c:
        phone = await c.scalar(text("SELECT phone FROM members WHERE id = :m"), {"m": member_id})
    burnt = await redeem_at(engine, redeemer, phone, 60)
    # Redemption-funded, point value 1.00: the funder owes the redeemer 60.00 (in cents).
    assert await obligations_of(engine, burnt) == {(funder.id, redeemer.id, "REDEMPTION", 60, 6000)}


async def test_under_the_issuance_model_a_credit_charges_its_funder_like_an_earn(
    engine: AsyncEngine,
) -> None:
    """An earn at A makes A owe the operator its issue price; a credit A funds does too (and
    verification, which recomputes obligations independently, agrees); a debit owes nothing."""
    funder = await make_partner(engine, issue_price="0.80", redeem_price="0.95")
    member_id = await new_member(engine, [funder.id])
    await _adjust(engine, member_id, 30, funder.id)
    async with coalition_terms(engine, funding_model="ISSUANCE"):
        credit = await _adjust(engine, member_id, 10, funder.id)
        debit = await _adjust(engine, member_id, -5)
        assert await obligations_of(engine, uuid.UUID(credit.transfer_id)) == {
            (funder.id, OPERATOR_PARTY, "ISSUANCE", 10, 800)
        }
        assert await obligations_of(engine, uuid.UUID(debit.transfer_id)) == set()
        async with engine.connect() as c:
            period = await c.scalar(text("SELECT id FROM settlement_periods WHERE status = 'OPEN'"))
            result = await verify_period(c, period)
        assert result.ok, result.differences
    assert (await balance(engine, member_id)).available == 35
