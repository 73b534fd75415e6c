"""A rollout function invocation that dies mid-batch - SIGKILLed while a target's upgrade call is
on the wire, on the batch's first message or after a neighbour was submitted - and the platform's
redelivery of the same batch (same message ids) once the dead invocation's deadline has passed:
every target still ends in exactly one recorded outcome and one notification per final outcome
(its verdict, then the tracker's ``completed``), and no instance is upgraded twice.

The death is real: the first delivery runs functions/rollout/index.py in its own process, against
the same localcloud and Redis, with ModifyInstanceMajorVersion slowed so the kill lands while that
call is being served (localcloud lists it in flight). localcloud still processes the call after the
caller is gone, as a cloud that received the request would: the redelivery meets an instance whose
upgrade the dead invocation started and never recorded.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
from dbupgrade.store import keys
from dbupgrade.tracker import Tracker
from dbupgrade.triggers.runs import MESSAGE_RESERVE_SECONDS
from dbupgrade.usecase import Upgrader

from tests.conftest import delivery_to_kill
from tests.reliability.faultrun import (
    FAST_RETRY,
    World,
    fc_context,
    get_json,
    load_rollout_function,
    notifications,
    post_json,
    rollout_messages,
    targets,
)

# Three Redis instances and one MongoDB one, ready and one major version below their target.
TARGETS = targets(4)
# The dead invocation's FC timeout: its idempotency in-progress records and its instance claim free
# themselves this soon after it started. A batch starts a message after its first only with
# MESSAGE_RESERVE_SECONDS left: dying on a later message needs a timeout past that.
SHORT_TIMEOUT_SECONDS = 3
LATER_MESSAGE_TIMEOUT_SECONDS = MESSAGE_RESERVE_SECONDS + 5
# Long enough for the kill to land while the first upgrade call is served, short enough that
# localcloud has answered it (into a closed connection) well before the redelivery.
SLOW_UPGRADE = {"product": "r-kvstore", "action": "ModifyInstanceMajorVersion", "latency_ms": 1_000}
REDELIVERY_TIMEOUT_SECONDS = 120
# How long localcloud keeps a seeded instance upgrading (tests/reliability/faultrun.py ``seed``).
UPGRADE_SECONDS = 3600
# The tracker keeps minutes of its invocation for the rollouts and the outbox: a timer's timeout.
TRACKER_TIMEOUT_SECONDS = 600


def eventbridge_batch(requests: list[dict[str, str]]) -> bytes:
    """An EventBridge MNS-queue batch push, one CloudEvent per message, with fixed ids so the
    redelivery is the same batch (the shape of bench/harness.py ``eventbridge_batch``)."""
    return json.dumps(
        [
            {
                "specversion": "1.0",
                "id": f"5a1e0000-0000-4000-8000-{n:012d}",
                "source": "acs.mns",
                "type": "mns:Queue:SendMessage",
                "datacontenttype": "application/json;charset=utf-8",
                "data": {"messageId": f"DEAD0000000000{n:02d}", "messageBody": json.dumps(request)},
            }
            for n, request in enumerate(requests)
        ]
    ).encode()


# The first delivery, in a process of its own: the rollout function on a warm instance whose FC
# context has a short timeout.
DELIVER = """
import json, sys, time
from dbupgrade.usecase import Upgrader
from tests.reliability.faultrun import FAST_RETRY, fc_context, load_rollout_function

