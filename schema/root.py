"""The GraphQL schema: per-domain query and mutation types merged into one, with limits on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import strawberry
from graphql import ASTValidationRule
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from schema.analysis import shape_limits
from schema.audit import AuditEntry, AuditQueries
from schema.campaigns.api import CampaignMutations, CampaignQueries
from schema.cost import CostLimit, CostLimiter
from schema.error_codes import CodeEveryError
from schema.error_log import CoalitionSchema
from schema.errors import TopLevelErrorCode
from schema.masking import MaskUnexpectedErrors
from schema.members.api import MemberMutations, MemberQueries
from schema.members.types import Member
from schema.partners.api import PartnerMutations, PartnerQueries
from schema.partners.types import Partner
from schema.permissions import SCOPE_ARGUMENT
from schema.points.adjustment import AdjustmentMutations
from schema.points.api import PointsMutations, PointsQueries
from schema.points.batch import PointsBatchMutations
from schema.points.types import Hold, Transfer
from schema.scalars import SCALAR_OVERRIDES
from schema.settlement.api import SettlementMutations, SettlementQueries
from schema.settlement.types import SettlementPeriod
from schema.tiers.api import TierMutations, TierQueries
from schema.viewer import ViewerQueries

SDL_PATH = Path(__file__).with_name("schema.graphql")

Query = merge_types(
    "Query",
    (
        ViewerQueries,
        MemberQueries,
        PointsQueries,
        PartnerQueries,
        SettlementQueries,
        AuditQueries,
        CampaignQueries,
        TierQueries,
    ),
)
Mutation = merge_types(
    "Mutation",
    (
        MemberMutations,
        PointsMutations,
        PointsBatchMutations,
        AdjustmentMutations,
        PartnerMutations,
        SettlementMutations,
        CampaignMutations,
        TierMutations,
    ),
)
# merge_types takes no description.
Query.__strawberry_definition__.description = (  # type: ignore[attr-defined]
    "What a caller can read. Each field names the scope it needs with `@hasScope`; a"
    " partner's client sees only its own partner's data (members enrolled with it, transfers"
    " it booked, its own settlement figures), the operator sees everything."
)
Mutation.__strawberry_definition__.description = (  # type: ignore[attr-defined]
    "What a caller can do. Every mutation takes one `input` and returns a payload whose"
    " `errors` lists expected refusals (then nothing changed); every write that books"
    " something takes an `idempotencyKey`, unique per API client: a replay returns the first"
    " answer and books nothing."
)


def build_schema(
    *,
    max_depth: int = 10,
    max_aliases: int = 30,
    max_tokens: int = 2000,
    max_spreads: int = 200,
    cost_limiter: CostLimiter | None = None,
) -> strawberry.Schema:
    # The limiters' validation rule is built once: a fresh rule class per request would
    # make every request miss the validation cache (its key includes the rules). It replaces
    # strawberry's depth and alias limiters, which expand every fragment spread (exponential
    # in a small document); it measures each fragment once.
    rules: list[type[ASTValidationRule]] = [shape_limits(max_depth, max_aliases, max_spreads)]
    # Factories: a fresh extension per request (the parse and validation caches are shared).
    extensions: list[Callable[[], SchemaExtension]] = [
        # First, so it finishes last: codes the syntax, validation and input errors.
        CodeEveryError,
        lambda: AddValidationRules(rules),
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: ParserCache(maxsize=512),
        lambda: ValidationCache(maxsize=512),
        MaskUnexpectedErrors,
    ]
    if cost_limiter is not None and cost_limiter.enabled:
        # The buckets live in the limiter (per process); the extension is per request.
        limiter = cost_limiter
        extensions.append(lambda: CostLimit(limiter))
    # Expected errors logged at INFO, unexpected ones at ERROR (schema/error_log.py).
    schema = CoalitionSchema(
        query=Query,
        mutation=Mutation,
        # TopLevelErrorCode is no field's type: listed so the SDL documents the top-level codes.
        types=[Member, Transfer, Hold, Partner, SettlementPeriod, AuditEntry, TopLevelErrorCode],
        config=StrawberryConfig(auto_camel_case=True),
        extensions=extensions,
        # One exact format for every Decimal input (schema/scalars.py).
        scalar_overrides=SCALAR_OVERRIDES,
    )
    # Strawberry drops the descriptions of schema directives' arguments.
    has_scope = schema._schema.get_directive("hasScope")
    assert has_scope is not None
    has_scope.args["scope"].description = SCOPE_ARGUMENT
    return schema


def export_sdl() -> str:
    return build_schema().as_str() + "\n"
