"""Property-based fuzzing of every mutation's input over real HTTP.

Each field of each mutation's input gets arbitrary JSON-ish values (unicode, huge and empty
strings, NUL bytes, negative/huge/float-like numbers, Decimal edge cases such as "NaN" and
"1e999999", dates out of range, wrong types, nested objects, missing fields), sent either as
variables or inlined as GraphQL literals. For every request:

- the server never answers 5xx, never INTERNAL_ERROR, and no message leaks internals;
- a rejected request (GraphQL errors, or payload `errors`) changed nothing: the row counts of
  the ledger, member, partner and client tables are what they were before it.

A fuzzer whose every request dies in GraphQL validation would pass all of that while testing
nothing past the parser, so the run also proves it reaches the resolvers: each mutation's
valid input (the control, sent as variables and inlined) gets past validation, and a good
fraction of the fuzzed requests do too (booked, or refused by the domain with a coded error).

`closeSettlementPeriod` closes the one shared OPEN period, so only invalid cutoffs are sent
(and it must refuse every one of them); `updateCoalitionSettings` is put back after any
example that it accepted.
"""

from __future__ import annotations

import asyncio
import json
import os
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.errors import ErrorCode
from schema.relay import to_global_id
from schema.root import build_schema
from tests.api.helpers import key
from tests.conftest import (
    PARTNER_SCOPES,
    Api,
    make_client,
    make_partner,
    partner_api,
    unique_phone,
)
from tests.schema.lint import input_path_exists

EXAMPLES = int(os.environ.get("COALITION_FUZZ_EXAMPLES", "25"))  # per mutation
# Outcomes of a request that got past GraphQL validation and ran its resolver.
REACHED = {"accepted", "payload errors", "coded error"}
# Of the fuzzed requests, at least this share must reach a resolver. A run reaches about 30 %
# (most fuzz is of the wrong type and is refused by validation, as it should be); 15 % is
# far below what chance gives over 325 requests, and far above zero.
MIN_REACHED_SHARE = 0.15
DOMAIN_CODES = {code.value for code in ErrorCode}
SCHEMA = build_schema()._schema
assert SCHEMA.mutation_type is not None
INPUT_TYPES = {
    name: str(field.args["input"].type).rstrip("!")
    for name, field in SCHEMA.mutation_type.fields.items()
}
LEAK_MARKERS = (
    "Traceback",
    "Error(",
    'File "',
    "sqlalchemy",
    "asyncpg",
    "psycopg",
    "site-packages",
)

# ---- values ------------------------------------------------------------------------------

huge_text = st.integers(min_value=1_000, max_value=120_000).map(lambda n: "x" * n)
nasty_text = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud7ff",
        "\u202e",
        "'; DROP TABLE transfers; --",
        "%s%s%n",
        "${jndi:ldap://x}",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "👍🏽" * 60,
        "\r\n\t",
        "null",
        "__typename",
    ]
)
texts = st.one_of(st.text(max_size=40), nasty_text, nasty_text, st.text(max_size=300), huge_text)
decimal_strings = st.one_of(
    st.sampled_from(
        [
            "NaN",
            "-NaN",
            "sNaN",
            "Infinity",
            "-Infinity",
            "inf",
            "1e999999",
            "-1e999999",
            "1E-999999",
            "1e999999999999",
            "-0",
            "0",
            "0.0000001",
            "0.001",
            "1e6",
            "1000000.000001",
            "1000000001",
            " 12.5 ",
            "1_000",
            "0x10",
            "12,50",
            "١٢٣",
            "9" * 60,
            "0." + "0" * 60 + "1",
            "149.90",
            "1",
            "2.5",
        ]
    ),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
int_values = st.one_of(
    st.integers(min_value=-5, max_value=200),
    st.integers(),
    st.sampled_from([0, -1, 2**31 - 1, 2**31, -(2**31) - 1, 10**12, 10**12 + 1, 2**63, 10**40]),
)
scalar_junk = st.one_of(
    st.none(),
    st.booleans(),
    int_values,
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
junk = st.recursive(
    scalar_junk,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(string.ascii_letters, max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _iso(value: datetime) -> str:
    return value.isoformat()


datetime_strings = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59-14:00",
            "9999-12-31T23:59:59.999999+00:00",
            "2024-13-45T25:61:61Z",
            "2024-02-30T00:00:00Z",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00+99:00",
            "now",
            "yesterday",
            "1700000000",
        ]
    ),
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ).map(_iso),
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))]
        ),
    ).map(_iso),
    st.datetimes().map(_iso),
)


