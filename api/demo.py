"""`coalition serve --demo`: a small coalition with history, and credentials to try it.

Seeding is idempotent: the demo partners are found by slug and their history is booked only
when they are new. Client secrets are stored only as hashes, so a re-run cannot print the
first run's secrets again; it rotates the demo clients instead (revokes the active ones it
made, creates as many new ones and prints those), so what it prints always works and the
number of active API clients stays the same however often `serve --demo` runs.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rich.console import Console
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit
from core.caller import Caller
from db.engine import create_engine
from members.service import MemberRef, enroll
from partners.clients import NewClient, create_client, revoke_client
from partners.service import PartnerRecord, create_partner, get_partner_by_slug
from points.service import earn_points, redeem_points, reverse_transfer


@dataclass(frozen=True)
class DemoPartner:
    slug: str
    name: str
    earn_rate: str
    accepts_redemption: bool
    pending_days: int


PARTNERS = [
    DemoPartner("fresh-market", "Fresh Market (grocery)", "0.1", True, 0),
    DemoPartner("skyline-cinema", "Skyline Cinema", "0.05", True, 0),
    DemoPartner("metro-fuel", "Metro Fuel (petrol stations)", "0.02", False, 0),
    DemoPartner("bookworm", "Bookworm (online books)", "0.1", True, 14),
]
PARTNER_SCOPES = [
    "members:read",
    "members:write",
    "points:earn",
    "points:redeem",
    "points:reverse",
    "settlement:read",
    "reconciliation:write",
]
MEMBERS = ["+79120000101", "+79120000102", "+79120000103", "+79120000104", "+79120000105"]


async def _partner(conn: AsyncConnection, spec: DemoPartner) -> tuple[PartnerRecord, bool]:
    existing = await get_partner_by_slug(conn, spec.slug)
    if existing is not None:
        return existing, False
    created = await create_partner(
        conn,
        name=spec.name,
        slug=spec.slug,
        earn_rate=Decimal(spec.earn_rate),
        accepts_redemption=spec.accepts_redemption,
        pending_days=spec.pending_days,
    )
    return created, True


def _caller(partner: PartnerRecord) -> Caller:
    return Caller(f"demo-{partner.slug}", partner.id, frozenset(PARTNER_SCOPES))


async def _history(conn: AsyncConnection, partners: dict[str, PartnerRecord]) -> None:
    """Purchases across brands over the last weeks, burns at the cinema, one refund."""
    grocer, cinema = partners["fresh-market"], partners["skyline-cinema"]
    fuel, books = partners["metro-fuel"], partners["bookworm"]
    now = datetime.now(UTC)
    for i, phone in enumerate(MEMBERS):
        for p in partners.values():
            await enroll(conn, _caller(p), phone=phone, partner_ref=f"{p.slug[:3]}-{1000 + i}")
        for days_ago, partner, amount in (
            (20, grocer, "3450.00"),
            (12, fuel, "2800.00"),
            (5, grocer, "1299.90"),
            (2, books, "899.00"),
        ):
            await earn_points(
                conn,
                _caller(partner),
                member=MemberRef(phone=phone),
                amount=Decimal(amount) + i,
                reference=f"{partner.slug}-r{i}-{days_ago}",
                occurred_at=now - timedelta(days=days_ago),
                idempotency_key=secrets.token_hex(8),
            )
    for i, phone in enumerate(MEMBERS[:3]):
        burnt = await redeem_points(
            conn,
            _caller(cinema),
            member=MemberRef(phone=phone),
            points=200 + 50 * i,
            reference=f"ticket-{i}",
            idempotency_key=secrets.token_hex(8),
        )
        if i == 0:
            await reverse_transfer(
                conn,
                _caller(cinema),
                transfer_id=uuid.UUID(burnt.transfer_id),
                points=50,
                reason="one ticket refunded",
                idempotency_key=secrets.token_hex(8),
            )


async def _rotate_client(
    conn: AsyncConnection, partner_id: uuid.UUID | None, scopes: list[str], name: str
) -> tuple[NewClient, int]:
    """A new demo client in place of the active ones of the same name and partner (their
    secrets were shown once and cannot be shown again); with how many were revoked."""
    previous = (
        await conn.scalars(
            text(
                "SELECT client_id FROM api_clients WHERE name = :n AND revoked_at IS NULL"
                " AND partner_id IS NOT DISTINCT FROM :p ORDER BY created_at"
            ),
            {"n": name, "p": partner_id},
        )
    ).all()
    for client_id in previous:
        await revoke_client(conn, client_id)
        await audit.record(
            conn,
            audit.CLI_ACTOR,
            audit.AuditAction.API_CLIENT_REVOKED,
            "ApiClient",
            client_id,
            {"reason": "demo clients rotated by `coalition serve --demo`"},
        )
    created = await create_client(conn, partner_id=partner_id, scopes=scopes, name=name)
    await audit.record(
        conn,
        audit.CLI_ACTOR,
        audit.AuditAction.API_CLIENT_CREATED,
        "ApiClient",
        created.client_id,
        {"partnerId": partner_id, "scopes": sorted(created.scopes), "name": name},
    )
    return created, len(previous)


DEMO_STAFF = "demo-admin@coalition.example"


async def _demo_staff(conn: AsyncConnection) -> str:
    """The demo's console admin, with a new password each run (only its hash is stored)."""
    from console.staff import create_staff, get_staff, new_password, reset_password

    password = new_password()
    if await get_staff(conn, DEMO_STAFF) is None:
        await create_staff(
            conn, email=DEMO_STAFF, role="admin", password=password, actor=audit.CLI_ACTOR
        )
    else:
        await reset_password(conn, DEMO_STAFF, password, actor=audit.CLI_ACTOR)
    return password


