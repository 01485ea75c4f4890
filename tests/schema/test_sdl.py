"""The checked-in SDL is what partners read: it must match the code exactly, and carry what a
code generator (and the integrator reading it) needs."""

from __future__ import annotations

import ast

from graphql import (
    DocumentNode,
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLObjectType,
    GraphQLScalarType,
    ObjectTypeDefinitionNode,
    StringValueNode,
    Undefined,
    get_named_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
    parse,
)

from ledger.amounts import DECIMAL_PATTERN
from schema.permissions import ROOT_FIELD_SCOPES
from schema.root import SDL_PATH, build_schema, export_sdl
from tests.schema.lint import undescribed


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


# ---- what a partner's integrator generating a typed client checks in the SDL -------------


def _sdl_document() -> DocumentNode:
    return parse(SDL_PATH.read_text())


def test_every_type_field_argument_input_field_and_enum_value_is_described() -> None:
    gaps = undescribed(build_schema()._schema)
    assert not gaps, f"undescribed in the schema ({len(gaps)}): {gaps}"


def test_custom_scalars_say_their_wire_format() -> None:
    schema = build_schema()._schema
    decimal = schema.type_map["Decimal"]
    datetime_ = schema.type_map["DateTime"]
    assert isinstance(decimal, GraphQLScalarType) and isinstance(datetime_, GraphQLScalarType)
    assert datetime_.specified_by_url == "https://scalars.graphql.org/andimarek/date-time"
    assert "RFC 3339" in (datetime_.description or "")
    assert decimal.specified_by_url == "https://www.w3.org/TR/xmlschema11-2/#decimal"
    assert DECIMAL_PATTERN in (decimal.description or "")
    # And the checked-in SDL says so (`@specifiedBy`), for tools that read the file.
    sdl = SDL_PATH.read_text()
    assert '@specifiedBy(url: "https://scalars.graphql.org/andimarek/date-time")' in sdl
    assert '@specifiedBy(url: "https://www.w3.org/TR/xmlschema11-2/#decimal")' in sdl


def test_every_guarded_root_field_shows_its_scope_in_the_sdl() -> None:
    shown: dict[str, str] = {}
    for definition in _sdl_document().definitions:
        if not isinstance(definition, ObjectTypeDefinitionNode):
            continue
        if definition.name.value not in {"Query", "Mutation"}:
            continue
        for field in definition.fields or ():
            for directive in field.directives or ():
                if directive.name.value == "hasScope":
                    [argument] = directive.arguments
                    assert argument.name.value == "scope"
                    assert isinstance(argument.value, StringValueNode)
                    shown[field.name.value] = argument.value.value
    assert shown == ROOT_FIELD_SCOPES
    assert shown["earnPoints"] == "points:earn" and shown["createPartner"] == "operator"
    directive = build_schema()._schema.get_directive("hasScope")
    assert directive is not None and set(directive.args) == {"scope"}


def test_member_ref_is_a_one_of_input() -> None:
    schema = build_schema()
    assert "input MemberRef @oneOf {" in SDL_PATH.read_text()
    introspected = schema.execute_sync('{ __type(name: "MemberRef") { isOneOf } }')
    assert introspected.errors is None and introspected.data == {"__type": {"isOneOf": True}}
    member_ref = schema._schema.type_map["MemberRef"]
    assert isinstance(member_ref, GraphQLInputObjectType)
    assert all(not is_non_null_type(f.type) for f in member_ref.fields.values())
    assert all(f.default_value is Undefined for f in member_ref.fields.values())


