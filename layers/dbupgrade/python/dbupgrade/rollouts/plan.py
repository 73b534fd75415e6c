"""``plan``: what a rollout would do to each target, from the describe APIs alone.

Each target goes through the use case's own pre-check in dry-run mode (``Upgrader.run`` with
``dry_run=True``: never submit, record or notify), a few at a time. The preview runs on a
throw-away in-memory store with notifications off, so a plan needs no store and does not even drain
the notification outbox: it changes nothing anywhere.

Fleet scale (issue #15): the describe each pre-check starts from is read beforehand for the whole
manifest through the list APIs (``dbupgrade.fleet.read_instances``: 30 Redis instances a call, a
region's MongoDB listing 100 a page), so a plan of N targets makes O(N / page) list calls plus the
per-instance calls no list answers (Redis ``DescribeEngineVersion``, MongoDB
``DescribeAvailableEngineVersion``: each instance's own eligibility, which the docs tie to more than
its version - DTS tasks, network type, storage type - and ``DescribeBackups``, whose ``InstanceId``
is required), paced by the fleet-wide rate limit. The readiness report's task reads are list APIs
too: ``DescribeHistoryTasks`` is asked for 30 instances a call and ``DescribeActiveOperationTasks``
once per region listing (``fleet.read_live_tasks`` / ``read_booked_events``). An instance its list
item already rules out (at the target, not ready, a downgrade, the wrong deployment mode:
``readiness.can_go``) gets no per-instance read at all. So a plan of N ready targets costs about
2N per-instance calls (N of each action) plus O(N / 30) list calls, and it takes about N / q seconds
for q the per-second quota of its slowest per-instance action (``dbupgrade.ratelimit``: the
published quota, per account, region and action): the rate limit, not the plan, sets that bound.
The quota is per region, so each location (account x region) is read by its own workers, all
locations at once: a fleet spread over k regions plans in the time of its largest region, not the
sum of them.

A plan that takes long says so first and then how far it got: ``progress`` (a ``PlanProgress``)
hears the estimate once the list reads are in - the per-instance reads left and the least time the
rate limits allow them (``Estimate``: the slowest action's count over its ceiling, per location,
locations at once) - and then each target as its check ends.

The preview reads the same configuration the functions do (the Upgrader's: window, policy, scope),
so each row also says *when* the upgrade would start - ``immediate``, ``maintenance window`` (the
instance's own, the cloud schedules it), or ``deferred until <the window's next opening>`` - and the
plan sums the rows that would spend a rollout's error budget (``predicted_errors``). Each row carries
the readiness report of its target (``verdict`` go / warn / blocked and its ``findings``): the same
report ``dbupgrade check`` prints.

``locations`` says per location (account x region) what the plan found: its targets and actions,
or, for a location whose fleet could not be listed (``unreachable``, from ``select_locations``),
why - the member's role missing, say.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from dbupgrade import clock, hops, readiness
from dbupgrade.cloudapi import CloudError
from dbupgrade.config import Config, Window
from dbupgrade.context import adapt_context
from dbupgrade.engines import ENGINES, Engine
from dbupgrade.fleet import Answer, Read, read_booked_events, read_instances, read_live_tasks
from dbupgrade.model import UpgradeRequest
from dbupgrade.ratelimit import RateLimits
from dbupgrade.request import parse_request
from dbupgrade.rollouts.model import location_of
from dbupgrade.rollouts.summary import next_opening
from dbupgrade.store import MemoryStore
from dbupgrade.usecase import Upgrader

if TYPE_CHECKING:
    from dbupgrade.usecase import _Job

PLAN_CONCURRENCY = 8  # per location: its reads wait on that location's own rate-limit buckets
# Locations read at once (each with its own PLAN_CONCURRENCY workers): bounds the threads of a plan
# over many accounts and regions; the rest wait for a free slot.
LOCATIONS_AT_ONCE = 16
# The use case's verdict -> what a rollout would do.
ACTIONS = {
    "submitted": "submit",
    "noop": "noop",
    "in_progress": "in_progress",
    "rejected": "reject",
    "deferred": "defer",
    "failed": "error",
}
# Actions whose target ends in a state that spends the error budget (rollouts.model.ERROR_STATES).
BUDGET_ACTIONS = frozenset({"reject", "defer", "error"})


@dataclass(frozen=True)
class Estimate:
    """The per-instance reads a plan has left once its list reads are in, and the least time the
    rate limits allow them: ``seconds`` is the slowest (location, action)'s reads over its ceiling.

    >>> Estimate(10_000, 1000.0, "DescribeBackups at 10/s in cn-hangzhou").seconds
    1000.0
    """

    targets: int  # targets whose checks read per instance (the others are answered by the lists)
    seconds: float
    slowest: str | None  # "DescribeBackups at 10/s in cn-hangzhou": the read that sets ``seconds``


class PlanProgress(Protocol):
    """What a plan tells its caller while it runs (the CLI draws it; ``plan`` works without)."""

    def started(self, estimate: Estimate, total: int) -> None:
        """The list reads are in; ``total`` targets' checks start now."""

    def checked(self, done: int, total: int) -> None:
        """One more target's check has ended (called from the plan's worker threads)."""


