"""What R-kvstore and Dds share: instances that upgrade over emulated time, tag filters, windows.

State advances lazily: nothing runs in the background; every read first ``settle``s the instance
against the emulated clock, so advancing the clock by an hour moves every upgrade along at once
and a restored snapshot continues where it stopped.

Example::

    inst = Instance(attrs={"InstanceStatus": "Normal", "EngineVersion": "5.0"}, ...)
    inst.schedule("7.0", now, upgrade_seconds=2, in_window=False)
    inst.settle(now + 1)   # status: the upgrading status
    inst.settle(now + 2)   # status: ready again, EngineVersion "7.0"
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from localcloud.openapi.errors import InvalidParameter

DAY = 86400
_HHMMZ = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)Z$")
_TAG = re.compile(r"^Tag\.(\d+)\.(Key|Value)$")


def minute_of_day(value: str) -> int:
    """Minutes since 00:00 UTC of a ``HH:MMZ`` maintenance bound."""
    match = _HHMMZ.match(value)
    if not match:
        raise ValueError(f"maintenance time must look like HH:MMZ, got {value!r}")
    return int(match.group(1)) * 60 + int(match.group(2))


def window_opening(now: float, start: str, end: str) -> float:
    """The first moment at or after ``now`` inside the daily window [start, end) (UTC, may wrap)."""
    start_min, end_min = minute_of_day(start), minute_of_day(end)
    day_start = now - now % DAY
    minute = (now - day_start) / 60
    if start_min == end_min:  # a whole-day window
        return now
    inside = start_min <= minute < end_min if start_min < end_min else minute >= start_min or minute < end_min
    if inside:
        return now
    opening = day_start + start_min * 60
    return opening if opening >= now else opening + DAY


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def tag_filters(params: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``Tag.N.Key``/``Tag.N.Value`` pairs from the request, in N order; a value without key is invalid."""
    pairs: dict[int, dict[str, str]] = {}
    for name, value in params.items():
        match = _TAG.match(name)
        if match:
            pairs.setdefault(int(match.group(1)), {})[match.group(2)] = value
    filters: list[tuple[str, str | None]] = []
    for index in sorted(pairs):
        pair = pairs[index]
        if not pair.get("Key"):
            raise InvalidParameter(f"Tag.{index}.Key")
        filters.append((pair["Key"], pair.get("Value") or None))
    return filters


def matches_tags(tags: Mapping[str, str], filters: Iterable[tuple[str, str | None]]) -> bool:
    return all(key in tags and (value is None or tags[key] == value) for key, value in filters)


def render_tags(tags: Mapping[str, str]) -> dict[str, list[dict[str, str]]]:
    return {"Tag": [{"Key": k, "Value": v} for k, v in tags.items()]}


# UpgradeTask states. Rendered by each API in its own words (DescribeHistoryTasks ``Status``,
# DescribeActiveOperationTasks ``Status``): see ``HISTORY_STATUS`` and ``EVENT_STATUS``.
WAITING, RUNNING, SUCCEEDED, FAILED, CANCELLED = "waiting", "running", "succeeded", "failed", "cancelled"
LIVE = (WAITING, RUNNING)
# DescribeHistoryTasks ``Status`` (metadata, both products: Scheduled, Running, Succeed, Failed,
# Cancelling, Canceled, Waiting "waiting for the preset time": a booked upgrade waits for its window).
HISTORY_STATUS = {
    WAITING: "Waiting",
    RUNNING: "Running",
    SUCCEEDED: "Succeed",
    FAILED: "Failed",
    CANCELLED: "Canceled",
}
# DescribeActiveOperationTasks ``Status`` (SDK models: r_kvstore 7.0.0 and dds 9.5.0
# ``_describe_active_operation_tasks_response_body.py``: 3 pending, 4 running, 5 succeeded, 6 failed,
# 7 canceled; the Dds metadata's request text says 0-3, the newer SDK text and the RDS doc say 3-7).
EVENT_STATUS = {WAITING: 3, RUNNING: 4, SUCCEEDED: 5, FAILED: 6, CANCELLED: 7}
# assumption: how long after it was booked an O&M event may still be moved (its ``Deadline``); the
# docs only say SwitchTime "cannot be later than the Deadline" (SDK ``_modify_active_operation_tasks_
# request.py`` L37-40), not how the service sets it.
BOOKING_DEADLINE_SECONDS = 7 * DAY
# assumption: automatic backups are kept 7 days (Redis and MongoDB consoles' default retention); no
# API page states the default, and only their recency matters here.
AUTOMATIC_BACKUP_DAYS = 7


