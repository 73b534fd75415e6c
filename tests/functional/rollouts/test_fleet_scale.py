"""Fleet scale (issue #15): a plan and a tracker tick read a fleet through the list APIs.

Counted from localcloud's call log, never timed: a plan of N targets makes O(N / page) list calls
plus only the per-instance calls no list answers.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import pytest
from dbupgrade.rollouts.plan import plan

from tests.functional.rollouts.conftest import Fleet, mongo_instance, redis_instance

REDIS = [f"r-scale{n:05d}" for n in range(75)]
MONGO = [f"dds-scale{n:05d}" for n in range(30)]
MISSING = "r-scalemissing1"  # in the manifest, not in the cloud


@pytest.fixture
def fleet(make_fleet: Callable[..., Fleet]) -> Fleet:
    return make_fleet([redis_instance(i) for i in REDIS], [mongo_instance(i) for i in MONGO])


def actions(fleet: Fleet) -> Counter[str]:
    return Counter(c["action"] for c in fleet.calls() if c["status"] == 200)


def test_a_plan_reads_the_fleet_through_the_list_apis(fleet: Fleet) -> None:
    targets = [{"instance_id": i, "target_version": "7.0"} for i in [*REDIS, MISSING]]
    targets += [{"instance_id": i, "target_version": "5.0"} for i in MONGO]

    result = plan(fleet.tracker, targets)

    rows = {row["instance_id"]: row for row in result["rows"]}
    assert {rows[i]["action"] for i in REDIS + MONGO} == {"submit"}
    assert {rows[i]["current_version"] for i in REDIS} == {"6.0"}
    assert (rows[MISSING]["action"], rows[MISSING]["reason"]) == ("reject", "not_found")
    calls = actions(fleet)
    # 76 Redis IDs at 30 a call; the 30 MongoDB instances on one page of the region's listing.
    assert calls["DescribeInstances"] == math.ceil(76 / 30)
    assert calls["DescribeDBInstances"] == 1
    # Only the instance no list returned is described on its own (and found missing).
    assert calls["DescribeInstanceAttribute"] == 0
    assert calls["DescribeDBInstanceAttribute"] == 0
    assert len(fleet.calls(action="DescribeInstanceAttribute", instance_id=MISSING)) == 1
    # What no list answers: each candidate's own offered versions.
    assert calls["DescribeEngineVersion"] == len(REDIS)
    assert calls["DescribeAvailableEngineVersion"] == len(MONGO)
