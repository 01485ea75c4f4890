"""`coalition settlement statement --format pdf`: a real process writes the PDF; its text
(read back with pypdf) carries the partner (a Cyrillic name), the period, and the exact net
and instruction amounts stored for it, and nothing of a partner it has no business with."""

from __future__ import annotations

import io
import json
import secrets
import subprocess
from datetime import UTC
from decimal import Decimal
from pathlib import Path

from pypdf import PdfReader
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from members.service import MemberRef, enroll
from partners.service import PartnerRecord
from points.service import earn_points, redeem_points
from tests.cli.test_cli import COALITION, env_with, run
from tests.conftest import make_partner, partner_caller, unique_phone


async def _burn(
    engine: AsyncEngine, issuer: PartnerRecord, redeemer: PartnerRecord, earn: int, burn: int
) -> None:
    """A member earns `earn` points at the issuer and burns `burn` of them at the redeemer."""
    phone = unique_phone()
    async with engine.begin() as c:
        for p in (issuer, redeemer):
            await enroll(c, partner_caller(p.id), phone=phone, partner_ref=None)
        await earn_points(
            c,
            partner_caller(issuer.id),
            member=MemberRef(phone=phone),
            amount=Decimal(earn),
            reference=f"E-{secrets.token_hex(3)}",
            occurred_at=None,
            idempotency_key=secrets.token_hex(8),
        )
        await redeem_points(
            c,
            partner_caller(redeemer.id),
            member=MemberRef(phone=phone),
            points=burn,
            reference=f"B-{secrets.token_hex(3)}",
            idempotency_key=secrets.token_hex(8),
        )


def _pdf_text(document: bytes) -> str:
    assert document.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(document)).pages)


def _money(minor: int, exponent: int, currency: str) -> str:
    """Independently of the renderer: exact units with every minor digit, from Decimal."""
    units = (Decimal(minor) / (Decimal(10) ** exponent)).quantize(Decimal(1).scaleb(-exponent))
    return f"{units:f} {currency}"


def _statement_pdf(env: dict[str, str], period_id: str, slug: str, out: Path) -> str:
    made = run(
        [
            "settlement",
            "statement",
            "--period",
            period_id,
            "--partner",
            slug,
            "--format",
            "pdf",
            "--output",
            str(out),
        ],
        env,
    )
    assert made.returncode == 0, made.stderr
    return _pdf_text(out.read_bytes())


async def test_statement_pdf_carries_the_partners_figures_and_no_one_elses(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    tag = secrets.token_hex(3)
    issuer = await make_partner(engine, name=f"Пятёрочка «Север» {tag}")
    redeemer = await make_partner(engine, name=f"Кинотеатр Октябрь {tag}")
    stranger = await make_partner(engine, name=f"Stranger issuer {tag}")
    strangers_redeemer = await make_partner(engine, name=f"Stranger cinema {tag}")
    await _burn(engine, issuer, redeemer, earn=80, burn=30)
    await _burn(engine, stranger, strangers_redeemer, earn=90, burn=47)

    env = env_with(DATABASE_URL=database_url)
    closed = run(["settlement", "close"], env)
    assert closed.returncode == 0, closed.stderr
    period_id = closed.stdout.split("closed period ", 1)[1].split()[0]

    async with engine.connect() as conn:
        settings = (
            await conn.execute(
                text("SELECT currency, currency_exponent FROM coalition_settings WHERE id = 1")
            )
        ).one()
        ours = (
            await conn.execute(
                text(
                    "SELECT id, payer_id, payee_id, amount FROM settlement_instructions"
                    " WHERE period_id = :p AND :me IN (payer_id, payee_id) ORDER BY id"
                ),
                {"p": period_id, "me": issuer.id},
            )
        ).all()
    assert ours, "the issuer owes the redeemer: it has something to pay"
    reference = f"BANK-{tag}"
    paid = run(
        ["settlement", "pay", "--instruction", str(ours[0].id), "--reference", reference], env
    )
    assert paid.returncode == 0, paid.stderr

    async with engine.connect() as conn:
        net = await conn.scalar(
            text("SELECT net FROM settlement_statements WHERE period_id = :p AND party_id = :me"),
            {"p": period_id, "me": issuer.id},
        )
        period = (
            await conn.execute(
                text("SELECT starts_at, cutoff FROM settlement_periods WHERE id = :p"),
                {"p": period_id},
            )
        ).one()
    exp, currency = settings.currency_exponent, settings.currency
    assert net is not None and net < 0

    pdf = _statement_pdf(env, period_id, issuer.slug, tmp_path / "issuer.pdf")
    assert issuer.name in pdf  # Cyrillic, from the embedded font
    assert redeemer.name in pdf  # its counterparty on the gross line
    assert period_id in pdf
    for moment in (period.starts_at, period.cutoff):
        assert moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") in pdf
    assert "CLOSED" in pdf or "SETTLED" in pdf
    assert currency in pdf
    assert f"Net (+ to receive, − to pay) {_money(net, exp, currency)}" in pdf
    for ins in ours:
        signed = ins.amount if ins.payee_id == issuer.id else -ins.amount
        assert _money(signed, exp, currency) in pdf
        assert str(ins.id) in pdf
    assert reference in pdf and "PAID" in pdf
    if len(ours) > 1:
        assert "UNPAID" in pdf

    # The same record as the JSON statement: every figure agrees.
    as_json = run(
        [
            "settlement",
            "statement",
            "--period",
            period_id,
            "--partner",
            issuer.slug,
            "--format",
            "json",
        ],
        env,
    )
    assert as_json.returncode == 0, as_json.stderr
    statement = json.loads(as_json.stdout)
    assert statement["net"] == net
    for name in ("points_issued", "points_redeemed_elsewhere", "others_points_redeemed_here"):
        assert f"{statement[name]} points" in pdf
    for name, amount in statement["amounts"].items():
        assert f"{amount} {currency}" in pdf, name

    # A payer is never paired with another payer, nor has a line with it: the stranger (and
    # its figures) never appear in the issuer's statement, and the other way round.
    for leak in (stranger.name, stranger.slug, str(stranger.id)):
        assert leak not in pdf
    theirs = _statement_pdf(env, period_id, stranger.slug, tmp_path / "stranger.pdf")
    assert stranger.name in theirs and strangers_redeemer.name in theirs
    for leak in (issuer.name, issuer.slug, str(issuer.id), "Пятёрочка", reference):
        assert leak not in theirs


async def test_statement_pdf_to_a_redirected_stdout(engine: AsyncEngine, database_url: str) -> None:
    env = env_with(DATABASE_URL=database_url)
    async with engine.connect() as conn:
        period_id = str(
            await conn.scalar(text("SELECT id FROM settlement_periods WHERE status = 'OPEN'"))
        )
    result = subprocess.run(
        [
            *COALITION,
            "settlement",
            "statement",
            "--period",
            period_id,
            "--partner",
            "operator",
            "--format",
            "pdf",
        ],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    pdf = _pdf_text(result.stdout)
    assert "Operator" in pdf and period_id in pdf and "Provisional" in pdf

    bad = run(
        ["settlement", "statement", "--period", period_id, "--partner", "x", "--format", "xls"], env
    )
    assert bad.returncode == 2 and "csv, json or pdf" in bad.stderr
