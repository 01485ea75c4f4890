"""`coalition ingest`: a partner's file of purchases booked through the batch earn.

The file is CSV with the header `phone,partner_ref,amount,reference,occurred_at,idempotency_key`
and, optionally, `store_id`, `channel` and `lines` (any column order; one of phone and
partner_ref per row; occurred_at ISO 8601 with a time zone, or empty for "now"; store_id and
channel empty for none). `lines` holds the receipt's lines as a JSON array of objects
`{"sku": "A-1", "category": "coffee", "quantity": "2", "amount": "3.50"}` (`category` and
`quantity` optional, quantity 1 by default; numbers as JSON strings or plain JSON numbers,
written as the API's `Decimal`), empty for none; they must add up to the row's amount. A
`lines` cell that is not such an array rejects its row (INVALID_LINES, nothing booked for it),
as do lines the earn refuses. The whole file is parsed before anything is booked: a line that
cannot be read (wrong number of fields, an amount that is not a decimal written exactly as the
API's `Decimal`, such as "149.90", or a time that is not one) rejects the file with its line
number, and nothing changes. Readable rows are then booked in chunks, one
transaction per chunk, in `--jobs` lanes: rows are dealt to the lanes by member (so lanes do
not wait for each other's member locks), each lane books its rows in file order, and pricing
one lane's next chunk here overlaps the database booking another lane's. With `--jobs 1` the
file is booked strictly in file order. Rows the domain refuses (unknown member, bad amount,
reused key, ...) are listed with their line and code; the others are booked.
Every row carries its idempotency key, so running the same file again books nothing new.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.caller import Caller, Scope
from core.errors import DomainError, ErrorCode
from ledger.amounts import EXAMPLE, InvalidDecimal, parse_decimal
from members.service import MemberRef
from partners.clients import load_client
from partners.service import require_partner_by_slug
from points.batch import BatchOutcome, EarnRow, RowRejection, earn_points_batch
from points.rules.model import PurchaseLine

COLUMNS = ("phone", "partner_ref", "amount", "reference", "occurred_at", "idempotency_key")
OPTIONAL_COLUMNS = ("store_id", "channel", "lines")
LINE_KEYS = frozenset({"sku", "category", "quantity", "amount"})
DEFAULT_CHUNK = 10_000
MAX_ATTEMPTS = 4
RETRYABLE_SQLSTATES = {"40P01", "40001"}  # deadlock, serialization failure: run it again

console = Console(soft_wrap=True)  # a line per message, however long: scripts grep them
errors = Console(stderr=True, soft_wrap=True)


class MalformedFile(Exception):
    """The file cannot be read as purchases; nothing was booked."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass
class ParsedFile:
    rows: list[EarnRow]
    lines: list[int]  # the file line of each row (the header is line 1)
    # Rows refused while reading (a `lines` cell that is not a list of lines): (file line, why).
    refused: list[tuple[int, RowRejection]] = field(default_factory=list)


class BadLines(ValueError):
    """A `lines` cell that is not a JSON array of receipt lines."""

    def __init__(self, message: str, *path: str) -> None:
        super().__init__(message)
        self.path = ["lines", *path]


def _json_number(literal: str) -> Decimal:
    try:
        return parse_decimal(literal)
    except InvalidDecimal:
        raise BadLines(f"{literal!r} is not a number written like {EXAMPLE}") from None


def _refuse_constant(name: str) -> Any:
    raise BadLines(f"{name} is not a number")


def _number(value: object, *path: str) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        try:
            return parse_decimal(value)
        except InvalidDecimal:
            raise BadLines(f"{value!r:.40} is not a number written like {EXAMPLE}", *path) from None
    raise BadLines(f"a number written like {EXAMPLE} is expected", *path)


