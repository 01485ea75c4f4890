"""A party's settlement statement for a period as a PDF a finance team files.

Rendered from the very StatementRecord the CSV and JSON use (settlement.statements.statement,
with its access rule), plus a heading with names and dates: the partner's, its
counterparties' (only those on its own lines and instructions) and the period's. Money is
formatted from integer minor units through Decimal (statements.major_units), never floats.

The font is DejaVu Sans, shipped in settlement/fonts with its licence and embedded as a subset
(fpdf2), so Cyrillic names print on any machine, with no system font needed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import OPERATOR_PARTY, Caller
from partners.service import get_partners
from settlement.periods import require_period
from settlement.records import PeriodRecord, StatementRecord
from settlement.statements import major_units, statement

FONTS = Path(__file__).resolve().parent / "fonts"
FONT = "DejaVuSans"
COALITION_NAME = "Coalition"
OPERATOR_NAME = "Operator (coalition)"
MEDIA_TYPE = "application/pdf"

_POINTS = (
    ("points_issued", "Points issued"),
    ("earn_reversal_points", "Earn reversals (points)"),
    ("redemption_reversal_points", "Redemption reversals (points)"),
    ("own_points_redeemed_here", "Own points redeemed here"),
    ("points_redeemed_elsewhere", "Points redeemed elsewhere"),
    ("others_points_redeemed_here", "Others' points redeemed here"),
    ("breakage_points", "Breakage (points expired)"),
)
_MONEY = (
    ("fees", "Fees"),
    ("gross_payable", "Gross payable"),
    ("gross_receivable", "Gross receivable"),
    ("net", "Net (+ to receive, − to pay)"),
)


@dataclass(frozen=True)
class StatementHeading:
    """What the record holds only as ids: names and the period's dates."""

    coalition: str
    party_name: str
    party_slug: str | None
    period: PeriodRecord
    names: dict[uuid.UUID, str]  # the party and its counterparties on this statement


async def load_heading(conn: AsyncConnection, record: StatementRecord) -> StatementHeading:
    """Names of the party and of the counterparties its own record already names, no others."""
    ids = (
        {record.party_id}
        | {i for line in record.lines for i in (line.debtor_id, line.creditor_id)}
        | {i for ins in record.instructions for i in (ins.payer_id, ins.payee_id)}
    )
    partners = await get_partners(conn, sorted(ids - {OPERATOR_PARTY}))
    names = {k: v.name for k, v in partners.items()}
    names[OPERATOR_PARTY] = OPERATOR_NAME
    own = partners.get(record.party_id)
    return StatementHeading(
        coalition=COALITION_NAME,
        party_name=names.get(record.party_id, str(record.party_id)),
        party_slug=own.slug if own else None,
        period=await require_period(conn, record.period_id),
        names=names,
    )


async def statement_pdf(
    conn: AsyncConnection, caller: Caller, period_id: uuid.UUID, partner_id: uuid.UUID
) -> tuple[StatementRecord, StatementHeading]:
    """The record and heading to render (render_pdf is CPU work: run it off the event loop)."""
    record = await statement(conn, caller, period_id, partner_id)
    return record, await load_heading(conn, record)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


