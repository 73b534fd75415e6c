"""The backup gate and the readiness check on the submission path, against localcloud (its emulated
clock runs the backups) and a real Redis: no upgrade call before its backup finished, a fresh backup
submits at once, ``off`` never backs up, a failed backup halts its target with its reason, a read that
fails blocks the request (fails closed) and a failed upgrade carries its rollback text."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.functional.core.conftest import mongo_entry, redis_entry
from tests.functional.tracker.conftest import TrackBench

BACKUP_SECONDS = 900  # a backup job runs 15 emulated minutes


def seed() -> dict[str, Any]:
    recent = (datetime.now(timezone.utc) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "redis": [
            redis_entry("r-bp1gatenone00001", "6.0", "cloud_native", AutomaticBackup=None),
            redis_entry(
                "r-bp1gatefresh0001",
                "6.0",
                "cloud_native",
                AutomaticBackup=None,
                Backups=[{"BackupEndTime": recent, "BackupId": 777001}],
            ),
            redis_entry("r-bp1gatefail00001", "6.0", "cloud_native", AutomaticBackup=None, FailBackup=True),
            redis_entry("r-bp1gateupfail001", "6.0", "cloud_native", FailUpgrade=True),
        ],
        "mongodb": [mongo_entry("dds-bp1gatenone0001", "4.4", AutomaticBackup=None)],
        "upgrade_seconds": 600,
        "backup_seconds": BACKUP_SECONDS,
    }


@pytest.fixture
def gate(make_track: Callable[..., TrackBench]) -> TrackBench:
    return make_track(seed())


@pytest.mark.parametrize(
    ("instance_id", "target"), [("r-bp1gatenone00001", "7.0"), ("dds-bp1gatenone0001", "5.0")]
)
def test_no_upgrade_call_before_its_backup_finished_then_exactly_one(
    gate: TrackBench, instance_id: str, target: str
) -> None:
    waiting = gate.upgrade(instance_id, target, ticket_id="CHG-7")

    assert waiting.status == "awaiting_backup", waiting.message
    assert waiting.backup_id and "waiting for backup" in str(waiting.message)
    assert len(gate.calls("CreateBackup", instance_id=instance_id)) == 1
    assert gate.upgrade_calls(instance_id) == []

    again = gate.upgrade(instance_id, target)  # another request meanwhile: the claim is held
    assert again.status == "in_progress" and gate.upgrade_calls(instance_id) == []

    gate.advance(BACKUP_SECONDS / 3)
    gate.tick()  # the backup is still running: nothing submitted
    assert gate.upgrade_calls(instance_id) == []

    gate.advance(BACKUP_SECONDS)
    summary = gate.tick()
    gate.tick()  # a second tick follows the submission, never submits again

    assert [t["status"] for t in summary["transitions"]] == ["submitted"]
    assert len(gate.upgrade_calls(instance_id)) == 1
    latest = gate.upgrader().status(instance_id)
    assert latest is not None and latest.status == "submitted" and latest.backup_id
    assert latest.ticket_id == "CHG-7"
    notes = [
        n for n in gate.published() if n["instance_id"] == instance_id and n["event"] != "upgrade.in_progress"
    ]
    assert [n["event"] for n in notes] == ["upgrade.awaiting_backup", "upgrade.submitted"]
    assert notes[0]["backup_id"] == waiting.backup_id and notes[1]["backup_id"] == latest.backup_id

    gate.advance(700)
    gate.tick()
    assert gate.upgrader().status(instance_id).status == "completed"  # type: ignore[union-attr]


def test_a_fresh_seeded_backup_submits_at_once_and_names_it(gate: TrackBench) -> None:
    outcome = gate.upgrade("r-bp1gatefresh0001", "7.0")

    assert outcome.status == "submitted", outcome.message
    assert outcome.backup_id == "777001"
    assert gate.calls("CreateBackup", instance_id="r-bp1gatefresh0001") == []
    assert len(gate.upgrade_calls("r-bp1gatefresh0001")) == 1


def test_required_takes_a_new_backup_even_with_a_fresh_one(gate: TrackBench) -> None:
    gate.env["DBUPGRADE_BACKUP"] = "required"

    outcome = gate.upgrade("r-bp1gatefresh0001", "7.0")

    assert outcome.status == "awaiting_backup"
    assert len(gate.calls("CreateBackup", instance_id="r-bp1gatefresh0001")) == 1
    assert gate.upgrade_calls("r-bp1gatefresh0001") == []


def test_off_never_backs_up_or_reads_backups(gate: TrackBench) -> None:
    gate.env["DBUPGRADE_BACKUP"] = "off"

    outcome = gate.upgrade("r-bp1gatenone00001", "7.0")

    assert outcome.status == "submitted" and outcome.backup_id is None
    assert gate.calls("CreateBackup") == [] and gate.calls("DescribeBackups") == []


def test_a_failing_backup_halts_its_target_with_its_reason(gate: TrackBench) -> None:
    waiting = gate.upgrade("r-bp1gatefail00001", "7.0")
    assert waiting.status == "awaiting_backup"

    gate.advance(BACKUP_SECONDS + 60)
    gate.tick()

    latest = gate.upgrader().status("r-bp1gatefail00001")
    assert latest is not None
    assert (latest.status, latest.reason) == ("failed", "backup_failed")
    assert "Failed" in str(latest.message)
    assert gate.upgrade_calls("r-bp1gatefail00001") == []
    assert "Nothing to roll back" in str(latest.rollback)
    assert gate.upgrader().store.claim_of("r-bp1gatefail00001") is None  # free for a new try
    assert gate.events("r-bp1gatefail00001") == ["upgrade.awaiting_backup", "upgrade.failed"]


def test_a_refused_backup_fails_the_request_with_the_services_code(gate: TrackBench) -> None:
    gate.faults([{"product": "r-kvstore", "action": "CreateBackup", "error_rate": 1.0}])

    outcome = gate.upgrade("r-bp1gatenone00001", "7.0")

    assert (outcome.status, outcome.reason) == ("failed", "backup_failed")
    assert outcome.code and gate.upgrade_calls("r-bp1gatenone00001") == []


def test_a_read_that_cannot_be_made_blocks_and_nothing_is_submitted(gate: TrackBench) -> None:
    gate.faults([{"product": "r-kvstore", "action": "DescribeBackups", "error_rate": 1.0}])

    outcome = gate.upgrade("r-bp1gatefresh0001", "7.0")

    # Fails closed, but a read that could not be made is no verdict on the instance: the request is
    # told to come back (transient), never rejected for good.
    assert (outcome.status, outcome.reason, outcome.final) == ("failed", "retries_exhausted", False)
    assert outcome.readiness is not None and outcome.readiness["verdict"] == "blocked"
    [unread] = [f for f in outcome.readiness["findings"] if f["grade"] == "block"]
    assert unread["source"] == "DescribeBackups" and "fails closed" in unread["message"]
    assert gate.upgrade_calls("r-bp1gatefresh0001") == []
    assert gate.calls("CreateBackup") == []
    [note] = [n for n in gate.published() if n["instance_id"] == "r-bp1gatefresh0001"]
    assert note["event"] == "upgrade.failed"


def test_a_read_refused_by_ram_is_a_configuration_failure(gate: TrackBench) -> None:
    gate.faults(
        [
            {
                "product": "r-kvstore",
                "action": "DescribeBackups",
                "error_rate": 1.0,
                "error_code": "Forbidden.RAM",
                "error_status": 403,
            }
        ]
    )

    outcome = gate.upgrade("r-bp1gatefresh0001", "7.0")

    assert (outcome.status, outcome.reason, outcome.code) == ("failed", "configuration", "Forbidden.RAM")
    assert gate.upgrade_calls("r-bp1gatefresh0001") == []


def test_a_failed_upgrade_carries_its_rollback_text(gate: TrackBench) -> None:
    submitted = gate.upgrade("r-bp1gateupfail001", "7.0")
    assert submitted.status == "submitted" and submitted.backup_id  # the daily automatic backup

    gate.advance(700)
    gate.tick()

    latest = gate.upgrader().status("r-bp1gateupfail001")
    assert latest is not None and latest.status == "failed"
    assert latest.rollback is not None and "cannot be reversed" in latest.rollback
    assert submitted.backup_id in latest.rollback and "6.0" in latest.rollback
    [note] = [n for n in gate.published() if n["event"] == "upgrade.failed"]
    assert note["rollback"] == latest.rollback and len(note["rollback"]) <= 600
