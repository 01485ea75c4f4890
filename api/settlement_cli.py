"""`coalition settlement ...`: the operator's settlement desk on the command line."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncConnection

from api.commands import run_in_transaction
from core import audit
from core.caller import OPERATOR_PARTY, Caller
from partners.service import require_partner_by_slug

app = typer.Typer(help="Settlement periods, statements, reconciliation.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)
OPERATOR = Caller(client_id="cli", partner_id=None, scopes=frozenset({"operator"}))
T = TypeVar("T")


def _run(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    return run_in_transaction(work)


def _id(raw: str, type_name: str) -> uuid.UUID:
    """An id as the CLI prints it (a UUID) or as GraphQL gives it (a global id)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        from schema.relay import from_global_id

        return from_global_id(raw, type_name)[1]


def _period_id(raw: str) -> uuid.UUID:
    return _id(raw, "SettlementPeriod")


async def _partner_id(conn: AsyncConnection, slug: str) -> uuid.UUID:
    if slug == "operator":
        return OPERATOR_PARTY
    return (await require_partner_by_slug(conn, slug, ["partner"])).id


@app.command("periods")
def list_periods() -> None:
    """List settlement periods."""
    from settlement.periods import list_periods as fetch

    rows = _run(lambda conn: fetch(conn, None, 1000))
    from api.onboarding_cli import print_table

    print_table(
        ["id", "status", "starts_at", "cutoff", "settled_at"],
        [
            [str(r.id), r.status, str(r.starts_at), str(r.cutoff or ""), str(r.settled_at or "")]
            for r in rows
        ],
    )


@app.command("close")
def close(
    cutoff: Annotated[
        datetime | None, typer.Option(help="ISO time with zone; default now.")
    ] = None,
    period: Annotated[
        str | None,
        typer.Option(
            help="The OPEN period you mean to close: a retried or parallel close of it is"
            " refused (PERIOD_NOT_FOUND) instead of closing the next one."
        ),
    ] = None,
) -> None:
    """Close the OPEN period and compute obligations, positions and instructions."""
    from settlement.close import close_period

    async def work(conn: AsyncConnection) -> Any:
        expected = _period_id(period) if period is not None else None
        closed = await close_period(conn, cutoff, expected)
        await audit.record(
            conn,
            audit.CLI_ACTOR,
            audit.AuditAction.SETTLEMENT_PERIOD_CLOSED,
            "SettlementPeriod",
            closed.id,
            {"cutoff": closed.cutoff, "status": closed.status},
        )
        return closed

    done = _run(work)
    console.print(f"closed period {done.id} at {done.cutoff} ({done.status})")


@app.command("statement")
def statement(
    period: Annotated[str, typer.Option(help="Period id.")],
    partner: Annotated[str, typer.Option(help="Partner slug (or 'operator').")],
    format: Annotated[str, typer.Option(help="csv, json or pdf.")] = "csv",
    output: Annotated[
        Path | None,
        typer.Option(help="Write to this file (pdf: required unless stdout is redirected)."),
    ] = None,
) -> None:
    """A partner's statement of a period, as CSV, JSON or PDF."""
    from settlement.statements import render_csv, render_json
    from settlement.statements import statement as fetch

    if format not in ("csv", "json", "pdf"):
        errors.print("--format must be csv, json or pdf")
        raise typer.Exit(2)
    if format == "pdf" and output is None and sys.stdout.isatty():
        errors.print("--format pdf writes bytes: give --output FILE or redirect stdout")
        raise typer.Exit(2)

    if format == "pdf":
        from settlement.records import StatementRecord
        from settlement.statement_pdf import StatementHeading, render_pdf, statement_pdf

        async def load(conn: AsyncConnection) -> tuple[StatementRecord, StatementHeading]:
            return await statement_pdf(
                conn, OPERATOR, _period_id(period), await _partner_id(conn, partner)
            )

        document = render_pdf(*_run(load))
        if output:
            output.write_bytes(document)
            console.print(f"wrote {output}")
        else:
            sys.stdout.buffer.write(document)
            sys.stdout.buffer.flush()
        return

    async def work(conn: AsyncConnection) -> str:
        record = await fetch(conn, OPERATOR, _period_id(period), await _partner_id(conn, partner))
        return render_csv(record) if format == "csv" else render_json(record)

    text = _run(work)
    if output:
        output.write_text(text)
        console.print(f"wrote {output}")
    else:
        typer.echo(text, nl=not text.endswith("\n"))


@app.command("report")
def report(
    period: Annotated[str, typer.Option(help="Period id.")],
    partner: Annotated[str, typer.Option(help="The reporting partner's slug.")],
    file: Annotated[Path, typer.Option(help="CSV: reference,kind,points,amount")],
) -> None:
    """Reconcile a partner's own file against the ledger and list the breaks."""
    from schema.audit import report_details
    from settlement.reconciliation import submit_report
    from settlement.report_csv import parse_report_csv

    async def work(conn: AsyncConnection) -> Any:
        lines = parse_report_csv(file.read_text())
        partner_id = await _partner_id(conn, partner)
        submitted = await submit_report(
            conn, OPERATOR, _period_id(period), lines, partner_id=partner_id, source="CSV"
        )
        await audit.record(
            conn,
            audit.CLI_ACTOR,
            audit.AuditAction.PARTNER_REPORT_SUBMITTED,
            "PartnerReport",
            submitted.id,
            report_details(submitted),
        )
        return submitted

    result = _run(work)
    console.print(f"report {result.id}: {result.record_count} records, {len(result.breaks)} breaks")
    for b in result.breaks:
        # One plain line per break: readable, and easy to grep or cut.
        console.print(
            f"{b.kind} {b.record_kind} {b.reference!r} reported={b.reported_points}"
            f"/{b.reported_amount} ledger={b.ledger_points}/{b.ledger_amount} break={b.id}",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )


@app.command("verify")
def verify(period: Annotated[str, typer.Option(help="Period id.")]) -> None:
    """Prove the period's obligations equal what its ledger implies; exit 1 on a difference."""
    from settlement.verify import verify_period

    result = _run(lambda conn: verify_period(conn, _period_id(period)))
    if result.ok:
        console.print(f"[green]ok[/green]: {result.obligations_checked} obligations verified")
        return
    for d in result.differences:
        console.print(f"[red]{d.check}[/red] {d.message} (expected {d.expected}, got {d.actual})")
    raise typer.Exit(1)


@app.command("pay")
def pay(
    instruction: Annotated[str, typer.Option(help="Payment instruction id.")],
    reference: Annotated[str, typer.Option(help="The bank's reference of the payment.")],
) -> None:
    """Record that a payment instruction was paid."""
    from schema.audit import payment_details
    from settlement.payments import record_payment
    from settlement.periods import require_period

    async def work(conn: AsyncConnection) -> Any:
        paid = await record_payment(conn, _id(instruction, "PaymentInstruction"), reference)
        period = await require_period(conn, paid.period_id)
        await audit.record(
            conn,
            audit.CLI_ACTOR,
            audit.AuditAction.SETTLEMENT_PAYMENT_RECORDED,
            "PaymentInstruction",
            paid.id,
            payment_details(paid, period.status),
        )
        return paid

    paid = _run(work)
    console.print(f"instruction {paid.id} paid at {paid.paid_at}")
