"""Mask unexpected errors: the client gets a code and a request id, the log gets the trace."""

from __future__ import annotations

import logging

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from ledger.errors import DomainError

log = logging.getLogger("coalition.graphql")


def is_unexpected(error: GraphQLError) -> bool:
    """Syntax, validation, permission and coded errors are for the client; crashes are not."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError | DomainError):
        return False
    return not (error.extensions and "code" in error.extensions)


class MaskUnexpectedErrors(MaskErrors):
    def __init__(self) -> None:
        super().__init__(should_mask_error=is_unexpected, error_message="Internal server error")

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        context = self.execution_context.context
        request_id = getattr(context, "request_id", None)
        log.error(
            "unexpected error in %s (request %s)",
            error.path,
            request_id,
            exc_info=error.original_error,
        )
        return GraphQLError(
            message=self.error_message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_ERROR", "requestId": request_id},
        )
