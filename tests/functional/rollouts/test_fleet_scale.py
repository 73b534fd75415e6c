"""Fleet scale (issue #15): a plan and a tracker tick read a fleet through the list APIs.

Counted from localcloud's call log, never timed: a plan of N targets makes O(N / page) list calls
plus only the per-instance calls no list answers.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
import redis.connection
from dbupgrade.request import parse_request
from dbupgrade.rollouts.plan import plan
from dbupgrade.tracker import ROLLOUT_RESERVE_SECONDS, TRACKER_SHARDS, Tracker

from tests.functional.rollouts.conftest import UPGRADE_SECONDS, Fleet, mongo_instance, redis_instance

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


def submit_all(fleet: Fleet) -> None:
    for instance in REDIS:
        fleet.worker.run(parse_request({"instance_id": instance, "target_version": "7.0"}, source="cli"))
    for instance in MONGO:
        fleet.worker.run(parse_request({"instance_id": instance, "target_version": "5.0"}, source="cli"))


def emulated_now(fleet: Fleet) -> datetime:
    return datetime.fromisoformat(fleet.get("/_localcloud/clock")["now"])


def redis_commands(fleet: Fleet) -> Counter[str]:
    """Commands the Redis server ran, by name (those a Lua script runs included), INFO aside."""
    stats = fleet.worker.store.redis.info("commandstats")
    return Counter(
        {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info"}
    )


def test_a_tick_reads_every_in_flight_upgrade_in_batches_and_writes_only_what_changed(fleet: Fleet) -> None:
    submit_all(fleet)
    tracker = Tracker(fleet.tracker)
    before_calls, before_commands = actions(fleet), redis_commands(fleet)
    first = tracker.tick(now=emulated_now(fleet))  # first sight: every upgrade running, its task read

    # Every upgrade has news (its first progress, its running mark), kept per tracker shard: on top of
    # the quiet tick's commands (below), per shard an HSET and an EXPIRE of its marks and of its
    # progress; nothing per upgrade (the per-upgrade writes this replaced were 6 each: 630 here).
    calls, commands = actions(fleet) - before_calls, redis_commands(fleet) - before_commands
    list_calls = calls["DescribeInstances"] + calls["DescribeDBInstances"] + calls["DescribeHistoryTasks"]
    assert (first["checked"], first["transitions"]) == (len(REDIS) + len(MONGO), [])
    assert sum(commands.values()) <= 10 * TRACKER_SHARDS + 5 * list_calls + 30, commands
    # Per shard one HSET of marks and one of progress (and the limiter's per list call).
    assert commands["hset"] <= 2 * TRACKER_SHARDS + list_calls, commands
    followed = fleet.tracker.store.following_many(REDIS + MONGO)
    assert all(o.progress is not None and o.task_status for o in followed.values()), followed
    shown = fleet.tracker.status(REDIS[0])  # the webhook's and the CLI's status read: the latest
    assert shown is not None and shown.progress == followed[REDIS[0]].progress
    before_calls, before_commands = actions(fleet), redis_commands(fleet)

    quiet = tracker.tick(now=emulated_now(fleet))  # nothing changed since

    calls = actions(fleet) - before_calls
    commands = redis_commands(fleet) - before_commands
    assert (quiet["checked"], quiet["transitions"]) == (len(REDIS) + len(MONGO), [])
    assert calls["DescribeInstances"] == math.ceil(len(REDIS) / 30)
    assert calls["DescribeDBInstances"] == 1
    assert calls["DescribeInstanceAttribute"] == calls["DescribeDBInstanceAttribute"] == 0
    # 105 upgrades under way, none changed: nothing per upgrade. The in-flight set and the followed
    # outcomes in batched reads (MGET per 500), their progress and rollback marks one HMGET per
    # shard; per shard a lock (SET NX, and a release script: EVALSHA running GET and DEL); per list
    # call a rate-limit token (EVALSHA running TIME, HMGET, HSET, EXPIRE); the outbox drain and
    # probes. The per-instance tick this replaced sent ~7 commands per upgrade (> 700 here).
    # DescribeHistoryTasks (the upgrades' progress, dbupgrade.progress) pages per engine and region
    # too; progress that did not move is not written again.
    list_calls = calls["DescribeInstances"] + calls["DescribeDBInstances"] + calls["DescribeHistoryTasks"]
    assert commands["mget"] == 1 and commands["smembers"] <= 2
    assert sum(commands.values()) <= 6 * TRACKER_SHARDS + 5 * list_calls + 25, commands

    fleet.post("/_localcloud/clock", {"advance": UPGRADE_SECONDS + 1})
    done = tracker.tick(now=emulated_now(fleet))
    assert Counter(t["status"] for t in done["transitions"]) == {"completed": len(REDIS) + len(MONGO)}
    assert tracker.tick(now=emulated_now(fleet))["checked"] == 0


def test_a_tick_holds_no_lock_past_its_deadline_and_the_next_one_resumes(fleet: Fleet) -> None:
    submit_all(fleet)
    fleet.post("/_localcloud/clock", {"advance": UPGRADE_SECONDS + 1})
    store = fleet.tracker.store.redis
    fleet.post(
        "/_localcloud/faults",
        {"rules": [{"product": "r-kvstore", "action": "DescribeInstances", "latency_ms": 1500}]},
    )
    remaining_ms = (ROLLOUT_RESERVE_SECONDS + 5) * 1000
    deadline = time.monotonic() + remaining_ms / 1000
    context = SimpleNamespace(
        request_id="fc-req-1", get_remaining_time_in_millis=lambda: int((deadline - time.monotonic()) * 1000)
    )
    tick = threading.Thread(target=lambda: Tracker(fleet.tracker).tick(context, now=emulated_now(fleet)))
    tick.start()
    # Its shard locks are taken before its first list call, which takes 1.5 s: waiting for them
    # to show (not a fixed sleep, which a busy machine could outrun) samples them inside it.
    waited_until = time.monotonic() + 10
    while not (locks := list(store.scan_iter("dbupgrade:tracker:shard:*"))):
        assert time.monotonic() < waited_until, "the tick took no shard lock"
        time.sleep(0.01)
    left_ms = (deadline - time.monotonic()) * 1000
    ttls = [int(store.pttl(key)) for key in locks]
    tick.join()
    fleet.post("/_localcloud/faults", {"rules": []})

    # Every lock the tick held would have expired before FC killed it at its deadline...
    assert max(ttls) < left_ms
    # ... and it left none behind; the next tick checks what it could not.
    assert list(store.scan_iter("dbupgrade:tracker:shard:*")) == []
    after = Tracker(fleet.tracker).tick(now=emulated_now(fleet))
    completed = [i for i in REDIS + MONGO if fleet.tracker.status(i).status == "completed"]  # type: ignore[union-attr]
    assert after["unchecked"] == 0 and len(completed) == len(REDIS) + len(MONGO)


def test_a_tick_writes_every_upgrades_progress_in_batched_round_trips(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    submit_all(fleet)
    tracker = Tracker(fleet.tracker)
    tracker.tick(now=emulated_now(fleet))  # first sight: marks and first progress written
    fleet.post("/_localcloud/clock", {"advance": UPGRADE_SECONDS // 2})  # every task moved on
    sent = [0]  # requests redis-py wrote to the server: a pipeline is one
    original = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sent[0] += 1
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    before_calls = actions(fleet)

    halfway = tracker.tick(now=emulated_now(fleet))

    calls = actions(fleet) - before_calls
    list_calls = calls["DescribeInstances"] + calls["DescribeDBInstances"] + calls["DescribeHistoryTasks"]
    assert (halfway["checked"], halfway["transitions"]) == (len(REDIS) + len(MONGO), [])
    # Every upgrade's new progress is kept on its followed outcome...
    followed = fleet.tracker.store.following_many(REDIS + MONGO)
    assert all(o.progress is not None and 0 < o.progress < 100 for o in followed.values())
    assert all(o.progress_at is not None for o in followed.values()), followed
    # ... in one pipelined round trip per batch (all 105 here): per shard a lock and its release,
    # per cloud call a rate-limit token, a few reads and the outbox probes; nothing per upgrade
    # (one EVALSHA round trip each before: > 105 on its own).
    assert sent[0] <= 2 * TRACKER_SHARDS + list_calls + 20, sent
