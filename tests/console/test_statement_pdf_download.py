"""The console's PDF statement over HTTP with a signed-in session: finance and admin get the
PDF (the page links it next to the CSV), support and marketing 403, no session the sign-in
page; the same roles as the CSV route."""

from __future__ import annotations

import contextlib
import io
import re
import secrets
from collections.abc import Iterator

import httpx
from pypdf import PdfReader
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli.test_statement_pdf_cli import _burn
from tests.conftest import make_partner
from tests.console.conftest import StaffLogin, make_staff


@contextlib.contextmanager
def _signed_in(server: str, who: StaffLogin) -> Iterator[httpx.Client]:
    """An HTTP client signed in through the console's own form (its cookies kept)."""
    with httpx.Client(base_url=server, timeout=30) as http:
        yield _sign_in(http, who)


def _sign_in(http: httpx.Client, who: StaffLogin) -> httpx.Client:
    form = http.get("/console/sign-in")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    signed = http.post(
        "/console/sign-in",
        data={"csrf": token.group(1), "email": who.email, "password": who.password},
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/console/", signed.text
    return http


async def test_pdf_statement_for_finance_and_admin_refused_to_support(
    server: str, engine: AsyncEngine
) -> None:
    tag = secrets.token_hex(3)
    issuer = await make_partner(engine, name=f"Магнит {tag}")
    redeemer = await make_partner(engine, name=f"Cinema {tag}")
    await _burn(engine, issuer, redeemer, earn=60, burn=25)
    async with engine.connect() as conn:
        period = await conn.scalar(text("SELECT id FROM settlement_periods WHERE status = 'OPEN'"))
    path = f"/console/settlement/{period}/statements/{issuer.id}.pdf"

    for role in ("finance", "admin"):
        with _signed_in(server, await make_staff(engine, role)) as http:
            page = http.get(f"/console/settlement/{period}")
            assert page.status_code == 200
            assert f'href="{path}"' in page.text  # next to the CSV link
            assert f'href="{path.removesuffix(".pdf")}.csv"' in page.text
            got = http.get(path)
            assert got.status_code == 200, got.text
            assert got.headers["content-type"] == "application/pdf"
            assert got.headers["content-disposition"].startswith("attachment;")
            assert got.headers["cache-control"] == "no-store"
            pdf = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(got.content)).pages)
            assert issuer.name in pdf and redeemer.name in pdf and str(period) in pdf
            assert "Provisional" in pdf  # the OPEN period's live figures

    for role in ("support", "marketing"):
        with _signed_in(server, await make_staff(engine, role)) as http:
            refused = http.get(path)
            assert refused.status_code == 403, role
            assert b"%PDF" not in refused.content
            assert issuer.name not in refused.text

    anonymous = httpx.get(f"{server}{path}")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/console/sign-in"
