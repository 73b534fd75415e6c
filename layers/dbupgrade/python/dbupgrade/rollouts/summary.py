"""A rollout's progress and summary: what ``status`` prints and the ``rollout.*`` notification carries.

The summary notification (one per ending) is ``rollout.completed`` or ``rollout.halted`` (a cancel
is a halt with its reason). Its MessageTag is the event cut to MNS's 16 characters
(``rollout.complete``, ``rollout.halted``): subscriptions filter on that.

``done`` counts targets that reached their end on their own (completed, noop and the error states);
``halted`` targets were stopped before they ran and are not done. ``headline`` says it in words:
``completed with 2 failed / 1 stuck`` is not a clean completion. ``rows`` is the per-target view;
``locations`` the per-location one (account x region: its counts, and why it halted or could not
even be listed).
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

from dbupgrade import clock
from dbupgrade.config import Window
from dbupgrade.rollouts.campaign import burndown, location_group
from dbupgrade.rollouts.model import (
    ERROR_STATES,
    IN_FLIGHT_STATES,
    STATES,
    RolloutMeta,
    RolloutSpec,
    TargetState,
    location_of,
)

DAY_SECONDS = 86400.0


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_opening(window: Window, moment: datetime) -> datetime:
    """The first moment at or after ``moment`` inside ``window`` (in the window's zone)."""
    local = moment.astimezone(window.zone)
    if window.contains(moment):
        return local
    opening = local.replace(hour=window.start.hour, minute=window.start.minute, second=0, microsecond=0)
    return opening if opening >= local else opening + timedelta(days=1)


def _open_seconds(window: Window) -> float:
    """How long the window stays open each day."""
    start = window.start.hour * 3600 + window.start.minute * 60
    end = window.end.hour * 3600 + window.end.minute * 60
    return float((end - start) % DAY_SECONDS)


def _headline(status: str, counts: Counter[str], in_flight: int, reason: str | None) -> str:
    # Deferred targets are not errors (they spend no budget) but were not upgraded: say so too.
    unfinished = (*sorted(ERROR_STATES), "deferred")
    errors = " / ".join(f"{counts[state]} {state}" for state in unfinished if counts[state])
    if status == "completed":
        return f"completed with {errors}" if errors else "completed"
    line = status + (f" - {reason}" if reason and status != "running" else "")
    if status != "running" and in_flight:
        line += f"; {in_flight} upgrades already sent are still in flight and finish on their own"
    return line


def _eta(
    spec: RolloutSpec, ordered: list[TargetState], now: float
) -> tuple[float | None, float | None, float | None]:
    """(seconds to the end, seconds one upgrade takes, epoch the closed window opens next).

    One upgrade's time is the mean of the completed ones (None before the first). What is left runs
    wave by wave - a wave starts once the one before it ended - each in batches of
    ``max_in_flight``; with a release window, the wait until it opens is added, and work longer than
    one night's window spills over to the next nights.
    """
    left = [s for s in ordered if not s.terminal]
    durations = [
        s.finished_at - s.dispatched_at
        for s in ordered
        if s.state == "completed" and s.finished_at is not None and s.dispatched_at is not None
    ]
    per_upgrade = sum(durations) / len(durations) if durations else None
    resumes_at = None
    wait = 0.0
    window = Window.parse(spec.window, "window") if spec.window else None
    if window is not None and left:
        moment = datetime.fromtimestamp(now, tz=timezone.utc)
        if not window.contains(moment):
            resumes_at = next_opening(window, moment).timestamp()
            wait = resumes_at - now
    if not left:
        return 0.0, per_upgrade, None
    if per_upgrade is None:
        return None, None, resumes_at
    by_wave = Counter(s.wave for s in left)
    rounds = sum(math.ceil(n / spec.max_in_flight) if spec.max_in_flight else 1 for n in by_wave.values())
    work = rounds * per_upgrade
    if window is not None:
        open_seconds = _open_seconds(window)
        work += math.floor(work / open_seconds) * (DAY_SECONDS - open_seconds)
    return wait + work, per_upgrade, resumes_at


def _locations(spec: RolloutSpec, meta: RolloutMeta, states: dict[str, TargetState]) -> list[dict[str, Any]]:
    """Per location (account x region): counts, and ``status`` running / done / halted (why:
    ``reason``) / unreachable (its fleet could not be listed: ``code``, ``reason``)."""
    groups: dict[str, dict[str, Any]] = {}
    for target in spec.targets:
        group = location_group(groups, target, ("targets", "done", "in_flight", "errors", "halted"))
        state = states[target["instance_id"]]
        group["targets"] += 1
        group["done"] += state.terminal and state.state != "halted"
        group["in_flight"] += state.state in IN_FLIGHT_STATES
        group["errors"] += state.state in ERROR_STATES
        group["halted"] += state.state == "halted"
    for location, group in groups.items():
        halted_why = meta.halted_locations.get(location)
        settled = group["done"] + group["halted"] == group["targets"]
        group["status"] = "halted" if halted_why else ("done" if settled else "running")
        group["code"], group["reason"] = None, halted_why
    unreachable = [
        {
            "location": location_of(u),
            "account_id": u.get("account_id"),
            "region": u.get("region"),
            "targets": 0,
            "done": 0,
            "in_flight": 0,
            "errors": 0,
            "halted": 0,
            "status": "unreachable",
            "code": u.get("code"),
            "reason": u.get("message"),
        }
        for u in spec.unreachable
    ]
    return sorted(groups.values(), key=lambda g: str(g["location"])) + unreachable


def _row(target: dict[str, Any], state: TargetState) -> dict[str, Any]:
    return {
        "instance_id": state.instance_id,
        "account_id": target.get("account_id"),
        "engine": target.get("engine"),
        "region": target.get("region"),
        "wave": state.wave,
        "state": state.state,
        "from_version": state.from_version,
        "to_version": target["target_version"],
        "request_id": state.request_id,
        "backup_id": state.backup_id,
        "released_at": _iso(state.dispatched_at),
        "finished_at": _iso(state.finished_at),
        "code": state.code,
        "reason": state.reason,
        "message": state.message,
    }


PROGRESS_FIELDS = ("progress", "remaining_seconds", "current_step", "hop", "hops")


def task_progress(followed: Any) -> dict[str, Any]:
    """A row's progress fields from its followed outcome (None each when nothing is followed)."""
    return {name: getattr(followed, name, None) for name in PROGRESS_FIELDS}


def summarize(
    spec: RolloutSpec, meta: RolloutMeta, states: dict[str, TargetState], now: float | None = None
) -> dict[str, Any]:
    """Counts per state, the headline, failures with their codes, wave, ETA, durations and rows."""
    now = clock.now() if now is None else now
    ordered = [states[t["instance_id"]] for t in spec.targets]
    counts = Counter(s.state for s in ordered)
    total = len(ordered)
    done = sum(s.terminal and s.state != "halted" for s in ordered)
    in_flight = sum(counts[state] for state in IN_FLIGHT_STATES)
    ended = meta.status != "running" and in_flight == 0
    elapsed = (meta.finished_at or now) - meta.started_at
    eta, per_upgrade, resumes_at = (
        _eta(spec, ordered, now) if meta.status == "running" else (None, None, None)
    )
    upgrades = [
        s.finished_at - s.dispatched_at
        for s in ordered
        if s.state == "completed" and s.finished_at is not None and s.dispatched_at is not None
    ]
    locations = _locations(spec, meta, states)
    headline = _headline(meta.status, counts, in_flight, meta.reason)
    stopped = [g for g in locations if g["status"] in ("halted", "unreachable")]
    if stopped:
        headline += "; " + ", ".join(f"{g['location']} {g['status']}" for g in stopped)
    return {
        "rollout_id": spec.rollout_id,
        "status": meta.status,
        "headline": headline,
        "ended": ended,
        "reason": meta.reason,
        "targets": total,
        "done": done,
        "halted": counts["halted"],
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
        "eta_seconds": None if eta is None else round(eta, 1),
        "resumes_at": _iso(resumes_at),
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
        "max_in_flight_per_location": spec.max_in_flight_per_location,
        "max_errors_per_location": spec.max_errors_per_location,
        "locations": locations,
        "apply_by": spec.apply_by,
        # A campaign's burn-down (dbupgrade.rollouts.campaign); None for a rollout without a date or tag waves.
        "burndown": burndown(spec, meta, states, now) if spec.apply_by or spec.wave_tags else None,
        "rows": [_row(target, states[target["instance_id"]]) for target in spec.targets],
    }


# Left out of the notification: live-only fields, and the per-target rows (a large fleet's rows
# would pass MNS's 64 KB message limit; ``failures`` names the targets that need a look).
NOT_NOTIFIED = ("ended", "eta_seconds", "resumes_at", "in_flight", "rows")


def summary_message(summary: dict[str, Any]) -> dict[str, Any]:
    """The ``rollout.completed`` / ``rollout.halted`` notification body (version 1)."""
    event = "rollout.completed" if summary["status"] == "completed" else "rollout.halted"
    fields = {k: v for k, v in summary.items() if k not in NOT_NOTIFIED}
    return {"version": 1, "event": event, **fields, "at": _iso(clock.now())}
