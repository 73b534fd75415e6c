"""The readiness report: per instance a verdict ``go`` / ``warn`` / ``blocked`` and graded findings.

One function per check; each finding names the API (or document) it was read from:

==================  ===========================================================================
state               the describe: ready, already upgrading, already at the target, a downgrade
mode                the deployment mode (InstanceClass / NodeType) and the targets it allows
offered             DescribeEngineVersion.EnableUpgradeMajorVersion / DescribeAvailableEngineVersion
operations          DescribeActiveOperationTasks: an upgrade (or another change) already booked
tasks               DescribeHistoryTasks: another task running or waiting
backup              DescribeBackups against DBUPGRADE_BACKUP (a backup is taken first if none fits)
window              when it would switch: now, the maintenance window, or deferred (DBUPGRADE_WINDOW)
end_of_service      the current and target versions' end of service (dbupgrade.runbook)
caveat              the documented effects of the path (write concern, Bloom data, restarts...)
==================  ===========================================================================

Grades: ``ok``, ``info``, ``warn`` (a person should look first), ``block``. The verdict is the worst
grade: any ``block`` -> ``blocked``, else any ``warn`` -> ``warn``, else ``go``. It FAILS CLOSED: a
check whose API call fails (after the caller's retries) is a ``block`` finding, never a pass. An
instance the describe already rules out (at the target: nothing to do; or a ``block`` from the
state or mode check) gets no per-instance read at all (``can_go``): its verdict cannot change.

The request path runs ``SUBMISSION_CHECKS`` (the describe-based checks are the use case's own
pre-check; the backup read is the one extra call); dry runs, ``rollout plan`` and ``dbupgrade
check`` run them all.

Example::

    report = assess(REDIS, "r-bp1abc", "7.0", call, attributes=attrs, policy=BackupPolicy(), now=now)
    report.verdict            # "warn"
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from dbupgrade import backup, runbook
from dbupgrade.cloudapi import CloudError
from dbupgrade.config import BackupPolicy, Window
from dbupgrade.engines import Engine, api_bool, dig, version_key

Grade = Literal["ok", "info", "warn", "block"]
Verdict = Literal["go", "warn", "blocked"]
Call = Callable[[str, Mapping[str, str]], dict[str, Any]]

ALL_CHECKS = (
    "state",
    "mode",
    "offered",
    "operations",
    "tasks",
    "backup",
    "window",
    "end_of_service",
    "caveat",
)
# What every submission runs on top of the use case's pre-check: one read (DescribeBackups, unless
# DBUPGRADE_BACKUP is off) and the checks that need no call.
SUBMISSION_CHECKS = ("backup", "window", "end_of_service", "caveat")
# DescribeHistoryTasks Status values of a task not over yet (API metadata, both products: Scheduled,
# Running, Succeed, Failed, Cancelling, Canceled, Waiting).
LIVE_TASK_STATUSES = frozenset({"Scheduled", "Running", "Cancelling", "Waiting"})
# DescribeActiveOperationTasks Status: 3 pending, 4 running (SDK models r_kvstore 7.0.0 / dds 9.5.0).
LIVE_EVENT_STATUSES = frozenset({"3", "4"})
HISTORY_DAYS = 7  # how far back (and ahead, for booked tasks) DescribeHistoryTasks is asked
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # DescribeHistoryTasks FromStartTime / ToStartTime (API metadata)
WORST_FIRST: tuple[Grade, ...] = ("block", "warn", "info", "ok")


class Finding(NamedTuple):
    """One readiness check's grade, where it was read, and why."""

    check: str  # one of ALL_CHECKS
    grade: Grade
    source: str  # the API action (or document URL) it was read from
    message: str

    def line(self) -> str:
        return f"[{self.grade}] {self.check} ({self.source}): {self.message}"


# A report's value, what it is compared and hashed by, is its first five fields (instance_id ..
# findings): the gate's view and the unread errors are not part of it.
_COMPARED = 5


