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
instance later (another request) never stops it following the running upgrade. The in-flight
upgrades fall into ``TRACKER_SHARDS`` shards; a tick checks the shards no other tick holds, under
the store's lock of each (expiring before the invocation's deadline, so a killed tick leaves none
for the next), and each transition is written compare-and-set against the followed outcome it
read, so overlapping ticks record and notify a transition once, and a tick racing a new submission
keeps the newer one (and follows it). A transition that ends the upgrade releases the instance's
claim in the same write.

Fleet scale (issue #15): a tick reads its instances through the list APIs (``dbupgrade.fleet``:
30 Redis instances a ``DescribeInstances`` call, a region's MongoDB listing 100 a page) instead of
one describe each, the rollback marks with one HMGET per shard, and writes only what changed: its
Redis commands grow with the transitions and newly running upgrades, its cloud calls with the
fleet / page size. A booked (maintenance-window) upgrade is still described on its own: only the
describe carries the window's bounds. The transitions a chunk finds are recorded in batches
(``Upgrader.finish_many``): a batch's writes in one round trip, its notifications published 8 at
once, its outbox entries settled in one more, and one log line summing it up.

A tick also delivers the notification outbox (requests leave it alone: they only probe the store)
and advances every active rollout (releasing the next wave once the previous one is over), then
sends each campaign (a rollout with ``--apply-by``) its one burn-down digest of the day
(``dbupgrade.rollouts.campaign.send_digests``). The drain
goes first, in batches, and stops ``OUTBOX_RESERVE_SECONDS`` before the invocation's deadline so the
checks and the rollouts keep their time; what it leaves waits for the next tick, in order.

A multi-hop (MongoDB) upgrade is followed hop by hop (``dbupgrade.hops``): a hop is verified when
the instance is ready AT that hop's version; the tracker then submits the next one (``Chains``),
and only the last hop's verification records ``completed``. A tick that died between hops is
resumed from the chain's checkpoint without a second call for a hop already sent.

Each tick also reads the tasks of the upgrades it follows (``dbupgrade.progress``: DescribeHistoryTasks,
up to 30 instances a call) and keeps their progress %, remaining time and current step, shown on the
followed outcome - no history entry, no notification. The store keeps them, and the running marks,
one record per shard (``store.keys.tracker_progress``): a tick's news takes a command per shard, not
per upgrade. Completion is still only the version read back.

"Now" is the later of the wall clock and the Timer event's ``triggerTime``: the same in FC, and on
``dbupgrade local up`` the emulated clock that fires the timer.

Example::

    tracker = Tracker(Upgrader.from_env())
    summary = tracker.tick(context)   # {"checked": 12, "transitions": [...], "drained": 0, "outbox_left": 0, ...}
"""

from __future__ import annotations

import contextvars
import json
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from itertools import repeat
from typing import TYPE_CHECKING, Any, NamedTuple

from dbupgrade import clock, gate, progress
from dbupgrade.cloudapi import CloudError
from dbupgrade.context import InvocationContext, adapt_context
from dbupgrade.engines import ENGINES, Engine
from dbupgrade.errors import ConfigError
from dbupgrade.hops import Chain, Chains
from dbupgrade.logging import bind_invocation, logger
from dbupgrade.model import IN_FLIGHT_STATUSES, Outcome, Status
from dbupgrade.store import Locked, keys
from dbupgrade.usecase import Upgrader

if TYPE_CHECKING:
    from dbupgrade.fleet import Read

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


# In-flight upgrades a tick reads at once (list and task reads) before it looks at the clock again:
# a multiple of the list calls' 30 IDs, big enough that a MongoDB region listing (paged whatever
# the number wanted) is not repeated often, small enough that a tick cut short has finished shards.
CHUNK_TARGETS = 1500
# Verdicts concluded, and notifications published, at once: each publish waits on the network, so
# one at a time the tick that sees a 10,000-target wave finish spent ~24 s recording it. The store
# writes are batched instead (``Upgrader.finish_many``: each its own instance's compare-and-set, a
# batch one round trip); the notifier keeps one MNS client per thread.
CONCLUDE_CONCURRENCY = 8


@dataclass(frozen=True)
class TrackerSettings:
    """The tracker's tunables: when an upgrade counts as stuck, per engine, and how many targets a tick reads."""

    stuck_after: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_STUCK_AFTER_SECONDS))
    chunk_targets: int = CHUNK_TARGETS

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


