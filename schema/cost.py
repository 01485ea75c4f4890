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

Each fragment is priced once and reused wherever it is spread, so pricing takes work in
proportion to the document, not to what its fragments expand to (a fragment spreading the
previous one twice, 60 deep, is priced 2^60 in a hundred steps); and it stops once the
price is over the bucket's capacity.

Each client has a bucket of `capacity` points that refills at `restore_rate` points a second.
An operation that costs more than is available is refused before it runs with a GraphQL error
`RATE_LIMITED` (with `retryAfterSeconds`); one that costs more than the whole capacity can
never run and is refused with `MAX_COST_EXCEEDED`. A refusal for a limit — that one, or a
document too deep, with too many aliases or fragment spreads (schema/analysis.py) — takes
`refusal_cost` points from the bucket: the analysis was work all the same. Being throttled
(`RATE_LIMITED`) costs nothing. Every answer carries the figures in `extensions.cost`.

`CostLimiter` keeps the buckets in the process (with N workers a client would get N times the
rate). `SharedCostLimiter`, what `coalition serve` runs, holds them across every process and
replica without a database round trip per request: each client's bucket is a PostgreSQL row
(db/rate_limits.py); a process leases a slice of it (10 % of the capacity by default), spends
the slice in memory, and leases the next one in the background when the slice runs low. All
processes together can spend at most capacity + restore rate × time (what each leased and
has not spent is simply not spent), and a client that was idle may burst by at most one slice
per process above the capacity.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

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

from schema.analysis import LIMIT_CODES

log = logging.getLogger("coalition.ratelimit")

OBJECT_COST = 1
MUTATION_COST = 10
ITEMS_PER_POINT = 10  # a mutation's batch items (rows, records) cost 1 point per 10
DEFAULT_PAGE = 20
MAX_PAGE = 100
CONNECTION_ITEMS = frozenset({"edges", "nodes"})


# ---- the cost of an operation ------------------------------------------------------------


@dataclass
class _Walk:
    """One pass over an operation. Each fragment is priced once and reused wherever it is
    spread (a fragment's type condition fixes its parent type, so its price does not depend on
    where it is spread): the work is linear in the size of the document, however often
    fragments spread each other. With a `limit`, a selection set stops adding once its total
    is over it (the result is then a lower bound, still over the limit)."""

    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]
    variables: Mapping[str, Any]
    defaults: dict[str, Any]
    limit: int | None = None
    visits: int = 0  # selections looked at
    _priced: dict[str, tuple[int, int]] = field(default_factory=dict)
    _active: set[str] = field(default_factory=set)

    def over(self, total: int) -> bool:
        return self.limit is not None and total > self.limit

    def selections(
        self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType | None
    ) -> int:
        items, rest = self.split(selection_set, parent)
        return items + rest

    def split(
        self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType | None
    ) -> tuple[int, int]:
        """The cost of a selection set's fields with its fragments expanded, as (the fields
        named `edges` or `nodes`, the others): a connection multiplies only the first."""
        items = rest = 0
        if selection_set is None or parent is None:
            return items, rest
        for node in selection_set.selections:
            self.visits += 1
            if isinstance(node, FieldNode):
                cost = self.field(node, parent)
                if node.name.value in CONNECTION_ITEMS:
                    items += cost
                else:
                    rest += cost
            else:
                if isinstance(node, InlineFragmentNode):
                    condition = node.type_condition
                    target = self.schema.get_type(condition.name.value) if condition else parent
                    more_items, more_rest = self.split(node.selection_set, target)
                elif isinstance(node, FragmentSpreadNode):
                    more_items, more_rest = self.fragment(node.name.value)
                else:  # pragma: no cover - the three kinds of selection
                    continue
                items += more_items
                rest += more_rest
            if self.over(items + rest):
                break  # the total only grows: no need to look further
        return items, rest

    def fragment(self, name: str) -> tuple[int, int]:
        priced = self._priced.get(name)
        if priced is not None:
            return priced
        fragment = self.fragments.get(name)
        if fragment is None or name in self._active:
            return 0, 0  # unknown or cyclic: validation refuses such a document
        self._active.add(name)
        try:
            target = self.schema.get_type(fragment.type_condition.name.value)
            priced = self.split(fragment.selection_set, target)
        finally:
            self._active.discard(name)
        self._priced[name] = priced
        return priced

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

    def field(self, node: FieldNode, parent: GraphQLNamedType) -> int:
        definition = self._definition(node, parent)
        if definition is None:
            return 0
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0
        if "first" in definition.args and is_object_type(named) and "edges" in named.fields:
            # Through fragments too: `{ ...F }` must not hide `edges` from the multiplier.
            items, rest = self.split(node.selection_set, named)
            return OBJECT_COST + self.page_size(node) * items + rest
        return OBJECT_COST + self.selections(node.selection_set, named)

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

    def mutation(self, selection_set: SelectionSetNode, root: GraphQLNamedType) -> int:
        """A mutation's root fields, through fragments (each root fragment priced once)."""
        total = 0
        for node in selection_set.selections:
            self.visits += 1
            if isinstance(node, FieldNode):
                definition = self._definition(node, root)
                if definition is not None:
                    named = get_named_type(definition.type)
                    variables = dict(self.variables)
                    items: int = sum(
                        _input_items(value_from_ast_untyped(argument.value, variables))
                        for argument in node.arguments or ()
                    )
                    total += (
                        MUTATION_COST
                        + self.selections(node.selection_set, named)
                        + math.ceil(items / ITEMS_PER_POINT)
                    )
            elif isinstance(node, InlineFragmentNode):
                total += self.mutation(node.selection_set, root)
            elif isinstance(node, FragmentSpreadNode):
                total += self.root_fragment(node.name.value, root)
            if self.over(total):
                break
        return total

    def root_fragment(self, name: str, root: GraphQLNamedType) -> int:
        key = f"mutation:{name}"  # not a fragment name: those cannot hold a colon
        priced = self._priced.get(key)
        if priced is not None:
            return priced[1]
        fragment = self.fragments.get(name)
        if fragment is None or key in self._active:
            return 0
        self._active.add(key)
        try:
            total = self.mutation(fragment.selection_set, root)
        finally:
            self._active.discard(key)
        self._priced[key] = (0, total)
        return total


