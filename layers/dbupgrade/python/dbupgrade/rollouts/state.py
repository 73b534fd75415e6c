"""Rollouts in the store's Redis: the same client (and ``DBUPGRADE_REDIS_URL``) the Upgrader uses.

Keys (named in ``dbupgrade.store.keys``; under ``dbupgrade:rollout:<id>:``): ``spec`` (JSON,
written once), ``meta`` (JSON), ``targets`` (hash: instance id -> JSON ``TargetState``), ``lock``;
``dbupgrade:rollouts:active`` is the set the tracker's ``advance_all`` walks. One ``advance`` at a
time per rollout (the store's lock): two tracker ticks, or a tick and an operator's ``resume``,
never release the same wave twice. One ``start`` at a time (``start_lock``): the check that no
other active rollout owns a target and the creation are one step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from dbupgrade.rollouts.model import RolloutMeta, RolloutSpec, TargetState
from dbupgrade.store import Locked, Store, keys, redis_errors

LOCK_SECONDS = 120  # longer than one advance takes; a crashed holder frees it this soon
LOCK_WAIT_SECONDS = 10
STOP_REASONS = {"halted": "error_budget", "cancelled": "cancelled"}  # rollout status -> outcome reason


class RolloutExists(ValueError):
    """``start`` with an id already used: rollout ids name one rollout forever."""


class RolloutLocked(RuntimeError):
    """Another advance of this rollout is running (a tracker tick): try again in a moment."""


_key = keys.rollout
ACTIVE = keys.ROLLOUTS_ACTIVE


class RolloutRepository:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis

    def create(self, spec: RolloutSpec, meta: RolloutMeta, targets: list[TargetState]) -> None:
        with redis_errors():
            if not self.redis.set(_key(spec.rollout_id, "spec"), json.dumps(spec.to_dict()), nx=True):
                raise RolloutExists(f"rollout {spec.rollout_id} already exists; pick another id")
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(_key(spec.rollout_id, "meta"), json.dumps(meta.to_dict()))
            pipe.hset(
                _key(spec.rollout_id, "targets"),
                mapping={t.instance_id: json.dumps(t.to_dict()) for t in targets},
            )
            pipe.sadd(ACTIVE, spec.rollout_id)
            pipe.execute()

    def spec(self, rollout_id: str) -> RolloutSpec | None:
        with redis_errors():
            raw = self.redis.get(_key(rollout_id, "spec"))
        return RolloutSpec.from_dict(json.loads(raw)) if raw else None

    def meta(self, rollout_id: str) -> RolloutMeta:
        with redis_errors():
            raw = self.redis.get(_key(rollout_id, "meta"))
        return RolloutMeta.from_dict(json.loads(raw)) if raw else RolloutMeta()

    def targets(self, rollout_id: str) -> dict[str, TargetState]:
        with redis_errors():
            raws = self.redis.hgetall(_key(rollout_id, "targets"))
        states = (TargetState.from_dict(json.loads(raw)) for raw in raws.values())
        return {state.instance_id: state for state in states}

    def save(self, rollout_id: str, meta: RolloutMeta, changed: list[TargetState]) -> None:
        with redis_errors():
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(_key(rollout_id, "meta"), json.dumps(meta.to_dict()))
            if changed:
                pipe.hset(
                    _key(rollout_id, "targets"),
                    mapping={t.instance_id: json.dumps(t.to_dict()) for t in changed},
                )
            pipe.execute()

    def stopped(self, rollout_id: str) -> tuple[str, str] | None:
        """``(reason, why)`` once the rollout is halted or cancelled, else None - also when no rollout
        of that id exists (a timer's fan-out names its plan, not a rollout). The rollout function
        asks this before each upgrade, so a message released before a halt upgrades nothing."""
        with redis_errors():
            raw = self.redis.get(_key(rollout_id, "meta"))
        if not raw:
            return None
        meta = RolloutMeta.from_dict(json.loads(raw))
        reason = STOP_REASONS.get(meta.status)
        if reason == "error_budget" and meta.halt_reason:
            reason = meta.halt_reason
        return (reason, meta.reason or meta.status) if reason else None

    def active(self) -> list[str]:
        with redis_errors():
            return sorted(v.decode() if isinstance(v, bytes) else str(v) for v in self.redis.smembers(ACTIVE))

    def activate(self, rollout_id: str) -> None:
        with redis_errors():
            self.redis.sadd(ACTIVE, rollout_id)

    def deactivate(self, rollout_id: str) -> None:
        with redis_errors():
            self.redis.srem(ACTIVE, rollout_id)

    @contextmanager
    def lock(self, rollout_id: str, *, wait: bool, seconds: float = LOCK_SECONDS) -> Iterator[None]:
        """Hold the rollout's lock for ``seconds`` at most (the caller's deadline); ``wait`` retries
        for a few seconds, else ``RolloutLocked`` at once."""
        try:
            with self.store.lock(
                _key(rollout_id, "lock"), seconds, wait_seconds=LOCK_WAIT_SECONDS if wait else 0
            ):
                yield
        except Locked:
            raise RolloutLocked(f"rollout {rollout_id} is being advanced right now; try again") from None

    @contextmanager
    def start_lock(self) -> Iterator[None]:
        """One ``start`` at a time, fleet-wide (the ownership check and the creation are one step)."""
        try:
            with self.store.lock(keys.ROLLOUT_START_LOCK, LOCK_SECONDS, wait_seconds=LOCK_WAIT_SECONDS):
                yield
        except Locked:
            raise RolloutLocked("another rollout is being started right now; try again") from None

    def owners(self, instance_ids: set[str], *, other_than: str) -> dict[str, str]:
        """instance id -> the active rollout (not ``other_than``) that still has it to upgrade.

        A target is owned while its rollout is active and the target is not terminal (pending,
        released or submitted); a rollout that finished or was settled owns nothing.
        """
        owned: dict[str, str] = {}
        for rollout_id in self.active():
            if rollout_id == other_than:
                continue
            meta = self.meta(rollout_id)
            if meta.status not in ("running", "halted"):
                continue
            for instance_id, state in self.targets(rollout_id).items():
                if instance_id in instance_ids and not state.terminal:
                    owned.setdefault(instance_id, rollout_id)
        return owned