def estimate(
    upgrader: Upgrader, requests: Sequence[UpgradeRequest], reads: Mapping[str, Read], context: Any = None
) -> Estimate:
    """How many targets still read per instance and how long that takes at least at the rate limits.

    A target its list item rules out reads nothing more (``_can_go``); one the lists did not answer
    (a member account's, say) describes itself too. Each read action has its own ceiling
    (``RateLimits.ceiling``, per location); locations are read at once.
    """
    limiter = upgrader.cloud.limiter
    limits: RateLimits = limiter.limits if limiter is not None else RateLimits.from_env()
    ctx = adapt_context(context)
    config = upgrader.config
    backups = config.backup.mode != "off"
    # (account, region, product, action) -> reads: each its own bucket (dbupgrade.ratelimit)
    calls: Counter[tuple[str | None, str, str, str]] = Counter()
    targets = 0
    for request in requests:
        engine = ENGINES.get(str(request.engine))
        region = request.region or config.region or ctx.region or "-"
        if engine is None or not _in_scope(config, request.instance_id, region):
            continue  # the pre-check refuses it before any call
        read = reads.get(request.instance_id)
        if read is not None and not _can_go(engine, read, request.target_version):
            continue
        targets += 1
        actions = [engine.available_action] if engine.available_action else []
        actions += [engine.backups_action] if backups else []
        actions += [engine.describe_action] if read is None else []
        for action in actions:
            calls[(request.account_id, region, engine.product, action)] += 1
    seconds, slowest = 0.0, None
    for (_, region, product, action), count in calls.items():
        rate = limits.ceiling(action, product)
        if count / rate > seconds:
            seconds, slowest = count / rate, f"{action} at {rate:g}/s in {region}"
    return Estimate(targets, seconds, slowest)


def _when(outcome: Any, window: Window | None, now: datetime) -> str:
    if outcome.status not in ("submitted", "deferred"):
        return "-"
    if outcome.status == "deferred" and window is not None:
        return f"deferred until {next_opening(window, now).strftime('%Y-%m-%d %H:%M %Z')}"
    if outcome.effective == "maintenance_window":
        return "maintenance window"
    return "immediate"


