"""Shared GraphQL documents and small helpers for the HTTP end-to-end tests."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Api, make_partner, partner_api, unique_phone

ENROLL = """mutation($input: EnrollMemberInput!) { enrollMember(input: $input) {
  member { id phone partnerRef } errors { code message field } } }"""

EARN = """mutation($input: EarnPointsInput!) { earnPoints(input: $input) {
  points transfer { id code points reference amount partner { id slug } }
  member { id balance { available pending held debt } }
  explanation { rule description points } errors { code message field } } }"""

REDEEM = """mutation($input: RedeemPointsInput!) { redeemPoints(input: $input) {
  points value transfer { id code points reference partner { slug } }
  member { id balance { available pending held debt } }
  errors { code message field } } }"""

REVERSE = """mutation($input: ReverseTransferInput!) { reverseTransfer(input: $input) {
  transfer { id code points reason reversalOf { id } }
  member { id balance { available pending held debt } }
  errors { code message field } } }"""

HOLD = """mutation($input: HoldPointsInput!) { holdPoints(input: $input) {
  hold { id points status reference transfer { id } } transfer { id }
  member { id balance { available pending held debt } }
  errors { code message field } } }"""

CAPTURE = """mutation($input: CaptureHoldInput!) { captureHold(input: $input) {
  hold { id points status transfer { id code points } } transfer { id code points }
  member { id balance { available pending held debt } }
  errors { code message field } } }"""

VOID = """mutation($input: VoidHoldInput!) { voidHold(input: $input) {
  hold { id status } member { id balance { available pending held debt } }
  errors { code message field } } }"""

MEMBER = """query($ref: MemberRef!) { member(ref: $ref) {
  id phone partnerRef balance { available pending held debt } } }"""

BALANCE = """query($ref: MemberRef!) { member(ref: $ref) {
  balance { available pending held debt } } }"""

TRANSFERS = """query($ref: MemberRef!, $first: Int, $after: String) { member(ref: $ref) {
  transfers(first: $first, after: $after) {
    edges { cursor node { id code points reference partner { slug } } }
    pageInfo { hasNextPage endCursor } } } }"""

TRANSFER = """query($id: ID!) { transfer(id: $id) { id code points reference } }"""

NODE = """query($id: ID!) { node(id: $id) { __typename id } }"""

VIEWER = """{ viewer { clientId scopes partner { id slug } } }"""


def key() -> str:
    return secrets.token_hex(8)


def error_codes(body: dict[str, Any]) -> list[str]:
    """The `extensions.code` of every GraphQL error in a response body."""
    return [str((e.get("extensions") or {}).get("code")) for e in body.get("errors") or []]


def payload(api: Api, mutation: str, input: dict[str, Any], name: str) -> dict[str, Any]:
    """Run a mutation that must not raise GraphQL errors; return its payload."""
    result: dict[str, Any] = api.data(mutation, {"input": input})[name]
    return result


def user_errors(result: dict[str, Any]) -> list[str]:
    return [e["code"] for e in result["errors"]]


@dataclass
class Shop:
    """A partner with an API client holding every partner scope."""

    id: str  # global id
    raw_id: Any
    slug: str
    api: Api

    def enroll(self, phone: str, partner_ref: str | None = None) -> dict[str, Any]:
        result = payload(
            self.api, ENROLL, {"phone": phone, "partnerRef": partner_ref}, "enrollMember"
        )
        assert result["errors"] == [], result["errors"]
        member: dict[str, Any] = result["member"]
        return member

    def earn(
        self,
        member: dict[str, Any],
        amount: str,
        *,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        return payload(
            self.api,
            EARN,
            {
                "member": member,
                "amount": amount,
                "reference": extra.pop("reference", f"R-{key()}"),
                "idempotencyKey": idempotency_key or key(),
                **extra,
            },
            "earnPoints",
        )

    def earn_ok(self, member: dict[str, Any], amount: str, **extra: Any) -> dict[str, Any]:
        result = self.earn(member, amount, **extra)
        assert result["errors"] == [], result["errors"]
        return result

    def redeem(
        self,
        member: dict[str, Any],
        points: int,
        *,
        idempotency_key: str | None = None,
        reference: str | None = None,
    ) -> dict[str, Any]:
        return payload(
            self.api,
            REDEEM,
            {
                "member": member,
                "points": points,
                "reference": reference or f"T-{key()}",
                "idempotencyKey": idempotency_key or key(),
            },
            "redeemPoints",
        )

    def reverse(
        self, transfer_id: str, points: int | None = None, reason: str | None = None
    ) -> dict[str, Any]:
        return payload(
            self.api,
            REVERSE,
            {
                "transferId": transfer_id,
                "points": points,
                "reason": reason,
                "idempotencyKey": key(),
            },
            "reverseTransfer",
        )

    def hold(self, member: dict[str, Any], points: int) -> dict[str, Any]:
        return payload(
            self.api,
            HOLD,
            {
                "member": member,
                "points": points,
                "reference": f"H-{key()}",
                "idempotencyKey": key(),
            },
            "holdPoints",
        )

    def capture(self, hold_id: str, points: int | None = None) -> dict[str, Any]:
        return payload(
            self.api,
            CAPTURE,
            {"holdId": hold_id, "points": points, "idempotencyKey": key()},
            "captureHold",
        )

    def void(self, hold_id: str) -> dict[str, Any]:
        return payload(self.api, VOID, {"holdId": hold_id, "idempotencyKey": key()}, "voidHold")

    def balance(self, ref: dict[str, Any]) -> dict[str, int]:
        member = self.api.data(BALANCE, {"ref": ref})["member"]
        assert member is not None, f"member {ref} not visible"
        result: dict[str, int] = member["balance"]
        return result


async def make_shop(
    engine: AsyncEngine,
    server: str,
    *,
    earn_rate: str = "1",
    accepts_redemption: bool = True,
    pending_days: int = 0,
    points_validity_days: int = 365,
) -> Shop:
    from schema.relay import to_global_id

    partner = await make_partner(
        engine,
        earn_rate=earn_rate,
        accepts_redemption=accepts_redemption,
        pending_days=pending_days,
        points_validity_days=points_validity_days,
    )
    api = await partner_api(engine, server, partner.id)
    return Shop(
        id=to_global_id("Partner", partner.id), raw_id=partner.id, slug=partner.slug, api=api
    )


__all__ = ["unique_phone"]
