"""Choosing the SMTP server: URLs, the environment, and what never leaks."""

from __future__ import annotations

import pytest

from tasks.email.campaign import backoff
from tasks.email.smtp import resolve_smtp
from tasks.errors import InputError

pytestmark = pytest.mark.timeout(60)


def test_url_gives_host_port_security_and_a_secret_password() -> None:
    server = resolve_smtp("smtp+starttls://mailer:s%40cret@mail.example.com:2525")
    assert (server.host, server.port, server.security) == ("mail.example.com", 2525, "starttls")
    assert server.username == "mailer"
    assert server.password is not None
    assert server.password.get_secret_value() == "s@cret"
    assert "s@cret" not in repr(server)
    assert "s@cret" not in server.label


def test_default_ports_follow_the_scheme() -> None:
    assert resolve_smtp("smtps://mail.example.com").port == 465
    assert resolve_smtp("smtp://127.0.0.1").port == 25


def test_environment_variable_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHFLOWS_SMTP_URL", "smtp://127.0.0.1:1025")
    assert resolve_smtp(None).port == 1025
    monkeypatch.delenv("BATCHFLOWS_SMTP_URL")
    with pytest.raises(InputError, match="BATCHFLOWS_SMTP_URL"):
        resolve_smtp(None)


@pytest.mark.parametrize("url", ["http://mail.example.com", "smtp://", "smtp://host:port"])
def test_bad_url_is_refused_with_the_parameter_named(url: str) -> None:
    with pytest.raises(InputError, match="parameter 'smtp'"):
        resolve_smtp(url)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    assert backoff(0.5, 1, lambda: 0.0) == 0.25
    assert backoff(0.5, 3, lambda: 1.0) == 2.0
    assert backoff(0.5, 30, lambda: 1.0) == 30.0
