"""Typed errors: `UserError` in payloads for expected failures, coded GraphQL errors otherwise.

Two enums name every code a client can meet:
- `ErrorCode`: `UserError.code` in a mutation's `errors` (nothing was changed);
- `TopLevelErrorCode`: `extensions.code` of an entry of the response's top-level `errors`
  (the operation, or one field of it, did not run). A test reads the server's source for
  every code it can put there and checks that this enum names it.
"""

from __future__ import annotations

from enum import StrEnum

import strawberry
from graphql import GraphQLError

from core.errors import DomainError
from core.errors import ErrorCode as DomainErrorCode
from schema.enums import described_enum

ErrorCode = described_enum(
    DomainErrorCode,
    name="ErrorCode",
    description="Why a mutation refused its input: `UserError.code`. Nothing was changed, and"
    " the idempotency key was not used up, so the request can be corrected and sent again."
    " New codes may be added: treat an unknown one as a refusal.",
    values={
        "INVALID_INPUT": "A value is out of its range or badly formed (an id of the wrong type,"
        " an empty reference, a time without an offset, ...); `field` names it.",
        "INVALID_AMOUNT": "An amount, a rate, a price or a number of points is not a positive"
        " value in range, or has more decimals than allowed (money: the currency's scale,"
        " 2 for RUB; rates and prices: 6).",
        "INVALID_PHONE": "The phone cannot be read as a valid number (in the coalition's"
        " default region when it has no country code).",
        "INVALID_CURSOR": "The `after` cursor was not returned by this list.",
        "MEMBER_NOT_FOUND": "No member matches the reference, or the member is not enrolled"
        " with the calling partner.",
        "PARTNER_NOT_FOUND": "No partner has this id.",
        "TRANSFER_NOT_FOUND": "No transfer has this id among those the caller booked.",
        "HOLD_NOT_FOUND": "No hold has this id among those the caller placed.",
        "HOLD_NOT_ACTIVE": "The hold was already captured, voided or has lapsed.",
        "INSUFFICIENT_POINTS": "The member's available points (after holds) are fewer than"
        " asked for.",
        "IDEMPOTENCY_KEY_REUSED": "This idempotency key was already used by this client for a"
        " different request; a replay of the same request returns its first answer instead.",
        "ALREADY_REVERSED": "The transfer has already been reversed in full (or fewer points"
        " are left to reverse than asked for).",
        "NOT_REVERSIBLE": "Only earns and redemptions can be reversed.",
        "REDEMPTION_NOT_ACCEPTED": "The calling partner does not accept points (or the call"
        " needs a partner's client).",
        "PARTNER_REF_TAKEN": "Another member already has this partnerRef at the calling partner.",
        "SLUG_TAKEN": "Another partner already has this slug.",
        "INVALID_SCOPE": "A scope that does not exist, or one the client may not hold (a"
        " partner's client cannot hold `operator`; an operator client must).",
        "CLIENT_NOT_FOUND": "No API client has this id.",
        "PERIOD_NOT_FOUND": "No settlement period has this id, or it is not the OPEN period"
        " the operation needs (a retried close of a period already closed).",
        "INVALID_CUTOFF": "The cutoff is before the period's start or in the future.",
        "INSTRUCTION_NOT_FOUND": "No payment instruction has this id.",
        "ALREADY_PAID": "The payment instruction was already marked paid.",
        "REPORT_INVALID": "The partner report cannot be accepted (the period is OPEN, or a"
        " record is malformed); nothing was stored.",
        "BREAK_NOT_FOUND": "No reconciliation break has this id.",
        "BREAK_ALREADY_RESOLVED": "The reconciliation break was already resolved.",
        "INVALID_LINES": "The purchase's lines cannot be priced: a line without a sku, a"
        " quantity or amount out of range, or lines that do not add up to the amount exactly"
        " (`field` names the line). Nothing was booked.",
        # Campaigns.
        "CAMPAIGN_NOT_FOUND": "No campaign has this id among those the caller may see (a"
        " partner's client sees only its own partner's campaigns).",
        "CAMPAIGN_NOT_EDITABLE": "The campaign's status does not allow this change: an ENDED"
        " or ARCHIVED campaign is not edited, only a DRAFT or PAUSED one is resumed, only an"
        " ACTIVE or PAUSED one is ended, only a DRAFT or ENDED one is archived.",
        "INVALID_CONDITION": "The campaign's condition is not a CEL expression that compiles"
        " to a boolean; the message is the compiler's.",
        "INVALID_EFFECT": "The campaign's effect gives nothing or is out of range: a multiplier"
        " below 1, negative bonus points or points per unit, more decimals than allowed, or"
        " no multiplier above 1, bonus points or points per unit at all.",
        "INVALID_FUNDING": "The funding shares do not add up to exactly 1, a share is not above"
        " 0 and at most 1, a funder is named twice, or a funder is not a partner.",
        "INVALID_SCHEDULE": "The campaign's end is not after its start (or is already past"
        " when the campaign is created).",
        "PARTNER_NOT_ALLOWED": "A partner's client named another partner (or the operator)"
        " where its campaign applies or as a funder: a partner's campaign applies only at"
        " that partner and is funded only by it.",
        # Coalition tiers.
        "INVALID_TIER_POLICY": "The tier policy is out of range: a tier code empty, too long,"
        " not letters, digits, `_` or `-`, or named twice; a name empty or too long; more than"
        " 20 tiers; thresholds not strictly ascending from 0 or more; a multiplier below 1,"
        " above 10 or with more than 6 decimals; windowDays outside 1 to 1096 or graceDays"
        " outside 0 to 1096. `field` names the value.",
    },
)