def id_values(*valid: str) -> st.SearchStrategy[Any]:
    import base64

    forged = [
        base64.urlsafe_b64encode(raw.encode()).decode()
        for raw in (
            "Transfer:not-a-uuid",
            "Transfer:00000000-0000-0000-0000-000000000000",
            "Hold:00000000-0000-0000-0000-000000000000",
            "Partner:00000000-0000-0000-0000-000000000000",
            "SettlementPeriod:00000000-0000-0000-0000-000000000000",
            "Member:ffffffff-ffff-ffff-ffff-ffffffffffff",
            ":",
            "\x00:\x00",
        )
    ]
    return st.one_of(
        st.sampled_from([*valid, *forged, "", "=", "====", "%%%", "\x00"]),
        texts,
        st.integers(),
        st.binary(max_size=60).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    )


OMIT = object()  # a field left out of the input


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(OMIT), strategy)


anything = st.one_of(texts, decimal_strings, datetime_strings, int_values, junk)


@st.composite
def inputs(
    draw: st.DrawFn,
    valid: dict[str, st.SearchStrategy[Any]],
    fuzz: dict[str, st.SearchStrategy[Any]],
) -> dict[str, Any]:
    """An input object. Mostly a valid one with one or two fields replaced by fuzz (or left
    out), so that the fuzz reaches the deep validation and the database; sometimes every
    field fuzzed; sometimes an extra unknown field."""
    names = list(valid)
    if draw(st.integers(0, 3)) == 0:
        chosen = set(names)
    else:
        chosen = draw(st.sets(st.sampled_from(names), min_size=1, max_size=2))
    result: dict[str, Any] = {}
    for name in names:
        if name in chosen:
            value = draw(st.one_of(st.just(OMIT), fuzz[name], fuzz[name], anything))
        else:
            value = draw(valid[name])
        if value is not OMIT:
            result[name] = value
    if draw(st.integers(0, 14)) == 0:
        result[draw(st.text(string.ascii_letters, min_size=1, max_size=8))] = draw(junk)
    return result


class EnumName(str):
    """A valid enum value: sent as a JSON string in variables, written bare when inlined."""


