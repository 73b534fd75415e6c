"""What R-kvstore and Dds answer alike about backups, tasks and O&M events, from params to a body.

Seven actions on top of the four instance actions (metadata ``research/api-meta``, both products):

- ``CreateBackup`` starts a backup job (lifecycle.py ``BackupJob``): the instance is busy until it
  ends, ``BackupSeconds`` of emulated time later; ``DescribeBackupTasks`` shows the running jobs (and
  one named by ``BackupJobId``, running or not) with their progress; ``DescribeBackups`` lists the
  finished sets (seeded, daily automatic, manual; a failed job's set with BackupStatus ``Failed``);
- ``DescribeHistoryTasks`` lists the accepted upgrades with Status, Progress, RemainTime and
  CurrentStepName as the emulated clock moves them;
- ``DescribeActiveOperationTasks`` lists the upgrades booked for the maintenance window as O&M events;
  ``ModifyActiveOperationTasks`` moves a pending one (not past its Deadline, not into the past);
  ``CancelActiveOperationTasks`` cancels a pending one before its start: no switchover happens.

A product's responses subclass ``TaskResponse`` and render the fields its API names differently
(the backup actions); the gateway then cuts every body to the metadata's fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

from localcloud.openapi.errors import (
    IncorrectTaskStatus,
    InvalidEndTime,
    InvalidParameter,
    InvalidStartTime,
    InvalidStartTimeAndEndTime,
    ParamInvalid,
    StartTimeBeforeNow,
    SwitchTimeAfterDeadline,
    TimeEndBeforeStart,
    require,
)
from localcloud.openapi.handler import CallContext
from localcloud.openapi.instance_responses import InstanceResponse
from localcloud.openapi.instances import InstanceBackend
from localcloud.openapi.lifecycle import (
    CANCELLED,
    EVENT_STATUS,
    HISTORY_STATUS,
    WAITING,
    BackupJob,
    BackupSet,
    Instance,
    UpgradeTask,
    iso,
    parse_time,
)

_Backend = TypeVar("_Backend", bound=InstanceBackend)

TASK_ACTIONS = frozenset(
    {
        "CreateBackup",
        "DescribeBackupTasks",
        "DescribeBackups",
        "DescribeHistoryTasks",
        "DescribeActiveOperationTasks",
        "ModifyActiveOperationTasks",
        "CancelActiveOperationTasks",
    }
)
# assumption: an upgrade has one step, named as the metadata's example names a step ("exec_task",
# DescribeHistoryTasks CurrentStepName and ActionInfo); "" before it starts ("empty: not started").
STEP = "exec_task"
# What a waiting booked upgrade allows (the metadata's ActionInfo example, DescribeHistoryTasks).
WAITING_ACTIONS = json.dumps(
    {"steps": [{"step_name": STEP, "action_info": {"Waiting": ["modifySwitchTime"]}}]}
)
# assumption: the O&M event type of a booked major upgrade. The documented types are rds_apsaradb_ha,
# _transfer, _upgrade ("minor version upgrade") and _maxscale (SDK ``_describe_active_operation_tasks_
# response_body.py``, both products); a version upgrade is shown as the one upgrade type there is.
EVENT_TYPE = "rds_apsaradb_upgrade"


class TaskResponse(InstanceResponse[_Backend]):
    """The instance actions plus the task, backup and O&M-event actions of one product."""

    db_type: ClassVar[str]  # DescribeHistoryTasks/DescribeActiveOperationTasks DbType
    history_product: ClassVar[str]  # DescribeHistoryTasks Product
    history_task_type: ClassVar[str]  # DescribeHistoryTasks TaskType of a major upgrade

    def __init__(self, backends: Any) -> None:
        super().__init__(backends)
        answers: dict[str, Callable[[dict[str, str], CallContext], dict[str, Any]]] = {
            "CreateBackup": self.create_backup,
            "DescribeBackupTasks": self.describe_backup_tasks,
            "DescribeBackups": self.describe_backups,
            "DescribeHistoryTasks": self.describe_history_tasks,
            "DescribeActiveOperationTasks": self.describe_events,
            "ModifyActiveOperationTasks": self.modify_events,
            "CancelActiveOperationTasks": self.cancel_events,
        }
        self._answers.update(answers)

    # --- what each product defines --------------------------------------------------------------

    def render_created(self, job: BackupJob) -> dict[str, Any]:
        raise NotImplementedError

    def render_jobs(self, inst: Instance, jobs: list[BackupJob], now: float) -> dict[str, Any]:
        raise NotImplementedError

    def render_set(self, inst: Instance, backup: BackupSet) -> dict[str, Any]:
        raise NotImplementedError

    def backups_extra(self, inst: Instance, sets: list[BackupSet]) -> dict[str, Any]:
        """Fields of DescribeBackups beside the page (R-kvstore's storage sizes)."""
        return {}

    # --- backups --------------------------------------------------------------------------------

    def create_backup(self, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        backend, inst = self.find(params, ctx)
        return self.render_created(backend.create_backup(inst.instance_id))

    def describe_backup_tasks(self, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        """Running jobs; a job named by ``BackupJobId`` (its job or backup ID) also once it ended.
        Assumption: a finished job leaves the listing (the statuses describe work in progress)."""
        backend, inst = self.find(params, ctx)
        now = backend.clock.now()
        wanted = params.get("BackupJobId")
        jobs = [
            job
            for job in inst.backup_jobs
            if (str(job.job_id) == wanted or str(job.backup_id) == wanted)
            or (not wanted and job.running(now))
        ]
        if params.get("JobMode") == "Automated":  # every job CreateBackup starts is Manual
            jobs = []
        return self.render_jobs(inst, jobs, now)

    def describe_backups(self, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        backend, inst = self.find(params, ctx)
        start, end = params.get("StartTime"), params.get("EndTime")
        lowest = parse_time(start) if start else None
        if start and lowest is None:
            raise InvalidStartTime()
        highest = parse_time(end) if end else None
        if end and highest is None:
            raise InvalidEndTime()
        if lowest is not None and highest is not None and highest <= lowest:
            raise InvalidStartTimeAndEndTime()
        sets = inst.backup_sets(backend.clock.now())
        # The window filters on the set's start time (metadata: "query start/end time").
        chosen = [
            s
            for s in sets
            if (lowest is None or s.started_at >= lowest) and (highest is None or s.started_at <= highest)
        ]
        for name, key in (("BackupId", "backup_id"), ("BackupJobId", "job_id")):
            if params.get(name):
                ids = {i.strip() for i in params[name].split(",")}
                chosen = [s for s in chosen if str(getattr(s, key)) in ids]
        chosen.reverse()  # newest first
        number, size = int(params.get("PageNumber") or 1), int(params.get("PageSize") or 30)
        page = chosen[(number - 1) * size : number * size]
        return {
            "Backups": {"Backup": [self.render_set(inst, s) for s in page]},
            "TotalCount": len(chosen),
            "PageNumber": number,
            "PageSize": size,
            **self.backups_extra(inst, sets),
        }

    # --- history tasks --------------------------------------------------------------------------

    def describe_history_tasks(self, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        lowest = parse_time(require(params, "FromStartTime"))
        highest = parse_time(require(params, "ToStartTime"))
        if lowest is None or highest is None:
            raise ParamInvalid()
        if highest < lowest:
            raise TimeEndBeforeStart()
        size = int(params.get("PageSize") or 10)
        number = int(params.get("PageNumber") or 1)
        if not 10 <= size <= 100:  # "10~100" (metadata PageSize)
            raise ParamInvalid()
        filters = {
            name: {v.strip() for v in params[name].split(",") if v.strip()}
            for name in ("InstanceId", "TaskId", "Status", "TaskType")
            if params.get(name)
        }
        items = []
        for backend, inst, upgrade in self._upgrades(ctx, filters.get("InstanceId")):
            now = backend.clock.now()
            item = self.render_history(backend, inst, upgrade, now)
            if not lowest <= upgrade.starts_at <= highest:
                continue
            if any(str(item[name]) not in wanted for name, wanted in filters.items()):
                continue
            items.append(item)
        return {
            "Items": items[(number - 1) * size : number * size],
            "TotalCount": len(items),
            "PageNumber": number,
            "PageSize": size,
        }

    def render_history(
        self, backend: _Backend, inst: Instance, upgrade: UpgradeTask, now: float
    ) -> dict[str, Any]:
        """One DescribeHistoryTasks item (metadata fields; SDK ``_describe_history_tasks_response_body.py``)."""
        started = upgrade.state != WAITING
        return {
            "TaskId": upgrade.task_id,
            "TaskType": self.history_task_type,
            "Status": HISTORY_STATUS[upgrade.state],
            "Progress": upgrade.progress(now),
            "RemainTime": upgrade.remaining(now),
            "CurrentStepName": STEP if started else "",
            "StartTime": iso(upgrade.starts_at),
            "EndTime": "" if upgrade.live else iso(upgrade.ends_at),
            "InstanceId": inst.instance_id,
            "InstanceName": str(
                inst.attrs.get("InstanceName") or inst.attrs.get("DBInstanceDescription") or ""
            ),
            "InstanceType": "Instance",  # "fixed: Instance" (metadata)
            "RegionId": backend.region,
            "DbType": self.db_type,
            "Product": self.history_product,
            "TaskDetail": json.dumps({"fromVersion": upgrade.source, "toVersion": upgrade.target}),
            "ReasonCode": "",
            "ActionInfo": WAITING_ACTIONS if upgrade.state == WAITING else "{}",
            "Uid": backend.account_id,
            "CallerSource": "User",
            "CallerUid": backend.account_id,
        }

    # --- O&M events -----------------------------------------------------------------------------

    def describe_events(self, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        region = params.get("Region")
        if region == "all":  # "all: every region" (SDK request model)
            backends = self.backends.of_account(ctx.account_id)
        elif region:
            backends = [self.backends.get(ctx.account_id, region)]
        else:
            backends = self.scope(ctx)
        filters: dict[str, str] = {}
        for name in ("InsName", "TaskType", "Status", "AllowCancel", "AllowChange"):
            value = params.get(name)
            if value and value not in ("-1", "all"):  # -1 / all: no filter (SDK request model)
                filters[name] = value
        items = []
        for backend in backends:
            for inst, upgrade in self._booked(backend):
                item = self.render_event(backend, inst, upgrade)
                if all(str(item[name]) == value for name, value in filters.items()):
                    items.append(item)
        size = int(params.get("PageSize") or 30)
        number = int(params.get("PageNumber") or 1)
        return {
            "Items": items[(number - 1) * size : number * size],
            "TotalRecordCount": len(items),
            "PageNumber": number,
            "PageSize": size,
        }

    def render_event(self, backend: _Backend, inst: Instance, upgrade: UpgradeTask) -> dict[str, Any]:
        """One DescribeActiveOperationTasks item (Dds metadata fields; R-kvstore's has none, its SDK
        model ``_describe_active_operation_tasks_response_body.py`` names the same and more)."""
        pending = upgrade.state == WAITING
        flag = "1" if pending else "0"
        return {
            "Id": upgrade.event_id,
            "InsName": inst.instance_id,
            "InsComment": str(
                inst.attrs.get("InstanceName") or inst.attrs.get("DBInstanceDescription") or ""
            ),
            "Region": backend.region,
            "TaskType": EVENT_TYPE,
            "TaskTypeEn": EVENT_TYPE,
            "TaskTypeZh": "",
            "Status": EVENT_STATUS[upgrade.state],
            "SwitchTime": iso(upgrade.starts_at),
            "StartTime": iso(upgrade.starts_at),
            "Deadline": iso(upgrade.deadline or upgrade.starts_at),
            "CreatedTime": iso(upgrade.requested_at),
            "ModifiedTime": iso(upgrade.modified_at),
            "PrepareInterval": "00:00:00",  # the switch is when the window opens (booked upgrade)
            "AllowCancel": flag,
            "AllowChange": flag,
            "DbType": self.db_type,
            "DbVersion": upgrade.source,
            "ChangeLevel": "",
            "ChangeLevelEn": "",
            "ChangeLevelZh": "",
            "ImpactEn": "",
            "ImpactZh": "",
            "CurrentAVZ": str(inst.attrs.get("ZoneId", "")),
            "ResultInfo": "",
            "SubInsNames": [],
        }

    def modify_events(self, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        """Move pending O&M events to SwitchTime (or now, ImmediateStart=1); all or none change."""
        ids = require(params, "Ids")
        events = self._events_named(ids, ctx)
        now = self.backends.clock.now()
        if params.get("ImmediateStart") == "1":  # "SwitchTime does not take effect" (SDK model)
            switch = now
        else:
            parsed = parse_time(require(params, "SwitchTime"))
            if parsed is None:
                raise InvalidParameter("SwitchTime")
            switch = parsed
            if switch < now:
                raise StartTimeBeforeNow()
        for _, upgrade in events:
            if upgrade.state != WAITING:
                raise IncorrectTaskStatus()
            if upgrade.deadline is not None and switch > upgrade.deadline:
                raise SwitchTimeAfterDeadline()
        for inst, upgrade in events:
            duration = upgrade.ends_at - upgrade.starts_at
            upgrade.starts_at, upgrade.ends_at, upgrade.modified_at = switch, switch + duration, now
            inst.settle(now)
        return {"Ids": ids}

    def cancel_events(self, params: dict[str, str], ctx: CallContext) -> dict[str, Any]:
        """Cancel pending O&M events before their start: the booked upgrade never runs."""
        ids = require(params, "Ids")
        events = self._events_named(ids, ctx)
        now = self.backends.clock.now()
        for _, upgrade in events:
            if upgrade.state != WAITING or now >= upgrade.starts_at:
                raise IncorrectTaskStatus()
        for _, upgrade in events:
            upgrade.state, upgrade.modified_at = CANCELLED, now
        return {"Ids": ids}

    # --- lookups --------------------------------------------------------------------------------

    def _upgrades(
        self, ctx: CallContext, instance_ids: set[str] | None = None
    ) -> Iterator[tuple[_Backend, Instance, UpgradeTask]]:
        """Every upgrade of the caller's instances (of ``instance_ids`` only, when given), settled to
        now. Instances are passed over before they are settled and rendered: a call naming 30 of a
        10,000-instance region costs 30 renders, not 10,000 (the emulator's cost, not the API's)."""
        for backend in self.scope(ctx):
            now = backend.clock.now()
            for inst in backend.instances.values():
                if instance_ids is not None and inst.instance_id not in instance_ids:
                    continue
                inst.settle(now)
                for upgrade in inst.upgrades:
                    yield backend, inst, upgrade

    def _booked(self, backend: _Backend) -> Iterator[tuple[Instance, UpgradeTask]]:
        now = backend.clock.now()
        for inst in backend.instances.values():
            inst.settle(now)
            for upgrade in inst.upgrades:
                if upgrade.event_id is not None:
                    yield inst, upgrade

    def _events_named(self, ids: str, ctx: CallContext) -> list[tuple[Instance, UpgradeTask]]:
        """The caller's O&M events with these comma-separated IDs, settled to now. Assumption: an
        unknown ID is an invalid ``Ids`` (400 InvalidParameter); no source shows the real answer."""
        wanted = [i.strip() for i in ids.split(",") if i.strip()]
        found = {
            str(upgrade.event_id): (inst, upgrade)
            for backend in self.backends.of_account(ctx.account_id)
            for inst, upgrade in self._booked(backend)
        }
        if not wanted or any(i not in found for i in wanted):
            raise InvalidParameter("Ids")
        return [found[i] for i in wanted]
