"""Signed download links: valid until their expiry, useless once changed."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from service.signing import check, download_path, sign

SECRET = b"s" * 32
JOB = "0b6c1c5e-7a4f-4a55-9e1c-2f3c0c7c9c11"


def test_a_link_checks_until_it_expires() -> None:
    query = parse_qs(urlsplit(download_path(SECRET, JOB, 1_000)).query)
    expires, signature = int(query["expires"][0]), query["signature"][0]

    assert check(SECRET, JOB, expires, signature, now=999.0) is None
    assert check(SECRET, JOB, expires, signature, now=1_000.0) == "expired"


def test_changing_the_job_expiry_secret_or_signature_forges_the_link() -> None:
    signature = sign(SECRET, JOB, 1_000)

    assert check(SECRET, JOB, 2_000, signature, now=0) == "forged"
    assert check(SECRET, JOB.replace("0", "1"), 1_000, signature, now=0) == "forged"
    assert check(b"other", JOB, 1_000, signature, now=0) == "forged"
    flipped = signature[:-1] + ("1" if signature[-1] == "0" else "0")
    assert check(SECRET, JOB, 1_000, flipped, now=0) == "forged"
    assert check(SECRET, JOB, 1_000, "", now=0) == "forged"
    assert check(SECRET, JOB, 1_000, "é" * 64, now=0) == "forged"


def test_a_forged_link_does_not_learn_whether_it_expired() -> None:
    assert check(SECRET, JOB, 1, "deadbeef", now=10) == "forged"