class Readiness(NamedTuple):
    """An instance's readiness report for one target version: its findings and the backup gate's view.

    A NamedTuple, not a frozen dataclass, for the functions' cold start (bench/NOTES.md): compared
    and hashed by its value (``_COMPARED``); its repr leaves out the unread errors."""

    instance_id: str
    engine: str
    to_version: str
    from_version: str | None = None
    findings: tuple[Finding, ...] = ()
    # The gate's view: a finished backup recent enough (its id), and whether a new one is needed.
    fresh_backup_id: str | None = None
    needs_backup: bool = False
    # Why each check that could not be read failed: a request blocked only by these is told to come
    # back (a throttled or denied read is not the instance's verdict), never rejected for good.
    unread: tuple[CloudError, ...] = ()

    # Not NotImplemented for another type: tuple's reflected comparison would then equal a report
    # to a plain tuple of its fields.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Readiness) and self[:_COMPARED] == other[:_COMPARED]

    def __ne__(self, other: object) -> bool:  # tuple's own would compare every field
        return not self == other

    def __hash__(self) -> int:
        return hash(self[:_COMPARED])

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={value!r}" for name, value in zip(self._fields[:-1], self[:-1], strict=True)
        )
        return f"Readiness({shown})"

    @property
    def verdict(self) -> Verdict:
        grades = {finding.grade for finding in self.findings}
        if "block" in grades:
            return "blocked"
        return "warn" if "warn" in grades else "go"

    def blocking(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.grade == "block"]

    def only_unread(self) -> CloudError | None:
        """The first read error when every blocking finding is a check that could not be read."""
        if self.unread and len(self.blocking()) == len(self.unread):
            return self.unread[0]
        return None

    def summary(self) -> str:
        """The blocking findings in one line (a refusal's message)."""
        return "; ".join(f"{f.check} ({f.source}): {f.message}" for f in self.blocking())

    def to_dict(self) -> dict[str, Any]:
        ordered = sorted(self.findings, key=lambda f: WORST_FIRST.index(f.grade))
        return {
            "verdict": self.verdict,
            "instance_id": self.instance_id,
            "engine": self.engine,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "findings": [finding._asdict() for finding in ordered],
        }


# -- one function per check ----------------------------------------------------------------------


def check_state(engine: Engine, attributes: Mapping[str, Any], target: str) -> list[Finding]:
    source = engine.describe_action
    status = str(attributes.get(engine.status_key))
    current = str(attributes.get(engine.version_key))
    if status in engine.upgrading_statuses:
        return [Finding("state", "block", source, f"already upgrading ({status})")]
    if current == target:
        return [Finding("state", "info", source, f"already at {target}: nothing to do")]
    if status not in engine.ready_statuses:
        needed = "/".join(sorted(engine.ready_statuses))
        return [Finding("state", "block", source, f"status {status}; an upgrade needs {needed}")]
    try:
        if version_key(current) > version_key(target):
            return [
                Finding(
                    "state", "block", source, f"{target} is older than {current}: major versions only go up"
                )
            ]
    except ValueError:
        pass
    return [Finding("state", "ok", source, f"{status} at {current}")]


def check_mode(engine: Engine, attributes: Mapping[str, Any], target: str) -> list[Finding]:
    if engine.modes is None:
        return []
    source = f"{engine.describe_action} (InstanceClass, NodeType)"
    current = str(attributes.get(engine.version_key))
    verdict = engine.modes.of(attributes, current)
    if verdict.mode is None:
        return [Finding("mode", "block", source, f"deployment mode unknown: {verdict.why}")]
    if target not in verdict.targets:
        allowed = " / ".join(verdict.targets)
        return [Finding("mode", "block", source, f"{verdict.why} upgrades only to {allowed}, not {target}")]
    return [Finding("mode", "ok", source, verdict.why)]


