"""Settlement queries and mutations (periods, statements, reconciliation)."""

from __future__ import annotations

import strawberry


@strawberry.type
class SettlementQueries:
    pass


@strawberry.type
class SettlementMutations:
    pass
