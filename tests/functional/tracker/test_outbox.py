"""The notification outbox off the request's path (#12.6): requests only probe the store; the
tracker drains, in batches, within its deadline, publishing each parked entry once."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from dbupgrade.model import Outcome
from dbupgrade.store import RedisStore
from dbupgrade.tracker import OUTBOX_RESERVE_SECONDS

from tests.functional.tracker.conftest import TrackBench

PARKED = 8


def park(track: TrackBench, count: int = PARKED) -> list[str]:
    """``count`` outcomes recorded while MNS refuses every publish: each waits in the outbox."""
    track.faults([{"product": "mns", "action": "PublishMessage", "error_rate": 1.0}])
    upgrader = track.upgrader()
    ids = [f"r-bp1parked{n:07d}" for n in range(count)]
    for instance_id in ids:
        upgrader.finish(Outcome(status="noop", instance_id=instance_id, to_version="7.0", engine="redis"))
    assert upgrader.store.outbox_size() == count
    track.faults([])
    return ids


def published_ids(track: TrackBench) -> list[str]:
    return [n["instance_id"] for n in track.published()]


def context(seconds: float) -> SimpleNamespace:
    """An FC context with ``seconds`` of the invocation left."""
    return SimpleNamespace(request_id="tick", get_remaining_time_in_millis=lambda: int(seconds * 1000))


def test_a_request_publishes_its_own_outcome_and_leaves_old_ones_to_the_tracker(track: TrackBench) -> None:
    parked = park(track, 2)

    track.upgrade("r-bp1trackdone0001", "7.0")

    assert published_ids(track) == ["r-bp1trackdone0001"]  # none of the parked ones
    assert track.upgrader().store.outbox_size() == 2

    summary = track.tick()

    assert (summary["drained"], summary["outbox_left"]) == (2, 0)
    assert published_ids(track) == ["r-bp1trackdone0001", *parked]


def test_the_tracker_drain_stops_at_its_deadline_and_keeps_the_rest_in_order(track: TrackBench) -> None:
    parked = park(track)
    track.faults([{"product": "mns", "action": "PublishMessage", "latency_ms": 300}])
    tracker = track.tracker()

    # 1.5 s to drain: the first publish starts well inside it, and eight take 2.4 s, so it stops at
    # its deadline with some left (a wall-clock bound on the tick would fail on a busy machine).
    summary = tracker.tick(context(OUTBOX_RESERVE_SECONDS + 1.5), now=track.now())

    drained = summary["drained"]
    assert 1 <= drained < PARKED and summary["outbox_left"] == PARKED - drained
    assert published_ids(track) == parked[:drained]

    track.faults([])
    rest = track.tick()

    assert (rest["drained"], rest["outbox_left"]) == (PARKED - drained, 0)
    assert published_ids(track) == parked  # every entry once, oldest first


def test_concurrent_drains_publish_each_entry_once(track: TrackBench) -> None:
    parked = park(track)
    track.faults([{"product": "mns", "action": "PublishMessage", "latency_ms": 50}])
    upgraders = [track.upgrader() for _ in range(4)]
    barrier = threading.Barrier(len(upgraders))

    def drain(index: int) -> None:
        barrier.wait()
        while upgraders[index].store.outbox_size():
            upgraders[index].drain_outbox()

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(upgraders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(published_ids(track)) == sorted(parked)


def test_an_entry_whose_drainer_died_mid_publish_is_published_again_first(track: TrackBench) -> None:
    parked = park(track, 3)
    store = track.upgrader().store
    assert isinstance(store, RedisStore)
    seen: list[str] = []

    def dies_on_the_second(entry: dict[str, object]) -> bool:
        message = entry["message"]
        assert isinstance(message, dict)
        seen.append(str(message["instance_id"]))
        if len(seen) == 2:
            raise SystemExit("the drainer died mid-publish")
        return True

    with pytest.raises(SystemExit):
        store.drain(dies_on_the_second, deadline=time.monotonic() + 10, limit=10)
    assert store.outbox_size() == 2  # the claimed entry is still counted: nothing is lost

    redelivered: list[str] = []

    def deliver(entry: dict[str, object]) -> bool:
        message = entry["message"]
        assert isinstance(message, dict)
        redelivered.append(str(message["instance_id"]))
        return True

    assert store.drain(deliver, deadline=time.monotonic() + 10, limit=10) == 2
    assert seen == parked[:2] and redelivered == parked[1:]  # only the in-flight one twice
