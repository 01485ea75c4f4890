"""Query analysis is bounded by the size of the document, and refusals are charged.

A document whose fragments each spread the previous one twice is a few hundred bytes and
expands to 2^n selections. Refusing it must take work in proportion to what was written, not
to what it expands to, and must cost the caller as any other answer does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, parse, visit
from graphql.language import Visitor
from sqlalchemy.ext.asyncio import AsyncEngine

from schema.analysis import measure
from schema.cost import analyse_cost
from schema.root import build_schema
from tests.conftest import Api, make_client
from tests.security.serving import ManualClock, limited_app, serve

SCHEMA = build_schema()._schema


def doubling(levels: int, leaf: str = "viewer { clientId }") -> str:
    """`fragment Fi on Query { ...F(i-1) ...F(i-1) }`: 2^levels copies of `leaf`."""
    fragments = [f"fragment F0 on Query {{ {leaf} }}"]
    fragments += [
        f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, levels + 1)
    ]
    return f"query {{ ...F{levels} }} " + " ".join(fragments)


def written_selections(document: str) -> int:
    """Fields, inline fragments and spreads as written in the document."""

    class Count(Visitor):
        count = 0

        def enter(self, node: object, *_: object) -> None:
            if isinstance(node, FieldNode | InlineFragmentNode | FragmentSpreadNode):
                Count.count += 1

    visit(parse(document), Count())
    return Count.count


# ---- the analysis itself: each fragment is looked at once ---------------------------------


@pytest.mark.parametrize("levels", [19, 40, 60])
def test_analysis_visits_each_written_selection_once(levels: int) -> None:
    document = doubling(levels)
    written = written_selections(document)
    assert written == 2 * levels + 3  # two spreads a level, the field pair, the root spread

    shape = measure(parse(document))
    assert shape.visits == written
    assert shape.spreads == 2 ** (levels + 1) - 1  # exact, however large
    assert shape.depth == 1 and shape.aliases == 0

    cost = analyse_cost(SCHEMA, parse(document))
    assert cost.cost == 2**levels  # one `viewer` per copy, counted without expanding
    assert cost.visits == written


def test_pricing_stops_at_the_limit() -> None:
    # Siblings after the point where the total went over the limit are not looked at.
    document = "{ " + " ".join(f"a{i}: viewer {{ partner {{ id }} }}" for i in range(50)) + " }"
    full = analyse_cost(SCHEMA, parse(document))
    assert full.cost == 100 and full.visits == 150
    stopped = analyse_cost(SCHEMA, parse(document), limit=10)
    assert stopped.cost == 12 and stopped.visits == 18


def test_depth_and_aliases_hidden_in_fragments_are_measured() -> None:
    deep = """query { ...A } fragment A on Query { viewer { ...B } }
      fragment B on Viewer { partner { rateCards { earnRate } } }"""
    assert measure(parse(deep)).depth == 3
    aliases = """query { ...A ...A } fragment A on Query { x: viewer { clientId } ...B ...B }
      fragment B on Query { y: viewer { clientId } }"""
    shape = measure(parse(aliases))
    assert shape.aliases == 2 * (1 + 2)
    assert shape.spreads == 2 * (1 + 2)
    # Introspection does not count towards depth (GraphiQL's query nests `ofType` deeply).
    assert (
        measure(parse("{ __schema { types { fields { type { ofType { name } } } } } }")).depth == 0
    )


# ---- over HTTP: refused quickly, with a code, and charged --------------------------------


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def analysed_server(database_url: str, server: str, clock: ManualClock) -> Iterator[str]:
    """Default query limits, a 2000-point bucket, refusals charged 100 points, time frozen."""
    app = limited_app(
        database_url,
        clock,
        rate_limit_capacity=2000,
        rate_limit_restore=100,
        max_fragment_spreads=200,
        rate_limit_refusal_cost=100,
    )
    with serve(app) as url:
        yield url


@pytest.fixture(scope="module")
def uncapped_server(database_url: str, server: str, clock: ManualClock) -> Iterator[str]:
    """No cap on fragment spreads: the cost and depth analyses must be bounded by themselves."""
    app = limited_app(
        database_url,
        clock,
        rate_limit_capacity=2000,
        rate_limit_restore=100,
        max_fragment_spreads=10**30,
        rate_limit_refusal_cost=100,
    )
    with serve(app) as url:
        yield url


def _member_chain(levels: int) -> str:
    """transfer > member > transfers > nodes > member > ...: 2 + 3 × `levels` deep."""
    inner = "id"
    for _ in range(levels):
        inner = f"member {{ id transfers(first: 1) {{ nodes {{ {inner} }} }} }}"
    return f'transfer(id: "x") {{ {inner} }}'


TOO_DEEP = _member_chain(4)  # depth 14, the limit is 10


async def _operator(engine: AsyncEngine, url: str) -> Api:
    api = Api(url, *(await make_client(engine, None, ["operator"])))
    # Generous, only so that an unbounded analysis fails the test instead of hanging it.
    api.http.timeout = 30
    return api


def _codes(body: dict[str, object]) -> list[object]:
    errors = body.get("errors") or []
    assert isinstance(errors, list)
    return [(e.get("extensions") or {}).get("code") for e in errors]


async def test_fragment_explosions_are_refused_for_their_spreads(
    engine: AsyncEngine, analysed_server: str
) -> None:
    api = await _operator(engine, analysed_server)
    for levels in (19, 40, 60):
        body = api.gql(doubling(levels))
        assert body["data"] is None
        assert _codes(body) == ["MAX_SPREADS_EXCEEDED"], body
        assert "fragment spreads" in body["errors"][0]["message"]  # type: ignore[index]
    # Spreading a fragment a few times is fine.
    ok = api.gql(doubling(3))
    assert "errors" not in ok and ok["data"] == {"viewer": {"clientId": api.client_id}}


async def test_without_a_spread_cap_cost_and_depth_still_refuse_quickly(
    engine: AsyncEngine, uncapped_server: str
) -> None:
    api = await _operator(engine, uncapped_server)
    for levels in (19, 40, 60):
        body = api.gql(doubling(levels))
        assert body["data"] is None
        assert _codes(body) == ["MAX_COST_EXCEEDED"], body
    # Depth through a doubling chain: 14 nested fields in every one of 2^40 copies.
    body = api.gql(doubling(40, leaf=TOO_DEEP))
    assert body["data"] is None
    assert _codes(body) == ["MAX_DEPTH_EXCEEDED"], body


async def test_a_refused_query_costs_the_caller(
    engine: AsyncEngine, analysed_server: str, clock: ManualClock
) -> None:
    api = await _operator(engine, analysed_server)
    viewer = "{ viewer { clientId } }"  # 1 point
    assert api.gql(viewer)["extensions"]["cost"]["available"] == 1999  # type: ignore[index]

    spreads = api.gql(doubling(19))
    assert _codes(spreads) == ["MAX_SPREADS_EXCEEDED"]
    assert spreads["extensions"]["cost"]["charged"] == 100  # type: ignore[index]
    assert spreads["extensions"]["cost"]["available"] == 1899  # type: ignore[index]

    depth = api.gql(f"{{ {TOO_DEEP} }}")
    assert _codes(depth) == ["MAX_DEPTH_EXCEEDED"]
    assert depth["extensions"]["cost"]["available"] == 1799  # type: ignore[index]

    dear = " ".join(
        f"p{i}: partners(first: 100) {{ nodes {{ rateCards {{ earnRate }} }} }}" for i in range(10)
    )  # 10 × 201 points
    over = api.gql(f"{{ {dear} }}")
    assert _codes(over) == ["MAX_COST_EXCEEDED"]
    assert over["extensions"]["cost"]["available"] == 1699  # type: ignore[index]

    # What a well-formed query sees next: its budget went to the refusals.
    assert api.gql(viewer)["extensions"]["cost"]["available"] == 1698  # type: ignore[index]
    clock.advance(3)  # 300 points back
    assert api.gql(viewer)["extensions"]["cost"]["available"] == 1997  # type: ignore[index]
