"""A rollout target two MongoDB majors ahead: `rollout plan` shows its path and expected duration,
`rollout status` shows the hop and the task's progress while it runs, and the target is completed
only once the last hop is verified (an intermediate hop's verification never completes it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

import pytest
from click.testing import CliRunner
from dbupgrade.cli.commands import cli
from dbupgrade.rollouts import RolloutSpec, parse_waves, validate_targets
from dbupgrade.tracker import Tracker, TrackerSettings

from tests.functional.rollouts.conftest import UPGRADE_SECONDS, Fleet, mongo_instance

MONGO = "dds-bp1rollhops0001"


def rollout(fleet: Fleet, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    for key, value in fleet.env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["rollout", *args])
    return result.exit_code, result.stdout


def tick(fleet: Fleet) -> None:
    now = datetime.fromisoformat(fleet.get("/_localcloud/clock")["now"])
    Tracker(fleet.tracker, TrackerSettings.from_env(fleet.env)).tick(now=now)


def test_a_two_hop_target_shows_its_path_progress_and_completes_after_the_last_hop(
    make_fleet: Callable[..., Fleet], monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = make_fleet([], [mongo_instance(MONGO, "4.4")])

    code, plan = rollout(fleet, monkeypatch, "plan", "--engine", "mongodb", "--target", "6.0", "--json")
    assert code == 0
    [row] = json.loads(plan)["rows"]
    assert (row["action"], row["path"], row["expected_seconds"]) == ("submit", ["4.4", "5.0", "6.0"], 7200.0)
    code, text = rollout(fleet, monkeypatch, "plan", "--engine", "mongodb", "--target", "6.0")
    assert "4.4>5.0>6.0 ~2h00m" in text

    targets = tuple(validate_targets([{"instance_id": MONGO, "target_version": "6.0"}]))
    fleet.rollouts.start(RolloutSpec("hops", targets, parse_waves("1", 1), "1"))
    fleet.deliver()
    fleet.post("/_localcloud/clock", {"advance": UPGRADE_SECONDS / 2})
    tick(fleet)

    code, out = rollout(fleet, monkeypatch, "status", "hops", "--json")
    [status_row] = json.loads(out)["rows"]
    assert (status_row["state"], status_row["hop"], status_row["hops"]) == ("submitted", 1, 2)
    assert 30 <= status_row["progress"] <= 70 and status_row["current_step"] == "exec_task"
    code, text = rollout(fleet, monkeypatch, "status", "hops")
    line = next(row for row in text.splitlines() if row.startswith(MONGO))
    assert "hop 1/2" in line and "%" in line and "exec_task" in line

    fleet.post("/_localcloud/clock", {"advance": UPGRADE_SECONDS})
    tick(fleet)  # hop 1 verified, hop 2 submitted: the target is not done
    assert fleet.rollouts.status("hops")["rows"][0]["state"] == "submitted"
    fleet.post("/_localcloud/clock", {"advance": UPGRADE_SECONDS + 1})
    tick(fleet)
    status = fleet.rollouts.status("hops")
    assert (status["status"], status["rows"][0]["state"]) == ("completed", "completed")
    assert fleet.upgrade_calls() == {MONGO: 2}
