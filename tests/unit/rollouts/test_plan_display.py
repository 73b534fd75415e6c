"""What a long plan prints on stderr before and while it reads (``dbupgrade.cli.rollout.PlanDisplay``)."""

from __future__ import annotations

import pytest
from dbupgrade.cli import rollout as cli_rollout
from dbupgrade.rollouts.plan import Estimate

FLEET = Estimate(10_000, 1000.0, "DescribeBackups at 10/s in cn-hangzhou")


def test_a_plan_the_rate_limits_make_long_says_how_long_and_which_read_sets_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with cli_rollout.PlanDisplay() as display:
        display.started(FLEET, 10_000)

    err = capsys.readouterr().err
    assert "reading 10,000 targets one by one: at least ~16m40s" in err
    assert "DescribeBackups at 10/s in cn-hangzhou" in err and "DBUPGRADE_RATE_LIMITS" in err


def test_a_quick_plan_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with cli_rollout.PlanDisplay() as display:
        display.started(Estimate(20, 2.0, "DescribeBackups at 10/s in cn-hangzhou"), 20)
        for done in range(1, 21):
            display.checked(done, 20)

    assert capsys.readouterr().err == ""


def test_piped_progress_is_a_line_with_what_is_left_and_none_once_done(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_rollout, "PROGRESS_LINE_SECONDS", 0.0)  # a line at every target
    with cli_rollout.PlanDisplay() as display:
        display.started(Estimate(4, 0.4, None), 4)
        for done in range(1, 5):
            display.checked(done, 4)

    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [f"checked {n} of 4 targets" for n in (1, 2, 3)]
    assert all(line.endswith(" left") for line in lines)
