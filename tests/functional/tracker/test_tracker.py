"""The tracker tells once what became of each submitted upgrade: completed (version verified), failed,
stuck, and maintenance-window upgrades followed from scheduled to completed."""

from __future__ import annotations

import threading
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from dbupgrade.tracker import parse_time

from tests.functional.tracker.conftest import UPGRADE_SECONDS, TrackBench


def test_nothing_is_told_while_an_upgrade_is_under_way(track: TrackBench) -> None:
    track.upgrade("r-bp1trackdone0001", "7.0")
    track.advance(600)

    summary = track.tick()

    assert (summary["checked"], summary["transitions"]) == (1, [])
    assert track.upgrader().status("r-bp1trackdone0001").status == "submitted"  # type: ignore[union-attr]


def test_completed_once_the_engine_version_is_the_target_for_both_engines(track: TrackBench) -> None:
    redis = track.upgrade("r-bp1trackdone0001", "7.0", ticket_id="CHG-1")
    track.upgrade("dds-bp1trackdone001", "5.0")
    track.advance(UPGRADE_SECONDS + 60)

    summary = track.tick()

    assert sorted((t["instance_id"], t["status"]) for t in summary["transitions"]) == [
        ("dds-bp1trackdone001", "completed"),
        ("r-bp1trackdone0001", "completed"),
    ]
    [note] = [n for n in track.published() if n["event"] == "upgrade.completed" and n["engine"] == "redis"]
    assert note["_tag"] == "completed"
    assert (note["from_version"], note["to_version"], note["ticket_id"]) == ("6.0", "7.0", "CHG-1")
    assert note["request_id"] == redis.request_id  # the upgrade API's RequestId, to correlate on
    assert UPGRADE_SECONDS <= note["duration_seconds"] <= UPGRADE_SECONDS + 120
    describe = track.calls("DescribeInstanceAttribute", instance_id="r-bp1trackdone0001")[-1]
    assert describe["status"] == 200  # verified by a describe, not inferred from the clock
    assert track.upgrader().status("dds-bp1trackdone001").status == "completed"  # type: ignore[union-attr]

    assert track.tick()["checked"] == 0  # a completed upgrade is no longer followed


def test_a_failure_status_is_failed(track: TrackBench) -> None:
    track.upgrade("r-bp1trackfail0001", "7.0")
    track.advance(UPGRADE_SECONDS + 60)

    track.tick()

    latest = track.upgrader().status("r-bp1trackfail0001")
    assert latest is not None
    assert (latest.status, latest.reason, latest.code) == ("failed", "upgrade_failed", "UpgradeFailed")
    assert "Error at 6.0" in str(latest.message)
    assert track.events("r-bp1trackfail0001") == ["upgrade.submitted", "upgrade.failed"]


def test_still_upgrading_past_the_engines_timeout_is_stuck_once(track: TrackBench) -> None:
    track.upgrade("r-bp1trackdone0001", "7.0")
    track.advance(2 * 3600 - 300)
    assert track.tick()["transitions"] == []  # 2 h is Redis's default: not yet

    track.advance(600)  # past 2 h, while localcloud keeps it upgrading for 3 h
    track.tick()
    track.tick()

    latest = track.upgrader().status("r-bp1trackdone0001")
    assert latest is not None and (latest.status, latest.reason) == ("stuck", "timeout")
    assert track.events("r-bp1trackdone0001") == ["upgrade.submitted", "upgrade.stuck"]
    state = track.get("/_localcloud/state")
    assert "MajorVersionUpgrading" in str(state)  # it really was still upgrading


def test_the_stuck_timeout_is_configurable_per_engine(track: TrackBench) -> None:
    track.upgrade("dds-bp1trackdone001", "5.0")
    track.advance(1800)

    track.tick(DBUPGRADE_STUCK_AFTER='{"mongodb": 900}')

    assert track.events("dds-bp1trackdone001") == ["upgrade.submitted", "upgrade.stuck"]


def test_a_maintenance_window_upgrade_is_scheduled_then_completed(track: TrackBench) -> None:
    instance = "r-bp1trackwindow01"
    track.upgrade(instance, "7.0", effective="maintenance_window")

    track.tick()
    track.advance(1800)
    track.tick()  # still before the window: told once

    scheduled = track.upgrader().status(instance)
    assert scheduled is not None and scheduled.status == "scheduled"
    assert track.events(instance) == ["upgrade.submitted", "upgrade.scheduled"]
    opening = parse_time(scheduled.message.rsplit(" ", 1)[1])  # "... starts at 2026-11-23T14:00:00Z"
    assert opening > track.now()

    track.advance((opening - track.now()).total_seconds() + 60)
    assert track.tick()["transitions"] == []  # upgrading inside the window
    track.advance(UPGRADE_SECONDS)
    track.tick()

    assert track.events(instance) == ["upgrade.submitted", "upgrade.scheduled", "upgrade.completed"]
    completed = track.upgrader().status(instance)
    assert completed is not None and completed.status == "completed"
    # The duration counts from the window's opening, not from the booking.
    assert timedelta(seconds=completed.duration_seconds or 0) < timedelta(seconds=UPGRADE_SECONDS + 120)


