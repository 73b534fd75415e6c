"""The store in Redis: every read and write of dbupgrade's keys (``keys``) and scripts (``scripts``)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dbupgrade import clock
from dbupgrade.errors import StoreUnavailable
from dbupgrade.model import Outcome
from dbupgrade.store import keys, scripts
from dbupgrade.store.base import (
    OUTBOX_GRACE_SECONDS,
    Finished,
    Finishing,
    Locked,
    follow_identity,
    redis_errors,
    role,
)
from dbupgrade.store.claims import Claim, ClaimChange, claim_identity

READ_BATCH = 500  # followed outcomes read per MGET
FOLLOWS_FIELD = "follows"  # a progress record's followed outcome (``base.follow_identity``)
# A shard's progress records outlive its last write by this long (a concluded upgrade's go at once).
PROGRESS_SECONDS = 7 * 24 * 3600
OUTBOX_LOCK_SECONDS = 30  # longer than one drain's publishes take; a crashed drainer frees it this soon
# ``json.dumps(value, sort_keys=True)``'s own encoder, built once: the finishing writes encode an
# outcome and an outbox entry per transition, thousands a tick at fleet scale.
_sorted_json = json.JSONEncoder(sort_keys=True).encode


def outbox_entry(message: dict[str, Any], *, due_now: bool = False) -> str:
    now = time.time()
    entry = {
        "id": uuid.uuid4().hex,
        "message": message,
        "added_at": now,
        "not_before": now if due_now else now + OUTBOX_GRACE_SECONDS,
    }
    return _sorted_json(entry)


def _apply_progress(outcome: Outcome, record: Any) -> None:
    """Set a progress record's fields on ``outcome`` when the record is that outcome's."""
    if not record:
        return
    fields = json.loads(record)
    if fields.pop(FOLLOWS_FIELD, None) == follow_identity(outcome):
        for name, value in fields.items():
            setattr(outcome, name, value)


def _by_shard(upgrades: Sequence[tuple[str, str]]) -> dict[int, list[tuple[str, str]]]:
    """``(instance, version)`` pairs grouped by the tracker shard of their instance."""
    grouped: dict[int, list[tuple[str, str]]] = {}
    for upgrade in upgrades:
        grouped.setdefault(keys.tracker_shard(upgrade[0]), []).append(upgrade)
    return grouped


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _finish_call(finishing: Finishing) -> tuple[str, list[str], list[Any]]:
    """``scripts.FINISH``'s outbox entry ("" for none), keys and arguments for one outcome."""
    outcome, claim, follows = finishing.outcome, finishing.claim, finishing.follows
    entry = outbox_entry(finishing.message) if finishing.message is not None else ""
    change = ["", "", "", "0"]
    if claim is not None:
        claim_json = claim.claim.to_json() if claim.claim is not None else ""
        change = [claim.action, claim.key, claim_json, str(claim.seconds)]
    instance = outcome.instance_id
    script_keys = [
        keys.latest(instance),
        keys.history(instance),
        keys.IN_FLIGHT,
        keys.following(instance),
        keys.OUTBOX,
        keys.claim(claim_identity(instance, claim.account_id if claim else None)),
    ]
    args = [
        _sorted_json(outcome.to_dict()),
        instance,
        keys.HISTORY_LENGTH,
        follow_identity(follows) if follows is not None else "",
        role(outcome),
        entry,
        *change,
    ]
    if finishing.answers is not None:
        script_keys.append(keys.answered(finishing.answers[0]))
        args.append(str(max(1, finishing.answers[1])))
    return entry, script_keys, args