@dataclass(frozen=True)
class CostAnalysis:
    cost: int  # with a limit and over it: a lower bound, still over the limit
    visits: int  # selections the analysis looked at (bounded by the document's size)


def analyse_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
    *,
    limit: int | None = None,
) -> CostAnalysis:
    """The cost of the operation `operation_name` of a document (see the module); with a
    `limit`, the analysis stops once the cost is over it."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return CostAnalysis(0, 0)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    walk = _Walk(schema, fragments, variables or {}, _variable_defaults(operation), limit)
    if operation.operation == OperationType.MUTATION:
        root = schema.mutation_type
        cost = 0 if root is None else walk.mutation(operation.selection_set, root)
    else:
        root = (
            schema.subscription_type
            if operation.operation == OperationType.SUBSCRIPTION
            else schema.query_type
        )
        cost = walk.selections(operation.selection_set, root)
    return CostAnalysis(cost, walk.visits)


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> int:
    """The cost of the operation `operation_name` of a validated document (see the module)."""
    return analyse_cost(schema, document, operation_name, variables).cost


def _input_items(value: Any) -> int:
    """How many input objects sit in lists inside an argument's value (a batch's size).
    A loop, not recursion: variables arrive as decoded JSON, nested as deep as a client likes."""
    count = 0
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            stack.extend(current.values())
        elif isinstance(current, list):
            count += sum(1 for item in current if isinstance(item, dict))
            stack.extend(current)
    return count


def _variable_defaults(operation: OperationDefinitionNode) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        if isinstance(definition.default_value, IntValueNode):
            defaults[definition.variable.name.value] = int(definition.default_value.value)
    return defaults


# ---- the buckets -------------------------------------------------------------------------


@dataclass(frozen=True)
class Throttle:
    """One client's bucket after a request was charged (or refused)."""

    allowed: bool
    cost: int
    available: float  # after the charge (or, when refused, what there was)
    capacity: float
    restore_rate: float
    # An operation refused for a limit (too dear, too deep, too many aliases or spreads) can
    # never run as written; analysing it was work all the same, so it is charged this much.
    charged: float | None = None

    @property
    def over_capacity(self) -> bool:
        return self.cost > self.capacity

    @property
    def retry_after(self) -> float | None:
        if self.allowed or self.over_capacity or self.charged is not None:
            return None
        return math.ceil((self.cost - self.available) / self.restore_rate * 100) / 100

    def figures(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "cost": self.cost,
            "available": math.floor(self.available),
            "capacity": _number(self.capacity),
            "restoreRate": _number(self.restore_rate),
        }
        if self.charged is not None:
            figures["charged"] = _number(self.charged)
        return figures


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


