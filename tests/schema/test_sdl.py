"""The checked-in SDL is what partners read: it must match the code exactly."""

from schema.permissions import ROOT_FIELD_SCOPES
from schema.root import SDL_PATH, build_schema, export_sdl


def test_checked_in_sdl_matches_the_code() -> None:
    assert SDL_PATH.read_text() == export_sdl(), (
        "schema/schema.graphql is stale: run `python -m schema.export` and commit it"
    )


def test_every_root_field_declares_its_scope() -> None:
    schema = build_schema()._schema
    root_fields = set(schema.query_type.fields) | set(schema.mutation_type.fields)
    missing = root_fields - set(ROOT_FIELD_SCOPES)
    assert not missing, f"root fields without a scope rule: {sorted(missing)}"


def test_contract_names_exist() -> None:
    schema = build_schema()._schema
    queries = set(schema.query_type.fields)
    mutations = set(schema.mutation_type.fields)
    assert {
        "viewer",
        "member",
        "transfer",
        "partners",
        "settlementPeriods",
        "settlementPeriod",
        "node",
    } <= queries
    assert {
        "enrollMember",
        "earnPoints",
        "redeemPoints",
        "reverseTransfer",
        "createPartner",
        "createApiClient",
        "closeSettlementPeriod",
    } <= mutations
    error_codes = set(schema.type_map["ErrorCode"].values)  # type: ignore[attr-defined]
    assert {
        "MEMBER_NOT_FOUND",
        "INSUFFICIENT_POINTS",
        "INVALID_AMOUNT",
        "IDEMPOTENCY_KEY_REUSED",
        "TRANSFER_NOT_FOUND",
        "ALREADY_REVERSED",
        "REDEMPTION_NOT_ACCEPTED",
        "INVALID_PHONE",
    } <= error_codes
