"""The cases a fault run only meets by chance, each forced: a reply lost after the cloud processed
the upgrade, a store that is down, and a store that dies while an upgrade call is in flight."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from dbupgrade.triggers.runs import RedeliveryNeeded
from dbupgrade.usecase import Upgrader
from dbupgrade.webhook.app import WebhookApp

from tests.reliability.faultrun import (
    FAST_RETRY,
    UPGRADE_ACTIONS,
    World,
    fc_context,
    load_rollout_function,
    notifications,
    rollout_event,
)

REDIS_TARGET = {"instance_id": "r-bp1chaos000000", "target_version": "7.0"}
MONGO_TARGET = {"instance_id": "dds-bp1chaos000003", "target_version": "5.0"}


@pytest.mark.parametrize("target", [REDIS_TARGET, MONGO_TARGET], ids=["redis", "mongodb"])
def test_a_lost_reply_is_reconciled_by_describing_never_by_a_second_upgrade_call(
    world: World, target: dict[str, str]
) -> None:
    world.faults([{"action": a, "lost_reply_rate": 1.0} for a in UPGRADE_ACTIONS])
    app = WebhookApp(world.env, upgrader_options={"retry": FAST_RETRY})

    status, _, reply = world.post(app, target, "msg_lost_reply")

    assert (status, reply["status"], reply["reason"]) == (202, "submitted", "reconciled")
    [upgrade] = world.processed_upgrades()
    assert upgrade["fault"] == "lost_reply"
    after = world.cloud_calls()[world.cloud_calls().index(upgrade) + 1 :]
    assert after and all(c["action"].startswith("Describe") for c in after)
    [notified] = [n for n in notifications(world.lc) if n["instance_id"] == target["instance_id"]]
    assert notified["reason"] == "reconciled"


def test_store_down_the_webhook_answers_503_with_retry_after_and_calls_nothing(world: World) -> None:
    app = WebhookApp(world.env, upgrader_options={"retry": FAST_RETRY})
    world.store.stop()

    status, headers, reply = world.post(app, REDIS_TARGET, "msg_store_down")

    assert status == 503 and int(headers["retry-after"]) > 0
    assert reply["type"].endswith("store-unavailable")
    assert world.cloud_calls() == []
    world.store.start()  # the sender's retry after Retry-After goes through, once
    assert world.post(app, REDIS_TARGET, "msg_store_down")[0] == 202
    assert len(world.processed_upgrades()) == 1


def test_store_down_the_rollout_function_fails_before_any_call_and_the_redelivery_runs_once(
    world: World,
) -> None:
    rollout = load_rollout_function()
    rollout._upgrader = Upgrader.from_env(world.env, retry=FAST_RETRY)  # the warm instance
    event = rollout_event(REDIS_TARGET, "0000000A-DOWN-0000-0000-000000000000")
    world.store.stop()

    with pytest.raises(Exception, match="store unavailable"):
        rollout.handler(event, fc_context("rollout", 60))
    assert world.cloud_calls() == []

    world.store.start()
    for _ in range(2):  # MNS redelivers; the second copy finds the first outcome
        summary = json.loads(rollout.handler(event, fc_context("rollout", 60)))
        assert summary["counts"] == {"submitted": 1}
    assert len(world.processed_upgrades()) == 1


def test_the_store_dying_during_the_upgrade_call_still_ends_in_one_recorded_and_notified_outcome(
    world: World,
) -> None:
    """The upgrade call is processed while Redis is down, so its outcome cannot be recorded and the
    delivery's idempotency lock stays until the invocation's deadline. The sender's retries are told
    to come back (409 + Retry-After) until then; the next retry describes and records."""
    world.faults([{"action": "ModifyInstanceMajorVersion", "latency_ms": 600}])
    app = WebhookApp(world.env, upgrader_options={"retry": FAST_RETRY})
    # FC's function timeout: the lock of a dead invocation expires with it. Long enough that the
    # store's restart and the first retry fit inside it on a loaded machine (it took 1.7 s once).
    timeout = 8.0
    first: dict[str, Any] = {}
    sender = threading.Thread(
        target=lambda: first.update(reply=world.post(app, REDIS_TARGET, "msg_dies", timeout))
    )
    lock_expires = time.monotonic() + timeout
    sender.start()
    world.wait_in_flight("ModifyInstanceMajorVersion")  # the upgrade call is on the wire
    world.store.stop()
    sender.join()
    world.store.start()

    assert first["reply"][0] == 503
    status, headers, reply = world.post(app, REDIS_TARGET, "msg_dies", timeout)
    assert (status, reply["reason"]) == (409, "duplicate_in_flight") and int(headers["retry-after"]) > 0
    time.sleep(max(0.0, lock_expires - time.monotonic()) + 1.0)  # margin: it started later
    status, _, reply = world.post(app, REDIS_TARGET, "msg_dies", timeout)

    assert (status, reply["status"], reply["reason"]) == (200, "in_progress", "already_upgrading")
    assert len(world.processed_upgrades()) == 1
    recorded = Upgrader.from_env(world.env).status(REDIS_TARGET["instance_id"])
    assert recorded is not None and recorded.status == "in_progress"
    assert [n["event"] for n in notifications(world.lc)] == ["upgrade.in_progress"]


def test_a_rollout_message_found_in_flight_fails_the_invocation_for_redelivery(world: World) -> None:
    world.faults([{"action": "ModifyInstanceMajorVersion", "latency_ms": 600}])
    rollout = load_rollout_function()
    rollout._upgrader = Upgrader.from_env(world.env, retry=FAST_RETRY)
    event = rollout_event(REDIS_TARGET, "0000000B-FLIGHT-0000-0000-000000000000")
    first = threading.Thread(target=rollout.handler, args=(event, fc_context("rollout", 60)))
    first.start()
    world.wait_in_flight("ModifyInstanceMajorVersion")

    with pytest.raises(RedeliveryNeeded):  # MNS delivered the same message twice at once
        rollout.handler(event, fc_context("rollout", 60))
    first.join()
    assert len(world.processed_upgrades()) == 1