def check_offered(engine: Engine, call: Call, instance_id: str, current: str, target: str) -> list[Finding]:
    found: list[Finding] = []
    if engine.gate_action:
        body = call(engine.gate_action, {engine.id_param: instance_id})
        source = f"{engine.gate_action}.{engine.gate_key}"
        if api_bool(body.get(engine.gate_key)) is False:
            return [Finding("offered", "block", source, "false: the service offers no major version upgrade")]
        found.append(Finding("offered", "ok", source, "a major version upgrade is offered"))
    if engine.available_action:
        body = call(engine.available_action, {engine.id_param: instance_id})
        offered = sorted({str(v) for v in dig(body, engine.available_path)}, key=_order)
        source = engine.available_action
        if target not in offered:
            if offered and engine.one_hop and _order(target) > _order(offered[0]):
                why = f"one major version at a time: the next hop from {current} is {offered[0]}"
            else:
                why = f"offered: {', '.join(offered) or 'none'}"
            return [Finding("offered", "block", source, f"{target} is not offered ({why})")]
        found.append(Finding("offered", "ok", source, f"{target} is offered"))
    return found


def check_operations(engine: Engine, call: Call, instance_id: str, region: str) -> list[Finding]:
    source = engine.operations_action
    body = call(source, {"Region": region, "InsName": instance_id, "PageSize": "30"})
    live = [
        item
        for item in _items(body)
        if item.get("InsName") == instance_id and str(item.get("Status")) in LIVE_EVENT_STATUSES
    ]
    if not live:
        return [Finding("operations", "ok", source, "no O&M event booked")]
    findings = []
    for item in live:
        kind = str(item.get("TaskType") or "")
        text = f"{kind} booked for {item.get('SwitchTime') or item.get('StartTime')} (event {item.get('Id')})"
        grade: Grade = "block" if "upgrade" in kind else "warn"
        findings.append(Finding("operations", grade, source, text))
    return findings


def check_tasks(engine: Engine, call: Call, instance_id: str, now: datetime) -> list[Finding]:
    source = engine.history_action
    params = {
        "InstanceId": instance_id,
        "FromStartTime": (now - timedelta(days=HISTORY_DAYS)).strftime(TIME_FORMAT),
        "ToStartTime": (now + timedelta(days=HISTORY_DAYS)).strftime(TIME_FORMAT),
        "PageSize": "30",
    }
    body = call(source, params)
    live = [
        item
        for item in _items(body)
        if item.get("InstanceId") == instance_id and str(item.get("Status")) in LIVE_TASK_STATUSES
    ]
    if not live:
        return [Finding("tasks", "ok", source, "no task running or waiting")]
    return [
        Finding(
            "tasks",
            "block",
            source,
            f"task {item.get('TaskId')} ({item.get('TaskType')}) is {item.get('Status')}, "
            f"{item.get('Progress', 0)}% done",
        )
        for item in live
    ]


def backup_hours(policy: BackupPolicy) -> float | None:
    """How far back the backup check looks for a finished backup; None when the gate is off."""
    if policy.mode == "off":
        return None
    return policy.max_age_hours if policy.mode == "fresh" else 24.0


def backup_read(
    engine: Engine, instance_id: str, policy: BackupPolicy, now: datetime
) -> tuple[str, dict[str, str]] | None:
    """The one call ``check_backup`` makes at ``now`` (action, parameters), for a caller that starts
    it ahead of the check (the use case, beside the offered-versions reads); None when the gate is off."""
    hours = backup_hours(policy)
    if hours is None:
        return None
    query = backup.backups_query(engine, instance_id, now - timedelta(hours=hours), now)
    return engine.backups_action, query


