"""Members over HTTP: enrollMember, member(ref), phone normalization and masking."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.helpers import ENROLL, MEMBER, error_codes, make_shop, payload, user_errors
from tests.conftest import Api, unique_phone


def _national(e164: str) -> str:
    """+79121234567 -> '8 912 123-45-67', the way Russians write a mobile number."""
    d = e164[2:]
    return f"8 {d[:3]} {d[3:6]}-{d[6:8]}-{d[8:]}"


def _pretty(e164: str) -> str:
    """+79121234567 -> '+7 (912) 123-45-67'."""
    d = e164[2:]
    return f"+7 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}"


async def test_enroll_normalizes_phones_and_is_idempotent(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    phone = unique_phone()
    first = shop.enroll(_national(phone), "CARD-1")
    second = shop.enroll(_pretty(phone))
    third = shop.enroll(phone, "CARD-1")
    assert first["id"] == second["id"] == third["id"]
    assert first["partnerRef"] == second["partnerRef"] == "CARD-1"
    # Partners see the phone masked, but enough to confirm with the customer.
    assert first["phone"] == f"{phone[:5]}*****{phone[-2:]}"  # +7912*****89
    # Every spelling finds the same member.
    for spelling in (phone, _national(phone), _pretty(phone)):
        found = shop.api.data(MEMBER, {"ref": {"phone": spelling}})["member"]
        assert found is not None and found["id"] == first["id"], spelling


# The README's mask, `+7912*****89`: the country code and the first digits (four digits
# after "+"), then one star per hidden digit, then the last two digits.
MASKS = {
    "8 912 345-67-89": ("+79123456789", "+7912*****89"),  # Russia, written nationally
    "+1 201-555-0123": ("+12015550123", "+1201*****23"),  # United States
    "+44 7400 123456": ("+447400123456", "+4474******56"),  # United Kingdom
    "+49 1512 3456789": ("+4915123456789", "+4915*******89"),  # Germany, 13 digits
    "+65 8123 4567": ("+6581234567", "+6581****67"),  # Singapore, 10 digits
}


async def test_partners_see_exactly_the_masked_phone_the_readme_shows(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    shop = await make_shop(engine, server)
    for typed, (e164, masked) in MASKS.items():
        enrolled = shop.enroll(typed)
        assert enrolled["phone"] == masked, typed
        # The same mask on every read, and the operator sees the whole number.
        found = shop.api.data(MEMBER, {"ref": {"phone": e164}})["member"]
        assert found["phone"] == masked and found["id"] == enrolled["id"], typed
        seen = operator_api.data(MEMBER, {"ref": {"id": enrolled["id"]}})["member"]
        assert seen["phone"] == e164, typed


async def test_the_same_phone_is_one_member_across_partners(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    grocer = await make_shop(engine, server)
    cinema = await make_shop(engine, server)
    phone = unique_phone()
    a = grocer.enroll(phone, "G-1")
    b = cinema.enroll(_national(phone), "G-1")  # the same ref at another partner is fine
    assert a["id"] == b["id"]
    assert b["partnerRef"] == "G-1"
    # The operator sees the full phone and no partnerRef.
    seen = operator_api.data(MEMBER, {"ref": {"id": a["id"]}})["member"]
    assert seen["phone"] == phone
    assert seen["partnerRef"] is None
    by_phone = operator_api.data(MEMBER, {"ref": {"phone": _pretty(phone)}})["member"]
    assert by_phone["id"] == a["id"]


async def test_enroll_rejects_garbage_phones(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    for garbage in ("hello", "123", "+7 000", "", "1" * 50, "+999 123 456 789"):
        result = payload(shop.api, ENROLL, {"phone": garbage}, "enrollMember")
        assert result["member"] is None, garbage
        assert user_errors(result) == ["INVALID_PHONE"], (garbage, result)
        assert result["errors"][0]["field"] == ["phone"]


async def test_partner_ref_taken_by_another_member(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    alice, bob = unique_phone(), unique_phone()
    shop.enroll(alice, "REF-1")
    taken = payload(shop.api, ENROLL, {"phone": bob, "partnerRef": "REF-1"}, "enrollMember")
    assert user_errors(taken) == ["PARTNER_REF_TAKEN"]
    assert taken["member"] is None
    # Nothing changed: bob is not enrolled here, REF-1 is still alice.
    assert shop.api.data(MEMBER, {"ref": {"phone": bob}})["member"] is None
    found = shop.api.data(MEMBER, {"ref": {"partnerRef": "REF-1"}})["member"]
    assert found["phone"].endswith(alice[-2:])
    # Alice cannot silently change her partnerRef either.
    moved = payload(shop.api, ENROLL, {"phone": alice, "partnerRef": "REF-2"}, "enrollMember")
    assert user_errors(moved) == ["PARTNER_REF_TAKEN"]
    # A member enrolled without a ref can be given one later.
    shop.enroll(bob)
    given = shop.enroll(bob, "REF-3")
    assert given["partnerRef"] == "REF-3"


async def test_member_lookup_by_id_phone_and_partner_ref(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    phone = unique_phone()
    enrolled = shop.enroll(phone, "C-77")
    for ref in ({"id": enrolled["id"]}, {"phone": phone}, {"partnerRef": "C-77"}):
        found = shop.api.data(MEMBER, {"ref": ref})["member"]
        assert found is not None, ref
        assert found["id"] == enrolled["id"]
        assert found["partnerRef"] == "C-77"
        assert found["phone"] == enrolled["phone"] != phone
        assert found["balance"] == {"available": 0, "pending": 0, "held": 0, "debt": 0}
    # Unknown ones are null, not errors.
    for ref in ({"phone": unique_phone()}, {"partnerRef": "C-78"}):
        body = shop.api.gql(MEMBER, {"ref": ref})
        assert "errors" not in body and body["data"]["member"] is None


async def test_member_is_null_when_not_enrolled_at_the_callers_partner(
    engine: AsyncEngine, server: str
) -> None:
    grocer = await make_shop(engine, server)
    cinema = await make_shop(engine, server)
    phone = unique_phone()
    member = grocer.enroll(phone, "X-1")
    for ref in ({"id": member["id"]}, {"phone": phone}, {"partnerRef": "X-1"}):
        body = cinema.api.gql(MEMBER, {"ref": ref})
        assert "errors" not in body, body
        assert body["data"]["member"] is None, ref
    cinema.enroll(phone)
    assert cinema.api.data(MEMBER, {"ref": {"phone": phone}})["member"]["id"] == member["id"]


async def test_member_ref_must_name_exactly_one_key(engine: AsyncEngine, server: str) -> None:
    shop = await make_shop(engine, server)
    phone = unique_phone()
    member = shop.enroll(phone, "K-1")
    for ref in ({}, {"phone": phone, "partnerRef": "K-1"}, {"id": member["id"], "phone": phone}):
        body = shop.api.gql(MEMBER, {"ref": ref})
        assert error_codes(body) == ["INVALID_INPUT"], (ref, body)
    body = shop.api.gql(MEMBER, {"ref": {"id": "not-an-id"}})
    assert error_codes(body) == ["INVALID_INPUT"]
    body = shop.api.gql(MEMBER, {"ref": {"id": shop.id}})  # a Partner id is not a Member id
    assert error_codes(body) == ["INVALID_INPUT"]


async def test_operator_enrolls_without_a_membership(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    shop = await make_shop(engine, server)
    phone = unique_phone()
    result = payload(operator_api, ENROLL, {"phone": _national(phone)}, "enrollMember")
    assert result["errors"] == []
    assert result["member"]["phone"] == phone
    # Not enrolled at any partner yet, so the partner does not see the member.
    assert shop.api.data(MEMBER, {"ref": {"phone": phone}})["member"] is None
    with_ref = payload(operator_api, ENROLL, {"phone": phone, "partnerRef": "OP-1"}, "enrollMember")
    assert user_errors(with_ref) == ["INVALID_INPUT"]


BALANCE_SHAPES = {
    "written out": """query($ref: MemberRef!) { member(ref: $ref) {
      balance { available pending held debt } } }""",
    "named fragment": """query($ref: MemberRef!) { member(ref: $ref) { ...Wallet } }
      fragment Wallet on Member { id balance { available pending held debt } }""",
    "inline fragment, aliased": """query($ref: MemberRef!) { member(ref: $ref) {
      ... on Member { balance: balance { available pending held debt } } } }""",
}


async def test_member_balance_is_read_with_the_lookup(
    engine: AsyncEngine, server: str, operator_api: Api
) -> None:
    """A till's `member { balance }` gets the same figures however it is written, and the
    lookup with the balance is one statement (not a lookup, then a balance read)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    shop = await make_shop(engine, server)
    slow = await make_shop(engine, server, pending_days=7)
    stranger = await make_shop(engine, server)
    phone = unique_phone()
    member = shop.enroll(phone)
    slow.enroll(phone)
    shop.earn_ok({"phone": phone}, "100")
    slow.earn_ok({"phone": phone}, "40")
    assert shop.hold({"phone": phone}, 30)["errors"] == []
    expected = {"available": 70, "pending": 40, "held": 30, "debt": 0}

    for shape, query in BALANCE_SHAPES.items():
        for ref in ({"phone": phone}, {"id": member["id"]}):
            found = shop.api.data(query, {"ref": ref})["member"]
            assert found["balance"] == expected, (shape, ref)
        by_operator = operator_api.data(query, {"ref": {"id": member["id"]}})["member"]
        assert by_operator["balance"] == expected, shape
        # A partner the member never joined sees nothing, balance or not.
        assert stranger.api.data(query, {"ref": {"phone": phone}})["member"] is None, shape
    plain = shop.api.data(
        "query($r: MemberRef!) { member(ref: $r) { id } }", {"r": {"phone": phone}}
    )
    assert plain["member"]["id"] == member["id"]

    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        found = shop.api.data(BALANCE_SHAPES["written out"], {"ref": {"phone": phone}})
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert found["member"]["balance"] == expected
    reads = [s for s in seen if "members" in s or "lots" in s]
    assert len(reads) == 1, reads