def test_overlapping_ticks_record_and_notify_a_transition_once(track: TrackBench) -> None:
    for instance in ("r-bp1trackdone0001", "r-bp1trackdone0002", "dds-bp1trackdone001"):
        track.upgrade(instance, "7.0" if instance.startswith("r-") else "5.0")
    track.advance(UPGRADE_SECONDS + 60)
    now = track.now()
    trackers = [track.tracker() for _ in range(4)]
    barrier = threading.Barrier(len(trackers))
    summaries: list[dict[str, Any]] = []

    def tick(index: int) -> None:
        barrier.wait()
        summaries.append(trackers[index].tick(now=now))

    threads = [threading.Thread(target=tick, args=(i,)) for i in range(len(trackers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(len(s["transitions"]) for s in summaries) == 3
    completed = [n["instance_id"] for n in track.published() if n["event"] == "upgrade.completed"]
    assert sorted(completed) == ["dds-bp1trackdone001", "r-bp1trackdone0001", "r-bp1trackdone0002"]
    for instance in completed:
        history = track.upgrader().history(instance)
        assert [o.status for o in history] == ["completed", "submitted"]


def test_a_tick_delivers_what_an_earlier_one_could_not_publish(track: TrackBench) -> None:
    track.upgrade("r-bp1trackdone0001", "7.0")
    track.advance(UPGRADE_SECONDS + 60)
    track.faults([{"product": "mns", "error_rate": 1.0}])
    track.tick()
    assert track.events("r-bp1trackdone0001") == ["upgrade.submitted"]

    track.faults([])
    summary = track.tick()

    assert summary["drained"] == 1
    assert track.events("r-bp1trackdone0001") == ["upgrade.submitted", "upgrade.completed"]


def test_dry_runs_and_final_outcomes_are_not_followed(track: TrackBench) -> None:
    track.upgrade("r-bp1trackdone0001", "7.0", dry_run=True)
    track.upgrade("r-bp1trackdone0002", "6.0")  # noop: already there

    assert track.tick()["checked"] == 0


def test_the_tracker_describes_only_what_is_in_flight(track: TrackBench) -> None:
    track.upgrade("r-bp1trackdone0001", "7.0")
    track.upgrade("r-bp1trackdone0002", "6.0")  # noop
    track.upgrade("dds-bp1trackdone001", "5.0")
    assert track.tick()["checked"] == 2  # still upgrading
    track.advance(UPGRADE_SECONDS + 60)
    assert len(track.tick()["transitions"]) == 2
    describes = len(track.calls("DescribeInstanceAttribute")) + len(
        track.calls("DescribeDBInstanceAttribute")
    )

    assert track.tick()["checked"] == 0  # completed is final: nothing left to describe
    assert (
        len(track.calls("DescribeInstanceAttribute")) + len(track.calls("DescribeDBInstanceAttribute"))
        == describes
    )


def test_a_tick_short_of_time_leaves_the_checks_to_the_next_one(track: TrackBench) -> None:
    track.upgrade("r-bp1trackdone0001", "7.0")
    track.advance(UPGRADE_SECONDS + 60)
    # FC's context with 30 s left: less than the share kept for advancing rollouts.
    hurried = SimpleNamespace(request_id="fc-req-1", get_remaining_time_in_millis=lambda: 30_000)

    summary = track.tracker().tick(hurried, now=track.now())

    assert (summary["checked"], summary["unchecked"]) == (0, 1)
    assert track.events("r-bp1trackdone0001") == ["upgrade.submitted"]
    assert track.tick()["transitions"][0]["status"] == "completed"


def test_a_booking_survives_the_emulated_clock_advanced_a_day_and_is_never_stuck(track: TrackBench) -> None:
    instance = "r-bp1trackwindow01"
    track.upgrade(instance, "7.0", effective="maintenance_window")
    track.tick()  # scheduled: its window opens in 3 h

    track.advance(24 * 3600)  # a day in one jump: the window opened and the upgrade ran meanwhile
    track.tick()

    assert track.events(instance) == ["upgrade.submitted", "upgrade.scheduled", "upgrade.completed"]
    assert "upgrade.stuck" not in track.events(instance)