@dataclass
class CostLimiter:
    """A leaky bucket per client id, for the life of the process (shared by all requests).

    `take` and `refuse` never await, so on one event loop they are atomic without a lock.
    `clock` returns seconds (monotonic); tests pass their own to move time by hand.
    """

    capacity: float
    restore_rate: float
    clock: Callable[[], float] = time.monotonic
    max_clients: int = 10_000
    refusal_cost: int = 0  # what refusing an operation for a limit takes from the bucket
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
        self._store(client_id, available, now)
        return Throttle(allowed, cost, available, self.capacity, self.restore_rate)

    def refuse(self, client_id: str, cost: int) -> Throttle:
        """Charge `refusal_cost` (or what is left, the bucket never goes below empty) for an
        operation refused for a limit; `cost` is the operation's, when it is known."""
        now = self.clock()
        available = self.available(client_id, now)
        charged = min(float(self.refusal_cost), available)
        available -= charged
        self._store(client_id, available, now)
        return Throttle(False, cost, available, self.capacity, self.restore_rate, charged)

    def _store(self, client_id: str, available: float, now: float) -> None:
        if client_id not in self._buckets and len(self._buckets) >= self.max_clients:
            self._forget_full(now)
        self._buckets[client_id] = (available, now)

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: a full bucket is the same as no bucket."""
        for client_id in [c for c in self._buckets if self.available(c, now) >= self.capacity]:
            del self._buckets[client_id]

    # What the extension calls: awaitable, so that a limiter may ask the database.

    async def charge(self, client_id: str, cost: int) -> Throttle:
        return self.take(client_id, cost)

    async def charge_refusal(self, client_id: str, cost: int) -> Throttle:
        return self.refuse(client_id, cost)

    async def close(self) -> None:
        """Called once when the process stops serving."""


class BucketStore(Protocol):
    """Where the shared buckets are (db/rate_limits.py's PostgresBuckets)."""

    async def lease(
        self,
        client_id: str,
        *,
        capacity: float,
        restore_rate: float,
        need: float,
        want: float,
        partial: bool,
        now: float | None,
    ) -> Any: ...  # a db.rate_limits.Lease: granted, left_over, as_of

    async def give_back(self, unspent: dict[str, float], *, capacity: float) -> None: ...


@dataclass
class _Share:
    """One client's part of its shared bucket, in this process."""

    allowance: float = 0.0  # leased by this process and not spent yet
    seen: float | None = None  # the shared bucket's level after our last lease (None: never)
    seen_at: float = 0.0  # local clock then
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one lease at a time
    ahead: asyncio.Task[None] | None = None  # a lease taken before the allowance runs out


@dataclass
class SharedCostLimiter(CostLimiter):
    """Buckets shared by every process through `store`, leased a slice at a time.

    A request is charged to the client's allowance in this process when it holds enough (no
    database work); otherwise the process leases what is missing and a slice more (one
    statement). Once the allowance falls under half a slice, the next slice is leased in the
    background, so a steady client rarely waits for one. A request the shared bucket cannot
    cover is refused with the same figures as before (`available` is this process's allowance
    plus the shared level as of its last lease, refilled since).

    The default clock (`time.monotonic`) is this machine's, so the rows are refilled by the
    database's clock; a clock set by a test drives both. If the database cannot be reached for
    a lease, the request is charged to the in-process bucket of `CostLimiter` instead (the old
    per-process limit) until it can.
    """

    store: BucketStore | None = field(default=None, kw_only=True)
    lease_points: float = field(default=0, kw_only=True)  # 0: 10 % of the capacity
    leases: int = field(default=0, kw_only=True)  # leases this process asked for (a count)
    _shares: dict[str, _Share] = field(default_factory=dict, kw_only=True)
    _failing_since: float | None = field(default=None, kw_only=True)

    @property
    def slice(self) -> float:
        wanted = self.lease_points or self.capacity / 10
        return max(1.0, min(float(self.capacity), float(wanted)))

    def _db_now(self) -> float | None:
        return None if self.clock is time.monotonic else self.clock()

    def _level(self, share: _Share, now: float) -> float:
        """The shared bucket's level as this process last saw it, refilled since."""
        if share.seen is None:
            return float(self.capacity)
        refilled = share.seen + max(0.0, now - share.seen_at) * self.restore_rate
        return min(float(self.capacity), refilled)

    def _available(self, share: _Share, now: float) -> float:
        return min(float(self.capacity), share.allowance + self._level(share, now))

    def _share(self, client_id: str) -> _Share:
        share = self._shares.get(client_id)
        if share is None:
            if len(self._shares) >= self.max_clients:
                self._forget_idle()
            share = self._shares[client_id] = _Share()
        return share

    def _forget_idle(self) -> None:
        """Drop clients holding nothing: their next request leases afresh."""
        for client_id, share in list(self._shares.items()):
            idle = share.ahead is None or share.ahead.done()
            if share.allowance <= 0 and idle and not share.lock.locked():
                del self._shares[client_id]

    async def _lease(
        self, client_id: str, share: _Share, need: float, want: float, partial: bool
    ) -> bool:
        """Lease from the store into `share`; False when the store could not be reached."""
        assert self.store is not None
        self.leases += 1
        # The time the row is refilled to is at least this: an estimate from here on never
        # falls short of the row (see `_short`).
        asked_at = self.clock()
        try:
            lease = await self.store.lease(
                client_id,
                capacity=self.capacity,
                restore_rate=self.restore_rate,
                need=need,
                want=want,
                partial=partial,
                now=self._db_now(),
            )
        except Exception:
            if self._failing_since is None:
                self._failing_since = self.clock()
                log.warning(
                    "rate limit: cannot lease from the shared buckets; limiting per process"
                    " until the database answers",
                    exc_info=True,
                )
            return False
        if self._failing_since is not None:
            self._failing_since = None
            log.info("rate limit: the shared buckets answer again")
        share.allowance += lease.granted
        share.seen = lease.left_over
        share.seen_at = asked_at
        return True

    def _lease_ahead(self, client_id: str, share: _Share) -> None:
        """Lease the next slice in the background once the allowance runs low, when the
        shared bucket (as last seen) can give a whole slice."""
        if share.allowance >= self.slice / 2 or (share.ahead and not share.ahead.done()):
            return
        if self._level(share, self.clock()) < self.slice or self._failing_since is not None:
            return

        async def ahead() -> None:
            async with share.lock:
                if share.allowance < self.slice / 2:
                    await self._lease(client_id, share, self.slice, self.slice, False)

        share.ahead = asyncio.get_running_loop().create_task(ahead())

    def _spend(self, client_id: str, share: _Share, cost: int) -> Throttle:
        share.allowance -= cost
        if cost > 0:  # a client of free operations (`__typename`) never needs a lease
            self._lease_ahead(client_id, share)
        available = self._available(share, self.clock())
        return Throttle(True, cost, available, self.capacity, self.restore_rate)

    async def charge(self, client_id: str, cost: int) -> Throttle:
        if self.store is None:
            return self.take(client_id, cost)
        share = self._share(client_id)
        if cost > self.capacity:  # can never run: nothing to lease (the refusal is charged)
            available = self._available(share, self.clock())
            return Throttle(False, cost, available, self.capacity, self.restore_rate)
        if cost <= share.allowance:
            return self._spend(client_id, share, cost)  # the common case: no database
        async with share.lock:
            # Meanwhile another request of this client may have leased (or spent).
            if cost > share.allowance and not self._short(share, cost):
                need = cost - share.allowance
                if not await self._lease(client_id, share, need, max(need, self.slice), False):
                    return self.take(client_id, cost)
            if cost <= share.allowance:
                return self._spend(client_id, share, cost)
        available = self._available(share, self.clock())
        return Throttle(False, cost, available, self.capacity, self.restore_rate)

    def _short(self, share: _Share, cost: float) -> bool:
        """Whether the shared bucket, as this process last saw it and refilled since, cannot
        cover `cost`: then the request is refused here without a statement, so a client
        hammering while throttled does not hammer its row. (Other processes only take from
        the row meanwhile, so the estimate errs on the side of asking.)"""
        return share.seen is not None and share.allowance + self._level(share, self.clock()) < cost

    async def charge_refusal(self, client_id: str, cost: int) -> Throttle:
        if self.store is None:
            return self.refuse(client_id, cost)
        share = self._share(client_id)
        charge = float(self.refusal_cost)
        if charge > share.allowance and not self._short(share, share.allowance + 1):
            async with share.lock:
                missing = charge - share.allowance
                if missing > 0 and not await self._lease(client_id, share, 0, missing, True):
                    return self.refuse(client_id, cost)
        charged = min(charge, share.allowance)  # never below empty
        share.allowance -= charged
        available = self._available(share, self.clock())
        return Throttle(False, cost, available, self.capacity, self.restore_rate, charged)

    async def close(self) -> None:
        """Stop leasing ahead and give back what this process leased and did not spend."""
        for share in self._shares.values():
            if share.ahead is not None and not share.ahead.done():
                share.ahead.cancel()
        tasks = [s.ahead for s in self._shares.values() if s.ahead is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        unspent = {c: s.allowance for c, s in self._shares.items() if s.allowance > 0}
        self._shares.clear()
        if self.store is not None and unspent:
            try:
                await self.store.give_back(unspent, capacity=self.capacity)
            except Exception:  # the points are simply not spent
                log.warning("rate limit: could not give back unspent leases", exc_info=True)


class CostLimit(SchemaExtension):
    """Charges each operation's cost to its client's bucket before it executes.

    Pass a factory (`lambda: CostLimit(limiter)`): a fresh extension per request, one limiter.
    """

    def __init__(self, limiter: CostLimiter) -> None:
        self.limiter = limiter
        self.throttle: Throttle | None = None

    async def on_validate(self) -> AsyncIterator[None]:
        yield
        # A document refused for its shape (depth, aliases, spreads) is charged as well.
        ctx = self.execution_context
        caller = getattr(ctx.context, "caller", None)
        if caller is None or not self.limiter.enabled:
            return
        codes = {(e.extensions or {}).get("code") for e in ctx.pre_execution_errors or ()}
        if codes & LIMIT_CODES:
            self.throttle = await self.limiter.charge_refusal(
                caller.client_id, self.limiter.refusal_cost
            )

    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context
        caller = getattr(ctx.context, "caller", None)
        document = ctx.graphql_document
        if caller is None or document is None or not self.limiter.enabled:
            yield
            return
        # Pricing stops once over the capacity: beyond it the exact figure changes nothing.
        cost = analyse_cost(
            ctx.schema._schema,
            document,
            ctx.operation_name,
            ctx.variables,
            limit=math.floor(self.limiter.capacity),
        ).cost
        throttle = await self.limiter.charge(caller.client_id, cost)
        if throttle.over_capacity:
            throttle = await self.limiter.charge_refusal(caller.client_id, cost)
        self.throttle = throttle
        if not throttle.allowed:
            ctx.result = ExecutionResult(data=None, errors=[_refusal(throttle)])
        yield

    def get_results(self) -> dict[str, Any]:
        return {"cost": self.throttle.figures()} if self.throttle else {}


def _refusal(throttle: Throttle) -> GraphQLError:
    figures = {**throttle.figures(), "retryAfterSeconds": throttle.retry_after}
    if throttle.over_capacity:
        return GraphQLError(
            f"this operation costs at least {throttle.cost} points, more than the limit of"
            f" {figures['capacity']}: ask for smaller pages (`first`) or fewer fields",
            extensions={"code": "MAX_COST_EXCEEDED", **figures},
        )
    return GraphQLError(
        f"rate limited: this operation costs {throttle.cost} points and"
        f" {figures['available']} are available; retry in {throttle.retry_after} s",
        extensions={"code": "RATE_LIMITED", **figures},
    )
