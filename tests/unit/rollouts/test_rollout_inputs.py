"""Rollout inputs and the status view: wave sizes, manifests in three formats, the rendered status."""

from __future__ import annotations

from pathlib import Path

import pytest
from dbupgrade.cli.rollout import render_status
from dbupgrade.model import InvalidRequest
from dbupgrade.rollouts import RolloutSpec, load_manifest, parse_waves
from dbupgrade.rollouts.model import RolloutMeta, TargetState
from dbupgrade.rollouts.summary import summarize, summary_message


@pytest.mark.parametrize(
    ("text", "total", "sizes"),
    [
        ("1,10%,100%", 200, (1, 20, 200)),
        ("1,10%,100%", 5, (1, 5)),
        ("2,50%", 10, (2, 5, 10)),  # a short last wave: the rest follows in one more
        ("100%", 3, (3,)),
    ],
)
def test_waves_are_cumulative_sizes(text: str, total: int, sizes: tuple[int, ...]) -> None:
    assert parse_waves(text, total) == sizes


@pytest.mark.parametrize("text", ["0,100%", "10,5", "1,abc", "150%", ""])
def test_bad_waves_are_refused_naming_the_option(text: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        parse_waves(text, 100)
    assert error.value.field == "waves"


@pytest.mark.parametrize("text", ["10%,5%", "5,3", "5,5,100%", "10%,10%"])
@pytest.mark.parametrize("total", [4, 1000])  # a small fleet must not hide the mistake
def test_waves_that_do_not_grow_are_refused_whatever_the_fleet(text: str, total: int) -> None:
    with pytest.raises(InvalidRequest, match="each must be larger than the one before") as error:
        parse_waves(text, total)
    assert error.value.field == "waves"


ROWS = [
    {"instance_id": "r-bp1abcdef01", "target_version": "7.0", "ticket_id": "CHG-1"},
    {"instance_id": "dds-bp1abcdef02", "target_version": "5.0", "effective": "maintenance_window"},
]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "fleet.csv",
            "instance_id,target_version,effective,ticket_id\n"
            "r-bp1abcdef01,7.0,,CHG-1\ndds-bp1abcdef02,5.0,maintenance_window,\n",
        ),
        (
            "fleet.json",
            '{"targets": [{"instance_id": "r-bp1abcdef01", "target_version": "7.0", "ticket_id": "CHG-1"},'
            ' {"instance_id": "dds-bp1abcdef02", "target_version": 5.0, "effective": "maintenance_window"}]}',
        ),
        (
            "fleet.yaml",
            "- {instance_id: r-bp1abcdef01, target_version: '7.0', ticket_id: CHG-1}\n"
            "- {instance_id: dds-bp1abcdef02, target_version: 5.0, effective: maintenance_window}\n",
        ),
    ],
)
def test_manifests_in_every_format_give_the_same_targets(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)

    assert load_manifest(path) == [
        {**ROWS[0], "engine": "redis"},
        {**ROWS[1], "engine": "mongodb"},
    ]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("instance_id,target_version\nr-bp1abcdef01,7.0\nr-bp1abcdef01,7.0\n", "row 2.instance_id"),
        ("instance_id,target_version\nr-bp1abcdef01,9.9\n", "row 1.target_version"),
        ("instance_id,target_version,owner\nr-bp1abcdef01,7.0,me\n", "row 1.owner"),
        ("instance_id,target_version\n", "manifest"),
    ],
)
def test_a_bad_manifest_row_is_named(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "fleet.csv"
    path.write_text(text)
    with pytest.raises(InvalidRequest) as error:
        load_manifest(path)
    assert error.value.field == field


def test_status_shows_progress_failures_and_why_it_stopped() -> None:
    targets = tuple({"instance_id": f"r-bp1abcdef{n:02d}", "target_version": "7.0"} for n in range(4))
    spec = RolloutSpec("night", targets, (1, 4), "1,100%", max_errors=0)
    meta = RolloutMeta(
        status="halted", wave=2, reason="error budget spent", started_at=1000.0, finished_at=1600.0
    )
    states = {
        "r-bp1abcdef00": TargetState(
            "r-bp1abcdef00", 1, "completed", dispatched_at=1000.0, finished_at=1120.0
        ),
        "r-bp1abcdef01": TargetState(
            "r-bp1abcdef01", 2, "failed", code="UpgradeFailed", message="ended Error"
        ),
        "r-bp1abcdef02": TargetState("r-bp1abcdef02", 2, "halted"),
        "r-bp1abcdef03": TargetState("r-bp1abcdef03", 2, "halted"),
    }

    status = summarize(spec, meta, states, now=2000.0)
    text = render_status(status)

    assert status["ended"] and status["counts"] == {"completed": 1, "failed": 1, "halted": 2}
    assert status["upgrade_seconds"] == {"count": 1, "mean": 120.0, "max": 120.0}
    assert "HALTED - error budget spent" in text
    # Halted targets never ran: they are not done.
    assert (status["done"], status["halted"]) == (2, 2)
    assert "2/4 done, 2 halted" in text and "wave 2 of 2" in text
    failed_row = next(line for line in text.splitlines() if line.startswith("r-bp1abcdef01"))
    assert failed_row.split()[1:4] == ["2", "failed", "?"] and failed_row.endswith(
        "UpgradeFailed - ended Error"
    )
    assert summary_message(status)["event"] == "rollout.halted"
