"""The earn posting, one at a time, as one SQL function: key, lock, limits, transfers, lots,
debt repayments, hooks.

`BOOK_EARN` is the current definition of `ledger_book_earn` (migration 0015 installed a literal
copy of it; 0004 the first version, 0010 the second). It is the only one-at-a-time earn:
`earnPoints` (`earn_once`), the rows of a batch that repay a member's debt (`bulk`) and
bench/setup all book through it; the set-based batch path (`bulk`) books everything else and is
parity-tested against it. One statement is one round trip and, run outside an explicit
transaction, one atomic commit: the idempotency key and its result, the posting and its
subscribers' rows (obligations) are stored together or not at all.

1. claim the key with the final result (ids are made by the caller beforehand); a key
   already taken returns the stored row instead (`KEY_TAKEN`), after waiting for an
   in-flight holder to commit or roll back. With a NULL key the caller has claimed it
   already (a batch claims all its rows' keys in one statement) or there is none (bench);
2. `ledger_posting_begin()`, then lock the member `FOR NO KEY UPDATE` (`p_purchase`: by
   counting the purchase in `members.purchases`, which takes the same lock);
3. the campaign draws, in campaign id order (so two earns never wait on each other's budget
   rows in opposite orders): a draw with a period (or a limit) adds its points to the member's
   `campaign_member_usage` row and raises SQLSTATE `CL001` (DETAIL: the campaign id) past the
   limit; a budgeted draw takes its points from the budget slot of the member's hash
   (`abs(hashtext(member_id::text)) % slots`, slots numbered 0..n-1) when that slot covers them
   (one row, the common case), else locks all the campaign's slots in slot order and takes
   from the member's slot, then its siblings in order, and raises `CB001` (DETAIL: the
   campaign id) when the whole budget cannot cover the draw. A raise rolls the statement back:
   nothing is booked and the key is not claimed. No deadlock: a draw waits for a slot while
   holding another slot of its campaign only in slot order. The one-slot attempt runs in a
   subtransaction, rolled back when the slot falls short, because an UPDATE whose row changed
   while it waited keeps that row locked even when the row no longer qualifies (PostgreSQL's
   re-check): rolled back, that lock goes, and the draw locks all slots in order from none;
4. insert the EARN transfer and its lot (the points of the partner where the purchase
   happened), and one BONUS transfer and lot per other funder of the purchase's points (from
   the funder's issuance account, the lot's issuer the funder; `parent_id` the head: the EARN
   when it has points, else the first BONUS, which then carries the reference, the amount and
   the metadata);
5. repay the member's debts, oldest first, from the new lots (the earn's first, then the
   bonuses' in order): a DEBT_REPAYMENT transfer per debt and a consumption per lot taken;
6. `ledger_posting_booked(ids)`.

This is the one canonical copy in code. Migrations carry their own literal copies, so changing
this text needs a new migration installing it: tests/db/test_function_drift.py compares it with
the function in the migrated database.
"""

