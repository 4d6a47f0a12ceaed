"""Cutting a campaign into batches: staggered first batches, then full ones."""

from __future__ import annotations

import pytest

from tasks.email.campaign import Recipient
from tasks.email.steps import batches

pytestmark = pytest.mark.timeout(60)


def _recipients(count: int) -> list[Recipient]:
    return [Recipient(address=f"r{i}@example.com", context={}) for i in range(count)]


def test_the_first_batches_grow_to_the_batch_size_and_every_recipient_is_in_one() -> None:
    recipients = _recipients(1_000)
    cut = list(batches(recipients, 100, stagger=8))
    assert [len(batch) for batch in cut[:9]] == [13, 25, 38, 50, 63, 75, 88, 100, 100]
    assert [r for batch in cut for r in batch] == recipients


@pytest.mark.parametrize(("count", "size", "stagger"), [(0, 5, 3), (7, 1, 8), (5, 100, 1)])
def test_small_campaigns_are_cut_whole(count: int, size: int, stagger: int) -> None:
    recipients = _recipients(count)
    cut = list(batches(recipients, size, stagger))
    assert all(1 <= len(batch) <= size for batch in cut)
    assert [r for batch in cut for r in batch] == recipients
