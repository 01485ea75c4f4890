"""Partner queries and the operator's partner, rate card, client and settings mutations."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit
from core.audit import AuditAction
from core.caller import Scope
from core.errors import DomainError
from partners import clients, service, settings
from schema.context import Info
from schema.errors import UserError, query_error
from schema.mutation import Request, in_transaction
from schema.partners.types import CoalitionSettings, FundingModel, Partner, RateCard
from schema.permissions import ANY_CLIENT, requires
from schema.relay import (
    After,
    Connection,
    First,
    connection,
    decode_cursor,
    from_global_id,
    page_size,
)


@strawberry.input(description="A new partner and its first rate card.")
class CreatePartnerInput:
    name: str = strawberry.field(description="Display name (1 to 200 characters).")
    slug: str = strawberry.field(
        description="Short unique name: lowercase letters, digits and dashes (at most 64)."
    )
    earn_rate: Decimal = strawberry.field(
        description="Points per currency unit spent (at most 6 decimals, 0 to 1000000)."
    )
    accepts_redemption: bool = strawberry.field(
        default=True, description="Whether members can burn points at this partner."
    )
    pending_days: int = strawberry.field(
        default=0, description="Days earned points stay pending (the return window), 0 to 365."
    )
    points_validity_days: int = strawberry.field(
        default=365, description="Days earned points stay valid, 1 to 3650."
    )
    issue_price: Decimal | None = strawberry.field(
        default=None,
        description="Issuance-funded: price per point issued (at most 6 decimals, 0 to 1000000; default 0).",
    )
    redeem_price: Decimal | None = strawberry.field(
        default=None,
        description="Issuance-funded: price per point redeemed (at most 6 decimals, 0 to 1000000; default 0).",
    )


@strawberry.type(description="The result of createPartner.")
class CreatePartnerPayload:
    partner: Partner | None = strawberry.field(description="The new partner; null when refused.")
    errors: list[UserError] = strawberry.field(
        description="Why it was refused; empty when the partner was created."
    )


@strawberry.input(description="A partner's new prices from a date on.")
class SetRateCardInput:
    partner_id: strawberry.ID = strawberry.field(description="The partner's global id.")
    earn_rate: Decimal = strawberry.field(
        description="Points per currency unit spent (at most 6 decimals, 0 to 1000000)."
    )
    issue_price: Decimal | None = strawberry.field(
        default=None, description="Issuance-funded: price per point issued (default 0)."
    )
    redeem_price: Decimal | None = strawberry.field(
        default=None, description="Issuance-funded: price per point redeemed (default 0)."
    )
    effective_from: datetime | None = strawberry.field(
        default=None, description="From when the card applies: default now; never in the past."
    )


@strawberry.type(description="The result of setRateCard.")
class SetRateCardPayload:
    rate_card: RateCard | None = strawberry.field(
        description="The new rate card; null when refused."
    )
    errors: list[UserError] = strawberry.field(
        description="Why it was refused; empty when the card was set."
    )


@strawberry.input(
    description="A new OAuth client (client credentials) for a partner or the operator."
)
class CreateApiClientInput:
    scopes: list[str] = strawberry.field(
        description="What the client may do: members:read, members:write, points:earn,"
        " points:redeem, points:reverse, settlement:read, reconciliation:write,"
        " campaigns:write; `operator`"
        " for (and only for) an operator client."
    )
    partner_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The partner the client acts for; null: an operator client (must hold"
        " `operator`).",
    )
    name: str | None = strawberry.field(
        default=None, description="A label for people (at most 200 characters)."
    )


@strawberry.type(description="The result of createApiClient.")
class CreateApiClientPayload:
    client_id: str | None = strawberry.field(
        description="The new client's id (`cl_...`); null when refused."
    )
    client_secret: str | None = strawberry.field(
        description="The client's secret (`cs_...`), shown this once only: store it now."
    )
    scopes: list[str] = strawberry.field(description="The scopes granted, sorted.")
    errors: list[UserError] = strawberry.field(
        description="Why it was refused; empty when the client was created."
    )


@strawberry.input(description="An API client to revoke.")
class RevokeApiClientInput:
    client_id: str = strawberry.field(description="The client's id (`cl_...`).")


@strawberry.type(description="The result of revokeApiClient.")
class RevokeApiClientPayload:
    client_id: str | None = strawberry.field(
        description="The revoked client's id; null when refused."
    )
    revoked_at: datetime | None = strawberry.field(
        description="When it was revoked (the first time, if revoked before)."
    )
    errors: list[UserError] = strawberry.field(
        description="Why it was refused; empty when the client is revoked."
    )


@strawberry.input(description="Changes to the coalition's economics: only the fields given change.")
class UpdateCoalitionSettingsInput:
    point_value: Decimal | None = strawberry.field(
        default=None,
        description="What one point is worth in currency units (at most 6 decimals, 0 to 1000000).",
    )
    default_region: str | None = strawberry.field(
        default=None,
        description="ISO 3166 region for phones without a country code (`RU`).",
    )
    funding_model: FundingModel | None = strawberry.field(
        default=None, description="Who pays for points, for transfers booked from now on."
    )
    clearing_fee: Decimal | None = strawberry.field(
        default=None,
        description="Redemption-funded: fee per point of another partner's redeemed (at most 6 decimals, 0 to 1000000).",
    )
    time_zone: str | None = strawberry.field(
        default=None,
        description="The coalition's time zone, an IANA name (`Europe/Moscow`, `UTC`): campaign"
        " conditions see a purchase's local hour and weekday in it.",
    )


@strawberry.type(description="The result of updateCoalitionSettings.")
class UpdateCoalitionSettingsPayload:
    settings: CoalitionSettings | None = strawberry.field(
        description="The settings now in force; null when refused."
    )
    errors: list[UserError] = strawberry.field(
        description="Why it was refused; empty when the settings changed."
    )


@strawberry.type
class PartnerQueries:
    @strawberry.field(
        description="Partners of the coalition (a partner's client sees only its own partner).",
        extensions=requires("partners", ANY_CLIENT),
    )
    async def partners(
        self, info: Info, first: First = None, after: After = None
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
        return connection([Partner.of(r) for r in rows], [r.id for r in rows], size, cursor)

    @strawberry.field(
        description="The coalition's economics.",
        extensions=requires("coalitionSettings", ANY_CLIENT),
    )
    async def coalition_settings(self, info: Info) -> CoalitionSettings:
        async with info.context.read() as conn:
            return CoalitionSettings.of(await settings.load_settings(conn))


@strawberry.type
class PartnerMutations:
    @strawberry.mutation(
        description="Operator: add a partner with its first rate card (in force from the"
        " beginning of time).",
        extensions=requires("createPartner", Scope.OPERATOR),
    )
    async def create_partner(
        self, info: Info, input: Request[CreatePartnerInput]
    ) -> CreatePartnerPayload:
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

    @strawberry.mutation(
        description="Operator: set a partner's prices from a date on (earlier transfers keep"
        " the prices they were booked with).",
        extensions=requires("setRateCard", Scope.OPERATOR),
    )
    async def set_rate_card(
        self, info: Info, input: Request[SetRateCardInput]
    ) -> SetRateCardPayload:
        async def work(conn: AsyncConnection) -> RateCard:
            _, partner_id = from_global_id(input.partner_id, "Partner", ["partnerId"])
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

    @strawberry.mutation(
        description="Operator: create an OAuth client for a partner (or the operator); its"
        " secret is shown once.",
        extensions=requires("createApiClient", Scope.OPERATOR),
    )
    async def create_api_client(
        self, info: Info, input: Request[CreateApiClientInput]
    ) -> CreateApiClientPayload:
        async def work(conn: AsyncConnection) -> clients.NewClient:
            partner_id = (
                from_global_id(input.partner_id, "Partner", ["partnerId"])[1]
                if input.partner_id
                else None
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
        description="Operator: revoke a client: its tokens stop working within seconds.",
        extensions=requires("revokeApiClient", Scope.OPERATOR),
    )
    async def revoke_api_client(
        self, info: Info, input: Request[RevokeApiClientInput]
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

    @strawberry.mutation(
        description="Operator: change the coalition's economics (point value, region, funding"
        " model, clearing fee) and time zone; prices in force when a transfer is booked stay its prices.",
        extensions=requires("updateCoalitionSettings", Scope.OPERATOR),
    )
    async def update_coalition_settings(
        self, info: Info, input: Request[UpdateCoalitionSettingsInput]
    ) -> UpdateCoalitionSettingsPayload:
        async def work(conn: AsyncConnection) -> CoalitionSettings:
            updated = await settings.update_settings(
                conn,
                point_value=input.point_value,
                default_region=input.default_region,
                funding_model=None if input.funding_model is None else input.funding_model.value,
                clearing_fee=input.clearing_fee,
                time_zone=input.time_zone,
            )
            requested = {
                "pointValue": input.point_value,
                "defaultRegion": input.default_region,
                "fundingModel": input.funding_model,
                "clearingFee": input.clearing_fee,
                "timeZone": input.time_zone,
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
