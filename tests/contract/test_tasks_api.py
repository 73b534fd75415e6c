"""Contract: backups, history tasks and booked upgrades (O&M events) through the official clients.

R-kvstore (alibabacloud-r-kvstore20150101) and Dds (alibabacloud-dds20151201) against localcloud,
every rule driven by the emulated clock: a backup job runs, keeps the instance busy and then lists
its set (or a failed one); a daily automatic backup is there without asking; an accepted upgrade's
history task moves from Running to Succeed (or Failed) with its progress; an upgrade booked for the
maintenance window is an O&M event that can be moved (not past its Deadline) or cancelled, after
which no switchover happens.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from alibabacloud_dds20151201 import models as dm
from alibabacloud_dds20151201.client import Client as DdsClient
from alibabacloud_r_kvstore20150101 import models as km
from alibabacloud_r_kvstore20150101.client import Client as KvstoreClient

from tests.contract.helpers import advance, hhmm, openapi_config, refused, set_faults


def window() -> dict[str, str]:
    """A maintenance window opening two hours from now: computed when the seed is loaded, not at import
    (a full run imports this module minutes before a test runs, and the window would open that much
    sooner in the test's emulated time)."""
    return {"MaintainStartTime": hhmm(7200), "MaintainEndTime": hhmm(10800)}


def redis(iid: str, version: str = "6.0", **extra: Any) -> dict[str, Any]:
    return {"InstanceId": iid, "RegionId": "cn-hangzhou", "EngineVersion": version, "NodeType": "MASTER_SLAVE",
            "InstanceStatus": "Normal", **window(), **extra}  # fmt: skip


def mongo(iid: str, version: str = "5.0", **extra: Any) -> dict[str, Any]:
    return {"DBInstanceId": iid, "RegionId": "cn-hangzhou", "EngineVersion": version, "DBInstanceStatus": "Running",
            "DBInstanceType": "replicate", **window(), **extra}  # fmt: skip


def seed() -> dict[str, Any]:
    return {
        "redis": [
            redis("r-bp1tasks00000001"),
            redis("r-bp1failbackup001", FailBackup=True),
            redis("r-bp1dailybackup01", AutomaticBackup="00:30Z"),
            redis("r-bp1failupgrade01", FailUpgrade=True),
        ],
        "mongodb": [
            mongo("dds-bp1tasks0000001"),
            mongo("dds-bp1failbackup01", FailBackup=True),
            mongo("dds-bp1dailybackup1", AutomaticBackup="00:30Z"),
            mongo("dds-bp1seededbackup", Backups=[{"BackupEndTime": "2024-03-01T02:00:00Z"}]),
        ],
        "upgrade_seconds": 100,
        "backup_seconds": 60,
    }


@pytest.fixture
def lc(make_localcloud):
    return make_localcloud(seed())


@pytest.fixture
def kvstore(lc) -> KvstoreClient:
    return KvstoreClient(openapi_config(lc))


@pytest.fixture
def dds(lc) -> DdsClient:
    return DdsClient(openapi_config(lc))


def now_of(lc) -> datetime:
    return datetime.fromisoformat(requests.get(f"{lc.url}/_localcloud/clock", timeout=5).json()["now"])


def stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


# --- product adapters: the same question asked in each API's own words ---------------------------


def kv_backups(client: KvstoreClient, iid: str, lc) -> list[km.DescribeBackupsResponseBodyBackupsBackup]:
    now = now_of(lc)
    request = km.DescribeBackupsRequest(
        instance_id=iid,
        start_time=(now - timedelta(days=8)).strftime("%Y-%m-%dT%H:%MZ"),
        end_time=(now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%MZ"),
    )
    return client.describe_backups(request).body.backups.backup


def dds_backups(client: DdsClient, iid: str) -> list[dm.DescribeBackupsResponseBodyBackupsBackup]:
    return client.describe_backups(dm.DescribeBackupsRequest(dbinstance_id=iid)).body.backups.backup


def history(client: Any, models: Any, lc, iid: str) -> list[Any]:
    now = now_of(lc)
    request = models.DescribeHistoryTasksRequest(
        from_start_time=stamp(now - timedelta(days=1)),
        to_start_time=stamp(now + timedelta(days=2)),
        instance_id=iid,
    )
    return client.describe_history_tasks(request).body.items


def events(client: Any, models: Any, iid: str) -> list[Any]:
    request = models.DescribeActiveOperationTasksRequest(ins_name=iid, region="all")
    return client.describe_active_operation_tasks(request).body.items


def kv_upgrade(client: KvstoreClient, iid: str, target: str = "7.0", effective: str | None = None) -> None:
    request = km.ModifyInstanceMajorVersionRequest(
        instance_id=iid, major_version=target, effective_time=effective
    )
    client.modify_instance_major_version(request)


def dds_upgrade(client: DdsClient, iid: str, target: str = "6.0", switch_mode: int | None = None) -> None:
    request = dm.UpgradeDBInstanceEngineVersionRequest(
        dbinstance_id=iid, engine_version=target, switch_mode=switch_mode
    )
    client.upgrade_dbinstance_engine_version(request)


def kv_version(client: KvstoreClient, iid: str) -> str:
    request = km.DescribeInstanceAttributeRequest(instance_id=iid)
    return client.describe_instance_attribute(request).body.instances.dbinstance_attribute[0].engine_version


def dds_version(client: DdsClient, iid: str) -> str:
    request = dm.DescribeDBInstanceAttributeRequest(dbinstance_id=iid)
    return client.describe_dbinstance_attribute(request).body.dbinstances.dbinstance[0].engine_version


# --- backups -----------------------------------------------------------------------------------------


def test_an_r_kvstore_backup_runs_with_progress_then_lists_its_set(lc, kvstore):
    iid = "r-bp1tasks00000001"
    assert kv_backups(kvstore, iid, lc) == []
    job_id = kvstore.create_backup(km.CreateBackupRequest(instance_id=iid)).body.backup_job_id
    tasks = kvstore.describe_backup_tasks(km.DescribeBackupTasksRequest(instance_id=iid)).body.backup_jobs
    assert [(str(t.backup_job_id), t.job_mode, t.task_action) for t in tasks] == [
        (job_id, "Manual", "TempBackupTask")
    ]
    assert tasks[0].backup_progress_status != "Finished"
    assert kv_backups(kvstore, iid, lc) == []  # nothing listed while it runs
    advance(lc, 30)
    tasks = kvstore.describe_backup_tasks(km.DescribeBackupTasksRequest(instance_id=iid)).body.backup_jobs
    assert 40 <= int(tasks[0].process) <= 60
    advance(lc, 31)
    assert (
        kvstore.describe_backup_tasks(km.DescribeBackupTasksRequest(instance_id=iid)).body.backup_jobs == []
    )
    named = km.DescribeBackupTasksRequest(instance_id=iid, backup_job_id=job_id)
    assert [t.backup_progress_status for t in kvstore.describe_backup_tasks(named).body.backup_jobs] == [
        "Finished"
    ]
    [backup] = kv_backups(kvstore, iid, lc)
    assert (str(backup.backup_job_id), backup.backup_status, backup.backup_mode) == (
        job_id,
        "Success",
        "Manual",
    )
    assert abs((now_of(lc) - parse(backup.backup_end_time)).total_seconds()) < 5


def test_a_dds_backup_runs_with_progress_then_lists_its_set(lc, dds):
    iid = "dds-bp1tasks0000001"
    backup_id = dds.create_backup(dm.CreateBackupRequest(dbinstance_id=iid)).body.backup_id
    request = dm.DescribeBackupTasksRequest(dbinstance_id=iid, backup_job_id=backup_id)
    [job] = dds.describe_backup_tasks(request).body.backup_jobs
    assert (job.backup_set_status, job.progress, job.job_mode) == ("Backuping", "0%", "Manual")
    assert dds_backups(dds, iid) == []
    advance(lc, 61)
    [job] = dds.describe_backup_tasks(request).body.backup_jobs
    assert (job.backup_set_status, job.progress) == ("Finished", "100%")
    [backup] = dds_backups(dds, iid)
    assert (backup.backup_id, backup.backup_status, backup.is_avail) == (backup_id, "Success", True)


def test_an_instance_is_busy_while_its_backup_runs(lc, kvstore, dds):
    kvstore.create_backup(km.CreateBackupRequest(instance_id="r-bp1tasks00000001"))
    dds.create_backup(dm.CreateBackupRequest(dbinstance_id="dds-bp1tasks0000001"))
    assert refused(kv_upgrade, kvstore, "r-bp1tasks00000001")[:2] == ("Task.Conflict", 403)
    assert refused(dds_upgrade, dds, "dds-bp1tasks0000001")[:2] == ("OperationDenied.DBInstanceStatus", 403)
    # a second backup while one runs: Dds's documented code; R-kvstore's busy code (assumption)
    again = dm.CreateBackupRequest(dbinstance_id="dds-bp1tasks0000001")
    assert refused(dds.create_backup, again)[:2] == ("OperationDenied.BackupJobExists", 403)
    assert refused(kvstore.create_backup, km.CreateBackupRequest(instance_id="r-bp1tasks00000001"))[:2] == (
        "Task.Conflict",
        403,
    )
    advance(lc, 61)
    kv_upgrade(kvstore, "r-bp1tasks00000001")
    dds_upgrade(dds, "dds-bp1tasks0000001")
    # and a backup while the upgrade runs is refused with the busy code
    request = dm.CreateBackupRequest(dbinstance_id="dds-bp1tasks0000001")
    assert refused(dds.create_backup, request)[:2] == ("OperationDenied.DBInstanceStatus", 403)


def test_a_failing_backup_ends_failed_and_no_usable_set_is_listed(lc, kvstore, dds):
    kvstore.create_backup(km.CreateBackupRequest(instance_id="r-bp1failbackup001"))
    dds.create_backup(dm.CreateBackupRequest(dbinstance_id="dds-bp1failbackup01"))
    advance(lc, 61)
    kv = kv_backups(kvstore, "r-bp1failbackup001", lc)
    assert [b.backup_status for b in kv] == ["Failed"]
    mongo_sets = dds_backups(dds, "dds-bp1failbackup01")
    assert [(b.backup_status, b.is_avail) for b in mongo_sets] == [("Failed", False)]
    kv_upgrade(kvstore, "r-bp1failbackup001")  # the failed job no longer holds the instance


def test_a_daily_automatic_backup_is_fresh_without_asking(lc, kvstore, dds):
    kv = kv_backups(kvstore, "r-bp1dailybackup01", lc)
    newest = parse(kv[0].backup_end_time)
    assert kv[0].backup_mode == "Automated" and kv[0].backup_status == "Success"
    assert timedelta(0) <= now_of(lc) - newest < timedelta(days=1)
    mongo_sets = dds_backups(dds, "dds-bp1dailybackup1")
    assert mongo_sets[0].backup_mode == "Automated"
    before = len(mongo_sets)
    advance(lc, 86400)  # a day later there is one more
    assert len(dds_backups(dds, "dds-bp1dailybackup1")) in (before, before + 1)
    assert parse(dds_backups(dds, "dds-bp1dailybackup1")[0].backup_end_time) > newest


def test_a_seeded_backup_is_listed_with_its_end_time(dds):
    [backup] = dds_backups(dds, "dds-bp1seededbackup")
    assert (backup.backup_end_time, backup.backup_status) == ("2024-03-01T02:00:00Z", "Success")


def test_describe_backups_refuses_an_end_before_its_start(kvstore):
    request = km.DescribeBackupsRequest(
        instance_id="r-bp1tasks00000001", start_time="2024-03-02T00:00Z", end_time="2024-03-01T00:00Z"
    )
    assert refused(kvstore.describe_backups, request)[:2] == ("InvalidStartTimeAndEndTime.Malformed", 400)
    request = km.DescribeBackupsRequest(
        instance_id="r-bp1tasks00000001", start_time="yesterday", end_time="now"
    )
    assert refused(kvstore.describe_backups, request)[:2] == ("InvalidStartTime.Malformed", 400)


def test_an_injected_fault_fails_the_backup_call_and_starts_no_job(lc, dds):
    # OperationDenied.NoDatabase: a documented CreateBackup error (metadata, 403)
    rule = {"product": "dds", "action": "CreateBackup", "error_rate": 1.0,
            "error_code": "OperationDenied.NoDatabase", "error_status": 403}  # fmt: skip
    set_faults(lc, rules=[rule])
    request = dm.CreateBackupRequest(dbinstance_id="dds-bp1tasks0000001")
    assert refused(dds.create_backup, request)[:2] == ("OperationDenied.NoDatabase", 403)
    set_faults(lc, rules=[])
    dds_upgrade(dds, "dds-bp1tasks0000001")  # not busy: no job started


# --- history tasks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("product", ["r-kvstore", "dds"])
def test_an_upgrade_history_task_progresses_with_the_clock(lc, kvstore, dds, product):
    if product == "r-kvstore":
        client, models, iid = kvstore, km, "r-bp1tasks00000001"
        kv_upgrade(kvstore, iid)
    else:
        client, models, iid = dds, dm, "dds-bp1tasks0000001"
        dds_upgrade(dds, iid)
    [task] = history(client, models, lc, iid)
    assert (task.status, task.current_step_name, task.instance_id) == ("Running", "exec_task", iid)
    assert task.progress < 10 and 90 <= task.remain_time <= 100
    advance(lc, 50)
    [task] = history(client, models, lc, iid)
    assert 45 <= task.progress <= 60 and 40 <= task.remain_time <= 55
    advance(lc, 51)
    [task] = history(client, models, lc, iid)
    assert (task.status, task.progress, task.remain_time) == ("Succeed", 100.0, 0)
    assert task.end_time


def test_a_failing_upgrade_history_task_ends_failed(lc, kvstore):
    kv_upgrade(kvstore, "r-bp1failupgrade01")
    advance(lc, 101)
    [task] = history(kvstore, km, lc, "r-bp1failupgrade01")
    assert task.status == "Failed"
    assert kv_version(kvstore, "r-bp1failupgrade01") == "6.0"


def test_history_tasks_refuse_an_end_before_the_start(kvstore):
    request = km.DescribeHistoryTasksRequest(
        from_start_time="2024-03-02T00:00:00Z", to_start_time="2024-03-01T00:00:00Z"
    )
    assert refused(kvstore.describe_history_tasks, request)[:2] == ("Param.Invalid.TimeEndBeforeStart", 400)


# --- booked upgrades (O&M events) --------------------------------------------------------------------


def book(kvstore: KvstoreClient, dds: DdsClient, product: str) -> tuple[Any, Any, str]:
    if product == "r-kvstore":
        kv_upgrade(kvstore, "r-bp1tasks00000001", effective="MaintainTime")
        return kvstore, km, "r-bp1tasks00000001"
    dds_upgrade(dds, "dds-bp1tasks0000001", switch_mode=1)
    return dds, dm, "dds-bp1tasks0000001"


def version_of(kvstore: KvstoreClient, dds: DdsClient, product: str) -> str:
    if product == "r-kvstore":
        return kv_version(kvstore, "r-bp1tasks00000001")
    return dds_version(dds, "dds-bp1tasks0000001")


PRODUCTS = ["r-kvstore", "dds"]
TARGET = {"r-kvstore": "7.0", "dds": "6.0"}  # what book() asks for


@pytest.mark.parametrize("product", PRODUCTS)
def test_a_booked_upgrade_is_a_pending_event_switching_when_the_window_opens(lc, kvstore, dds, product):
    client, models, iid = book(kvstore, dds, product)
    [event] = events(client, models, iid)
    opening = now_of(lc).replace(second=0, microsecond=0) + timedelta(hours=2)
    assert (event.status, event.allow_cancel, event.allow_change, event.task_type) == (
        3, "1", "1", "rds_apsaradb_upgrade",
    )  # fmt: skip
    assert abs((parse(event.switch_time) - opening).total_seconds()) <= 60
    assert parse(event.deadline) > parse(event.switch_time)
    [task] = history(client, models, lc, iid)
    assert (task.status, task.current_step_name, task.progress) == ("Waiting", "", 0.0)
    advance(lc, 7200 + 101)
    [event] = events(client, models, iid)
    assert (event.status, event.allow_cancel) == (5, "0")
    assert version_of(kvstore, dds, product) == TARGET[product]


@pytest.mark.parametrize("product", PRODUCTS)
def test_a_booked_upgrade_moves_earlier_and_runs_then(lc, kvstore, dds, product):
    client, models, iid = book(kvstore, dds, product)
    [event] = events(client, models, iid)
    earlier = stamp(now_of(lc) + timedelta(minutes=10))
    body = client.modify_active_operation_tasks(
        models.ModifyActiveOperationTasksRequest(ids=str(event.id), switch_time=earlier)
    ).body
    assert body.ids == str(event.id)
    [event] = events(client, models, iid)
    assert event.switch_time == earlier
    advance(lc, 600 + 101)  # well before the window opens
    assert version_of(kvstore, dds, product) == TARGET[product]


@pytest.mark.parametrize("product", PRODUCTS)
def test_a_booked_upgrade_cannot_move_past_its_deadline_or_into_the_past(lc, kvstore, dds, product):
    client, models, iid = book(kvstore, dds, product)
    [event] = events(client, models, iid)
    late = stamp(parse(event.deadline) + timedelta(hours=1))
    request = models.ModifyActiveOperationTasksRequest(ids=str(event.id), switch_time=late)
    assert refused(client.modify_active_operation_tasks, request)[:2] == ("SwitchTimeAfterDeadline", 400)
    past = stamp(now_of(lc) - timedelta(hours=1))
    request = models.ModifyActiveOperationTasksRequest(ids=str(event.id), switch_time=past)
    assert refused(client.modify_active_operation_tasks, request)[:2] == ("StartTimeBeforeNow", 400)
    [unchanged] = events(client, models, iid)
    assert unchanged.switch_time == event.switch_time


@pytest.mark.parametrize("product", PRODUCTS)
def test_a_cancelled_booking_never_switches_and_frees_the_instance(lc, kvstore, dds, product):
    client, models, iid = book(kvstore, dds, product)
    before = version_of(kvstore, dds, product)
    [event] = events(client, models, iid)
    client.cancel_active_operation_tasks(models.CancelActiveOperationTasksRequest(ids=str(event.id)))
    advance(lc, 7200 + 200)  # the window has opened and the upgrade time has passed
    assert version_of(kvstore, dds, product) == before
    [event] = events(client, models, iid)
    assert (event.status, event.allow_cancel) == (7, "0")
    [task] = history(client, models, lc, iid)
    assert task.status == "Canceled"
    again = models.CancelActiveOperationTasksRequest(ids=str(event.id))
    assert refused(client.cancel_active_operation_tasks, again)[:2] == ("IncorrectTaskStatus", 403)
    if product == "r-kvstore":  # no longer busy: an upgrade now is accepted
        kv_upgrade(kvstore, iid)
    else:
        dds_upgrade(dds, iid)


def test_a_running_upgrade_cannot_be_cancelled(lc, kvstore, dds):
    client, models, iid = book(kvstore, dds, "r-kvstore")
    [event] = events(client, models, iid)
    # 10 s after the event's own switch time: the 100 s upgrade runs (the window's HH:MM start is up
    # to a minute before "two hours from now", so a fixed 7,200 s could land anywhere in the run)
    advance(lc, (parse(event.switch_time) - now_of(lc)).total_seconds() + 10)
    request = models.CancelActiveOperationTasksRequest(ids=str(event.id))
    assert refused(client.cancel_active_operation_tasks, request)[:2] == ("IncorrectTaskStatus", 403)
    [event] = events(client, models, iid)
    assert event.status == 4