def check_backup(
    engine: Engine, call: Call, instance_id: str, policy: BackupPolicy, now: datetime
) -> tuple[list[Finding], backup.BackupSet | None, bool]:
    """The findings, the fresh backup found (if any) and whether the gate takes a new one."""
    source = engine.backups_action
    hours = backup_hours(policy)
    if hours is None:
        return (
            [Finding("backup", "info", "DBUPGRADE_BACKUP", "off: no backup is required or taken")],
            None,
            False,
        )
    fresh = backup.fresh_backup(engine, call, instance_id, now, hours)
    needed = backup.needs_new_backup(policy, fresh)
    if fresh is not None and not needed:
        ended = fresh.ended.strftime(TIME_FORMAT) if fresh.ended else "?"
        return [Finding("backup", "ok", source, f"backup {fresh.backup_id} finished {ended}")], fresh, False
    if policy.mode == "required":
        why = "DBUPGRADE_BACKUP=required: a new backup is taken first"
    else:
        why = f"no finished backup in the last {hours:g} h: one is taken first (CreateBackup)"
    return [Finding("backup", "info", source, why)], fresh, needed


def check_window(
    engine: Engine,
    attributes: Mapping[str, Any] | None,
    effective: str,
    window: Window | None,
    policy: str,
    now: datetime,
) -> list[Finding]:
    if effective == "maintenance_window":
        attrs = attributes or {}
        span = f"{attrs.get('MaintainStartTime', '?')}-{attrs.get('MaintainEndTime', '?')}"
        source = f"{engine.describe_action} (MaintainStartTime, MaintainEndTime)"
        return [Finding("window", "info", source, f"switches in the instance's maintenance window {span}")]
    if window is None or window.contains(now):
        return [Finding("window", "info", "DBUPGRADE_WINDOW", "switches on submission (immediate)")]
    if policy == "maintenance_window":
        return [
            Finding(
                "window",
                "info",
                "DBUPGRADE_WINDOW",
                f"outside {window.text}: booked for the maintenance window",
            )
        ]
    if policy == "reject":
        return [
            Finding("window", "warn", "DBUPGRADE_WINDOW", f"outside {window.text}: deferred until it opens")
        ]
    return [
        Finding(
            "window", "info", "DBUPGRADE_WINDOW", f"outside {window.text}, allowed: switches on submission"
        )
    ]


def check_end_of_service(engine: Engine, current: str, target: str, today: datetime) -> list[Finding]:
    table = runbook.END_OF_SERVICE.get(engine.name, {})
    findings = []
    for version, role in ((current, "current"), (target, "target")):
        eos = table.get(version)
        if eos is None:
            continue
        passed = today.date() >= eos.ends
        when = f"{'reached' if passed else 'reaches'} its {eos.what} on {eos.ends.isoformat()}"
        if role == "current":
            findings.append(Finding("end_of_service", "info", eos.source, f"the current {version} {when}"))
        elif passed:
            findings.append(Finding("end_of_service", "warn", eos.source, f"the target {version} {when}"))
    return findings


def check_caveats(engine: Engine, current: str, target: str) -> list[Finding]:
    return [
        Finding("caveat", "warn" if c.grade == "warn" else "info", c.source, f"{c.name}: {c.text}")
        for c in runbook.caveats(engine.name, current, target)
    ]


def can_go(engine: Engine, attributes: Mapping[str, Any], target: str) -> bool:
    """Whether the describe (or a list item) leaves the upgrade to ``target`` possible: not at it,
    and neither the state nor the deployment mode blocks. ``assess`` asks its per-instance reads
    only then, and a plan reads ahead only for these instances."""
    if str(attributes.get(engine.version_key)) == target:
        return False
    found = check_state(engine, attributes, target) + check_mode(engine, attributes, target)
    return not any(finding.grade == "block" for finding in found)


# -- the report ----------------------------------------------------------------------------------