class RedisStore:
    def __init__(self, client: Any) -> None:
        self.redis = client
        self._finish = client.register_script(scripts.FINISH)
        self._claim = client.register_script(scripts.CLAIM)
        self._claim_take = client.register_script(scripts.CLAIM_TAKE)
        self._digest = client.register_script(scripts.DIGEST)

    # -- outcomes -------------------------------------------------------------------------------

    def finish(
        self,
        outcome: Outcome,
        *,
        message: dict[str, Any] | None = None,
        claim: ClaimChange | None = None,
        follows: Outcome | None = None,
        answers: tuple[str, int] | None = None,
    ) -> Finished:
        """The one write that finishes an outcome, in one transaction (``scripts.FINISH``).

        Records it (latest + history), keeps the followed upgrade (a ``submitted`` outcome is
        followed from now on; any other outcome of the use case leaves the followed one alone),
        queues ``message`` in the outbox and applies ``claim``. ``follows`` (the tracker): the
        followed outcome this one concludes; when another outcome replaced it meanwhile nothing is
        written (``Finished.written`` is False). ``answers``: (idempotency key, seconds) of the keyed
        request this outcome finally answers: kept as its answer (``answer_of``) for ``seconds``.
        """
        entry, script_keys, args = _finish_call(Finishing(outcome, message, claim, follows, answers))
        with redis_errors():
            written = self._finish(keys=script_keys, args=args)
        return Finished(bool(int(written)), entry or None)

    def finish_many(self, finishing: Sequence[Finishing]) -> list[Finished]:
        """``finish`` of each, in one pipelined round trip (each script its own transaction, as
        ``finish``'s; nothing sent for none): the tracker records a chunk's transitions at once."""
        if not finishing:
            return []
        entries: list[str] = []
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            for one in finishing:
                entry, script_keys, args = _finish_call(one)
                entries.append(entry)
                self._finish(keys=script_keys, args=args, client=pipe)
            replies = pipe.execute()
        return [
            Finished(bool(int(written)), entry or None)
            for written, entry in zip(replies, entries, strict=True)
        ]

    def answer_of(self, idempotency_key: str) -> Outcome | None:
        """The outcome a keyed request's earlier attempt recorded as its final answer, while its
        idempotency record does not hold it yet (the attempt died between the two writes)."""
        with redis_errors():
            raw = self.redis.get(keys.answered(idempotency_key))
        return Outcome.from_dict(json.loads(raw)) if raw else None

    def queue_answer_of(self, pipeline: Any, idempotency_key: str) -> Callable[[Any], Outcome | None]:
        """``answer_of`` queued on another command's ``pipeline``; returns what reads its reply."""
        pipeline.get(keys.answered(idempotency_key))
        return lambda raw: Outcome.from_dict(json.loads(raw)) if raw else None

    def forget_answer(self, idempotency_key: str, pipeline: Any) -> None:
        """The request's idempotency record holds its answer now: queued on that write's ``pipeline``."""
        pipeline.delete(keys.answered(idempotency_key))

    def record(self, outcome: Outcome) -> None:
        """``finish`` without a notification or a claim change."""
        self.finish(outcome)

    def latest(self, instance_id: str) -> Outcome | None:
        """The latest outcome; when it is the followed upgrade, with the task progress the tracker
        last read (``set_progress_many``), read in the same round trip."""
        return self._with_progress_of(keys.latest(instance_id), instance_id)

    def latest_many(self, instance_ids: list[str]) -> dict[str, Outcome]:
        """The latest outcome of each instance that has one: one MGET per ``READ_BATCH``."""
        return self._outcomes(keys.latest, instance_ids)

    def _outcomes(self, key_of: Callable[[str], str], instance_ids: list[str]) -> dict[str, Outcome]:
        """The outcome under ``key_of(instance)`` of each instance that has one, in MGET batches."""
        found: dict[str, Outcome] = {}
        for start in range(0, len(instance_ids), READ_BATCH):
            batch = instance_ids[start : start + READ_BATCH]
            with redis_errors():
                raws = self.redis.mget([key_of(i) for i in batch])
            found.update(
                (i, Outcome.from_dict(json.loads(raw))) for i, raw in zip(batch, raws, strict=True) if raw
            )
        return found

    def history(self, instance_id: str, limit: int = keys.HISTORY_LENGTH) -> list[Outcome]:
        with redis_errors():
            raws = self.redis.lrange(keys.history(instance_id), 0, limit - 1)
        return [Outcome.from_dict(json.loads(raw)) for raw in raws]

    def following(self, instance_id: str) -> Outcome | None:
        """The in-flight outcome the tracker follows for the instance, with its task progress."""
        return self._with_progress_of(keys.following(instance_id), instance_id)

    def _with_progress_of(self, key: str, instance_id: str) -> Outcome | None:
        """The outcome under ``key`` and the instance's task progress, in one round trip; the progress
        is kept on the outcome only when it was read for that outcome (``_apply_progress``)."""
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(key)
            pipe.hget(keys.tracker_progress(keys.tracker_shard(instance_id)), instance_id)
            raw, progress = pipe.execute()
        if not raw:
            return None
        outcome = Outcome.from_dict(json.loads(raw))
        _apply_progress(outcome, progress)
        return outcome

    def following_many(self, instance_ids: list[str]) -> dict[str, Outcome]:
        """The followed outcome of each instance that has one, with its task progress: one MGET per
        ``READ_BATCH``, then one HMGET per tracker shard."""
        found = self._outcomes(keys.following, instance_ids)
        self._with_progress(list(found.values()))
        return found

    def followed(self) -> Iterator[Outcome]:
        """Every followed in-flight outcome with its task progress (one SMEMBERS, MGETs in batches,
        then one HMGET per tracker shard)."""
        with redis_errors():
            instance_ids = sorted(_text(v) for v in self.redis.smembers(keys.IN_FLIGHT))
        outcomes = list(self._outcomes(keys.following, instance_ids).values())
        self._with_progress(outcomes)
        yield from outcomes

    def _with_progress(self, outcomes: list[Outcome]) -> None:
        """Each outcome with the task progress the tracker last read for it (``set_progress_many``):
        one HMGET per tracker shard, in one round trip (nothing sent for none)."""
        by_shard: dict[int, list[Outcome]] = {}
        for outcome in outcomes:
            by_shard.setdefault(keys.tracker_shard(outcome.instance_id), []).append(outcome)
        if not by_shard:
            return
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            for shard, group in by_shard.items():
                pipe.hmget(keys.tracker_progress(shard), [o.instance_id for o in group])
            replies = pipe.execute()
        for group, records in zip(by_shard.values(), replies, strict=True):
            for outcome, record in zip(group, records, strict=True):
                _apply_progress(outcome, record)

    def set_progress_many(self, updates: list[tuple[Outcome, dict[str, Any]]]) -> int:
        """Keep each task's progress (``fields``) for its followed outcome: no history entry, no
        notification, and the outcome's own record untouched. Per tracker shard one HSET of the
        shard's records (each names the followed outcome it belongs to: once another replaced it, the
        readers leave it aside), in one round trip: a tick's progress takes as many commands whatever
        the number of upgrades that moved. How many were written."""
        by_shard: dict[int, dict[str, str]] = {}
        for followed, fields in updates:
            record = json.dumps({**fields, FOLLOWS_FIELD: follow_identity(followed)}, sort_keys=True)
            by_shard.setdefault(keys.tracker_shard(followed.instance_id), {})[followed.instance_id] = record
        if not by_shard:
            return 0
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            for shard, records in by_shard.items():
                key = keys.tracker_progress(shard)
                pipe.hset(key, mapping=records)
                pipe.expire(key, PROGRESS_SECONDS)
            pipe.execute()
        return len(updates)

    # -- multi-hop checkpoints ------------------------------------------------------------------

    def save_chain(self, instance_id: str, chain: dict[str, Any], seconds: int) -> None:
        """Checkpoint a multi-hop upgrade (``dbupgrade.hops``); it expires after ``seconds``."""
        with redis_errors():
            self.redis.set(keys.chain(instance_id), json.dumps(chain, sort_keys=True), ex=max(1, seconds))

    def chain_of(self, instance_id: str) -> dict[str, Any] | None:
        with redis_errors():
            raw = self.redis.get(keys.chain(instance_id))
        return dict(json.loads(raw)) if raw else None

    def drop_chain(self, instance_id: str) -> None:
        with redis_errors():
            self.redis.delete(keys.chain(instance_id))

    # -- claims ---------------------------------------------------------------------------------

    def claim(self, claim: Claim, seconds: int) -> Claim | None:
        """Take the instance's claim for ``claim.owner``; the other holder's claim if it is taken."""
        with redis_errors():
            held = self._claim(
                keys=[keys.claim(claim.identity)], args=[claim.to_json(), claim.owner, seconds]
            )
        return Claim.from_json(held) if held is not None else None

    def claim_with_token(
        self, claim: Claim, seconds: int, bucket: str, take: Sequence[Any]
    ) -> tuple[Claim | None, list[Any] | None]:
        """``claim``, and when it is taken a rate-limit token of ``bucket`` (``take``: the limiter's
        arguments), in one script: the other holder's claim and no token, or None and the take's reply."""
        with redis_errors():
            reply = self._claim_take(
                keys=[keys.claim(claim.identity), bucket], args=[claim.to_json(), claim.owner, seconds, *take]
            )
        if reply[0]:
            return Claim.from_json(reply[0]), None
        return None, list(reply[1:])

    def claim_of(self, instance_id: str, account_id: str | None = None) -> Claim | None:
        with redis_errors():
            raw = self.redis.get(keys.claim(claim_identity(instance_id, account_id)))
        return Claim.from_json(raw) if raw else None

    def queue_claim_of(
        self, pipeline: Any, instance_id: str, account_id: str | None = None
    ) -> Callable[[Any], Claim | None]:
        """``claim_of`` queued on another command's ``pipeline``; returns what reads its reply."""
        pipeline.get(keys.claim(claim_identity(instance_id, account_id)))
        return lambda raw: Claim.from_json(raw) if raw else None

    # -- the tracker's marks --------------------------------------------------------------------

    # One hash a tracker shard (``keys.seen_upgrading``): each mark's value is when it lapses, so a
    # mark still lives ``seconds`` from its own writing while a shard's marks go in one command.

    def mark_upgrading(self, instance_id: str, to_version: str, seconds: int) -> None:
        self.mark_upgrading_many([(instance_id, to_version)], seconds)

    def seen_upgrading(self, instance_id: str, to_version: str) -> bool:
        return (instance_id, to_version) in self.seen_upgrading_many([(instance_id, to_version)])

    def seen_upgrading_many(self, upgrades: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of ``(instance, to_version)`` the tracker saw running: one HMGET per shard, one round trip."""
        by_shard = _by_shard(upgrades)
        if not by_shard:
            return set()
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            for shard, batch in by_shard.items():
                pipe.hmget(keys.seen_upgrading(shard), [keys.seen_upgrading_field(*u) for u in batch])
            replies = pipe.execute()
        now = clock.now()
        return {
            upgrade
            for batch, lapses in zip(by_shard.values(), replies, strict=True)
            for upgrade, lapse in zip(batch, lapses, strict=True)
            if lapse is not None and float(lapse) > now
        }

    def mark_upgrading_many(self, upgrades: list[tuple[str, str]], seconds: int) -> None:
        """``mark_upgrading`` of each: per shard one HSET (and its hash's expiry pushed out), one
        round trip (nothing sent for none)."""
        by_shard = _by_shard(upgrades)
        if not by_shard:
            return
        lapse = str(clock.now() + seconds)
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            for shard, batch in by_shard.items():
                key = keys.seen_upgrading(shard)
                pipe.hset(key, mapping={keys.seen_upgrading_field(*u): lapse for u in batch})
                pipe.expire(key, seconds)
            pipe.execute()

    def forget_upgrading(self, instance_id: str, to_version: str) -> None:
        self.forget_finished([(instance_id, to_version)], [])

    def forget_finished(self, upgrades: Sequence[tuple[str, str]], chains: Sequence[str]) -> None:
        """Concluded upgrades: their running marks (``forget_upgrading``) and task progress (one
        HDEL each per shard) and multi-hop checkpoints (``drop_chain``: one DEL), in one round trip
        (nothing sent for none)."""
        by_shard = _by_shard(upgrades)
        if not by_shard and not chains:
            return
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            for shard, batch in by_shard.items():
                pipe.hdel(keys.seen_upgrading(shard), *[keys.seen_upgrading_field(*u) for u in batch])
                pipe.hdel(keys.tracker_progress(shard), *{u[0] for u in batch})
            if chains:
                pipe.delete(*[keys.chain(i) for i in chains])
            pipe.execute()

    def tracker_cursor(self) -> int:
        """The shard the next tracker tick starts at (0 before any tick was cut short)."""
        with redis_errors():
            raw = self.redis.get(keys.tracker_cursor())
        return int(raw) if raw else 0

    def set_tracker_cursor(self, shard: int) -> None:
        with redis_errors():
            self.redis.set(keys.tracker_cursor(), str(shard))

    # -- locks ----------------------------------------------------------------------------------

    @contextmanager
    def lock(self, name: str, seconds: float, *, wait_seconds: float = 0) -> Iterator[Any]:
        """redis-py's ``Lock`` (token-checked atomic release, ``extend``) held for ``seconds`` at most.

        ``Locked`` when another holder has it (after waiting up to ``wait_seconds``).
        """
        lock = self.redis.lock(
            name,
            timeout=max(1.0, seconds),
            blocking=wait_seconds > 0,
            blocking_timeout=wait_seconds if wait_seconds > 0 else None,
            thread_local=False,
        )
        with redis_errors():
            acquired = lock.acquire()
        if not acquired:
            raise Locked(name)
        try:
            yield lock
        finally:
            import redis

            try:
                lock.release()
            except redis.exceptions.LockError:
                pass  # expired (the holder outlived its deadline) and possibly taken since: not ours
            except redis.exceptions.RedisError as exc:
                raise StoreUnavailable(f"state store unavailable: {type(exc).__name__}") from None

    # -- campaigns ------------------------------------------------------------------------------

    def claim_digest(self, rollout_id: str, day: str, message: dict[str, Any], seconds: int) -> bool:
        """Claim the campaign's digest of ``day`` and queue ``message`` in the outbox (due at once),
        in one script; False when that day's digest was already claimed (nothing queued)."""
        entry = outbox_entry(message, due_now=True)
        with redis_errors():
            claimed = self._digest(
                keys=[keys.campaign_digest(rollout_id, day), keys.OUTBOX], args=[entry, seconds]
            )
        return bool(int(claimed))

    # -- the notification outbox ----------------------------------------------------------------

    def outbox_add(self, entry: dict[str, Any]) -> None:
        """Queue a message no outcome write carries (a rollout summary); due at once."""
        with redis_errors():
            self.redis.rpush(keys.OUTBOX, outbox_entry(entry["message"], due_now=True))

    def outbox_done(self, entry: str, pipeline: Any = None) -> None:
        """The writer published its own entry: take it off the outbox. ``pipeline``: queued on it
        instead (it rides another write's round trip, the idempotency completion's)."""
        if pipeline is not None:
            pipeline.lrem(keys.OUTBOX, 1, entry)
            return
        with redis_errors():
            self.redis.lrem(keys.OUTBOX, 1, entry)

    def outbox_due(self, entry: str) -> None:
        """The writer could not publish its entry: due now, for the next drain (one transaction)."""
        data = json.loads(entry)
        data["not_before"] = time.time()
        with redis_errors():
            pipe = self.redis.pipeline(transaction=True)
            pipe.lrem(keys.OUTBOX, 1, entry)
            pipe.rpush(keys.OUTBOX, json.dumps(data, sort_keys=True))
            pipe.execute()

    def outbox_settle(self, done: Sequence[str], due: Sequence[str]) -> None:
        """``outbox_done`` of each of ``done`` and ``outbox_due`` of each of ``due``, in one
        transaction (one round trip; nothing sent for none): a batch of writers' entries settled."""
        if not done and not due:
            return
        now = time.time()
        with redis_errors():
            pipe = self.redis.pipeline(transaction=True)
            for entry in done:
                pipe.lrem(keys.OUTBOX, 1, entry)
            for entry in due:
                data = json.loads(entry)
                data["not_before"] = now
                pipe.lrem(keys.OUTBOX, 1, entry)
                pipe.rpush(keys.OUTBOX, json.dumps(data, sort_keys=True))
            pipe.execute()

    def outbox_size(self) -> int:
        """Entries waiting, the one being published included; one round trip (the store's probe)."""
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            pipe.llen(keys.OUTBOX)
            pipe.llen(keys.OUTBOX_CLAIMED)
            waiting, claimed = pipe.execute()
        return int(waiting) + int(claimed)

    def drain(self, deliver: Callable[[dict[str, Any]], bool], *, deadline: float, limit: int) -> int:
        """Deliver up to ``limit`` due outbox entries, oldest first, until ``deadline``
        (time.monotonic()), the first failed delivery or an entry its writer may still be publishing
        (not due yet); returns how many were delivered.

        One drainer at a time (a redis-py ``Lock``, renewed before each entry). Each entry is claimed
        (moved to a claimed list) before ``deliver`` and removed from it only after ``deliver``
        succeeded, so no entry is published twice while drainers live; a failed delivery puts it
        back at the head. A drainer that dies mid-publish leaves its one claimed entry behind: the
        next drainer puts it back and publishes it again (at least once, never more than that
        in-flight entry). Another drainer holding the lock: returns 0 at once.
        """
        from redis.exceptions import LockError

        with redis_errors():
            lock = self.redis.lock(keys.OUTBOX_LOCK, timeout=OUTBOX_LOCK_SECONDS, blocking=False)
            if not lock.acquire():
                return 0
        delivered = 0
        try:
            with redis_errors():
                # Whatever is claimed now was claimed by a drainer that died: back in line first.
                self.redis.eval(scripts.UNCLAIM, 2, keys.OUTBOX, keys.OUTBOX_CLAIMED)
            while delivered < limit and time.monotonic() < deadline:
                try:
                    with redis_errors():
                        lock.reacquire()
                except LockError:  # held past its timeout (a publish hung): another drainer may own it
                    break
                with redis_errors():
                    raw = self.redis.eval(scripts.CLAIM_DUE, 2, keys.OUTBOX, keys.OUTBOX_CLAIMED, time.time())
                if raw is None:
                    break
                if not deliver(json.loads(raw)):
                    with redis_errors():
                        self.redis.eval(scripts.UNCLAIM, 2, keys.OUTBOX, keys.OUTBOX_CLAIMED)
                    break
                with redis_errors():
                    self.redis.lrem(keys.OUTBOX_CLAIMED, 1, raw)
                delivered += 1
        finally:
            with redis_errors():
                if lock.owned():
                    lock.release()
        return delivered

    def set_aside(self, entry: dict[str, Any], reason: str) -> int:
        """Keep an outbox entry MNS refused for good apart from the outbox; returns how many are kept."""
        data = json.dumps({**entry, "set_aside_reason": reason}, sort_keys=True, default=str)
        with redis_errors():
            pipe = self.redis.pipeline(transaction=True)
            pipe.lpush(keys.SET_ASIDE, data)
            pipe.ltrim(keys.SET_ASIDE, 0, keys.SET_ASIDE_MAX - 1)
            pipe.llen(keys.SET_ASIDE)
            return int(pipe.execute()[-1])

    def set_aside_size(self) -> int:
        with redis_errors():
            return int(self.redis.llen(keys.SET_ASIDE))
