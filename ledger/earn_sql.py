"""The earn posting, one at a time, as one SQL function: key, lock, transfer, lot, debt
repayments, hooks.

`BOOK_EARN` is the current definition of `ledger_book_earn` (migration 0010 installed a literal
copy of it; 0004 the first version). It is the only one-at-a-time earn: `earnPoints`
(`earn_once`), the rows of a batch that repay a member's debt (`bulk`) and bench/setup all book
through it; the set-based batch path (`bulk`) books everything else and is parity-tested
against it. One statement is one round trip and, run outside an explicit transaction, one
atomic commit: the idempotency key and its result, the posting and its subscribers' rows
(obligations) are stored together or not at all.

1. claim the key with the final result (ids are made by the caller beforehand); a key
   already taken returns the stored row instead (`KEY_TAKEN`), after waiting for an
   in-flight holder to commit or roll back. With a NULL key the caller has claimed it
   already (a batch claims all its rows' keys in one statement) or there is none (bench);
2. `ledger_posting_begin()`, then lock the member `FOR NO KEY UPDATE`;
3. insert the EARN transfer and its lot;
4. repay the member's debts, oldest first, from the new lot (a DEBT_REPAYMENT transfer and
   a consumption per debt);
5. `ledger_posting_booked(ids)`.

This is the one canonical copy in code. Migrations carry their own literal copies, so changing
this text needs a new migration installing it: tests/db/test_function_drift.py compares it with
the function in the migrated database.
"""

BOOK_EARN = """
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
