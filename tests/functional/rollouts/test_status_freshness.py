"""`rollout status` never shows a state older than the last tracker tick (issue #15).

A tick records each transition it sees on the instance (completed, the task's progress) before the
rollout round that moves the rollout's rows runs, and that round may not run at all: another caller
is advancing the rollout (its lock is held), or the tick ran out of time. Status, through the API
and `dbupgrade rollout status ID --json`, still shows everything the tick saw; a tick cut short
shows the part it checked, and nothing it saw before goes back.

Counted from states and localcloud's call log, never timed: the invocation's clock runs out after a
given number of list reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from dbupgrade.cli.commands import cli
from dbupgrade.context import InvocationContext
from dbupgrade.request import parse_request
from dbupgrade.rollouts.service import SAVE_RESERVE_SECONDS
from dbupgrade.tracker import TRACKER_SHARDS, Tracker, TrackerSettings

from tests.functional.rollouts.conftest import (
    UPGRADE_SECONDS,
    Fleet,
    redis_instance,
    runs_out_after_list_reads,
)
from tests.functional.rollouts.test_rollout_fleet import spec, targets_for
from tests.functional.rollouts.test_tick_cursor import INSTANCES


def times_out_after(fleet: Fleet, reads: int) -> InvocationContext:
    """An invocation that, once it made ``reads`` list reads, has less time left than a rollout
    round needs to save itself (FC's timeout is near): the tick's checks stop there, and its
    rollout round is skipped."""
    return runs_out_after_list_reads(fleet, reads, left=SAVE_RESERVE_SECONDS - 1)


def cli_status(fleet: Fleet, monkeypatch: pytest.MonkeyPatch, rollout_id: str) -> dict[str, Any]:
    for key, value in fleet.env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["rollout", "status", rollout_id, "--json"])
    return dict(json.loads(result.stdout))


def states_of(status: dict[str, Any]) -> dict[str, str]:
    return {row["instance_id"]: row["state"] for row in status["rows"]}


def started_and_submitted(make_fleet: Callable[..., Fleet], rollout_id: str, ids: list[str]) -> Fleet:
    fleet = make_fleet([redis_instance(i) for i in ids])
    fleet.rollouts.start(spec(rollout_id, targets_for(ids), "100%"))
    assert fleet.deliver() == len(ids)  # every upgrade submitted, none observed by a round yet
    return fleet


def test_status_shows_a_ticks_progress_and_completions_while_another_caller_holds_the_rollout(
    make_fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"r-fresh{n:05d}" for n in range(6)]
    fleet = started_and_submitted(make_fleet, "fresh", ids)
    tracker = Tracker(fleet.tracker)

    fleet.post("/_localcloud/clock", {"advance": UPGRADE_SECONDS // 2})  # half way through
    with fleet.rollouts.repo.lock("fresh", wait=False):  # e.g. an operator's `rollout advance`
        halfway = tracker.tick()
    assert halfway["rollouts"] == [{"rollout_id": "fresh", "busy": True}]  # its round did not run

    for status in (fleet.rollouts.status("fresh"), cli_status(fleet, monkeypatch, "fresh")):
        assert status["counts"] == {"submitted": 6}
        assert states_of(status) == dict.fromkeys(ids, "submitted")
        # The task's progress the tick read is on every row.
        assert all(row["progress"] is not None and 0 < row["progress"] < 100 for row in status["rows"])

    fleet.post("/_localcloud/clock", {"advance": UPGRADE_SECONDS})  # the upgrades are over
    with fleet.rollouts.repo.lock("fresh", wait=False):
        done = tracker.tick()
    assert sorted(t["instance_id"] for t in done["transitions"] if t["status"] == "completed") == ids
    assert done["rollouts"] == [{"rollout_id": "fresh", "busy": True}]

    for status in (fleet.rollouts.status("fresh"), cli_status(fleet, monkeypatch, "fresh")):
        assert (status["counts"], status["done"], status["in_flight"]) == ({"completed": 6}, 6, 0)
        assert states_of(status) == dict.fromkeys(ids, "completed")

    # The next round saves what status already showed, and ends the rollout.
    tracker.tick()
    final = fleet.rollouts.status("fresh")
    assert (final["status"], final["counts"], final["ended"]) == ("completed", {"completed": 6}, True)


def test_a_tick_cut_short_shows_the_shards_it_checked_and_nothing_goes_back(
    make_fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = started_and_submitted(make_fleet, "short", INSTANCES)
    fleet.post("/_localcloud/clock", {"advance": UPGRADE_SECONDS + 1})  # every upgrade is over
    # One shard a chunk: each chunk is one list read of its shard's instances. A tick reads the next
    # chunk while it checks one: cut short after k + 1 reads, it checked k shards (and left the last).
    tracker = Tracker(fleet.tracker, TrackerSettings(chunk_targets=1))
    half = TRACKER_SHARDS // 2

    first = tracker.tick(times_out_after(fleet, reads=half + 1))

    assert first["rollouts"] == [{"rollout_id": "short", "skipped": True}]  # no time for its round
    seen = {t["instance_id"] for t in first["transitions"] if t["status"] == "completed"}
    assert len(seen) == first["checked"] == len(INSTANCES) // 2
    expected = {i: "completed" if i in seen else "submitted" for i in INSTANCES}
    for status in (fleet.rollouts.status("short"), cli_status(fleet, monkeypatch, "short")):
        assert states_of(status) == expected
        assert status["done"] == len(seen)

    # The next tick starts with the shards the first left, and is cut short one shard before their end.
    second = tracker.tick(times_out_after(fleet, reads=half))

    assert second["rollouts"] == [{"rollout_id": "short", "skipped": True}]
    seen_next = {t["instance_id"] for t in second["transitions"] if t["status"] == "completed"}
    assert len(seen_next) == second["checked"] == len(INSTANCES) // 2 - len(INSTANCES) // TRACKER_SHARDS
    assert not seen & seen_next
    expected = {i: "completed" if i in seen | seen_next else "submitted" for i in INSTANCES}
    for status in (fleet.rollouts.status("short"), cli_status(fleet, monkeypatch, "short")):
        assert states_of(status) == expected  # the first tick's completions kept
        assert status["done"] == len(seen | seen_next)

    tracker.tick()  # a whole tick: its round records it
    final = fleet.rollouts.status("short")
    assert (final["status"], final["counts"]) == ("completed", {"completed": len(INSTANCES)})


def test_status_reads_the_recorded_outcome_of_a_dispatched_target(make_fleet: Callable[..., Fleet]) -> None:
    """The upgrade a released message submitted shows as submitted before any round looked at it;
    an upgrade of the same instance outside the rollout does not count for it."""
    ids = [f"r-own{n:05d}" for n in range(3)]
    fleet = make_fleet([redis_instance(i) for i in ids])
    fleet.rollouts.start(spec("own", targets_for(ids), "100%"))
    assert states_of(fleet.rollouts.status("own")) == dict.fromkeys(ids, "dispatched")

    fleet.deliver(only={ids[0]})
    fleet.worker.run(parse_request({"instance_id": ids[1], "target_version": "7.0"}, source="cli"))

    assert states_of(fleet.rollouts.status("own")) == {
        ids[0]: "submitted",
        ids[1]: "dispatched",  # upgraded by hand: not this rollout's release
        ids[2]: "dispatched",
    }
