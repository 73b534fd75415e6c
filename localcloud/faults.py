"""Injected faults and the per-action QPS limit, deterministic for a given random seed.

Format (seed key ``faults`` and the body of ``POST /_localcloud/faults``)::

    {"seed": 7, "rules": [{"product": "r-kvstore", "action": "ModifyInstanceMajorVersion",
                           "throttle_rate": 0.3, "error_rate": 0.1, "latency_ms": 200,
                           "drop_rate": 0.02, "lost_reply_rate": 0.01}]}

``product`` and ``action`` are optional (absent = all). An ``error_rate`` draw answers 503
``ServiceUnavailable`` unless the rule names another code: ``error_code`` (with ``error_status``,
default 400, and ``error_message``) answers any documented or observed code instead, e.g. the busy
``OperationDenied.DBInstanceStatus`` (403) or the throttle ``Rejected.Throttling``. A named code is
an OpenAPI (R-kvstore, Dds) error body, so such a rule names product ``r-kvstore`` or ``dds``. Each (rule, product, action) draws from
its own ``random.Random`` seeded from the seed and its names, so one action's traffic never
shifts another's draws and the same call sequence reproduces the same faults exactly.

``"published_quotas": true`` (a seed key, or in the POST body) enforces the products' published
default API quotas per (account, region, action) (``localcloud.quotas``), answering the service's
``Throttling.User``; off by default.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from localcloud import quotas

PRODUCTS = ("r-kvstore", "dds", "mns", "fc")
OPENAPI_PRODUCTS = ("r-kvstore", "dds")  # the products whose error body a named error_code takes
RATE_KEYS = ("throttle_rate", "error_rate", "drop_rate", "lost_reply_rate")


@dataclass
class FaultRule:
    product: str | None = None
    action: str | None = None
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    latency_ms: float = 0.0
    drop_rate: float = 0.0
    lost_reply_rate: float = 0.0
    retry_after_ms: int | None = None  # adds x-acs-retry-after to injected throttles
    error_code: str | None = None  # what an error draw answers instead of 503 ServiceUnavailable
    error_status: int | None = None  # the HTTP status of error_code (default 400)
    error_message: str | None = None  # its message (default: one naming the injected code)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> FaultRule:
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault rule keys: {sorted(unknown)}")
        rule = cls(**raw)
        if rule.product is not None and rule.product not in PRODUCTS:
            raise ValueError(f"fault rule product must be one of {PRODUCTS}, got {rule.product!r}")
        for key in RATE_KEYS:
            value = getattr(rule, key)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"fault rule {key} must be within [0, 1], got {value!r}")
        if rule.error_code is not None:
            if rule.product not in OPENAPI_PRODUCTS:
                raise ValueError(f"fault rule error_code needs product one of {OPENAPI_PRODUCTS}")
            if not isinstance(rule.error_code, str) or not rule.error_code:
                raise ValueError(f"fault rule error_code must be a non-empty string, got {rule.error_code!r}")
        if rule.error_status is not None and (
            not isinstance(rule.error_status, int) or not 400 <= rule.error_status <= 599
        ):
            raise ValueError(
                f"fault rule error_status must be an HTTP error status, got {rule.error_status!r}"
            )
        return rule

    def matches(self, product: str, action: str) -> bool:
        return (self.product in (None, product)) and (self.action in (None, action))


@dataclass
class FaultDecision:
    """What to do to one call. At most one of throttle / error / drop / lost_reply is set."""

    latency_ms: float = 0.0
    throttle: bool = False  # answer the product's throttling error
    rate_limited: bool = False  # the throttle comes from the QPS limit, not a random draw
    retry_after_ms: int | None = None
    error: bool = False  # answer a 5xx, or the rule's error_code
    error_code: str | None = None
    error_status: int = 400
    error_message: str | None = None
    drop: bool = False  # close the connection before processing
    lost_reply: bool = False  # process the call, then close the connection without a reply

    @property
    def name(self) -> str | None:
        for key in ("throttle", "error", "drop", "lost_reply"):
            if getattr(self, key):
                return "rate_limit" if key == "throttle" and self.rate_limited else key
        return None


@dataclass
class _Window:
    """At most ``calls`` calls in any ``period`` seconds (``localcloud.quotas``)."""

    calls: int
    period: float
    taken: deque[float] = field(default_factory=deque)

    def take(self) -> tuple[bool, int]:
        now = time.monotonic()
        while self.taken and self.taken[0] <= now - self.period:
            self.taken.popleft()
        if len(self.taken) < self.calls:
            self.taken.append(now)
            return True, 0
        return False, int((self.taken[0] + self.period - now) * 1000) + 1


@dataclass
class _Bucket:
    """A token bucket refilled at ``qps`` tokens/s, burst of one second's worth."""

    qps: float
    tokens: float = 0.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = max(self.qps, 1.0)

    def take(self) -> tuple[bool, int]:
        now = time.monotonic()
        self.tokens = min(max(self.qps, 1.0), self.tokens + (now - self.stamp) * self.qps)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True, 0
        wait_ms = int((1.0 - self.tokens) / self.qps * 1000) + 1
        return False, wait_ms


