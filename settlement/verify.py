"""The internal proof: a period's obligations equal what its ledger implies, and its frozen
results balance.

Expected obligations are derived from the ledger alone, in a formulation independent of the
booking hook: base obligations are recomputed for the period's transfers AND for the
originals of its reversals (from consumptions, rate cards and the terms in force then),
and a reversal's share is the window-cumulative part of each original obligation reversed
so far. They are compared with the booked ones per (transfer, issuer, debtor, creditor,
kind). A BONUS transfer (a funder's share of a purchase at another partner) is an issuance by
its funder: under ISSUANCE the funder owes its issue price, unless the funder is the operator
(OPERATOR_PARTY, which would owe itself). For a closed period it also checks that gross lines
equal the obligations, positions equal the lines and sum to zero, every party's instructions
add up to its net, and there are at most N − 1 instructions for N parties with a non-zero
position.

Rounding is independent too: the SQL returns each expected amount exactly (points × unit
price × 10^exponent, as numeric) and Python rounds it half to even to minor units with
`decimal` (`minor_units`), never through the `round_half_even` SQL function the booking code
uses, so a rounding bug in the booking is reported rather than repeated. The rows are
streamed, so memory does not grow with the period.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import OPERATOR_PARTY
from ledger.accounts import OPERATOR_ADJUSTMENT_ACCOUNT
from settlement import queries
from settlement.booking_sql import TERMS_AT
from settlement.periods import require_period

MAX_DIFFERENCES = 1000


@dataclass(frozen=True)
class Difference:
    check: str  # OBLIGATION, GROSS_LINE, POSITION, POSITIONS_SUM, INSTRUCTIONS, INSTRUCTION_COUNT
    message: str
    expected: int | None = None
    actual: int | None = None
    transfer_id: uuid.UUID | None = None
    party_id: uuid.UUID | None = None
    counterparty_id: uuid.UUID | None = None
    kind: str | None = None


@dataclass(frozen=True)
class VerificationResult:
    period_id: uuid.UUID
    ok: bool
    obligations_checked: int
    differences: list[Difference] = field(default_factory=list)


_EXPECTED = f"""
WITH inperiod AS ({queries.period_transfers_sql("t.id, t.code, t.reversal_of_id")}),
reversals AS (
  SELECT r.id, r.reversal_of_id AS original, r.points, r.created_at
  FROM transfers r
  WHERE r.code = 'REVERSAL' AND r.reversal_of_id IN
    (SELECT reversal_of_id FROM inperiod WHERE code = 'REVERSAL')
), subjects AS (
  SELECT t.id, t.code, t.partner_id, t.points, t.occurred_at, t.created_at,
         t.debit_account_id, t.metadata_, terms.*
  FROM transfers t CROSS JOIN LATERAL ({TERMS_AT.format(at="t.created_at")}) terms
  WHERE t.id IN (SELECT id FROM inperiod UNION SELECT original FROM reversals)
), base AS (
  SELECT s.id AS transfer_id, c.issuer_partner_id AS issuer, c.issuer_partner_id AS debtor,
         c.redeemer_partner_id AS creditor,
         CASE c.kind WHEN 'REDEEM' THEN 'REDEMPTION' ELSE c.kind END AS kind,
         c.points, s.point_value AS unit, s.scale
  FROM subjects s JOIN consumptions c ON c.transfer_id = s.id
  WHERE s.funding_model = 'REDEMPTION' AND c.kind IN ('REDEEM', 'CLAWBACK', 'DEBT_REPAYMENT')
    AND c.issuer_partner_id <> c.redeemer_partner_id
  UNION ALL
  SELECT s.id, c.issuer_partner_id, c.redeemer_partner_id, :operator, 'CLEARING_FEE',
         c.points, s.clearing_fee, s.scale
  FROM subjects s JOIN consumptions c ON c.transfer_id = s.id
  WHERE s.funding_model = 'REDEMPTION' AND s.clearing_fee > 0 AND c.kind = 'REDEEM'
    AND c.issuer_partner_id <> c.redeemer_partner_id
  UNION ALL
  SELECT s.id, s.partner_id, s.partner_id, :operator, 'ISSUANCE', s.points,
         (SELECT issue_price FROM rate_cards WHERE partner_id = s.partner_id
            AND effective_from <= COALESCE(s.occurred_at, s.created_at)
            ORDER BY effective_from DESC LIMIT 1),
         s.scale
  FROM subjects s WHERE s.funding_model = 'ISSUANCE'
    AND (s.code = 'EARN' OR (s.code = 'BONUS' AND s.partner_id <> :operator)
         OR (s.code = 'ADJUSTMENT' AND s.metadata_ ? 'funded_by'))
  UNION ALL
  SELECT s.id, NULL, :operator, s.partner_id, 'REDEMPTION', s.points,
         (SELECT redeem_price FROM rate_cards WHERE partner_id = s.partner_id
            AND effective_from <= s.created_at ORDER BY effective_from DESC LIMIT 1),
         s.scale
  FROM subjects s WHERE s.funding_model = 'ISSUANCE' AND s.code = 'REDEEM'
  UNION ALL
  SELECT s.id, s.partner_id,
         CASE WHEN s.debit_account_id = :adjustment THEN :operator ELSE s.partner_id END,
         CASE WHEN s.debit_account_id = :adjustment THEN s.partner_id ELSE :operator END,
         'ADJUSTMENT', s.points, s.point_value, s.scale
  FROM subjects s WHERE s.code = 'ADJUSTMENT' AND s.metadata_ ? 'reconciliation_break_id'
), owed AS (
  SELECT transfer_id, issuer, debtor, creditor, kind, unit, scale, sum(points) AS points
  FROM base GROUP BY transfer_id, issuer, debtor, creditor, kind, unit, scale
), shares AS (
  SELECT r.id AS transfer_id, r.created_at, o.transfer_id AS original, o.issuer,
         o.creditor AS debtor, o.debtor AS creditor, o.kind || '_REVERSAL' AS kind,
         o.unit, o.scale,
         CASE WHEN o.kind = 'ISSUANCE' OR o.issuer IS NULL THEN r.points
              ELSE COALESCE((SELECT -sum(c.points) FROM consumptions c WHERE c.transfer_id = r.id
                               AND c.kind = 'RESTORE' AND c.issuer_partner_id = o.issuer), 0)
         END AS points
  FROM reversals r JOIN owed o ON o.transfer_id = r.original
  WHERE o.kind IN ('REDEMPTION', 'CLEARING_FEE', 'ISSUANCE')
), cumulative AS (
  SELECT *, sum(points) OVER (PARTITION BY original, issuer, debtor, creditor, kind
                              ORDER BY created_at, transfer_id) AS upto
  FROM shares
)
SELECT transfer_id, issuer, debtor, creditor, kind, points,
       points * unit * scale AS exact_upto, 0::numeric AS exact_before
