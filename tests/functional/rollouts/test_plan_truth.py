"""`rollout plan` tells what the functions would do (their window and policy: a WHEN column) and what
the predicted rejections do to the error budget; `rollout start` refuses a budget already spent."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from dbupgrade.cli.commands import cli

from tests.functional.rollouts.conftest import Fleet, redis_instance

READY = [f"r-plan{n:05d}" for n in range(3)]
NOT_READY = [f"r-busy{n:05d}" for n in range(2)]


def run(fleet: Fleet, monkeypatch: pytest.MonkeyPatch, *args: str, **env: str) -> tuple[int, str, str]:
    for key, value in {**fleet.env, **env}.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["rollout", *args])
    return result.exit_code, result.stdout, result.stderr


def a_window_two_hours_away() -> tuple[str, datetime]:
    opening = (datetime.now(timezone.utc) + timedelta(hours=2)).replace(second=0, microsecond=0)
    closing = opening + timedelta(hours=1)
    return f"{opening:%H:%M}-{closing:%H:%M} UTC", opening


@pytest.fixture
def fleet(make_fleet: Callable[..., Fleet]) -> Fleet:
    return make_fleet(
        [redis_instance(i) for i in READY] + [redis_instance(i, status="Changing") for i in NOT_READY]
    )


def manifest(tmp_path: Path, ids: list[str]) -> Path:
    path = tmp_path / "fleet.csv"
    path.write_text("instance_id,target_version\n" + "".join(f"{i},7.0\n" for i in ids))
    return path


@pytest.mark.parametrize(
    ("policy", "when"),
    [
        ("maintenance_window", "maintenance window"),
        ("reject", "deferred until {opening}"),
        ("allow", "immediate"),
    ],
)
def test_plan_says_when_each_upgrade_would_start_under_the_functions_window(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, policy: str, when: str
) -> None:
    window, opening = a_window_two_hours_away()
    code, out, err = run(
        fleet,
        monkeypatch,
        "plan",
        str(manifest(tmp_path, READY)),
        "--json",
        DBUPGRADE_WINDOW=window,
        DBUPGRADE_WINDOW_POLICY=policy,
    )
    assert code == 0, err
    plan = json.loads(out)
    expected = when.format(opening=opening.strftime("%Y-%m-%d %H:%M UTC"))
    assert {row["when"] for row in plan["rows"]} == {expected}
    assert (plan["window"], plan["window_policy"]) == (window, policy)
    text = run(
        fleet,
        monkeypatch,
        "plan",
        str(manifest(tmp_path, READY)),
        DBUPGRADE_WINDOW=window,
        DBUPGRADE_WINDOW_POLICY=policy,
    )[1]
    assert "WHEN" in text.splitlines()[0] and f"window {window}, outside it: {policy}" in text


def test_predicted_rejections_are_summed_against_the_budget_and_start_refuses_to_spend_it(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fleet_csv = str(manifest(tmp_path, READY + NOT_READY))
    code, out, _ = run(fleet, monkeypatch, "plan", fleet_csv, "--max-errors", "1")
    assert code == 0
    assert "2 targets would spend the error budget" in out
    assert "more than --max-errors 1: `rollout start` refuses" in out

    code, out, err = run(
        fleet, monkeypatch, "start", fleet_csv, "--yes", "--max-errors", "1", "--id", "doomed"
    )
    assert code == 1 and out == ""
    assert "2 targets are already predicted to be rejected" in err and NOT_READY[0] in err
    assert fleet.rollouts.repo.spec("doomed") is None  # nothing recorded, nothing released
    assert fleet.upgrade_calls() == {}

    code, out, err = run(
        fleet,
        monkeypatch,
        "start",
        fleet_csv,
        "--yes",
        "--max-errors",
        "1",
        "--exclude-predicted-errors",
        "--id",
        "trimmed",
    )
    assert (code, out) == (0, "trimmed\n"), err
    assert f"left out {NOT_READY[0]}" in err
    spec = fleet.rollouts.repo.spec("trimmed")
    assert spec is not None and [t["instance_id"] for t in spec.targets] == READY