def graphql_literal(value: Any) -> str:
    """A value as a GraphQL literal (for inputs inlined into the document)."""
    if isinstance(value, EnumName):
        return str.__str__(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(graphql_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {graphql_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


# ---- the world the fuzz runs in ------------------------------------------------------------


@dataclass
class World:
    partner: Api
    operator: Api
    callers: dict[str, Api]  # one client per mutation: each has its own rate limit
    partner_id: str
    phone: str
    partner_ref: str
    member_id: str
    transfer_ids: list[str]
    hold_id: str
    period_id: str
    settings: dict[str, Any]
    counts: Callable[[], dict[str, int]]
    fuzzed: list[int] = field(default_factory=lambda: [0])
    outcomes: dict[str, int] = field(default_factory=dict)
    reached: dict[str, int] = field(default_factory=dict)  # fuzzed requests, per mutation


MUTATIONS: dict[str, tuple[str, str, str]] = {
    # name: (input type, selection, who calls)
    "enrollMember": ("EnrollMemberInput", "member { id phone partnerRef }", "partner"),
    "earnPoints": ("EarnPointsInput", "points transfer { id points }", "partner"),
    "redeemPoints": ("RedeemPointsInput", "points value transfer { id }", "partner"),
    "reverseTransfer": ("ReverseTransferInput", "transfer { id points }", "partner"),
    "holdPoints": ("HoldPointsInput", "hold { id points status }", "partner"),
    "captureHold": ("CaptureHoldInput", "hold { id status } transfer { id }", "partner"),
    "voidHold": ("VoidHoldInput", "hold { id status }", "partner"),
    "createPartner": ("CreatePartnerInput", "partner { id slug }", "operator"),
    "setRateCard": ("SetRateCardInput", "rateCard { earnRate }", "operator"),
    "createApiClient": ("CreateApiClientInput", "clientId scopes", "operator"),
    "updateCoalitionSettings": (
        "UpdateCoalitionSettingsInput",
        "settings { pointValue defaultRegion fundingModel clearingFee }",
        "operator",
    ),
    "closeSettlementPeriod": ("CloseSettlementPeriodInput", "period { id status }", "operator"),
    "submitPartnerReport": ("SubmitPartnerReportInput", "report { id }", "partner"),
    "adjustMemberPoints": (
        "AdjustMemberPointsInput",
        "transfer { id points } member { id }",
        "operator",
    ),
}


def strategies(
    w: World,
) -> tuple[
    dict[str, st.SearchStrategy[dict[str, Any]]],
    dict[str, st.SearchStrategy[dict[str, Any]] | None],
]:
    """Per mutation: the fuzzed inputs, and its valid inputs (None: it has none to send)."""
    unique = st.builds(key)
    phones = st.one_of(
        st.sampled_from([w.phone, "+79123456789", "8 912 345-67-89", "+1 202 555 0100"]),
        st.text("+0123456789 -()", max_size=30),
        texts,
    )
    refs = st.sampled_from([{"id": w.member_id}, {"phone": w.phone}, {"partnerRef": w.partner_ref}])
    member_fuzz = st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "id": id_values(w.member_id),
                "phone": phones,
                "partnerRef": st.one_of(st.just(w.partner_ref), texts),
            },
        ),
        junk,
    )
    references = st.builds(lambda: f"R-{key()}")
    small = st.integers(1, 3)
    now = datetime.now(UTC)
    recent = st.integers(1, 10_000).map(lambda m: _iso(now - timedelta(minutes=m)))
    later = st.integers(10, 10**6).map(lambda m: _iso(now + timedelta(minutes=m)))
    decimals = st.one_of(decimal_strings, decimal_strings, junk)
    ints = st.one_of(int_values, int_values, junk)
    dates = st.one_of(datetime_strings, datetime_strings, junk)
    strings = st.one_of(texts, texts, junk)
    transfer_ids = id_values(*w.transfer_ids, w.hold_id, w.member_id)
    scopes = st.lists(
        st.one_of(st.sampled_from([*PARTNER_SCOPES, "operator", "", "admin"]), texts),
        max_size=5,
    )
    future = now + timedelta(days=1)
    bad_cutoffs = st.one_of(
        st.datetimes(
            min_value=datetime(1, 1, 2),
            max_value=datetime(1999, 12, 31),
            timezones=st.sampled_from([UTC, timezone(timedelta(hours=14))]),
        ).map(_iso),
        st.datetimes(
            min_value=future.replace(tzinfo=None),
            max_value=datetime(9999, 12, 30),
            timezones=st.sampled_from([UTC, timezone(-timedelta(hours=12))]),
        ).map(_iso),
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(_iso),
        st.sampled_from(
            ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "", "now", "2024-13-01"]
        ),
        junk.filter(lambda v: v is not None),
    )
    record = inputs(
        {
            "reference": references,
            "kind": st.sampled_from(["EARN", "REDEEM", "REVERSAL"]).map(EnumName),
            "points": small,
            "amount": maybe(st.just("10")),
        },
        {
            "reference": strings,
            "kind": st.one_of(st.sampled_from(["BURN", "earn"]), strings),
            "points": ints,
            "amount": decimals,
        },
    )

    Inputs = st.SearchStrategy[dict[str, Any]]

    def mutation(
        valid: dict[str, st.SearchStrategy[Any]], fuzz: dict[str, st.SearchStrategy[Any]]
    ) -> tuple[Inputs, Inputs | None]:
        control = st.fixed_dictionaries(valid).map(
            lambda value: {k: v for k, v in value.items() if v is not OMIT}
        )
        return inputs(valid, fuzz), control

    both: dict[str, tuple[Inputs, Inputs | None]] = {
        "enrollMember": mutation(
            {"phone": st.builds(unique_phone), "partnerRef": maybe(references)},
            {"phone": phones, "partnerRef": strings},
        ),
        "earnPoints": mutation(
            {
                "member": refs,
                "amount": st.sampled_from(["10", "149.90", "0.01", "999999"]),
                "reference": references,
                "idempotencyKey": unique,
                "occurredAt": maybe(recent),
            },
            {
                "member": member_fuzz,
                "amount": decimals,
                "reference": strings,
                "idempotencyKey": strings,
                "occurredAt": dates,
            },
        ),
        "redeemPoints": mutation(
            {"member": refs, "points": small, "reference": references, "idempotencyKey": unique},
            {
                "member": member_fuzz,
                "points": ints,
                "reference": strings,
                "idempotencyKey": strings,
            },
        ),
        "reverseTransfer": mutation(
            {
                "transferId": st.sampled_from(w.transfer_ids),
                "idempotencyKey": unique,
                "points": maybe(small),
                "reason": maybe(st.just("returned")),
            },
            {
                "transferId": transfer_ids,
                "idempotencyKey": strings,
                "points": ints,
                "reason": strings,
            },
        ),
        "holdPoints": mutation(
            {
                "member": refs,
                "points": small,
                "reference": references,
                "idempotencyKey": unique,
                "ttlMinutes": maybe(st.just(15)),
            },
            {
                "member": member_fuzz,
                "points": ints,
                "reference": strings,
                "idempotencyKey": strings,
                "ttlMinutes": ints,
            },
        ),
        "captureHold": mutation(
            {"holdId": st.just(w.hold_id), "idempotencyKey": unique, "points": maybe(small)},
            {"holdId": transfer_ids, "idempotencyKey": strings, "points": ints},
        ),
        "voidHold": mutation(
            {"holdId": st.just(w.hold_id), "idempotencyKey": unique},
            {"holdId": transfer_ids, "idempotencyKey": strings},
        ),
        "createPartner": mutation(
            {
                "name": st.just("Fuzz partner"),
                "slug": st.builds(lambda: f"fz-{key()}"),
                "earnRate": st.sampled_from(["1", "0.5", "2.25"]),
                "acceptsRedemption": maybe(st.booleans()),
                "pendingDays": maybe(st.just(0)),
                "pointsValidityDays": maybe(st.just(365)),
                "issuePrice": maybe(st.just("1.00")),
                "redeemPrice": maybe(st.just("1.00")),
            },
            {
                "name": strings,
                "slug": st.one_of(st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,70}\Z"), strings),
                "earnRate": decimals,
                "acceptsRedemption": junk,
                "pendingDays": ints,
                "pointsValidityDays": ints,
                "issuePrice": decimals,
                "redeemPrice": decimals,
            },
        ),
        "setRateCard": mutation(
            {
                "partnerId": st.just(w.partner_id),
                "earnRate": st.just("1"),
                "issuePrice": maybe(st.just("1.00")),
                "redeemPrice": maybe(st.just("1.00")),
                "effectiveFrom": maybe(later),
            },
            {
                "partnerId": id_values(w.partner_id, w.member_id),
                "earnRate": decimals,
                "issuePrice": decimals,
                "redeemPrice": decimals,
                "effectiveFrom": dates,
            },
        ),
        "createApiClient": mutation(
            {
                "scopes": st.just(["points:earn"]),
                "partnerId": st.just(w.partner_id),
                "name": maybe(st.just("fuzz")),
            },
            {
                "scopes": st.one_of(scopes, junk),
                "partnerId": id_values(w.partner_id, w.member_id),
                "name": strings,
            },
        ),
        "updateCoalitionSettings": mutation(
            {
                name: st.just(EnumName(value) if name == "fundingModel" else value)
                for name, value in w.settings.items()
            },
            {
                "pointValue": decimals,
                "defaultRegion": st.one_of(st.sampled_from(["RU", "ru", "GB", "XX"]), strings),
                "fundingModel": st.one_of(
                    st.sampled_from([EnumName("REDEMPTION"), EnumName("ISSUANCE"), "redemption"]),
                    strings,
                ),
                "clearingFee": decimals,
            },
        ),
        # Closing the one shared period is never sent a valid input.
        "closeSettlementPeriod": (st.fixed_dictionaries({"cutoff": bad_cutoffs}), None),
        "submitPartnerReport": mutation(
            {
                "periodId": st.just(w.period_id),
                "records": st.lists(record, max_size=3),
                "partnerId": st.just(OMIT),
            },
            {
                "periodId": id_values(w.period_id),
                "records": st.one_of(st.lists(st.one_of(record, junk), max_size=4), junk),
                "partnerId": id_values(w.partner_id),
            },
        ),
        "adjustMemberPoints": mutation(
            {
                "member": st.sampled_from([{"id": w.member_id}, {"phone": w.phone}]),
                "points": small,
                "fundedBy": st.just(w.partner_id),
                "reason": st.just("fuzz goodwill"),
                "idempotencyKey": unique,
            },
            {
                "member": member_fuzz,
                "points": ints,
                "fundedBy": id_values(w.partner_id, w.member_id),
                "reason": strings,
                "idempotencyKey": strings,
            },
        ),
    }
    return {n: fuzzed for n, (fuzzed, _) in both.items()}, {n: v for n, (_, v) in both.items()}


