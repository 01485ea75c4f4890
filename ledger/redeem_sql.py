"""A single redemption as one SQL function: key, lock, balance check, transfer, lots, hooks.

`BOOK_REDEEM` is the current definition of `ledger_book_redeem` (migration 0005 installed a
literal copy; tests/db/test_function_drift.py compares the two); like `ledger_book_earn` (see `earn_sql`) it is
one round trip and one atomic commit, with the rules of `postings.redeem`:

1. claim the key with the final result; a key already taken returns the stored row;
2. `ledger_posting_begin()`, then lock the member `FOR NO KEY UPDATE`;
3. available points (unexpired, past their pending period) minus active holds must cover the
   redemption, else SQLSTATE `CL001` with the available points as the message (nothing is
   kept, not even the key);
4. insert the REDEEM transfer, then take the points from the lots earliest-expiry first, one
   consumption per lot;
5. `ledger_posting_booked(ids)`.

The spendable balance (3) and the consumption (4) are `ledger.spending`'s, shared with the
Python postings.
"""

from ledger.spending import spendable, take_oldest_first

INSUFFICIENT_POINTS_SQLSTATE = "CL001"

BOOK_REDEEM = f"""
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
  SELECT {spendable("p_member")} INTO v_available;
  IF v_available < p_points THEN
    RAISE EXCEPTION '%', greatest(v_available, 0)
      USING ERRCODE = '{INSUFFICIENT_POINTS_SQLSTATE}';
  END IF;
  v_created := clock_timestamp();
  INSERT INTO transfers (id, code, debit_account_id, credit_account_id, points, member_id,
                         partner_id, client_id, reference, metadata_, occurred_at, created_at)
  VALUES (p_transfer, 'REDEEM', p_wallet, p_redemption_account, p_points, p_member,
          p_redeemer, p_client, p_reference, '{{}}', v_created, v_created);
  WITH {take_oldest_first("p_member", "p_points", " AND l.available_at <= now()")}, used AS (
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
