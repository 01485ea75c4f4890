"""Every `extensions.code` the server can put in a response's top-level `errors` is a value
of the `TopLevelErrorCode` enum in the SDL, so a generated client can switch over an enum.

The codes are read from the server's source (api/ and schema/, where GraphQL errors are
made): every `extensions=` dict, every dict under an "extensions" key, every permission's
`error_extensions`. A code written as a name is resolved to the strings assigned to it; the
two computed codes are followed to where they come from (query errors, HTTP statuses). A new
way of computing a code fails here until someone accounts for it.
"""

from __future__ import annotations

import ast
import re
from http import HTTPStatus
from pathlib import Path

import strawberry

from core.errors import DomainError
from core.errors import ErrorCode as DomainErrorCode
from schema.errors import TopLevelCode, query_code
from schema.root import build_schema

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "api").rglob("*.py"), *(ROOT / "schema").rglob("*.py")])
# Computed codes, by the expression that computes them, and where they come from.
QUERY_CODE = "str(query_code(error))"
HTTP_CODE = "_code(exc)"


def _strings_assigned(tree: ast.Module, name: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """The strings `name` can hold: string constants assigned to it anywhere in the module
    (a constant or a local), and what the module's own functions assigned to it return."""
    if name in seen:
        return set()
    seen |= {name}
    found: set[str] = set()
    functions = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
            continue
        value = node.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            found.add(value.value)
        elif (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id in functions
        ):
            for ret in ast.walk(functions[value.func.id]):
                if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Constant):
                    if isinstance(ret.value.value, str):
                        found.add(ret.value.value)
                elif isinstance(ret, ast.Return) and isinstance(ret.value, ast.Name):
                    found |= _strings_assigned(tree, ret.value.id, seen)
    return found


def _extension_dicts(tree: ast.Module) -> list[ast.Dict]:
    dicts: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            dicts += [k.value for k in node.keywords if k.arg == "extensions"]
        elif isinstance(node, ast.Dict):
            dicts += [
                v
                for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and k.value == "extensions"
            ]
        elif isinstance(node, ast.Assign) and any(
            (isinstance(t, ast.Name) and t.id == "error_extensions")
            or (isinstance(t, ast.Attribute) and t.attr == "extensions")
            for t in node.targets
        ):
            dicts.append(node.value)
    return [d for d in dicts if isinstance(d, ast.Dict)]


def codes_in_source() -> tuple[dict[str, set[str]], set[str]]:
    """(code -> files that emit it, computed code expressions)."""
    codes: dict[str, set[str]] = {}
    computed: set[str] = set()
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for extensions in _extension_dicts(tree):
            for key, value in zip(extensions.keys, extensions.values, strict=True):
                if not (isinstance(key, ast.Constant) and key.value == "code"):
                    continue
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found = {value.value}
                elif isinstance(value, ast.Name):
                    found = _strings_assigned(tree, value.id)
                    assert found, f"{path}: no string is assigned to the code {value.id}"
                else:
                    computed.add(ast.unparse(value))
                    continue
                for code in found:
                    codes.setdefault(code, set()).add(path.relative_to(ROOT).as_posix())
    return codes, computed


def http_statuses_raised() -> set[int]:
    """Statuses of the HTTPExceptions strawberry's HTTP layer and the API raise."""
    strawberry_http = Path(strawberry.__file__).parent / "http"
    statuses: set[int] = set()
    for path in [*strawberry_http.rglob("*.py"), *(ROOT / "api").rglob("*.py")]:
        statuses |= {int(s) for s in re.findall(r"HTTPException\(\s*(\d{3})", path.read_text())}
    return statuses


def enum_values() -> set[str]:
    enum = build_schema()._schema.type_map["TopLevelErrorCode"]
    return set(enum.values)  # type: ignore[attr-defined]


def test_the_top_level_error_code_enum_is_in_the_sdl_with_the_server_codes() -> None:
    assert enum_values() == {code.value for code in TopLevelCode}


def test_every_written_top_level_code_is_in_the_enum() -> None:
    codes, _ = codes_in_source()
    # The scan finds what it should: the limits, the rate limiter, permissions, masking.
    assert {"FORBIDDEN", "RATE_LIMITED", "MAX_COST_EXCEEDED", "MAX_DEPTH_EXCEEDED"} <= set(codes)
    assert {"SERVICE_UNAVAILABLE", "INTERNAL_ERROR"} <= set(codes)
    assert {"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"} <= set(codes)
    missing = {code: sorted(files) for code, files in codes.items() if code not in enum_values()}
    assert not missing, f"codes the server emits that TopLevelErrorCode lacks: {missing}"


def test_every_computed_top_level_code_is_accounted_for_and_in_the_enum() -> None:
    _, computed = codes_in_source()
    assert computed <= {QUERY_CODE, HTTP_CODE}, (
        f"a new computed extensions.code: {computed - {QUERY_CODE, HTTP_CODE}}; make sure"
        " every value it can take is in TopLevelErrorCode and teach this test where they"
        " come from"
    )
    values = enum_values()
    # Query errors: whatever DomainError a query raises is reported with a listed code.
    for domain_code in DomainErrorCode:
        assert str(query_code(DomainError(domain_code, "refused"))) in values, domain_code
    # HTTP refusals (api/graphql_view.py): the status's name, or HTTP_ERROR.
    statuses = http_statuses_raised()
    assert {400, 405} <= statuses
    names = {HTTPStatus(s).name for s in statuses}
    assert names | {"HTTP_ERROR"} <= values, names - values


def test_every_enum_value_is_really_emitted() -> None:
    """No stale value: each code in the enum comes from somewhere in the server."""
    codes, _ = codes_in_source()
    from_queries = {str(query_code(DomainError(c, "refused"))) for c in DomainErrorCode}
    from_http = {HTTPStatus(s).name for s in http_statuses_raised()} | {"HTTP_ERROR"}
    assert enum_values() - set(codes) - from_queries - from_http == set()
