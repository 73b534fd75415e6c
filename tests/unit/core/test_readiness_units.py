"""DBUPGRADE_BACKUP parsing, the readiness verdict (fails closed) and the rollback text, on plain data."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from dbupgrade.cloudapi import CloudError
from dbupgrade.config import BackupPolicy, Config
from dbupgrade.engines import MONGODB, REDIS
from dbupgrade.errors import ConfigError
from dbupgrade.readiness import assess
from dbupgrade.runbook import ROLLBACK_MAX, rollback_text

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
REDIS_ATTRS = {
    "InstanceId": "r-bp1unit0000001",
    "InstanceStatus": "Normal",
    "EngineVersion": "4.0",
    "NodeType": "double",
    "InstanceClass": "redis.master.small.default",
}


@pytest.mark.parametrize(
    ("text", "mode", "hours"),
    [("", "fresh", 24.0), ("fresh:6", "fresh", 6.0), ("required", "required", 24.0), ("OFF", "off", 24.0)],
)
def test_backup_policy_values(text: str, mode: str, hours: float) -> None:
    policy = Config.from_env({"DBUPGRADE_BACKUP": text}).backup
    assert (policy.mode, policy.max_age_hours) == (mode, hours)


@pytest.mark.parametrize("text", ["fresh", "fresh:0", "fresh:-3", "fresh:abc", "always", "on"])
def test_a_bad_backup_policy_names_the_variable(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env({"DBUPGRADE_BACKUP": text})
    assert "DBUPGRADE_BACKUP" in str(raised.value)


def answering(bodies: dict[str, Any]):  # type: ignore[no-untyped-def]
    def call(action: str, params: Any) -> dict[str, Any]:
        answer = bodies[action]
        if isinstance(answer, CloudError):
            raise answer
        return answer

    return call


def test_a_read_that_fails_blocks_the_verdict_never_go() -> None:
    call = answering(
        {
            "DescribeEngineVersion": {"EnableUpgradeMajorVersion": True},
            "DescribeActiveOperationTasks": {"Items": []},
            "DescribeHistoryTasks": {"Items": []},
            "DescribeBackups": CloudError("InternalError", "backend down", status=500),
        }
    )
    report = assess(
        REDIS,
        "r-bp1unit0000001",
        "5.0",
        call,
        region="cn-hangzhou",
        now=NOW,
        policy=BackupPolicy(),
        attributes=REDIS_ATTRS,
    )
    assert report.verdict == "blocked"
    [block] = report.blocking()
    assert (block.check, block.source) == ("backup", "DescribeBackups") and "fails closed" in block.message


def test_redis_4_0_warns_bloom_and_names_its_end_of_service() -> None:
    fresh = {
        "Backups": {
            "Backup": [{"BackupId": 9, "BackupStatus": "Success", "BackupEndTime": "2026-11-30T02:00:05Z"}]
        }
    }
    call = answering(
        {
            "DescribeEngineVersion": {"EnableUpgradeMajorVersion": True},
            "DescribeActiveOperationTasks": {"Items": []},
            "DescribeHistoryTasks": {"Items": []},
            "DescribeBackups": fresh,
        }
    )
    report = assess(
        REDIS,
        "r-bp1unit0000001",
        "5.0",
        call,
        region="cn-hangzhou",
        now=NOW,
        policy=BackupPolicy(),
        attributes=REDIS_ATTRS,
    )
    assert report.verdict == "warn" and report.fresh_backup_id == "9" and not report.needs_backup
    assert any(
        f.check == "caveat" and "bloom" in f.message.lower() for f in report.findings if f.grade == "warn"
    )
    assert any("2026-09-25" in f.message for f in report.findings if f.check == "end_of_service")


def test_a_booked_upgrade_blocks() -> None:
    call = answering(
        {
            "DescribeActiveOperationTasks": {
                "Items": [
                    {"InsName": "dds-bp1unit000001", "Status": 3, "TaskType": "rds_apsaradb_upgrade", "Id": 5}
                ]
            },
        }
    )
    report = assess(
        MONGODB,
        "dds-bp1unit000001",
        "5.0",
        call,
        region="cn-hangzhou",
        now=NOW,
        policy=BackupPolicy(),
        attributes={"DBInstanceStatus": "Running", "EngineVersion": "4.4"},
        checks=("operations",),
    )
    assert report.verdict == "blocked" and "booked" in report.summary()


def test_rollback_text_per_engine_is_bounded() -> None:
    mongo = rollback_text("mongodb", "4.4", "5.0", backup_id="42", submitted=True)
    assert (
        "NEW instance at 4.4" in mongo and "42" in mongo and "cannot be restored into the upgraded" in mongo
    )
    redis = rollback_text("redis", "6.0", "7.0", submitted=True, booked=True)
    assert redis.startswith("If it has not started: cancel its O&M event") and "cannot be reversed" in redis
    assert "Nothing to roll back" in rollback_text("redis", "6.0", "7.0", submitted=False)
    assert max(len(mongo), len(redis)) <= ROLLBACK_MAX
