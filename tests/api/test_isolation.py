"""Isolation between partners: B never sees or touches A's members, transfers or holds."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.helpers import MEMBER, NODE, TRANSFER, TRANSFERS, make_shop, user_errors
from tests.conftest import Api, unique_phone

MEMBER_TRANSFERS = """query($ref: MemberRef!) { member(ref: $ref) {
  transfers(first: 100) { nodes { id code points partner { slug } member { id } } } } }"""

TRANSFER_DETAILS = """query($id: ID!) { transfer(id: $id) {
  id partner { slug } member { id phone } reversalOf { id } } }"""


async def test_partner_b_cannot_see_partner_a_member(engine: AsyncEngine, server: str) -> None:
    a = await make_shop(engine, server)
    b = await make_shop(engine, server)
    phone = unique_phone()
    member = a.enroll(phone, "A-1")
    a.earn_ok({"phone": phone}, "10")
    for ref in ({"id": member["id"]}, {"phone": phone}, {"partnerRef": "A-1"}):
        body = b.api.gql(MEMBER, {"ref": ref})
        assert "errors" not in body and body["data"]["member"] is None, ref
    body = b.api.gql(NODE, {"id": member["id"]})
    assert "errors" not in body and body["data"]["node"] is None
    # Writes by B on A's member are refused as if the member did not exist.
    assert user_errors(b.earn({"phone": phone}, "10")) == ["MEMBER_NOT_FOUND"]
    assert user_errors(b.earn({"id": member["id"]}, "10")) == ["MEMBER_NOT_FOUND"]
    assert user_errors(b.redeem({"phone": phone}, 1)) == ["MEMBER_NOT_FOUND"]
    assert user_errors(b.hold({"id": member["id"]}, 1)) == ["MEMBER_NOT_FOUND"]
    assert a.balance({"phone": phone})["available"] == 10
    # A's partnerRef means nothing at B, even once the member enrolls there.
    b.enroll(phone)
    assert b.api.gql(MEMBER, {"ref": {"partnerRef": "A-1"}})["data"]["member"] is None
    seen = b.api.data(MEMBER, {"ref": {"phone": phone}})["member"]
    assert seen["id"] == member["id"] and seen["partnerRef"] is None


async def test_partner_b_cannot_see_partner_a_transfers(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    a = await make_shop(engine, server)
    b = await make_shop(engine, server)
    phone = unique_phone()
    ref = {"phone": phone}
    a.enroll(phone)
    b.enroll(phone)
    a_earn = a.earn_ok(ref, "100")["transfer"]
    a_reversal = a.reverse(a_earn["id"], points=10)["transfer"]
    b_burn = b.redeem(ref, 20)["transfer"]
    for transfer_id in (a_earn["id"], a_reversal["id"]):
        assert b.api.data(TRANSFER, {"id": transfer_id})["transfer"] is None
        assert b.api.data(NODE, {"id": transfer_id})["node"] is None
    # The shared member's history at B lists only B's transfers, and vice versa.
    b_history = b.api.data(MEMBER_TRANSFERS, {"ref": ref})["member"]["transfers"]["nodes"]
    assert [t["id"] for t in b_history] == [b_burn["id"]]
    assert {t["partner"]["slug"] for t in b_history} == {b.slug}
    a_history = a.api.data(MEMBER_TRANSFERS, {"ref": ref})["member"]["transfers"]["nodes"]
    assert {t["id"] for t in a_history} == {a_earn["id"], a_reversal["id"]}
    assert a.api.data(TRANSFER, {"id": b_burn["id"]})["transfer"] is None
    # The operator sees everything.
    everything = operator_api.data(MEMBER_TRANSFERS, {"ref": ref})["member"]["transfers"]["nodes"]
    assert {t["id"] for t in everything} >= {a_earn["id"], a_reversal["id"], b_burn["id"]}
    detail = operator_api.data(TRANSFER_DETAILS, {"id": a_reversal["id"]})["transfer"]
    assert detail["reversalOf"]["id"] == a_earn["id"]
    assert detail["member"]["phone"] == phone
    own = a.api.data(TRANSFER_DETAILS, {"id": a_reversal["id"]})["transfer"]
    assert own["partner"]["slug"] == a.slug and own["member"]["phone"] != phone


async def test_transfer_member_is_hidden_when_the_member_left_the_callers_view(
    engine: AsyncEngine, server: str
) -> None:
    """A's own transfer of a member: the member shows through it only as A sees them."""
    a = await make_shop(engine, server)
    phone = unique_phone()
    a.enroll(phone, "REF-X")
    earn = a.earn_ok({"phone": phone}, "5")["transfer"]
    detail = a.api.data(
        """query($id: ID!) { transfer(id: $id) { member { phone partnerRef } } }""",
        {"id": earn["id"]},
    )["transfer"]
    assert detail["member"]["partnerRef"] == "REF-X"
    assert detail["member"]["phone"] != phone and detail["member"]["phone"].endswith(phone[-2:])


async def test_partner_b_cannot_reverse_or_capture_partner_a_records(
    engine: AsyncEngine, server: str
) -> None:
    a = await make_shop(engine, server)
    b = await make_shop(engine, server)
    phone = unique_phone()
    ref = {"phone": phone}
    a.enroll(phone)
    b.enroll(phone)
    a_earn = a.earn_ok(ref, "100")["transfer"]
    a_burn = a.redeem(ref, 10)["transfer"]
    hold = a.hold(ref, 30)["hold"]
    before = a.balance(ref)
    assert before == {"available": 60, "pending": 0, "held": 30, "debt": 0}
    for transfer_id in (a_earn["id"], a_burn["id"]):
        refused = b.reverse(transfer_id)
        assert user_errors(refused) == ["TRANSFER_NOT_FOUND"]
        assert refused["transfer"] is None and refused["member"] is None
    assert user_errors(b.capture(hold["id"])) == ["HOLD_NOT_FOUND"]
    assert user_errors(b.void(hold["id"])) == ["HOLD_NOT_FOUND"]
    assert b.api.data(NODE, {"id": hold["id"]})["node"] is None
    assert a.balance(ref) == before
    # A still can.
    assert a.capture(hold["id"])["errors"] == []
    assert a.reverse(a_earn["id"], points=1)["errors"] == []
    assert a.balance(ref) == {"available": 59, "pending": 0, "held": 0, "debt": 0}


async def test_partner_sees_only_itself_through_node_and_partners(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    a = await make_shop(engine, server)
    b = await make_shop(engine, server)
    assert a.api.data(NODE, {"id": b.id})["node"] is None
    assert a.api.data(NODE, {"id": a.id})["node"] == {"__typename": "Partner", "id": a.id}
    assert operator_api.data(NODE, {"id": b.id})["node"]["id"] == b.id
    nodes = a.api.data("{ partners { nodes { slug } } }")["partners"]["nodes"]
    assert nodes == [{"slug": a.slug}]
    # The same phone: B's view of a shared member's history stays empty until B books something.
    phone = unique_phone()
    a.enroll(phone)
    b.enroll(phone)
    a.earn_ok({"phone": phone}, "50")
    page = b.api.data(TRANSFERS, {"ref": {"phone": phone}})["member"]["transfers"]
    assert page["edges"] == [] and page["pageInfo"]["hasNextPage"] is False
    # The balance is coalition-wide: B sees the points A gave.
    assert b.balance({"phone": phone})["available"] == 50
