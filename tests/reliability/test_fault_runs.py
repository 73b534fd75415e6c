"""Upgrades under injected faults, through both entry points and in the scenarios of issue #12: no
upgrade is ever made twice, every request ends in a recorded outcome of its own, and every recorded
outcome is on the notification topic (the audit in ``faultrun``). ``make chaos`` runs the same at
1,000 requests per scenario with the shipped retry policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.faultrun import OVERLAPPING_ROLLOUTS, Report, Run, Scenario, Via

# Sized for make test (a few seconds each): the rates, a smaller latency.
STORM = {"throttle_rate": 0.3, "error_rate": 0.1, "drop_rate": 0.02, "lost_reply_rate": 0.01, "latency_ms": 2}


def run(scenario: Scenario, tmp_path: Path) -> Report:
    report = Run(scenario, tmp_path).execute()
    print(Report.HEADER, report.row(), *report.notes, sep="\n")
    assert report.duplicates == 0, report.duplicated_targets
    assert report.second_calls == 0, report.second_call_targets
    assert report.lost == 0, report.lost_targets
    assert report.unnotified == 0, report.unnotified_targets
    assert report.gave_up == 0
    assert not report.failures
    assert report.ok
    return report


@pytest.mark.parametrize("via", ["webhook", "rollout"])
def test_a_throttling_storm_with_5xx_drops_and_lost_replies(via: Via, tmp_path: Path) -> None:
    report = run(Scenario("storm", via, 30, **STORM), tmp_path)  # type: ignore[arg-type]
    assert report.terminal["submitted"] >= 20  # the rest: failed with the API's reason, or in progress
    assert report.duplicate_notifications == 0


@pytest.mark.parametrize("via", ["webhook", "rollout"])
def test_mns_failing_half_the_time_and_the_store_restarting(via: Via, tmp_path: Path) -> None:
    # A 1.5 s function timeout: the lock of an invocation the restart killed expires that soon.
    scenario = Scenario(
        "outages", via, 30, mns_outage=True, store_restart=True, latency_ms=2, function_timeout=1.5
    )
    report = run(scenario, tmp_path)
    # An upgrade whose outcome could not be recorded is found upgrading on the retry: in_progress.
    assert set(report.terminal) <= {"submitted", "in_progress (already_upgrading)"}


def test_concurrent_tickets_for_one_instance_make_one_upgrade(tmp_path: Path) -> None:
    report = run(Scenario("tickets", "webhook", 24, kind="concurrent_tickets", **STORM), tmp_path)  # type: ignore[arg-type]
    # Six instances, four tickets each: every ticket is answered for itself, pointing at the one upgrade.
    assert report.requests == 24
    assert sum(n for label, n in report.terminal.items() if label.startswith("in_progress")) >= 12


def test_overlapping_rollouts_on_one_manifest_start_once_and_upgrade_once(tmp_path: Path) -> None:
    report = run(Scenario("rollouts", "rollout", 20, kind="overlapping_rollouts", **STORM), tmp_path)  # type: ignore[arg-type]
    assert f"1 started, {OVERLAPPING_ROLLOUTS - 1} refused" in report.notes[0]
    assert report.requests == 20


def test_a_booked_upgrade_then_an_immediate_request_make_one_upgrade(tmp_path: Path) -> None:
    report = run(Scenario("booked", "webhook", 20, kind="booked_then_immediate", **STORM), tmp_path)  # type: ignore[arg-type]
    # The immediate request finds the booking (the instance still shows its old version): no call.
    assert report.terminal["in_progress (upgrade_in_flight)"] >= 8


def test_a_refusal_then_its_fix_under_the_same_ticket_is_submitted(tmp_path: Path) -> None:
    report = run(Scenario("fix", "webhook", 20, kind="refusal_then_fix", latency_ms=2), tmp_path)
    assert report.terminal == {"rejected (not_found)": 10, "submitted": 10}


def test_the_store_lost_mid_drain_notifies_everything_with_at_most_one_repeat_per_loss(
    tmp_path: Path,
) -> None:
    report = run(Scenario("drain", "webhook", 24, kind="store_lost_mid_drain"), tmp_path)
    assert report.parked_in_outbox == 0  # the scenario's own drains delivered everything
    assert report.allowed_duplicate_notifications == 2
    assert report.duplicate_notifications <= 2
