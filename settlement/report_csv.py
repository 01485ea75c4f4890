"""A partner's report as CSV: header `reference,kind,points,amount` (amount may be empty).

The first bad line rejects the whole file (DomainError REPORT_INVALID, "line N: reason"),
before anything is stored.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from core.errors import DomainError, ErrorCode
from ledger.amounts import InvalidDecimal, parse_decimal
from settlement.records import ReportLine

HEADER = ["reference", "kind", "points", "amount"]
KINDS = ("EARN", "REDEEM", "REVERSAL")
MAX_POINTS = 10**12
MAX_AMOUNT = Decimal("1000000000")
MAX_RECORDS = 100_000


def _invalid(line: int, reason: str) -> DomainError:
    return DomainError(ErrorCode.REPORT_INVALID, f"line {line}: {reason}", ["file"])


def check_line(line: int, reference: str, kind: str, points: int, amount: Decimal | None) -> None:
    """The rules a record obeys, from a file or from the API (`line` is its position)."""
    if not reference.strip() or len(reference) > 200:
        raise _invalid(line, "reference must be 1 to 200 characters")
    if kind not in KINDS:
        raise _invalid(line, f"kind must be one of {', '.join(KINDS)}")
    if not 0 < points <= MAX_POINTS:
        raise _invalid(line, f"points must be 1 to {MAX_POINTS}")
    if amount is not None and (
        not amount.is_finite()
        or amount < 0
        or amount > MAX_AMOUNT
        or amount.as_tuple().exponent < -6  # type: ignore[operator]
    ):
        raise _invalid(line, f"amount must be 0 to {MAX_AMOUNT} with at most 6 decimals")


def parse_report_csv(content: str) -> list[ReportLine]:
    reader = csv.reader(io.StringIO(content.lstrip("\ufeff")), strict=True)
    records: list[ReportLine] = []
    try:
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header] != HEADER:
            raise _invalid(1, f"the header must be {','.join(HEADER)}")
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank lines carry nothing
            if len(row) != len(HEADER):
                raise _invalid(line, f"expected {len(HEADER)} fields, found {len(row)}")
            reference, kind, points_text, amount_text = (field.strip() for field in row)
            if not (points_text.isascii() and points_text.isdigit()):  # not "١٠" either
                raise _invalid(line, f"points {points_text!r} is not a whole number")
            amount = None
            if amount_text:
                try:  # the API's Decimal format exactly: not "1_000", "1e3" or "١٠"
                    amount = parse_decimal(amount_text)
                except InvalidDecimal:
                    raise _invalid(line, f"amount {amount_text!r} is not a number") from None
            check_line(line, reference, kind.upper(), int(points_text), amount)
            records.append(ReportLine(reference, kind.upper(), int(points_text), amount))
            if len(records) > MAX_RECORDS:
                raise _invalid(line, f"a report holds at most {MAX_RECORDS} records")
    except csv.Error as exc:
        raise _invalid(reader.line_num, f"malformed CSV ({exc})") from None
    return records