def parse_lines(cell: str) -> tuple[PurchaseLine, ...]:
    """A `lines` cell as receipt lines (empty: none), or BadLines. What the lines say (sums,
    lengths, decimals) is checked by the earn, as for earnPoints."""
    if not cell.strip():
        return ()
    try:
        data = json.loads(
            cell,
            parse_float=_json_number,
            parse_int=_json_number,
            parse_constant=_refuse_constant,
        )
    except BadLines:
        raise
    except ValueError as exc:
        raise BadLines(f"lines is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise BadLines("lines must be a JSON array of {sku, category, quantity, amount}")
    found = []
    for n, item in enumerate(data):
        at = str(n)
        if not isinstance(item, dict):
            raise BadLines("a line is a JSON object {sku, category, quantity, amount}", at)
        unknown = sorted(item.keys() - LINE_KEYS)
        if unknown:
            raise BadLines(f"a line has no field {unknown[0]!r}", at, unknown[0])
        sku, category = item.get("sku"), item.get("category")
        if not isinstance(sku, str):
            raise BadLines("sku is required, as a string", at, "sku")
        if category is not None and not isinstance(category, str):
            raise BadLines("category must be a string", at, "category")
        if "amount" not in item:
            raise BadLines("amount is required", at, "amount")
        quantity = _number(item.get("quantity", "1"), at, "quantity")
        found.append(PurchaseLine(sku, category, quantity, _number(item["amount"], at, "amount")))
    return tuple(found)


def parse_file(path: Path) -> ParsedFile:
    """Every row of the file, or MalformedFile for the first line that cannot be read."""
    rows: list[EarnRow] = []
    lines: list[int] = []
    refused: list[tuple[int, RowRejection]] = []
    refs: dict[tuple[str | None, str | None], MemberRef] = {}
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            header = next(reader, None)
            if header is None:
                raise MalformedFile(1, "the file is empty (a header line is expected)")
            names = [h.strip().lower() for h in header]
            if not set(COLUMNS) <= set(names) <= set(COLUMNS + OPTIONAL_COLUMNS) or len(
                set(names)
            ) != len(names):
                raise MalformedFile(
                    1,
                    f"the header must name the columns {','.join(COLUMNS)}, and may name"
                    f" {','.join(OPTIONAL_COLUMNS)} (got {header})",
                )
            at = {name: names.index(name) for name in names}
            i_phone, i_ref, i_amount = at["phone"], at["partner_ref"], at["amount"]
            i_reference, i_time, i_key = at["reference"], at["occurred_at"], at["idempotency_key"]
            i_store, i_channel = at.get("store_id"), at.get("channel")
            i_lines = at.get("lines")
            extras = i_store is not None or i_channel is not None or i_lines is not None
            width = len(names)
            for fields in reader:
                if not fields:
                    continue  # a blank line
                line = reader.line_num
                if len(fields) != width:
                    raise MalformedFile(line, f"expected {width} fields, found {len(fields)}")
                # The API's rule exactly (ledger.amounts), spaces included: "149.90", not
                # " 149.90", "1_000" or "1e3".
                raw_amount = fields[i_amount]
                try:
                    amount = parse_decimal(raw_amount)
                except InvalidDecimal:
                    raise MalformedFile(
                        line, f"amount {raw_amount!r} is not a number written like {EXAMPLE}"
                    ) from None
                raw_time = fields[i_time].strip()
                occurred_at = None
                if raw_time:
                    try:
                        occurred_at = datetime.fromisoformat(raw_time)
                    except ValueError:
                        raise MalformedFile(
                            line, f"occurred_at {raw_time!r} is not an ISO 8601 time"
                        ) from None
                phone = fields[i_phone].strip() or None
                partner_ref = fields[i_ref].strip() or None
                ref = refs.get((phone, partner_ref))
                if ref is None:
                    ref = refs[(phone, partner_ref)] = MemberRef(
                        phone=phone, partner_ref=partner_ref
                    )
                if not extras:
                    rows.append(
                        EarnRow(ref, amount, fields[i_reference], fields[i_key], occurred_at)
                    )
                    lines.append(line)
                    continue
                try:
                    receipt = () if i_lines is None else parse_lines(fields[i_lines])
                except BadLines as bad:
                    ordinal = len(rows) + len(refused)
                    refused.append(
                        (line, RowRejection(ordinal, ErrorCode.INVALID_LINES, str(bad), bad.path))
                    )
                    continue
                rows.append(
                    EarnRow(
                        ref,
                        amount,
                        fields[i_reference],
                        fields[i_key],
                        occurred_at,
                        receipt,
                        (fields[i_store] or None) if i_store is not None else None,
                        (fields[i_channel] or None) if i_channel is not None else None,
                    )
                )
                lines.append(line)
    except csv.Error as exc:
        raise MalformedFile(reader.line_num, f"not CSV: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise MalformedFile(len(lines) + 2, f"not UTF-8 text: {exc.reason}") from exc
    return ParsedFile(rows, lines, refused)


@dataclass
class ImportReport:
    rows: int = 0
    booked: int = 0
    transfers: int = 0
    replayed: int = 0
    points: int = 0
    seconds: float = 0.0
    rejected: list[tuple[int, RowRejection]] = field(default_factory=list)  # (file line, why)

    @property
    def earns_per_second(self) -> float:
        return self.booked / self.seconds if self.seconds else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
    return str(state) if state else None


async def _book_chunk(engine: AsyncEngine, caller: Caller, rows: Sequence[EarnRow]) -> BatchOutcome:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with engine.begin() as conn:
                return await earn_points_batch(conn, caller, rows)
        except DBAPIError as exc:
            if _sqlstate(exc) not in RETRYABLE_SQLSTATES or attempt == MAX_ATTEMPTS:
                raise
            await asyncio.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


async def import_rows(
    engine: AsyncEngine,
    caller: Caller,
    parsed: ParsedFile,
    *,
    chunk: int = DEFAULT_CHUNK,
    jobs: int = 2,
) -> ImportReport:
    """Book parsed rows in chunks of `chunk` rows, with `jobs` lanes in flight.

    Rows are dealt to lanes by the member they name, so two lanes rarely wait for each
    other's member locks and their transactions run side by side (while one lane's chunk is
    priced here, the other's is booked in the database). Each lane books its rows in file
    order; with one lane the whole file is booked in file order.
    """
    if chunk < 1 or jobs < 1:
        raise ValueError("chunk and jobs must be positive")
    report = ImportReport(rows=len(parsed.rows) + len(parsed.refused))
    report.rejected += parsed.refused
    lanes: list[list[int]] = [[] for _ in range(jobs)]
    for i, row in enumerate(parsed.rows):
        ref = row.member
        lanes[hash((ref.phone, ref.partner_ref, ref.id)) % jobs if jobs > 1 else 0].append(i)

    async def lane(indexes: list[int]) -> None:
        for start in range(0, len(indexes), chunk):
            part = indexes[start : start + chunk]
            outcome = await _book_chunk(engine, caller, [parsed.rows[i] for i in part])
            report.booked += outcome.booked
            report.transfers += outcome.transfers
            report.points += outcome.points
            report.replayed += len(outcome.replayed)
            report.rejected += [(parsed.lines[part[r.index]], r) for r in outcome.rejected]

    began = time.perf_counter()
    await asyncio.gather(*(lane(indexes) for indexes in lanes if indexes))
    report.seconds = time.perf_counter() - began
    report.rejected.sort(key=lambda item: item[0])
    return report


async def caller_for(engine: AsyncEngine, partner_slug: str, client_id: str | None) -> Caller:
    """The partner the file books for, as the API client whose keys it shares (default: the
    partner's file-import client `ingest:<slug>`, a key space of its own)."""
    async with engine.connect() as conn:
        partner = await require_partner_by_slug(conn, partner_slug, ["partner"])
        if client_id is None:
            return Caller(f"ingest:{partner.slug}", partner.id, frozenset({Scope.POINTS_EARN}))
        client = await load_client(conn, client_id)
    if client is None or client.partner_id != partner.id or not client.active:
        raise DomainError(
            ErrorCode.CLIENT_NOT_FOUND, f"no active client {client_id!r} of {partner.slug}", []
        )
    if Scope.POINTS_EARN not in client.scopes:
        raise DomainError(ErrorCode.INVALID_SCOPE, f"{client_id} lacks points:earn", [])
    return Caller(client.client_id, partner.id, frozenset(client.scopes))


async def ingest_file(
    engine: AsyncEngine,
    partner_slug: str,
    path: Path,
    *,
    chunk: int = DEFAULT_CHUNK,
    jobs: int = 2,
    client_id: str | None = None,
) -> ImportReport:
    """Parse the whole file (MalformedFile: nothing booked), then book it; timed end to end."""
    began = time.perf_counter()
    caller = await caller_for(engine, partner_slug, client_id)
    # A file is hundreds of thousands of long-lived objects (rows, amounts, times) and the
    # import makes no reference cycles: the cyclic collector would only rescan them, again
    # and again (a third of the import's CPU). Reference counting still frees everything.
    collecting = gc.isenabled()
    gc.disable()
    try:
        parsed = parse_file(path)
        report = await import_rows(engine, caller, parsed, chunk=chunk, jobs=jobs)
    finally:
        if collecting:
            gc.enable()
    report.seconds = time.perf_counter() - began
    return report


def _write_rejects(path: Path, report: ImportReport) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "code", "message", "field"])
        for line, r in report.rejected:
            writer.writerow([line, str(r.code), r.message, ".".join(r.field or [])])


