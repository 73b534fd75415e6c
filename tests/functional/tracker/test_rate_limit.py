"""The fleet-wide rate limit end to end: four consumers share one bucket under localcloud's own QPS limit."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from dbupgrade.cloudapi import RetryPolicy
from dbupgrade.model import Outcome
from dbupgrade.request import parse_request
from dbupgrade.usecase import Upgrader

from tests.functional.core.conftest import redis_entry
from tests.functional.tracker.conftest import TrackBench

FLEET = [f"r-bp1ratelimit{n:04d}" for n in range(60)]
CONSUMERS = 4
# Few, quick retries: a consumer that kept running into the cloud's limit would exhaust them.
FEW_RETRIES = RetryPolicy(base_seconds=0.005, cap_seconds=0.02, max_attempts=3, reserve_seconds=0)


def test_four_consumers_under_a_20_qps_cloud_limit_never_fail_from_throttling(
    make_track: Callable[..., TrackBench],
) -> None:
    seed = {
        "redis": [redis_entry(iid, "6.0", "cloud_native") for iid in FLEET],
        "upgrade_seconds": 600,
        "rate_limits": {"ModifyInstanceMajorVersion": 20},
    }
    # The operator states the account's limit; describes are not limited by this localcloud.
    bench = make_track(seed, DBUPGRADE_RATE_LIMITS='{"ModifyInstanceMajorVersion": 20, "*": 200}')
    env = bench.env
    # One Upgrader per consumer, as separate function instances would have: only Redis is shared.
    consumers = [Upgrader.from_env(env, retry=FEW_RETRIES) for _ in range(CONSUMERS)]

    def consume(index: int) -> list[Outcome]:
        upgrader = consumers[index]
        return [
            upgrader.run(
                parse_request(
                    {"instance_id": iid, "target_version": "7.0", "rollout_id": "rl-1"}, source="queue"
                )
            )
            for iid in FLEET[index::CONSUMERS]
        ]

    with ThreadPoolExecutor(CONSUMERS) as pool:
        outcomes = [o for batch in pool.map(consume, range(CONSUMERS)) for o in batch]

    assert sorted(o.instance_id for o in outcomes) == FLEET
    assert {o.status for o in outcomes} == {"submitted"}, [
        o.code for o in outcomes if o.status != "submitted"
    ]
    accepted = [c for c in bench.calls("ModifyInstanceMajorVersion") if c["status"] == 200]
    assert len(accepted) == len(FLEET)