# ---- one request -------------------------------------------------------------------------


def _send(w: World, name: str, value: dict[str, Any], inline: bool) -> httpx.Response:
    input_type, selection, _ = MUTATIONS[name]
    api = w.callers[name]
    if inline:
        try:
            literal = graphql_literal(value)
        except TypeError:
            inline = False
    if inline:
        body: dict[str, Any] = {
            "query": f"mutation {{ {name}(input: {literal}) {{ {selection} errors {{ code message field }} }} }}"
        }
    else:
        body = {
            "query": f"mutation($input: {input_type}!) {{ {name}(input: $input) {{ {selection}"
            " errors { code message field } } }",
            "variables": {"input": value},
        }
    api._token = api._token or api.token()
    return api.http.post("/graphql", json=body, headers={"Authorization": f"Bearer {api._token}"})


def _describe(name: str, value: dict[str, Any], response: httpx.Response) -> str:
    return (
        f"{name} {json.dumps(value)[:1500]} -> HTTP {response.status_code} {response.text[:1500]}"
    )


def _check(
    w: World, name: str, value: dict[str, Any], inline: bool, *, control: bool = False
) -> str:
    """Send one request and check it; its outcome. A control is not counted as fuzz."""
    before = w.counts()
    response = _send(w, name, value, inline)
    if not control:
        w.fuzzed[0] += 1
    sent = json.dumps(value)
    about = _describe(name, value, response)
    assert response.status_code < 500, about
    if response.status_code != 200:
        outcome = f"HTTP {response.status_code}"
        leaked = [m for m in LEAK_MARKERS if m in response.text and m not in sent]
    else:
        body = response.json()
        errors = body.get("errors") or []
        payload = (body.get("data") or {}).get(name)
        user_errors = (payload or {}).get("errors") or []
        codes = {str((e.get("extensions") or {}).get("code")) for e in errors}
        assert "INTERNAL_ERROR" not in codes, about
        messages = [str(e.get("message")) for e in (*errors, *user_errors)]
        leaked = [m for m in LEAK_MARKERS for text in messages if m in text and m not in sent]
        # Every refusal names its field as the client wrote it, from the mutation's input.
        for error in user_errors:
            if error.get("field") is not None:
                assert input_path_exists(SCHEMA, INPUT_TYPES[name], error["field"]), about
        if errors and codes <= DOMAIN_CODES and all(e.get("path") for e in errors):
            outcome = "coded error"  # raised by the resolver, e.g. a malformed id
        elif errors:
            outcome = "GraphQL error"
        elif payload is None or user_errors:
            outcome = "payload errors"
        else:
            outcome = "accepted"
    assert not leaked, about
    if not control:
        w.outcomes[outcome] = w.outcomes.get(outcome, 0) + 1
        w.reached[name] = w.reached.get(name, 0) + (outcome in REACHED)
    if outcome != "accepted":
        after = w.counts()
        assert after == before, f"a refused request changed rows: {before} -> {after}: {about}"
    if name == "closeSettlementPeriod":
        assert outcome != "accepted", about
    if name == "updateCoalitionSettings" and outcome == "accepted":
        _restore_settings(w)
    return outcome


