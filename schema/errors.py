"""Typed errors: `UserError` in payloads for expected failures, coded GraphQL errors otherwise."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError

from ledger.errors import DomainError
from ledger.errors import ErrorCode as DomainErrorCode

ErrorCode = strawberry.enum(DomainErrorCode, name="ErrorCode", description="Why a mutation failed.")


@strawberry.type(description="An expected failure: nothing was changed.")
class UserError:
    code: ErrorCode  # type: ignore[valid-type]
    message: str
    field: list[str] | None

    @classmethod
    def of(cls, error: DomainError) -> UserError:
        return cls(code=error.code, message=error.message, field=error.field)


def query_error(error: DomainError) -> GraphQLError:
    """Queries have no payload: their expected failures are GraphQL errors with a code."""
    return GraphQLError(error.message, extensions={"code": str(error.code)})


def forbidden(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "FORBIDDEN"})
