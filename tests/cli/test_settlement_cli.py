"""`coalition settlement ...` as the operator runs it."""

from __future__ import annotations

import csv
import io
import json
import secrets
from decimal import Decimal
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from members.service import MemberRef, enroll
from points.service import earn_points, redeem_points
from tests.cli.test_cli import env_with, run
from tests.conftest import make_partner, partner_caller, unique_phone


async def _activity(engine: AsyncEngine) -> tuple[str, str, str]:
    """Issuer's points burnt at a redeemer; returns (issuer slug, redeemer slug, phone)."""
    issuer = await make_partner(engine)
    redeemer = await make_partner(engine)
    phone = unique_phone()
    async with engine.begin() as c:
        for p in (issuer, redeemer):
            await enroll(c, partner_caller(p.id), phone=phone, partner_ref=None)
        await earn_points(
            c,
            partner_caller(issuer.id),
            member=MemberRef(phone=phone),
            amount=Decimal("80"),
            reference="E-1",
            occurred_at=None,
            idempotency_key=secrets.token_hex(8),
        )
        await redeem_points(
            c,
            partner_caller(redeemer.id),
            member=MemberRef(phone=phone),
            points=30,
            reference="B-1",
            idempotency_key=secrets.token_hex(8),
        )
    return issuer.slug, redeemer.slug, phone


async def test_close_statement_verify_and_report_from_the_cli(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    issuer, redeemer, _ = await _activity(engine)
    env = env_with(DATABASE_URL=database_url)
    periods = run(["settlement", "periods"], env)
    assert periods.returncode == 0, periods.stderr
    closed = run(["settlement", "close"], env)
    assert closed.returncode == 0, closed.stderr
    period_id = closed.stdout.split("closed period ", 1)[1].split()[0]

    as_json = run(
        [
            "settlement",
            "statement",
            "--period",
            period_id,
            "--partner",
            redeemer,
            "--format",
            "json",
        ],
        env,
    )
    assert as_json.returncode == 0, as_json.stderr
    statement = json.loads(as_json.stdout)
    assert statement["others_points_redeemed_here"] == 30
    assert statement["gross_receivable"] == 3000  # minor units: 30 points × 1.00

    out = tmp_path / "issuer.csv"
    as_csv = run(
        [
            "settlement",
            "statement",
            "--period",
            period_id,
            "--partner",
            issuer,
            "--format",
            "csv",
            "--output",
            str(out),
        ],
        env,
    )
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    summary = {r["name"]: r for r in rows if r["section"] == "summary"}
    assert summary["points_redeemed_elsewhere"]["points"] == "30"

    verified = run(["settlement", "verify", "--period", period_id], env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "ok" in verified.stdout

    report = tmp_path / "report.csv"
    report.write_text("reference,kind,points,amount\nE-1,EARN,80,80\nX-404,EARN,3,3\n")
    reconciled = run(
        ["settlement", "report", "--period", period_id, "--partner", issuer, "--file", str(report)],
        env,
    )
    assert reconciled.returncode == 0, reconciled.stderr
    assert "1 breaks" in reconciled.stdout and "MISSING_IN_LEDGER" in reconciled.stdout


def test_a_malformed_report_file_names_the_line_and_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    env = env_with(DATABASE_URL=database_url)
    listed = run(["settlement", "periods"], env)
    assert listed.returncode == 0
    report = tmp_path / "bad.csv"
    report.write_text("reference,kind,points,amount\nA-1,EARN,10,10\nA-2,EARN,ten,10\n")
    result = run(
        [
            "settlement",
            "report",
            "--period",
            "00000000-0000-7000-8000-000000000000",
            "--partner",
            "operator",
            "--file",
            str(report),
        ],
        env,
    )
    assert result.returncode == 1
    assert "REPORT_INVALID" in result.stderr and "line 3" in result.stderr
