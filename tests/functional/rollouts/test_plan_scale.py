"""Fleet scale of ``rollout plan`` / ``dbupgrade check`` and ``rollout status`` (issue #15 item 2).

Counted from localcloud's call log and Redis's command stats, never timed: per-instance calls only
for the instances that can go and only for what no list answers (each one's offered versions and
its backups); the task reads by list (30 instances a DescribeHistoryTasks call, one
DescribeActiveOperationTasks listing per engine and region); status in batched reads.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from dbupgrade.request import parse_request
from dbupgrade.rollouts.model import RolloutMeta, RolloutSpec, TargetState
from dbupgrade.rollouts.plan import Estimate, plan
from dbupgrade.usecase import Upgrader

from tests.functional.rollouts.conftest import Fleet, mongo_instance, redis_instance

READY_REDIS = [f"r-plan{n:05d}" for n in range(65)]
READY_MONGO = [f"dds-plan{n:05d}" for n in range(35)]
AT_TARGET = [f"r-done{n:05d}" for n in range(5)]  # already 7.0
NOT_READY = [f"r-busy{n:05d}" for n in range(5)]  # a state the upgrade cannot start from
OLD_MODE = [f"r-old{n:05d}" for n in range(5)]  # 4.0 master-replica: its mode upgrades to 5.0 only
BOOKED = READY_REDIS[7]  # upgraded in its maintenance window before the plan
READY = {"go", "warn"}  # MongoDB 4.4 -> 5.0 warns (its documented caveats), and is not blocked
PER_INSTANCE = (
    "DescribeEngineVersion",
    "DescribeAvailableEngineVersion",
    "DescribeBackups",
    "DescribeInstanceAttribute",
    "DescribeDBInstanceAttribute",
)


def window_ahead() -> dict[str, str]:
    """A daily maintenance window opening two hours from now: an upgrade booked into it waits (the
    seed's default window, 18:00-22:00Z, would start it at once when the test runs in it)."""
    opens = datetime.now(timezone.utc) + timedelta(hours=2)
    return {"MaintainStartTime": f"{opens:%H}:00Z", "MaintainEndTime": f"{opens + timedelta(hours=1):%H}:00Z"}


@pytest.fixture
def fleet(make_fleet: Callable[..., Fleet]) -> Fleet:
    redis = [redis_instance(i, **(window_ahead() if i == BOOKED else {})) for i in READY_REDIS]
    redis += [redis_instance(i, version="7.0") for i in AT_TARGET]
    redis += [redis_instance(i, status="Flushing") for i in NOT_READY]
    redis += [redis_instance(i, version="4.0") for i in OLD_MODE]
    return make_fleet(redis, [mongo_instance(i) for i in READY_MONGO])


def targets() -> list[dict[str, Any]]:
    redis = READY_REDIS + AT_TARGET + NOT_READY + OLD_MODE
    return [{"instance_id": i, "target_version": "7.0"} for i in redis] + [
        {"instance_id": i, "target_version": "5.0"} for i in READY_MONGO
    ]


def actions(fleet: Fleet) -> Counter[str]:
    return Counter(c["action"] for c in fleet.calls())


def instance_of(call: dict[str, Any]) -> str:
    params = call["params"]
    return str(params.get("InstanceId") or params.get("DBInstanceId") or params.get("InsName"))


def test_a_plan_asks_per_instance_only_what_no_list_answers_and_only_for_instances_that_can_go(
    fleet: Fleet,
) -> None:
    result = plan(fleet.tracker, targets())

    rows = {row["instance_id"]: row for row in result["rows"]}
    assert {rows[i]["verdict"] for i in READY_REDIS + READY_MONGO} <= READY  # not blocked
    assert {rows[i]["action"] for i in AT_TARGET} == {"noop"}
    assert {rows[i]["verdict"] for i in NOT_READY + OLD_MODE} == {"blocked"}
    calls = actions(fleet)
    ready = len(READY_REDIS) + len(READY_MONGO)
    # The instances that can go: their own offered versions and backups, nothing else per instance.
    assert calls["DescribeEngineVersion"] == len(READY_REDIS)
    assert calls["DescribeAvailableEngineVersion"] == len(READY_MONGO)
    assert calls["DescribeBackups"] == ready
    assert calls["DescribeInstanceAttribute"] == calls["DescribeDBInstanceAttribute"] == 0
    ruled_out = set(AT_TARGET + NOT_READY + OLD_MODE)
    per_instance = [c for c in fleet.calls() if c["action"] in PER_INSTANCE]
    assert not [c for c in per_instance if instance_of(c) in ruled_out]
    # The task reads by list: 30 instances a DescribeHistoryTasks call, only the live statuses...
    history = fleet.calls(action="DescribeHistoryTasks")
    assert len(history) == math.ceil(len(READY_REDIS) / 30) + math.ceil(len(READY_MONGO) / 30)
    assert all(len(c["params"]["InstanceId"].split(",")) <= 30 for c in history)
    asked = {i for c in history for i in c["params"]["InstanceId"].split(",")}
    assert asked == set(READY_REDIS + READY_MONGO)
    assert {c["params"]["Status"] for c in history} == {"Cancelling,Running,Scheduled,Waiting"}
    # ... and one listing of the region's O&M events per product (one page each here).
    events = fleet.calls(action="DescribeActiveOperationTasks")
    assert len(events) == 2 and not [c for c in events if c["params"].get("InsName")]


class Heard:
    """What a plan tells its caller while it runs (``PlanProgress``)."""

    def __init__(self) -> None:
        self.estimates: list[tuple[Estimate, int]] = []
        self.done: list[tuple[int, int]] = []

    def started(self, estimate: Estimate, total: int) -> None:
        self.estimates.append((estimate, total))

    def checked(self, done: int, total: int) -> None:
        self.done.append((done, total))


def test_a_plan_tells_how_many_instances_it_reads_one_by_one_and_how_long_the_rate_limits_make_that(
    fleet: Fleet,
) -> None:
    slow = {**fleet.env, "DBUPGRADE_RATE_LIMITS": '{"DescribeBackups": 2000, "*": 4000}'}
    heard = Heard()

    plan(Upgrader.from_env(slow), targets(), progress=heard)

    [(estimate, total)] = heard.estimates
    # The instances the cloud saw read one by one: exactly the ones the estimate counted.
    read_one_by_one = {instance_of(c) for c in fleet.calls() if c["action"] in PER_INSTANCE}
    assert estimate.targets == len(read_one_by_one) == len(READY_REDIS) + len(READY_MONGO)
    # Redis's 65 backups reads at the slowest ceiling set the least time.
    assert estimate.seconds == len(READY_REDIS) / 2000
    assert estimate.slowest == "DescribeBackups at 2000/s in cn-hangzhou"
    assert total == len(targets())
    assert heard.done == [(n, total) for n in range(1, total + 1)]  # each target once, in order


def test_the_estimate_leaves_out_what_the_scope_guard_refuses_without_a_call(fleet: Fleet) -> None:
    allowed = READY_REDIS[:10] + READY_MONGO[:5]
    scoped = {**fleet.env, "DBUPGRADE_ALLOWED_INSTANCES": ",".join(allowed)}
    heard = Heard()

    plan(Upgrader.from_env(scoped), targets(), progress=heard)

    [(estimate, _)] = heard.estimates
    read_one_by_one = {instance_of(c) for c in fleet.calls() if c["action"] in PER_INSTANCE}
    assert estimate.targets == len(read_one_by_one) == len(allowed)


def test_what_a_group_read_finds_lands_on_its_own_instance_only(fleet: Fleet) -> None:
    booked = BOOKED
    request = {"instance_id": booked, "target_version": "7.0", "effective": "maintenance_window"}
    assert fleet.worker.run(parse_request(request, source="cli")).status == "submitted"

    result = plan(fleet.tracker, targets())

    rows = {row["instance_id"]: row for row in result["rows"]}
    blocks = {f["check"] for f in rows[booked]["findings"] if f["grade"] == "block"}
    assert rows[booked]["verdict"] == "blocked" and {"operations", "tasks"} <= blocks
    assert {rows[i]["verdict"] for i in READY_REDIS + READY_MONGO if i != booked} <= READY


def test_a_group_read_that_fails_blocks_every_instance_it_would_have_answered(fleet: Fleet) -> None:
    rule = {"product": "r-kvstore", "action": "DescribeHistoryTasks", "error_rate": 1.0}
    fleet.post("/_localcloud/faults", {"seed": 1, "rules": [rule]})

    result = plan(fleet.tracker, targets())

    rows = {row["instance_id"]: row for row in result["rows"]}
    for instance in READY_REDIS:
        unread = [f for f in rows[instance]["findings"] if f["check"] == "tasks"]
        assert rows[instance]["verdict"] == "blocked"
        assert [f["grade"] for f in unread] == ["block"] and "fails closed" in unread[0]["message"]
    assert {rows[i]["verdict"] for i in READY_MONGO} <= READY  # the other product's read answered


def redis_commands(fleet: Fleet) -> Counter[str]:
    stats = fleet.tracker.store.redis.info("commandstats")
    return Counter(
        {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info"}
    )


@pytest.mark.parametrize("submitted", [10, 1200])
def test_status_reads_the_store_in_a_constant_number_of_batched_round_trips(
    make_fleet: Callable[..., Fleet], submitted: int
) -> None:
    fleet = make_fleet([])
    ids = [f"r-status{n:05d}" for n in range(submitted * 2)]
    spec = RolloutSpec(
        "scale", tuple({"instance_id": i, "target_version": "7.0"} for i in ids), (len(ids),), "100%"
    )
    states = [TargetState(i, 1, state="submitted" if n % 2 else "completed") for n, i in enumerate(ids)]
    fleet.rollouts.repo.create(spec, RolloutMeta(wave=1, tick=1), states)
    before = redis_commands(fleet)

    status = fleet.rollouts.status("scale")

    commands = redis_commands(fleet) - before
    assert len(status["rows"]) == len(ids)
    # spec and meta (GET), the targets (HGETALL), the latest outcomes of the in-flight ones (read on
    # past the last round) and their followed outcomes (progress): one MGET per 500 each - never a
    # round trip per target.
    assert commands == Counter({"get": 2, "hgetall": 1, "mget": 2 * math.ceil(submitted / 500)})
