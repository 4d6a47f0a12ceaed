"""Job parameters against a deployment's real schema, and what a non-admin key may reach."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect.utilities.callables import parameter_schema

from flows.export_table import export_table
from flows.import_csv import import_csv
from service.errors import ServiceError
from service.parameters import check_reach, inside, owned_import_id, schema_errors

IMPORT_SCHEMA: dict[str, Any] = parameter_schema(import_csv).model_dump_for_openapi()
EXPORT_SCHEMA: dict[str, Any] = parameter_schema(export_table).model_dump_for_openapi()


def test_valid_parameters_with_nested_rules_pass() -> None:
    parameters = {
        "source": "upload:x",
        "table": "users",
        "key": ["email"],
        "rules": {"email": {"required": True, "format": "email"}, "age": {"min": 0}},
    }

    assert schema_errors(IMPORT_SCHEMA, parameters) == {}


def test_each_offending_field_is_named() -> None:
    parameters = {
        "source": "upload:x",
        "key": "email",
        "chunk_size": "big",
        "on_conflict": "merge",
        "rules": {"email": {"format": "mail"}},
        "colour": "blue",
    }

    fields = schema_errors(IMPORT_SCHEMA, parameters)

    assert set(fields) == {
        "table",
        "key",
        "chunk_size",
        "on_conflict",
        "rules.email.format",
        "colour",
    }
    assert fields["table"] == "required"
    assert fields["colour"] == "unknown parameter"


def test_a_credential_in_a_refused_value_is_masked() -> None:
    fields = schema_errors(EXPORT_SCHEMA, {"table": "t", "format": "postgresql://u:pw@h/db"})

    assert "pw" not in fields["format"]
    assert "u:***@h" in fields["format"]


@pytest.mark.parametrize(
    ("parameters", "refused"),
    [
        ({"source": "/etc/passwd"}, {"source"}),
        ({"source": "file:///etc/passwd"}, {"source"}),
        ({"source": ["upload:x"]}, {"source"}),
        ({"database": "postgresql://postgres@127.0.0.1/postgres"}, {"database"}),
        ({"database": "my-connector-block"}, {"database"}),
        ({"destination": "../../etc"}, {"destination"}),
        ({"destination": "/etc"}, {"destination"}),
        ({"destination": "exports/\x00x"}, {"destination"}),
        ({"source": "/x", "destination": "../x"}, {"source", "destination"}),
        ({"auth_block": "github-token", "base_url": "https://attacker.example"}, {"auth_block"}),
        ({"smtp": "operator-mail-block"}, {"smtp"}),
        ({"smtp": "smtp://attacker.example:25"}, {"smtp"}),
    ],
)
def test_a_non_admin_cannot_reach_outside_its_own(
    tmp_path: Path, parameters: dict[str, Any], refused: set[str]
) -> None:
    with pytest.raises(ServiceError) as error:
        check_reach(parameters, "sqlite:///configured.db", tmp_path)

    assert error.value.status == 403
    assert set(error.value.fields or {}) == refused


def test_uploads_the_configured_database_and_inner_destinations_are_allowed(tmp_path: Path) -> None:
    check_reach(
        {"source": "upload:abc", "database": "sqlite:///configured.db", "destination": "exports/a"},
        "sqlite:///configured.db",
        tmp_path,
    )
    check_reach({"database": None, "destination": "."}, None, tmp_path)


def test_a_symlink_out_of_the_exports_root_is_outside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)

    assert not inside(root, "escape/x")
    assert inside(root, "reports/2026")


def test_a_deployments_credentials_go_to_its_own_base_url_only(tmp_path: Path) -> None:
    defaults = {"auth_block": "github-token", "base_url": "https://api.github.com"}

    with pytest.raises(ServiceError) as error:
        check_reach({"base_url": "https://attacker.example"}, None, tmp_path, defaults)

    assert error.value.status == 403
    assert set(error.value.fields or {}) == {"base_url"}
    check_reach({"base_url": "https://api.github.com", "path": "/users"}, None, tmp_path, defaults)
    check_reach({"base_url": "https://any.example"}, None, tmp_path, {"auth_block": None})


def test_an_owners_import_id_is_its_own_and_bounded() -> None:
    assert owned_import_id("dave", "users-2026-11-30") == "dave:users-2026-11-30"
    assert owned_import_id("erin", "users-2026-11-30") != owned_import_id(
        "dave", "users-2026-11-30"
    )
    assert len(owned_import_id("dave", "x" * 59)) == 64

    with pytest.raises(ServiceError) as error:
        owned_import_id("dave", "x" * 60)

    assert error.value.status == 400
    assert error.value.fields == {"import_id": "at most 59 characters"}
    with pytest.raises(ServiceError) as colon:
        owned_import_id("a", "b:c")  # would be owner "a:b"'s id "c"
    assert colon.value.fields == {"import_id": "no ':' allowed"}
