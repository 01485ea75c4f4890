"""Walks a built schema for what a schema linter flags first: anything undescribed."""

from __future__ import annotations

from graphql import (
    GraphQLSchema,
    get_named_type,
    is_enum_type,
    is_input_object_type,
    is_interface_type,
    is_object_type,
    is_specified_directive,
)


def undescribed(schema: GraphQLSchema) -> list[str]:
    """Every type, field, argument, input field, enum value and directive (with its
    arguments) of the schema's own that has no description, as `Type.field(arg)` paths."""
    gaps: list[str] = []

    def check(path: str, description: str | None) -> None:
        if not (description and description.strip()):
            gaps.append(path)

    for name, type_ in sorted(schema.type_map.items()):
        if name.startswith("__") or name in {"String", "Int", "Float", "Boolean", "ID"}:
            continue
        check(name, type_.description)
        if is_object_type(type_) or is_interface_type(type_):
            for field_name, field in type_.fields.items():
                check(f"{name}.{field_name}", field.description)
                for arg_name, arg in field.args.items():
                    check(f"{name}.{field_name}({arg_name})", arg.description)
        elif is_input_object_type(type_):
            for field_name, input_field in type_.fields.items():
                check(f"{name}.{field_name}", input_field.description)
        elif is_enum_type(type_):
            for value_name, value in type_.values.items():
                check(f"{name}.{value_name}", value.description)
    for directive in schema.directives:
        if is_specified_directive(directive):
            continue
        check(f"@{directive.name}", directive.description)
        for arg_name, arg in directive.args.items():
            check(f"@{directive.name}({arg_name})", arg.description)
    return gaps


def input_path_exists(schema: GraphQLSchema, input_type: str, path: list[str]) -> bool:
    """Whether `path` names an input field as a client writes it, from `input_type`'s fields
    down through nested input objects (list elements by their index)."""
    current = schema.type_map[input_type]
    for step in path:
        if step.isdigit():
            continue  # an element of the list the previous step named
        if not is_input_object_type(current) or step not in current.fields:
            return False
        current = get_named_type(current.fields[step].type)
    return True
