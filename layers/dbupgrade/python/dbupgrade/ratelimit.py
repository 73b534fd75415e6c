"""One rate limit per (account, region, product, action), shared by every function instance through Redis.

Alibaba Cloud throttles each API per region and per main account: a product's "API rate quota"
page gives each action's default quota as ``calls/period`` with the dimension ``regionId, API,
ParentUid`` (``Throttling.User`` when exceeded). A rollout fans out to many function instances at
once, and retrying each refusal on its own only adds load where the limit is already hit; a token
bucket in the shared store paces them all, one bucket per (account, region, action), so a fleet
spread over regions is paced by each region's own quota.

- **Defaults**: ``PUBLISHED_QUOTAS``, the published default quota of every action dbupgrade calls
  (with the page it comes from); an action whose row we could not read keeps ``ASSUMED_QUOTA`` (a
  named assumption: the 10 calls/s dbupgrade shipped before it sourced any quota).
- **Token bucket**: refilled at ``calls / period`` tokens/s, holding at most one second's worth (an
  assumption: the pages say nothing of bursts inside the period). A take is one Lua script (atomic, timed by the Redis server's clock so
  instances need not agree on time). A caller that finds the bucket empty *reserves* the next token
  and sleeps exactly until it is due: no polling, and callers are served in arrival order.
- **AIMD**: a throttled answer (``Throttling*``, HTTP 429; not a 5xx) halves the rate and the
  burst, at most once per second (a burst of refusals is one congestion signal), never below a
  quarter of the ceiling; each success adds ``ceiling / 50`` back, up to the ceiling. The caller
  still honours the refusal's ``x-acs-retry-after`` through ``CloudApi``'s backoff.
- **Configuration**: ``DBUPGRADE_RATE_LIMITS`` overrides the defaults: a JSON object of action ->
  calls per second, ``"*"`` for every action it does not name, e.g.
  ``{"ModifyInstanceMajorVersion": 20, "*": 50}``. The operator's word wins over the published
  table (a raised quota, or a share of it left to other tools).
- **Account and region**: the account is FC's ``FC_ACCOUNT_ID`` (set in every function instance);
  elsewhere ``default``, so every local process pointed at the same store shares one bucket. A call
  made in a member account (through its role, ``dbupgrade.accounts``) passes ``account``: each
  account has its own buckets. ``region`` is the region the call is sent to.

A store failure never blocks a call: the limiter logs it and lets the call through (the cloud's own
throttling and ``CloudApi``'s retries still apply).

Example::

    limiter = RateLimiter.from_env(store.redis)
    limiter.acquire("r-kvstore", "ModifyInstanceMajorVersion", deadline=ctx.deadline, region="cn-hangzhou")
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from dbupgrade.errors import ConfigError
from dbupgrade.logging import logger
from dbupgrade.store import keys, scripts

RATE_LIMITS_VARIABLE = "DBUPGRADE_RATE_LIMITS"
# Assumption (the quota pages say nothing of how calls may bunch inside the period): a bucket holds
# one second's worth of its rate (``scripts._TAKE_FUNCTION``'s capacity), so no caller spends a
# minute's quota in its first instant and the cloud's own counting, whatever its window, sees an
# even pace.
# An idle bucket expires: the next caller starts with a full bucket at the ceiling.
KEY_TTL_SECONDS = 600
DECREASE_FACTOR = 0.5
DECREASE_INTERVAL_SECONDS = 1.0  # refusals closer together than this are one congestion signal
INCREASE_FRACTION = 1 / 50  # of the ceiling, per successful call
# The rate never drops below this share of the ceiling: the ceiling is the operator's statement of
# what the account allows, AIMD only trims bursts over what the cloud accepts right now, and
# CloudApi's backoff still handles refusals below it.
FLOOR_FRACTION = 1 / 4
NO_REGION = "-"  # the bucket of a call made without a region (none of dbupgrade's today)


class Quota(NamedTuple):
    """``calls`` per ``period_seconds``, per (account, region, action): the published notation
    ``1000/60(s)`` is ``Quota(1000, 60)`` (https://help.aliyun.com/en/openapi/throttling-and-quota-management:
    "200/60 s - the API can be called up to 200 times per minute")."""

    calls: int
    period_seconds: float

    @property
    def per_second(self) -> float:
        return self.calls / self.period_seconds


# The product pages, "API rate quota" (API速率配额); their rows read "<action> | <version> |
# <calls>/<period>(s) | 地域:* API限速维度:regionId,API,ParentUid".
KVSTORE_QUOTA_PAGE = "https://help.aliyun.com/document_detail/472150.html"
KVSTORE_QUOTA_PAGE_EN = (
    "https://help.aliyun.com/en/redis/developer-reference/api-r-kvstore-2015-01-01-quota-redis"
)
DDS_QUOTA_PAGE = "https://help.aliyun.com/document_detail/468451.html"
# Assumption: the default of an action whose published row we have not read (see
# PUBLISHED_QUOTAS): 10 calls/s, what dbupgrade shipped before it sourced any quota. It is below
# the one row we have (DescribeEngineVersion, 1000/60 s = 16.7/s), so it errs on the slow side.
ASSUMED_QUOTA = Quota(600, 60)

# (product, action) -> its default quota, for every action dbupgrade calls. Only rows read from the
# product's page carry a number of their own; the others are ASSUMED_QUOTA, named as such, until
# someone reads their row (the pages were not in reach when this table was written: see
# bench/NOTES.md, "Published quotas").
PUBLISHED_QUOTAS: Mapping[tuple[str, str], Quota] = {
    # R-kvstore 2015-01-01: KVSTORE_QUOTA_PAGE (and KVSTORE_QUOTA_PAGE_EN)
    # "DescribeEngineVersion | 2015-01-01 | 1000/60(s) | 地域:* API限速维度:regionId,API,ParentUid"
    ("r-kvstore", "DescribeEngineVersion"): Quota(1000, 60),
    ("r-kvstore", "DescribeInstanceAttribute"): ASSUMED_QUOTA,  # row not read: KVSTORE_QUOTA_PAGE
    ("r-kvstore", "DescribeInstances"): ASSUMED_QUOTA,  # row not read: KVSTORE_QUOTA_PAGE
    ("r-kvstore", "ModifyInstanceMajorVersion"): ASSUMED_QUOTA,  # row not read: KVSTORE_QUOTA_PAGE
    ("r-kvstore", "DescribeBackups"): ASSUMED_QUOTA,  # row not read: KVSTORE_QUOTA_PAGE
    # KVSTORE_QUOTA_PAGE: "CreateBackup | 2015-01-01 | 暂无数据" - no quota published: assumed.
    ("r-kvstore", "CreateBackup"): ASSUMED_QUOTA,
    ("r-kvstore", "DescribeHistoryTasks"): ASSUMED_QUOTA,  # row not read: KVSTORE_QUOTA_PAGE
    ("r-kvstore", "DescribeActiveOperationTasks"): ASSUMED_QUOTA,  # row not read: KVSTORE_QUOTA_PAGE
    ("r-kvstore", "ModifyActiveOperationTasks"): ASSUMED_QUOTA,  # row not read: KVSTORE_QUOTA_PAGE
    ("r-kvstore", "CancelActiveOperationTasks"): ASSUMED_QUOTA,  # row not read: KVSTORE_QUOTA_PAGE
    ("r-kvstore", "DescribeRegions"): ASSUMED_QUOTA,  # row not read: KVSTORE_QUOTA_PAGE
    # Dds 2015-12-01: DDS_QUOTA_PAGE
    ("dds", "DescribeDBInstanceAttribute"): ASSUMED_QUOTA,  # row not read: DDS_QUOTA_PAGE
    ("dds", "DescribeDBInstances"): ASSUMED_QUOTA,  # row not read: DDS_QUOTA_PAGE
    ("dds", "UpgradeDBInstanceEngineVersion"): ASSUMED_QUOTA,  # row not read: DDS_QUOTA_PAGE
    ("dds", "DescribeAvailableEngineVersion"): ASSUMED_QUOTA,  # row not read: DDS_QUOTA_PAGE
    ("dds", "DescribeBackups"): ASSUMED_QUOTA,  # row not read: DDS_QUOTA_PAGE
    # DDS_QUOTA_PAGE: "CreateBackup | 2015-12-01 | 暂无数据" - no quota published: assumed.
    ("dds", "CreateBackup"): ASSUMED_QUOTA,
    ("dds", "DescribeHistoryTasks"): ASSUMED_QUOTA,  # row not read: DDS_QUOTA_PAGE
    ("dds", "DescribeActiveOperationTasks"): ASSUMED_QUOTA,  # row not read: DDS_QUOTA_PAGE
    ("dds", "ModifyActiveOperationTasks"): ASSUMED_QUOTA,  # row not read: DDS_QUOTA_PAGE
    ("dds", "CancelActiveOperationTasks"): ASSUMED_QUOTA,  # row not read: DDS_QUOTA_PAGE
    ("dds", "DescribeRegions"): ASSUMED_QUOTA,  # row not read: DDS_QUOTA_PAGE
    # STS 2015-04-01 AssumeRole and Resource Manager 2020-03-31 ListAccounts: no quota page found.
    ("sts", "AssumeRole"): ASSUMED_QUOTA,
    ("resourcemanager", "ListAccounts"): ASSUMED_QUOTA,
}


class RateLimited(Exception):
    """No token within the time the caller has left; ``wait_seconds`` is when the next one is due."""

    def __init__(self, action: str, wait_seconds: float) -> None:
        super().__init__(f"fleet rate limit: next {action} call allowed in {wait_seconds:.1f} s")
        self.action = action
        self.wait_seconds = wait_seconds


class RateLimits(NamedTuple):
    """Calls per second of each action: the operator's (``DBUPGRADE_RATE_LIMITS``: per action, and
    ``default`` for the rest) over the published quotas (``quotas``), over ``ASSUMED_QUOTA``.

    A NamedTuple, not a frozen dataclass, for the functions' cold start (bench/NOTES.md); its
    default ``per_action`` is read-only, as every instance shares it."""

    per_action: Mapping[str, float] = MappingProxyType({})
    default: float | None = None
    quotas: Mapping[tuple[str, str], Quota] = PUBLISHED_QUOTAS

    def ceiling(self, action: str, product: str = "") -> float:
        if action in self.per_action:
            return self.per_action[action]
        if self.default is not None:
            return self.default
        return self.quotas.get((product, action), ASSUMED_QUOTA).per_second

    @classmethod
    def parse(cls, text: str) -> RateLimits:
        """``{"ModifyInstanceMajorVersion": 20, "*": 50}``; raises ConfigError naming the variable."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(
                RATE_LIMITS_VARIABLE, "expected a JSON object of action -> calls per second"
            ) from None
        if not isinstance(raw, dict):
            raise ConfigError(RATE_LIMITS_VARIABLE, "expected a JSON object of action -> calls per second")
        limits: dict[str, float] = {}
        for action, value in raw.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(
                    RATE_LIMITS_VARIABLE, f"{action}: expected a positive number, got {value!r}"
                )
            limits[str(action)] = float(value)
        default = limits.pop("*", None)
        return cls(limits, default)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RateLimits:
        env = os.environ if env is None else env
        text = env.get(RATE_LIMITS_VARIABLE, "").strip()
        return cls.parse(text) if text else cls()


