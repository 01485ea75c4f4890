"""Limits on the shape of a query document: depth, aliases and fragment spreads, in one pass.

Strawberry's `QueryDepthLimiter` and `MaxAliasesLimiter` expand every fragment spread where it
is written, so a document whose fragments each spread the previous one twice makes them visit
2^n selections: 19 levels in 800 bytes held the event loop for seconds. Here each fragment is
measured once — its depth, its aliases and the spreads it expands to — and that measure is
reused wherever it is spread, so the work is linear in the size of the document.

- depth: fields with a selection set nested in each other, through fragments (introspection
  fields such as `__schema` do not count, as in strawberry's limiter);
- aliases: aliased fields, counted as often as the fragments that hold them are spread;
- spreads: fragment spreads, each fragment's own counted as often as it is spread. This bounds
  what every later step that expands fragments (the other validation rules, the cost, the
  execution) can be made to do by a small document.

Every refusal is a GraphQL error with `extensions.code` (`MAX_DEPTH_EXCEEDED`,
`MAX_ALIASES_EXCEEDED`, `MAX_SPREADS_EXCEEDED`), which the rate limiter charges for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)

DEPTH_EXCEEDED = "MAX_DEPTH_EXCEEDED"
ALIASES_EXCEEDED = "MAX_ALIASES_EXCEEDED"
SPREADS_EXCEEDED = "MAX_SPREADS_EXCEEDED"
LIMIT_CODES = frozenset({DEPTH_EXCEEDED, ALIASES_EXCEEDED, SPREADS_EXCEEDED})


@dataclass(frozen=True)
class Shape:
    """What a selection set expands to."""

    depth: int = 0
    aliases: int = 0
    spreads: int = 0


EMPTY = Shape()


@dataclass
class DocumentShape:
    operations: dict[str, Shape]
    visits: int  # selections looked at: at most the number written in the document

    @property
    def depth(self) -> int:
        return max((s.depth for s in self.operations.values()), default=0)

    @property
    def aliases(self) -> int:
        return sum(s.aliases for s in self.operations.values())

    @property
    def spreads(self) -> int:
        return sum(s.spreads for s in self.operations.values())


@dataclass
class _Measure:
    fragments: dict[str, FragmentDefinitionNode]
    visits: int = 0
    _memo: dict[str, Shape] = field(default_factory=dict)
    _active: set[str] = field(default_factory=set)

    def selection_set(self, selection_set: SelectionSetNode | None) -> Shape:
        if selection_set is None:
            return EMPTY
        depth = aliases = spreads = 0
        for node in selection_set.selections:
            self.visits += 1
            if isinstance(node, FieldNode):
                inner = self.selection_set(node.selection_set)
                aliases += inner.aliases + (1 if node.alias else 0)
                spreads += inner.spreads
                if node.selection_set is not None and not node.name.value.startswith("__"):
                    depth = max(depth, 1 + inner.depth)
                continue
            if isinstance(node, InlineFragmentNode):
                inner = self.selection_set(node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                inner = self.fragment(node.name.value)
                spreads += 1
            else:  # pragma: no cover - the three kinds of selection
                continue
            depth = max(depth, inner.depth)
            aliases += inner.aliases
            spreads += inner.spreads
        return Shape(depth, aliases, spreads)

    def fragment(self, name: str) -> Shape:
        """A fragment's shape, measured once however often it is spread."""
        known = self._memo.get(name)
        if known is not None:
            return known
        definition = self.fragments.get(name)
        if definition is None or name in self._active:
            return EMPTY  # unknown or cyclic: other rules refuse the document
        self._active.add(name)
        try:
            shape = self.selection_set(definition.selection_set)
        finally:
            self._active.discard(name)
        self._memo[name] = shape
        return shape


def measure(document: DocumentNode) -> DocumentShape:
    """The shape of every operation of a document (see the module)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    walk = _Measure(fragments)
    operations: dict[str, Shape] = {}
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            name = definition.name.value if definition.name else "anonymous"
            operations[name] = walk.selection_set(definition.selection_set)
    return DocumentShape(operations, walk.visits)


def _count(n: int) -> str:
    # Expanded counts grow exponentially with nesting: do not print a 90-digit number.
    return str(n) if n <= 1_000_000 else "over a million"


def shape_limits(max_depth: int, max_aliases: int, max_spreads: int) -> type[ValidationRule]:
    """A validation rule refusing documents deeper, with more aliases or more (expanded)
    fragment spreads than allowed."""

    class ShapeLimits(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            try:
                shape = measure(context.document)
            except RecursionError:
                context.report_error(
                    GraphQLError(
                        "the document nests fragments or fields too deeply",
                        extensions={"code": DEPTH_EXCEEDED, "limit": max_depth},
                    )
                )
                return
            if shape.spreads > max_spreads:
                context.report_error(
                    GraphQLError(
                        f"the document expands to {_count(shape.spreads)} fragment spreads, more"
                        f" than the limit of {max_spreads}: spread each fragment fewer times",
                        extensions={"code": SPREADS_EXCEEDED, "limit": max_spreads},
                    )
                )
            for name, operation in shape.operations.items():
                if operation.depth > max_depth:
                    context.report_error(
                        GraphQLError(
                            f"'{name}' exceeds maximum operation depth of {max_depth}",
                            extensions={"code": DEPTH_EXCEEDED, "limit": max_depth},
                        )
                    )
            if shape.aliases > max_aliases:
                context.report_error(
                    GraphQLError(
                        f"{_count(shape.aliases)} aliases found. Allowed: {max_aliases}",
                        extensions={"code": ALIASES_EXCEEDED, "limit": max_aliases},
                    )
                )

    return ShapeLimits