def assess(
    engine: Engine,
    instance_id: str,
    target: str,
    call: Call,
    *,
    region: str,
    now: datetime,
    policy: BackupPolicy,
    effective: str = "immediate",
    window: Window | None = None,
    window_policy: str = "reject",
    attributes: Mapping[str, Any] | None = None,
    checks: Iterable[str] = ALL_CHECKS,
) -> Readiness:
    """Run ``checks`` for one instance. ``attributes``: its describe, when the caller has it (else
    described here). A call that fails is a ``block`` finding naming the API (fail closed)."""
    wanted = set(checks)
    findings: list[Finding] = []
    unread: list[CloudError] = []
    fresh: backup.BackupSet | None = None
    needed = False

    def guarded(check: str, source: str, run: Callable[[], list[Finding]]) -> None:
        try:
            findings.extend(run())
        except CloudError as error:
            unread.append(error)
            findings.append(
                Finding(
                    check,
                    "block",
                    source,
                    f"could not be read ({error.code}: {error.message[:160]}); fails closed",
                )
            )

    if attributes is None and wanted & {"state", "mode", "offered", "window", "end_of_service", "caveat"}:
        try:
            body = call(engine.describe_action, {engine.id_param: instance_id, **engine.describe_extra})
            items = dig(body, engine.describe_path)
            attributes = items[0] if items else None
            if attributes is None:
                findings.append(Finding("state", "block", engine.describe_action, "instance not found"))
        except CloudError as error:
            if not error.instance_not_found:
                unread.append(error)
            text = (
                "instance not found"
                if error.instance_not_found
                else f"could not be read ({error.code}); fails closed"
            )
            findings.append(Finding("state", "block", engine.describe_action, text))
        if attributes is None:  # nothing else is worth asking about an instance that cannot be described
            return Readiness(instance_id, engine.name, target, None, tuple(findings), unread=tuple(unread))
    current = str(attributes.get(engine.version_key)) if attributes is not None else None
    if attributes is not None:
        if "state" in wanted:
            findings.extend(check_state(engine, attributes, target))
        if "mode" in wanted:
            findings.extend(check_mode(engine, attributes, target))
    at_target = current == target
    # An instance its describe already rules out (at the target, or a state or mode block) is a
    # no-op or blocked whatever the per-instance reads would say: none is asked (issue #15).
    ruled_out = at_target or any(finding.grade == "block" for finding in findings)
    if "offered" in wanted and current is not None and not ruled_out:
        guarded(
            "offered",
            engine.gate_action or engine.available_action or "-",
            lambda: check_offered(engine, call, instance_id, current, target),
        )
    if "operations" in wanted and not ruled_out:
        guarded(
            "operations",
            engine.operations_action,
            lambda: check_operations(engine, call, instance_id, region),
        )
    if "tasks" in wanted and not ruled_out:
        guarded("tasks", engine.history_action, lambda: check_tasks(engine, call, instance_id, now))
    if "backup" in wanted and not ruled_out:

        def backup_check() -> list[Finding]:
            nonlocal fresh, needed
            found, fresh, needed = check_backup(engine, call, instance_id, policy, now)
            return found

        guarded("backup", engine.backups_action, backup_check)
    if "window" in wanted and not at_target:
        findings.extend(check_window(engine, attributes, effective, window, window_policy, now))
    if current is not None and not at_target:
        if "end_of_service" in wanted:
            findings.extend(check_end_of_service(engine, current, target, now))
        if "caveat" in wanted:
            findings.extend(check_caveats(engine, current, target))
    return Readiness(
        instance_id,
        engine.name,
        target,
        current,
        tuple(findings),
        fresh_backup_id=fresh.backup_id if fresh is not None else None,
        needs_backup=needed,
        unread=tuple(unread),
    )


def _items(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = body.get("Items")
    if isinstance(items, Mapping):  # some gateways wrap lists once more
        items = next(iter(items.values()), [])
    return [item for item in items or [] if isinstance(item, Mapping)]


def _order(version: str) -> tuple[int, ...]:
    try:
        return version_key(version)
    except ValueError:
        return (0,)
