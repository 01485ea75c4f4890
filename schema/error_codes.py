"""A code for every top-level error: syntax, validation and input errors get one too.

GraphQL's own errors (a syntax error, an unknown field, a variable of the wrong type, a
`@oneOf` input with two fields) carry no `extensions.code`; a client switching over
`TopLevelErrorCode` would have to read messages. This extension gives them one, after the
other extensions (masking included) have run, and leaves every coded error alone:

- `GRAPHQL_PARSE_FAILED`: the document is not GraphQL (or has too many tokens);
- `INVALID_INPUT`: a value the client sent is not one of its type (a variable that does not
  coerce, a `MemberRef` with zero or two fields, a DateTime without an offset);
- `GRAPHQL_VALIDATION_FAILED`: the document does not fit the schema (an unknown field or
  argument, a missing variable, a fragment on the wrong type).
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.extensions import SchemaExtension

PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
INVALID_INPUT = "INVALID_INPUT"


def _is(error: GraphQLError, kind: type[Exception]) -> bool:
    return isinstance(error, kind) or isinstance(error.original_error, kind)


def code_for(error: GraphQLError) -> str | None:
    """The code an uncoded top-level error gets (None: leave it as it is)."""
    if error.extensions and "code" in error.extensions:
        return None
    if _is(error, GraphQLSyntaxError):
        return PARSE_FAILED
    if error.path is not None:
        return None  # raised while executing a field: coded, or masked as INTERNAL_ERROR
    original = error.original_error
    if original is not None and not isinstance(original, GraphQLError | ValueError | TypeError):
        return None  # not the client's mistake: the masking extension's to report
    if _is(error, StrawberryInputCoercionError) or (
        # graphql-core: "Variable '$x' has invalid value: ..." (a value that does not coerce)
        error.message.startswith("Variable '$") and " invalid value" in error.message
    ):
        return INVALID_INPUT
    return VALIDATION_FAILED


class CodeEveryError(SchemaExtension):
    """Codes the errors of the result being built, just before it is returned.

    `get_results` is the one hook that runs on every path to a result, after every other
    hook (masking included): a syntax error found by the parser cache leaves the operation
    before `on_operation` or `on_parse` could see it. The errors it codes are those strawberry
    has just put on `pre_execution_errors`: the result's errors, as the client will get them.
    """

    def get_results(self) -> dict[str, Any]:
        for error in self.execution_context.pre_execution_errors or ():
            code = code_for(error)
            if code is not None:
                error.extensions = {**(error.extensions or {}), "code": code}
        return {}
