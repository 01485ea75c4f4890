"""The operator's own `partners` row (OPERATOR_PARTY, slug `_operator`, migration 0015) keeps
the foreign keys of the points it funds, and is never a partner to anyone."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from console.dashboard import load_dashboard
from core.caller import OPERATOR_PARTY
from core.errors import DomainError, ErrorCode
from partners import service
from partners.clients import create_client
from tests.conftest import make_partner


async def test_the_row_exists_for_the_foreign_keys(engine: AsyncEngine) -> None:
    async with engine.connect() as c:
        row = (
            await c.execute(
                text("SELECT slug, name, accepts_redemption FROM partners WHERE id = :o"),
                {"o": OPERATOR_PARTY},
            )
        ).one()
    assert (row.slug, row.name, row.accepts_redemption) == (
        "_operator",
        "Coalition operator",
        False,
    )


async def test_no_partner_read_returns_it(engine: AsyncEngine) -> None:
    partner = await make_partner(engine)
    async with engine.begin() as c:
        assert await service.get_partner(c, OPERATOR_PARTY) is None
        assert await service.get_partner_by_slug(c, "_operator") is None
        with pytest.raises(DomainError) as missing:
            await service.require_partner_by_slug(c, "_operator", ["partner"])
        assert missing.value.code == ErrorCode.PARTNER_NOT_FOUND
        found = await service.get_partners(c, [OPERATOR_PARTY, partner.id])
        assert set(found) == {partner.id}
        listed = await service.list_partners(c, after=None, limit=10_000, only=None)
        assert OPERATOR_PARTY not in {p.id for p in listed}
        assert partner.id in {p.id for p in listed}
        only = await service.list_partners(c, after=None, limit=10, only=OPERATOR_PARTY)
        assert only == []
        with pytest.raises(DomainError) as refused:
            await service.set_accepts_redemption(c, OPERATOR_PARTY, True)
        assert refused.value.code == ErrorCode.PARTNER_NOT_FOUND


async def test_it_gets_no_api_client(engine: AsyncEngine) -> None:
    async with engine.begin() as c:
        with pytest.raises(DomainError) as refused:
            await create_client(
                c, partner_id=OPERATOR_PARTY, scopes=["points:earn"], name="operator row"
            )
    assert refused.value.code == ErrorCode.PARTNER_NOT_FOUND


async def test_the_dashboard_does_not_count_it(engine: AsyncEngine) -> None:
    async with engine.connect() as c:
        dashboard = await load_dashboard(c, date.today(), date.today())
        rows = await c.scalar(text("SELECT count(*) FROM partners"))
    assert dashboard.partners == int(rows or 0) - 1
