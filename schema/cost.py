"""Per-client rate limits by query cost: a leaky bucket per API client, as Shopify and GitHub do.

The cost of an operation is computed from its parsed, validated document before anything runs:

- a field that returns an object (or a list of objects) costs 1 plus what is selected under it;
  scalar and enum fields (and `__typename`) cost 0;
- a connection (a field taking `first` whose type has `edges`) costs 1 plus `first` times what
  is selected under `edges` and `nodes` (the rest, such as `pageInfo`, once); `first` is read
  from the document or its variables, 20 when absent and at most 100, so nested connections
  multiply;
- a root mutation field costs 10 plus what is selected in its payload, plus 1 for every 10
  items of the lists of input objects in its arguments (a batch's rows, a report's records);
- fragments count as written (a spread or an inline fragment adds its selections); lists
  that are not connections (a period's positions, a statement's lines) count once.

Each client has a bucket of `capacity` points that refills at `restore_rate` points a second.
An operation that costs more than is available is refused before it runs with a GraphQL error
`RATE_LIMITED` (with `retryAfterSeconds`); one that costs more than the whole capacity can
never run and is refused with `MAX_COST_EXCEEDED`. Every answer carries the figures in
`extensions.cost`. The buckets live in the process: with N workers a client gets N times the
rate (see README, "Reliability and security").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_interface_type,
    is_leaf_type,
    is_object_type,
)
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef
from graphql.utilities import get_operation_ast, value_from_ast_untyped
from strawberry.extensions import SchemaExtension

OBJECT_COST = 1
MUTATION_COST = 10
ITEMS_PER_POINT = 10  # a mutation's batch items (rows, records) cost 1 point per 10
DEFAULT_PAGE = 20
MAX_PAGE = 100
CONNECTION_ITEMS = frozenset({"edges", "nodes"})


# ---- the cost of an operation ------------------------------------------------------------


@dataclass
class _Walk:
    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]
    variables: Mapping[str, Any]
    defaults: dict[str, Any]

    def selections(
        self,
        selection_set: SelectionSetNode | None,
        parent: GraphQLNamedType | None,
        seen: frozenset[str] = frozenset(),
    ) -> int:
        return sum(self.field(f, p, s) for f, p, s in self.flatten(selection_set, parent, seen))

    def flatten(
        self,
        selection_set: SelectionSetNode | None,
        parent: GraphQLNamedType | None,
        seen: frozenset[str],
    ) -> Iterator[tuple[FieldNode, GraphQLNamedType, frozenset[str]]]:
        """The fields of a selection set with its fragments expanded, each with its parent."""
        if selection_set is None or parent is None:
            return
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                yield node, parent, seen
            elif isinstance(node, InlineFragmentNode):
                condition = node.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                yield from self.flatten(node.selection_set, target, seen)
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in seen:
                    target = self.schema.get_type(fragment.type_condition.name.value)
                    yield from self.flatten(fragment.selection_set, target, seen | {name})

    def _definition(self, node: FieldNode, parent: GraphQLNamedType) -> GraphQLField | None:
        name = node.name.value
        if parent is self.schema.query_type and name == "__schema":
            return SchemaMetaFieldDef
        if parent is self.schema.query_type and name == "__type":
            return TypeMetaFieldDef
        if is_object_type(parent) or is_interface_type(parent):
            fields: dict[str, GraphQLField] = parent.fields
            return fields.get(name)
        return None

    def field(self, node: FieldNode, parent: GraphQLNamedType, seen: frozenset[str]) -> int:
        definition = self._definition(node, parent)
        if definition is None:
            return 0
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0
        if "first" in definition.args and is_object_type(named) and "edges" in named.fields:
            page = self.page_size(node)
            cost = OBJECT_COST
            # Through fragments too: `{ ...F }` must not hide `edges` from the multiplier.
            for child, parent_type, child_seen in self.flatten(node.selection_set, named, seen):
                child_cost = self.field(child, parent_type, child_seen)
                cost += page * child_cost if child.name.value in CONNECTION_ITEMS else child_cost
            return cost
        return OBJECT_COST + self.selections(node.selection_set, named, seen)

    def page_size(self, node: FieldNode) -> int:
        for argument in node.arguments or ():
            if argument.name.value != "first":
                continue
            value: Any = None
            if isinstance(argument.value, IntValueNode):
                value = int(argument.value.value)
            elif isinstance(argument.value, VariableNode):
                name = argument.value.name.value
                value = self.variables.get(name, self.defaults.get(name))
            if isinstance(value, int) and not isinstance(value, bool):
                return max(1, min(value, MAX_PAGE))
        return DEFAULT_PAGE


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> int:
    """The cost of the operation `operation_name` of a validated document (see the module)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 0
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    walk = _Walk(schema, fragments, variables or {}, _variable_defaults(operation))
    if operation.operation == OperationType.MUTATION:
        root = schema.mutation_type
        total = 0
        for node, definition in _root_fields(walk, operation.selection_set, root):
            named = get_named_type(definition.type)
            total += MUTATION_COST + walk.selections(node.selection_set, named)
            variables = dict(walk.variables)
            items: int = sum(
                _input_items(value_from_ast_untyped(argument.value, variables))
                for argument in node.arguments or ()
            )
            total += math.ceil(items / ITEMS_PER_POINT)
        return total
    root = (
        schema.subscription_type
        if operation.operation == OperationType.SUBSCRIPTION
        else schema.query_type
    )
    return walk.selections(operation.selection_set, root)


