"""A rollout's progress and summary: what ``status`` prints and the ``rollout.*`` notification carries.

The summary notification (one per ending) is ``rollout.completed`` or ``rollout.halted`` (a cancel
is a halt with its reason). Its MessageTag is the event cut to MNS's 16 characters
(``rollout.complete``, ``rollout.halted``): subscriptions filter on that.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any

from dbupgrade import clock
from dbupgrade.rollouts.model import (
    ERROR_STATES,
    IN_FLIGHT_STATES,
    STATES,
    RolloutMeta,
    RolloutSpec,
    TargetState,
)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def summarize(
    spec: RolloutSpec, meta: RolloutMeta, states: dict[str, TargetState], now: float | None = None
) -> dict[str, Any]:
    """Counts per state, failures with their codes, wave, ETA and durations."""
    now = clock.now() if now is None else now
    ordered = [states[t["instance_id"]] for t in spec.targets]
    counts = Counter(s.state for s in ordered)
    total, done = len(ordered), sum(s.terminal for s in ordered)
    in_flight = sum(counts[state] for state in IN_FLIGHT_STATES)
    ended = meta.status != "running" and in_flight == 0
    elapsed = (meta.finished_at or now) - meta.started_at
    eta = None
    if meta.status == "running" and 0 < done < total:
        eta = round(elapsed / done * (total - done), 1)
    upgrades = [
        s.finished_at - s.dispatched_at
        for s in ordered
        if s.state == "completed" and s.finished_at is not None and s.dispatched_at is not None
    ]
    return {
        "rollout_id": spec.rollout_id,
        "status": meta.status,
        "ended": ended,
        "reason": meta.reason,
        "targets": total,
        "done": done,
        "in_flight": in_flight,
        "counts": {state: counts[state] for state in STATES if counts[state]},
        "errors": sum(counts[state] for state in ERROR_STATES),
        "max_errors": spec.max_errors,
        "max_in_flight": spec.max_in_flight,
        "window": spec.window,
        "wave": meta.wave,
        "waves": list(spec.waves),
        "wave_text": spec.wave_text,
        "started_at": _iso(meta.started_at),
        "finished_at": _iso(meta.finished_at),
        "duration_seconds": round(elapsed, 1),
        "eta_seconds": eta,
        "upgrade_seconds": {
            "count": len(upgrades),
            "mean": round(sum(upgrades) / len(upgrades), 1) if upgrades else None,
            "max": round(max(upgrades), 1) if upgrades else None,
        },
        "failures": [
            {
                "instance_id": s.instance_id,
                "state": s.state,
                "code": s.code,
                "reason": s.reason,
                "message": s.message,
            }
            for s in ordered
            if s.state in ERROR_STATES
        ],
        # Not errors: targets not tried for good (busy past their releases, outside the window).
        "deferred": [
            {"instance_id": s.instance_id, "code": s.code, "reason": s.reason, "message": s.message}
            for s in ordered
            if s.state == "deferred"
        ],
    }


def summary_message(summary: dict[str, Any]) -> dict[str, Any]:
    """The ``rollout.completed`` / ``rollout.halted`` notification body (version 1)."""
    event = "rollout.completed" if summary["status"] == "completed" else "rollout.halted"
    fields = {k: v for k, v in summary.items() if k not in ("ended", "eta_seconds", "in_flight")}
    return {"version": 1, "event": event, **fields, "at": _iso(clock.now())}
