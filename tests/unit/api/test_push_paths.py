"""Push path templates and the pull's sync-state key, given hostile values."""

from __future__ import annotations

import pytest

from tasks.api.pull_plan import state_key
from tasks.api.push_source import path_segment, template_fields
from tasks.errors import InputError


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("a/../b", "a%2F..%2Fb"),
        ("x?admin=1#f", "x%3Fadmin%3D1%23f"),
        ("{id}", "%7Bid%7D"),
        (42, "42"),
    ],
)
def test_a_record_value_is_encoded_as_exactly_one_path_segment(value: object, segment: str) -> None:
    assert path_segment(value) == segment


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("http://api.test/users/{id", "is not a valid template"),
        ("http://api.test/users/}", "is not a valid template"),
        ("http://api.test/users/{id.__class__}", "{id.__class__} is not a plain record field"),
        ("http://api.test/users/{id[0]}", "is not a plain record field"),
        ("http://api.test/users/{id!r}", "{id!r} is not a plain record field"),
        ("http://api.test/users/{}", "{} is not a plain record field"),
    ],
)
def test_a_malformed_path_template_is_a_clear_error(path: str, message: str) -> None:
    with pytest.raises(InputError, match="parameter 'path'") as refused:
        template_fields(path)

    assert message in str(refused.value)


def test_template_fields_are_the_names_between_braces() -> None:
    assert template_fields("http://api.test/orgs/{org}/users/{user id}?x={{literal}}") == [
        "org",
        "user id",
    ]


def test_pulls_that_differ_after_512_characters_keep_separate_watermarks() -> None:
    url = "http://api.test/items"
    first = state_key("items", url, {"filter": "a" * 600 + "1"})
    second = state_key("items", url, {"filter": "a" * 600 + "2"})

    assert first != second
    assert max(len(first), len(second)) <= 512


def test_the_sync_state_key_never_holds_a_secret_from_the_query() -> None:
    key = state_key("items", "http://api.test/items?api_key=k3y-Zq81", {"access_token": "t0k"})

    assert "k3y-Zq81" not in key
    assert "t0k" not in key.split("sha256:")[0]