# String-typed before, enums now; the wire values did not change.
ENUMS_FOR_STRINGS = {
    ("CoalitionSettings", "fundingModel"): ("FundingModel", {"REDEMPTION", "ISSUANCE"}),
    ("UpdateCoalitionSettingsInput", "fundingModel"): (
        "FundingModel",
        {"REDEMPTION", "ISSUANCE"},
    ),
    ("Obligation", "kind"): (
        "ObligationKind",
        {"REDEMPTION", "CLEARING_FEE", "ISSUANCE", "ADJUSTMENT", "REDEMPTION_REVERSAL"},
    ),
    ("ReconciliationBreak", "kind"): (
        "BreakKind",
        {"MISSING_IN_LEDGER", "MISSING_IN_REPORT", "POINTS_MISMATCH", "AMOUNT_MISMATCH"},
    ),
    ("ReconciliationBreak", "status"): ("BreakStatus", {"OPEN", "ACCEPTED", "ADJUSTED"}),
    ("ReconciliationBreak", "recordKind"): ("ReportRecordKind", {"EARN", "REDEEM", "REVERSAL"}),
    ("PartnerReport", "source"): ("ReportSource", {"API", "CSV"}),
    ("VerificationDifference", "check"): ("VerificationCheck", {"OBLIGATION", "POSITIONS_SUM"}),
    ("AuditEntry", "subjectType"): ("AuditSubjectType", set()),
}


def test_closed_sets_of_strings_are_enums_with_their_old_wire_values() -> None:
    schema = build_schema()._schema
    for (type_name, field_name), (enum_name, some_values) in ENUMS_FOR_STRINGS.items():
        owner = schema.type_map[type_name]
        assert isinstance(owner, GraphQLObjectType | GraphQLInputObjectType)
        enum = get_named_type(owner.fields[field_name].type)
        assert isinstance(enum, GraphQLEnumType) and enum.name == enum_name
        assert some_values <= set(enum.values), (type_name, field_name)
    # The audit log names subjects by their type; every subject the code records is listed.
    subjects = schema.type_map["AuditSubjectType"]
    assert isinstance(subjects, GraphQLEnumType)
    wire = set(subjects.values)  # an enum is sent as its value's name
    assert audit_subjects_in_source() <= wire
    assert {"Partner", "ApiClient", "SettlementPeriod"} <= wire


def audit_subjects_in_source() -> set[str]:
    """The subject types every `audit.record(conn, actor, action, SUBJECT, ...)` call names."""
    root = SDL_PATH.parents[1]
    found: set[str] = set()
    for path in root.glob("*/**/*.py"):
        if path.parts[len(root.parts)] in {".venv", "tests", "bench"}:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "record"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "audit"
                and len(node.args) >= 4
            ):
                subject = node.args[3]
                assert isinstance(subject, ast.Constant), f"{path}: {ast.unparse(subject)}"
                found.add(subject.value)
    return found


def test_connections_follow_the_relay_cursor_connection_spec() -> None:
    """What Relay's compiler checks before it accepts `@connection` on a field."""
    schema = build_schema()._schema
    page_info = schema.type_map["PageInfo"]
    assert isinstance(page_info, GraphQLObjectType)
    fields = {name: str(field.type) for name, field in page_info.fields.items()}
    assert fields["hasNextPage"] == "Boolean!" and fields["hasPreviousPage"] == "Boolean!"
    # Null only on an empty page, as the spec allows.
    assert fields["startCursor"] == "String" and fields["endCursor"] == "String"
    connections = [
        (owner.name, name, field)
        for owner in schema.type_map.values()
        if isinstance(owner, GraphQLObjectType) and not owner.name.startswith("__")
        for name, field in owner.fields.items()
        if get_named_type(field.type).name.endswith("Connection")
    ]
    assert ("Member", "transfers") in {(o, n) for o, n, _ in connections}
    for owner_name, name, field in connections:
        where = f"{owner_name}.{name}"
        assert str(field.type).endswith("Connection!"), where
        assert str(field.args["first"].type) == "Int" and str(field.args["after"].type) == "String"
        connection = get_named_type(field.type)
        assert isinstance(connection, GraphQLObjectType)
        assert str(connection.fields["pageInfo"].type) == "PageInfo!", where
        edges = connection.fields["edges"].type
        assert is_non_null_type(edges) and is_list_type(edges.of_type), where
        edge = get_named_type(edges)
        assert isinstance(edge, GraphQLObjectType) and edge.name.endswith("Edge"), where
        assert str(edge.fields["cursor"].type) == "String!", where
        node = edge.fields["node"].type
        assert is_non_null_type(node) and is_object_type(get_named_type(node)), where


def test_audit_entries_are_nodes() -> None:
    schema = build_schema()._schema
    entry = schema.type_map["AuditEntry"]
    assert isinstance(entry, GraphQLObjectType)
    assert [i.name for i in entry.interfaces] == ["Node"]
