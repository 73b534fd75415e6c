"""Running a rollout: start, advance (observe, halt on the error budget, release), resume, cancel.

``advance`` is one round, safe to call any time from anywhere (the tracker's timer every minute,
the CLI): it reads each in-flight target's outcome, halts past the error budget (a location - an
account and region - past its own budget, or whose account's role fails, halts alone: its unreleased
targets end ``halted``, reason ``location_budget`` / ``configuration``), and releases more
targets - the next wave only once every target of the waves before it is terminal. Releasing is
publishing one fan-out message per target on DBUPGRADE_ROLLOUT_QUEUE (``dbupgrade.triggers.fanout``),
which the rollout function consumes unchanged; the delivery id ``<rollout>:<instance>`` keys the
use case's idempotency, so a re-sent message never upgrades twice.

Example::

    rollouts = Rollouts(Upgrader.from_env())
    rollouts.start(spec)                      # records it, releases wave 1
    advance_all(upgrader)                     # the tracker, once per tick
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from dbupgrade import clock
from dbupgrade.cloudapi import CloudError
from dbupgrade.config import Window
from dbupgrade.context import adapt_context
from dbupgrade.engines import ENGINES
from dbupgrade.errors import ConfigError
from dbupgrade.logging import bind_invocation, logger
from dbupgrade.model import Outcome, Status
from dbupgrade.rollouts.campaign import kept_waves
from dbupgrade.rollouts.model import (
    ERROR_STATES,
    IN_FLIGHT_STATES,
    LOCATION_BUDGET,
    LOCATION_CONFIGURATION,
    MAX_BUSY_RELEASES,
    MAX_RELEASES,
    OUTCOME_STATES,
    RolloutMeta,
    RolloutSpec,
    TargetState,
    location_of,
    parse_waves,
)
from dbupgrade.rollouts.state import LOCK_SECONDS, RolloutLocked, RolloutRepository
from dbupgrade.rollouts.summary import summarize, summary_message, task_progress
from dbupgrade.triggers import dispatch
from dbupgrade.triggers.fanout import fanout_payload
from dbupgrade.usecase import Upgrader

HALTED: Status = "halted"
BUSY_REASON = "instance_busy"
TRANSIENT_REASONS = frozenset({"retries_exhausted", BUSY_REASON})
DESCRIBE_SECONDS = 30  # budget of one completion check, retries included
# Left of the invocation for saving a round: its long steps (halting, releasing) stop this long
# before the deadline, and what they did not reach waits for the next round.
SAVE_RESERVE_SECONDS = 15
RELEASE_CHUNK = 200  # messages published between two looks at the deadline
PUBLISH_CONCURRENCY = 8  # wave messages published at once
PUBLISH_MIN_SHARE = 4  # fewer messages than this per sender are not worth another connection
HISTORY_SCAN = 20  # outcomes looked back through for this rollout's (another trigger may have run since)


class RolloutNotFound(LookupError):
    pass


class RolloutFinished(ValueError):
    """``resume`` of a completed or cancelled rollout."""


class TargetsOwned(ValueError):
    """``start`` with targets another active rollout still has to upgrade (``owned``: instance ->
    rollout). Exclude them (``start(..., exclude_owned=True)``, ``--exclude-owned``) or wait."""

    def __init__(self, owned: dict[str, str]) -> None:
        self.owned = dict(sorted(owned.items()))
        listed = ", ".join(f"{instance} (rollout {rollout})" for instance, rollout in self.owned.items())
        super().__init__(
            f"{len(self.owned)} target(s) belong to another active rollout: {listed}; "
            "exclude them with --exclude-owned, or wait for that rollout to end"
        )


class Rollouts:
    """Rollout operations over the Upgrader's store, cloud clients and notifier."""

    def __init__(
        self,
        upgrader: Upgrader,
        context: Any = None,
        *,
        source: str = "cli",
        fresh: Mapping[str, Any] | None = None,
        elsewhere: Collection[str] = (),
    ) -> None:
        """``fresh``: instance id -> ``dbupgrade.fleet.Read`` the caller (the tracker's tick) made
        moments ago; the completion checks use them instead of reading those instances again.
        ``elsewhere``: instances another tick is reading right now; the completion checks leave them
        to it (their recorded outcomes move them on next round)."""
        if upgrader.store.redis is None:
            raise ConfigError("DBUPGRADE_REDIS_URL", "rollouts keep their state in Redis; set it")
        self.upgrader = upgrader
        self.context = adapt_context(context)
        bind_invocation(self.context)
        self.source = source
        self.repo = RolloutRepository(upgrader.store)
        self.fresh = dict(fresh or {})
        self.elsewhere = frozenset(elsewhere)

    # -- operations -----------------------------------------------------------------------------

    def start(self, spec: RolloutSpec, *, exclude_owned: bool = False) -> dict[str, Any]:
        """Record the rollout and release its first wave; returns its status.

        Targets another active rollout still has to upgrade are refused (``TargetsOwned`` lists
        them) unless ``exclude_owned``: then they are left out of this rollout (the status's
        ``excluded`` names them) and the waves are recounted over the rest.
        """
        if not self.upgrader.config.rollout_queue:
            raise ConfigError("DBUPGRADE_ROLLOUT_QUEUE", "is required: rollouts publish their waves to it")
        if self._credentials() is None:
            raise ConfigError("ALIBABA_CLOUD_ACCESS_KEY_ID", "no credentials to publish the waves with")
        with self.repo.start_lock():
            wanted = {t["instance_id"] for t in spec.targets}
            owned = self.repo.owners(wanted, other_than=spec.rollout_id)
            if owned and not exclude_owned:
                raise TargetsOwned(owned)
            if owned:
                spec = _without(spec, owned)
            states = [TargetState(t["instance_id"], spec.wave_of(i)) for i, t in enumerate(spec.targets)]
            self.repo.create(spec, RolloutMeta(), states)
        logger.info("rollout started", extra={"rollout_id": spec.rollout_id, "targets": len(states)})
        status = self.advance(spec.rollout_id, wait=True)
        if owned:
            status["excluded"] = dict(sorted(owned.items()))
        return status

    def advance(self, rollout_id: str, *, wait: bool = False) -> dict[str, Any]:
        """One round: observe, halt or complete, release. Returns the status (``summarize``)."""
        spec = self._spec(rollout_id)
        with self.repo.lock(rollout_id, wait=wait, seconds=self._lock_seconds()):
            meta = self.repo.meta(rollout_id)
            states = self.repo.targets(rollout_id)
            meta.tick += 1
            if meta.status in ("halted", "cancelled"):
                # A halt or a cancel cut short by the deadline: its unreleased targets end now.
                reason = "cancelled" if meta.status == "cancelled" else meta.halt_reason or "error_budget"
                changed_early = self._halt_pending(spec, states, reason, meta.reason or meta.status)
            else:
                changed_early = []
            changed, misconfigured, members = self._observe(spec, meta, states)
            changed += changed_early
            if misconfigured:
                # A wrong key or a missing permission fails every target alike: stop now rather than
                # burn through the fleet; resume once it is fixed. Not an error of any target.
                if meta.status == "running":
                    meta.status, meta.reason = "halted", f"configuration error: {misconfigured[0]}"
                    meta.halt_reason = "configuration"
                changed += self._halt_pending(spec, states, "configuration", meta.reason or "halted")
            if meta.status == "running":
                changed += self._halt_locations(spec, meta, states, members)
            if meta.status == "running":
                errors = sum(s.state in ERROR_STATES for s in states.values()) - meta.error_baseline
                if spec.max_errors is not None and errors > spec.max_errors:
                    meta.status, meta.reason = (
                        "halted",
                        (f"error budget spent: {errors} errors, more than the {spec.max_errors} allowed"),
                    )
                    meta.halt_reason = "error_budget"
                    changed += self._halt_pending(spec, states, "error_budget", meta.reason)
                elif all(s.terminal for s in states.values()):
                    meta.status = "completed"
                    deferred = sum(s.state == "deferred" for s in states.values())
                    if deferred:
                        meta.reason = f"completed with {deferred} deferred: re-run them"
                else:
                    changed += self._release(spec, meta, states)
            self._end_if_settled(spec, meta, states)
            self.repo.save(rollout_id, meta, changed)
        return summarize(spec, meta, states)

    def resume(self, rollout_id: str) -> dict[str, Any]:
        """Continue a halted rollout (or one with halted locations): its halted targets are released
        again; the budgets restart."""
        spec = self._spec(rollout_id)
        with self.repo.lock(rollout_id, wait=True, seconds=self._lock_seconds()):
            meta = self.repo.meta(rollout_id)
            if meta.status in ("completed", "cancelled"):
                raise RolloutFinished(f"rollout {rollout_id} is {meta.status}; start a new one")
            states = self.repo.targets(rollout_id)
            changed = []
            if meta.status == "halted" or meta.halted_locations:
                for state in states.values():
                    if state.state == "halted":
                        states[state.instance_id] = TargetState(
                            state.instance_id, state.wave, releases=state.releases
                        )
                        changed.append(states[state.instance_id])
                meta.error_baseline = sum(s.state in ERROR_STATES for s in states.values())
                meta.location_baselines = dict(_location_errors(spec, states))
                meta.halted_locations = {}
                meta.status, meta.reason, meta.halt_reason = "running", None, None
                meta.finished_at, meta.summary_published = None, False
            self.repo.save(rollout_id, meta, changed)
            self.repo.activate(rollout_id)
        logger.info("rollout resumed", extra={"rollout_id": rollout_id})
        return self.advance(rollout_id, wait=True)

    def cancel(self, rollout_id: str) -> dict[str, Any]:
        """Stop for good: nothing more is released; every unreleased target gets ``halted`` (cancelled)."""
        spec = self._spec(rollout_id)
        with self.repo.lock(rollout_id, wait=True, seconds=self._lock_seconds()):
            meta = self.repo.meta(rollout_id)
            states = self.repo.targets(rollout_id)
            changed: list[TargetState] = []
            if meta.status in ("running", "halted"):
                meta.status, meta.reason = "cancelled", "cancelled by the operator"
                changed = self._halt_pending(spec, states, "cancelled", meta.reason)
            self._end_if_settled(spec, meta, states)
            self.repo.save(rollout_id, meta, changed)
        return summarize(spec, meta, states)

    def status(self, rollout_id: str) -> dict[str, Any]:
        """The rollout's progress (read-only), each in-flight row with its upgrade's task progress
        and hop as the tracker last read them.

        A tick records what it sees on each instance before the rollout's round moves the rows, and
        that round may be skipped (out of time, or another caller holds the rollout): the in-flight
        rows are read on from their recorded outcomes as the round would, without saving, so status
        never shows less than the last tick saw. Ending the rollout is left to the round."""
        spec = self._spec(rollout_id)
        meta, states = self.repo.meta(rollout_id), self.repo.targets(rollout_id)
        self._recorded(spec, meta, states)
        summary = summarize(spec, meta, states)
        submitted = [row["instance_id"] for row in summary["rows"] if row["state"] == "submitted"]
        followed = self.upgrader.store.following_many(submitted)  # MGET per 500, HMGET per shard
        for row in summary["rows"]:
            row.update(
                task_progress(followed.get(row["instance_id"]) if row["state"] == "submitted" else None)
            )
        return summary

    # -- steps ----------------------------------------------------------------------------------

    def _spec(self, rollout_id: str) -> RolloutSpec:
        spec = self.repo.spec(rollout_id)
        if spec is None:
            raise RolloutNotFound(f"no rollout {rollout_id!r}")
        return spec

    def _lock_seconds(self) -> float:
        """The rollout lock's lifetime: ``LOCK_SECONDS``, cut to expire by the invocation's deadline,
        so an advance killed at its timeout leaves no lock for the next tick to wait on."""
        return max(1.0, min(LOCK_SECONDS, self.context.remaining_seconds()))

    def _out_of_time(self) -> bool:
        """Whether a long step must stop now to leave ``SAVE_RESERVE_SECONDS`` for the save."""
        return time.monotonic() >= self.context.deadline - SAVE_RESERVE_SECONDS

    def _credentials(self) -> Any:
        return self.upgrader.cloud.credentials(self.context.credentials)

    def _observe(
        self, spec: RolloutSpec, meta: RolloutMeta, states: dict[str, TargetState]
    ) -> tuple[list[TargetState], list[str], dict[str, str]]:
        """Move in-flight targets on from their recorded outcomes and, for submitted ones, a describe.

        Also returns the configuration errors seen (one line each): the rollout halts on the first;
        and those of targets that name their account (account -> one line): only that account's
        locations halt (its role or its policy is wrong, not the other accounts').
        """
        targets = {t["instance_id"]: t for t in spec.targets}
        changed, misconfigured, members, waiting = self._recorded(spec, meta, states)
        if waiting:
            verdicts = self._finished([targets[s.instance_id] for s in waiting], spec.rollout_id)
            for state, verdict in zip(waiting, verdicts, strict=True):
                if verdict is not None:
                    state.state, state.code, state.message = verdict
                    state.reason = "upgrade_" + state.state
                    self._done(state, meta)
                    if state not in changed:
                        changed.append(state)
        return changed, misconfigured, members

    def _recorded(
        self, spec: RolloutSpec, meta: RolloutMeta, states: dict[str, TargetState]
    ) -> tuple[list[TargetState], list[str], dict[str, str], list[TargetState]]:
        """Move in-flight targets on from their recorded outcomes alone (store reads, no cloud call):
        (changed, configuration errors, member accounts' errors, targets still submitted)."""
        targets = {t["instance_id"]: t for t in spec.targets}
        misconfigured: list[str] = []
        members: dict[str, str] = {}
        changed: list[TargetState] = []
        waiting: list[TargetState] = []
        in_flight = [s for s in states.values() if s.state in IN_FLIGHT_STATES]
        latest = self._latest_of([s.instance_id for s in in_flight])
        for state in in_flight:
            outcome = self._outcome(spec.rollout_id, state.instance_id, latest.get(state.instance_id))
            if outcome is None or not _of_this_release(outcome, state):
                continue
            if _misconfigured(outcome):
                # Not this target's fault: it waits (pending) for the halt, and a resume after
                # the operator's fix releases it again.
                state.state, state.code, state.reason = "pending", outcome.code, outcome.reason
                state.message = outcome.message
                line = outcome.message or outcome.code or "configuration error"
                account = targets[state.instance_id].get("account_id")
                if account:
                    members.setdefault(account, line)
                else:
                    misconfigured.append(line)
                changed.append(state)
                continue
            if _transient(outcome) and state.releases < _release_limit(outcome):
                state.state, state.code, state.reason = "pending", outcome.code, outcome.reason
                state.message = (
                    f"release {state.releases} failed for now ({outcome.message or outcome.code}); "
                    "releasing again"
                )
                changed.append(state)
                continue
            if _busy(outcome):
                # Still busy after every release: not this target's error, and not worth holding
                # the rollout for. It ends deferred; the status lists it to be re-run.
                state.state, state.code, state.reason = "deferred", outcome.code, outcome.reason
                state.message = (
                    f"still busy with another task after {state.releases} tries ({outcome.code}); "
                    "re-run it once that task is over"
                )
                self._done(state, meta)
                changed.append(state)
                continue
            new_state = OUTCOME_STATES.get(outcome.status, "failed")
            if state.state != new_state or new_state != "submitted":
                state.state = new_state
                state.from_version = outcome.from_version or state.from_version
                state.request_id = outcome.request_id or state.request_id
                state.backup_id = outcome.backup_id or state.backup_id
                state.code, state.reason, state.message = outcome.code, outcome.reason, outcome.message
                changed.append(state)
            if new_state == "submitted":
                waiting.append(state)
            else:
                self._done(state, meta)
        return changed, misconfigured, members, waiting

    def _latest_of(self, instance_ids: list[str]) -> dict[str, Outcome]:
        """The latest recorded outcome of each instance, read in batches (``Store.latest_many``)."""
        return self.upgrader.store.latest_many(instance_ids)

    def _outcome(self, rollout_id: str, instance_id: str, latest: Outcome | None) -> Outcome | None:
        """This rollout's latest recorded outcome for the instance (the use case's or the tracker's),
        from its ``latest`` outcome, else its history."""
        store = self.upgrader.store
        if latest is None or latest.rollout_id == rollout_id:
            return latest
        return next((o for o in store.history(instance_id, HISTORY_SCAN) if o.rollout_id == rollout_id), None)

    def _finished(
        self, targets: list[dict[str, Any]], rollout_id: str
    ) -> list[tuple[str, str | None, str] | None]:
        """Per target: ("completed" | "failed", code, message) once the cloud shows the upgrade over,
        else None. Read through the list APIs per (engine, region) (``dbupgrade.fleet``).

        Completed means ready AT the target version - a status back to ready alone is not enough
        (an upgrade booked for the maintenance window shows ready at the old version until then).
        """
        from dbupgrade.fleet import read_instances

        deadline = min(time.monotonic() + DESCRIBE_SECONDS, self.context.deadline - SAVE_RESERVE_SECONDS)
        groups: dict[tuple[str, str, str], list[str]] = {}
        for target in targets:
            region = target.get("region") or self.upgrader.config.region or self.context.region
            key = (target["engine"], str(region), str(target.get("account_id") or ""))
            groups.setdefault(key, []).append(target["instance_id"])
        reads: dict[str, Any] = {
            i: self.fresh[i] for i in self.fresh.keys() & {t["instance_id"] for t in targets}
        }
        for (name, region, account), instance_ids in groups.items():
            instance_ids = [i for i in instance_ids if i not in reads and i not in self.elsewhere]
            if not instance_ids:
                continue
            try:
                # A member account's instances are read through its role (dbupgrade.accounts).
                credentials = self.upgrader.credentials_for(account or None, self.context, region, rollout_id)
            except CloudError as error:
                logger.warning(
                    "completion check failed; next round retries",
                    extra={"code": error.code, "account_id": account},
                )
                continue
            reads.update(
                read_instances(
                    self.upgrader.cloud,
                    ENGINES[name],
                    region,
                    instance_ids,
                    credentials,
                    deadline=deadline,
                )
            )
        return [
            _completion(target, reads[target["instance_id"]]) if target["instance_id"] in reads else None
            for target in targets
        ]

    def _done(self, state: TargetState, meta: RolloutMeta) -> None:
        state.done_tick, state.finished_at = meta.tick, clock.now()

    def _release(
        self, spec: RolloutSpec, meta: RolloutMeta, states: dict[str, TargetState]
    ) -> list[TargetState]:
        """Publish the next targets: within the released waves, up to max in-flight, inside the window."""
        if spec.window and not Window.parse(spec.window, "window").contains(clock.utcnow()):
            return []
        ordered = [states[t["instance_id"]] for t in spec.targets]
        released = spec.waves[meta.wave - 1] if meta.wave else 0
        if meta.wave < len(spec.waves) and all(s.terminal for s in ordered[:released]):
            meta.wave += 1
            logger.info("wave released", extra={"rollout_id": spec.rollout_id, "wave": meta.wave})
        pending = [s for s in ordered[: spec.waves[meta.wave - 1]] if s.state == "pending"]
        if spec.max_in_flight_per_location is not None:
            where = {t["instance_id"]: location_of(t) for t in spec.targets}
            flying = Counter(where[s.instance_id] for s in ordered if s.state in IN_FLIGHT_STATES)
            kept = []
            for state in pending:
                if flying[where[state.instance_id]] < spec.max_in_flight_per_location:
                    flying[where[state.instance_id]] += 1
                    kept.append(state)
            pending = kept
        if spec.max_in_flight is not None:
            in_flight = sum(s.state in IN_FLIGHT_STATES for s in ordered)
            pending = pending[: max(0, spec.max_in_flight - in_flight)]
        return self._dispatch(spec, meta, pending) if pending else []

    def _dispatch(
        self, spec: RolloutSpec, meta: RolloutMeta, pending: list[TargetState]
    ) -> list[TargetState]:
        targets = {t["instance_id"]: t for t in spec.targets}
        payloads = []
        delivery_ids = []
        for state in pending:
            # Each release its own delivery id (idempotency would replay a "halted" outcome to a
            # resumed target); a re-send of an unsent one keeps it.
            release = state.releases + 1
            delivery_id = f"{spec.rollout_id}:{state.instance_id}" + (f":{release}" if release > 1 else "")
            delivery_ids.append(delivery_id)
            body = fanout_payload(
                targets[state.instance_id], rollout_id=spec.rollout_id, delivery_id=delivery_id
            )
            payloads.append((delivery_id, state.instance_id, body))
        results: list[dispatch.Dispatch] = []
        for start in range(0, len(payloads), RELEASE_CHUNK):
            if self._out_of_time():
                break  # the rest stay pending, released by the next round
            results += self._publish_wave(payloads[start : start + RELEASE_CHUNK])
        now = clock.now()
        for state, delivery_id, result in zip(pending, delivery_ids, results, strict=False):
            if result.sent:
                state.state, state.released_tick, state.dispatched_at = "dispatched", meta.tick, now
                state.releases, state.delivery_id = state.releases + 1, delivery_id
                state.code = state.reason = state.message = None
            else:  # stays pending: the next round sends it again under the same delivery id
                state.message = f"not sent yet: {result.error}"
        return pending[: len(results)]

    def _publish_wave(self, payloads: list[tuple[str, str, bytes]]) -> list[dispatch.Dispatch]:
        """Publish the released targets' messages ``PUBLISH_CONCURRENCY`` at a time (one MNS publish
        takes a round trip: one at a time, a 5,000-target wave took 85 s). Each sender has its own
        MNS Account: the SDK sends an Account's requests over one connection. Messages of one wave
        arrive in no particular order; a halt does not rely on it (the rollout function refuses a
        halted rollout's messages before upgrading, ``RolloutRepository.stopped``)."""
        credentials = self._credentials()
        if credentials is None:
            raise ConfigError("ALIBABA_CLOUD_ACCESS_KEY_ID", "no credentials to publish the waves with")
        endpoint = self.upgrader.notifier.endpoint(self.context)
        senders = max(1, min(PUBLISH_CONCURRENCY, len(payloads) // PUBLISH_MIN_SHARE))
        shares = [payloads[i::senders] for i in range(senders)]

        def send(share: list[tuple[str, str, bytes]]) -> list[dispatch.Dispatch]:
            return dispatch.send_to_topic(
                share,
                config=self.upgrader.config,
                context=self.context,
                credentials=credentials,
                mns_endpoint=endpoint,
            )

        if senders == 1:
            return send(payloads)
        with ThreadPoolExecutor(senders, thread_name_prefix="wave-publish") as pool:
            sent = {result.delivery_id: result for share in pool.map(send, shares) for result in share}
        return [sent[delivery_id] for delivery_id, _, _ in payloads]

    def _halt_locations(
        self, spec: RolloutSpec, meta: RolloutMeta, states: dict[str, TargetState], members: dict[str, str]
    ) -> list[TargetState]:
        """Halt the locations of accounts whose configuration failed (``members``) and those past
        ``max_errors_per_location``; every round, the unreleased targets of halted locations end
        ``halted`` (a target failing transiently there is not released again)."""
        reasons: dict[str, str] = {}
        locations = sorted({location_of(t) for t in spec.targets})
        for location in locations:
            if location in meta.halted_locations:
                continue
            account = location.partition("/")[0]
            if account in members:
                meta.halted_locations[location] = f"configuration error: {members[account]}"
                reasons[location] = LOCATION_CONFIGURATION
        if spec.max_errors_per_location is not None:
            errors = _location_errors(spec, states)
            for location in locations:
                spent = errors[location] - meta.location_baselines.get(location, 0)
                if location not in meta.halted_locations and spent > spec.max_errors_per_location:
                    meta.halted_locations[location] = (
                        f"location budget spent: {spent} errors in {location}, more than the "
                        f"{spec.max_errors_per_location} allowed per location"
                    )
                    reasons[location] = LOCATION_BUDGET
        changed: list[TargetState] = []
        for location, why in meta.halted_locations.items():
            if location in reasons:
                logger.warning(
                    "location halted", extra={"rollout_id": spec.rollout_id, "location": location, "why": why}
                )
            reason = reasons.get(location) or (
                LOCATION_CONFIGURATION if why.startswith("configuration") else LOCATION_BUDGET
            )
            changed += self._halt_pending(spec, states, reason, why, location=location)
        return changed

    def _halt_pending(
        self,
        spec: RolloutSpec,
        states: dict[str, TargetState],
        reason: str,
        why: str,
        *,
        location: str | None = None,
    ) -> list[TargetState]:
        """Every unreleased target (of ``location`` only, when given): one ``halted`` outcome,
        recorded and notified."""
        halted = []
        for target in spec.targets:
            state = states[target["instance_id"]]
            if state.state != "pending" or (location is not None and location_of(target) != location):
                continue
            if self._out_of_time():
                break  # the rest stay pending; the next round halts them (``advance``)
            outcome = Outcome(
                status=HALTED,
                instance_id=target["instance_id"],
                to_version=target["target_version"],
                engine=target.get("engine"),
                region=target.get("region"),
                effective=target.get("effective"),
                ticket_id=target.get("ticket_id"),
                rollout_id=spec.rollout_id,
                source=self.source,
                correlation_id=self.context.aws_request_id,
                reason=reason,
                message=f"not upgraded: {why}",
                account_id=target.get("account_id"),
            )
            self.upgrader.finish(outcome, self.context)
            state.state, state.reason, state.message = "halted", reason, outcome.message
            state.finished_at = clock.now()
            halted.append(state)
        return halted

    def _end_if_settled(self, spec: RolloutSpec, meta: RolloutMeta, states: dict[str, TargetState]) -> None:
        """Once stopped and nothing is in flight: the summary notification, once; off the active set."""
        if meta.status == "running" or any(
            s.state in IN_FLIGHT_STATES or s.state == "pending" for s in states.values()
        ):
            return
        if not meta.summary_published:
            meta.finished_at = meta.finished_at or clock.now()
            self._publish(summary_message(summarize(spec, meta, states)))
            meta.summary_published = True
            logger.info("rollout ended", extra={"rollout_id": spec.rollout_id, "status": meta.status})
        self.repo.deactivate(spec.rollout_id)

    def _publish(self, message: dict[str, Any]) -> None:
        """Publish, or park in the outbox for a later drain (the use case's own rule)."""
        self.upgrader.publish(message, self.context)


def _completion(target: dict[str, Any], read: Any) -> tuple[str, str | None, str] | None:
    """What one read (``dbupgrade.fleet.Read``) says of a submitted target's upgrade (see ``_finished``)."""
    engine = ENGINES[target["engine"]]
    if read.error is not None:
        logger.warning(
            "completion check failed; next round retries",
            extra={"code": read.error.code, "error": read.error.explain(target["instance_id"])},
        )
        return None
    if read.attributes is None:
        return "failed", "InvalidInstanceId.NotFound", "the instance disappeared during its upgrade"
    status, version = (
        str(read.attributes.get(engine.status_key)),
        str(read.attributes.get(engine.version_key)),
    )
    if status in engine.ready_statuses and version == target["target_version"]:
        return "completed", None, f"{engine.name} is {status} at {version}"
    if status in engine.failed_statuses:
        return "failed", "UpgradeFailed", f"the upgrade ended {status} at {version}"
    return None


def _location_errors(spec: RolloutSpec, states: dict[str, TargetState]) -> Counter[str]:
    """Targets in an error state, per location."""
    return Counter(location_of(t) for t in spec.targets if states[t["instance_id"]].state in ERROR_STATES)


def _without(spec: RolloutSpec, owned: dict[str, str]) -> RolloutSpec:
    """``spec`` without the ``owned`` targets, its waves recounted over the rest."""
    targets = tuple(t for t in spec.targets if t["instance_id"] not in owned)
    if not targets:
        raise TargetsOwned(owned)  # nothing left to roll out
    if spec.wave_tags:  # waves by tag: each keeps its value (dbupgrade.rollouts.campaign)
        waves, plan = kept_waves(spec, {t["instance_id"] for t in targets})
        return replace(spec, targets=targets, waves=waves, wave_tags=plan)
    return replace(spec, targets=targets, waves=parse_waves(spec.wave_text, len(targets)))


def _of_this_release(outcome: Outcome, state: TargetState) -> bool:
    """Whether the recorded outcome speaks of the target's latest release.

    A message's own outcome carries its delivery id (``correlation_id``): one from an earlier release
    (halted, then resumed; failed transiently, then released again) says nothing of this one. The
    tracker's outcomes (completed, stuck, ...) carry the correlation id of the submission they
    follow, so they count for the release that submitted.
    """
    if outcome.status == "halted" or (outcome.source == "queue" and state.delivery_id is not None):
        return outcome.correlation_id == state.delivery_id
    return True


def _transient(outcome: Outcome) -> bool:
    """Failed for now, not for good: throttled / 5xx / network past the retries, or the instance busy
    with another task. Released again on a later round; not an error while releases remain."""
    return outcome.status == "failed" and outcome.reason in TRANSIENT_REASONS


def _busy(outcome: Outcome) -> bool:
    return outcome.status == "failed" and outcome.reason == BUSY_REASON


def _release_limit(outcome: Outcome) -> int:
    """How many releases a target failing this way gets: more while busy (never an error)."""
    return MAX_BUSY_RELEASES if _busy(outcome) else MAX_RELEASES


def _misconfigured(outcome: Outcome) -> bool:
    """A wrong key, a missing RAM permission or a wrong endpoint: every other target fails alike."""
    return outcome.status == "failed" and outcome.reason == "configuration"


def advance_all(
    upgrader: Upgrader,
    context: Any = None,
    *,
    fresh: Mapping[str, Any] | None = None,
    elsewhere: Collection[str] = (),
) -> list[dict[str, Any]]:
    """One round of every active rollout (the tracker calls this once per tick); their statuses.

    A rollout another caller is advancing right now is skipped this round (``"busy": true``), and so
    is one there is no time left for (``"skipped": true``: the next tick advances it). ``fresh``:
    the tick's own reads of the instances; ``elsewhere``: those an overlapping tick reads (``Rollouts``).
    """
    rollouts = Rollouts(upgrader, context, source="timer", fresh=fresh, elsewhere=elsewhere)
    results: list[dict[str, Any]] = []
    for rollout_id in rollouts.repo.active():
        if rollouts._out_of_time():
            results.append({"rollout_id": rollout_id, "skipped": True})
            continue
        try:
            results.append(rollouts.advance(rollout_id))
        except RolloutLocked:
            results.append({"rollout_id": rollout_id, "busy": True})
        except RolloutNotFound:
            rollouts.repo.deactivate(rollout_id)
    return results
