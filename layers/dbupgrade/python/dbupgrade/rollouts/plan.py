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
its version - DTS tasks, network type, storage type), paced by the fleet-wide rate limit.

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

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dbupgrade import clock, hops
from dbupgrade.config import Config, Window
from dbupgrade.context import adapt_context
from dbupgrade.engines import ENGINES
from dbupgrade.fleet import Read, read_instances
from dbupgrade.model import UpgradeRequest
from dbupgrade.request import parse_request
from dbupgrade.rollouts.model import location_of
from dbupgrade.rollouts.summary import next_opening
from dbupgrade.store import MemoryStore
from dbupgrade.usecase import Upgrader

if TYPE_CHECKING:
    from dbupgrade.usecase import _Job

PLAN_CONCURRENCY = 8
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
) -> dict[str, Any]:
    """Per target: current version, verdict (submit / noop / in_progress / reject / defer / error) and
    why; plus totals. ``targets`` are validated request fields (``dbupgrade.rollouts.targets``)."""
    preview = _ReadAhead(
        replace(upgrader.config, topic=None), MemoryStore(), cloud=upgrader.cloud, notifier=None
    )
    # ``label`` (the rollout to be) names the member accounts' role sessions of the preview.
    named = {"rollout_id": label} if label else {}
    requests = [parse_request({**target, **named, "dry_run": True}, source="cli") for target in targets]
    preview.reads = read_ahead(upgrader, requests, context)
    now = clock.utcnow()
    with ThreadPoolExecutor(max(1, min(concurrency, len(requests)))) as pool:
        outcomes = list(pool.map(lambda request: preview.run(request, context), requests))
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

    def _describe(self, job: _Job) -> tuple[dict[str, Any] | None, str | None]:
        read = self.reads.get(job.request.instance_id)
        if read is None:
            return super()._describe(job)
        if read.error is not None:
            raise read.error
        return read.attributes, read.request_id


def read_ahead(
    upgrader: Upgrader, requests: Sequence[UpgradeRequest], context: Any = None
) -> dict[str, Read]:
    """The targets in scope, read through the list APIs per (engine, region): instance id -> ``Read``.

    Out-of-scope targets are left out (the pre-check refuses them without a call). A seam for other
    per-target reads a plan or a readiness check needs: group by (engine, region) the same way.
    """
    ctx = adapt_context(context)
    config: Config = upgrader.config
    groups: dict[tuple[str, str], list[str]] = {}
    for request in requests:
        region = request.region or config.region or ctx.region
        if not region or request.engine not in ENGINES:
            continue
        if config.allowed_instances is not None and request.instance_id not in config.allowed_instances:
            continue
        if config.allowed_regions is not None and region not in config.allowed_regions:
            continue
        if request.account_id:  # a member's instance is read through its role, by its own describe
            continue
        groups.setdefault((str(request.engine), region), []).append(request.instance_id)
    credentials = upgrader.cloud.credentials(ctx.credentials)
    reads: dict[str, Read] = {}
    for (engine, region), instance_ids in groups.items():
        reads.update(
            read_instances(
                upgrader.cloud, ENGINES[engine], region, instance_ids, credentials, deadline=ctx.deadline
            )
        )
    return reads