SETTINGS = "{ coalitionSettings { pointValue defaultRegion fundingModel clearingFee } }"
UPDATE_SETTINGS = """mutation($input: UpdateCoalitionSettingsInput!) {
  updateCoalitionSettings(input: $input) { errors { code message } } }"""


def _restore_settings(w: World) -> None:
    result = w.operator.data(UPDATE_SETTINGS, {"input": w.settings})
    assert result["updateCoalitionSettings"]["errors"] == []


# ---- setup and the test ------------------------------------------------------------------


async def _world(engine: AsyncEngine, server: str) -> World:
    from tests.api.helpers import CAPTURE, EARN, ENROLL, HOLD, payload

    partner = await make_partner(engine, earn_rate="1")
    api = await partner_api(engine, server, partner.id)
    op_id, op_secret = await make_client(engine, None, ["operator"])
    operator = Api(server, op_id, op_secret)
    phone, ref = unique_phone(), f"FZ-{key()}"

    def prepare() -> tuple[str, list[str], str, dict[str, Any]]:
        member = payload(api, ENROLL, {"phone": phone, "partnerRef": ref}, "enrollMember")
        member_id = member["member"]["id"]
        earns = [
            payload(
                api,
                EARN,
                {
                    "member": {"id": member_id},
                    "amount": "500",
                    "reference": f"E-{key()}",
                    "idempotencyKey": key(),
                },
                "earnPoints",
            )["transfer"]["id"]
            for _ in range(2)
        ]
        held = payload(
            api,
            HOLD,
            {"member": {"id": member_id}, "points": 50, "reference": "H", "idempotencyKey": key()},
            "holdPoints",
        )
        captured_hold = payload(
            api,
            HOLD,
            {"member": {"id": member_id}, "points": 5, "reference": "H2", "idempotencyKey": key()},
            "holdPoints",
        )
        payload(
            api,
            CAPTURE,
            {"holdId": captured_hold["hold"]["id"], "idempotencyKey": key()},
            "captureHold",
        )
        current = operator.data(SETTINGS)["coalitionSettings"]
        return member_id, earns, held["hold"]["id"], current

    member_id, earns, hold_id, current = await asyncio.to_thread(prepare)
    callers = {}
    for name, (_, _, who) in MUTATIONS.items():
        if who == "partner":
            callers[name] = await partner_api(engine, server, partner.id)
        else:
            callers[name] = Api(server, *(await make_client(engine, None, ["operator"])))
    async with engine.connect() as conn:
        period = await conn.scalar(text("SELECT id FROM settlement_periods WHERE status = 'OPEN'"))
    loop = asyncio.get_running_loop()

    async def count() -> dict[str, int]:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM transfers) AS transfers,"
                        " (SELECT count(*) FROM lots) AS lots,"
                        " (SELECT count(*) FROM consumptions) AS consumptions,"
                        " (SELECT count(*) FROM holds) AS holds,"
                        " (SELECT count(*) FROM debts) AS debts,"
                        " (SELECT count(*) FROM idempotency_keys) AS idempotency_keys,"
                        " (SELECT count(*) FROM members) AS members,"
                        " (SELECT count(*) FROM memberships) AS memberships,"
                        " (SELECT count(*) FROM partners) AS partners,"
                        " (SELECT count(*) FROM rate_cards) AS rate_cards,"
                        " (SELECT count(*) FROM api_clients) AS api_clients,"
                        " (SELECT count(*) FROM obligations) AS obligations,"
                        " (SELECT count(*) FROM settlement_periods) AS periods,"
                        " (SELECT count(*) FROM partner_reports) AS reports,"
                        " (SELECT count(*) FROM holds WHERE status = 'ACTIVE') AS active_holds,"
                        " (SELECT md5(row(s.*)::text) FROM coalition_settings s WHERE id = 1)"
                        "  AS settings_digest"
                    )
                )
            ).one()
        return {k: v for k, v in row._mapping.items()}

    def counts() -> dict[str, int]:
        return asyncio.run_coroutine_threadsafe(count(), loop).result(timeout=30)

    return World(
        partner=api,
        operator=operator,
        callers=callers,
        partner_id=to_global_id("Partner", partner.id),
        phone=phone,
        partner_ref=ref,
        member_id=member_id,
        transfer_ids=earns,
        hold_id=hold_id,
        period_id=to_global_id("SettlementPeriod", period),
        settings={
            "pointValue": current["pointValue"],
            "defaultRegion": current["defaultRegion"],
            "fundingModel": current["fundingModel"],
            "clearingFee": current["clearingFee"],
        },
        counts=counts,
    )


