"""The outbox, write side: domain events stored in the transaction of the change they describe.

An event is a row of the append-only `outbox` table (migration 0007): a UUIDv7 id, a type, when
it happened, whose activity it is (`partner_id`, for per-partner filtering such as webhooks),
the member, and a JSON payload with what a consumer needs without reading other tables. It is
written in the same transaction as its change, so a change that rolls back leaves no event and
a committed change always has one. Delivery to consumers (at least once, after commit) is the
`outbox` package's business.

Events of postings are written by the ledger's SQL hook `ledger_posting_booked` (one
`transfer.booked` per transfer, set-based), so every posting type, the single SQL-function
postings and the Python ones alike, has them with no code here. A batch chunk (`ledger.bulk`)
writes its own from the transfers it inserts, in the same statement (`TRANSFER_BOOKED_COLUMNS`
and `TRANSFER_BOOKED_VALUES` are the one definition of the event both use), and tells the hook
so: for a 10,000-row chunk, the hook reading the transfers back by id and making a UUIDv7 per
event cost more than writing the events. Other events go through `record`.

A `transfer.booked` event's id is a fresh UUIDv7 when the hook writes it and the transfer's own
id when a batch does. Consumers rely on neither: ids are unique, and the relay delivers
transaction by transaction in commit-safe order (`outbox.relay`), then by id. A batch's own
events follow its transfers' ids, after the events of the rows it booked one by one through the
single earn (`ledger.bulk`), so a member's purchases reach consumers in the order they were
booked. (Events the hook writes in one transaction within one millisecond are unordered among
themselves: `uuid7()` is random within its millisecond.)

Catalogue (payload keys):

- `transfer.booked`: transfer_id, code, points, partner_id, member_id, reference,
  reversal_of_id, amount (text, or null), occurred_at, created_at.
- `member.enrolled`: member_id, partner_id (null when the operator enrolled without a partner),
  partner_ref, new_member (true the first time the phone joins the coalition).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from db.ids import new_id

TRANSFER_BOOKED = "transfer.booked"

# A `transfer.booked` event, from a transfer row `t`: the outbox columns after `id`, and their
# values. The hook's subscriber below and the batch (`ledger.bulk`, from the rows its INSERT
# returns) both write exactly this.
TRANSFER_BOOKED_COLUMNS = "type, occurred_at, partner_id, member_id, payload"
TRANSFER_BOOKED_VALUES = """'transfer.booked', t.created_at, t.partner_id, t.member_id,
         jsonb_build_object(
           'transfer_id', t.id, 'code', t.code, 'points', t.points,
           'partner_id', t.partner_id, 'member_id', t.member_id, 'reference', t.reference,
           'reversal_of_id', t.reversal_of_id, 'amount', t.amount::text,
           'occurred_at', t.occurred_at, 'created_at', t.created_at)"""
# The transfer columns TRANSFER_BOOKED_VALUES reads.
TRANSFER_BOOKED_READS = (
    "id, code, points, partner_id, member_id, reference, reversal_of_id, amount, occurred_at,"
    " created_at"
)

# The current definition of the hook's subscriber that writes `transfer.booked` events
# (migration 0007 installed a literal copy; tests/db/test_function_drift.py compares them).
# One event per transfer, set-based, with a generic plan.
OUTBOX_TRANSFERS_BOOKED = f"""
CREATE FUNCTION outbox_transfers_booked(p_ids uuid[]) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
BEGIN
  INSERT INTO outbox (id, {TRANSFER_BOOKED_COLUMNS})
  SELECT uuid7(), {TRANSFER_BOOKED_VALUES}
  FROM transfers t WHERE t.id = ANY(p_ids) ORDER BY t.id;
END $fn$
"""
MEMBER_ENROLLED = "member.enrolled"

_INSERT = text(
    "INSERT INTO outbox (id, type, partner_id, member_id, payload)"
    " VALUES (:id, :type, :partner, :member, :payload)"
).bindparams(bindparam("payload", type_=JSONB))


async def record(
    conn: AsyncConnection,
    event_type: str,
    *,
    partner_id: uuid.UUID | None,
    member_id: uuid.UUID | None,
    payload: dict[str, Any],
) -> uuid.UUID:
    """Append one event in the caller's transaction; returns its id."""
    event_id = new_id()
    await conn.execute(
        _INSERT,
        {
            "id": event_id,
            "type": event_type,
            "partner": partner_id,
            "member": member_id,
            "payload": payload,
        },
    )
    return event_id
