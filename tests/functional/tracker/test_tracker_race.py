"""A tracker tick racing a new submission: the newer outcome is kept, and followed.

The tick reads the followed submission, then describes the instance (slowed to 1.5 s here) while
another function instance records a newer submission for it. The tick's verdict on the old one must
not overwrite the newer outcome nor drop it from what the tracker follows.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from tests.functional.tracker.conftest import UPGRADE_SECONDS, TrackBench

INSTANCE = "r-bp1trackdone0001"


def test_a_tick_racing_a_new_submission_keeps_and_follows_the_newer_one(track: TrackBench) -> None:
    first = track.upgrade(INSTANCE, "7.0", ticket_id="CHG-OLD")
    track.advance(UPGRADE_SECONDS + 60)  # the first upgrade is over: the tick would record it completed
    track.faults([{"product": "r-kvstore", "action": "DescribeInstanceAttribute", "latency_ms": 1500}])
    newer = replace(
        first,
        request_id="NEWER-SUBMISSION",
        ticket_id="CHG-NEW",
        at=track.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
    )

    tick = threading.Thread(target=track.tick)
    tick.start()
    track.wait_in_flight("DescribeInstanceAttribute", instance_id=INSTANCE)  # the tick is inside its describe
    track.upgrader().store.record(newer)  # another function instance records a newer submission
    tick.join()

    latest = track.upgrader().status(INSTANCE)
    assert latest is not None and (latest.status, latest.request_id) == ("submitted", "NEWER-SUBMISSION")
    followed = [o.request_id for o in track.tracker().in_flight() if o.instance_id == INSTANCE]
    assert followed == ["NEWER-SUBMISSION"]
    assert "upgrade.completed" not in track.events(
        INSTANCE
    )  # the stale verdict was neither recorded nor told

    track.faults([])
    track.tick()
    done = track.upgrader().status(INSTANCE)
    assert done is not None and (done.status, done.request_id, done.ticket_id) == (
        "completed",
        "NEWER-SUBMISSION",
        "CHG-NEW",
    )
