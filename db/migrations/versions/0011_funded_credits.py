"""settlement_book_obligations charges the issue price for a member credit funded by a partner

Revision ID: 0011
Revises: 0010

Under the ISSUANCE funding model an earn at A makes A owe the operator its issue price; a
support credit funded by A (an ADJUSTMENT with `funded_by` in its metadata, see
points/adjustment.py) now does the same, so it no longer has to be refused. Self-contained:
literal copies rendered from `settlement.booking_sql` as it stands and as it stood. The
downgrade re-installs the function of 0006.
"""

from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

BOOK_OBLIGATIONS_V3 = """
        CREATE OR REPLACE FUNCTION settlement_book_obligations(p_ids uuid[]) RETURNS void
        LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
        BEGIN
          IF 
    NOT EXISTS (
      SELECT 1 FROM transfers t CROSS JOIN LATERAL (SELECT funding_model, point_value, clearing_fee, 10::numeric ^ currency_exponent AS scale FROM settlement_terms WHERE effective_from <= t.created_at ORDER BY effective_from DESC, id DESC LIMIT 1) terms
      WHERE t.id = ANY(p_ids) AND (t.code <> 'EARN' OR terms.funding_model <> 'REDEMPTION'))
     THEN RETURN; END IF;
          IF cardinality(p_ids) > 100 THEN
            EXECUTE $sql$
    WITH booked AS (
      SELECT t.id, t.code, t.partner_id, t.points, t.reversal_of_id, t.occurred_at,
             t.created_at, t.debit_account_id, t.metadata_, terms.*
      FROM transfers t CROSS JOIN LATERAL (SELECT funding_model, point_value, clearing_fee, 10::numeric ^ currency_exponent AS scale FROM settlement_terms WHERE effective_from <= t.created_at ORDER BY effective_from DESC, id DESC LIMIT 1) terms
      WHERE t.id = ANY($1)
    ), spent AS (
      SELECT b.id AS transfer_id, c.issuer_partner_id AS issuer,
             c.redeemer_partner_id AS redeemer, c.kind, sum(c.points) AS points,
             b.point_value, b.clearing_fee
      FROM booked b JOIN consumptions c ON c.transfer_id = b.id
      WHERE b.funding_model = 'REDEMPTION'
        AND c.kind IN ('REDEEM', 'CLAWBACK', 'DEBT_REPAYMENT')
        AND c.issuer_partner_id <> c.redeemer_partner_id
      GROUP BY b.id, c.issuer_partner_id, c.redeemer_partner_id, c.kind, b.point_value,
               b.clearing_fee
    ), fresh AS (
      SELECT transfer_id, issuer, issuer AS debtor, redeemer AS creditor,
             CASE kind WHEN 'REDEEM' THEN 'REDEMPTION' ELSE kind END AS kind,
             points, point_value AS unit_price, 0::bigint AS before
      FROM spent
      UNION ALL
      SELECT transfer_id, issuer, redeemer, '00000000-0000-0000-0000-000000000000'::uuid, 'CLEARING_FEE', points, clearing_fee, 0
      FROM spent WHERE kind = 'REDEEM' AND clearing_fee > 0
      UNION ALL
      SELECT b.id, b.partner_id, b.partner_id, '00000000-0000-0000-0000-000000000000'::uuid, 'ISSUANCE', b.points,
             card.issue_price, 0
      FROM booked b CROSS JOIN LATERAL (
        SELECT issue_price FROM rate_cards WHERE partner_id = b.partner_id
          AND effective_from <= COALESCE(b.occurred_at, b.created_at)
          ORDER BY effective_from DESC LIMIT 1) card
      WHERE b.funding_model = 'ISSUANCE'
        AND (b.code = 'EARN' OR (b.code = 'ADJUSTMENT' AND b.metadata_ ? 'funded_by'))
      UNION ALL
      SELECT b.id, NULL, '00000000-0000-0000-0000-000000000000'::uuid, b.partner_id, 'REDEMPTION', b.points, card.redeem_price, 0
      FROM booked b CROSS JOIN LATERAL (
        SELECT redeem_price FROM rate_cards WHERE partner_id = b.partner_id
          AND effective_from <= b.created_at ORDER BY effective_from DESC LIMIT 1) card
      WHERE b.funding_model = 'ISSUANCE' AND b.code = 'REDEEM'
      UNION ALL
      SELECT b.id, b.partner_id,
             CASE WHEN b.debit_account_id = '00000000-0000-0000-0000-00000000ad00'::uuid THEN '00000000-0000-0000-0000-000000000000'::uuid ELSE b.partner_id END,
             CASE WHEN b.debit_account_id = '00000000-0000-0000-0000-00000000ad00'::uuid THEN b.partner_id ELSE '00000000-0000-0000-0000-000000000000'::uuid END,
             'ADJUSTMENT', b.points, b.point_value, 0
      FROM booked b
      WHERE b.code = 'ADJUSTMENT' AND b.metadata_ ? 'reconciliation_break_id'
      UNION ALL
      SELECT r.id, o.issuer_id, o.creditor_id, o.debtor_id, o.kind || '_REVERSAL',
             part.points, o.unit_price, before.points
      FROM booked r
      JOIN obligations o ON o.transfer_id = r.reversal_of_id
        AND o.kind IN ('REDEMPTION', 'CLEARING_FEE', 'ISSUANCE')
      CROSS JOIN LATERAL (
        SELECT CASE WHEN o.kind = 'ISSUANCE' OR o.issuer_id IS NULL THEN r.points
               ELSE (SELECT COALESCE(-sum(c.points), 0) FROM consumptions c
                     WHERE c.transfer_id = r.id AND c.kind = 'RESTORE'
                       AND c.issuer_partner_id = o.issuer_id) END AS points) part
      CROSS JOIN LATERAL (
        SELECT COALESCE(sum(x.points), 0) AS points
        FROM transfers e JOIN obligations x ON x.transfer_id = e.id
        WHERE e.reversal_of_id = r.reversal_of_id AND e.id <> r.id
          AND x.kind = o.kind || '_REVERSAL' AND x.debtor_id = o.creditor_id
          AND x.creditor_id = o.debtor_id
          AND x.issuer_id IS NOT DISTINCT FROM o.issuer_id) before
      WHERE r.code = 'REVERSAL'
    )
    INSERT INTO obligations (id, period_id, transfer_id, issuer_id, debtor_id, creditor_id,
                             kind, points, unit_price, amount, created_at)
    SELECT uuid7(), (SELECT id FROM settlement_periods WHERE status = 'OPEN'), f.transfer_id,
           f.issuer, f.debtor, f.creditor, f.kind, f.points, f.unit_price,
           round_half_even((f.before + f.points) * f.unit_price * b.scale)
             - round_half_even(f.before * f.unit_price * b.scale),
           b.created_at
    FROM fresh f JOIN booked b ON b.id = f.transfer_id
    WHERE f.points > 0
    $sql$ USING p_ids;
          ELSE
            
    WITH booked AS (
      SELECT t.id, t.code, t.partner_id, t.points, t.reversal_of_id, t.occurred_at,
             t.created_at, t.debit_account_id, t.metadata_, terms.*
      FROM transfers t CROSS JOIN LATERAL (SELECT funding_model, point_value, clearing_fee, 10::numeric ^ currency_exponent AS scale FROM settlement_terms WHERE effective_from <= t.created_at ORDER BY effective_from DESC, id DESC LIMIT 1) terms
      WHERE t.id = ANY(p_ids)
    ), spent AS (
      SELECT b.id AS transfer_id, c.issuer_partner_id AS issuer,
             c.redeemer_partner_id AS redeemer, c.kind, sum(c.points) AS points,
             b.point_value, b.clearing_fee
      FROM booked b JOIN consumptions c ON c.transfer_id = b.id
      WHERE b.funding_model = 'REDEMPTION'
        AND c.kind IN ('REDEEM', 'CLAWBACK', 'DEBT_REPAYMENT')
        AND c.issuer_partner_id <> c.redeemer_partner_id
      GROUP BY b.id, c.issuer_partner_id, c.redeemer_partner_id, c.kind, b.point_value,
               b.clearing_fee
    ), fresh AS (
      SELECT transfer_id, issuer, issuer AS debtor, redeemer AS creditor,
             CASE kind WHEN 'REDEEM' THEN 'REDEMPTION' ELSE kind END AS kind,
             points, point_value AS unit_price, 0::bigint AS before
      FROM spent
      UNION ALL
      SELECT transfer_id, issuer, redeemer, '00000000-0000-0000-0000-000000000000'::uuid, 'CLEARING_FEE', points, clearing_fee, 0
      FROM spent WHERE kind = 'REDEEM' AND clearing_fee > 0
      UNION ALL
      SELECT b.id, b.partner_id, b.partner_id, '00000000-0000-0000-0000-000000000000'::uuid, 'ISSUANCE', b.points,
             card.issue_price, 0
      FROM booked b CROSS JOIN LATERAL (
        SELECT issue_price FROM rate_cards WHERE partner_id = b.partner_id
          AND effective_from <= COALESCE(b.occurred_at, b.created_at)
          ORDER BY effective_from DESC LIMIT 1) card
      WHERE b.funding_model = 'ISSUANCE'
        AND (b.code = 'EARN' OR (b.code = 'ADJUSTMENT' AND b.metadata_ ? 'funded_by'))
      UNION ALL
      SELECT b.id, NULL, '00000000-0000-0000-0000-000000000000'::uuid, b.partner_id, 'REDEMPTION', b.points, card.redeem_price, 0
      FROM booked b CROSS JOIN LATERAL (
        SELECT redeem_price FROM rate_cards WHERE partner_id = b.partner_id
          AND effective_from <= b.created_at ORDER BY effective_from DESC LIMIT 1) card
      WHERE b.funding_model = 'ISSUANCE' AND b.code = 'REDEEM'
      UNION ALL
      SELECT b.id, b.partner_id,
             CASE WHEN b.debit_account_id = '00000000-0000-0000-0000-00000000ad00'::uuid THEN '00000000-0000-0000-0000-000000000000'::uuid ELSE b.partner_id END,
             CASE WHEN b.debit_account_id = '00000000-0000-0000-0000-00000000ad00'::uuid THEN b.partner_id ELSE '00000000-0000-0000-0000-000000000000'::uuid END,
             'ADJUSTMENT', b.points, b.point_value, 0
      FROM booked b
      WHERE b.code = 'ADJUSTMENT' AND b.metadata_ ? 'reconciliation_break_id'
      UNION ALL
      SELECT r.id, o.issuer_id, o.creditor_id, o.debtor_id, o.kind || '_REVERSAL',
             part.points, o.unit_price, before.points
      FROM booked r
      JOIN obligations o ON o.transfer_id = r.reversal_of_id
        AND o.kind IN ('REDEMPTION', 'CLEARING_FEE', 'ISSUANCE')
      CROSS JOIN LATERAL (
        SELECT CASE WHEN o.kind = 'ISSUANCE' OR o.issuer_id IS NULL THEN r.points
               ELSE (SELECT COALESCE(-sum(c.points), 0) FROM consumptions c
                     WHERE c.transfer_id = r.id AND c.kind = 'RESTORE'
                       AND c.issuer_partner_id = o.issuer_id) END AS points) part
      CROSS JOIN LATERAL (
        SELECT COALESCE(sum(x.points), 0) AS points
        FROM transfers e JOIN obligations x ON x.transfer_id = e.id
        WHERE e.reversal_of_id = r.reversal_of_id AND e.id <> r.id
          AND x.kind = o.kind || '_REVERSAL' AND x.debtor_id = o.creditor_id
          AND x.creditor_id = o.debtor_id
          AND x.issuer_id IS NOT DISTINCT FROM o.issuer_id) before
      WHERE r.code = 'REVERSAL'
    )
    INSERT INTO obligations (id, period_id, transfer_id, issuer_id, debtor_id, creditor_id,
                             kind, points, unit_price, amount, created_at)
    SELECT uuid7(), (SELECT id FROM settlement_periods WHERE status = 'OPEN'), f.transfer_id,
           f.issuer, f.debtor, f.creditor, f.kind, f.points, f.unit_price,
           round_half_even((f.before + f.points) * f.unit_price * b.scale)
             - round_half_even(f.before * f.unit_price * b.scale),
           b.created_at
    FROM fresh f JOIN booked b ON b.id = f.transfer_id
    WHERE f.points > 0
    ;
          END IF;
        END $fn$
        """

