"""Obligations booked in the same transaction as the transfers that cause them.

Every posting calls the ledger's SQL hooks (`ledger.events`): `ledger_posting_begin()` before
it writes and `ledger_posting_booked(ids)` after. Settlement subscribes to both in migration
0004: the first takes the period lock shared, the second runs `settlement_book_obligations`
(the SQL in `settlement.booking_sql`). A close takes the lock exclusively, so it waits for
postings in flight and no posting straddles a cutoff. Postings never update the period row:
they only read which period is OPEN.

The rules (one INSERT ... SELECT for all the transfers of a posting, no loop per row):

- Redemption-funded: for each consumption REDEEM, CLAWBACK or DEBT_REPAYMENT with
  issuer ≠ redeemer, the issuer owes the redeemer points × point value (kinds REDEMPTION,
  CLAWBACK, DEBT_REPAYMENT); for REDEEM also the redeemer owes the operator points × clearing
  fee (CLEARING_FEE) when the fee is not zero.
- Issuance-funded: an EARN makes the issuer owe the operator points × its issue price (card
  in force at the earn's occurred_at, kind ISSUANCE); a REDEEM makes the operator owe the
  redeemer points × its redeem price (card in force at booking, kind REDEMPTION), also when
  the points are its own. CLAWBACK and DEBT_REPAYMENT book nothing: the operator keeps them,
  as it keeps breakage.
- A REVERSAL books the opposite of each REDEMPTION, CLEARING_FEE or ISSUANCE obligation of the
  original transfer (kind + '_REVERSAL') at the original unit price, for the part reversed.
- A reconciliation ADJUSTMENT (metadata reconciliation_break_id) books an ADJUSTMENT
  obligation at the point value: the side whose account is debited pays.
- Breakage books no money.

Rounding: amount = round_half_even(points × unit price × 10^exponent), once per obligation.
A reversal's amount is the difference of cumulative rounded amounts
(round(reversed so far incl. this × price) − round(reversed before × price)), so partial
reversals that add up to the whole return exactly the original amount.
Terms (funding model, point value, fee) are those in force at the transfer's created_at.

Why SQL hooks rather than Python callbacks: the planner re-planned the booking statement on
every call (about 2 ms, most of an earn's database time); as a PL/pgSQL function its plan is
cached, and postings written as one SQL function (the single earn) can call the hook without
a round trip. Since migration 0006 the function first checks `NOTHING_TO_BOOK` and
returns at once for earns under the REDEMPTION model (most postings), which book nothing.
"""

PERIOD_LOCK = 7243002
"""Advisory lock key: shared by postings, exclusive for a close."""
