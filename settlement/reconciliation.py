"""Reconciliation: a partner's own record of a period, matched against the ledger.

Records are matched to the partner's transfers booked in the period by (reference, kind):
EARN compares points and the purchase amount; REDEEM compares points and value (points ×
point value); REVERSAL is matched by the reference of the reversed transfer (a reversal has
none of its own), summed over the period's reversals of it, and compares points (and value,
for reversed redemptions). A (reference, kind) repeated in the report is one DUPLICATE break,
and only its first record is matched. AMOUNT_MISMATCH is reported only when points agree.

Breaks are resolved by the operator: ACCEPT (with a note) or ADJUST (an adjustment transfer
and its ADJUSTMENT obligation in the open period). Adjustment points are signed: positive, the
operator owes the partner points × point value; negative, the partner owes the operator.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Caller, Scope
from core.errors import DomainError, ErrorCode
from ledger import postings
from ledger.accounts import OPERATOR_ADJUSTMENT_ACCOUNT, AccountCode, account_id
from partners.service import get_partner
from partners.settings import load_settings
from settlement.access import require_operator, visible_party
from settlement.periods import require_period
from settlement.records import BreakRecord, ReportLine, ReportRecord
from settlement.report_csv import MAX_RECORDS, check_line

_REPORT_COLUMNS = "id, period_id, partner_id, client_id, source, record_count, submitted_at"
_BREAK_COLUMNS = (
    "id, report_id, period_id, partner_id, kind, record_kind, reference, reported_points,"
    " ledger_points, reported_amount, ledger_amount, status, note, adjustment_points,"
    " adjustment_transfer_id, created_at, resolved_at, resolved_by"
)

_MATCH = text(
    f"""
    WITH mine AS (
      SELECT t.code, t.points, t.amount,
             CASE WHEN t.code = 'REVERSAL' THEN o.reference ELSE t.reference END AS reference,
             o.code AS original_code
      FROM transfers t LEFT JOIN transfers o ON o.id = t.reversal_of_id
      WHERE t.partner_id = :partner AND t.created_at >= :starts_at
        AND t.created_at < COALESCE(CAST(:ends_at AS timestamptz), 'infinity')
        AND t.code IN ('EARN', 'REDEEM', 'REVERSAL')
    ), ledger AS (
      SELECT reference, code AS kind, sum(points) AS points,
             CASE WHEN code = 'EARN' THEN sum(amount)
                  WHEN bool_and(code = 'REDEEM' OR original_code = 'REDEEM')
                  THEN sum(points) * :point_value END AS amount
      FROM mine WHERE reference IS NOT NULL GROUP BY reference, code
    ), reported AS (
      SELECT DISTINCT ON (reference, kind) reference, kind, points, amount,
             count(*) OVER (PARTITION BY reference, kind) AS copies
      FROM partner_report_records WHERE report_id = :report
      ORDER BY reference, kind, line_no
    )
    INSERT INTO reconciliation_breaks (id, report_id, period_id, partner_id, kind, record_kind,
      reference, reported_points, ledger_points, reported_amount, ledger_amount, status)
    SELECT uuid7(), :report, :period, :partner, b.kind, COALESCE(r.kind, l.kind),
           COALESCE(r.reference, l.reference), r.points, l.points, r.amount, l.amount, 'OPEN'
    FROM reported r FULL JOIN ledger l ON l.reference = r.reference AND l.kind = r.kind
    CROSS JOIN LATERAL (VALUES
      (CASE WHEN r.copies > 1 THEN 'DUPLICATE' END),
      (CASE WHEN l.reference IS NULL THEN 'MISSING_IN_LEDGER'
            WHEN r.reference IS NULL THEN 'MISSING_IN_REPORT'
            WHEN r.points <> l.points THEN 'POINTS_MISMATCH'
            WHEN r.amount <> l.amount THEN 'AMOUNT_MISMATCH' END)) b(kind)
    WHERE b.kind IS NOT NULL
    RETURNING {_BREAK_COLUMNS}
    """
)


async def submit_report(
    conn: AsyncConnection,
    caller: Caller,
    period_id: uuid.UUID,
    records: Sequence[ReportLine],
    *,
    partner_id: uuid.UUID | None = None,
    source: str = "API",
) -> ReportRecord:
    """Store a partner's report and its breaks. A partner reports for itself; the operator
    names the partner. Any invalid record rejects the whole report ("line N: reason")."""
    own = visible_party(caller, Scope.RECONCILIATION_WRITE)
    partner = own if own is not None else partner_id
    if partner is None or (own is not None and partner_id not in (None, own)):
        raise DomainError(ErrorCode.PARTNER_NOT_FOUND, "no such partner", ["partnerId"])
    if await get_partner(conn, partner) is None:
        raise DomainError(ErrorCode.PARTNER_NOT_FOUND, "no such partner", ["partnerId"])
    period = await require_period(conn, period_id)
    if len(records) > MAX_RECORDS:
        raise DomainError(
            ErrorCode.REPORT_INVALID, f"a report holds at most {MAX_RECORDS} records", ["records"]
        )
    for number, record in enumerate(records, start=1):
        check_line(number, record.reference, record.kind, record.points, record.amount)
    report = (
        await conn.execute(
            text(
                "INSERT INTO partner_reports (id, period_id, partner_id, client_id, source,"
                " record_count) VALUES (uuid7(), :period, :partner, :client, :source, :n)"
                f" RETURNING {_REPORT_COLUMNS}"
            ),
            {
                "period": period_id,
                "partner": partner,
                "client": caller.client_id,
                "source": source,
                "n": len(records),
            },
        )
    ).one()
    await conn.execute(
        text(
            "INSERT INTO partner_report_records (id, report_id, line_no, reference, kind,"
            " points, amount) SELECT uuid7(), :report, n, r, k, p, a FROM unnest("
            " CAST(:refs AS text[]), CAST(:kinds AS text[]), CAST(:points AS bigint[]),"
            " CAST(:amounts AS numeric[])) WITH ORDINALITY AS x(r, k, p, a, n)"
        ),
        {
            "report": report.id,
            "refs": [r.reference for r in records],
            "kinds": [r.kind for r in records],
            "points": [r.points for r in records],
            "amounts": [r.amount for r in records],
        },
    )
    settings = await load_settings(conn)
    rows = await conn.execute(
        _MATCH,
        {
            "report": report.id,
            "period": period_id,
            "partner": partner,
            "starts_at": period.starts_at,
            "ends_at": period.cutoff,
            "point_value": settings.point_value,
        },
    )
    breaks = sorted((BreakRecord(**r._mapping) for r in rows), key=lambda b: b.id)
    return ReportRecord(**report._mapping, breaks=tuple(breaks))


async def list_reports(
    conn: AsyncConnection,
    caller: Caller,
    *,
    period_id: uuid.UUID | None = None,
    after: uuid.UUID | None = None,
    limit: int = 100,
) -> list[ReportRecord]:
    """Reports in id order (a partner sees its own only); breaks via list_breaks."""
    party = visible_party(caller)
    rows = await conn.execute(
        text(
            f"SELECT {_REPORT_COLUMNS} FROM partner_reports"
            " WHERE (CAST(:party AS uuid) IS NULL OR partner_id = :party)"
            " AND (CAST(:period AS uuid) IS NULL OR period_id = :period)"
            " AND (CAST(:after AS uuid) IS NULL OR id > :after) ORDER BY id LIMIT :limit"
        ),
        {"party": party, "period": period_id, "after": after, "limit": limit},
    )
    return [ReportRecord(**r._mapping) for r in rows]


async def list_breaks(
    conn: AsyncConnection,
    caller: Caller,
    *,
    report_id: uuid.UUID | None = None,
    period_id: uuid.UUID | None = None,
    status: str | None = None,
    after: uuid.UUID | None = None,
    limit: int = 100,
) -> list[BreakRecord]:
    party = visible_party(caller)
    rows = await conn.execute(
        text(
            f"SELECT {_BREAK_COLUMNS} FROM reconciliation_breaks"
            " WHERE (CAST(:party AS uuid) IS NULL OR partner_id = :party)"
            " AND (CAST(:report AS uuid) IS NULL OR report_id = :report)"
            " AND (CAST(:period AS uuid) IS NULL OR period_id = :period)"
            " AND (CAST(:status AS text) IS NULL OR status = :status)"
            " AND (CAST(:after AS uuid) IS NULL OR id > :after) ORDER BY id LIMIT :limit"
        ),
        {
            "party": party,
            "report": report_id,
            "period": period_id,
            "status": status,
            "after": after,
            "limit": limit,
        },
    )
    return [BreakRecord(**r._mapping) for r in rows]


def default_adjustment(record_kind: str, reported: int | None, ledger: int | None) -> int:
    """Signed points the operator pays the partner when ADJUST gives none: a partner that
    redeemed more than the ledger holds is owed the difference; one that issued (or reversed)
    more owes it."""
    difference = (reported or 0) - (ledger or 0)
    return difference if record_kind == "REDEEM" else -difference


async def resolve_break(
    conn: AsyncConnection,
    caller: Caller,
    break_id: uuid.UUID,
    action: str,
    note: str | None,
    points: int | None = None,
) -> BreakRecord:
    """ACCEPT (a note is required) or ADJUST (book the signed `points`, default from the
    break, as an adjustment transfer and obligation in the OPEN period)."""
    require_operator(caller)
    if action not in ("ACCEPT", "ADJUST"):
        raise DomainError(ErrorCode.INVALID_INPUT, "action must be ACCEPT or ADJUST", ["action"])
    if note is not None and len(note) > 1000:
        raise DomainError(ErrorCode.INVALID_INPUT, "note is at most 1000 characters", ["note"])
    if action == "ACCEPT" and not (note and note.strip()):
        raise DomainError(ErrorCode.INVALID_INPUT, "accepting a break needs a note", ["note"])
    row = (
        await conn.execute(
            text(f"SELECT {_BREAK_COLUMNS} FROM reconciliation_breaks WHERE id = :b FOR UPDATE"),
            {"b": break_id},
        )
    ).one_or_none()
    if row is None:
        raise DomainError(ErrorCode.BREAK_NOT_FOUND, "no such break", ["breakId"])
    if row.status != "OPEN":
        raise DomainError(
            ErrorCode.BREAK_ALREADY_RESOLVED, f"this break is already {row.status}", ["breakId"]
        )
    transfer_id = None
    if action == "ADJUST":
        if points is None:
            points = default_adjustment(row.record_kind, row.reported_points, row.ledger_points)
        if points == 0 or abs(points) > 10**12:
            raise DomainError(
                ErrorCode.INVALID_AMOUNT, "adjustment points must be non-zero", ["points"]
            )
        transfer_id = await _book_adjustment(conn, caller, row.partner_id, break_id, points, note)
    updated = (
        await conn.execute(
            text(
                "UPDATE reconciliation_breaks SET status = :status, note = :note,"
                " adjustment_points = :points, adjustment_transfer_id = :t,"
                " resolved_at = clock_timestamp(), resolved_by = :by WHERE id = :b"
                f" RETURNING {_BREAK_COLUMNS}"
            ),
            {
                "status": "ACCEPTED" if action == "ACCEPT" else "ADJUSTED",
                "note": note,
                "points": points if action == "ADJUST" else None,
                "t": transfer_id,
                "by": caller.client_id,
                "b": break_id,
            },
        )
    ).one()
    return BreakRecord(**updated._mapping)


async def _book_adjustment(
    conn: AsyncConnection,
    caller: Caller,
    partner_id: uuid.UUID,
    break_id: uuid.UUID,
    points: int,
    note: str | None,
) -> uuid.UUID:
    # The debited side pays: the settlement hook books the ADJUSTMENT obligation from it.
    issuance = account_id(AccountCode.PARTNER_ISSUANCE, partner_id)
    operator_pays = points > 0
    return await postings.adjust(
        conn,
        debit=OPERATOR_ADJUSTMENT_ACCOUNT if operator_pays else issuance,
        credit=issuance if operator_pays else OPERATOR_ADJUSTMENT_ACCOUNT,
        points=abs(points),
        partner_id=partner_id,
        client_id=caller.client_id,
        reference=f"reconciliation-break:{break_id}",
        metadata={"reconciliation_break_id": str(break_id), "note": note or ""},
    )
