"""GraphQL enums with a description for every value (the SDL is an integrator's reference).

`described_enum` exposes a Python enum (often a domain one, which must not import
strawberry) under a GraphQL name and attaches one description per value; a value without
one fails at import, so a new code cannot reach the SDL undocumented.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

import strawberry
from strawberry.types.enum import StrawberryEnumDefinition

E = TypeVar("E", bound=type[Enum])


def described_enum(cls: E, *, name: str, description: str, values: dict[str, str]) -> E:
    """`cls` as the GraphQL enum `name`, each value described by `values[value name]`."""
    exposed = strawberry.enum(cls, name=name, description=description)
    definition: StrawberryEnumDefinition = exposed.__strawberry_definition__  # type: ignore[attr-defined]
    names = {value.name for value in definition.values}
    missing, unknown = names - set(values), set(values) - names
    if missing or unknown:
        raise TypeError(f"{name}: undescribed values {sorted(missing)}, unknown {sorted(unknown)}")
    for value in definition.values:
        value.description = values[value.name]
    return exposed
