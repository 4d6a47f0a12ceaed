"""Service settings: safe defaults, a signing secret generated once and kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "BATCHFLOWS_SERVICE_SECRET",
        "BATCHFLOWS_SERVICE_MAX_UPLOAD_MB",
        "BATCHFLOWS_SERVICE_RATE_LIMIT",
        "BATCHFLOWS_SERVICE_PORT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATCHFLOWS_SERVICE_STATE", str(tmp_path / "state"))


def test_defaults_are_safe_and_the_secret_is_kept_in_the_state_folder(tmp_path: Path) -> None:
    first, second = load_settings(), load_settings()

    assert (first.max_upload_bytes, first.rate_limit_per_minute) == (1024 * 1024 * 1024, 600)
    assert (first.host, first.port) == ("127.0.0.1", 8000)
    assert len(first.secret) == 64
    assert first.secret == second.secret
    secret_file = tmp_path / "state" / "secret"
    assert secret_file.stat().st_mode & 0o077 == 0


def test_a_given_secret_wins_and_limits_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATCHFLOWS_SERVICE_SECRET", "from-env")
    monkeypatch.setenv("BATCHFLOWS_SERVICE_MAX_UPLOAD_MB", "2")
    monkeypatch.setenv("BATCHFLOWS_SERVICE_RATE_LIMIT", "30")

    settings = load_settings()

    assert (settings.secret, settings.max_upload_bytes) == (b"from-env", 2 * 1024 * 1024)
    assert settings.rate_limit_per_minute == 30


@pytest.mark.parametrize("value", ["lots", "0", "-5"])
def test_a_bad_limit_stops_the_service_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("BATCHFLOWS_SERVICE_RATE_LIMIT", value)

    with pytest.raises(SystemExit, match="BATCHFLOWS_SERVICE_RATE_LIMIT"):
        load_settings()
