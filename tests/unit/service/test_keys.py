"""API keys: random, hashed at rest, scoped, revocable."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from service.keys import create_key, hash_key, list_keys, main, revoke_key, verify_key
from service.tables import api_keys, service_engine


@pytest.fixture
def engine(sqlite_url: str) -> sa.Engine:
    return service_engine(sqlite_url)


def test_a_created_key_verifies_with_its_owner_and_default_scopes(engine: sa.Engine) -> None:
    key_id, key = create_key(engine, "alice")

    found = verify_key(engine, key)

    assert found is not None
    assert (found.key_id, found.owner, found.admin) == (key_id, "alice", False)
    assert found.queues == {"default", "low"}
    assert found.may_submit("import-csv")
    assert not found.may_use("high")


def test_only_the_hash_of_a_key_is_stored(engine: sa.Engine) -> None:
    _key_id, key = create_key(engine, "alice")

    with engine.connect() as conn:
        (stored,) = conn.execute(sa.select(api_keys)).all()

    assert key not in [str(value) for value in stored]
    assert stored.key_hash == hash_key(key)


@pytest.mark.parametrize(
    "tampered",
    [None, "", "bf_", "x" * 80, "' OR 1=1 --", "bf_0123456789abcdef_" + "A" * 43],
)
def test_missing_malformed_and_unknown_keys_do_not_verify(
    engine: sa.Engine, tampered: str | None
) -> None:
    create_key(engine, "alice")

    assert verify_key(engine, tampered) is None


def test_a_key_with_a_changed_secret_does_not_verify(engine: sa.Engine) -> None:
    _key_id, key = create_key(engine, "alice")
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")

    assert verify_key(engine, forged) is None


def test_a_revoked_key_no_longer_verifies(engine: sa.Engine) -> None:
    key_id, key = create_key(engine, "alice")

    assert revoke_key(engine, key_id)
    assert verify_key(engine, key) is None
    assert not revoke_key(engine, key_id)


def test_scopes_limit_types_and_queues_unless_admin(engine: sa.Engine) -> None:
    _, limited = create_key(engine, "bob", types=["export-table"], queues=["high"])
    _, root = create_key(engine, "root", types=["export-table"], admin=True)

    bob, admin = verify_key(engine, limited), verify_key(engine, root)

    assert bob is not None
    assert admin is not None
    assert (bob.may_submit("export-table"), bob.may_submit("import-csv")) == (True, False)
    assert (bob.may_use("high"), bob.may_use("default")) == (True, False)
    assert admin.may_submit("import-csv")
    assert admin.may_use("high")


def test_list_shows_keys_without_their_secrets(engine: sa.Engine) -> None:
    _key_id, key = create_key(engine, "alice")

    listed = list_keys(engine)

    assert [entry["owner"] for entry in listed] == ["alice"]
    assert key not in repr(listed)
    assert hash_key(key) not in repr(listed)


def test_the_cli_prints_the_new_key_alone_on_stdout(
    sqlite_url: str,
    tmp_path: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BATCHFLOWS_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("BATCHFLOWS_SERVICE_STATE", str(tmp_path))

    assert main(["create", "--owner", "carol", "--types", "import-csv", "--admin"]) == 0
    key = capsys.readouterr().out.strip()
    found = verify_key(service_engine(sqlite_url), key)

    assert found is not None
    assert (found.owner, found.types, found.admin) == ("carol", frozenset({"import-csv"}), True)
    assert main(["revoke", found.key_id]) == 0
    assert main(["revoke", found.key_id]) == 1
