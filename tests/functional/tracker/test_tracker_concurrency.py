"""A tick that sees many upgrades end records and notifies them several at once: each conclusion
waits on a store write and an MNS publish, so one at a time a 10,000-target wave's end took ~24 s."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from tests.functional.core.conftest import redis_entry
from tests.functional.tracker.conftest import UPGRADE_SECONDS, TrackBench

ENDED = 16
PUBLISH_LATENCY_MS = 250  # each completion's notification takes this long to be accepted


def test_a_tick_concludes_ended_upgrades_concurrently_each_notified_once(
    make_track: Callable[..., TrackBench],
) -> None:
    ids = [f"r-bp1trackpar{i:05d}" for i in range(ENDED)]
    track = make_track(
        {"redis": [redis_entry(i, "6.0", "cloud_native") for i in ids], "upgrade_seconds": 600}
    )
    for instance_id in ids:
        track.upgrade(instance_id, "7.0")
    track.advance(UPGRADE_SECONDS)
    track.faults([{"product": "mns", "action": "PublishMessage", "latency_ms": PUBLISH_LATENCY_MS}])

    started = time.monotonic()
    summary = track.tick()
    seconds = time.monotonic() - started

    assert sorted(t["instance_id"] for t in summary["transitions"]) == ids
    completed = Counter(n["instance_id"] for n in track.published() if n["event"] == "upgrade.completed")
    assert completed == dict.fromkeys(ids, 1)
    # One at a time the publishes alone take ENDED x 250 ms = 4 s.
    assert seconds < ENDED * PUBLISH_LATENCY_MS / 1000 / 2