def plan(
    upgrader: Upgrader,
    targets: Sequence[dict[str, Any]],
    *,
    concurrency: int = PLAN_CONCURRENCY,
    context: Any = None,
    unreachable: Sequence[dict[str, Any]] = (),
    label: str | None = None,
    progress: PlanProgress | None = None,
) -> dict[str, Any]:
    """Per target: current version, verdict (submit / noop / in_progress / reject / defer / error) and
    why; plus totals. ``targets`` are validated request fields (``dbupgrade.rollouts.targets``)."""
    preview = _ReadAhead(
        replace(upgrader.config, topic=None), MemoryStore(), cloud=upgrader.cloud, notifier=None
    )
    # ``label`` (the rollout to be) names the member accounts' role sessions of the preview.
    named = {"rollout_id": label} if label else {}
    requests = [parse_request({**target, **named, "dry_run": True}, source="cli") for target in targets]
    preview.reads, preview.answers = read_ahead(upgrader, requests, context)
    now = clock.utcnow()
    by_location: dict[str, list[int]] = {}
    for index, target in enumerate(targets):
        by_location.setdefault(location_of(target), []).append(index)
    outcomes: list[Any] = [None] * len(requests)
    done = 0
    counting = threading.Lock()
    if progress is not None:
        progress.started(estimate(upgrader, requests, preview.reads, context), len(requests))

    def check(index: int) -> Any:
        nonlocal done
        outcome = preview.run(requests[index], context)
        if progress is not None:
            with counting:
                done += 1
                progress.checked(done, len(requests))
        return outcome

    def run_location(indexes: list[int]) -> None:
        with ThreadPoolExecutor(max(1, min(concurrency, len(indexes)))) as pool:
            found = pool.map(check, indexes)
            for index, outcome in zip(indexes, found, strict=True):
                outcomes[index] = outcome

    with ThreadPoolExecutor(max(1, min(LOCATIONS_AT_ONCE, len(by_location)))) as locations_pool:
        list(locations_pool.map(run_location, by_location.values()))
    rows = [
        {
            "instance_id": outcome.instance_id,
            "engine": outcome.engine,
            "region": outcome.region,
            "current_version": outcome.from_version,
            "target_version": outcome.to_version,
            "action": ACTIONS.get(outcome.status, outcome.status),
            "reason": None if outcome.reason == "dry_run" else outcome.reason,
            "code": outcome.code,
            "message": outcome.message,
            "when": _when(outcome, upgrader.config.window, now),
            "account_id": target.get("account_id"),
            # A multi-hop upgrade (dbupgrade.hops): every version on the way, and how long it may take.
            "path": outcome.path,
            "expected_seconds": hops.expected_seconds(outcome.hops) if outcome.hops else None,
            # The readiness report (dbupgrade.readiness): go / warn / blocked and its findings; None
            # when the request was refused before any check (outside the window, out of scope).
            "verdict": (outcome.readiness or {}).get("verdict"),
            "findings": (outcome.readiness or {}).get("findings", []),
        }
        for outcome, target in zip(outcomes, targets, strict=True)
    ]
    locations: dict[str, dict[str, Any]] = {}
    for row in rows:
        location = location_of(row)
        group = locations.setdefault(
            location,
            {"location": location, "account_id": row["account_id"], "region": row["region"], "targets": 0},
        )
        group.update(status="reachable", code=None, reason=None)
        group["targets"] += 1
        group.setdefault("totals", Counter())[row["action"]] += 1
    found = [{**g, "totals": dict(sorted(g["totals"].items()))} for _, g in sorted(locations.items())]
    found += [
        {
            "location": location_of(u),
            "account_id": u.get("account_id"),
            "region": u.get("region"),
            "targets": 0,
            "status": "unreachable",
            "code": u.get("code"),
            "reason": u.get("message"),
            "totals": {},
        }
        for u in unreachable
    ]
    totals = Counter(row["action"] for row in rows)
    window = upgrader.config.window
    return {
        "targets": len(rows),
        "totals": dict(sorted(totals.items())),
        "window": window.text if window else None,
        "window_policy": upgrader.config.window_policy if window else None,
        "predicted_errors": sum(row["action"] in BUDGET_ACTIONS for row in rows),
        "locations": found,
        "verdicts": dict(sorted(Counter(row["verdict"] or "-" for row in rows).items())),
        "rows": rows,
    }


