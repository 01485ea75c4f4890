"""funded bonus points: the operator as a party, BONUS transfers linked to their earn, budgets and limits enforced in the booking

Revision ID: 0015
Revises: 0014

- The coalition operator gets a `partners` row with the fixed id of the settlement operator
  party (the zero UUID), slug `_operator` (no partner can take it: slugs have no `_`), not
  accepting redemptions, and its issuance, redemption and breakage accounts, so lots,
  consumptions, debts and transfers of points the operator funds keep every foreign key. The
  partner-facing code never shows the row (partners.service).
- `transfers.parent_id`: the BONUS transfers of a purchase point at its head transfer (the
  EARN, or the first BONUS when the EARN has no points); a partial index serves the lookup.
- `members.purchases`: purchases counted by the earn (`p_purchase`), what campaign rules see.
- `ledger_book_earn` gains trailing arguments with defaults (the bonus transfers, the campaign
  draws, `p_purchase`): the old function is dropped and the new one created, so calls with the
  18 arguments of 0010 book exactly as before. A draw past a member limit raises SQLSTATE
  CL001, one its campaign's budget cannot cover CB001 (DETAIL: the campaign id).
- `settlement_book_obligations`: a BONUS under ISSUANCE makes its funder owe the operator its
  issue price (not when the funder is the operator); under REDEMPTION it books nothing.

Self-contained: literal copies of the functions as this migration installs them, and as 0010
and 0011 did (for the downgrade). The budget and usage tables are 0013's.
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

OPERATOR = "00000000-0000-0000-0000-000000000000"
# ledger.accounts.account_id(code, OPERATOR) for the partner account codes (uuid5 of the
# ledger's namespace), as literals.
OPERATOR_ACCOUNTS = (
    ("a809c0f0-f7c9-5a3c-a644-f63aaeacfb69", "PARTNER_ISSUANCE"),
    ("7562e26b-71e7-5ea5-a6ca-a9f9c64088a1", "PARTNER_REDEMPTION"),
    ("924f3578-4ca9-585a-b992-d9fe361953d6", "PARTNER_BREAKAGE"),
)
EARN_V2_ARGS = (
    "text, text, text, jsonb, uuid, uuid, uuid, uuid, uuid, uuid, uuid, bigint, text, numeric,"
    " jsonb, timestamptz, timestamptz, timestamptz"
)
EARN_V3_ARGS = (
    EARN_V2_ARGS + ", uuid[], uuid[], uuid[], uuid[], bigint[], uuid[], bigint[], boolean[],"
    " bigint[], date[], boolean"
)

BOOK_EARN_V3 = """
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

BOOK_OBLIGATIONS_V4 = """
        CREATE OR REPLACE FUNCTION settlement_book_obligations(p_ids uuid[]) RETURNS void
        LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
        BEGIN
          IF 
    NOT EXISTS (
      SELECT 1 FROM transfers t CROSS JOIN LATERAL (SELECT funding_model, point_value, clearing_fee, 10::numeric ^ currency_exponent AS scale FROM settlement_terms WHERE effective_from <= t.created_at ORDER BY effective_from DESC, id DESC LIMIT 1) terms
      WHERE t.id = ANY(p_ids)
        AND (t.code NOT IN ('EARN', 'BONUS') OR terms.funding_model <> 'REDEMPTION'))
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
        AND (b.code = 'EARN' OR (b.code = 'BONUS' AND b.partner_id <> '00000000-0000-0000-0000-000000000000'::uuid)
             OR (b.code = 'ADJUSTMENT' AND b.metadata_ ? 'funded_by'))
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
        AND (b.code = 'EARN' OR (b.code = 'BONUS' AND b.partner_id <> '00000000-0000-0000-0000-000000000000'::uuid)
             OR (b.code = 'ADJUSTMENT' AND b.metadata_ ? 'funded_by'))
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


def upgrade() -> None:
    op.execute(
        "INSERT INTO partners (id, slug, name, accepts_redemption, pending_days,"
        f" points_validity_days) VALUES ('{OPERATOR}', '_operator', 'Coalition operator',"
        " false, 0, 3650) ON CONFLICT (id) DO NOTHING"
    )
    values = ", ".join(f"('{id_}', '{code}', '{OPERATOR}')" for id_, code in OPERATOR_ACCOUNTS)
    op.execute(
        f"INSERT INTO accounts (id, code, owner_id) VALUES {values} ON CONFLICT DO NOTHING"
    )
    op.execute("ALTER TABLE transfers ADD COLUMN parent_id uuid")
    op.execute(
        "ALTER TABLE transfers ADD CONSTRAINT transfers_parent_id_fkey"
        " FOREIGN KEY (parent_id) REFERENCES transfers (id) NOT VALID"
    )
    op.execute("ALTER TABLE transfers VALIDATE CONSTRAINT transfers_parent_id_fkey")
    op.execute(
        "CREATE INDEX ix_transfers_parent ON transfers (parent_id) WHERE parent_id IS NOT NULL"
    )
    op.execute("ALTER TABLE members ADD COLUMN purchases integer NOT NULL DEFAULT 0")
    op.execute(f"DROP FUNCTION ledger_book_earn({EARN_V2_ARGS})")
    op.execute(BOOK_EARN_V3)
    op.execute(BOOK_OBLIGATIONS_V4)


def downgrade() -> None:
    op.execute(BOOK_OBLIGATIONS_V3)
    op.execute(f"DROP FUNCTION ledger_book_earn({EARN_V3_ARGS})")
    op.execute(BOOK_EARN_V2)
    op.execute("ALTER TABLE members DROP COLUMN purchases")
    op.execute("DROP INDEX ix_transfers_parent")
    op.execute("ALTER TABLE transfers DROP COLUMN parent_id")
    ids = ", ".join(f"'{id_}'" for id_, _ in OPERATOR_ACCOUNTS)
    op.execute(f"DELETE FROM accounts WHERE id IN ({ids})")
    op.execute(f"DELETE FROM partners WHERE id = '{OPERATOR}'")
