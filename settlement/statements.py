"""Per party per period statements, and their CSV and JSON renderings (PDF: statement_pdf).

A closed period's statement is the frozen row computed at close; an OPEN period's is
computed live (provisional, no instructions). A party with no activity gets zeros.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import asdict
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Caller
from core.errors import DomainError, ErrorCode
from partners.settings import load_settings
from settlement import queries
from settlement.access import visible_party
from settlement.periods import require_period
from settlement.records import GrossLineRecord, StatementRecord
from settlement.views import party_instructions

_FIGURES = (
    "points_issued",
    "earn_reversal_points",
    "redemption_reversal_points",
    "own_points_redeemed_here",
    "points_redeemed_elsewhere",
    "others_points_redeemed_here",
    "breakage_points",
)
_MONEY = ("fees", "gross_payable", "gross_receivable", "net")


async def statement(
    conn: AsyncConnection, caller: Caller, period_id: uuid.UUID, partner_id: uuid.UUID
) -> StatementRecord:
    """The statement of `partner_id` (or OPERATOR_PARTY, for the operator only)."""
    party = visible_party(caller)
    if party is not None and party != partner_id:
        # Another partner's statement is reported exactly like a missing partner.
        raise DomainError(ErrorCode.PARTNER_NOT_FOUND, "no such partner", ["partnerId"])
    period = await require_period(conn, period_id)
    frozen = period.status != "OPEN"
    params = {
        "period": period_id,
        "party": partner_id,
        "starts_at": period.starts_at,
        "ends_at": period.cutoff,
    }
    if frozen:
        sql = (
            f"SELECT {queries.STATEMENT_COLUMNS} FROM settlement_statements"
            " WHERE period_id = :period AND party_id = :party"
        )
    else:
        sql = (
            f"SELECT * FROM ({queries.statement_sql(queries.LIVE_LINES)}) s WHERE party_id = :party"
        )
        params["ends_at"] = None
    sql = sql.replace(":ends_at", "COALESCE(CAST(:ends_at AS timestamptz), 'infinity')")
    row = (await conn.execute(text(sql), params)).one_or_none()
    figures: dict[str, Any] = dict(row._mapping) if row else dict.fromkeys(_FIGURES + _MONEY, 0)
    figures.pop("party_id", None)
    lines = await conn.execute(
        text(
            f"SELECT CAST(:period AS uuid) AS period_id, * FROM ({queries.lines_sql(frozen)}) l"
            " WHERE :party IN (debtor_id, creditor_id) ORDER BY debtor_id, creditor_id, kind"
        ),
        {"period": period_id, "party": partner_id},
    )
    settings = await load_settings(conn)
    return StatementRecord(
        period_id=period_id,
        party_id=partner_id,
        period_status=period.status,
        currency=settings.currency,
        currency_exponent=settings.currency_exponent,
        **{k: int(v) for k, v in figures.items()},
        lines=tuple(GrossLineRecord(**r._mapping) for r in lines),
        instructions=tuple(await party_instructions(conn, period_id, partner_id)),
    )


def _major(minor: int, exponent: int) -> str:
    return str(Decimal(minor).scaleb(-exponent))


def major_units(minor: int, exponent: int) -> str:
    """Integer minor units as exact currency units ("-450.00"), through Decimal, never a float:
    the one money format of every statement rendering (CSV, JSON, PDF)."""
    return _major(minor, exponent)


CSV_HEADER = ("section", "name", "counterparty", "points", "amount_minor", "amount", "detail")


def render_csv(record: StatementRecord) -> str:
    """One table: `summary` rows, then the party's gross `line`s and `instruction`s.

    Line and instruction amounts are signed from the party's side (+ receivable, − payable).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    exp = record.currency_exponent
    writer.writerow(("summary", "period_id", "", "", "", "", str(record.period_id)))
    writer.writerow(("summary", "party_id", "", "", "", "", str(record.party_id)))
    writer.writerow(("summary", "period_status", "", "", "", "", record.period_status))
    writer.writerow(("summary", "currency", "", "", "", "", record.currency))
    for name in _FIGURES:
        writer.writerow(("summary", name, "", getattr(record, name), "", "", ""))
    for name in _MONEY:
        value = getattr(record, name)
        writer.writerow(("summary", name, "", "", value, _major(value, exp), ""))
    for line in record.lines:
        receivable = line.creditor_id == record.party_id
        other = line.debtor_id if receivable else line.creditor_id
        signed = line.amount if receivable else -line.amount
        writer.writerow(
            ("line", line.kind, str(other), line.points, signed, _major(signed, exp), "")
        )
    for ins in record.instructions:
        receives = ins.payee_id == record.party_id
        other = ins.payer_id if receives else ins.payee_id
        signed = ins.amount if receives else -ins.amount
        status = f"paid {ins.bank_reference}" if ins.paid_at else "unpaid"
        writer.writerow(
            ("instruction", str(ins.id), str(other), "", signed, _major(signed, exp), status)
        )
    return out.getvalue()


def statement_dict(record: StatementRecord) -> dict[str, Any]:
    data = asdict(record)
    exp = record.currency_exponent
    data["amounts"] = {name: _major(getattr(record, name), exp) for name in _MONEY}
    return data


def render_json(record: StatementRecord) -> str:
    """Money as integer minor units, plus `amounts` in currency units as decimal strings."""
    return orjson.dumps(
        statement_dict(record), default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    ).decode()
