"""Amounts are accepted in exactly one format: `^-?[0-9]+(\\.[0-9]+)?$`, as a string.

Python's Decimal reads "1_000" as 1000, " 10 " as 10, "١٠" (Arabic-Indic digits) as 10 and a
JSON float 12.5 as 12.5. None of that is what a till prints, and what a partner's system
sends by mistake must not be booked as something else: the API, the batch and the CSV file
refuse it the same way.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.ingest_cli import MalformedFile, parse_file
from core.errors import DomainError, ErrorCode
from ledger.amounts import InvalidDecimal, parse_decimal
from settlement.report_csv import parse_report_csv
from tests.api.helpers import BALANCE, TRANSFERS, Shop, key, make_shop, payload, user_errors
from tests.conftest import Api, unique_phone, unique_slug

GOOD = ["149.90", "10", "0.01", "007", "1000000000"]
# Lenient readings Python's Decimal allows, and other near misses.
BAD_TEXT = [
    "1_000",
    " 10 ",
    "10 ",
    "\t10",
    "10\n",
    "١٠",  # Arabic-Indic digits
    "１０",  # fullwidth digits
    "1e3",
    "1E-2",
    "+5",
    ".5",
    "5.",
    "12,50",
    "0x10",
    "NaN",
    "-Infinity",
    "",
    "1" * 65,
]
BAD_JSON: list[Any] = [12.5, 10, 0, True, None, [], {}]


def test_the_format() -> None:
    for text in [*GOOD, "-1", "0", "-0.5", "0.000001"]:
        assert parse_decimal(text) == Decimal(text)
    for value in [*BAD_TEXT, *BAD_JSON]:
        with pytest.raises(InvalidDecimal):
            parse_decimal(value)


async def _member(shop: Shop) -> dict[str, str]:
    phone = unique_phone()
    shop.enroll(phone)
    return {"phone": phone}


EARN = """mutation($input: EarnPointsInput!) { earnPoints(input: $input) {
  points transfer { id amount } errors { code message field } } }"""


async def test_earn_accepts_only_decimal_strings(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    for amount in [*BAD_TEXT, *BAD_JSON]:
        if amount is None:
            continue  # `amount: Decimal!`: null is refused by GraphQL itself
        body = shop.api.gql(
            EARN,
            {
                "input": {
                    "member": member,
                    "amount": amount,
                    "reference": f"R-{key()}",
                    "idempotencyKey": key(),
                }
            },
        )
        assert "errors" not in body, (amount, body)
        result = body["data"]["earnPoints"]
        assert user_errors(result) == ["INVALID_AMOUNT"], (amount, result)
        assert result["errors"][0]["field"] == ["amount"]
        assert "149.90" in result["errors"][0]["message"]
        assert result["transfer"] is None and result["points"] == 0
    # Nothing was booked.
    assert shop.api.data(BALANCE, {"ref": member})["member"]["balance"]["available"] == 0
    assert shop.api.data(TRANSFERS, {"ref": member})["member"]["transfers"]["edges"] == []

    # A float written in the query itself is refused the same way.
    literal = shop.api.gql(
        """mutation($phone: String!, $key: String!) { earnPoints(input: {member: {phone: $phone},
        amount: 12.5, reference: "R", idempotencyKey: $key}) { errors { code field } } }""",
        {"phone": member["phone"], "key": key()},
    )
    assert literal["data"]["earnPoints"]["errors"] == [
        {"code": "INVALID_AMOUNT", "field": ["amount"]}
    ]

    # The documented format books, and comes back in it (with the currency's decimals).
    for amount, shown in (("149.90", "149.90"), ("10", "10.00"), ("2.5", "2.50")):
        earn = {"member": member, "amount": amount, "reference": "R", "idempotencyKey": key()}
        booked = payload(shop.api, EARN, earn, "earnPoints")
        assert booked["errors"] == [] and booked["transfer"]["amount"] == shown


BATCH = """mutation($input: EarnPointsBatchInput!) { earnPointsBatch(input: $input) {
  booked rejected points rejectedRows { index code field } errors { code } } }"""


async def test_batch_refuses_bad_amounts_per_row(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    member = await _member(shop)
    amounts: list[Any] = ["10", "1_000", " 10 ", "١٠", 12.5, "2.50"]
    rows = [
        {"member": member, "amount": a, "reference": f"R-{i}", "idempotencyKey": key()}
        for i, a in enumerate(amounts)
    ]
    result = shop.api.data(BATCH, {"input": {"rows": rows}})["earnPointsBatch"]
    assert result["errors"] == []
    assert (result["booked"], result["rejected"], result["points"]) == (2, 4, 12)
    assert result["rejectedRows"] == [
        {"index": i, "code": "INVALID_AMOUNT", "field": ["amount"]} for i in (1, 2, 3, 4)
    ]
    assert shop.api.data(BALANCE, {"ref": member})["member"]["balance"]["available"] == 12


CREATE_PARTNER = """mutation($input: CreatePartnerInput!) { createPartner(input: $input) {
  partner { id } errors { code field } } }"""
UPDATE_SETTINGS = """mutation($input: UpdateCoalitionSettingsInput!) {
  updateCoalitionSettings(input: $input) { settings { pointValue } errors { code field } } }"""


async def test_rates_and_prices_use_the_same_format(operator_api: Api) -> None:
    for rate in ["1_000", " 1 ", "١", 1.5]:
        slug = unique_slug()
        created = payload(
            operator_api,
            CREATE_PARTNER,
            {"name": "Lenient", "slug": slug, "earnRate": rate},
            "createPartner",
        )
        assert created["errors"] == [{"code": "INVALID_AMOUNT", "field": ["earnRate"]}], rate
        assert created["partner"] is None
        updated = payload(
            operator_api, UPDATE_SETTINGS, {"pointValue": rate}, "updateCoalitionSettings"
        )
        assert updated["errors"] == [{"code": "INVALID_AMOUNT", "field": ["pointValue"]}], rate


# ---- files: the same rule, one implementation --------------------------------------------

HEADER = "phone,partner_ref,amount,reference,occurred_at,idempotency_key\n"


@pytest.mark.parametrize("amount", ["1_000", " 10", "10 ", "١٠", "1e3", "+5", "NaN"])
def test_ingest_file_refuses_lenient_amounts(tmp_path: Path, amount: str) -> None:
    path = tmp_path / "day.csv"
    path.write_text(HEADER + "+79120000101,,10,R-1,,k-1\n" + f"+79120000101,,{amount},R-2,,k-2\n")
    with pytest.raises(MalformedFile) as refused:
        parse_file(path)
    assert refused.value.line == 3 and "amount" in refused.value.reason


def test_ingest_file_reads_the_format(tmp_path: Path) -> None:
    path = tmp_path / "day.csv"
    path.write_text(HEADER + '+79120000101,,149.90,R-1,,k-1\n+79120000101,,"-5",R-2,,k-2\n')
    assert [row.amount for row in parse_file(path).rows] == [Decimal("149.90"), Decimal("-5")]


@pytest.mark.parametrize(("points", "amount"), [("10", "1_000"), ("10", "1e3"), ("١٠", "5")])
def test_partner_report_file_refuses_lenient_numbers(points: str, amount: str) -> None:
    with pytest.raises(DomainError) as refused:
        parse_report_csv(f"reference,kind,points,amount\nR-1,EARN,{points},{amount}\n")
    assert refused.value.code == ErrorCode.REPORT_INVALID
    assert refused.value.message.startswith("line 2:")
