"""Completion tracking: what became of every submitted upgrade, told once.

The upgrade APIs answer as soon as the request is accepted; the upgrade itself takes minutes to
hours, or waits for the instance's maintenance window. The tracker (a Timer function, once a
minute) describes every in-flight upgrade — latest recorded outcome ``submitted``, ``in_progress``
or ``scheduled`` — and records and notifies the transition it finds:

==============  =====================================================================================
``completed``   ready again AND ``EngineVersion`` is the target (a status back to ready alone proves
                nothing: a window booking shows ready at the old version until the window opens);
                ``duration_seconds`` from the upgrade's start (submission, or the window's opening)
``failed``      a failure status (Redis ``Error``...), the instance gone, or back to ready at the old
                version after the tracker saw it upgrading (rolled back)
``stuck``       still not done this long after its start: ``DBUPGRADE_STUCK_AFTER`` (JSON, seconds per
                engine), default 2 h Redis / 6 h MongoDB. Final: the tracker stops watching and an
                operator takes over
``scheduled``   a maintenance-window upgrade whose window has not opened yet (told once; the tracker
                keeps following it to ``completed``)
==============  =====================================================================================

The tracker follows each instance's followed in-flight outcome (``Store.following``: the latest
submission, or its ``scheduled``), not its latest outcome: a refusal or a deferral recorded for the
instance later (another request) never stops it following the running upgrade. Each instance is
checked under a lock in the store (held no longer than the invocation's deadline) and its followed
outcome is re-read under that lock; the transition is written compare-and-set against it, so
overlapping ticks record and notify a transition once, and a tick racing a new submission keeps
the newer one (and follows it). A transition that ends the upgrade releases the instance's claim in
the same write.

A tick also delivers the notification outbox (requests leave it alone: they only probe the store)
and advances every active rollout (releasing the next wave once the previous one is over). The drain
goes first, in batches, and stops ``OUTBOX_RESERVE_SECONDS`` before the invocation's deadline so the
checks and the rollouts keep their time; what it leaves waits for the next tick, in order.

"Now" is the later of the wall clock and the Timer event's ``triggerTime``: the same in FC, and on
``dbupgrade local up`` the emulated clock that fires the timer.

Example::

    tracker = Tracker(Upgrader.from_env())
    summary = tracker.tick(context)   # {"checked": 12, "transitions": [...], "drained": 0, "outbox_left": 0, ...}
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from dbupgrade import clock, gate
from dbupgrade.cloudapi import CloudError
from dbupgrade.context import InvocationContext, adapt_context
from dbupgrade.engines import ENGINES, Engine, dig
from dbupgrade.errors import ConfigError
from dbupgrade.logging import bind_invocation, logger
from dbupgrade.model import IN_FLIGHT_STATUSES, Outcome, Status
from dbupgrade.store import Locked, keys
from dbupgrade.usecase import Upgrader

STUCK_AFTER_VARIABLE = "DBUPGRADE_STUCK_AFTER"
DEFAULT_STUCK_AFTER_SECONDS: Mapping[str, float] = {
    name: engine.stuck_after_seconds for name, engine in ENGINES.items()
}
SEEN_UPGRADING_SECONDS = 7 * 24 * 3600
LOCK_MARGIN_SECONDS = 30
# Left of the invocation for advancing the rollouts: checks stop this long before the deadline.
ROLLOUT_RESERVE_SECONDS = 60
# Left of the invocation for the checks and the rollouts: the outbox drain stops this long before it.
OUTBOX_RESERVE_SECONDS = ROLLOUT_RESERVE_SECONDS + 60
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class TrackerSettings:
    stuck_after: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_STUCK_AFTER_SECONDS))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TrackerSettings:
        """``DBUPGRADE_STUCK_AFTER='{"redis": 7200, "mongodb": 21600}'`` (seconds; either may be left out)."""
        env = os.environ if env is None else env
        text = env.get(STUCK_AFTER_VARIABLE, "").strip()
        stuck_after = dict(DEFAULT_STUCK_AFTER_SECONDS)
        if not text:
            return cls(stuck_after)
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            raw = None
        if not isinstance(raw, dict):
            raise ConfigError(
                STUCK_AFTER_VARIABLE, 'expected a JSON object like {"redis": 7200, "mongodb": 21600}'
            )
        for engine, seconds in raw.items():
            if engine not in ENGINES:
                raise ConfigError(
                    STUCK_AFTER_VARIABLE, f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}"
                )
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
                raise ConfigError(STUCK_AFTER_VARIABLE, f"{engine}: expected a positive number of seconds")
            stuck_after[engine] = float(seconds)
        return cls(stuck_after)


def parse_time(text: str) -> datetime:
    """An outcome's ``at`` (RFC 3339 UTC, as ``Outcome`` writes it) or a Timer ``triggerTime``."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def tick_time(event: bytes | str | None) -> datetime:
    """The tick's "now": the later of the clock (``dbupgrade.clock``) and the Timer event's ``triggerTime``."""
    now = clock.utcnow()
    try:
        envelope = json.loads(event or b"{}")
        fired = parse_time(str(envelope["triggerTime"]))
    except (ValueError, TypeError, KeyError):  # invoked by hand, without a Timer envelope
        return now
    return max(now, fired)


