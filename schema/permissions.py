"""Scope checks. Every root field declares its scope here, and a test checks none is missing.

Each guarded field carries `@hasScope(scope: "...")` in the SDL, so an integrator (and a
code generator) sees which scope a token needs for it without reading the docs.
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.schema_directive import Location

ANY_CLIENT = "*"
# Root field name -> the scope it needs ("*": any authenticated client).
ROOT_FIELD_SCOPES: dict[str, str] = {}
SCOPE_ARGUMENT = (
    'The scope, such as "points:earn"; "operator": the coalition operator\'s clients only;'
    ' "*": any authenticated client.'
)


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="hasScope",
    description=(
        "The OAuth scope a token needs to call this field; without it the field answers a"
        ' GraphQL error with `extensions.code = "FORBIDDEN"` (and null). The operator\'s'
        " clients may call every field."
    ),
)
class HasScopeDirective:
    scope: str = strawberry.field(description=SCOPE_ARGUMENT)


class HasScope(BasePermission):
    error_extensions = {"code": "FORBIDDEN"}

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.message = f"this operation needs the '{scope}' scope"

    @property
    def schema_directive(self) -> object:
        """Shown in the SDL as `@hasScope(scope: "...")` on the field."""
        return HasScopeDirective(scope=self.scope)

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        caller = info.context.caller
        if self.scope == ANY_CLIENT:
            return True
        if self.scope == "operator":
            return bool(caller.is_operator)
        return bool(caller.has(self.scope))


def requires(field_name: str, scope: str) -> list[FieldExtension]:
    """Extensions for a root field, recording its rule for the authorization test."""
    ROOT_FIELD_SCOPES[field_name] = scope
    return [PermissionExtension(permissions=[HasScope(scope)], fail_silently=False)]
