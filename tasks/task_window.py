"""Submit tasks ahead in a bounded window and take their results in submission order.

Work fans out concurrently, while results arrive in order (pages commit in page order) and at
most `ahead` submissions are pending at once, so memory stays flat however long the input.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from prefect.futures import PrefectFuture

Item = TypeVar("Item")
Result = TypeVar("Result")


def results_in_order(
    submit: Callable[[Item], PrefectFuture[Result]], items: Iterable[Item], ahead: int
) -> Iterator[Result]:
    """Each item's result, in the order of `items`, with up to `ahead` submitted at a time."""
    pending = iter(items)
    window: deque[PrefectFuture[Result]] = deque(
        submit(item) for item in itertools.islice(pending, ahead)
    )
    while window:
        result = window.popleft().result()
        window.extend(submit(item) for item in itertools.islice(pending, 1))
        yield result