# The in-flight upgrades are split into this many shards, each checked by one tick at a time
# (``keys.tracker_shard``: stable across processes; the store keeps the running marks per shard).
TRACKER_SHARDS = keys.TRACKER_SHARDS
shard_of = keys.tracker_shard


@dataclass
class _Watch:
    """One in-flight upgrade: its latest outcome, the submission it follows, what the cloud shows."""

    latest: Outcome
    submission: Outcome
    engine: Engine
    read: Read
    expected: str  # the version that proves it done: the target, or the hop's version in a chain

    @property
    def submitted_at(self) -> datetime:
        return parse_time(self.submission.at)


@dataclass(frozen=True)
class _Verdict:
    """A transition to record with the chunk's others (``Upgrader.finish_many``)."""

    outcome: Outcome
    follows: Outcome  # the followed outcome it concludes (compare-and-set)
    expected: str  # its running mark's version (``_Watch.expected``)
    chained: bool  # a hop of a multi-hop chain: its checkpoint goes once the chain ended


@dataclass
class _Marks:
    """The upgrades the tracker saw running (rollback detection): read once a tick, written once."""

    seen: set[tuple[str, str]]
    new: list[tuple[str, str]] = field(default_factory=list)

    def saw(self, upgrade: tuple[str, str]) -> None:
        if upgrade not in self.seen:
            self.seen.add(upgrade)
            self.new.append(upgrade)


class _ChunkReads(NamedTuple):
    """A chunk's reads under way: the task reads, and the instance reads with their running marks."""

    tasks: Future[dict[str, dict[str, Any]]]
    watches: Future[tuple[list[_Watch], _Marks]]