def ingest(
    partner: Annotated[str, typer.Option(help="The partner's slug (the issuer of the points).")],
    file: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="CSV of purchases to book.")
    ],
    chunk: Annotated[int, typer.Option(min=1, help="Rows per transaction.")] = DEFAULT_CHUNK,
    jobs: Annotated[
        int, typer.Option(min=1, max=8, help="Lanes (transactions in flight); 1: file order.")
    ] = 2,
    client: Annotated[
        str | None,
        typer.Option(help="Book as this API client of the partner (shares its keys)."),
    ] = None,
    rejects: Annotated[
        Path | None, typer.Option(help="Write every rejected row (line, code) to this CSV.")
    ] = None,
) -> None:
    """Book a partner's purchases from a CSV file (re-running the same file books nothing)."""
    from db.embedded import database_url
    from db.engine import create_engine
    from db.migrate import upgrade

    url = database_url()
    upgrade(url)

    async def go() -> ImportReport:
        engine = create_engine(url, pool_size=jobs)
        try:
            return await ingest_file(
                engine, partner, file, chunk=chunk, jobs=jobs, client_id=client
            )
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(go())
    except MalformedFile as exc:
        errors.print(
            f"[red]rejected {escape(str(file))}[/red]: {escape(str(exc))} (nothing was booked)"
        )
        raise typer.Exit(1) from exc
    except DomainError as exc:
        errors.print(f"[red]{exc.code}[/red]: {escape(exc.message)}")
        raise typer.Exit(1) from exc
    console.print(
        f"{report.rows:,} rows: booked {report.booked:,} ({report.points:,} points,"
        f" {report.transfers:,} transfers), replayed {report.replayed:,},"
        f" rejected {len(report.rejected):,}"
    )
    console.print(
        f"{report.seconds:.2f} s, {report.earns_per_second:,.0f} earns/s"
        f" ({report.rows_per_second:,.0f} rows/s)"
    )
    shown = report.rejected[:20]
    for line, r in shown:
        console.print(f"  line {line}: {r.code} {escape(r.message)}")
    if len(report.rejected) > len(shown):
        console.print(f"  ... and {len(report.rejected) - len(shown):,} more")
    if rejects is not None:
        _write_rejects(rejects, report)
        console.print(f"rejected rows written to {rejects}")