# The argument list is written as PostgreSQL prints it (`pg_get_function_arguments`), defaults
# included, so the drift test can compare it.
BOOK_EARN = """
CREATE FUNCTION ledger_book_earn(
  p_client text, p_key text, p_hash text, p_result jsonb,
  p_transfer uuid, p_lot uuid, p_member uuid, p_issuer uuid,
  p_issuance_account uuid, p_wallet uuid, p_debt_account uuid,
  p_points bigint, p_reference text, p_amount numeric, p_metadata jsonb,
  p_occurred_at timestamptz, p_available_at timestamptz, p_expires_at timestamptz,
  p_bonus_transfers uuid[] DEFAULT '{}'::uuid[], p_bonus_lots uuid[] DEFAULT '{}'::uuid[],
  p_bonus_funders uuid[] DEFAULT '{}'::uuid[], p_bonus_accounts uuid[] DEFAULT '{}'::uuid[],
  p_bonus_points bigint[] DEFAULT '{}'::bigint[],
  p_draw_campaigns uuid[] DEFAULT '{}'::uuid[], p_draw_points bigint[] DEFAULT '{}'::bigint[],
  p_draw_budgeted boolean[] DEFAULT '{}'::boolean[],
  p_draw_limits bigint[] DEFAULT '{}'::bigint[], p_draw_periods date[] DEFAULT '{}'::date[],
  p_purchase boolean DEFAULT false)
RETURNS TABLE (status text, created_at timestamptz, key_operation text, key_hash text,
               key_result jsonb)
LANGUAGE plpgsql AS $fn$
DECLARE
  v_created timestamptz;
  v_total bigint := p_points;
  v_left bigint := 0;
  v_head uuid;
  v_ids uuid[] := '{}';
  v_lots uuid[] := '{}';
  v_issuers uuid[] := '{}';
  v_free bigint[] := '{}';
  v_debt record;
  v_repay bigint;
  v_need bigint;
  v_take bigint;
  v_repayment uuid;
  v_draw record;
  v_used bigint;
  v_slots int;
  v_slot int;
  v_slot_ids smallint[];
  v_slot_left bigint[];
  v_at int;
  v_k int;
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
  IF cardinality(p_bonus_points) > 0 THEN
    SELECT p_points + COALESCE(sum(x), 0) INTO v_total FROM unnest(p_bonus_points) x WHERE x > 0;
  END IF;
  IF v_total > 0 THEN
    PERFORM ledger_posting_begin();
  END IF;
  IF p_purchase THEN
    UPDATE members SET purchases = purchases + 1 WHERE id = p_member;
  ELSIF v_total > 0 THEN
    PERFORM 1 FROM members WHERE id = p_member FOR NO KEY UPDATE;
  END IF;
  IF (p_purchase OR v_total > 0) AND NOT FOUND THEN
    RAISE EXCEPTION 'no such member' USING ERRCODE = 'no_data_found';
  END IF;
  FOR v_draw IN
    SELECT d.campaign, d.points, d.budgeted, d.cap, d.period
    FROM unnest(p_draw_campaigns, p_draw_points, p_draw_budgeted, p_draw_limits, p_draw_periods)
      AS d(campaign, points, budgeted, cap, period)
    WHERE d.points > 0 AND v_total > 0 ORDER BY d.campaign
  LOOP
    IF v_draw.period IS NOT NULL OR v_draw.cap IS NOT NULL THEN
      INSERT INTO campaign_member_usage AS u (campaign_id, member_id, period_start, points)
      VALUES (v_draw.campaign, p_member, COALESCE(v_draw.period, DATE '0001-01-01'),
              v_draw.points)
      ON CONFLICT (campaign_id, member_id, period_start)
      DO UPDATE SET points = u.points + EXCLUDED.points
      RETURNING u.points INTO v_used;
      IF v_used > v_draw.cap THEN
        RAISE EXCEPTION 'campaign % member limit reached', v_draw.campaign
          USING ERRCODE = 'CL001', DETAIL = v_draw.campaign::text;
      END IF;
    END IF;
    IF v_draw.budgeted THEN
      SELECT count(*) INTO v_slots FROM campaign_budget_slots s
        WHERE s.campaign_id = v_draw.campaign;
      IF v_slots = 0 THEN
        RAISE EXCEPTION 'campaign % budget exhausted', v_draw.campaign
          USING ERRCODE = 'CB001', DETAIL = v_draw.campaign::text;
      END IF;
      v_slot := (abs(hashtext(p_member::text)::bigint) % v_slots)::int;
      BEGIN
        UPDATE campaign_budget_slots s SET remaining = s.remaining - v_draw.points
          WHERE s.campaign_id = v_draw.campaign AND s.slot = v_slot
            AND s.remaining >= v_draw.points;
        IF NOT FOUND THEN
          RAISE EXCEPTION USING ERRCODE = 'CB000';
        END IF;
      EXCEPTION WHEN SQLSTATE 'CB000' THEN
        SELECT array_agg(x.slot ORDER BY x.slot), array_agg(x.remaining ORDER BY x.slot)
          INTO v_slot_ids, v_slot_left
          FROM (SELECT s.slot, s.remaining FROM campaign_budget_slots s
                WHERE s.campaign_id = v_draw.campaign ORDER BY s.slot FOR UPDATE) x;
        IF (SELECT sum(x) FROM unnest(v_slot_left) x) < v_draw.points THEN
          RAISE EXCEPTION 'campaign % budget exhausted', v_draw.campaign
            USING ERRCODE = 'CB001', DETAIL = v_draw.campaign::text;
        END IF;
        v_at := COALESCE(array_position(v_slot_ids, v_slot::smallint), 1);
        v_need := v_draw.points;
        FOR v_k IN 0 .. cardinality(v_slot_ids) - 1 LOOP
          EXIT WHEN v_need = 0;
          v_slot := (v_at - 1 + v_k) % cardinality(v_slot_ids) + 1;
          v_take := least(v_need, v_slot_left[v_slot]);
          CONTINUE WHEN v_take = 0;
          UPDATE campaign_budget_slots s SET remaining = s.remaining - v_take
            WHERE s.campaign_id = v_draw.campaign AND s.slot = v_slot_ids[v_slot];
          v_need := v_need - v_take;
        END LOOP;
      END;
    END IF;
  END LOOP;
  IF v_total > 0 THEN
    v_created := clock_timestamp();
    IF p_points > 0 THEN
      v_head := p_transfer;
      INSERT INTO transfers (id, code, debit_account_id, credit_account_id, points, member_id,
                             partner_id, client_id, reference, amount, metadata_, occurred_at,
                             created_at)
      VALUES (p_transfer, 'EARN', p_issuance_account, p_wallet, p_points, p_member, p_issuer,
              p_client, p_reference, p_amount, p_metadata, p_occurred_at, v_created);
      INSERT INTO lots (id, member_id, issuer_partner_id, transfer_id, points, remaining,
                        available_at, expires_at)
      VALUES (p_lot, p_member, p_issuer, p_transfer, p_points, p_points, p_available_at,
              p_expires_at);
      v_ids := ARRAY[p_transfer];
      v_lots := ARRAY[p_lot];
      v_issuers := ARRAY[p_issuer];
      v_free := ARRAY[p_points];
    END IF;
    IF cardinality(p_bonus_transfers) > 0 THEN
      SELECT COALESCE(v_head, (array_agg(b.t ORDER BY b.n))[1]),
             v_ids || array_agg(b.t ORDER BY b.n), v_lots || array_agg(b.lot ORDER BY b.n),
             v_issuers || array_agg(b.funder ORDER BY b.n),
             v_free || array_agg(b.pts ORDER BY b.n)
        INTO v_head, v_ids, v_lots, v_issuers, v_free
        FROM unnest(p_bonus_transfers, p_bonus_lots, p_bonus_funders, p_bonus_points)
          WITH ORDINALITY AS b(t, lot, funder, pts, n)
        WHERE b.pts > 0;
      INSERT INTO transfers (id, code, debit_account_id, credit_account_id, points, member_id,
                             partner_id, client_id, reference, amount, metadata_, occurred_at,
                             created_at, parent_id)
      SELECT b.t, 'BONUS', b.account, p_wallet, b.pts, p_member, b.funder, p_client,
             CASE WHEN b.t = v_head THEN p_reference END,
             CASE WHEN b.t = v_head THEN p_amount END,
             CASE WHEN b.t = v_head THEN p_metadata ELSE '{}'::jsonb END,
             p_occurred_at, v_created, NULLIF(v_head, b.t)
      FROM unnest(p_bonus_transfers, p_bonus_accounts, p_bonus_funders, p_bonus_points)
        WITH ORDINALITY AS b(t, account, funder, pts, n)
      WHERE b.pts > 0 ORDER BY b.n;
      INSERT INTO lots (id, member_id, issuer_partner_id, transfer_id, points, remaining,
                        available_at, expires_at)
      SELECT b.lot, p_member, b.funder, b.t, b.pts, b.pts, p_available_at, p_expires_at
      FROM unnest(p_bonus_transfers, p_bonus_lots, p_bonus_funders, p_bonus_points)
        AS b(t, lot, funder, pts)
      WHERE b.pts > 0;
    END IF;
    v_left := v_total;
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
      v_need := v_repay;
      FOR v_k IN 1 .. cardinality(v_lots) LOOP
        EXIT WHEN v_need = 0;
        v_take := least(v_need, v_free[v_k]);
        CONTINUE WHEN v_take = 0;
        UPDATE lots SET remaining = remaining - v_take WHERE id = v_lots[v_k];
        INSERT INTO consumptions (id, transfer_id, lot_id, kind, issuer_partner_id,
                                  redeemer_partner_id, points)
        VALUES (uuid7(), v_repayment, v_lots[v_k], 'DEBT_REPAYMENT', v_issuers[v_k],
                v_debt.creditor_partner_id, v_take);
        v_free[v_k] := v_free[v_k] - v_take;
        v_need := v_need - v_take;
      END LOOP;
      UPDATE debts SET remaining = remaining - v_repay WHERE id = v_debt.id;
      v_ids := v_ids || v_repayment;
    END LOOP;
    PERFORM ledger_posting_booked(v_ids);
  END IF;
  RETURN QUERY SELECT 'BOOKED', v_created, NULL::text, NULL::text, NULL::jsonb;
END $fn$
"""