def window_opening(moment: datetime, start: str, end: str) -> datetime:
    """The first moment at or after ``moment`` inside the daily window ``HH:MMZ``-``HH:MMZ`` (UTC)."""
    start_time = datetime.strptime(start, "%H:%MZ").time()
    end_time = datetime.strptime(end, "%H:%MZ").time()
    clock = moment.time().replace(tzinfo=None)
    if start_time < end_time:
        inside = start_time <= clock < end_time
    else:  # wraps midnight (or a whole day when equal)
        inside = clock >= start_time or clock < end_time
    if inside:
        return moment
    opening = datetime.combine(moment.date(), start_time, tzinfo=timezone.utc)
    return opening if opening >= moment else opening + timedelta(days=1)


# Assumption: a maintenance window is daily, so without its bounds in the describe a booking is
# expected to start within a day of being made (no doc states the bounds are always returned).
UNKNOWN_WINDOW_GRACE = timedelta(days=1)


def awaited_opening(submitted: datetime, now: datetime, attributes: Mapping[str, Any]) -> datetime:
    """When a booked, not yet started upgrade is due: the first window opening after the booking
    while that is still ahead; then the opening of the window open now, or the next one when it is
    closed (a booking whose window has not opened again is waiting, not stuck)."""
    start, end = attributes.get("MaintainStartTime"), attributes.get("MaintainEndTime")
    if not (isinstance(start, str) and isinstance(end, str)):
        return submitted + UNKNOWN_WINDOW_GRACE
    try:
        first = window_opening(submitted, start, end)
        if now < first:
            return first
        upcoming = window_opening(now, start, end)
        if upcoming > now:
            return upcoming
        opening = datetime.combine(now.date(), datetime.strptime(start, "%H:%MZ").time(), tzinfo=timezone.utc)
        return max(first, opening if opening <= now else opening - timedelta(days=1))
    except ValueError:
        return submitted


@dataclass
class _Watch:
    """One in-flight upgrade: its latest outcome and the submission it follows."""

    latest: Outcome
    submission: Outcome
    engine: Engine

    @property
    def submitted_at(self) -> datetime:
        return parse_time(self.submission.at)


