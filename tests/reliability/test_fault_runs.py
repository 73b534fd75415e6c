"""Upgrades under injected faults, through both entry points: no upgrade is ever made twice and
no outcome is ever lost (the audit in ``faultrun``). ``make chaos`` runs the same at 1,000 upgrades."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.faultrun import Report, Run, Scenario, Via

# Sized for make test (a few seconds each): the rates, a smaller latency.
STORM = {"throttle_rate": 0.3, "error_rate": 0.1, "drop_rate": 0.02, "lost_reply_rate": 0.01, "latency_ms": 2}


def run(scenario: Scenario, tmp_path: Path) -> Report:
    report = Run(scenario, tmp_path).execute()
    print(Report.HEADER, report.row(), sep="\n")
    assert report.duplicates == 0, report.duplicated_targets
    assert report.lost == 0, report.lost_targets
    assert report.gave_up == 0
    return report


@pytest.mark.parametrize("via", ["webhook", "rollout"])
def test_a_throttling_storm_with_5xx_drops_and_lost_replies(via: Via, tmp_path: Path) -> None:
    report = run(Scenario("storm", via, 30, **STORM), tmp_path)  # type: ignore[arg-type]
    assert report.terminal["submitted"] >= 20  # the rest: failed with the API's reason, or in progress
    assert report.duplicate_notifications == 0
    assert report.interim_unnotified == 0


@pytest.mark.parametrize("via", ["webhook", "rollout"])
def test_mns_failing_half_the_time_and_the_store_restarting(via: Via, tmp_path: Path) -> None:
    # A 1.5 s function timeout: the lock of an invocation the restart killed expires that soon.
    scenario = Scenario(
        "outages", via, 30, mns_outage=True, store_restart=True, latency_ms=2, function_timeout=1.5
    )
    report = run(scenario, tmp_path)
    # An upgrade whose outcome could not be recorded is found upgrading on the retry: in_progress.
    assert set(report.terminal) <= {"submitted", "in_progress (already_upgrading)"}