class Tracker:
    """One tick at a time: ``tick`` (see the module docstring)."""

    def __init__(self, upgrader: Upgrader, settings: TrackerSettings | None = None) -> None:
        self.upgrader = upgrader
        self.settings = settings or TrackerSettings.from_env()
        self.chains = Chains(upgrader)

    def tick(self, context: Any = None, now: datetime | None = None) -> dict[str, Any]:
        """Drain the outbox, check every in-flight upgrade, advance the rollouts; a JSON-able summary."""
        ctx = adapt_context(context)
        bind_invocation(ctx)
        now = now or clock.utcnow()
        drained = self.upgrader.drain_outbox(ctx, deadline=ctx.deadline - OUTBOX_RESERVE_SECONDS)
        watched = list(self.in_flight())
        transitions, checked, reads, elsewhere = self._check_shards(watched, ctx, now)
        rollouts = self._advance_rollouts(ctx, reads, elsewhere)
        digests = self._campaign_digests(rollouts, ctx, now)
        summary = {
            "checked": checked,
            "unchecked": len(watched) - checked,
            "transitions": transitions,
            "drained": drained,
            "outbox_left": self.upgrader.store.outbox_size(),
            "notifications_set_aside": self.upgrader.store.set_aside_size(),
            "rollouts": rollouts,
            "digests": digests,
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

    # -- the checks: shards, reads, verdicts -----------------------------------------------------

    def _check_shards(
        self, watched: list[Outcome], ctx: InvocationContext, now: datetime
    ) -> tuple[list[dict[str, Any]], int, dict[str, Read], set[str]]:
        """Check the in-flight upgrades of every shard no other tick holds; (transitions, checked,
        what the cloud showed of each instance read: the rollouts' completion checks reuse it, the
        instances of the shards another tick holds: that tick reads them, so this one's rollout
        round does not).

        Shards go in a fixed rotation starting at the store's cursor, ``settings.chunk_targets``
        upgrades at a time (each chunk's list reads and task reads at once, and the next chunk's
        reads while this one is concluded), until the checks must stop: the cursor then moves to the
        first shard this tick left unchecked (a chunk read ahead but not concluded counts as
        unchecked), so the next tick starts there and no shard is starved by ticks cut short. The shards' locks expire
        ``LOCK_MARGIN_SECONDS`` after the checks must stop, well before the invocation's deadline:
        a tick killed at its timeout leaves no lock for the next one to wait on.
        """
        store = self.upgrader.store
        shards: dict[int, list[Outcome]] = {}
        for outcome in watched:
            shards.setdefault(shard_of(outcome.instance_id), []).append(outcome)
        first = store.tracker_cursor() % TRACKER_SHARDS
        order = [
            (first + k) % TRACKER_SHARDS
            for k in range(TRACKER_SHARDS)
            if (first + k) % TRACKER_SHARDS in shards
        ]
        stop_at = ctx.deadline - ROLLOUT_RESERVE_SECONDS
        checks_ctx = replace(ctx, deadline=stop_at)
        transitions: list[dict[str, Any]] = []
        reads: dict[str, Read] = {}
        unchecked: list[int] = []  # held, in rotation order, not checked this tick
        elsewhere: set[str] = set()  # instances of the shards another tick is checking
        checked = 0
        with (
            ExitStack() as held,
            ThreadPoolExecutor(1, thread_name_prefix="tracker-tasks") as pool,
            ThreadPoolExecutor(1, thread_name_prefix="tracker-reads") as reading,
            ThreadPoolExecutor(CONCLUDE_CONCURRENCY, thread_name_prefix="tracker-conclude") as concluding,
        ):
            mine: list[int] = []
            for shard in order:
                if _out_of_time(ctx):
                    break
                seconds = ctx.remaining_seconds() - ROLLOUT_RESERVE_SECONDS + LOCK_MARGIN_SECONDS
                try:
                    held.enter_context(store.lock(keys.tracker_shard_lock(shard), seconds))
                except Locked:
                    elsewhere.update(o.instance_id for o in shards[shard])
                    continue  # another tick is checking that shard right now
                mine.append(shard)
            chunks = list(_chunks(mine, shards, self.settings.chunk_targets))

            def start_reads(chunk: list[int]) -> _ChunkReads:
                # The task reads (DescribeHistoryTasks) and the instance reads (the list APIs) are
                # paced by separate rate limits: run at once, a chunk takes the longer, not the sum.
                outcomes = [o for shard in chunk for o in shards[shard]]
                run = contextvars.copy_context().run  # the invocation's log keys on the reading thread
                return _ChunkReads(
                    pool.submit(progress.read, self.upgrader, outcomes, checks_ctx, now),
                    reading.submit(run, self._watch, outcomes, ctx, stop_at),
                )

            # One chunk read ahead: the next chunk's reads (mostly waiting for the rate limits'
            # tokens) go on while this one is concluded and recorded (mostly CPU: verdicts, the
            # MNS SDK's publishes), so a tick takes about the longer of the two a chunk, not the sum.
            # The shards' locks outlive the reads: the executors shut down (waiting) before ``held``.
            current = start_reads(chunks[0]) if chunks and not _out_of_time(ctx) else None
            for number, chunk in enumerate(chunks):
                if current is not None:  # waited for first: the deadline is judged with the read in
                    watches, marks = current.watches.result()
                    progress_of = current.tasks.result()
                if current is None or _out_of_time(ctx):
                    # A chunk read (ahead) but with no time left to conclude it is checked by the
                    # next tick, as those not read at all.
                    unchecked += [shard for rest in chunks[number:] for shard in rest]
                    break
                current = start_reads(chunks[number + 1]) if number + 1 < len(chunks) else None
                by_shard: dict[int, list[_Watch]] = {}
                for watch in watches:
                    by_shard.setdefault(shard_of(watch.latest.instance_id), []).append(watch)
                progressed: list[tuple[Outcome, dict[str, Any]]] = []  # written at once, below
                concluded: list[_Watch] = []
                for shard in chunk:
                    looked = by_shard.get(shard, [])
                    if len(looked) < len(shards[shard]) or any(_unread(w) for w in looked):
                        unchecked.append(shard)  # a read the next tick must make again
                    concluded += looked
                checked += len(concluded)
                decided = self._decide(concluded, ctx, now, marks, progressed, progress_of, concluding)
                verdicts = [d for d in decided if isinstance(d, _Verdict)]
                recorded = iter(self._record(verdicts, ctx, concluding))
                outcomes_now = [next(recorded) if isinstance(d, _Verdict) else d for d in decided]
                transitions += [
                    {"instance_id": outcome.instance_id, "status": outcome.status, "reason": outcome.reason}
                    for outcome in outcomes_now
                    if outcome is not None
                ]
                store.set_progress_many(progressed)
                store.mark_upgrading_many(marks.new, SEEN_UPGRADING_SECONDS)
                reads.update((w.latest.instance_id, w.read) for w in watches)
        if unchecked:
            store.set_tracker_cursor(min(unchecked, key=order.index))
        if checked < len(watched):
            logger.warning("tick out of time", extra={"unchecked": len(watched) - checked})
        return transitions, checked, reads, elsewhere

    def _reads(self, outcomes: list[Outcome], ctx: InvocationContext, stop_at: float) -> list[_Watch]:
        """Each followed outcome with what the cloud shows of its instance, read per (engine, region)
        through the list APIs (``dbupgrade.fleet``). A booked upgrade still needs its maintenance
        window's bounds, which only the describe carries."""
        from dbupgrade.fleet import describe_one, read_instances

        cloud = self.upgrader.cloud
        groups: dict[tuple[str, str, str], list[Outcome]] = {}
        for outcome in outcomes:
            region = str(outcome.region or self.upgrader.config.region or ctx.region)
            groups.setdefault((str(outcome.engine), region, outcome.account_id or ""), []).append(outcome)
        watches: list[_Watch] = []
        for (name, region, account), group in groups.items():
            engine = ENGINES[name]
            try:
                # A member account's instances are read through its role (dbupgrade.accounts).
                credentials = self.upgrader.credentials_for(account or None, ctx, region, group[0].rollout_id)
            except CloudError as error:
                logger.warning(
                    "cannot read a member account this tick",
                    extra={"account_id": account, "code": error.code},
                )
                continue
            reads = read_instances(
                cloud, engine, region, [o.instance_id for o in group], credentials, deadline=stop_at
            )
            for outcome in group:
                read: Read = reads[outcome.instance_id]
                if outcome.effective == "maintenance_window" and read.found and not read.full:
                    read = describe_one(
                        cloud, engine, region, outcome.instance_id, credentials, deadline=stop_at
                    )
                chain = self._chain(outcome)
                expected = chain.version if chain is not None else outcome.to_version
                watches.append(_Watch(outcome, self._submission(outcome), engine, read, expected))
        return watches

    def _watch(
        self, outcomes: list[Outcome], ctx: InvocationContext, stop_at: float
    ) -> tuple[list[_Watch], _Marks]:
        """A chunk's instance reads (``_reads``) and their running marks (``_marks``): the chunk's
        reads but the task reads, run ahead on a thread of their own."""
        watches = self._reads(outcomes, ctx, stop_at)
        return watches, self._marks(watches)

    def _marks(self, watches: list[_Watch]) -> _Marks:
        """Which of the watched upgrades the tracker saw running before (one HMGET per shard)."""
        upgrades = [(w.latest.instance_id, w.expected) for w in watches if w.read.found]
        return _Marks(self.upgrader.store.seen_upgrading_many(upgrades))

    def _chain(self, followed: Outcome) -> Chain | None:
        """The multi-hop chain the followed upgrade belongs to (one store read, only for a hop)."""
        return self.chains.of(followed) if followed.hops and followed.hops > 1 else None

    def _record(
        self, verdicts: list[_Verdict], ctx: InvocationContext, pool: Executor
    ) -> list[Outcome | None]:
        """Record and notify the chunk's transitions in batches (``Upgrader.finish_many``: each
        compare-and-set against its followed outcome, so a newer submission recorded meanwhile is
        kept, and followed); the ended upgrades' running marks and chain checkpoints go in one write."""
        recorded = self.upgrader.finish_many([(v.outcome, v.follows) for v in verdicts], ctx, pool=pool)
        ended = [
            v for v, o in zip(verdicts, recorded, strict=True) if o is not None and o.status != "scheduled"
        ]
        self.upgrader.store.forget_finished(
            [(v.follows.instance_id, v.expected) for v in ended],
            [v.follows.instance_id for v in ended if v.chained],
        )
        return recorded

    def _decide(
        self,
        watches: list[_Watch],
        ctx: InvocationContext,
        now: datetime,
        marks: _Marks,
        progressed: list[tuple[Outcome, dict[str, Any]]],
        progress_of: Mapping[str, dict[str, Any]],
        pool: Executor,
    ) -> list[Outcome | _Verdict | None]:
        """``_conclude`` of each watch, in order: those that call out (a backup gate, a hop of a
        chain: cloud calls and store reads) at once on ``pool``, the others (a verdict from the read
        alone: nearly all) right here, where a thread hand-off would cost more than the verdict."""
        calls_out = [w.latest.status == "awaiting_backup" or (w.latest.hops or 0) > 1 for w in watches]
        on_pool = iter(
            pool.map(
                self._conclude,
                [w for w, out in zip(watches, calls_out, strict=True) if out],
                repeat(ctx),
                repeat(now),
                repeat(marks),
                repeat(progressed),
                [
                    progress_of.get(w.latest.instance_id)
                    for w, out in zip(watches, calls_out, strict=True)
                    if out
                ],
            )
        )
        return [
            next(on_pool)
            if out
            else self._conclude(w, ctx, now, marks, progressed, progress_of.get(w.latest.instance_id))
            for w, out in zip(watches, calls_out, strict=True)
        ]

    def _conclude(
        self,
        watch: _Watch,
        ctx: InvocationContext,
        now: datetime,
        marks: _Marks,
        progressed: list[tuple[Outcome, dict[str, Any]]],
        task: dict[str, Any] | None = None,
    ) -> Outcome | _Verdict | None:
        """The transition the instance shows, for ``_record`` to write with the chunk's others. A hop
        of a chain that is verified submits the next hop (``dbupgrade.hops``) and a finished backup
        the upgrade (``gate``), each recorded here; while under way, the task's news goes into
        ``progressed``, kept on the followed outcome by one batched write (not notified)."""
        followed = watch.latest
        if followed.status == "awaiting_backup":  # the backup gate: submits once it finished
            return gate.after_backup(self.upgrader, followed, ctx, now)
        chain = self._chain(followed)
        if chain is not None and chain.state != "submitted":
            # A tick died between a hop's checkpoint and its record: look, then go on.
            return self.chains.resume(followed, chain, ctx, now)
        verdict = self._verdict(watch, now, marks)
        if verdict is None:
            if task is not None and _progressed(followed, task):
                progressed.append((followed, task))
            return None
        if chain is not None and verdict.status == "completed":
            return self.chains.advance(followed, chain, verdict, ctx, now)
        if chain is not None:
            verdict = _in_chain(verdict, chain)
        return _Verdict(verdict, followed, watch.expected, chain is not None)

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

    def _verdict(self, watch: _Watch, now: datetime, marks: _Marks) -> Outcome | None:
        """The transition the instance's read shows, or None while it is simply under way."""
        latest, engine = watch.latest, watch.engine
        error, attributes = watch.read.error, watch.read.attributes
        if error is not None:
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
        if status in engine.ready_statuses and version == watch.expected:
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
        upgrade = (latest.instance_id, watch.expected)
        if status in engine.upgrading_statuses:
            marks.saw(upgrade)
        elif status in engine.ready_statuses and upgrade in marks.seen:
            return self._outcome(
                watch, now, "failed", "rolled_back", "UpgradeFailed", f"upgrade rolled back: {at}"
            )
        elif status in engine.ready_statuses and latest.effective == "maintenance_window":
            # Booked and not started: it waits for the window's next opening, however far the
            # clock jumped; only a window that opened and stayed quiet past the limit is stuck.
            started = (
                parse_time(latest.switch_at)
                if latest.switch_at
                else awaited_opening(watch.submitted_at, now, attributes)
            )
            overdue = now - started > timedelta(seconds=self.settings.stuck_after[engine.name])
        if status in engine.ready_statuses and now < started:
            if latest.status in ("scheduled", "rescheduled"):
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

    @staticmethod
    def _start(watch: _Watch, attributes: Mapping[str, Any]) -> datetime:
        """When the upgrade starts: at submission, or when the maintenance window next opens."""
        submitted = watch.submitted_at
        if watch.latest.switch_at:  # an operator moved the booking (dbupgrade.booked)
            return parse_time(watch.latest.switch_at)
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
            account_id=submission.account_id,  # its claim is the account's (store.claims)
            hop=watch.latest.hop,
            hops=watch.latest.hops,
            path=watch.latest.path,
            switch_at=watch.latest.switch_at,
            backup_id=submission.backup_id,  # the gate's backup: what a rollback restores
            at=_time_text(now),
        )

    # -- rollouts -------------------------------------------------------------------------------

    def _advance_rollouts(
        self, ctx: InvocationContext, reads: Mapping[str, Read], elsewhere: set[str]
    ) -> list[dict[str, Any]]:
        from dbupgrade.rollouts import advance_all  # the rollout machinery only when a tick needs it

        # The tick's reads answer the rollouts' completion checks: no instance is read twice a tick.
        # Those of the shards an overlapping tick holds are that tick's to read (a tick that ran
        # past the timer's minute would otherwise have the next one list the whole fleet again).
        return advance_all(self.upgrader, ctx, fresh=reads, elsewhere=elsewhere)

    def _campaign_digests(
        self, rollouts: list[dict[str, Any]], ctx: InvocationContext, now: datetime
    ) -> list[str]:
        """One ``campaign.digest`` per campaign per day (``dbupgrade.rollouts.campaign``)."""
        from dbupgrade.rollouts.campaign import send_digests

        return send_digests(self.upgrader, rollouts, ctx, now)


