"""``plan``: what a rollout would do to each target, from the describe APIs alone.

Each target goes through the use case's own pre-check in dry-run mode (``Upgrader.run`` with
``dry_run=True``: describe, never submit, record or notify), a few at a time. The preview runs on a
throw-away in-memory store with notifications off, so a plan needs no store and does not even drain
the notification outbox: it changes nothing anywhere.

The preview reads the same configuration the functions do (the Upgrader's: window, policy, scope),
so each row also says *when* the upgrade would start - ``immediate``, ``maintenance window`` (the
instance's own, the cloud schedules it), or ``deferred until <the window's next opening>`` - and the
plan sums the rows that would spend a rollout's error budget (``predicted_errors``). Each row carries
the readiness report of its target (``verdict`` go / warn / blocked and its ``findings``): the same
report ``dbupgrade check`` prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any

from dbupgrade import clock
from dbupgrade.config import Window
from dbupgrade.request import parse_request
from dbupgrade.rollouts.summary import next_opening
from dbupgrade.store import MemoryStore
from dbupgrade.usecase import Upgrader

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
) -> dict[str, Any]:
    """Per target: current version, verdict (submit / noop / in_progress / reject / defer / error) and
    why; plus totals. ``targets`` are validated request fields (``dbupgrade.rollouts.targets``)."""
    preview = Upgrader(
        replace(upgrader.config, topic=None), MemoryStore(), cloud=upgrader.cloud, notifier=None
    )
    requests = [parse_request({**target, "dry_run": True}, source="cli") for target in targets]
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
            # The readiness report (dbupgrade.readiness): go / warn / blocked and its findings; None
            # when the request was refused before any check (outside the window, out of scope).
            "verdict": (outcome.readiness or {}).get("verdict"),
            "findings": (outcome.readiness or {}).get("findings", []),
        }
        for outcome in outcomes
    ]
    totals = Counter(row["action"] for row in rows)
    window = upgrader.config.window
    return {
        "targets": len(rows),
        "totals": dict(sorted(totals.items())),
        "window": window.text if window else None,
        "window_policy": upgrader.config.window_policy if window else None,
        "predicted_errors": sum(row["action"] in BUDGET_ACTIONS for row in rows),
        "verdicts": dict(sorted(Counter(row["verdict"] or "-" for row in rows).items())),
        "rows": rows,
    }
