"""Query cost and the per-client leaky bucket: the rule, the limiter, and over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from graphql import get_introspection_query, parse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from schema.cost import CostLimiter, operation_cost
from schema.root import build_schema
from tests.conftest import Api, make_client, unique_slug
from tests.security.serving import ManualClock, limited_app, serve

SCHEMA = build_schema()._schema


def cost(query: str, variables: dict[str, Any] | None = None, name: str | None = None) -> int:
    return operation_cost(SCHEMA, parse(query), name, variables)


def test_objects_cost_one_and_scalars_nothing() -> None:
    assert cost("{ __typename }") == 0
    assert cost("{ viewer { clientId scopes } }") == 1
    assert cost("{ viewer { clientId partner { id slug } } }") == 2
    assert cost("{ coalitionSettings { currency } viewer { clientId } }") == 2


def test_connections_multiply_their_items_by_first() -> None:
    # 1 for the connection, 10 × (edges + node), pageInfo once.
    query = "{ partners(first: 10) { edges { node { id } } pageInfo { hasNextPage } } }"
    assert cost(query) == 1 + 10 * 2 + 1
    assert cost("{ partners { nodes { id } } }") == 1 + 20 * 1  # default page
    assert cost("{ partners(first: 1000) { nodes { id } } }") == 1 + 100 * 1  # at most 100
    with_variable = "query($n: Int) { partners(first: $n) { nodes { id } } }"
    assert cost(with_variable, {"n": 5}) == 1 + 5
    assert cost(with_variable, {}) == 1 + 20
    assert cost("query($n: Int = 3) { partners(first: $n) { nodes { id } } }", {}) == 1 + 3
    # Nested connections multiply.
    nested = """{ member(ref: {phone: "1"}) { transfers(first: 50) {
      nodes { code partner { slug } } } } }"""
    assert cost(nested) == 1 + 1 + 50 * (1 + 1)
    audit = "{ auditLog(first: 7) { edges { cursor node { actor } } } }"
    assert cost(audit) == 1 + 7 * 2


def test_mutations_cost_ten_plus_their_payload() -> None:
    mutation = """mutation { earnPoints(input: {member: {phone: "1"}, amount: "1",
      reference: "r", idempotencyKey: "k"}) { points transfer { id } errors { code } } }"""
    assert cost(mutation) == 10 + 2
    two = """mutation { a: voidHold(input: {holdId: "x", idempotencyKey: "k"}) { errors { code } }
      b: voidHold(input: {holdId: "y", idempotencyKey: "l"}) { errors { code } } }"""
    assert cost(two) == 2 * (10 + 1)


def test_batches_cost_a_point_per_ten_items() -> None:
    batch = """mutation($i: EarnPointsBatchInput!) { earnPointsBatch(input: $i) { booked } }"""
    row = {"member": {"phone": "1"}, "amount": "1", "reference": "r", "idempotencyKey": "k"}
    assert cost(batch, {"i": {"rows": [row] * 5000}}) == 10 + 500
    assert cost(batch, {"i": {"rows": [row] * 11}}) == 10 + 2
    assert cost(batch, {"i": {"rows": []}}) == 10
    inline = """mutation { submitPartnerReport(input: {periodId: "x", records: [
      {reference: "a", kind: EARN, points: 1}, {reference: "b", kind: EARN, points: 1}]}) {
      errors { code } } }"""
    assert cost(inline) == 10 + 1 + 1


def test_fragments_count_as_written_and_the_named_operation_is_priced() -> None:
    query = """
      query One { viewer { ...V } }
      query Two { partners(first: 2) { nodes { ... on Partner { rateCards { earnRate } } } } }
      fragment V on Viewer { partner { id } }
    """
    assert cost(query, name="One") == 1 + 1
    assert cost(query, name="Two") == 1 + 2 * (1 + 1)
    # A fragment does not hide a connection's items from the multiplier.
    hidden = """{ partners(first: 50) { ...Items } }
      fragment Items on PartnerConnection { edges { node { id } } }"""
    assert cost(hidden) == 1 + 50 * 2
    inline = "{ partners(first: 50) { ... on PartnerConnection { nodes { id } } } }"
    assert cost(inline) == 1 + 50
    # The introspection GraphiQL sends is affordable.
    assert 0 < cost(get_introspection_query()) < 200


def test_the_bucket_refuses_what_it_cannot_hold_and_refills_over_time() -> None:
    now = [100.0]
    limiter = CostLimiter(capacity=100, restore_rate=10, clock=lambda: now[0])
    first = limiter.take("a", 60)
    assert first.allowed and first.available == 40 and first.retry_after is None
    refused = limiter.take("a", 60)
    assert not refused.allowed and refused.available == 40 and refused.retry_after == 2.0
    assert refused.figures() == {"cost": 60, "available": 40, "capacity": 100, "restoreRate": 10}
    # Another client has its own bucket.
    assert limiter.take("b", 100).allowed
    now[0] += 1.0
    assert not limiter.take("a", 60).allowed  # 50 available
    now[0] += 1.0
    again = limiter.take("a", 60)
    assert again.allowed and again.available == 0
    # Never above capacity, however long the wait.
    now[0] += 3600
    assert limiter.available("a") == 100
    # More than the capacity can never pass: no point in retrying.
    huge = limiter.take("a", 101)
    assert not huge.allowed and huge.over_capacity and huge.retry_after is None
    assert limiter.available("a") == 100  # a refusal costs nothing


def test_a_refusal_for_a_limit_is_charged_but_never_below_empty() -> None:
    now = [0.0]
    limiter = CostLimiter(capacity=100, restore_rate=10, clock=lambda: now[0], refusal_cost=30)
    refused = limiter.refuse("a", 500)
    assert not refused.allowed and refused.charged == 30 and refused.available == 70
    assert refused.retry_after is None  # it can never run as written: no point in waiting
    assert refused.figures() == {
        "cost": 500,
        "available": 70,
        "capacity": 100,
        "restoreRate": 10,
        "charged": 30,
    }
    limiter.take("a", 60)
    assert limiter.refuse("a", 500).charged == 10  # what was left
    assert limiter.available("a") == 0
    now[0] += 1.0
    assert limiter.available("a") == 10  # and it refills as usual


def test_the_limiter_forgets_full_buckets_when_it_holds_many() -> None:
    now = [0.0]
    limiter = CostLimiter(capacity=10, restore_rate=10, clock=lambda: now[0], max_clients=3)
    for client in ("a", "b", "c"):
        limiter.take(client, 10)
    now[0] += 0.5
    limiter.take("c", 5)  # c is back to 0 at 0.5 s
    now[0] += 0.6  # a and b are full again; c holds 6 of 10
    limiter.take("d", 1)
    assert set(limiter._buckets) == {"c", "d"}
    assert not CostLimiter(capacity=0, restore_rate=10).enabled
    assert not CostLimiter(capacity=10, restore_rate=0).enabled


# ---- over HTTP, on an app of its own with a small bucket and a hand-moved clock ----------


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def limited_server(database_url: str, server: str, clock: ManualClock) -> Iterator[str]:
    """The app with a 30-point bucket refilling 2 points a second, a refusal for a limit
    charged 7 points, and time standing still unless the test moves `clock`."""
    app = limited_app(
        database_url,
        clock,
        rate_limit_capacity=30,
        rate_limit_restore=2,
        rate_limit_refusal_cost=7,
    )
    with serve(app) as url:
        yield url


PARTNERS_10 = "{ partners(first: 10) { nodes { id } } }"  # 1 + 10 = 11 points
CREATE = """mutation($input: CreatePartnerInput!) { createPartner(input: $input) {
  partner { id } errors { code } } }"""  # 10 + partner + errors = 12 points


async def test_rate_limited_over_http_then_recovers(
    engine: AsyncEngine, limited_server: str, clock: ManualClock
) -> None:
    operator = Api(limited_server, *(await make_client(engine, None, ["operator"])))
    other = Api(limited_server, *(await make_client(engine, None, ["operator"])))
    operator.token()  # the OAuth endpoint is not GraphQL: it costs nothing

    first = operator.gql(PARTNERS_10)
    assert "errors" not in first
    assert first["extensions"]["cost"] == {
        "cost": 11,
        "available": 19,
        "capacity": 30,
        "restoreRate": 2,
    }
    second = operator.gql(PARTNERS_10)
    assert "errors" not in second and second["extensions"]["cost"]["available"] == 8

    # 12 points with 8 available: refused before anything runs (no partner is created).
    slug = unique_slug()
    refused = operator.gql(CREATE, {"input": {"name": "Throttled", "slug": slug, "earnRate": "1"}})
    assert refused["data"] is None
    [error] = refused["errors"]
    figures = error["extensions"]
    assert figures == {
        "code": "RATE_LIMITED",
        "cost": 12,
        "available": 8,
        "capacity": 30,
        "restoreRate": 2,
        "retryAfterSeconds": 2.0,  # 4 points missing at 2 a second
    }
    assert refused["extensions"]["cost"]["cost"] == 12

    # Another client is not affected.
    assert other.gql(PARTNERS_10)["extensions"]["cost"]["available"] == 19

    # A single operation dearer than the whole bucket can never run; refusing it is charged.
    huge = other.gql("{ partners(first: 100) { nodes { id } } }")
    assert huge["data"] is None
    [error] = huge["errors"]
    assert error["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert error["extensions"]["retryAfterSeconds"] is None
    assert huge["extensions"]["cost"]["charged"] == 7
    assert huge["extensions"]["cost"]["available"] == 19 - 7

    # Before the advertised wait is over, still refused; after it, the same request goes
    # through and takes exactly what had come back (being throttled cost nothing).
    clock.advance(1.5)  # 8 + 3 points: one short
    early = operator.gql(CREATE, {"input": {"name": "Early", "slug": slug, "earnRate": "1"}})
    assert early["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert early["errors"][0]["extensions"]["retryAfterSeconds"] == 0.5
    clock.advance(0.5)
    created = operator.gql(CREATE, {"input": {"name": "Later", "slug": slug, "earnRate": "1"}})
    assert "errors" not in created, created
    payload = created["data"]["createPartner"]
    assert payload["errors"] == []
    assert created["extensions"]["cost"] == {
        "cost": 12,
        "available": 0,
        "capacity": 30,
        "restoreRate": 2,
    }
    # Exactly one partner with that slug: the refused requests created nothing.
    async with engine.connect() as conn:
        count = (
            await conn.execute(text("SELECT count(*) FROM partners WHERE slug = :s"), {"s": slug})
        ).scalar_one()
    assert count == 1