async def seed_demo(url: str, *, host: str, port: int, console: Console) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            # One demo at a time: two `serve --demo` starting together would both rotate.
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('coalition demo'))"))
            partners: dict[str, PartnerRecord] = {}
            fresh = False
            for spec in PARTNERS:
                partners[spec.slug], created = await _partner(conn, spec)
                fresh = fresh or created
            if fresh:
                await _history(conn, partners)
            operator, revoked = await _rotate_client(conn, None, ["operator"], "demo operator")
            staff_password = await _demo_staff(conn)
            clients: dict[str, NewClient] = {}
            for slug, p in partners.items():
                clients[slug], more = await _rotate_client(
                    conn, p.id, PARTNER_SCOPES, f"demo {slug}"
                )
                revoked += more
    finally:
        await engine.dispose()
    if fresh:
        console.print("\nDemo coalition seeded: 4 partners, 5 members with history.")
    else:
        console.print(
            "\nDemo coalition found (seeded by an earlier run): nothing new booked. Secrets"
            f" are stored only as hashes, so its {revoked} earlier demo client(s) were"
            " revoked and replaced by the ones below.",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
    # Plain lines, never a table: a secret must not be cut to fit a narrow terminal.
    console.print("\nDemo coalition: API clients (the secrets are shown only now)\n")
    rows = [("operator", operator), *clients.items()]
    for who, c in rows:
        console.print(
            f"  {who:<15} client_id={c.client_id}  client_secret={c.client_secret}\n"
            f"  {'':<15} scopes: {' '.join(sorted(c.scopes))}",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
    grocer = clients["fresh-market"]
    base = f"http://{host}:{port}"
    console.print(
        f"\nOperator console: {base}/console\n"
        f"  email={DEMO_STAFF}  password={staff_password}  (role admin; the password is"
        " new on every `serve --demo`)",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    console.print("\nTry it (Fresh Market's client; members +79120000101 … +79120000105):\n")
    console.print(
        f"TOKEN=$(curl -s -u {grocer.client_id}:{grocer.client_secret} "
        f"-d grant_type=client_credentials {base}/oauth/token "
        "| python3 -c 'import sys,json; print(json.load(sys.stdin)[\"access_token\"])')\n"
        f'curl -s {base}/graphql -H "Authorization: Bearer $TOKEN" '
        "-H 'Content-Type: application/json' -d '{\"query\": \"{ member(ref: {phone: "
        '\\"+79120000101\\"}) { phone partnerRef balance { available pending held } '
        "transfers(first: 5) { nodes { code points reference createdAt } } } }\"}'",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    console.print(f"\nGraphiQL: {base}/graphql (paste the token as an Authorization header)\n")
