"""one implementation per posting: the earn and redemption functions book for batches and captures

Revision ID: 0010
Revises: 0009

- `ledger_book_earn` with a NULL `p_key` skips the key claim: a batch claims all its rows' keys
  in one statement, then books the rows of an indebted member that repay the debt through this
  function (before, a Python copy of the earn booked them); bench/setup books without a key.
  The signature is unchanged, so `earnPoints` sends the same one statement as before.
- `ledger_book_redeem` gains `p_hold`: a hold's capture books through it (before, a Python copy
  of the redemption did), spending the hold's own points (the hold is left out of the active
  holds subtracted) and recording `{"hold_id": …}` as the transfer's metadata; with a NULL
  `p_key` the caller (`captureHold`, which stores its own key) has claimed the key.
  `redeemPoints` passes NULL for `p_hold`: still one statement.

Self-contained: literal copies of the functions as this migration installs them, and as 0004
and 0005 did (for the downgrade).
"""

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

BOOK_EARN_V2 = """
CREATE OR REPLACE FUNCTION ledger_book_earn(
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
  IF p_key IS NOT NULL THEN
    INSERT INTO idempotency_keys (client_id, key, operation, request_hash, result)
    VALUES (p_client, p_key, 'earnPoints', p_hash, p_result) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
      RETURN QUERY SELECT 'KEY_TAKEN', NULL::timestamptz, k.operation, k.request_hash, k.result
        FROM idempotency_keys k WHERE k.client_id = p_client AND k.key = p_key;
      RETURN;
    END IF;
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

BOOK_EARN_V1 = """
CREATE OR REPLACE FUNCTION ledger_book_earn(
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

BOOK_REDEEM_V2 = """
CREATE FUNCTION ledger_book_redeem(
  p_client text, p_key text, p_hash text, p_result jsonb,
  p_transfer uuid, p_member uuid, p_redeemer uuid, p_wallet uuid, p_redemption_account uuid,
  p_points bigint, p_reference text, p_hold uuid)
RETURNS TABLE (status text, created_at timestamptz, key_operation text, key_hash text,
               key_result jsonb)
LANGUAGE plpgsql AS $fn$
DECLARE
  v_created timestamptz;
  v_available bigint;
  v_taken bigint;
BEGIN
  IF p_key IS NOT NULL THEN
    INSERT INTO idempotency_keys (client_id, key, operation, request_hash, result)
    VALUES (p_client, p_key, 'redeemPoints', p_hash, p_result) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
      RETURN QUERY SELECT 'KEY_TAKEN', NULL::timestamptz, k.operation, k.request_hash, k.result
        FROM idempotency_keys k WHERE k.client_id = p_client AND k.key = p_key;
      RETURN;
    END IF;
  END IF;
  PERFORM ledger_posting_begin();
  PERFORM 1 FROM members m WHERE m.id = p_member FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no such member' USING ERRCODE = 'no_data_found';
  END IF;
  SELECT COALESCE((SELECT sum(l.remaining) FROM lots l WHERE l.member_id = p_member AND l.remaining > 0 AND l.available_at <= now() AND l.expires_at > now()), 0) - COALESCE((SELECT sum(h.points) FROM holds h WHERE h.member_id = p_member AND h.status = 'ACTIVE' AND h.expires_at > now() AND h.id IS DISTINCT FROM p_hold), 0) INTO v_available;
  IF v_available < p_points THEN
    RAISE EXCEPTION '%', greatest(v_available, 0)
      USING ERRCODE = 'CL001';
  END IF;
  v_created := clock_timestamp();
  INSERT INTO transfers (id, code, debit_account_id, credit_account_id, points, member_id,
                         partner_id, client_id, reference, metadata_, occurred_at, created_at)
  VALUES (p_transfer, 'REDEEM', p_wallet, p_redemption_account, p_points, p_member,
          p_redeemer, p_client, p_reference,
          CASE WHEN p_hold IS NULL THEN '{}'::jsonb
               ELSE jsonb_build_object('hold_id', p_hold::text) END,
          v_created, v_created);
  WITH candidates AS (
    SELECT l.id, l.issuer_partner_id, l.remaining,
           sum(l.remaining) OVER (ORDER BY l.expires_at, l.id) AS running
    FROM lots l
    WHERE l.member_id = p_member AND l.remaining > 0 AND l.expires_at > now() AND l.available_at <= now()
  ), take AS (
    SELECT c.id, c.issuer_partner_id, LEAST(c.remaining, p_points - (c.running - c.remaining)) AS pts
    FROM candidates c WHERE c.running - c.remaining < p_points
  ), spent AS (
    UPDATE lots SET remaining = lots.remaining - take.pts FROM take WHERE lots.id = take.id
    RETURNING lots.id
  ), used AS (
    INSERT INTO consumptions (id, transfer_id, lot_id, kind, issuer_partner_id,
                              redeemer_partner_id, points)
    SELECT uuid7(), p_transfer, take.id, 'REDEEM', take.issuer_partner_id, p_redeemer, take.pts
    FROM take JOIN spent ON spent.id = take.id
    RETURNING consumptions.points
  )
  SELECT COALESCE(sum(u.points), 0) INTO v_taken FROM used u;
  IF v_taken <> p_points THEN
    RAISE EXCEPTION 'consumed % of % points', v_taken, p_points;
  END IF;
  PERFORM ledger_posting_booked(ARRAY[p_transfer]);
  RETURN QUERY SELECT 'BOOKED', v_created, NULL::text, NULL::text, NULL::jsonb;
END $fn$
"""

BOOK_REDEEM_V1 = """
CREATE FUNCTION ledger_book_redeem(
  p_client text, p_key text, p_hash text, p_result jsonb,
  p_transfer uuid, p_member uuid, p_redeemer uuid, p_wallet uuid, p_redemption_account uuid,
  p_points bigint, p_reference text)
RETURNS TABLE (status text, created_at timestamptz, key_operation text, key_hash text,
               key_result jsonb)
LANGUAGE plpgsql AS $fn$
DECLARE
  v_created timestamptz;
  v_available bigint;
  v_taken bigint;
BEGIN
  INSERT INTO idempotency_keys (client_id, key, operation, request_hash, result)
  VALUES (p_client, p_key, 'redeemPoints', p_hash, p_result) ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN
    RETURN QUERY SELECT 'KEY_TAKEN', NULL::timestamptz, k.operation, k.request_hash, k.result
      FROM idempotency_keys k WHERE k.client_id = p_client AND k.key = p_key;
    RETURN;
  END IF;
  PERFORM ledger_posting_begin();
  PERFORM 1 FROM members m WHERE m.id = p_member FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no such member' USING ERRCODE = 'no_data_found';
  END IF;
  SELECT COALESCE((SELECT sum(l.remaining) FROM lots l WHERE l.member_id = p_member
                     AND l.remaining > 0 AND l.available_at <= now() AND l.expires_at > now()), 0)
       - COALESCE((SELECT sum(h.points) FROM holds h WHERE h.member_id = p_member
                     AND h.status = 'ACTIVE' AND h.expires_at > now()), 0)
    INTO v_available;
  IF v_available < p_points THEN
    RAISE EXCEPTION '%', greatest(v_available, 0)
      USING ERRCODE = 'CL001';
  END IF;
  v_created := clock_timestamp();
  INSERT INTO transfers (id, code, debit_account_id, credit_account_id, points, member_id,
                         partner_id, client_id, reference, metadata_, occurred_at, created_at)
  VALUES (p_transfer, 'REDEEM', p_wallet, p_redemption_account, p_points, p_member,
          p_redeemer, p_client, p_reference, '{}', v_created, v_created);
  WITH candidates AS (
    SELECT l.id, l.issuer_partner_id, l.remaining,
           sum(l.remaining) OVER (ORDER BY l.expires_at, l.id) AS running
    FROM lots l
    WHERE l.member_id = p_member AND l.remaining > 0 AND l.expires_at > now()
      AND l.available_at <= now()
  ), take AS (
    SELECT c.id, c.issuer_partner_id, LEAST(c.remaining, p_points - (c.running - c.remaining)) AS pts
    FROM candidates c WHERE c.running - c.remaining < p_points
  ), spent AS (
    UPDATE lots SET remaining = lots.remaining - take.pts FROM take WHERE lots.id = take.id
    RETURNING lots.id
  ), used AS (
    INSERT INTO consumptions (id, transfer_id, lot_id, kind, issuer_partner_id,
                              redeemer_partner_id, points)
    SELECT uuid7(), p_transfer, take.id, 'REDEEM', take.issuer_partner_id, p_redeemer, take.pts
    FROM take JOIN spent ON spent.id = take.id
    RETURNING consumptions.points
  )
  SELECT COALESCE(sum(u.points), 0) INTO v_taken FROM used u;
  IF v_taken <> p_points THEN
    RAISE EXCEPTION 'consumed % of % points', v_taken, p_points;
  END IF;
  PERFORM ledger_posting_booked(ARRAY[p_transfer]);
  RETURN QUERY SELECT 'BOOKED', v_created, NULL::text, NULL::text, NULL::jsonb;
END $fn$
"""

REDEEM_V1_ARGS = "text, text, text, jsonb, uuid, uuid, uuid, uuid, uuid, bigint, text"
REDEEM_V2_ARGS = REDEEM_V1_ARGS + ", uuid"


def upgrade() -> None:
    op.execute(BOOK_EARN_V2)
    op.execute(f"DROP FUNCTION ledger_book_redeem({REDEEM_V1_ARGS})")
    op.execute(BOOK_REDEEM_V2)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION ledger_book_redeem({REDEEM_V2_ARGS})")
    op.execute(BOOK_REDEEM_V1)
    op.execute(BOOK_EARN_V1)
