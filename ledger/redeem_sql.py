"""The redemption as one SQL function: key, lock, balance check, transfer, lots, hooks.

`BOOK_REDEEM` is the current definition of `ledger_book_redeem` (migration 0010 installed a
literal copy, 0005 the first version; tests/db/test_function_drift.py compares the code with
the database); like `ledger_book_earn` (see `earn_sql`) it is one round trip and one atomic
commit. It is the only redemption: `redeemPoints` (`redeem_once`) and a hold's capture
(`postings.capture`, with `p_hold`) both book through it.

1. claim the key with the final result; a key already taken returns the stored row. With a
   NULL key the caller has claimed its own key (`captureHold` stores it under its operation);
2. `ledger_posting_begin()`, then lock the member `FOR NO KEY UPDATE`;
3. available points (unexpired, past their pending period) minus active holds (but
   `p_hold`, the hold being captured: its points are the ones spent) must cover the
   redemption, else SQLSTATE `CL001` with the available points as the message (nothing is
   kept, not even the key);
4. insert the REDEEM transfer (metadata `{"hold_id": …}` for a capture), then take the points from the lots earliest-expiry first, one
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
  SELECT {spendable("p_member", " AND h.id IS DISTINCT FROM p_hold")} INTO v_available;
  IF v_available < p_points THEN
    RAISE EXCEPTION '%', greatest(v_available, 0)
      USING ERRCODE = '{INSUFFICIENT_POINTS_SQLSTATE}';
  END IF;
  v_created := clock_timestamp();
  INSERT INTO transfers (id, code, debit_account_id, credit_account_id, points, member_id,
                         partner_id, client_id, reference, metadata_, occurred_at, created_at)
  VALUES (p_transfer, 'REDEEM', p_wallet, p_redemption_account, p_points, p_member,
          p_redeemer, p_client, p_reference,
          CASE WHEN p_hold IS NULL THEN '{{}}'::jsonb
               ELSE jsonb_build_object('hold_id', p_hold::text) END,
          v_created, v_created);
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