async def test_fuzzed_mutation_inputs_never_crash_and_never_half_write(
    engine: AsyncEngine, server: str
) -> None:
    w = await _world(engine, server)
    per_mutation, valid = strategies(w)

    failures: dict[str, BaseException] = {}
    controls: dict[str, list[str]] = {}

    def fuzz() -> None:
        for name, strategy in per_mutation.items():
            control = valid[name]
            if control is not None:
                value = find(control, lambda _: True, settings=settings(database=None))
                try:
                    controls[name] = [
                        _check(w, name, value, inline, control=True) for inline in (False, True)
                    ]
                except Exception as exc:
                    failures[f"{name} (control)"] = exc

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(name=st.just(name), value=strategy, inline=st.booleans())
            def one(name: str, value: dict[str, Any], inline: bool) -> None:
                _check(w, name, value, inline)

            try:
                one()
            except Exception as exc:  # every mutation is fuzzed, then all failures reported
                failures[name] = exc

    try:
        await asyncio.to_thread(fuzz)
    finally:
        await asyncio.to_thread(_restore_settings, w)
    assert not failures, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
    print(
        f"\nfuzz: {w.fuzzed[0]} requests over {len(per_mutation)} mutations: {w.outcomes};"
        f" reached a resolver, per mutation: {w.reached}; controls: {controls}"
    )
    assert w.fuzzed[0] >= EXAMPLES * len(per_mutation)
    # Every mutation's valid input gets past validation, as variables and inlined.
    assert set(controls) == {n for n, v in valid.items() if v is not None}
    assert {n: o for n, o in controls.items() if not set(o) <= REACHED} == {}
    # And so does a good share of the fuzz: it tests the resolvers, not only the parser.
    reached = sum(w.reached.values())
    assert reached >= MIN_REACHED_SHARE * w.fuzzed[0], (reached, w.fuzzed[0], w.outcomes)
