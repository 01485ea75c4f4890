"""Partner queries and the operator's partner, rate card, client and settings mutations."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from db import audit
from db.audit import AuditAction
from ledger.errors import DomainError
from partners import clients, service, settings
from partners.caller import Scope
from schema.context import Info
from schema.errors import UserError, query_error
from schema.mutation import in_transaction
from schema.partners.types import CoalitionSettings, Partner, RateCard
from schema.permissions import ANY_CLIENT, requires
from schema.relay import Connection, connection, decode_cursor, from_global_id, page_size


@strawberry.input
class CreatePartnerInput:
    name: str
    slug: str
    earn_rate: Decimal
    accepts_redemption: bool = True
    pending_days: int = 0
    points_validity_days: int = 365
    issue_price: Decimal | None = None
    redeem_price: Decimal | None = None


@strawberry.type
class CreatePartnerPayload:
    partner: Partner | None
    errors: list[UserError]


@strawberry.input
class SetRateCardInput:
    partner_id: strawberry.ID
    earn_rate: Decimal
    issue_price: Decimal | None = None
    redeem_price: Decimal | None = None
    effective_from: datetime | None = strawberry.field(
        default=None, description="Default now; never in the past."
    )


@strawberry.type
class SetRateCardPayload:
    rate_card: RateCard | None
    errors: list[UserError]


@strawberry.input
class CreateApiClientInput:
    scopes: list[str]
    partner_id: strawberry.ID | None = strawberry.field(
        default=None, description="Null: an operator client (must hold 'operator')."
    )
    name: str | None = None


@strawberry.type
class CreateApiClientPayload:
    client_id: str | None
    client_secret: str | None = strawberry.field(description="Shown once; store it now.")
    scopes: list[str]
    errors: list[UserError]


@strawberry.input
class RevokeApiClientInput:
    client_id: str


@strawberry.type
class RevokeApiClientPayload:
    client_id: str | None
    revoked_at: datetime | None
    errors: list[UserError]


@strawberry.input
class UpdateCoalitionSettingsInput:
    point_value: Decimal | None = None
    default_region: str | None = None
    funding_model: str | None = None
    clearing_fee: Decimal | None = None


@strawberry.type
class UpdateCoalitionSettingsPayload:
    settings: CoalitionSettings | None
    errors: list[UserError]


@strawberry.type
class PartnerQueries:
    @strawberry.field(
        description="Partners of the coalition (a partner's client sees only its own partner).",
        extensions=requires("partners", ANY_CLIENT),
    )
    async def partners(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Partner]:
        caller = info.context.caller
        try:
            size = page_size(first)
            cursor = decode_cursor(after)
        except DomainError as exc:
            raise query_error(exc) from exc
        async with info.context.read() as conn:
            rows = await service.list_partners(
                conn,
                after=cursor,
                limit=size + 1,
                only=None if caller.is_operator else caller.partner_id,
            )
        return connection([Partner.of(r) for r in rows], [r.id for r in rows], size)

    @strawberry.field(
        description="The coalition's economics.",
        extensions=requires("coalitionSettings", ANY_CLIENT),
    )
    async def coalition_settings(self, info: Info) -> CoalitionSettings:
        async with info.context.read() as conn:
            return CoalitionSettings.of(await settings.load_settings(conn))


@strawberry.type
class PartnerMutations:
    @strawberry.mutation(extensions=requires("createPartner", Scope.OPERATOR))
    async def create_partner(self, info: Info, input: CreatePartnerInput) -> CreatePartnerPayload:
        async def work(conn: AsyncConnection) -> Partner:
            record = await service.create_partner(
                conn,
                name=input.name,
                slug=input.slug,
                earn_rate=input.earn_rate,
                accepts_redemption=input.accepts_redemption,
                pending_days=input.pending_days,
                points_validity_days=input.points_validity_days,
                issue_price=input.issue_price,
                redeem_price=input.redeem_price,
            )
            await audit.record(
                conn,
                info.context.caller.client_id,
                AuditAction.PARTNER_CREATED,
                "Partner",
                record.id,
                {
                    "name": record.name,
                    "slug": record.slug,
                    "earnRate": input.earn_rate,
                    "acceptsRedemption": record.accepts_redemption,
                    "pendingDays": record.pending_days,
                    "pointsValidityDays": record.points_validity_days,
                    "issuePrice": input.issue_price,
                    "redeemPrice": input.redeem_price,
                },
            )
            return Partner.of(record)

        result = await in_transaction(info, work)
        if isinstance(result, DomainError):
            return CreatePartnerPayload(partner=None, errors=[UserError.of(result)])
        return CreatePartnerPayload(partner=result, errors=[])

    @strawberry.mutation(extensions=requires("setRateCard", Scope.OPERATOR))
    async def set_rate_card(self, info: Info, input: SetRateCardInput) -> SetRateCardPayload:
        async def work(conn: AsyncConnection) -> RateCard:
            _, partner_id = from_global_id(input.partner_id, "Partner")
            card = await service.set_rate_card(
                conn,
                partner_id,
                earn_rate=input.earn_rate,
                issue_price=input.issue_price,
                redeem_price=input.redeem_price,
                effective_from=input.effective_from,
            )
            await audit.record(
                conn,
                info.context.caller.client_id,
                AuditAction.RATE_CARD_SET,
                "Partner",
                partner_id,
                {
                    "earnRate": card.earn_rate,
                    "issuePrice": card.issue_price,
                    "redeemPrice": card.redeem_price,
                    "effectiveFrom": card.effective_from,
                },
            )
            return RateCard.of(card)

        result = await in_transaction(info, work)
        if isinstance(result, DomainError):
            return SetRateCardPayload(rate_card=None, errors=[UserError.of(result)])
        return SetRateCardPayload(rate_card=result, errors=[])

    @strawberry.mutation(extensions=requires("createApiClient", Scope.OPERATOR))
    async def create_api_client(
        self, info: Info, input: CreateApiClientInput
    ) -> CreateApiClientPayload:
        async def work(conn: AsyncConnection) -> clients.NewClient:
            partner_id = (
                from_global_id(input.partner_id, "Partner")[1] if input.partner_id else None
            )
            created = await clients.create_client(
                conn, partner_id=partner_id, scopes=input.scopes, name=input.name
            )
            # Never the secret: only who the client is and what it may do.
            await audit.record(
                conn,
                info.context.caller.client_id,
                AuditAction.API_CLIENT_CREATED,
                "ApiClient",
                created.client_id,
                {"partnerId": partner_id, "scopes": created.scopes, "name": input.name},
            )
            return created

        result = await in_transaction(info, work)
        if isinstance(result, DomainError):
            return CreateApiClientPayload(
                client_id=None, client_secret=None, scopes=[], errors=[UserError.of(result)]
            )
        return CreateApiClientPayload(
            client_id=result.client_id,
            client_secret=result.client_secret,
            scopes=sorted(result.scopes),
            errors=[],
        )

    @strawberry.mutation(
        description="Revoke a client: its tokens stop working within seconds.",
        extensions=requires("revokeApiClient", Scope.OPERATOR),
    )
    async def revoke_api_client(
        self, info: Info, input: RevokeApiClientInput
    ) -> RevokeApiClientPayload:
        async def work(conn: AsyncConnection) -> clients.ClientRecord:
            revoked = await clients.revoke_client(conn, input.client_id)
            await audit.record(
                conn,
                info.context.caller.client_id,
                AuditAction.API_CLIENT_REVOKED,
                "ApiClient",
                revoked.client_id,
                {"partnerId": revoked.partner_id, "revokedAt": revoked.revoked_at},
            )
            return revoked

        result = await in_transaction(info, work)
        if isinstance(result, DomainError):
            return RevokeApiClientPayload(
                client_id=None, revoked_at=None, errors=[UserError.of(result)]
            )
        return RevokeApiClientPayload(
            client_id=result.client_id, revoked_at=result.revoked_at, errors=[]
        )

    @strawberry.mutation(extensions=requires("updateCoalitionSettings", Scope.OPERATOR))
    async def update_coalition_settings(
        self, info: Info, input: UpdateCoalitionSettingsInput
    ) -> UpdateCoalitionSettingsPayload:
        async def work(conn: AsyncConnection) -> CoalitionSettings:
            updated = await settings.update_settings(
                conn,
                point_value=input.point_value,
                default_region=input.default_region,
                funding_model=input.funding_model,
                clearing_fee=input.clearing_fee,
            )
            requested = {
                "pointValue": input.point_value,
                "defaultRegion": input.default_region,
                "fundingModel": input.funding_model,
                "clearingFee": input.clearing_fee,
            }
            await audit.record(
                conn,
                info.context.caller.client_id,
                AuditAction.COALITION_SETTINGS_UPDATED,
                "CoalitionSettings",
                None,
                {"changes": {k: v for k, v in requested.items() if v is not None}},
            )
            return CoalitionSettings.of(updated)

        result = await in_transaction(info, work)
        if isinstance(result, DomainError):
            return UpdateCoalitionSettingsPayload(settings=None, errors=[UserError.of(result)])
        return UpdateCoalitionSettingsPayload(settings=result, errors=[])
