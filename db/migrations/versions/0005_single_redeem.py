"""the single redemption as one function

Revision ID: 0005
Revises: 0004

Self-contained: a literal copy of what this migration has always installed (rendered from
`ledger.redeem_sql` as it stood, SQLSTATE CL001 included).
"""

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

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


def upgrade() -> None:
    op.execute(BOOK_REDEEM_V1)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS ledger_book_redeem")