class TopLevelCode(StrEnum):
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    MAX_COST_EXCEEDED = "MAX_COST_EXCEEDED"
    MAX_DEPTH_EXCEEDED = "MAX_DEPTH_EXCEEDED"
    MAX_ALIASES_EXCEEDED = "MAX_ALIASES_EXCEEDED"
    MAX_SPREADS_EXCEEDED = "MAX_SPREADS_EXCEEDED"
    INVALID_INPUT = "INVALID_INPUT"
    INVALID_CURSOR = "INVALID_CURSOR"
    INVALID_PHONE = "INVALID_PHONE"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    BAD_REQUEST = "BAD_REQUEST"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    HTTP_ERROR = "HTTP_ERROR"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"


TopLevelErrorCode = described_enum(
    TopLevelCode,
    name="TopLevelErrorCode",
    description="`extensions.code` of an entry of a response's top-level `errors`: the"
    " operation (or the field at the error's `path`) did not run, unlike a mutation's"
    " `UserError`. Every top-level error carries one. New codes may be added: treat an unknown"
    " one as an error.",
    values={
        "FORBIDDEN": "The token lacks the scope the field needs (see `@hasScope` on it); the"
        " field is null.",
        "RATE_LIMITED": "The operation costs more than the client's rate-limit bucket holds"
        " now; nothing ran (`data` is null). `extensions.retryAfterSeconds` says when it will"
        " fit; `extensions.cost`, `available`, `capacity` and `restoreRate` give the figures.",
        "MAX_COST_EXCEEDED": "The operation costs more than the bucket's whole capacity and"
        " can never run: ask for smaller pages (`first`) or fewer fields.",
        "MAX_DEPTH_EXCEEDED": "The document nests fields deeper than the server allows"
        " (`extensions.limit`).",
        "MAX_ALIASES_EXCEEDED": "The document uses more aliases than the server allows"
        " (`extensions.limit`).",
        "MAX_SPREADS_EXCEEDED": "The document spreads fragments more often than the server"
        " allows (`extensions.limit`).",
        "INVALID_INPUT": "A value the client sent is refused before anything runs: a variable"
        " that is not of its type, a `MemberRef` naming zero or two fields (`@oneOf`), a"
        " DateTime without an offset; or an argument of a query is malformed or out of range"
        " (an id of the wrong type, `first` outside 1 to 100); or a value cannot be stored.",
        "INVALID_CURSOR": "The `after` cursor was not returned by this list.",
        "INVALID_PHONE": "The phone in `member(ref:)` cannot be read as a valid number.",
        "SERVICE_UNAVAILABLE": "The database is unreachable for a moment: retry shortly (a"
        " write retried with the same idempotencyKey is booked at most once).",
        "INTERNAL_ERROR": "An unexpected failure; `extensions.requestId` identifies it in the"
        " server's log. Whether a write took effect is unknown: retry it with the same"
        " idempotencyKey.",
        "BAD_REQUEST": "The HTTP request is not a GraphQL request the server can read (not"
        " JSON, not UTF-8, nested too deep, no query, a mutation sent with GET); HTTP 400.",
        "NOT_FOUND": "Nothing is served at this path and method; HTTP 404.",
        "METHOD_NOT_ALLOWED": "Only GET and POST are served; HTTP 405.",
        "HTTP_ERROR": "Another HTTP-level refusal; the HTTP status says which.",
        "GRAPHQL_PARSE_FAILED": "The document is not valid GraphQL syntax (or has more tokens"
        " or nesting than the server reads); nothing ran.",
        "GRAPHQL_VALIDATION_FAILED": "The document does not fit the schema (an unknown field or"
        " argument, a missing required argument, an unused variable); nothing ran. The"
        " message says what.",
    },
)

# DomainError codes a query may raise as a top-level error (query_error); anything else is
# reported as INVALID_INPUT (or FORBIDDEN for a missing scope), so every code a client can
# meet at the top level is in TopLevelErrorCode.
_QUERY_CODES = {
    DomainErrorCode.INVALID_INPUT: TopLevelCode.INVALID_INPUT,
    DomainErrorCode.INVALID_CURSOR: TopLevelCode.INVALID_CURSOR,
    DomainErrorCode.INVALID_PHONE: TopLevelCode.INVALID_PHONE,
    DomainErrorCode.INVALID_SCOPE: TopLevelCode.FORBIDDEN,
}


@strawberry.type(
    description="An expected failure of a mutation: the request was refused and nothing was"
    " changed."
)
class UserError:
    code: ErrorCode = strawberry.field(  # type: ignore[valid-type]
        description="What went wrong, for programs to branch on."
    )
    message: str = strawberry.field(
        description="What went wrong, in English, for people (may change; do not parse it)."
    )
    field: list[str] | None = strawberry.field(
        description="The path of the input field the error concerns, as the client wrote it,"
        ' from the `input` object: `["amount"]`, `["member", "phone"]`, `["transferId"]`;'
        " null when it concerns no single field."
    )

    @classmethod
    def of(cls, error: DomainError) -> UserError:
        return cls(code=error.code, message=error.message, field=error.field or None)


def query_code(error: DomainError) -> TopLevelCode:
    """The top-level code a query's expected failure is reported with."""
    return _QUERY_CODES.get(error.code, TopLevelCode.INVALID_INPUT)


def query_error(error: DomainError) -> GraphQLError:
    """Queries have no payload: their expected failures are GraphQL errors with a code."""
    return GraphQLError(error.message, extensions={"code": str(query_code(error))})