class Faults:
    """The fault configuration of a running localcloud; ``decide`` is called once per API call."""

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        rate_limits: dict[str, float] | None = None,
        published_quotas: bool = False,
    ):
        self._lock = threading.Lock()
        self.configure(config or {})
        self.set_rate_limits(rate_limits or {})
        self.set_published_quotas(published_quotas)

    def configure(self, config: dict[str, Any]) -> None:
        unknown = set(config) - {"seed", "rules"}
        if unknown:
            raise ValueError(f"unknown faults keys: {sorted(unknown)}")
        seed = config.get("seed", 0)
        rules = [FaultRule.parse(r) for r in config.get("rules", [])]
        with self._lock:
            self.seed = seed
            self.rules = rules
            self._rngs: dict[tuple[int, str, str], random.Random] = {}

    def set_rate_limits(self, rate_limits: dict[str, float]) -> None:
        for action, qps in rate_limits.items():
            if float(qps) <= 0:
                raise ValueError(f"rate limit for {action} must be positive, got {qps!r}")
        with self._lock:
            self.rate_limits = {a: float(q) for a, q in rate_limits.items()}
            self._buckets = {a: _Bucket(q) for a, q in self.rate_limits.items()}

    def set_published_quotas(self, on: bool) -> None:
        """Enforce (or stop enforcing) ``localcloud.quotas`` per (account, region, action)."""
        if not isinstance(on, bool):
            raise ValueError(f"published_quotas must be true or false, got {on!r}")
        with self._lock:
            self.published_quotas = on
            self._quota_windows: dict[tuple[str, str, str, str], _Window] = {}

    def describe(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "rules": [{k: v for k, v in vars(r).items() if v not in (None, 0, 0.0)} for r in self.rules],
            "rate_limits": self.rate_limits,
            "published_quotas": self.published_quotas,
        }

    def _over_quota(self, product: str, action: str, account: str, region: str) -> int | None:
        """Milliseconds until the next call is allowed when the quota of (account, region, action)
        is spent; None when the call is within it (or nothing is enforced). Under ``self._lock``."""
        found = quotas.quota(product, action) if self.published_quotas else None
        if found is None:
            return None
        key = (account, region, product, action)
        window = self._quota_windows.get(key)
        if window is None:
            window = self._quota_windows[key] = _Window(*found)
        ok, wait_ms = window.take()
        return None if ok else wait_ms

    def _rng(self, index: int, product: str, action: str) -> random.Random:
        key = (index, product, action)
        rng = self._rngs.get(key)
        if rng is None:
            digest = hashlib.sha256(f"{self.seed}|{index}|{product}|{action}".encode()).digest()
            rng = self._rngs[key] = random.Random(int.from_bytes(digest[:8], "big"))
        return rng

    def decide(self, product: str, action: str, account: str = "", region: str = "") -> FaultDecision:
        """``account`` and ``region``: the caller's, for the published quotas (``localcloud.quotas``)."""
        decision = FaultDecision()
        with self._lock:
            over_ms = self._over_quota(product, action, account, region)
            if over_ms is not None:
                decision.throttle = decision.rate_limited = True
                decision.retry_after_ms = over_ms
                return decision
            bucket = self._buckets.get(action)
            if bucket is not None:
                ok, wait_ms = bucket.take()
                if not ok:
                    decision.throttle = decision.rate_limited = True
                    decision.retry_after_ms = wait_ms
                    return decision
            for index, rule in enumerate(self.rules):
                if not rule.matches(product, action):
                    continue
                rng = self._rng(index, product, action)
                # One draw per rate, always in the same order, so decisions are reproducible.
                draws = {key: rng.random() < getattr(rule, key) for key in RATE_KEYS}
                decision.latency_ms += rule.latency_ms
                if decision.name is None:
                    if draws["drop_rate"]:
                        decision.drop = True
                    elif draws["throttle_rate"]:
                        decision.throttle = True
                        decision.retry_after_ms = rule.retry_after_ms
                    elif draws["error_rate"]:
                        decision.error = True
                        decision.error_code = rule.error_code
                        decision.error_status = rule.error_status or 400
                        decision.error_message = rule.error_message
                    elif draws["lost_reply_rate"]:
                        decision.lost_reply = True
        return decision
