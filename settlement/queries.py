"""SQL shared by the close, the views and the statements.

A period's lines come from the frozen table once it is closed, and are aggregated live from
its obligations while it is OPEN; everything else is computed from `lines` the same way.
"""

from __future__ import annotations

FROZEN_LINES = (
    "SELECT debtor_id, creditor_id, kind, points, amount, obligations"
    " FROM settlement_gross_lines WHERE period_id = :period"
)
LIVE_LINES = (
    "SELECT debtor_id, creditor_id, kind, sum(points)::bigint AS points,"
    " sum(amount)::bigint AS amount, count(*) AS obligations"
    " FROM obligations WHERE period_id = :period GROUP BY debtor_id, creditor_id, kind"
)


def lines_sql(frozen: bool) -> str:
    return FROZEN_LINES if frozen else LIVE_LINES


def bilateral_sql(lines: str) -> str:
    return f"""
    SELECT LEAST(debtor_id, creditor_id) AS party_a, GREATEST(debtor_id, creditor_id) AS party_b,
           COALESCE(sum(amount) FILTER (WHERE debtor_id < creditor_id), 0)::bigint AS a_owes_b,
           COALESCE(sum(amount) FILTER (WHERE debtor_id > creditor_id), 0)::bigint AS b_owes_a,
           (COALESCE(sum(amount) FILTER (WHERE debtor_id < creditor_id), 0)
            - COALESCE(sum(amount) FILTER (WHERE debtor_id > creditor_id), 0))::bigint AS net
    FROM ({lines}) lines GROUP BY 1, 2
    """


def positions_sql(lines: str) -> str:
    return f"""
    SELECT party_id, sum(receivable)::bigint AS receivable, sum(payable)::bigint AS payable,
           (sum(receivable) - sum(payable))::bigint AS net
    FROM (SELECT creditor_id AS party_id, amount AS receivable, 0 AS payable FROM ({lines}) l
          UNION ALL
          SELECT debtor_id, 0, amount FROM ({lines}) l) sides
    GROUP BY party_id
    """


def period_transfers_sql(columns: str) -> str:
    """The period's transfers, through the (partner_id, created_at) index of each partner.

    `partners` includes the operator's own row (OPERATOR_PARTY, migration 0015), so the
    transfers of points the operator funds (its BONUS transfers, their reversals, debts owed to
    it) are the period's too."""
    return f"""
    SELECT {columns} FROM partners p CROSS JOIN LATERAL (
      SELECT * FROM transfers t WHERE t.partner_id = p.id
        AND t.created_at >= :starts_at AND t.created_at < :ends_at) t
    """


def statement_sql(lines: str) -> str:
    """Per party: points figures from the period's transfers and consumptions, money from lines.

    Issued points are the party's EARN and BONUS transfers (a BONUS: its share of a purchase at
    another partner that it funds), earn reversals the reversals of either.
    Redeemed figures count REDEEM, CLAWBACK and DEBT_REPAYMENT consumptions net of RESTORE
    (a clawback or a debt repayment is economically the issuer's points used at the other
    partner). Breakage is EXPIRY consumptions net of breakage reversals. Fees are clearing
    fees net of their reversals, paid by a partner or received by the operator.
    """
    return f"""
    WITH pt AS ({period_transfers_sql("t.id, t.code, t.partner_id, t.points, t.reversal_of_id")}),
    cons AS (
      SELECT c.kind, c.issuer_partner_id AS issuer, c.redeemer_partner_id AS redeemer, c.points
      FROM pt JOIN consumptions c ON c.transfer_id = pt.id
    ), facts AS (
      SELECT pt.partner_id AS party,
             CASE WHEN pt.code IN ('EARN', 'BONUS') THEN pt.points ELSE 0 END AS issued,
             CASE WHEN pt.code = 'REVERSAL' AND o.code IN ('EARN', 'BONUS') THEN pt.points
                  ELSE 0 END AS earn_rev,
             CASE WHEN pt.code = 'REVERSAL' AND o.code = 'REDEEM' THEN pt.points ELSE 0 END
               AS redemption_rev,
             0 AS own_here, 0 AS elsewhere, 0 AS others_here,
             CASE WHEN pt.code = 'BREAKAGE_REVERSAL' THEN -pt.points ELSE 0 END AS breakage,
             0 AS fees, 0 AS payable, 0 AS receivable
      FROM pt LEFT JOIN transfers o ON o.id = pt.reversal_of_id
      UNION ALL
      SELECT issuer, 0, 0, 0,
             CASE WHEN issuer = redeemer THEN points ELSE 0 END,
             CASE WHEN issuer <> redeemer THEN points ELSE 0 END, 0, 0, 0, 0, 0
      FROM cons WHERE kind IN ('REDEEM', 'RESTORE', 'CLAWBACK', 'DEBT_REPAYMENT')
      UNION ALL
      SELECT redeemer, 0, 0, 0, 0, 0, points, 0, 0, 0, 0
      FROM cons WHERE kind IN ('REDEEM', 'RESTORE', 'CLAWBACK', 'DEBT_REPAYMENT')
        AND issuer <> redeemer
      UNION ALL
      SELECT issuer, 0, 0, 0, 0, 0, 0, points, 0, 0, 0 FROM cons WHERE kind = 'EXPIRY'
      UNION ALL
      SELECT party, 0, 0, 0, 0, 0, 0, 0,
             CASE kind WHEN 'CLEARING_FEE' THEN amount WHEN 'CLEARING_FEE_REVERSAL' THEN -amount
                       ELSE 0 END,
             payable, receivable
      FROM (SELECT debtor_id AS party, kind, amount, amount AS payable, 0 AS receivable
            FROM ({lines}) l
            UNION ALL
            SELECT creditor_id, kind, amount, 0, amount FROM ({lines}) l) money
    )
    SELECT party AS party_id,
           sum(issued)::bigint AS points_issued,
           sum(earn_rev)::bigint AS earn_reversal_points,
           sum(redemption_rev)::bigint AS redemption_reversal_points,
           sum(own_here)::bigint AS own_points_redeemed_here,
           sum(elsewhere)::bigint AS points_redeemed_elsewhere,
           sum(others_here)::bigint AS others_points_redeemed_here,
           sum(breakage)::bigint AS breakage_points,
           sum(fees)::bigint AS fees,
           sum(payable)::bigint AS gross_payable,
           sum(receivable)::bigint AS gross_receivable,
           (sum(receivable) - sum(payable))::bigint AS net
    FROM facts GROUP BY party
    """


STATEMENT_COLUMNS = (
    "party_id, points_issued, earn_reversal_points, redemption_reversal_points,"
    " own_points_redeemed_here, points_redeemed_elsewhere, others_points_redeemed_here,"
    " breakage_points, fees, gross_payable, gross_receivable, net"
)