def _time_text(moment: datetime) -> str:
    """``moment`` as an outcome's ``at``: formatted once for a tick's transitions, which share its now."""
    return _formatted(moment, moment.tzinfo)


@lru_cache(maxsize=2)
def _formatted(moment: datetime, zone: Any) -> str:
    # Keyed on the zone too: equal instants in two zones are equal datetimes but read differently.
    return moment.strftime(TIME_FORMAT)


def _out_of_time(ctx: InvocationContext) -> bool:
    """Whether the checks must stop: ``ROLLOUT_RESERVE_SECONDS`` are left for the rollouts."""
    return ctx.remaining_seconds() <= ROLLOUT_RESERVE_SECONDS


def _chunks(order: list[int], shards: Mapping[int, list[Outcome]], size: int) -> Iterator[list[int]]:
    """Consecutive runs of ``order``'s shards holding at least ``size`` upgrades each (the last: the rest)."""
    chunk: list[int] = []
    count = 0
    for shard in order:
        chunk.append(shard)
        count += len(shards[shard])
        if count >= size:
            yield chunk
            chunk, count = [], 0
    if chunk:
        yield chunk


def _unread(watch: _Watch) -> bool:
    """A read that failed for now (throttled, timed out): the instance was not looked at."""
    error = watch.read.error
    return error is not None and error.transient


# Progress is written again once it moved this many percentage points (or its step or status
# changed): a tick whose upgrades crept on by a fraction of a percent writes nothing.
PROGRESS_STEP = 5.0


def _progressed(followed: Outcome, task: Mapping[str, Any]) -> bool:
    """Whether the task shows news the followed outcome does not keep yet."""
    if (followed.current_step, followed.task_status) != (task.get("current_step"), task.get("task_status")):
        return True
    before, after = followed.progress, task.get("progress")
    if before is None or after is None:
        return before != after
    return abs(float(after) - before) >= PROGRESS_STEP


def _in_chain(verdict: Outcome, chain: Chain) -> Outcome:
    """A hop's failed / stuck / scheduled verdict as the chain's: which hop, of how many, along what."""
    verdict.hop, verdict.hops, verdict.path = chain.hop, chain.hops, list(chain.path)
    verdict.message = f"hop {chain.hop}/{chain.hops} to {chain.version}: {verdict.message}"
    return verdict