BOOK_OBLIGATIONS_V2 = """
        CREATE OR REPLACE FUNCTION settlement_book_obligations(p_ids uuid[]) RETURNS void
        LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
        BEGIN
          IF 
    NOT EXISTS (
      SELECT 1 FROM transfers t CROSS JOIN LATERAL (SELECT funding_model, point_value, clearing_fee, 10::numeric ^ currency_exponent AS scale FROM settlement_terms WHERE effective_from <= t.created_at ORDER BY effective_from DESC, id DESC LIMIT 1) terms
      WHERE t.id = ANY(p_ids) AND (t.code <> 'EARN' OR terms.funding_model <> 'REDEMPTION'))
     THEN RETURN; END IF;
          IF cardinality(p_ids) > 100 THEN
            EXECUTE $sql$
    WITH booked AS (
      SELECT t.id, t.code, t.partner_id, t.points, t.reversal_of_id, t.occurred_at,
             t.created_at, t.debit_account_id, t.metadata_, terms.*
      FROM transfers t CROSS JOIN LATERAL (SELECT funding_model, point_value, clearing_fee, 10::numeric ^ currency_exponent AS scale FROM settlement_terms WHERE effective_from <= t.created_at ORDER BY effective_from DESC, id DESC LIMIT 1) terms
      WHERE t.id = ANY($1)
    ), spent AS (
      SELECT b.id AS transfer_id, c.issuer_partner_id AS issuer,
             c.redeemer_partner_id AS redeemer, c.kind, sum(c.points) AS points,
             b.point_value, b.clearing_fee
      FROM booked b JOIN consumptions c ON c.transfer_id = b.id
      WHERE b.funding_model = 'REDEMPTION'
        AND c.kind IN ('REDEEM', 'CLAWBACK', 'DEBT_REPAYMENT')
        AND c.issuer_partner_id <> c.redeemer_partner_id
      GROUP BY b.id, c.issuer_partner_id, c.redeemer_partner_id, c.kind, b.point_value,
               b.clearing_fee
    ), fresh AS (
      SELECT transfer_id, issuer, issuer AS debtor, redeemer AS creditor,
             CASE kind WHEN 'REDEEM' THEN 'REDEMPTION' ELSE kind END AS kind,
             points, point_value AS unit_price, 0::bigint AS before
      FROM spent
      UNION ALL
      SELECT transfer_id, issuer, redeemer, '00000000-0000-0000-0000-000000000000'::uuid, 'CLEARING_FEE', points, clearing_fee, 0
      FROM spent WHERE kind = 'REDEEM' AND clearing_fee > 0
      UNION ALL
      SELECT b.id, b.partner_id, b.partner_id, '00000000-0000-0000-0000-000000000000'::uuid, 'ISSUANCE', b.points,
             card.issue_price, 0
      FROM booked b CROSS JOIN LATERAL (
        SELECT issue_price FROM rate_cards WHERE partner_id = b.partner_id
          AND effective_from <= b.occurred_at ORDER BY effective_from DESC LIMIT 1) card
      WHERE b.funding_model = 'ISSUANCE' AND b.code = 'EARN'
      UNION ALL
      SELECT b.id, NULL, '00000000-0000-0000-0000-000000000000'::uuid, b.partner_id, 'REDEMPTION', b.points, card.redeem_price, 0
      FROM booked b CROSS JOIN LATERAL (
        SELECT redeem_price FROM rate_cards WHERE partner_id = b.partner_id
          AND effective_from <= b.created_at ORDER BY effective_from DESC LIMIT 1) card
      WHERE b.funding_model = 'ISSUANCE' AND b.code = 'REDEEM'
      UNION ALL
      SELECT b.id, b.partner_id,
             CASE WHEN b.debit_account_id = '00000000-0000-0000-0000-00000000ad00'::uuid THEN '00000000-0000-0000-0000-000000000000'::uuid ELSE b.partner_id END,
             CASE WHEN b.debit_account_id = '00000000-0000-0000-0000-00000000ad00'::uuid THEN b.partner_id ELSE '00000000-0000-0000-0000-000000000000'::uuid END,
             'ADJUSTMENT', b.points, b.point_value, 0
      FROM booked b
      WHERE b.code = 'ADJUSTMENT' AND b.metadata_ ? 'reconciliation_break_id'
      UNION ALL
      SELECT r.id, o.issuer_id, o.creditor_id, o.debtor_id, o.kind || '_REVERSAL',
             part.points, o.unit_price, before.points
      FROM booked r
      JOIN obligations o ON o.transfer_id = r.reversal_of_id
        AND o.kind IN ('REDEMPTION', 'CLEARING_FEE', 'ISSUANCE')
      CROSS JOIN LATERAL (
        SELECT CASE WHEN o.kind = 'ISSUANCE' OR o.issuer_id IS NULL THEN r.points
               ELSE (SELECT COALESCE(-sum(c.points), 0) FROM consumptions c
                     WHERE c.transfer_id = r.id AND c.kind = 'RESTORE'
                       AND c.issuer_partner_id = o.issuer_id) END AS points) part
      CROSS JOIN LATERAL (
        SELECT COALESCE(sum(x.points), 0) AS points
        FROM transfers e JOIN obligations x ON x.transfer_id = e.id
        WHERE e.reversal_of_id = r.reversal_of_id AND e.id <> r.id
          AND x.kind = o.kind || '_REVERSAL' AND x.debtor_id = o.creditor_id
          AND x.creditor_id = o.debtor_id
          AND x.issuer_id IS NOT DISTINCT FROM o.issuer_id) before
      WHERE r.code = 'REVERSAL'
    )
    INSERT INTO obligations (id, period_id, transfer_id, issuer_id, debtor_id, creditor_id,
                             kind, points, unit_price, amount, created_at)
    SELECT uuid7(), (SELECT id FROM settlement_periods WHERE status = 'OPEN'), f.transfer_id,
           f.issuer, f.debtor, f.creditor, f.kind, f.points, f.unit_price,
           round_half_even((f.before + f.points) * f.unit_price * b.scale)
             - round_half_even(f.before * f.unit_price * b.scale),
           b.created_at
    FROM fresh f JOIN booked b ON b.id = f.transfer_id
    WHERE f.points > 0
    $sql$ USING p_ids;
          ELSE
            
    WITH booked AS (
      SELECT t.id, t.code, t.partner_id, t.points, t.reversal_of_id, t.occurred_at,
             t.created_at, t.debit_account_id, t.metadata_, terms.*
      FROM transfers t CROSS JOIN LATERAL (SELECT funding_model, point_value, clearing_fee, 10::numeric ^ currency_exponent AS scale FROM settlement_terms WHERE effective_from <= t.created_at ORDER BY effective_from DESC, id DESC LIMIT 1) terms
      WHERE t.id = ANY(p_ids)
    ), spent AS (
      SELECT b.id AS transfer_id, c.issuer_partner_id AS issuer,
             c.redeemer_partner_id AS redeemer, c.kind, sum(c.points) AS points,
             b.point_value, b.clearing_fee
      FROM booked b JOIN consumptions c ON c.transfer_id = b.id
      WHERE b.funding_model = 'REDEMPTION'
        AND c.kind IN ('REDEEM', 'CLAWBACK', 'DEBT_REPAYMENT')
        AND c.issuer_partner_id <> c.redeemer_partner_id
      GROUP BY b.id, c.issuer_partner_id, c.redeemer_partner_id, c.kind, b.point_value,
               b.clearing_fee
    ), fresh AS (
      SELECT transfer_id, issuer, issuer AS debtor, redeemer AS creditor,
             CASE kind WHEN 'REDEEM' THEN 'REDEMPTION' ELSE kind END AS kind,
             points, point_value AS unit_price, 0::bigint AS before
      FROM spent
      UNION ALL
      SELECT transfer_id, issuer, redeemer, '00000000-0000-0000-0000-000000000000'::uuid, 'CLEARING_FEE', points, clearing_fee, 0
      FROM spent WHERE kind = 'REDEEM' AND clearing_fee > 0
      UNION ALL
      SELECT b.id, b.partner_id, b.partner_id, '00000000-0000-0000-0000-000000000000'::uuid, 'ISSUANCE', b.points,
             card.issue_price, 0
      FROM booked b CROSS JOIN LATERAL (
        SELECT issue_price FROM rate_cards WHERE partner_id = b.partner_id
          AND effective_from <= b.occurred_at ORDER BY effective_from DESC LIMIT 1) card
      WHERE b.funding_model = 'ISSUANCE' AND b.code = 'EARN'
      UNION ALL
      SELECT b.id, NULL, '00000000-0000-0000-0000-000000000000'::uuid, b.partner_id, 'REDEMPTION', b.points, card.redeem_price, 0
      FROM booked b CROSS JOIN LATERAL (
        SELECT redeem_price FROM rate_cards WHERE partner_id = b.partner_id
          AND effective_from <= b.created_at ORDER BY effective_from DESC LIMIT 1) card
      WHERE b.funding_model = 'ISSUANCE' AND b.code = 'REDEEM'
      UNION ALL
      SELECT b.id, b.partner_id,
             CASE WHEN b.debit_account_id = '00000000-0000-0000-0000-00000000ad00'::uuid THEN '00000000-0000-0000-0000-000000000000'::uuid ELSE b.partner_id END,
             CASE WHEN b.debit_account_id = '00000000-0000-0000-0000-00000000ad00'::uuid THEN b.partner_id ELSE '00000000-0000-0000-0000-000000000000'::uuid END,
             'ADJUSTMENT', b.points, b.point_value, 0
      FROM booked b
      WHERE b.code = 'ADJUSTMENT' AND b.metadata_ ? 'reconciliation_break_id'
      UNION ALL
      SELECT r.id, o.issuer_id, o.creditor_id, o.debtor_id, o.kind || '_REVERSAL',
             part.points, o.unit_price, before.points
      FROM booked r
      JOIN obligations o ON o.transfer_id = r.reversal_of_id
        AND o.kind IN ('REDEMPTION', 'CLEARING_FEE', 'ISSUANCE')
      CROSS JOIN LATERAL (
        SELECT CASE WHEN o.kind = 'ISSUANCE' OR o.issuer_id IS NULL THEN r.points
               ELSE (SELECT COALESCE(-sum(c.points), 0) FROM consumptions c
                     WHERE c.transfer_id = r.id AND c.kind = 'RESTORE'
                       AND c.issuer_partner_id = o.issuer_id) END AS points) part
      CROSS JOIN LATERAL (
        SELECT COALESCE(sum(x.points), 0) AS points
        FROM transfers e JOIN obligations x ON x.transfer_id = e.id
        WHERE e.reversal_of_id = r.reversal_of_id AND e.id <> r.id
          AND x.kind = o.kind || '_REVERSAL' AND x.debtor_id = o.creditor_id
          AND x.creditor_id = o.debtor_id
          AND x.issuer_id IS NOT DISTINCT FROM o.issuer_id) before
      WHERE r.code = 'REVERSAL'
    )
    INSERT INTO obligations (id, period_id, transfer_id, issuer_id, debtor_id, creditor_id,
                             kind, points, unit_price, amount, created_at)
    SELECT uuid7(), (SELECT id FROM settlement_periods WHERE status = 'OPEN'), f.transfer_id,
           f.issuer, f.debtor, f.creditor, f.kind, f.points, f.unit_price,
           round_half_even((f.before + f.points) * f.unit_price * b.scale)
             - round_half_even(f.before * f.unit_price * b.scale),
           b.created_at
    FROM fresh f JOIN booked b ON b.id = f.transfer_id
    WHERE f.points > 0
    ;
          END IF;
        END $fn$
        """


def upgrade() -> None:
    op.execute(BOOK_OBLIGATIONS_V3)


def downgrade() -> None:
    op.execute(BOOK_OBLIGATIONS_V2)