@dataclass
class UpgradeTask:
    """One accepted upgrade: a DescribeHistoryTasks task and, when booked for the maintenance window,
    a DescribeActiveOperationTasks O&M event (``event_id``) that can be moved or cancelled."""

    task_id: str
    event_id: int | None  # booked for the window: the O&M event's Id; None: it ran at once
    source: str
    target: str
    requested_at: float  # emulated epoch seconds, as every time below
    starts_at: float  # now, or the maintenance window opening (the O&M event's SwitchTime)
    ends_at: float
    deadline: float | None  # the latest SwitchTime a booked upgrade can be moved to
    modified_at: float
    state: str = WAITING

    @property
    def live(self) -> bool:
        return self.state in LIVE

    def progress(self, now: float) -> float:
        """Percent done in [0, 100] (DescribeHistoryTasks ``Progress``)."""
        if self.state in (SUCCEEDED, FAILED):
            return 100.0
        if self.state != RUNNING or self.ends_at <= self.starts_at:
            return 0.0
        return round(min(100.0, (now - self.starts_at) / (self.ends_at - self.starts_at) * 100), 1)

    def remaining(self, now: float) -> int:
        """Estimated seconds left, 0 when done (DescribeHistoryTasks ``RemainTime``)."""
        if not self.live:
            return 0
        return max(0, int(self.ends_at - max(now, self.starts_at) + 0.999))


@dataclass
class RunningTask:
    """A task other than an upgrade that keeps the instance busy (seed ``RunningTask``, or a backup job)."""

    name: str  # e.g. "Backup"; localcloud-only, never rendered
    ends_at: float | None  # emulated epoch seconds; None: it never ends


BACKUP_TASK = "Backup"  # the RunningTask name of a backup job, also what a seed's RunningTask may say


@dataclass
class BackupJob:
    """One CreateBackup: it runs from ``started_at`` to ``ends_at``, then its backup set is listed."""

    job_id: int
    backup_id: int
    started_at: float
    ends_at: float
    fails: bool  # seed ``FailBackup``: the set is listed with BackupStatus Failed

    def running(self, now: float) -> bool:
        return now < self.ends_at

    def percent(self, now: float) -> int:
        if not self.running(now):
            return 100
        return int((now - self.started_at) / max(self.ends_at - self.started_at, 1e-9) * 100)


@dataclass(frozen=True)
class BackupSet:
    """A backup set as DescribeBackups lists it (each product renders its own field names)."""

    backup_id: int
    job_id: int
    started_at: float
    ended_at: float
    ok: bool
    mode: str  # "Automated" | "Manual" (metadata BackupMode)


