"""The two rules every spender of points shares, written once as SQL fragments.

- **Spendable balance**: the member's lots with points left, past their pending period and
  unexpired, minus the member's active, unexpired holds (`spendable`).
- **Consume oldest first**: take points from the member's unexpired lots earliest-expiry
  first (ties by lot id), as many lots as it takes, the last one partly (`take_oldest_first`).

Python postings (`ledger.postings`), the single redemption as a SQL function
(`ledger.redeem_sql`) and the balance reads (`ledger.queries`) all render these, each with its
own names for the member and the points (a bind parameter, a PL/pgSQL argument, a column).
The function's text is compared with the migrated database by tests/db/test_function_drift.py,
so changing a rule here without a migration fails the suite.
"""

from __future__ import annotations


def available_lots(member: str, lot: str = "l") -> str:
    """Condition on lots `lot` whose points `member` can spend now."""
    return (
        f"{lot}.member_id = {member} AND {lot}.remaining > 0"
        f" AND {lot}.available_at <= now() AND {lot}.expires_at > now()"
    )


def active_holds(member: str, hold: str = "h") -> str:
    """Condition on holds `hold` of `member` that still reserve points."""
    return f"{hold}.member_id = {member} AND {hold}.status = 'ACTIVE' AND {hold}.expires_at > now()"


def spendable(member: str, also_holds: str = "") -> str:
    """The spendable balance of `member` as one SQL expression (may be negative when holds
    outlive expired lots); `also_holds` narrows the holds counted (SQL starting with AND)."""
    return (
        f"COALESCE((SELECT sum(l.remaining) FROM lots l WHERE {available_lots(member)}), 0)"
        f" - COALESCE((SELECT sum(h.points) FROM holds h WHERE {active_holds(member)}"
        f"{also_holds}), 0)"
    )


def take_oldest_first(member: str, points: str, condition: str = "") -> str:
    """CTEs `candidates`, `take` (lot id, issuer, pts) and `spent` (the lots updated): take
    `points` from `member`'s unexpired lots, earliest expiry first. `condition` (SQL starting
    with AND, on lots `l`) narrows the lots, e.g. to those past their pending period. The caller
    writes one consumption per row of `take JOIN spent`."""
    return f"""candidates AS (
    SELECT l.id, l.issuer_partner_id, l.remaining,
           sum(l.remaining) OVER (ORDER BY l.expires_at, l.id) AS running
    FROM lots l
    WHERE l.member_id = {member} AND l.remaining > 0 AND l.expires_at > now(){condition}
  ), take AS (
    SELECT c.id, c.issuer_partner_id, LEAST(c.remaining, {points} - (c.running - c.remaining)) AS pts
    FROM candidates c WHERE c.running - c.remaining < {points}
  ), spent AS (
    UPDATE lots SET remaining = lots.remaining - take.pts FROM take WHERE lots.id = take.id
    RETURNING lots.id
  )"""
