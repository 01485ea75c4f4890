"""The operator's audit log: who did what to which object, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from db.audit import AuditAction as DomainAuditAction
from db.audit import AuditEntryRecord, list_entries
from ledger.errors import DomainError
from partners.caller import Scope
from schema.context import Info
from schema.errors import query_error
from schema.permissions import requires
from schema.relay import Connection, connection, decode_cursor, page_size, to_global_id
from settlement.records import BreakRecord, InstructionRecord, ReportRecord

AuditAction = strawberry.enum(
    DomainAuditAction, name="AuditAction", description="What an operator did."
)

# Subjects that are Relay nodes are named by their global id; others (API clients, the
# coalition settings) by their own public identifier.
GLOBAL_ID_SUBJECTS = frozenset(
    {"Partner", "SettlementPeriod", "PaymentInstruction", "PartnerReport", "ReconciliationBreak"}
)


# ---- the details recorded for settlement actions (shared by the API and the CLI) ---------


def payment_details(paid: InstructionRecord, period_status: str) -> dict[str, Any]:
    return {
        "periodId": paid.period_id,
        "payerId": paid.payer_id,
        "payeeId": paid.payee_id,
        "amountMinor": paid.amount,
        "bankReference": paid.bank_reference,
        "periodStatus": period_status,
    }


def report_details(report: ReportRecord) -> dict[str, Any]:
    return {
        "periodId": report.period_id,
        "partnerId": report.partner_id,
        "source": report.source,
        "recordCount": report.record_count,
        "breaks": len(report.breaks),
    }


def break_details(resolved: BreakRecord) -> dict[str, Any]:
    return {
        "periodId": resolved.period_id,
        "partnerId": resolved.partner_id,
        "kind": resolved.kind,
        "reference": resolved.reference,
        "status": resolved.status,
        "note": resolved.note,
        "adjustmentPoints": resolved.adjustment_points,
        "adjustmentTransferId": resolved.adjustment_transfer_id,
    }


@strawberry.type(description="One entry of the append-only audit log.")
class AuditEntry:
    id: strawberry.ID
    occurred_at: datetime
    actor: str = strawberry.field(
        description="The API client that acted ('cli' for the command line)."
    )
    action: AuditAction  # type: ignore[valid-type]
    subject_type: str
    subject_id: str | None = strawberry.field(
        description="A global id for Relay nodes; a client id for API clients."
    )
    details: JSON = strawberry.field(description="What changed (never a secret).")

    @classmethod
    def of(cls, r: AuditEntryRecord) -> AuditEntry:
        subject_id = r.subject_id
        if subject_id is not None and r.subject_type in GLOBAL_ID_SUBJECTS:
            subject_id = to_global_id(r.subject_type, subject_id)
        return cls(
            id=to_global_id("AuditEntry", r.id),
            occurred_at=r.occurred_at,
            actor=r.actor,
            action=DomainAuditAction(r.action),
            subject_type=r.subject_type,
            subject_id=subject_id,
            details=JSON(r.details),
        )


@strawberry.type
class AuditQueries:
    @strawberry.field(
        description="Operator only: the audit log of operator actions, newest first.",
        extensions=requires("auditLog", Scope.OPERATOR),
    )
    async def audit_log(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        action: AuditAction | None = None,  # type: ignore[valid-type]
    ) -> Connection[AuditEntry]:
        try:
            size = page_size(first)
            cursor = decode_cursor(after)
        except DomainError as exc:
            raise query_error(exc) from exc
        async with info.context.read() as conn:
            rows = await list_entries(
                conn,
                action=None if action is None else str(action.value),
                before=cursor,
                limit=size + 1,
            )
        return connection([AuditEntry.of(r) for r in rows], [r.id for r in rows], size)
