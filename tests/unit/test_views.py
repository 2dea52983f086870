"""The adapters' view of kopf's indexes, read from handlers' threads while the event loop changes them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ecr_tag_operator.views import settled


class ChangingStore:
    """A store of kopf's index that the event loop changes while a thread walks it, ``times`` times."""

    def __init__(self, items: list[int], times: int) -> None:
        self.items = items
        self.times = times

    def __iter__(self) -> Iterator[int]:
        if self.times:
            self.times -= 1
            raise RuntimeError("dictionary changed size during iteration")
        return iter(self.items)


def test_a_read_the_loop_interrupted_is_read_again() -> None:
    store = ChangingStore([1, 2, 3], times=3)
    assert settled(lambda: tuple(store)) == (1, 2, 3)
    assert store.times == 0


def test_an_index_that_never_settles_still_fails_loudly() -> None:
    store = ChangingStore([1], times=100)
    with pytest.raises(RuntimeError, match="changed size"):
        settled(lambda: tuple(store))
