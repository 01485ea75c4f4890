"""A typed client generated from the checked-in SDL by a real code generator, as a partner's
integrator would: ariadne-codegen (Python, pydantic models) with strict scalar mappings
(`Decimal` to `decimal.Decimal`, `DateTime` to an aware `datetime.datetime`), from the
operations in tests/schema/codegen/operations.graphql (enroll, earn, redeem, a member with
its transfers, a settlement period).

The generated package must pass `mypy --strict` together with code that uses it, and then
talk to the running server: every Decimal and DateTime arrives as the Python type the
mapping promises, enums as enums, and the transfers connection pages as Relay expects.

ariadne-codegen pins graphql-core < 3.3 (strawberry needs >= 3.3), so it cannot share the
project's environment: it is installed once into its own virtualenv under .coalition-test/
(versions in tests/schema/codegen/requirements.txt); the generated code runs here.
"""

from __future__ import annotations

import fcntl
import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from schema.root import SDL_PATH
from tests.conftest import make_partner, partner_api, unique_phone

HERE = Path(__file__).with_name("codegen")
ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".coalition-test" / "tools" / "ariadne-codegen"
REQUIREMENTS = HERE / "requirements.txt"
PACKAGE = "coalition_client"


def codegen_tool() -> Path:
    """The ariadne-codegen command, installed into its own virtualenv when missing."""
    command = TOOLS / "bin" / "ariadne-codegen"
    installed = TOOLS / "requirements.txt"
    TOOLS.parent.mkdir(parents=True, exist_ok=True)
    # CI runs two test sessions side by side: one builds the tool while the other waits.
    with open(TOOLS.parent / "ariadne-codegen.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (
            command.exists()
            and installed.exists()
            and installed.read_text() == REQUIREMENTS.read_text()
        ):
            return command
        shutil.rmtree(TOOLS, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS)], check=True, timeout=300)
        subprocess.run(
            [
                str(TOOLS / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "-r",
                str(REQUIREMENTS),
            ],
            check=True,
            timeout=900,
        )
        shutil.copyfile(REQUIREMENTS, installed)
    return command


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory holding the generated package (and the files that made it)."""
    work = tmp_path_factory.mktemp("codegen")
    for name in (
        "pyproject.toml",
        "operations.graphql",
        "custom_scalars.py",
        "usage.py",
        "mypy.ini",
    ):
        shutil.copyfile(HERE / name, work / name)
    shutil.copyfile(SDL_PATH, work / "schema.graphql")
    (work / "out").mkdir()
    run = subprocess.run(
        [str(codegen_tool()), "client"], cwd=work, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert (work / "out" / PACKAGE / "client.py").exists()
    yield work / "out"


def test_the_generated_client_passes_mypy_strict_with_code_that_uses_it(generated: Path) -> None:
    shutil.copyfile(HERE / "usage.py", generated / "usage.py")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(HERE / "mypy.ini"),
            "--cache-dir",
            str(generated / ".mypy_cache"),
            "usage.py",
            PACKAGE,
        ],
        cwd=generated,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_generated_types_carry_the_schemas_enums_and_scalars(generated: Path) -> None:
    enums = (generated / PACKAGE / "enums.py").read_text()
    for enum in ("class ErrorCode(", "class TopLevelErrorCode(", "class ObligationKind("):
        assert enum in enums
    inputs = (generated / PACKAGE / "input_types.py").read_text()
    assert "amount: Annotated[Decimal, PlainSerializer(serialize_decimal)]" in inputs
    earn = (generated / PACKAGE / "earn.py").read_text()
    assert "BeforeValidator(parse_decimal)" in earn and "BeforeValidator(parse_datetime)" in earn


@pytest.fixture(scope="module")
def client_package(generated: Path) -> Iterator[ModuleType]:
    sys.path.insert(0, str(generated))
    try:
        yield importlib.import_module(f"{PACKAGE}.client")
    finally:
        sys.path.remove(str(generated))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


async def test_the_generated_client_talks_to_the_server_with_typed_values(
    engine: AsyncEngine, server: str, client_package: ModuleType
) -> None:
    inputs = importlib.import_module(f"{PACKAGE}.input_types")
    enums = importlib.import_module(f"{PACKAGE}.enums")
    shop = await make_partner(engine, earn_rate="0.1")
    api = await partner_api(engine, server, shop.id)
    headers = {"Authorization": f"Bearer {api.token()}"}
    phone = unique_phone()
    client: Any
    async with client_package.Client(url=f"{server}/graphql", headers=headers) as client:
        enrolled = (await client.enroll(inputs.EnrollMemberInput(phone=phone))).enroll_member
        assert enrolled.errors == [] and enrolled.member is not None
        member_id = enrolled.member.id

        ref = inputs.MemberRef(phone=phone)
        for n in range(3):
            earned = (
                await client.earn(
                    inputs.EarnPointsInput(
                        member=ref,
                        amount=Decimal("1499.90"),
                        reference=f"receipt-{n}",
                        idempotencyKey=f"earn-{phone}-{n}",
                        occurredAt=datetime.fromisoformat("2026-01-01T10:15:00+03:00")
                        if n == 0
                        else None,
                    )
                )
            ).earn_points
            assert earned.errors == [] and earned.points == 149
            transfer = earned.transfer
            assert transfer.code is enums.TransferCode.EARN
            assert isinstance(transfer.amount, Decimal) and transfer.amount == Decimal("1499.90")
            assert isinstance(transfer.created_at, datetime)
            assert transfer.created_at.utcoffset() is not None
        assert earned.explanation[0].points == 149

        redeemed = (
            await client.redeem(
                inputs.RedeemPointsInput(
                    member=inputs.MemberRef(id=member_id),
                    points=100,
                    reference="order-1",
                    idempotencyKey=f"burn-{phone}",
                )
            )
        ).redeem_points
        assert redeemed.errors == [] and redeemed.member.balance.available == 3 * 149 - 100
        assert isinstance(redeemed.value, Decimal) and redeemed.value == Decimal("100.00")

        # A refusal is data, with a typed code and the field as written.
        refused = (
            await client.redeem(
                inputs.RedeemPointsInput(
                    member=ref, points=10**6, reference="order-2", idempotencyKey=f"x-{phone}"
                )
            )
        ).redeem_points
        assert [(e.code, e.field) for e in refused.errors] == [
            (enums.ErrorCode.INSUFFICIENT_POINTS, ["points"])
        ]

        # The transfers connection, as Relay pages it: newest first, cursors, PageInfo.
        first = (await client.member_history(ref, first=2)).member.transfers
        assert [e.node.code for e in first.edges] == [
            enums.TransferCode.REDEEM,
            enums.TransferCode.EARN,
        ]
        info = first.page_info
        assert info.has_next_page and not info.has_previous_page
        assert (info.start_cursor, info.end_cursor) == (
            first.edges[0].cursor,
            first.edges[-1].cursor,
        )
        rest = (await client.member_history(ref, first=2, after=info.end_cursor)).member.transfers
        assert [e.node.reference for e in rest.edges] == ["receipt-1", "receipt-0"]
        assert rest.page_info.has_previous_page and not rest.page_info.has_next_page
        oldest = rest.edges[-1].node
        assert oldest.amount == Decimal("1499.90")

        period_id = (await client.current_period()).current_settlement_period.id
        period = (await client.period(period_id)).settlement_period
        assert period.status is enums.SettlementStatus.OPEN
        assert isinstance(period.starts_at, datetime) and period.cutoff is None
        # Burnt where they were earned: nothing owed between partners.
        assert all(isinstance(o.kind, enums.ObligationKind) for o in period.obligations)