env, event, timeout = json.loads(sys.stdin.read())
rollout = load_rollout_function()
rollout._upgrader = Upgrader.from_env(env, retry=FAST_RETRY)
print("invoked", time.time(), flush=True)  # the invocation starts now: its deadline is timeout seconds away
rollout.handler(event.encode(), fc_context("rollout", timeout))
print("finished", flush=True)
"""


def in_flight(world: World, action: str) -> list[dict[str, Any]]:
    return get_json(f"{world.lc.url}/_localcloud/calls?action={action}&in_flight=1")["calls"]


def die_mid_batch(world: World, event: bytes, timeout: float) -> tuple[float, str]:
    """Run the first delivery in its own process and SIGKILL it once a Redis upgrade call is on
    the wire; returns when (``time.time()``) its invocation's deadline passes and which instance
    that call upgrades."""
    with delivery_to_kill(DELIVER, [world.env, event.decode(), timeout]) as (process, invoked):
        started = time.monotonic()
        while not (calls := in_flight(world, "ModifyInstanceMajorVersion")):
            assert process.poll() is None, "the first delivery ended before its upgrade call"
            assert time.monotonic() - started < timeout, "no upgrade call before the timeout"
            time.sleep(0.01)
        assert process.poll() is None, "the first delivery finished: its upgrade call was not slowed"
    [call] = calls
    return invoked + timeout, call["params"]["InstanceId"]


def wait_answered(world: World, action: str, timeout: float = 10) -> None:
    """Until localcloud has answered every ``action`` call it was serving (into a closed connection)."""
    deadline = time.monotonic() + timeout
    while in_flight(world, action):
        assert time.monotonic() < deadline, f"{action} still in flight after {timeout} s"
        time.sleep(0.02)


def accepted_upgrades(world: World) -> dict[str, int]:
    """instance id -> how many of its upgrade calls localcloud accepted."""
    counts: dict[str, int] = {}
    for call in world.processed_upgrades():
        instance = call["params"].get("InstanceId") or call["params"]["DBInstanceId"]
        counts[instance] = counts.get(instance, 0) + 1
    return counts


@pytest.mark.parametrize(
    ("batch", "dead_timeout"),
    [
        (TARGETS, SHORT_TIMEOUT_SECONDS),
        # The MongoDB target first: it is submitted (upgrade call not slowed) before the death.
        ([TARGETS[-1], *TARGETS[:-1]], LATER_MESSAGE_TIMEOUT_SECONDS),
    ],
    ids=["on-the-first-message", "after-a-done-neighbour"],
)
def test_a_batch_whose_invocation_died_mid_upgrade_call_ends_in_one_outcome_and_notification_per_target(
    world: World, batch: list[dict[str, str]], dead_timeout: float
) -> None:
    event = eventbridge_batch(batch)
    instances = [target["instance_id"] for target in batch]
    world.faults([SLOW_UPGRADE])

    deadline, first = die_mid_batch(world, event, dead_timeout)
    wait_answered(world, "ModifyInstanceMajorVersion")
    world.faults([])
    done = instances[: instances.index(first)]  # the messages the dead invocation finished
    # What it left: the upgrade calls it made accepted by the cloud, the outcomes of the done ones.
    assert accepted_upgrades(world) == dict.fromkeys([*done, first], 1)
    reader = Upgrader.from_env(world.env, retry=FAST_RETRY)
    before = {instance: reader.status(instance) for instance in instances}
    assert {i: o.status if o else None for i, o in before.items()} == {
        instance: "submitted" if instance in done else None for instance in instances
    }
    time.sleep(max(0.0, deadline - time.time()) + 0.5)  # its in-progress records and claims expired

    rollout = load_rollout_function()  # a new function instance takes the redelivery
    rollout._upgrader = Upgrader.from_env(world.env, retry=FAST_RETRY)
    redelivered = json.loads(rollout.handler(event, fc_context("rollout", REDELIVERY_TIMEOUT_SECONDS)))
    again = json.loads(rollout.handler(event, fc_context("rollout", REDELIVERY_TIMEOUT_SECONDS)))

    assert redelivered["batchItemFailures"] == [], redelivered
    # The instance whose upgrade the dead invocation started is found upgrading: followed, never
    # submitted again; the others are submitted.
    verdicts = {o["instance_id"]: (o["status"], o["reason"]) for o in redelivered["outcomes"]}
    assert verdicts == {
        first: ("in_progress", "already_upgrading"),
        **{instance: ("submitted", None) for instance in instances if instance != first},
    }
    for instance in done:  # replayed, not run again
        replayed = before[instance]
        assert replayed is not None
        [summary] = [o for o in redelivered["outcomes"] if o["instance_id"] == instance]
        assert summary["request_id"] == replayed.request_id
    # The second copy answers from idempotency: the same outcomes, nothing run again.
    assert [(o["status"], o["request_id"]) for o in again["outcomes"]] == [
        (o["status"], o["request_id"]) for o in redelivered["outcomes"]
    ]
    assert accepted_upgrades(world) == dict.fromkeys(instances, 1)
    assert list(rollout_messages(world.lc)) == []  # nothing put back on the rollout topic

    # The upgrades end; the tracker tells each once, the dead invocation's one included.
    post_json(f"{world.lc.url}/_localcloud/clock", {"advance": UPGRADE_SECONDS + 60})
    Tracker(Upgrader.from_env(world.env, retry=FAST_RETRY)).tick(
        fc_context("tracker", TRACKER_TIMEOUT_SECONDS)
    )

    reader = Upgrader.from_env(world.env, retry=FAST_RETRY)
    for instance in instances:
        first_verdict = verdicts[instance][0]
        assert [o.status for o in reader.history(instance)] == ["completed", first_verdict], instance
    assert reader.store.outbox_size() == 0
    notified = sorted((n["instance_id"], n["event"]) for n in notifications(world.lc))
    assert notified == sorted(
        [(instance, f"upgrade.{status}") for instance, (status, _) in verdicts.items()]
        + [(instance, "upgrade.completed") for instance in instances]
    )
    assert accepted_upgrades(world) == dict.fromkeys(instances, 1)
    # No claim is left behind, and no lock without an expiry (Powertools' own short-lived
    # idempotency ``:lock`` keys expire by themselves).
    client = redis.Redis.from_url(world.store.url)
    assert list(client.scan_iter(f"{keys.PREFIX}claim:*")) == []
    locks = [key for key in client.scan_iter(f"{keys.PREFIX}*") if b"lock" in key]
    assert [key for key in locks if int(client.ttl(key)) < 0] == []
