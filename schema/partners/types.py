"""GraphQL types of partners, rate cards, API clients and coalition settings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from partners.service import PartnerRecord, RateCardRecord, rate_cards
from partners.settings import CoalitionSettings as SettingsRecord
from schema.context import Info
from schema.relay import Node, to_global_id


@strawberry.type
class RateCard:
    effective_from: datetime
    earn_rate: Decimal = strawberry.field(description="Points per currency unit spent.")
    issue_price: Decimal = strawberry.field(description="Issuance-funded: price per point issued.")
    redeem_price: Decimal = strawberry.field(
        description="Issuance-funded: price per point redeemed."
    )

    @classmethod
    def of(cls, r: RateCardRecord) -> RateCard:
        return cls(
            effective_from=r.effective_from,
            earn_rate=r.earn_rate,
            issue_price=r.issue_price,
            redeem_price=r.redeem_price,
        )


@strawberry.type
class Partner(Node):
    slug: str
    name: str
    accepts_redemption: bool
    pending_days: int
    points_validity_days: int
    created_at: datetime
    record: strawberry.Private[PartnerRecord]

    @classmethod
    def of(cls, r: PartnerRecord) -> Partner:
        return cls(
            id=to_global_id("Partner", r.id),
            slug=r.slug,
            name=r.name,
            accepts_redemption=r.accepts_redemption,
            pending_days=r.pending_days,
            points_validity_days=r.points_validity_days,
            created_at=r.created_at,
            record=r,
        )

    @strawberry.field(
        description="Effective-dated rate cards, oldest first (only the partner itself and the"
        " operator see them; null for others)."
    )
    async def rate_cards(self, info: Info) -> list[RateCard] | None:
        if not info.context.caller.can_see_partner(self.record.id):
            return None
        async with info.context.read() as conn:
            return [RateCard.of(c) for c in await rate_cards(conn, self.record.id)]


@strawberry.type
class CoalitionSettings:
    currency: str
    currency_exponent: int
    point_value: Decimal
    default_region: str
    funding_model: str
    clearing_fee: Decimal

    @classmethod
    def of(cls, s: SettingsRecord) -> CoalitionSettings:
        return cls(
            currency=s.currency,
            currency_exponent=s.currency_exponent,
            point_value=s.point_value,
            default_region=s.default_region,
            funding_model=s.funding_model,
            clearing_fee=s.clearing_fee,
        )
