"""The obligation-booking SQL: the current definition of `settlement_book_obligations`.

`BOOK_OBLIGATIONS_FUNCTION` is the function the ledger's posting hook (`ledger_posting_booked`)
calls. Migrations 0004, 0006, 0011 and 0015 installed literal copies of earlier and current
versions (they import nothing from here, so an old migration installs the same thing forever).
This is the one canonical copy in code: changing the rules means changing it here *and* adding a
migration that installs the new text; tests/db/test_function_drift.py compares it with the
migrated database.

Funded bonus points (0015): a BONUS transfer (points of a purchase paid by another funder than
the partner where it happened; `ledger.earn_sql`) is an issuance by its funder, `partner_id`:
under ISSUANCE its funder owes the operator their issue price, as for an EARN, except when the
funder is the operator itself (`OPERATOR_PARTY`: nothing to owe oneself); under REDEMPTION it
owes nothing at booking, and its lot's consumptions settle as any other issuer's.
"""

from core.caller import OPERATOR_PARTY
from ledger.accounts import OPERATOR_ADJUSTMENT_ACCOUNT

TERMS_AT = (
    "SELECT funding_model, point_value, clearing_fee, 10::numeric ^ currency_exponent AS scale"
    " FROM settlement_terms WHERE effective_from <= {at}"
    " ORDER BY effective_from DESC, id DESC LIMIT 1"
)

# p_ids: the transfers one posting booked.
BOOK_OBLIGATIONS = f"""
    WITH booked AS (
      SELECT t.id, t.code, t.partner_id, t.points, t.reversal_of_id, t.occurred_at,
             t.created_at, t.debit_account_id, t.metadata_, terms.*
      FROM transfers t CROSS JOIN LATERAL ({TERMS_AT.format(at="t.created_at")}) terms
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
      SELECT transfer_id, issuer, redeemer, '{OPERATOR_PARTY}'::uuid, 'CLEARING_FEE', points, clearing_fee, 0
      FROM spent WHERE kind = 'REDEEM' AND clearing_fee > 0
      UNION ALL
      SELECT b.id, b.partner_id, b.partner_id, '{OPERATOR_PARTY}'::uuid, 'ISSUANCE', b.points,
             card.issue_price, 0
      FROM booked b CROSS JOIN LATERAL (
        SELECT issue_price FROM rate_cards WHERE partner_id = b.partner_id
          AND effective_from <= COALESCE(b.occurred_at, b.created_at)
          ORDER BY effective_from DESC LIMIT 1) card
      WHERE b.funding_model = 'ISSUANCE'
        AND (b.code = 'EARN' OR (b.code = 'BONUS' AND b.partner_id <> '{OPERATOR_PARTY}'::uuid)
             OR (b.code = 'ADJUSTMENT' AND b.metadata_ ? 'funded_by'))
      UNION ALL
      SELECT b.id, NULL, '{OPERATOR_PARTY}'::uuid, b.partner_id, 'REDEMPTION', b.points, card.redeem_price, 0
      FROM booked b CROSS JOIN LATERAL (
        SELECT redeem_price FROM rate_cards WHERE partner_id = b.partner_id
          AND effective_from <= b.created_at ORDER BY effective_from DESC LIMIT 1) card
      WHERE b.funding_model = 'ISSUANCE' AND b.code = 'REDEEM'
      UNION ALL
      SELECT b.id, b.partner_id,
             CASE WHEN b.debit_account_id = '{OPERATOR_ADJUSTMENT_ACCOUNT}'::uuid THEN '{OPERATOR_PARTY}'::uuid ELSE b.partner_id END,
             CASE WHEN b.debit_account_id = '{OPERATOR_ADJUSTMENT_ACCOUNT}'::uuid THEN b.partner_id ELSE '{OPERATOR_PARTY}'::uuid END,
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
    """

# True when the posting's transfers can book nothing: every one is an EARN or a BONUS while the
# REDEMPTION model is in force (an earn owes something only under ISSUANCE). Most postings
# are such earns, and running BOOK_OBLIGATIONS for them cost ~0.5 ms of CPU for no row.
NOTHING_TO_BOOK = f"""
    NOT EXISTS (
      SELECT 1 FROM transfers t CROSS JOIN LATERAL ({TERMS_AT.format(at="t.created_at")}) terms
      WHERE t.id = ANY(p_ids)
        AND (t.code NOT IN ('EARN', 'BONUS') OR terms.funding_model <> 'REDEMPTION'))
    """


# Past this many transfers (a bulk import) the statement is planned for the actual array;
# below it the cached generic plan saves the ~2 ms of planning a single posting would pay.
BULK_POSTING = 100


def _dollar(sql: str) -> str:
    assert "$sql$" not in sql
    return f"$sql${sql}$sql$"


# Returns at once when NOTHING_TO_BOOK holds (since migration 0006); plans the statement for
# the actual array past BULK_POSTING transfers, else runs it with the cached generic plan.
BOOK_OBLIGATIONS_FUNCTION = f"""
        CREATE OR REPLACE FUNCTION settlement_book_obligations(p_ids uuid[]) RETURNS void
        LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
        BEGIN
          IF {NOTHING_TO_BOOK} THEN RETURN; END IF;
          IF cardinality(p_ids) > {BULK_POSTING} THEN
            EXECUTE {_dollar(BOOK_OBLIGATIONS.replace("p_ids", "$1"))} USING p_ids;
          ELSE
            {BOOK_OBLIGATIONS};
          END IF;
        END $fn$
        """