FROM owed WHERE transfer_id IN (SELECT id FROM inperiod)
UNION ALL
SELECT transfer_id, issuer, debtor, creditor, kind, points,
       upto * unit * scale, (upto - points) * unit * scale
FROM cumulative WHERE points > 0 AND transfer_id IN (SELECT id FROM inperiod)
"""

_COMPARE = text(
    f"""
    WITH expected AS ({_EXPECTED}),
    actual AS (
      SELECT transfer_id, issuer_id AS issuer, debtor_id AS debtor, creditor_id AS creditor,
             kind, sum(points)::bigint AS points, sum(amount)::bigint AS amount,
             count(*) AS copies
      FROM obligations WHERE period_id = :period
      GROUP BY transfer_id, issuer_id, debtor_id, creditor_id, kind
    )
    SELECT COALESCE(e.transfer_id, a.transfer_id) AS transfer_id,
           COALESCE(e.debtor, a.debtor) AS debtor, COALESCE(e.creditor, a.creditor) AS creditor,
           COALESCE(e.kind, a.kind) AS kind, e.points AS expected_points,
           a.points AS actual_points, e.exact_upto, e.exact_before,
           a.amount AS actual_amount, a.copies
    FROM expected e FULL JOIN actual a
      ON a.transfer_id = e.transfer_id AND a.kind = e.kind AND a.debtor = e.debtor
     AND a.creditor = e.creditor AND a.issuer IS NOT DISTINCT FROM e.issuer
    """
)

# Wide enough for any numeric(20, 6) price times any bigint of points times 10^exponent.
_EXACT = Context(prec=80, rounding=ROUND_HALF_EVEN)


def minor_units(exact: Decimal) -> int:
    """An exact amount in minor units, rounded half to even (banker's rounding) to an integer:
    12.5 → 12, 13.5 → 14, −2.5 → −2."""
    return int(exact.quantize(Decimal(1), context=_EXACT))


def expected_amount(exact_upto: Decimal | None, exact_before: Decimal | None) -> int | None:
    """What an obligation must amount to: its cumulative amount rounded, less what the earlier
    parts (of a partial reversal) were rounded to; None when the ledger names no price."""
    if exact_upto is None or exact_before is None:
        return None
    return minor_units(exact_upto) - minor_units(exact_before)


def _order(d: Difference) -> tuple[tuple[bool, str], ...]:
    """Transfer, debtor, creditor, kind; a missing value last."""
    values = (d.transfer_id, d.party_id, d.counterparty_id, d.kind)
    return tuple((v is None, str(v or "")) for v in values)


def _differs(row: Any, expected: int | None) -> bool:
    return (
        row.expected_points is None
        or row.actual_points is None
        or (row.copies or 1) > 1
        or row.expected_points != row.actual_points
        or expected != row.actual_amount
    )


_FROZEN_CHECKS = text(
    f"""
    WITH live AS ({queries.LIVE_LINES}), frozen AS ({queries.FROZEN_LINES}),
    lines AS (
      SELECT 'GROSS_LINE' AS check_name, COALESCE(l.debtor_id, f.debtor_id) AS party,
             COALESCE(l.creditor_id, f.creditor_id) AS counterparty,
             COALESCE(l.kind, f.kind) AS kind, l.amount AS expected, f.amount AS actual
      FROM live l FULL JOIN frozen f USING (debtor_id, creditor_id, kind)
      WHERE l.amount IS DISTINCT FROM f.amount OR l.points IS DISTINCT FROM f.points
    ), implied AS ({queries.positions_sql(queries.FROZEN_LINES)}),
    stored AS (SELECT party_id, net FROM settlement_positions WHERE period_id = :period),
    positions AS (
      SELECT 'POSITION', COALESCE(i.party_id, s.party_id), NULL::uuid, NULL, i.net, s.net
      FROM implied i FULL JOIN stored s USING (party_id)
      WHERE i.net IS DISTINCT FROM s.net
    ), total AS (
      SELECT 'POSITIONS_SUM', NULL::uuid, NULL::uuid, NULL, 0::bigint,
             COALESCE(sum(net), 0)::bigint FROM stored HAVING COALESCE(sum(net), 0) <> 0
    ), paid AS (
      SELECT party, sum(amount)::bigint AS net FROM (
        SELECT payee_id AS party, amount FROM settlement_instructions WHERE period_id = :period
        UNION ALL
        SELECT payer_id, -amount FROM settlement_instructions WHERE period_id = :period) x
      GROUP BY party
    ), settled AS (
      SELECT 'INSTRUCTIONS', COALESCE(s.party_id, p.party), NULL::uuid, NULL,
             COALESCE(s.net, 0), COALESCE(p.net, 0)
      FROM stored s FULL JOIN paid p ON p.party = s.party_id
      WHERE COALESCE(s.net, 0) <> COALESCE(p.net, 0)
    ), counted AS (
      SELECT 'INSTRUCTION_COUNT', NULL::uuid, NULL::uuid, NULL,
             GREATEST((SELECT count(*) FROM stored WHERE net <> 0) - 1, 0),
             (SELECT count(*) FROM settlement_instructions WHERE period_id = :period)
      WHERE (SELECT count(*) FROM settlement_instructions WHERE period_id = :period)
            > GREATEST((SELECT count(*) FROM stored WHERE net <> 0) - 1, 0)
    )
    SELECT * FROM lines UNION ALL SELECT * FROM positions UNION ALL SELECT * FROM total
    UNION ALL SELECT * FROM settled UNION ALL SELECT * FROM counted
    LIMIT :limit
    """
)

_MESSAGES = {
    "GROSS_LINE": "the frozen gross line differs from the period's obligations",
    "POSITION": "the stored position differs from what the gross lines imply",
    "POSITIONS_SUM": "positions do not sum to zero",
    "INSTRUCTIONS": "the party's payment instructions do not add up to its net position",
    "INSTRUCTION_COUNT": "more payment instructions than parties with a position minus one",
}


def _obligation_message(row: object) -> str:
    expected_points = getattr(row, "expected_points", None)
    actual_points = getattr(row, "actual_points", None)
    if actual_points is None:
        return "the ledger implies an obligation that was not booked"
    if expected_points is None:
        return "a booked obligation is not implied by the ledger"
    if (getattr(row, "copies", 1) or 1) > 1:
        return "the obligation is booked more than once"
    if expected_points != actual_points:
        return "points differ from what the ledger implies"
    return "the amount differs from what the ledger implies"


async def verify_period(conn: AsyncConnection, period_id: uuid.UUID) -> VerificationResult:
    period = await require_period(conn, period_id)
    params = {
        "period": period_id,
        "starts_at": period.starts_at,
        "ends_at": period.cutoff,
        "operator": OPERATOR_PARTY,
        "adjustment": OPERATOR_ADJUSTMENT_ACCOUNT,
        "limit": MAX_DIFFERENCES,
    }
    sql = (
        _COMPARE.text.replace(":ends_at", "COALESCE(CAST(:ends_at AS timestamptz), 'infinity')")
        .replace(":operator", "CAST(:operator AS uuid)")
        .replace(":adjustment", "CAST(:adjustment AS uuid)")
    )
    differences: list[Difference] = []
    rows = await conn.stream(text(sql).execution_options(yield_per=10_000), params)
    async for row in rows:
        expected = expected_amount(row.exact_upto, row.exact_before)
        if not _differs(row, expected):
            continue
        differences.append(
            Difference(
                check="OBLIGATION",
                message=_obligation_message(row),
                expected=expected,
                actual=None if row.actual_amount is None else int(row.actual_amount),
                transfer_id=row.transfer_id,
                party_id=row.debtor,
                counterparty_id=row.creditor,
                kind=row.kind,
            )
        )
        if len(differences) >= MAX_DIFFERENCES:
            await rows.close()
            break
    differences.sort(key=_order)
    if period.status != "OPEN":
        for row in await conn.execute(_FROZEN_CHECKS, params):
            check, party, counterparty, kind, expected, actual = tuple(row)
            differences.append(
                Difference(
                    check=check,
                    message=_MESSAGES[check],
                    expected=None if expected is None else int(expected),
                    actual=None if actual is None else int(actual),
                    party_id=party,
                    counterparty_id=counterparty,
                    kind=kind,
                )
            )
    checked = await conn.scalar(
        text("SELECT count(*) FROM obligations WHERE period_id = :period"), params
    )
    return VerificationResult(
        period_id=period_id,
        ok=not differences,
        obligations_checked=int(checked or 0),
        differences=differences[:MAX_DIFFERENCES],
    )
