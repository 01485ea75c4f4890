"""The operator's audit log: who did what to which object, newest first."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from core.audit import AuditAction as DomainAuditAction
from core.audit import AuditEntryRecord, list_entries
from core.caller import Scope
from core.errors import DomainError
from schema.context import Info
from schema.enums import described_enum
from schema.errors import query_error
from schema.permissions import requires
from schema.relay import (
    After,
    Connection,
    First,
    Node,
    connection,
    decode_cursor,
    page_size,
    to_global_id,
)
from settlement.records import BreakRecord, InstructionRecord, ReportRecord

AuditAction = described_enum(
    DomainAuditAction,
    name="AuditAction",
    description="What an operator (or a partner filing a report) did.",
    values={
        "PARTNER_CREATED": "A partner joined the coalition (subject: the Partner).",
        "RATE_CARD_SET": "A partner's rate card was set from a date (subject: the Partner).",
        "API_CLIENT_CREATED": "An API client was created with its scopes; never its secret"
        " (subject: the ApiClient).",
        "API_CLIENT_REVOKED": "An API client was revoked (subject: the ApiClient).",
        "COALITION_SETTINGS_UPDATED": "The coalition's economics changed (subject:"
        " CoalitionSettings; details: the changes).",
        "SETTLEMENT_PERIOD_CLOSED": "A settlement period was closed at its cutoff (subject:"
        " the SettlementPeriod).",
        "SETTLEMENT_PAYMENT_RECORDED": "A payment instruction was marked paid (subject: the"
        " PaymentInstruction).",
        "PARTNER_REPORT_SUBMITTED": "A partner's reconciliation report was filed (subject:"
        " the PartnerReport).",
        "RECONCILIATION_BREAK_RESOLVED": "A reconciliation break was accepted or adjusted"
        " (subject: the ReconciliationBreak).",
        "STAFF_CREATED": "A console staff account was created with its role (subject: the"
        " StaffAccount).",
        "STAFF_DISABLED": "A console staff account was disabled and its sessions ended"
        " (subject: the StaffAccount).",
        "STAFF_SIGNED_IN": "A staff member signed in to the console (subject: the StaffAccount).",
        "STAFF_SIGNED_OUT": "A staff member signed out of the console (subject: the StaffAccount).",
        "STAFF_PASSWORD_RESET": "A staff account was given a new password (and enabled);"
        " its sessions ended (subject: the StaffAccount).",
        "PARTNER_REDEMPTION_SET": "Whether members may redeem points at a partner was changed"
        " (subject: the Partner).",
        "MEMBER_ADJUSTED": "Support or the operator credited or debited a member's points with"
        " a reason (subject: the Member; details: points, reason, transfer_id, funded_by).",
        "CAMPAIGN_CREATED": "A campaign was created (subject: the Campaign; details: its"
        " first version's definition).",
        "CAMPAIGN_UPDATED": "A campaign's definition changed: a new version (subject: the"
        " Campaign; details: the version and the changed fields, before and after).",
        "CAMPAIGN_PAUSED": "A campaign was paused: a new version (subject: the Campaign).",
        "CAMPAIGN_RESUMED": "A draft campaign was started or a paused one resumed: a new"
        " version (subject: the Campaign).",
        "CAMPAIGN_ENDED": "A campaign was ended: a new version (subject: the Campaign).",
        "CAMPAIGN_ARCHIVED": "A campaign was archived: a new version (subject: the Campaign).",
    },
)


class SubjectType(Enum):
    # GraphQL sends an enum value's name: these names are the strings the log always held.
    Partner = "Partner"
    ApiClient = "ApiClient"
    CoalitionSettings = "CoalitionSettings"
    SettlementPeriod = "SettlementPeriod"
    PaymentInstruction = "PaymentInstruction"
    PartnerReport = "PartnerReport"
    ReconciliationBreak = "ReconciliationBreak"
    StaffAccount = "StaffAccount"
    Member = "Member"
    Campaign = "Campaign"


AuditSubjectType = described_enum(
    SubjectType,
    name="AuditSubjectType",
    description="The kind of object an audit entry is about: the GraphQL type's name where"
    " there is one (values keep the type names' spelling).",
    values={
        "Partner": "A partner (subjectId: its global id).",
        "ApiClient": "An API client (subjectId: its client id).",
        "CoalitionSettings": "The coalition's settings (subjectId: null).",
        "SettlementPeriod": "A settlement period (subjectId: its global id).",
        "PaymentInstruction": "A payment instruction (subjectId: its global id).",
        "PartnerReport": "A partner's reconciliation report (subjectId: its global id).",
        "ReconciliationBreak": "A reconciliation break (subjectId: its global id).",
        "StaffAccount": "A console staff account (subjectId: its email).",
        "Member": "A member (subjectId: its global id).",
        "Campaign": "A campaign (subjectId: its global id).",
    },
)

# Subjects that are Relay nodes are named by their global id; others (API clients, the
# coalition settings) by their own public identifier.
GLOBAL_ID_SUBJECTS = frozenset(
    {
        "Partner",
        "SettlementPeriod",
        "PaymentInstruction",
        "PartnerReport",
        "ReconciliationBreak",
        "Member",
        "Campaign",
    }
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


@strawberry.type(
    description="One entry of the append-only audit log (operator only; also through `node(id:)`)."
)
class AuditEntry(Node):
    occurred_at: datetime = strawberry.field(
        description="When the action was committed (the entry is written in its transaction)."
    )
    actor: str = strawberry.field(
        description="The API client id that acted (`cli` for the command line)."
    )
    action: AuditAction = strawberry.field(  # type: ignore[valid-type]
        description="What was done."
    )
    subject_type: AuditSubjectType = strawberry.field(  # type: ignore[valid-type]
        description="The kind of object acted on."
    )
    subject_id: str | None = strawberry.field(
        description="The object acted on: a global id for Relay nodes, a client id for API"
        " clients, null for the coalition settings."
    )
    details: JSON = strawberry.field(
        description="What changed, as a JSON object with camelCase keys (never a secret)."
    )

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
            subject_type=SubjectType(r.subject_type),
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
        first: First = None,
        after: After = None,
        action: Annotated[
            AuditAction | None,  # type: ignore[valid-type]
            strawberry.argument(description="Only entries of this action (default: all)."),
        ] = None,
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
        return connection([AuditEntry.of(r) for r in rows], [r.id for r in rows], size, cursor)
