"""Mask unexpected errors: the client gets a code and a request id. The log gets the trace
from the schema's error processing (schema/error_log.py), which sees every error first."""

from __future__ import annotations

from graphql import GraphQLError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from strawberry.extensions import MaskErrors

from core.errors import DomainError

# SQLSTATE classes and codes that mean "the database is not there right now":
# 08 connection exception, 57P01-57P03 admin/crash shutdown and "cannot connect now",
# 53300 too many connections.
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")


def is_unexpected(error: GraphQLError) -> bool:
    """Syntax, validation, permission and coded errors are for the client; crashes are not."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError | DomainError):
        return False
    return not (error.extensions and "code" in error.extensions)


def _sqlstate(exc: BaseException) -> str:
    for candidate in (exc, getattr(exc, "orig", None), getattr(exc, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None)
        if state:
            return str(state)
    orig = getattr(exc, "orig", None)
    state = getattr(getattr(orig, "__cause__", None), "sqlstate", None)
    return str(state) if state else ""


def database_unavailable(exc: BaseException | None) -> bool:
    """A lost or refused database connection (PostgreSQL down, restarting, overloaded)."""
    if exc is None:
        return False
    if isinstance(exc, PoolTimeout | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError):  # the socket is missing or refuses connections
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return _sqlstate(exc).startswith(_UNAVAILABLE_STATES)


def invalid_data(exc: BaseException | None) -> bool:
    """A value PostgreSQL cannot hold (class 22): a NUL character, a number out of range."""
    return exc is not None and _sqlstate(exc).startswith("22")


class MaskUnexpectedErrors(MaskErrors):
    def __init__(self) -> None:
        super().__init__(should_mask_error=is_unexpected, error_message="Internal server error")

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        context = self.execution_context.context
        request_id = getattr(context, "request_id", None)
        original = error.original_error
        if database_unavailable(original):
            code = "SERVICE_UNAVAILABLE"
            message = (
                "The database is unavailable; retry shortly (a write retried with the same"
                " idempotencyKey is booked at most once)"
            )
        elif invalid_data(original):
            code = "INVALID_INPUT"
            message = (
                "The input holds a value that cannot be stored (a NUL character, or a number"
                " or a date out of range)"
            )
        else:
            code = "INTERNAL_ERROR"
            message = self.error_message
        return GraphQLError(
            message=message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": code, "requestId": request_id},
        )
