"""A function instance's start (``dbupgrade.startup``): no cyclic collection during the imports and
the first request, then the start's objects frozen and collection back on - also when the first
request fails."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from dbupgrade import startup


@pytest.fixture(autouse=True)
def collector() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.enable()


def test_the_collector_is_back_after_the_first_call_and_the_start_is_frozen() -> None:
    seen: list[bool] = []
    handler = startup.collector_back_after_first_call(lambda event: seen.append(gc.isenabled()) or event)

    startup.pause_collector()
    assert handler("first") == "first"
    assert handler("second") == "second"

    assert seen == [False, True]  # the first request ran without it, the next one with it
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


def test_a_first_call_that_raises_still_brings_the_collector_back() -> None:
    def fails(event: str) -> str:
        raise RuntimeError(event)

    handler = startup.collector_back_after_first_call(fails)
    startup.pause_collector()
    with pytest.raises(RuntimeError):
        handler("boom")

    assert gc.isenabled()
