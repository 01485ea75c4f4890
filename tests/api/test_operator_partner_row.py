"""Over the API, the operator's own `partners` row (OPERATOR_PARTY, migration 0015) is no
partner: the `partners` list never has it, and its global id resolves to nothing."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from core.caller import OPERATOR_PARTY
from schema.relay import to_global_id
from tests.api.helpers import NODE
from tests.conftest import Api, make_partner

PARTNERS = """query($first: Int, $after: String) { partners(first: $first, after: $after) {
  edges { node { id slug name } } pageInfo { hasNextPage endCursor } } }"""


def all_partners(api: Api) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    after = None
    while True:
        page = api.data(PARTNERS, {"first": 100, "after": after})["partners"]
        found += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


async def test_the_partners_query_and_node_lookups_never_show_the_operator_row(
    engine: AsyncEngine, operator_api: Api
) -> None:
    partner = await make_partner(engine)
    listed = all_partners(operator_api)
    assert "_operator" not in {p["slug"] for p in listed}
    assert to_global_id("Partner", OPERATOR_PARTY) not in {p["id"] for p in listed}
    assert partner.slug in {p["slug"] for p in listed}
    node = operator_api.data(NODE, {"id": to_global_id("Partner", OPERATOR_PARTY)})
    assert node["node"] is None
