"""Type-checked against the generated client (mypy --strict): the types an integrator gets."""

from datetime import datetime
from decimal import Decimal

from coalition_client.client import Client
from coalition_client.enums import ErrorCode, ObligationKind, SettlementStatus, TransferCode
from coalition_client.input_types import EarnPointsInput, MemberRef


async def earn(client: Client, phone: str) -> tuple[int, Decimal | None, datetime] | None:
    result = await client.earn(
        EarnPointsInput(
            member=MemberRef(phone=phone),
            amount=Decimal("1499.90"),
            reference="receipt-1",
            idempotencyKey="earn-1",
        )
    )
    codes: list[ErrorCode] = [e.code for e in result.earn_points.errors]
    transfer = result.earn_points.transfer
    if codes or transfer is None:
        return None
    code: TransferCode = transfer.code
    assert code is TransferCode.EARN
    return transfer.points, transfer.amount, transfer.created_at


async def page(client: Client, member_id: str, after: str | None) -> str | None:
    history = await client.member_history(MemberRef(id=member_id), first=10, after=after)
    if history.member is None:
        return None
    info = history.member.transfers.page_info
    more: bool = info.has_next_page and info.has_previous_page
    return info.end_cursor if more else info.start_cursor


async def period(client: Client, period_id: str) -> list[tuple[ObligationKind, Decimal]]:
    found = (await client.period(period_id)).settlement_period
    if found is None:
        return []
    status: SettlementStatus = found.status
    assert status in SettlementStatus
    return [(o.kind, o.amount) for o in found.obligations]
