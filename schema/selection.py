"""What the query asks of the field being resolved, for resolvers that fetch ahead."""

from __future__ import annotations

from typing import Any

from strawberry.types.nodes import SelectedField, Selection


def _field_names(selections: list[Selection]) -> set[str]:
    """Fields selected at this level, written out or through (inline) fragments."""
    names: set[str] = set()
    for selection in selections:
        if isinstance(selection, SelectedField):
            names.add(selection.name)
        else:
            names |= _field_names(selection.selections)
    return names


def selects(info: Any, field: str) -> bool:
    """Whether the field being resolved selects `field` directly under it. Directives are
    not evaluated: fetching ahead for a field the query then skips is harmless."""
    return any(field in _field_names(selected.selections) for selected in info.selected_fields)
