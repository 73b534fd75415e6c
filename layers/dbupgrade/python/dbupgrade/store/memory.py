"""The store in this instance's memory: only with DBUPGRADE_IDEMPOTENCY=off and no Redis (and for
a rollout plan's throw-away preview). The same rules as ``RedisStore``, under one thread lock."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dbupgrade.model import Outcome
from dbupgrade.store.base import Finished, Finishing, Locked, follow_identity, role
from dbupgrade.store.claims import Claim, ClaimChange, claim_identity
from dbupgrade.store.keys import HISTORY_LENGTH, SET_ASIDE_MAX
from dbupgrade.store.redis_store import outbox_entry


class MemoryStore:
    redis = None

    def __init__(self) -> None:
        self._history: dict[str, list[Outcome]] = {}
        self._following: dict[str, Outcome] = {}
        self._claims: dict[str, tuple[Claim, float]] = {}
        self._marks: dict[str, float] = {}
        self._locks: dict[str, float] = {}
        self._outbox: list[str] = []
        self._set_aside: list[dict[str, Any]] = []
        self._chains: dict[str, tuple[str, float]] = {}
        self._digests: dict[tuple[str, str], float] = {}
        self._answers: dict[str, tuple[Outcome, float]] = {}
        self._tracker_cursor = 0
        self._lock = threading.RLock()

    def finish(
        self,
        outcome: Outcome,
        *,
        message: dict[str, Any] | None = None,
        claim: ClaimChange | None = None,
        follows: Outcome | None = None,
        answers: tuple[str, int] | None = None,
    ) -> Finished:
        instance = outcome.instance_id
        with self._lock:
            following = self._following.get(instance)
            if follows is not None and (
                following is None or follow_identity(following) != follow_identity(follows)
            ):
                return Finished(False)
            items = self._history.setdefault(instance, [])
            items.insert(0, Outcome.from_dict(outcome.to_dict()))
            del items[HISTORY_LENGTH:]
            kind = role(outcome)
            if kind == "submitted" or (kind == "in_flight" and (follows is not None or following is None)):
                self._following[instance] = outcome
            elif kind == "done" and follows is not None:
                self._following.pop(instance, None)
            entry = outbox_entry(message) if message is not None else None
            if entry is not None:
                self._outbox.append(entry)
            if claim is not None:
                self._change_claim(claim_identity(instance, claim.account_id), claim)
            if answers is not None:
                key, seconds = answers
                self._answers[key] = (Outcome.from_dict(outcome.to_dict()), time.monotonic() + seconds)
            return Finished(True, entry)

    def finish_many(self, finishing: Sequence[Finishing]) -> list[Finished]:
        return [
            self.finish(f.outcome, message=f.message, claim=f.claim, follows=f.follows, answers=f.answers)
            for f in finishing
        ]

    def answer_of(self, idempotency_key: str) -> Outcome | None:
        with self._lock:
            answer = self._answers.get(idempotency_key)
            if answer is None or answer[1] <= time.monotonic():
                self._answers.pop(idempotency_key, None)
                return None
            return answer[0]

    def queue_answer_of(self, pipeline: Any, idempotency_key: str) -> Callable[[Any], Outcome | None]:
        """No pipeline here: the answer is read when the reply is."""
        return lambda _reply: self.answer_of(idempotency_key)

    def forget_answer(self, idempotency_key: str, pipeline: Any) -> None:
        with self._lock:
            self._answers.pop(idempotency_key, None)

    def _change_claim(self, identity: str, change: ClaimChange) -> None:
        held = self._held(identity)
        if held is None:
            return
        if change.action == "accept" and held.owner == change.key and change.claim is not None:
            self._claims[identity] = (change.claim, time.monotonic() + change.seconds)
        elif (change.action == "release" and held.owner == change.key) or (
            change.action == "release_version" and held.to_version == change.key
        ):
            del self._claims[identity]

    def record(self, outcome: Outcome) -> None:
        self.finish(outcome)

    def latest(self, instance_id: str) -> Outcome | None:
        items = self._history.get(instance_id)
        return items[0] if items else None

    def latest_many(self, instance_ids: list[str]) -> dict[str, Outcome]:
        return {i: o for i in instance_ids if (o := self.latest(i)) is not None}

    def history(self, instance_id: str, limit: int = HISTORY_LENGTH) -> list[Outcome]:
        return list(self._history.get(instance_id, []))[:limit]

    def following(self, instance_id: str) -> Outcome | None:
        return self._following.get(instance_id)

    def following_many(self, instance_ids: list[str]) -> dict[str, Outcome]:
        return {i: self._following[i] for i in instance_ids if i in self._following}

    def followed(self) -> Iterator[Outcome]:
        with self._lock:
            followed = [self._following[i] for i in sorted(self._following)]
        yield from followed

    def _set_progress(self, followed: Outcome, fields: dict[str, Any]) -> bool:
        instance = followed.instance_id
        with self._lock:
            following = self._following.get(instance)
            if following is None or follow_identity(following) != follow_identity(followed):
                return False
            for outcome in (following, self.latest(instance)):
                if outcome is not None and follow_identity(outcome) == follow_identity(followed):
                    for name, value in fields.items():
                        setattr(outcome, name, value)
            return True

    def set_progress_many(self, updates: list[tuple[Outcome, dict[str, Any]]]) -> int:
        return sum(self._set_progress(followed, fields) for followed, fields in updates)

    def save_chain(self, instance_id: str, chain: dict[str, Any], seconds: int) -> None:
        with self._lock:
            self._chains[instance_id] = (json.dumps(chain), time.monotonic() + seconds)

    def chain_of(self, instance_id: str) -> dict[str, Any] | None:
        with self._lock:
            held = self._chains.get(instance_id)
            if held is None or held[1] <= time.monotonic():
                self._chains.pop(instance_id, None)
                return None
            return dict(json.loads(held[0]))

    def drop_chain(self, instance_id: str) -> None:
        with self._lock:
            self._chains.pop(instance_id, None)

    def claim(self, claim: Claim, seconds: int) -> Claim | None:
        with self._lock:
            held = self._held(claim.identity)
            if held is not None and held.owner != claim.owner:
                return held
            self._claims[claim.identity] = (claim, time.monotonic() + seconds)
            return None

    def claim_with_token(
        self, claim: Claim, seconds: int, bucket: str, take: Sequence[Any]
    ) -> tuple[Claim | None, list[Any] | None]:
        """``claim``; no token taken (None): this store keeps no rate-limit buckets."""
        return self.claim(claim, seconds), None

    def claim_of(self, instance_id: str, account_id: str | None = None) -> Claim | None:
        return self._held(claim_identity(instance_id, account_id))

    def queue_claim_of(
        self, pipeline: Any, instance_id: str, account_id: str | None = None
    ) -> Callable[[Any], Claim | None]:
        """No pipeline here: the claim is read when the reply is."""
        return lambda _reply: self.claim_of(instance_id, account_id)

    def _held(self, identity: str) -> Claim | None:
        with self._lock:
            held = self._claims.get(identity)
            if held is None or held[1] <= time.monotonic():
                self._claims.pop(identity, None)
                return None
            return held[0]

    def mark_upgrading(self, instance_id: str, to_version: str, seconds: int) -> None:
        with self._lock:
            self._marks[f"{instance_id}:{to_version}"] = time.monotonic() + seconds

    def seen_upgrading(self, instance_id: str, to_version: str) -> bool:
        return self._marks.get(f"{instance_id}:{to_version}", 0) > time.monotonic()

    def seen_upgrading_many(self, upgrades: list[tuple[str, str]]) -> set[tuple[str, str]]:
        return {u for u in upgrades if self.seen_upgrading(*u)}

    def mark_upgrading_many(self, upgrades: list[tuple[str, str]], seconds: int) -> None:
        for instance_id, to_version in upgrades:
            self.mark_upgrading(instance_id, to_version, seconds)

    def forget_upgrading(self, instance_id: str, to_version: str) -> None:
        with self._lock:
            self._marks.pop(f"{instance_id}:{to_version}", None)

    def forget_finished(self, upgrades: Sequence[tuple[str, str]], chains: Sequence[str]) -> None:
        for upgrade in upgrades:
            self.forget_upgrading(*upgrade)
        for instance_id in chains:
            self.drop_chain(instance_id)

    def tracker_cursor(self) -> int:
        with self._lock:
            return self._tracker_cursor

    def set_tracker_cursor(self, shard: int) -> None:
        with self._lock:
            self._tracker_cursor = shard

    @contextmanager
    def lock(self, name: str, seconds: float, *, wait_seconds: float = 0) -> Iterator[None]:
        deadline = time.monotonic() + wait_seconds
        while True:
            with self._lock:
                if self._locks.get(name, 0) <= time.monotonic():
                    self._locks[name] = time.monotonic() + seconds
                    break
            if time.monotonic() >= deadline:
                raise Locked(name)
            time.sleep(0.05)
        try:
            yield None
        finally:
            with self._lock:
                self._locks.pop(name, None)

    def claim_digest(self, rollout_id: str, day: str, message: dict[str, Any], seconds: int) -> bool:
        with self._lock:
            if self._digests.get((rollout_id, day), 0) > time.monotonic():
                return False
            self._digests[(rollout_id, day)] = time.monotonic() + seconds
            self._outbox.append(outbox_entry(message, due_now=True))
            return True

    def outbox_add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._outbox.append(outbox_entry(entry["message"], due_now=True))

    def outbox_done(self, entry: str, pipeline: Any = None) -> None:
        # ``pipeline`` is a Redis store's: without Redis there is no idempotency write to ride.
        with self._lock:
            if entry in self._outbox:
                self._outbox.remove(entry)

    def outbox_due(self, entry: str) -> None:
        data = json.loads(entry)
        data["not_before"] = time.time()
        with self._lock:
            if entry in self._outbox:
                self._outbox.remove(entry)
            self._outbox.append(json.dumps(data, sort_keys=True))

    def outbox_settle(self, done: Sequence[str], due: Sequence[str]) -> None:
        for entry in done:
            self.outbox_done(entry)
        for entry in due:
            self.outbox_due(entry)

    def outbox_size(self) -> int:
        return len(self._outbox)

    def drain(self, deliver: Callable[[dict[str, Any]], bool], *, deadline: float, limit: int) -> int:
        delivered = 0
        with self._lock:
            while self._outbox and delivered < limit and time.monotonic() < deadline:
                raw = self._outbox[0]
                entry = json.loads(raw)
                if float(entry.get("not_before") or 0) > time.time() or not deliver(entry):
                    break
                self._outbox.remove(raw)
                delivered += 1
        return delivered

    def set_aside(self, entry: dict[str, Any], reason: str) -> int:
        # No lock: ``drain`` holds it while it calls the deliverer that sets entries aside.
        self._set_aside.insert(0, {**entry, "set_aside_reason": reason})
        del self._set_aside[SET_ASIDE_MAX:]
        return len(self._set_aside)

    def set_aside_size(self) -> int:
        return len(self._set_aside)
