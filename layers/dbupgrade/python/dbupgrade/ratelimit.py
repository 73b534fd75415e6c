"""One rate limit per (account, product, action), shared by every function instance through Redis.

Alibaba Cloud throttles per account and per API (``Throttling.User`` / ``Throttling.Api``). A
rollout fans out to many function instances at once, and retrying each refusal on its own only
adds load where the limit is already hit; a token bucket in the shared store paces them all.

- **Token bucket**: refilled at ``rate`` tokens/s, holding at most one second's worth. A take is
  one Lua script (atomic, timed by the Redis server's clock so instances need not agree on time).
  A caller that finds the bucket empty *reserves* the next token and sleeps exactly until it is
  due: no polling, and callers are served in arrival order.
- **AIMD**: a throttled answer (``Throttling*``, HTTP 429; not a 5xx) halves the rate and the
  burst, at most once per second (a burst of refusals is one congestion signal), never below a
  quarter of the ceiling; each success adds ``ceiling / 50`` back, up to the configured ceiling. The caller still honours the refusal's
  ``x-acs-retry-after`` through ``CloudApi``'s backoff.
- **Configuration**: ``DBUPGRADE_RATE_LIMITS`` is a JSON object of action -> calls per second,
  ``"*"`` for every other action, e.g. ``{"ModifyInstanceMajorVersion": 20, "*": 50}``. Unset:
  10 calls/s per action, well under what the cloud allows a single account.
- **Account**: FC's ``FC_ACCOUNT_ID`` (set in every function instance); elsewhere ``default``, so
  every local process pointed at the same store shares one bucket. A call made in a member account
  (through its role, ``dbupgrade.accounts``) passes ``account``: each account has its own buckets,
  as the cloud throttles each account on its own.

A store failure never blocks a call: the limiter logs it and lets the call through (the cloud's own
throttling and ``CloudApi``'s retries still apply).

Example::

    limiter = RateLimiter.from_env(store.redis)
    limiter.acquire("r-kvstore", "ModifyInstanceMajorVersion", deadline=ctx.deadline)  # may sleep
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dbupgrade.errors import ConfigError
from dbupgrade.logging import logger
from dbupgrade.store import keys, scripts

RATE_LIMITS_VARIABLE = "DBUPGRADE_RATE_LIMITS"
DEFAULT_CALLS_PER_SECOND = 10.0
# An idle bucket expires: the next caller starts with a full bucket at the ceiling.
KEY_TTL_SECONDS = 600
DECREASE_FACTOR = 0.5
DECREASE_INTERVAL_SECONDS = 1.0  # refusals closer together than this are one congestion signal
INCREASE_FRACTION = 1 / 50  # of the ceiling, per successful call
# The rate never drops below this share of the ceiling: the ceiling is the operator's statement of
# what the account allows, AIMD only trims bursts over what the cloud accepts right now, and
# CloudApi's backoff still handles refusals below it.
FLOOR_FRACTION = 1 / 4


class RateLimited(Exception):
    """No token within the time the caller has left; ``wait_seconds`` is when the next one is due."""

    def __init__(self, action: str, wait_seconds: float) -> None:
        super().__init__(f"fleet rate limit: next {action} call allowed in {wait_seconds:.1f} s")
        self.action = action
        self.wait_seconds = wait_seconds


@dataclass(frozen=True)
class RateLimits:
    """Calls per second: per action, and a default for the rest."""

    per_action: Mapping[str, float] = field(default_factory=dict)
    default: float = DEFAULT_CALLS_PER_SECOND

    def ceiling(self, action: str) -> float:
        return self.per_action.get(action, self.default)

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
        default = limits.pop("*", DEFAULT_CALLS_PER_SECOND)
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
        self._adjust = redis.register_script(scripts.RATE_ADJUST)
        # Buckets last seen below their ceiling: only those need a round trip after a success.
        self._recovering: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, redis: Any, env: Mapping[str, str] | None = None) -> RateLimiter | None:
        """The limiter for the store's Redis client (None without one: nothing to share state in)."""
        if redis is None:
            return None
        env = os.environ if env is None else env
        return cls(redis, RateLimits.from_env(env), env.get("FC_ACCOUNT_ID") or None)

    def key(self, product: str, action: str, account: str | None = None) -> str:
        return keys.ratelimit(account or self.account, product, action)

    def rate(self, product: str, action: str, account: str | None = None) -> float:
        """The shared rate now (calls/s): the ceiling unless throttling has lowered it."""
        ceiling = self.limits.ceiling(action)
        raw = self.redis.hget(self.key(product, action, account), "rate")
        return min(ceiling, float(raw)) if raw is not None else ceiling

    def acquire(
        self,
        product: str,
        action: str,
        *,
        deadline: float,
        sleep: Callable[[float], None] = time.sleep,
        account: str | None = None,
    ) -> float:
        """Take a token, sleeping until it is due; returns the seconds waited.

        Raises ``RateLimited`` (and takes nothing) when the token would come after ``deadline``
        (``time.monotonic()``).
        """
        key, take = self.take_args(product, action, deadline=deadline, account=account)
        try:
            reply = self._take(keys=[key], args=take)
        except Exception as exc:  # redis-py raises RedisError and socket errors alike
            logger.warning(
                "rate limiter unavailable; calling without it", extra={"error": type(exc).__name__}
            )
            return 0.0
        granted, wait = self._taken(key, action, reply)
        if not granted:
            raise RateLimited(action, wait)
        if wait > 0:
            sleep(wait)
        return wait

    def take_args(
        self, product: str, action: str, *, deadline: float, account: str | None = None
    ) -> tuple[str, list[Any]]:
        """The bucket and the arguments of a take (``scripts.RATE_TAKE``'s), for a script that takes
        a token along with other work (the store's claim); its reply goes to ``taken_elsewhere``."""
        max_wait = max(0.0, deadline - time.monotonic())
        return self.key(product, action, account), [self.limits.ceiling(action), max_wait, KEY_TTL_SECONDS]

    def taken_elsewhere(
        self, bucket: str, action: str, reply: list[Any], *, sleep: Callable[[float], None] = time.sleep
    ) -> bool:
        """A take another script made (``take_args``): sleeps until the token is due; False when
        none was granted (nothing taken: the call takes its own, as ``acquire`` would)."""
        granted, wait = self._taken(bucket, action, reply)
        if granted and wait > 0:
            sleep(wait)
        return granted

    def _taken(self, key: str, action: str, reply: list[Any]) -> tuple[bool, float]:
        granted, wait_text, rate_text = reply
        wait, rate = float(wait_text), float(rate_text)
        self._note(key, rate, action)
        return bool(int(granted)), wait

    def throttled(self, product: str, action: str, account: str | None = None) -> None:
        """The cloud refused a call as throttled: halve the shared rate and the burst."""
        self._adjust_rate(self.key(product, action, account), action, "decrease")

    def succeeded(self, product: str, action: str, account: str | None = None) -> None:
        """A call went through: raise the rate back towards the ceiling (no-op at the ceiling)."""
        key = self.key(product, action, account)
        with self._lock:
            if key not in self._recovering:
                return
        self._adjust_rate(key, action, "increase")

    def _adjust_rate(self, key: str, action: str, direction: str) -> None:
        try:
            ceiling = self.limits.ceiling(action)
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
        self._note(key, rate, action)
        if direction == "decrease":
            logger.info("rate lowered after throttling", extra={"action": action, "calls_per_second": rate})

    def _note(self, key: str, rate: float, action: str) -> None:
        with self._lock:
            if rate < self.limits.ceiling(action):
                self._recovering.add(key)
            else:
                self._recovering.discard(key)
