"""posting hooks as SQL functions; settlement subscribes; the single earn as one function

Revision ID: 0004
Revises: 0003

Self-contained: the SQL below is a literal copy of what this migration has always installed
(it was rendered from `settlement.booking_sql`, `settlement.booking.PERIOD_LOCK` and
`ledger.earn_sql` as they stood), so editing domain code never changes an old migration.
The current definitions live in the domain packages; tests/db/test_function_drift.py checks
that the migrated database runs exactly them.
"""

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# settlement_book_obligations, first version (no guard).
BOOK_OBLIGATIONS_V1 = """
        CREATE OR REPLACE FUNCTION settlement_book_obligations(p_ids uuid[]) RETURNS void
        LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
        BEGIN
          
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

# The hooks; 0007 re-creates ledger_posting_booked with the outbox added.
POSTING_BEGIN_V1 = """
        CREATE FUNCTION ledger_posting_begin() RETURNS void LANGUAGE plpgsql AS $fn$
        BEGIN
          PERFORM pg_advisory_xact_lock_shared(7243002);  -- settlement's period lock
        END $fn$
        """

POSTING_BOOKED_V1 = """
        CREATE FUNCTION ledger_posting_booked(p_ids uuid[]) RETURNS void LANGUAGE plpgsql AS $fn$
        BEGIN
          PERFORM settlement_book_obligations(p_ids);
        END $fn$
        """

BOOK_EARN_V1 = """
CREATE FUNCTION ledger_book_earn(
  p_client text, p_key text, p_hash text, p_result jsonb,
  p_transfer uuid, p_lot uuid, p_member uuid, p_issuer uuid,
  p_issuance_account uuid, p_wallet uuid, p_debt_account uuid,
  p_points bigint, p_reference text, p_amount numeric, p_metadata jsonb,
  p_occurred_at timestamptz, p_available_at timestamptz, p_expires_at timestamptz)
RETURNS TABLE (status text, created_at timestamptz, key_operation text, key_hash text,
               key_result jsonb)
LANGUAGE plpgsql AS $fn$
DECLARE
  v_created timestamptz;
  v_left bigint := p_points;
  v_ids uuid[] := ARRAY[p_transfer];
  v_debt record;
  v_repay bigint;
  v_repayment uuid;
BEGIN
  INSERT INTO idempotency_keys (client_id, key, operation, request_hash, result)
  VALUES (p_client, p_key, 'earnPoints', p_hash, p_result) ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN
    RETURN QUERY SELECT 'KEY_TAKEN', NULL::timestamptz, k.operation, k.request_hash, k.result
      FROM idempotency_keys k WHERE k.client_id = p_client AND k.key = p_key;
    RETURN;
  END IF;
  IF p_points > 0 THEN
    PERFORM ledger_posting_begin();
    PERFORM 1 FROM members WHERE id = p_member FOR NO KEY UPDATE;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'no such member' USING ERRCODE = 'no_data_found';
    END IF;
    v_created := clock_timestamp();
    INSERT INTO transfers (id, code, debit_account_id, credit_account_id, points, member_id,
                           partner_id, client_id, reference, amount, metadata_, occurred_at,
                           created_at)
    VALUES (p_transfer, 'EARN', p_issuance_account, p_wallet, p_points, p_member, p_issuer,
            p_client, p_reference, p_amount, p_metadata, p_occurred_at, v_created);
    INSERT INTO lots (id, member_id, issuer_partner_id, transfer_id, points, remaining,
                      available_at, expires_at)
    VALUES (p_lot, p_member, p_issuer, p_transfer, p_points, p_points, p_available_at,
            p_expires_at);
    FOR v_debt IN
      SELECT d.id, d.creditor_partner_id, d.remaining FROM debts d
      WHERE d.member_id = p_member AND d.remaining > 0 ORDER BY d.created_at, d.id
    LOOP
      EXIT WHEN v_left <= 0;
      v_repay := least(v_left, v_debt.remaining);
      v_left := v_left - v_repay;
      v_repayment := uuid7();
      INSERT INTO transfers (id, code, debit_account_id, credit_account_id, points, member_id,
                             partner_id, client_id, metadata_, occurred_at, created_at)
      VALUES (v_repayment, 'DEBT_REPAYMENT', p_wallet, p_debt_account, v_repay, p_member,
              v_debt.creditor_partner_id, p_client,
              jsonb_build_object('debt_id', v_debt.id::text), clock_timestamp(),
              clock_timestamp());
      UPDATE lots SET remaining = remaining - v_repay WHERE id = p_lot;
      UPDATE debts SET remaining = remaining - v_repay WHERE id = v_debt.id;
      INSERT INTO consumptions (id, transfer_id, lot_id, kind, issuer_partner_id,
                                redeemer_partner_id, points)
      VALUES (uuid7(), v_repayment, p_lot, 'DEBT_REPAYMENT', p_issuer,
              v_debt.creditor_partner_id, v_repay);
      v_ids := v_ids || v_repayment;
    END LOOP;
    PERFORM ledger_posting_booked(v_ids);
  END IF;
  RETURN QUERY SELECT 'BOOKED', v_created, NULL::text, NULL::text, NULL::jsonb;
END $fn$
"""


def upgrade() -> None:
    op.execute(BOOK_OBLIGATIONS_V1)
    # The ledger's hooks, with settlement subscribed. A module that subscribes later
    # re-creates them with its own call added.
    op.execute(POSTING_BEGIN_V1)
    op.execute(POSTING_BOOKED_V1)
    op.execute(BOOK_EARN_V1)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS ledger_book_earn")
    op.execute("DROP FUNCTION IF EXISTS ledger_posting_booked(uuid[])")
    op.execute("DROP FUNCTION IF EXISTS ledger_posting_begin()")
    op.execute("DROP FUNCTION IF EXISTS settlement_book_obligations(uuid[])")
