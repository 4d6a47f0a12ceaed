"""Addresses and header values: plain addresses only, no header injection."""

from __future__ import annotations

import pytest

from tasks.email.address import InvalidAddress, check_header, normalize_address
from tasks.errors import InputError

pytestmark = pytest.mark.timeout(60)


def test_address_is_trimmed_and_lower_cased_for_the_ledger() -> None:
    assert normalize_address("  Ana.Maria+news@Example.COM ") == "ana.maria+news@example.com"


@pytest.mark.parametrize(
    "hostile",
    [
        "a@example.com\r\nBcc: victim@example.com",
        "a@example.com\nSubject: hi",
        "a@example.com\x00",
        "Name <a@example.com>",
        "a@b@example.com",
        "no-at-sign",
        "a@localhost",
        "x" * 65 + "@example.com",
        None,
        42,
    ],
)
def test_anything_but_one_plain_address_is_refused(hostile: object) -> None:
    with pytest.raises(InvalidAddress):
        normalize_address(hostile, "recipient 1")


@pytest.mark.parametrize("value", ["hi\r\nBcc: x@example.com", "hi\nthere", "a\rb"])
def test_header_value_with_a_line_break_is_refused(value: str) -> None:
    with pytest.raises(InputError, match="line break"):
        check_header(value, "Subject")


def test_plain_header_value_passes() -> None:
    assert check_header("Report for Zoë: 50% done", "Subject") == "Report for Zoë: 50% done"