class RateLimiter:
    """Token buckets with AIMD in a shared Redis (see the module docstring)."""

    def __init__(self, redis: Any, limits: RateLimits | None = None, account: str | None = None) -> None:
        self.redis = redis
        self.limits = limits or RateLimits()
        self.account = account or "default"
        self._take = redis.register_script(scripts.RATE_TAKE)
        self._take_many = redis.register_script(scripts.RATE_TAKE_MANY)
        self._adjust = redis.register_script(scripts.RATE_ADJUST)
        # Buckets last seen below their ceiling: only those need a round trip after a success.
        self._recovering: set[str] = set()
        self._ceilings: dict[str, float] = {}  # bucket -> its ceiling, for a reply read elsewhere
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, redis: Any, env: Mapping[str, str] | None = None) -> RateLimiter | None:
        """The limiter for the store's Redis client (None without one: nothing to share state in)."""
        if redis is None:
            return None
        env = os.environ if env is None else env
        return cls(redis, RateLimits.from_env(env), env.get("FC_ACCOUNT_ID") or None)

    def key(self, product: str, action: str, account: str | None = None, region: str = NO_REGION) -> str:
        """The bucket of (account, region, action): the quota's dimension (regionId, API, ParentUid)."""
        return keys.ratelimit(account or self.account, region, product, action)

    def rate(self, product: str, action: str, account: str | None = None, region: str = NO_REGION) -> float:
        """The shared rate now (calls/s): the ceiling unless throttling has lowered it."""
        ceiling = self.limits.ceiling(action, product)
        raw = self.redis.hget(self.key(product, action, account, region), "rate")
        return min(ceiling, float(raw)) if raw is not None else ceiling

    def acquire(
        self,
        product: str,
        action: str,
        *,
        deadline: float,
        sleep: Callable[[float], None] = time.sleep,
        account: str | None = None,
        region: str = NO_REGION,
    ) -> float:
        """Take a token, sleeping until it is due; returns the seconds waited.

        Raises ``RateLimited`` (and takes nothing) when the token would come after ``deadline``
        (``time.monotonic()``).
        """
        key, take = self.take_args(product, action, deadline=deadline, account=account, region=region)
        try:
            reply = self._take(keys=[key], args=take)
        except Exception as exc:  # redis-py raises RedisError and socket errors alike
            logger.warning(
                "rate limiter unavailable; calling without it", extra={"error": type(exc).__name__}
            )
            return 0.0
        granted, wait = self._taken(key, reply)
        if not granted:
            raise RateLimited(action, wait)
        if wait > 0:
            sleep(wait)
        return wait

    def take_many(self, takes: Sequence[tuple[str, list[Any]]]) -> list[tuple[bool, float]] | None:
        """Several buckets' tokens in one round trip: ``takes`` are ``take_args``' (bucket, arguments);
        each bucket is taken as ``acquire`` takes it (refill, reservation, AIMD rate: per bucket).
        Returns (granted, seconds until the token is due) per take, sleeping for none: the caller
        waits for each before its own call. None when the store failed (nothing taken: each call
        takes its own, which lets the call through as ``acquire`` does)."""
        if not takes:
            return []
        try:
            replies = self._take_many(
                keys=[key for key, _ in takes], args=[arg for _, args in takes for arg in args]
            )
        except Exception as exc:  # redis-py raises RedisError and socket errors alike
            logger.warning("rate limiter unavailable", extra={"error": type(exc).__name__})
            return None
        return [self._taken(key, reply) for (key, _), reply in zip(takes, replies, strict=True)]

    def queue_take_many(
        self, pipeline: Any, takes: Sequence[tuple[str, list[Any]]]
    ) -> Callable[[Any], list[tuple[bool, float]] | None]:
        """``take_many`` queued on another command's ``pipeline`` (not a transaction, on this
        limiter's Redis); returns what reads its reply: the script's, or the exception the pipeline
        left in its place. A script the server does not hold yet (NOSCRIPT: a new or flushed server)
        is taken again by ``take_many``, which loads it; any other failure is ``take_many``'s: None."""
        pipeline.evalsha(
            self._take_many.sha,
            len(takes),
            *[key for key, _ in takes],
            *[a for _, args in takes for a in args],
        )

        def receive(replies: Any) -> list[tuple[bool, float]] | None:
            # Here, not at the top: importing dbupgrade loads no store client (cold start).
            from redis.exceptions import NoScriptError

            if isinstance(replies, NoScriptError):
                return self.take_many(takes)
            if isinstance(replies, Exception):
                logger.warning("rate limiter unavailable", extra={"error": type(replies).__name__})
                return None
            return [self._taken(key, reply) for (key, _), reply in zip(takes, replies, strict=True)]

        return receive

    def take_args(
        self,
        product: str,
        action: str,
        *,
        deadline: float,
        account: str | None = None,
        region: str = NO_REGION,
    ) -> tuple[str, list[Any]]:
        """The bucket and the arguments of a take (``scripts.RATE_TAKE``'s), for a script that takes
        a token along with other work (the store's claim); its reply goes to ``taken_elsewhere``."""
        max_wait = max(0.0, deadline - time.monotonic())
        key = self.key(product, action, account, region)
        ceiling = self.limits.ceiling(action, product)
        with self._lock:
            self._ceilings[key] = ceiling
        return key, [ceiling, max_wait, KEY_TTL_SECONDS]

    def taken_elsewhere(self, bucket: str, reply: list[Any]) -> float | None:
        """A take another script made (``take_args``): the seconds until its token is due (the
        caller waits them before its call); None when none was granted (nothing taken: the call
        takes its own, as ``acquire`` would)."""
        granted, wait = self._taken(bucket, reply)
        return wait if granted else None

    def _taken(self, key: str, reply: list[Any]) -> tuple[bool, float]:
        granted, wait_text, rate_text = reply
        wait, rate = float(wait_text), float(rate_text)
        with self._lock:
            ceiling = self._ceilings.get(key, rate)
        self._note(key, rate, ceiling)
        return bool(int(granted)), wait

    def throttled(
        self, product: str, action: str, account: str | None = None, region: str = NO_REGION
    ) -> None:
        """The cloud refused a call as throttled: halve the shared rate and the burst."""
        self._adjust_rate(product, action, self.key(product, action, account, region), "decrease")

    def succeeded(
        self, product: str, action: str, account: str | None = None, region: str = NO_REGION
    ) -> None:
        """A call went through: raise the rate back towards the ceiling (no-op at the ceiling)."""
        key = self.key(product, action, account, region)
        with self._lock:
            if key not in self._recovering:
                return
        self._adjust_rate(product, action, key, "increase")

    def _adjust_rate(self, product: str, action: str, key: str, direction: str) -> None:
        ceiling = self.limits.ceiling(action, product)
        try:
            rate = float(
                self._adjust(
                    keys=[key],
                    args=[
                        ceiling,
                        direction,
                        KEY_TTL_SECONDS,
                        DECREASE_INTERVAL_SECONDS,
                        ceiling * FLOOR_FRACTION,
                        DECREASE_FACTOR,
                        ceiling * INCREASE_FRACTION,
                    ],
                )
            )
        except Exception as exc:
            logger.warning("rate limiter unavailable", extra={"error": type(exc).__name__})
            return
        self._note(key, rate, ceiling)
        if direction == "decrease":
            logger.info("rate lowered after throttling", extra={"action": action, "calls_per_second": rate})

    def _note(self, key: str, rate: float, ceiling: float) -> None:
        with self._lock:
            if rate < ceiling:
                self._recovering.add(key)
            else:
                self._recovering.discard(key)