@dataclass
class Instance:
    """One instance: its API attributes plus the localcloud-only rules that drive it."""

    attrs: dict[str, Any]  # the API's own field names, as describe renders them
    tags: dict[str, str]
    status_key: str
    ready_status: str
    upgrading_status: str
    failed_status: str | None  # None: upgrades succeed; else the status a failed upgrade ends in
    task: RunningTask | None = None
    upgrades: list[UpgradeTask] = field(default_factory=list)
    backup_jobs: list[BackupJob] = field(default_factory=list)
    seeded_backups: list[BackupSet] = field(default_factory=list)
    automatic_backup: str | None = None  # "HH:MMZ": a daily automatic backup starts then
    backup_seconds: float = 5.0
    fail_backup: bool = False

    @property
    def status(self) -> str:
        return str(self.attrs[self.status_key])

    @property
    def version(self) -> str:
        return str(self.attrs["EngineVersion"])

    @property
    def instance_id(self) -> str:
        return str(self.attrs.get("InstanceId") or self.attrs.get("DBInstanceId"))

    @property
    def pending(self) -> UpgradeTask | None:
        """The upgrade booked or running, if any."""
        return next((u for u in self.upgrades if u.live), None)

    def busy_with(self, now: float) -> str | None:
        """What keeps the instance from taking another task at ``now``: an upgrade booked for the
        maintenance window or running, or a running task (a backup job or a seeded one); None when free."""
        self.settle(now)
        pending = self.pending
        if pending is not None:
            return "upgrade booked" if now < pending.starts_at else "upgrade running"
        if self.task is not None:
            return f"task {self.task.name} running"
        return None

    def schedule(self, target: str, now: float, upgrade_seconds: float, in_window: bool) -> UpgradeTask:
        """Accept an upgrade to ``target``: now, or once the maintenance window opens (an O&M event)."""
        starts = (
            window_opening(now, self.attrs["MaintainStartTime"], self.attrs["MaintainEndTime"])
            if in_window
            else now
        )
        number = len(self.upgrades) + 1
        upgrade = UpgradeTask(
            task_id=f"t-{_digest(self.instance_id, 'upgrade', number, length=16)}",
            event_id=_number(self.instance_id, "event", number) if in_window else None,
            source=self.version,
            target=target,
            requested_at=now,
            starts_at=starts,
            ends_at=starts + upgrade_seconds,
            deadline=now + BOOKING_DEADLINE_SECONDS if in_window else None,
            modified_at=now,
        )
        self.upgrades.append(upgrade)
        self.settle(now)
        return upgrade

    def start_backup(self, now: float) -> BackupJob:
        """Start a backup job: the instance is busy with it (a running task) until it ends."""
        number = len(self.backup_jobs) + 1
        job_id = _number(self.instance_id, "backup-job", number)
        job = BackupJob(job_id, job_id + 1, now, now + self.backup_seconds, self.fail_backup)
        self.backup_jobs.append(job)
        self.task = RunningTask(BACKUP_TASK, job.ends_at)
        return job

    def backup_sets(self, now: float) -> list[BackupSet]:
        """Every backup set finished by ``now``, oldest first: seeded, automatic (daily) and manual."""
        sets = [s for s in self.seeded_backups if s.ended_at <= now]
        if self.automatic_backup:
            minute = minute_of_day(self.automatic_backup)
            today = now - now % DAY
            for days_ago in range(AUTOMATIC_BACKUP_DAYS, -1, -1):
                start = today - days_ago * DAY + minute * 60
                if start + self.backup_seconds <= now:
                    # Stable per instance and start minute: the same set keeps its ID from one call
                    # to the next, and two instances' sets never share one (a BackupId names one set).
                    backup_id = _number(self.instance_id, "automatic-backup", int(start // 60))
                    sets.append(
                        BackupSet(backup_id, backup_id, start, start + self.backup_seconds, True, "Automated")
                    )
        for job in self.backup_jobs:
            if not job.running(now):
                sets.append(
                    BackupSet(job.backup_id, job.job_id, job.started_at, job.ends_at, not job.fails, "Manual")
                )
        return sorted(sets, key=lambda s: s.started_at)

    def settle(self, now: float) -> None:
        """Move the pending upgrade and the running task along to ``now`` (emulated)."""
        if self.task is not None and self.task.ends_at is not None and now >= self.task.ends_at:
            self.task = None
        pending = self.pending
        if pending is None or now < pending.starts_at:
            return
        if now < pending.ends_at:
            pending.state = RUNNING
            self.attrs[self.status_key] = self.upgrading_status
            return
        if self.failed_status:
            pending.state = FAILED
            self.attrs[self.status_key] = self.failed_status
        else:
            pending.state = SUCCEEDED
            self.attrs[self.status_key] = self.ready_status
            self.attrs["EngineVersion"] = pending.target

    def snapshot(self) -> dict[str, Any]:
        return {
            "attrs": self.attrs,
            "tags": self.tags,
            "task": asdict(self.task) if self.task else None,
            "upgrades": [asdict(u) for u in self.upgrades],
            "backup_jobs": [asdict(j) for j in self.backup_jobs],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.attrs = dict(state["attrs"])
        self.tags = dict(state.get("tags", {}))
        task = state.get("task")
        self.task = RunningTask(**task) if task else None
        self.upgrades = [UpgradeTask(**u) for u in state.get("upgrades", [])]
        self.backup_jobs = [BackupJob(**j) for j in state.get("backup_jobs", [])]


def _digest(*parts: object, length: int) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:length]


def _number(*parts: object) -> int:
    """A stable 9-digit ID for what ``parts`` name (the real IDs are numbers: metadata examples)."""
    return 100_000_000 + int(_digest(*parts, length=12), 16) % 800_000_000


def failed_status_for(seed_entry: Mapping[str, Any], default: str) -> str | None:
    """Seed ``FailUpgrade``: true -> ``default``; a string -> that status; absent/false -> None."""
    marker = seed_entry.get("FailUpgrade")
    if isinstance(marker, str) and marker:
        return marker
    return default if marker else None


def running_task_for(seed_entry: Mapping[str, Any], now: float) -> RunningTask | None:
    """Seed ``RunningTask`` (a name) and ``RunningTaskSeconds`` (absent: the task never ends)."""
    name = seed_entry.get("RunningTask")
    if not name:
        return None
    seconds = seed_entry.get("RunningTaskSeconds")
    return RunningTask(str(name), None if seconds is None else now + float(seconds))


def iso(epoch: float) -> str:
    """``yyyy-MM-ddTHH:mm:ssZ`` (UTC), the time format of the task and backup APIs (metadata examples)."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> float | None:
    """Epoch seconds of ``yyyy-MM-ddTHH:mm:ssZ`` or ``yyyy-MM-ddTHH:mmZ`` (UTC); None if it is neither."""
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%MZ"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    return None


def seeded_backups_for(seed_entry: Mapping[str, Any], backup_seconds: float) -> list[BackupSet]:
    """Seed ``Backups``: finished sets, each ``{"BackupEndTime": "...Z"}`` plus optional
    ``BackupStartTime``, ``BackupId``, ``BackupStatus`` (Success/Failed) and ``BackupMode``."""
    sets = []
    iid = seed_entry.get("InstanceId") or seed_entry.get("DBInstanceId")
    for index, raw in enumerate(seed_entry.get("Backups") or []):
        ended = parse_time(str(raw.get("BackupEndTime", "")))
        if ended is None:
            raise ValueError(f"{iid}: Backups[{index}].BackupEndTime must look like 2024-01-01T00:00:00Z")
        started = parse_time(str(raw.get("BackupStartTime", ""))) or ended - backup_seconds
        status = raw.get("BackupStatus", "Success")
        if status not in ("Success", "Failed"):  # metadata DescribeBackups.BackupStatus
            raise ValueError(f"{iid}: Backups[{index}].BackupStatus must be Success or Failed")
        backup_id = int(raw.get("BackupId") or _number(iid, "seeded-backup", index))
        mode = str(raw.get("BackupMode", "Automated"))
        sets.append(BackupSet(backup_id, backup_id, started, ended, status == "Success", mode))
    return sets
