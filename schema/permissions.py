"""Scope checks. Every root field declares its scope here, and a test checks none is missing."""

from __future__ import annotations

from typing import Any

from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension

ANY_CLIENT = "*"
# Root field name -> the scope it needs ("*": any authenticated client).
ROOT_FIELD_SCOPES: dict[str, str] = {}


class HasScope(BasePermission):
    error_extensions = {"code": "FORBIDDEN"}

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.message = f"this operation needs the '{scope}' scope"

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
