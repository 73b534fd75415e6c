"""``plan``: what a rollout would do to each target, from the describe APIs alone.

Each target goes through the use case's own pre-check in dry-run mode (``Upgrader.run`` with
``dry_run=True``: describe, never submit, record or notify), a few at a time. The preview runs on a
throw-away in-memory store with notifications off, so a plan needs no store and does not even drain
the notification outbox: it changes nothing anywhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from dbupgrade.request import parse_request
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
        }
        for outcome in outcomes
    ]
    totals = Counter(row["action"] for row in rows)
    return {"targets": len(rows), "totals": dict(sorted(totals.items())), "rows": rows}
