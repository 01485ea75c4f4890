"""GraphQL types of partners, rate cards, API clients and coalition settings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum

import strawberry

from partners.service import PartnerRecord, RateCardRecord, rate_cards
from partners.settings import CoalitionSettings as SettingsRecord
from schema.context import Info
from schema.enums import described_enum
from schema.relay import Node, to_global_id


class FundingModel(Enum):
    REDEMPTION = "REDEMPTION"
    ISSUANCE = "ISSUANCE"


described_enum(
    FundingModel,
    name="FundingModel",
    description="Who pays for points: how earns and redemptions turn into money between"
    " partners and the operator.",
    values={
        "REDEMPTION": "Redemption-funded (the default): earning costs nothing at the time;"
        " when A's points are redeemed at B, A owes B points × pointValue, and B owes the"
        " operator the clearing fee.",
        "ISSUANCE": "Issuance-funded (Payback style): a partner owes the operator its"
        " issuePrice per point it issues, and the operator pays a partner its redeemPrice"
        " per point redeemed there.",
    },
)


@strawberry.type(description="A partner's prices from a date on (effective-dated).")
class RateCard:
    effective_from: datetime = strawberry.field(
        description="From when the card applies (to purchases that happened from then on)."
    )
    earn_rate: Decimal = strawberry.field(
        description="Points per currency unit spent (points = floor(amount × earnRate))."
    )
    issue_price: Decimal = strawberry.field(
        description="Issuance-funded: what the partner pays the operator per point issued."
    )
    redeem_price: Decimal = strawberry.field(
        description="Issuance-funded: what the operator pays the partner per point redeemed."
    )

    @classmethod
    def of(cls, r: RateCardRecord) -> RateCard:
        return cls(
            effective_from=r.effective_from,
            earn_rate=r.earn_rate,
            issue_price=r.issue_price,
            redeem_price=r.redeem_price,
        )


@strawberry.type(description="A brand of the coalition, with its own API clients.")
class Partner(Node):
    slug: str = strawberry.field(
        description="Short unique name: lowercase letters, digits and dashes (`fresh-market`)."
    )
    name: str = strawberry.field(description="Display name.")
    accepts_redemption: bool = strawberry.field(
        description="Whether members can burn points here (some partners only issue them)."
    )
    pending_days: int = strawberry.field(
        description="Days points earned here stay pending (the return window) before they"
        " become available."
    )
    points_validity_days: int = strawberry.field(
        description="Days points earned here stay valid before they expire."
    )
    created_at: datetime = strawberry.field(description="When the partner joined.")
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


@strawberry.type(description="The coalition's economics, shared by every partner.")
class CoalitionSettings:
    currency: str = strawberry.field(
        description="The settlement currency (ISO 4217, such as `RUB`); every money amount is"
        " in it."
    )
    currency_exponent: int = strawberry.field(
        description="Decimals of the currency's minor unit (2 for RUB): the scale of money amounts."
    )
    point_value: Decimal = strawberry.field(
        description="What one point is worth in currency units, between partners."
    )
    default_region: str = strawberry.field(
        description="ISO 3166 region used to read phones written without a country code (`RU`)."
    )
    funding_model: FundingModel = strawberry.field(description="Who pays for points.")
    clearing_fee: Decimal = strawberry.field(
        description="Redemption-funded: what a redeeming partner owes the operator per point"
        " of another partner's it accepts."
    )
    time_zone: str = strawberry.field(
        description="The coalition's time zone (IANA name, `UTC` by default): campaign"
        " conditions see a purchase's local hour and weekday in it."
    )

    @classmethod
    def of(cls, s: SettingsRecord) -> CoalitionSettings:
        return cls(
            currency=s.currency,
            currency_exponent=s.currency_exponent,
            point_value=s.point_value,
            default_region=s.default_region,
            funding_model=FundingModel(s.funding_model),
            clearing_fee=s.clearing_fee,
            time_zone=s.time_zone,
        )
