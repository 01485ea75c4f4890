"""Points accounts. Ids are derived from (code, owner), so postings never look an account up."""

from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_NAMESPACE = uuid.UUID("6f1d4b8e-2c1a-4d0e-9a57-3c0f5e1b7a21")
OPERATOR_ADJUSTMENT_ACCOUNT = uuid.UUID("00000000-0000-0000-0000-00000000ad00")


class AccountCode(StrEnum):
    MEMBER_WALLET = "MEMBER_WALLET"  # the member's points; never negative
    MEMBER_DEBT = "MEMBER_DEBT"  # points a member owes after a reversal (debit balance)
    PARTNER_ISSUANCE = "PARTNER_ISSUANCE"  # where a partner's points come from
    PARTNER_REDEMPTION = "PARTNER_REDEMPTION"  # where points burnt at a partner go
    PARTNER_BREAKAGE = "PARTNER_BREAKAGE"  # a partner's expired points
    OPERATOR_ADJUSTMENT = "OPERATOR_ADJUSTMENT"


MEMBER_CODES = (AccountCode.MEMBER_WALLET, AccountCode.MEMBER_DEBT)
PARTNER_CODES = (
    AccountCode.PARTNER_ISSUANCE,
    AccountCode.PARTNER_REDEMPTION,
    AccountCode.PARTNER_BREAKAGE,
)


def account_id(code: AccountCode, owner_id: uuid.UUID) -> uuid.UUID:
    if code is AccountCode.OPERATOR_ADJUSTMENT:
        return OPERATOR_ADJUSTMENT_ACCOUNT
    return uuid.uuid5(_NAMESPACE, f"{code}:{owner_id}")


async def open_accounts(
    conn: AsyncConnection, owner_id: uuid.UUID, codes: tuple[AccountCode, ...]
) -> None:
    """Create the owner's accounts if they do not exist yet (idempotent)."""
    await conn.execute(
        text(
            "INSERT INTO accounts (id, code, owner_id) "
            "SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:codes AS text[]),"
            " CAST(:owners AS uuid[])) ON CONFLICT DO NOTHING"
        ),
        {
            "ids": [account_id(code, owner_id) for code in codes],
            "codes": [str(code) for code in codes],
            "owners": [owner_id] * len(codes),
        },
    )
