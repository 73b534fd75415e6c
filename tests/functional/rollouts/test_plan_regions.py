"""A plan over two regions reads them at once (issue #15 item 2): each region has its own
rate-limit buckets (the cloud's quota is per region), so one region's pace never holds up the other.

Asserted on localcloud's call log, never timed: the targets are listed region by region, and a
plan that read them in that order would send every Hangzhou read before the first Beijing one.
"""

from __future__ import annotations

from collections.abc import Callable

from dbupgrade.rollouts.plan import plan
from dbupgrade.usecase import Upgrader

from tests.functional.rollouts.conftest import FAST_RETRY, Fleet, redis_instance

PER_REGION = 10
REGIONS = ("cn-hangzhou", "cn-beijing")
# Each region's DescribeEngineVersion bucket: 2 calls/s, a burst of 2.
LIMITS = '{"DescribeEngineVersion": 2, "*": 2000}'


def test_a_plan_reads_each_region_at_its_own_pace_at_once(make_fleet: Callable[..., Fleet]) -> None:
    ids = {region: [f"r-{region[3:]}{n:04d}" for n in range(PER_REGION)] for region in REGIONS}
    fleet = make_fleet([redis_instance(i, RegionId=region) for region in REGIONS for i in ids[region]])
    upgrader = Upgrader.from_env({**fleet.env, "DBUPGRADE_RATE_LIMITS": LIMITS}, retry=FAST_RETRY)
    targets = [
        {"instance_id": i, "target_version": "7.0", "region": region}
        for region in REGIONS
        for i in ids[region]
    ]

    result = plan(upgrader, targets, concurrency=4)

    assert result["totals"] == {"submit": 2 * PER_REGION}
    reads = [c["params"]["RegionId"] for c in fleet.calls(action="DescribeEngineVersion")]
    assert sorted(reads) == sorted(REGIONS * PER_REGION)
    # Beijing's first read comes while Hangzhou's are still being paced: a plan working through the
    # manifest in order (4 workers) would have finished 7 of Hangzhou's before starting Beijing.
    first_beijing = reads.index("cn-beijing")
    assert first_beijing < 5
    # Both regions were spent from their own buckets.
    buckets = {
        key.decode() for key in upgrader.store.redis.keys("dbupgrade:ratelimit:*DescribeEngineVersion")
    }
    assert buckets == {
        f"dbupgrade:ratelimit:default:{region}:r-kvstore:DescribeEngineVersion" for region in REGIONS
    }
