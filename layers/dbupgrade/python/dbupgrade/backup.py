"""The backup gate (``DBUPGRADE_BACKUP``): a finished backup recent enough, or a new one, before an upgrade.

The request reads the instance's backups (``DescribeBackups``). When none qualifies it starts one
(``CreateBackup``), records ``awaiting_backup`` (the instance's claim stays held) and returns: no
invocation waits on a backup. Each tracker tick then looks at that backup (``follow``): finished ->
the upgrade is submitted (``Upgrader.submit_waiting``); failed, refused or not finished after
``BACKUP_WAIT_SECONDS`` -> the target ends ``failed`` with reason ``backup_failed``.

Every function takes ``call(action, params) -> body`` (the caller's retried cloud call, raising
``CloudError``), so the gate is the same in the request, the tracker and the readiness report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from dbupgrade.clock import parse_api_time
from dbupgrade.config import BackupPolicy
from dbupgrade.engines import Engine, dig

Call = Callable[[str, Mapping[str, str]], dict[str, Any]]

# assumption: a manual backup of one instance finishes within 6 hours; no document states a bound,
# and a backup past it is treated as failed (the operator looks) rather than waited on for ever.
BACKUP_WAIT_SECONDS = 6 * 3600
# The DescribeBackups time filter: "yyyy-MM-ddTHH:mmZ" (API metadata, StartTime/EndTime, both products).
QUERY_FORMAT = "%Y-%m-%dT%H:%MZ"
PAGE_SIZE = "30"  # the default page of both products: more backups than that in a day is not expected
SUCCESS = "Success"  # DescribeBackups BackupStatus: Success / Failed (API metadata)


class BackupSet(NamedTuple):
    """One finished backup set as DescribeBackups lists it."""

    backup_id: str
    status: str  # Success | Failed
    ended: datetime | None


def parse_time(text: Any) -> datetime | None:
    """``yyyy-MM-ddTHH:mm:ssZ`` (the backup APIs' time format), or the query's form, or None."""
    if not isinstance(text, str):
        return None
    parsed = parse_api_time(text)
    if parsed is not None:
        return parsed
    try:
        return datetime.strptime(text, QUERY_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def backups_query(
    engine: Engine, instance_id: str, since: datetime, until: datetime, **filters: str
) -> dict[str, str]:
    """DescribeBackups' parameters for the sets started between ``since`` and ``until``."""
    return {
        engine.id_param: instance_id,
        "StartTime": _query_time(since - timedelta(minutes=1)),
        "EndTime": _query_time(until + timedelta(minutes=1)),
        "PageSize": PAGE_SIZE,
        **filters,
    }


def _query_time(moment: datetime) -> str:
    """``moment.strftime(QUERY_FORMAT)`` without strftime's time-tuple round trip (~2 us a call)."""
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}Z"


def backup_sets(
    engine: Engine,
    call: Call,
    instance_id: str,
    since: datetime,
    until: datetime,
    **filters: str,
) -> list[BackupSet]:
    """The sets started between ``since`` and ``until`` (minute precision, widened by one minute)."""
    body = call(engine.backups_action, backups_query(engine, instance_id, since, until, **filters))
    return [
        BackupSet(
            str(item.get("BackupId")), str(item.get("BackupStatus")), parse_time(item.get("BackupEndTime"))
        )
        for item in dig(body, engine.backups_path)
        if isinstance(item, Mapping)
    ]


def fresh_backup(
    engine: Engine, call: Call, instance_id: str, now: datetime, hours: float
) -> BackupSet | None:
    """The newest successful backup that ended within ``hours`` of ``now``, or None."""
    since = now - timedelta(hours=hours)
    found = [
        backup
        for backup in backup_sets(engine, call, instance_id, since, now)
        if backup.status == SUCCESS and backup.ended is not None and since <= backup.ended <= now
    ]
    return max(found, key=lambda backup: backup.ended or since) if found else None


def needs_new_backup(policy: BackupPolicy, fresh: BackupSet | None) -> bool:
    return policy.mode == "required" or (policy.mode == "fresh" and fresh is None)


def start_backup(engine: Engine, call: Call, instance_id: str) -> str:
    """Start a backup (CreateBackup); its id: R-kvstore's BackupJobID, Dds's BackupId."""
    body = call(engine.backup_create_action, {engine.id_param: instance_id})
    return str(body.get(engine.backup_created_key) or "")


class BackupState(NamedTuple):
    """What became of a started backup: ``done`` (its set's id), ``failed`` (why) or still running."""

    done: bool = False
    failed: str | None = None
    backup_id: str | None = None


def follow(
    engine: Engine,
    call: Call,
    instance_id: str,
    started_id: str,
    started_at: datetime,
    now: datetime,
) -> BackupState:
    """Where the backup ``started_id`` (CreateBackup's answer) is: its set listed, or still running."""
    sets = backup_sets(engine, call, instance_id, started_at, now, **{engine.backup_filter_param: started_id})
    for backup in sets:
        if backup.status == SUCCESS:
            return BackupState(done=True, backup_id=backup.backup_id)
        return BackupState(
            failed=f"backup {backup.backup_id} ended {backup.status}", backup_id=backup.backup_id
        )
    if (now - started_at).total_seconds() > BACKUP_WAIT_SECONDS:
        return BackupState(
            failed=f"backup {started_id} not finished {BACKUP_WAIT_SECONDS // 3600} h after it started"
        )
    return BackupState()
