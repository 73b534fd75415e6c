"""A tick's chunks overlap (issue #15 item 4): the next chunk's instance reads go on while the
current chunk's completions are recorded and notified, one chunk ahead and no more. A tick that
sees a big wave finish then takes about the longer of a chunk's paced reads and its publishes, not
their sum, and still records and notifies every completion once."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from dbupgrade.tracker import Tracker, TrackerSettings, shard_of

from tests.functional.core.conftest import redis_entry
from tests.functional.tracker.conftest import TrackBench

UPGRADE_SECONDS = 600
PER_CHUNK = 10  # one DescribeInstances call a chunk (it takes 30 IDs), two rounds of 8 publishes
# Slow enough that a chunk's publishes (two rounds) outlast the next chunk's list read by far.
LIST_LATENCY_MS = 300
PUBLISH_LATENCY_MS = 400


def shard_ids(prefix: str, shard: int) -> list[str]:
    """``PER_CHUNK`` instance ids of one tracker shard: with ``chunk_targets=PER_CHUNK`` each shard
    is a chunk of its own, and a fresh store's rotation takes shards 0, 1, 2 in that order."""
    candidates = (f"{prefix}{n:05d}" for n in range(100_000))
    return [i for i in candidates if shard_of(i) == shard][:PER_CHUNK]


def list_reads(calls: list[dict[str, Any]], ids: list[str]) -> list[float]:
    """When each DescribeInstances call that listed any of ``ids`` was answered (emulated clock)."""
    return [c["at"] for c in calls if set(c["params"].get("InstanceIds", "").split(",")) & set(ids)]


def test_the_next_chunk_is_read_while_the_current_one_is_notified_and_only_one_ahead(
    make_track: Callable[..., TrackBench],
) -> None:
    chunks = [shard_ids("r-bp1pipe", shard) for shard in range(3)]
    everyone = [i for chunk in chunks for i in chunk]
    track = make_track({"redis": [redis_entry(i, "6.0", "cloud_native") for i in everyone]})
    for instance_id in everyone:
        track.upgrade(instance_id, "7.0")
    track.advance(UPGRADE_SECONDS + 1)  # the whole wave finished: the tick records 30 completions
    before = len(track.calls("DescribeInstances")), len(track.calls("PublishMessage"))
    track.faults(
        [
            {"product": "r-kvstore", "action": "DescribeInstances", "latency_ms": LIST_LATENCY_MS},
            {"product": "mns", "action": "PublishMessage", "latency_ms": PUBLISH_LATENCY_MS},
        ]
    )

    tracker = Tracker(track.tracker().upgrader, TrackerSettings(chunk_targets=PER_CHUNK))
    summary = tracker.tick(now=track.now())

    listed = track.calls("DescribeInstances")[before[0] :]
    published = track.calls("PublishMessage")[before[1] :]
    first, second, third = (list_reads(listed, chunk) for chunk in chunks)
    assert first and second and third
    first_notified = [
        c["at"] for c in published if json.loads(c["params"]["MessageBody"])["instance_id"] in chunks[0]
    ]
    assert len(first_notified) == PER_CHUNK
    # The second chunk was read while the first one's completions were being notified ...
    assert max(second) < max(first_notified)
    # ... and the third not before the first chunk was done: one chunk ahead, no more.
    assert min(third) > max(first_notified)
    # Every completion recorded and notified once, the overlap notwithstanding.
    assert sorted(t["instance_id"] for t in summary["transitions"]) == sorted(everyone)
    assert (summary["checked"], summary["unchecked"]) == (len(everyone), 0)
    completed = Counter(n["instance_id"] for n in track.published() if n["event"] == "upgrade.completed")
    assert completed == dict.fromkeys(everyone, 1)