class _ReadAhead(Upgrader):
    """The preview's use case, its describes answered from the reads made for the whole manifest."""

    reads: dict[str, Read]  # set before the first run
    answers: dict[tuple[str, str], Answer]  # (action, instance id) -> its body, or why it is unread

    def _describe(self, job: _Job) -> tuple[dict[str, Any] | None, str | None]:
        read = self.reads.get(job.request.instance_id)
        if read is None:
            return super()._describe(job)
        if read.error is not None:
            raise read.error
        return read.attributes, read.request_id

    def _call(self, job: _Job, action: str, params: Mapping[str, str]) -> dict[str, Any]:
        """A readiness read the plan made for the whole group is answered from it; a group read
        that failed raises its error here, so the check it feeds fails closed."""
        answer = self.answers.get((action, job.request.instance_id))
        if answer is None:
            return super()._call(job, action, params)
        if isinstance(answer, CloudError):
            raise answer
        return answer


def read_ahead(
    upgrader: Upgrader, requests: Sequence[UpgradeRequest], context: Any = None
) -> tuple[dict[str, Read], dict[tuple[str, str], Answer]]:
    """The targets in scope, read through the list APIs per (engine, region): instance id -> ``Read``;
    and the readiness report's task reads for the ones that can go (``readiness.can_go``), one
    ``DescribeHistoryTasks`` per 30 and one ``DescribeActiveOperationTasks`` listing per region:
    (action, instance id) -> the body the instance's own call would carry, or its group's error.

    Out-of-scope targets are left out (the pre-check refuses them without a call), and so are the
    ones no list answered: their checks make their own calls.
    """
    ctx = adapt_context(context)
    config: Config = upgrader.config
    groups: dict[tuple[str, str], list[str]] = {}
    for request in requests:
        region = request.region or config.region or ctx.region
        if not region or request.engine not in ENGINES:
            continue
        if not _in_scope(config, request.instance_id, region):
            continue
        if request.account_id:  # a member's instance is read through its role, by its own describe
            continue
        groups.setdefault((str(request.engine), region), []).append(request.instance_id)
    credentials = upgrader.cloud.credentials(ctx.credentials)
    targets = {request.instance_id: request.target_version for request in requests}
    now = upgrader._now()
    since = (now - timedelta(days=readiness.HISTORY_DAYS)).strftime(readiness.TIME_FORMAT)
    until = (now + timedelta(days=readiness.HISTORY_DAYS)).strftime(readiness.TIME_FORMAT)
    reads: dict[str, Read] = {}
    answers: dict[tuple[str, str], Answer] = {}

    def read_group(group: tuple[tuple[str, str], list[str]]) -> None:
        (name, region), instance_ids = group
        engine = ENGINES[name]
        found = read_instances(
            upgrader.cloud, engine, region, instance_ids, credentials, deadline=ctx.deadline
        )
        reads.update(found)
        going = [i for i in instance_ids if _can_go(engine, found.get(i), targets[i])]
        if not going:
            return
        tasks = read_live_tasks(
            upgrader.cloud,
            engine,
            region,
            going,
            credentials,
            statuses=readiness.LIVE_TASK_STATUSES,
            since=since,
            until=until,
            deadline=ctx.deadline,
        )
        events = read_booked_events(upgrader.cloud, engine, region, going, credentials, deadline=ctx.deadline)
        answers.update({(engine.history_action, i): answer for i, answer in tasks.items()})
        answers.update({(engine.operations_action, i): answer for i, answer in events.items()})

    # Each (engine, region) is paced by its own region's buckets: the groups are read at once.
    with ThreadPoolExecutor(max(1, min(LOCATIONS_AT_ONCE, len(groups)))) as pool:
        list(pool.map(read_group, groups.items()))
    return reads, answers


def _in_scope(config: Config, instance_id: str, region: str) -> bool:
    """Whether the scope guard (DBUPGRADE_ALLOWED_INSTANCES / _REGIONS) lets the pre-check call."""
    if config.allowed_instances is not None and instance_id not in config.allowed_instances:
        return False
    return config.allowed_regions is None or region in config.allowed_regions


def _can_go(engine: Engine, read: Read | None, target: str) -> bool:
    """Whether the readiness report will ask this instance's task reads (its first hop's target)."""
    if read is None or not read.found or read.attributes is None:
        return False
    path = hops.path_to(engine, str(read.attributes.get(engine.version_key)), target)
    return readiness.can_go(engine, read.attributes, path[1] if path else target)