class _Document(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.footer_text = footer_text
        self.add_font(FONT, "", str(FONTS / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(FONTS / "DejaVuSans-Bold.ttf"))
        self.set_auto_page_break(auto=True, margin=18)
        self.set_margins(15, 15, 15)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, "", 7)
        self.cell(0, 5, f"{self.footer_text} · page {self.page_no()}/{{nb}}", align="C")


def render_pdf(record: StatementRecord, heading: StatementHeading) -> bytes:
    """The statement as a PDF: heading, summary figures, gross lines, payment instructions.

    Line and instruction amounts are signed from the party's side, as in the CSV
    (+ receivable, − payable)."""
    exp, currency = record.currency_exponent, record.currency

    def money(minor: int) -> str:
        return f"{major_units(minor, exp)} {currency}"

    def name(party: uuid.UUID) -> str:
        return heading.names.get(party, str(party))

    period = heading.period
    pdf = _Document(f"{heading.party_name} · period {record.period_id}")
    pdf.set_title(f"Settlement statement: {heading.party_name}, period {record.period_id}")
    pdf.set_author(heading.coalition)
    pdf.set_creator("coalition settlement statement")
    pdf.set_lang("en")
    pdf.add_page()
    width = pdf.epw
    bold = FontFace(emphasis="BOLD")

    def para(w: float, h: float, text: str) -> None:
        pdf.multi_cell(w, h, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    pdf.set_font(FONT, "B", 15)
    para(width, 8, f"{heading.coalition} settlement statement")
    pdf.set_font(FONT, "B", 12)
    para(width, 7, heading.party_name)
    pdf.ln(2)
    pdf.set_font(FONT, "", 9)
    facts = [
        ("Coalition", heading.coalition),
        ("Partner", heading.party_name),
        ("Partner slug", heading.party_slug or ""),
        ("Partner id", str(record.party_id)),
        ("Period", str(record.period_id)),
        ("Period start", _when(period.starts_at)),
        ("Period end (cutoff)", _when(period.cutoff) or "open"),
        ("Status", record.period_status),
        ("Closed", _when(period.closed_at)),
        ("Settled", _when(period.settled_at)),
        ("Currency", f"{currency} (amounts in currency units, {exp} decimals)"),
    ]
    with pdf.table(
        col_widths=(42, 138), width=width, first_row_as_headings=False, borders_layout="NONE"
    ) as facts_table:
        for label, value in facts:
            if value:
                row = facts_table.row()
                row.cell(label, style=bold)
                row.cell(value)
    if record.period_status == "OPEN":
        pdf.ln(2)
        pdf.set_font(FONT, "B", 9)
        para(
            width,
            5,
            "Provisional: the period is open. Figures are computed from the obligations booked"
            " so far and will change until it is closed; it has no payment instructions yet.",
        )

    def section(title: str) -> None:
        pdf.ln(4)
        pdf.set_font(FONT, "B", 11)
        para(width, 7, title)
        pdf.set_font(FONT, "", 9)

    section("Summary")
    with pdf.table(
        col_widths=(110, 70), width=width, text_align=("LEFT", "RIGHT"), headings_style=bold
    ) as summary:
        summary.row(("Figure", "Value"))
        for field, label in _POINTS:
            summary.row((label, f"{getattr(record, field)} points"))
        for field, label in _MONEY:
            summary.row((label, money(getattr(record, field))))

    section("Gross lines (obligations with each counterparty)")
    if record.lines:
        with pdf.table(
            col_widths=(62, 40, 22, 22, 34),
            width=width,
            text_align=("LEFT", "LEFT", "LEFT", "RIGHT", "RIGHT"),
            headings_style=bold,
        ) as lines:
            lines.row(("Counterparty", "Kind", "Side", "Points", "Amount"))
            for line in record.lines:
                receivable = line.creditor_id == record.party_id
                other = line.debtor_id if receivable else line.creditor_id
                signed = line.amount if receivable else -line.amount
                lines.row(
                    (
                        name(other),
                        line.kind,
                        "receivable" if receivable else "payable",
                        str(line.points),
                        money(signed),
                    )
                )
    else:
        para(width, 5, "No obligations in this period.")

    section("Payment instructions")
    if record.instructions:
        with pdf.table(
            col_widths=(44, 16, 34, 86),
            width=width,
            text_align=("LEFT", "LEFT", "RIGHT", "LEFT"),
            headings_style=bold,
        ) as instructions:
            instructions.row(("Counterparty", "Action", "Amount", "Status and instruction id"))
            for ins in record.instructions:
                receives = ins.payee_id == record.party_id
                other = ins.payer_id if receives else ins.payee_id
                signed = ins.amount if receives else -ins.amount
                status = (
                    f"PAID {_when(ins.paid_at)}, bank reference {ins.bank_reference}"
                    if ins.paid_at
                    else "UNPAID"
                )
                instructions.row(
                    (
                        name(other),
                        "receive" if receives else "pay",
                        money(signed),
                        f"{status}\n{ins.id}",
                    )
                )
    else:
        para(
            width,
            5,
            "None until the period is closed."
            if record.period_status == "OPEN"
            else "Nothing to pay or receive: the net position is zero.",
        )
    return bytes(pdf.output())