class Tracker:
    """One tick at a time: ``tick`` (see the module docstring)."""

    def __init__(self, upgrader: Upgrader, settings: TrackerSettings | None = None) -> None:
        self.upgrader = upgrader
        self.settings = settings or TrackerSettings.from_env()

    def tick(self, context: Any = None, now: datetime | None = None) -> dict[str, Any]:
        """Drain the outbox, check every in-flight upgrade, advance the rollouts; a JSON-able summary."""
        ctx = adapt_context(context)
        bind_invocation(ctx)
        now = now or clock.utcnow()
        drained = self.upgrader.drain_outbox(ctx, deadline=ctx.deadline - OUTBOX_RESERVE_SECONDS)
        transitions: list[dict[str, Any]] = []
        watched = list(self.in_flight())
        # A tick cut short by its deadline leaves a different remainder to the next one.
        random.shuffle(watched)
        checked = 0
        for latest in watched:
            if ctx.remaining_seconds() < ROLLOUT_RESERVE_SECONDS:
                logger.warning("tick out of time", extra={"unchecked": len(watched) - checked})
                break
            checked += 1
            outcome = self._check(latest, ctx, now)
            if outcome is not None:
                transitions.append(
                    {"instance_id": outcome.instance_id, "status": outcome.status, "reason": outcome.reason}
                )
        rollouts = self._advance_rollouts(ctx)
        summary = {
            "checked": checked,
            "unchecked": len(watched) - checked,
            "transitions": transitions,
            "drained": drained,
            "outbox_left": self.upgrader.store.outbox_size(),
            "notifications_set_aside": self.upgrader.store.set_aside_size(),
            "rollouts": rollouts,
        }
        logger.info("tracker tick", extra={"checked": checked, "transitions": len(transitions)})
        return summary

    def in_flight(self) -> Iterator[Outcome]:
        """The followed in-flight outcomes, read from the store (none without a shared store)."""
        if self.upgrader.store.redis is None:
            logger.warning("no shared store: upgrades cannot be tracked across invocations")
            return
        for outcome in self.upgrader.store.followed():
            if outcome.status in IN_FLIGHT_STATUSES and outcome.engine in ENGINES:
                yield outcome

    # -- one instance ---------------------------------------------------------------------------

    def _check(self, seen: Outcome, ctx: InvocationContext, now: datetime) -> Outcome | None:
        store = self.upgrader.store
        seconds = ctx.remaining_seconds() + LOCK_MARGIN_SECONDS
        try:
            with store.lock(keys.tracker_lock(seen.instance_id), seconds):
                followed = store.following(seen.instance_id)
                if followed is None or followed.to_dict() != seen.to_dict():
                    return (
                        None  # changed since it was read (another tick, a new request): next tick looks again
                    )
                if followed.status == "awaiting_backup":  # the backup gate: submits once it finished
                    return gate.after_backup(self.upgrader, followed, ctx, now)
                watch = _Watch(followed, self._submission(followed), ENGINES[str(followed.engine)])
                verdict = self._verdict(watch, ctx, now)
                if verdict is None:
                    return None
                outcome = self.upgrader.finish(verdict, ctx, follows=followed)
                if outcome is not None and outcome.status != "scheduled":
                    store.forget_upgrading(followed.instance_id, followed.to_version)
                return outcome
        except Locked:
            return None  # another tick is checking it right now

    def _submission(self, latest: Outcome) -> Outcome:
        """The ``submitted`` outcome this in-flight one follows (its start time and RequestId)."""
        if latest.status == "submitted":
            return latest
        # Its ``scheduled`` carries the submission's RequestId; other requests' outcomes may sit
        # in between, so the whole kept history is looked through.
        for outcome in self.upgrader.store.history(latest.instance_id):
            if (outcome.status, outcome.request_id, outcome.to_version) == (
                "submitted",
                latest.request_id,
                latest.to_version,
            ):
                return outcome
        return latest

    def _verdict(self, watch: _Watch, ctx: InvocationContext, now: datetime) -> Outcome | None:
        """The transition the instance's describe shows, or None while it is simply under way."""
        latest, engine = watch.latest, watch.engine
        try:
            attributes = self._describe(watch, ctx)
        except CloudError as error:
            if error.instance_not_found:
                return self._outcome(
                    watch, now, "failed", "not_found", error.code, "the instance disappeared"
                )
            # A wrong key or a missing permission says nothing about the upgrade: it is logged
            # (one line, what to fix) and the next tick looks again once an operator fixed it.
            log = logger.error if error.configuration else logger.warning
            log(
                "describe failed; the next tick retries",
                extra={"code": error.code, "error": error.explain(latest.instance_id)},
            )
            return None
        if attributes is None:
            return self._outcome(
                watch, now, "failed", "not_found", "InvalidInstanceId.NotFound", "the instance disappeared"
            )
        status = str(attributes.get(engine.status_key))
        version = str(attributes.get(engine.version_key))
        started = self._start(watch, attributes)
        overdue = now - started > timedelta(seconds=self.settings.stuck_after[engine.name])
        at = f"instance is {status} at {version}"
        if status in engine.failed_statuses:
            return self._outcome(
                watch, now, "failed", "upgrade_failed", "UpgradeFailed", f"upgrade failed: {at}"
            )
        if status in engine.ready_statuses and version == latest.to_version:
            duration = max(0.0, (now - started).total_seconds())
            return self._outcome(
                watch,
                now,
                "completed",
                "version_verified",
                None,
                f"upgraded from {watch.submission.from_version} to {version} (EngineVersion verified)",
                duration_seconds=round(duration, 1),
            )
        store = self.upgrader.store
        if status in engine.upgrading_statuses:
            store.mark_upgrading(latest.instance_id, latest.to_version, SEEN_UPGRADING_SECONDS)
        elif status in engine.ready_statuses and store.seen_upgrading(latest.instance_id, latest.to_version):
            return self._outcome(
                watch, now, "failed", "rolled_back", "UpgradeFailed", f"upgrade rolled back: {at}"
            )
        elif status in engine.ready_statuses and latest.effective == "maintenance_window":
            # Booked and not started: it waits for the window's next opening, however far the
            # clock jumped; only a window that opened and stayed quiet past the limit is stuck.
            started = awaited_opening(watch.submitted_at, now, attributes)
            overdue = now - started > timedelta(seconds=self.settings.stuck_after[engine.name])
        if status in engine.ready_statuses and now < started:
            if latest.status == "scheduled":
                return None
            return self._outcome(
                watch,
                now,
                "scheduled",
                "maintenance_window",
                None,
                f"waits for the maintenance window; starts at {started.strftime(TIME_FORMAT)}",
            )
        if overdue:
            reason = "timeout" if status in engine.upgrading_statuses else "not_started"
            limit = int(self.settings.stuck_after[engine.name])
            return self._outcome(
                watch, now, "stuck", reason, "UpgradeTimeout", f"not done {limit} s after it started: {at}"
            )
        return None

    def _describe(self, watch: _Watch, ctx: InvocationContext) -> dict[str, Any] | None:
        engine, latest = watch.engine, watch.latest
        region = latest.region or self.upgrader.config.region or ctx.region
        body = self.upgrader.cloud.call_with_retries(
            engine,
            str(region),
            engine.describe_action,
            {engine.id_param: latest.instance_id, **engine.describe_extra},
            self.upgrader.cloud.credentials(ctx.credentials),
            deadline=ctx.deadline,
        )
        items = dig(body, engine.describe_path)
        return items[0] if items else None

    @staticmethod
    def _start(watch: _Watch, attributes: Mapping[str, Any]) -> datetime:
        """When the upgrade starts: at submission, or when the maintenance window next opens."""
        submitted = watch.submitted_at
        start, end = attributes.get("MaintainStartTime"), attributes.get("MaintainEndTime")
        if watch.latest.effective != "maintenance_window" or not (
            isinstance(start, str) and isinstance(end, str)
        ):
            return submitted
        try:
            return window_opening(submitted, start, end)
        except ValueError:
            return submitted

    @staticmethod
    def _outcome(
        watch: _Watch,
        now: datetime,
        status: Status,
        reason: str,
        code: str | None,
        message: str,
        duration_seconds: float | None = None,
    ) -> Outcome:
        submission = watch.submission
        return Outcome(
            status=status,
            instance_id=submission.instance_id,
            to_version=watch.latest.to_version,
            engine=submission.engine,
            region=submission.region,
            from_version=submission.from_version,
            effective=submission.effective,
            request_id=submission.request_id,  # the upgrade API's: subscribers correlate on it
            ticket_id=submission.ticket_id,
            rollout_id=submission.rollout_id,
            source=submission.source,
            correlation_id=submission.correlation_id,
            reason=reason,
            code=code,
            message=message,
            duration_seconds=duration_seconds,
            backup_id=submission.backup_id,  # the gate's backup: what a rollback restores
            at=now.strftime(TIME_FORMAT),
        )

    # -- rollouts -------------------------------------------------------------------------------

    def _advance_rollouts(self, ctx: InvocationContext) -> list[dict[str, Any]]:
        from dbupgrade.rollouts import advance_all  # the rollout machinery only when a tick needs it

        return advance_all(self.upgrader, ctx)
