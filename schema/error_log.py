"""How GraphQL errors are logged: a client's mistake is not the server's error.

Strawberry logs every GraphQL error at ERROR with its traceback: a FORBIDDEN, an invalid
phone, a refused query cost, a validation error all looked like crashes. Here an expected
error (a code the platform set, a syntax or validation error) is one INFO line without a
traceback; only an unexpected exception is an ERROR with its traceback. The request id is on
every record (api/logs.py), so a masked INTERNAL_ERROR a client reports can be found.
"""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from schema.masking import _sqlstate, database_unavailable, invalid_data, is_unexpected

log = logging.getLogger("coalition.graphql")


def _where(error: GraphQLError) -> str:
    return ".".join(str(part) for part in error.path) if error.path else "-"


def log_error(error: GraphQLError) -> None:
    where = _where(error)
    original = error.original_error
    if not is_unexpected(error):
        code = (error.extensions or {}).get("code")
        if log.isEnabledFor(logging.INFO):
            log.info(
                "GraphQL %s at %s: %s",
                code or "error",
                where,
                error.message,
                extra={"error_code": code, "graphql_path": where},
            )
    elif database_unavailable(original):
        log.warning(
            "database unavailable in %s: %s",
            where,
            type(original).__name__,
            extra={"error_code": "SERVICE_UNAVAILABLE", "graphql_path": where},
        )
    elif invalid_data(original):
        assert original is not None
        log.info(
            "refused input in %s: SQLSTATE %s",
            where,
            _sqlstate(original),
            extra={"error_code": "INVALID_INPUT", "graphql_path": where},
        )
    else:
        log.error(
            "unexpected error in %s",
            where,
            exc_info=original,
            extra={"error_code": "INTERNAL_ERROR", "graphql_path": where},
        )


class CoalitionSchema(strawberry.Schema):
    """strawberry.Schema with the platform's error logging (the errors are logged before
    MaskUnexpectedErrors hides an unexpected one from the client)."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            log_error(error)