def _input_items(value: Any) -> int:
    """How many input objects sit in lists inside an argument's value (a batch's size)."""
    if isinstance(value, dict):
        return sum(_input_items(v) for v in value.values())
    if isinstance(value, list):
        objects = sum(1 for item in value if isinstance(item, dict))
        return objects + sum(_input_items(item) for item in value)
    return 0


def _variable_defaults(operation: OperationDefinitionNode) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        if isinstance(definition.default_value, IntValueNode):
            defaults[definition.variable.name.value] = int(definition.default_value.value)
    return defaults


def _root_fields(
    walk: _Walk, selection_set: SelectionSetNode, root: GraphQLNamedType | None
) -> Iterator[tuple[FieldNode, GraphQLField]]:
    """The root fields of a mutation, through fragments."""
    if root is None:
        return
    for node in selection_set.selections:
        if isinstance(node, FieldNode):
            definition = walk._definition(node, root)
            if definition is not None:
                yield node, definition
        elif isinstance(node, InlineFragmentNode):
            yield from _root_fields(walk, node.selection_set, root)
        elif isinstance(node, FragmentSpreadNode):
            fragment = walk.fragments.get(node.name.value)
            if fragment is not None:
                yield from _root_fields(walk, fragment.selection_set, root)


# ---- the buckets -------------------------------------------------------------------------


@dataclass(frozen=True)
class Throttle:
    """One client's bucket after a request was charged (or refused)."""

    allowed: bool
    cost: int
    available: float  # after the charge (or, when refused, what there was)
    capacity: float
    restore_rate: float

    @property
    def over_capacity(self) -> bool:
        return self.cost > self.capacity

    @property
    def retry_after(self) -> float | None:
        if self.allowed or self.over_capacity:
            return None
        return math.ceil((self.cost - self.available) / self.restore_rate * 100) / 100

    def figures(self) -> dict[str, Any]:
        return {
            "cost": self.cost,
            "available": math.floor(self.available),
            "capacity": _number(self.capacity),
            "restoreRate": _number(self.restore_rate),
        }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


@dataclass
class CostLimiter:
    """A leaky bucket per client id, for the life of the process (shared by all requests).

    `take` never awaits, so on one event loop it is atomic without a lock.
    """

    capacity: float
    restore_rate: float
    clock: Callable[[], float] = time.monotonic
    max_clients: int = 10_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.capacity > 0 and self.restore_rate > 0

    def available(self, client_id: str, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        level, at = self._buckets.get(client_id, (self.capacity, now))
        return min(self.capacity, level + max(0.0, now - at) * self.restore_rate)

    def take(self, client_id: str, cost: int) -> Throttle:
        """Charge `cost` to the client's bucket if it holds that much; refuse it otherwise."""
        now = self.clock()
        available = self.available(client_id, now)
        allowed = cost <= available
        if allowed:
            available -= cost
        if client_id not in self._buckets and len(self._buckets) >= self.max_clients:
            self._forget_full(now)
        self._buckets[client_id] = (available, now)
        return Throttle(allowed, cost, available, self.capacity, self.restore_rate)

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: a full bucket is the same as no bucket."""
        for client_id in [c for c in self._buckets if self.available(c, now) >= self.capacity]:
            del self._buckets[client_id]


class CostLimit(SchemaExtension):
    """Charges each operation's cost to its client's bucket before it executes.

    Pass a factory (`lambda: CostLimit(limiter)`): a fresh extension per request, one limiter.
    """

    def __init__(self, limiter: CostLimiter) -> None:
        self.limiter = limiter
        self.throttle: Throttle | None = None

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        caller = getattr(ctx.context, "caller", None)
        document = ctx.graphql_document
        if caller is None or document is None or not self.limiter.enabled:
            yield
            return
        cost = operation_cost(ctx.schema._schema, document, ctx.operation_name, ctx.variables)
        self.throttle = throttle = self.limiter.take(caller.client_id, cost)
        if not throttle.allowed:
            ctx.result = ExecutionResult(data=None, errors=[_refusal(throttle)])
        yield

    def get_results(self) -> dict[str, Any]:
        return {"cost": self.throttle.figures()} if self.throttle else {}


def _refusal(throttle: Throttle) -> GraphQLError:
    figures = {**throttle.figures(), "retryAfterSeconds": throttle.retry_after}
    if throttle.over_capacity:
        return GraphQLError(
            f"this operation costs {throttle.cost} points, more than the limit of"
            f" {figures['capacity']}: ask for smaller pages (`first`) or fewer fields",
            extensions={"code": "MAX_COST_EXCEEDED", **figures},
        )
    return GraphQLError(
        f"rate limited: this operation costs {throttle.cost} points and"
        f" {figures['available']} are available; retry in {throttle.retry_after} s",
        extensions={"code": "RATE_LIMITED", **figures},
    )
