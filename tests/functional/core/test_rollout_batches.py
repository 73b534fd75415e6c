"""The rollout function's batches (#12.7, #12.9): every message runs, per-message failures are
reported (``batchItemFailures``) and come back, one in-flight message never blocks its neighbours,
and a batch stops before the invocation's deadline. Real localcloud, real Redis, the function's own
event parser and loop."""

from __future__ import annotations

import base64
import json
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from dbupgrade.context import adapt_context
from dbupgrade.triggers import parse_rollout_event
from dbupgrade.triggers.runs import MESSAGE_RESERVE_SECONDS, RedeliveryNeeded, run_rollout

from tests.functional.core.conftest import TOPIC, Bench

ROLLOUT_TAG = "rollout"  # the fan-out's MessageTag on the rollout topic
BATCH = ["r-bp1ready0000001", "r-bp1ready0000002", *[f"r-bp1fleet00000{n}" for n in range(8)]]


def cloud_event(instance_id: str, target: str) -> dict[str, Any]:
    """One message of an EventBridge MNS-queue batch (CloudEvents), as events/rollout-eventbridge-batch.json."""
    body = json.dumps({"instance_id": instance_id, "target_version": target})
    return {
        "id": f"ce-{instance_id}",
        "source": "MNS-rollout-dbupgrade-rollout-queue",
        "specversion": "1.0",
        "type": "mns:Queue:SendMessage",
        "data": {"messageId": f"msg-{instance_id}", "messageBody": base64.b64encode(body.encode()).decode()},
    }


def batch(*targets: tuple[str, str]) -> bytes:
    return json.dumps([cloud_event(i, t) for i, t in targets]).encode()


def context(seconds: float = 120) -> Any:
    return adapt_context(
        SimpleNamespace(request_id="inv-1", get_remaining_time_in_millis=lambda: seconds * 1000)
    )


def accepted(bench: Bench, instance_id: str) -> int:
    return len([c for c in bench.upgrade_calls(instance_id) if c["status"] == 200])


def put_back(bench: Bench) -> list[dict[str, Any]]:
    """Fan-out messages the function published to the rollout topic (here: the test topic)."""
    return [
        json.loads(c["params"]["MessageBody"])
        for c in bench.calls("PublishMessage", status="201")
        if c["params"]["MessageTag"] == ROLLOUT_TAG
    ]


def test_one_in_flight_message_does_not_stop_its_nine_neighbours(bench: Bench) -> None:
    bench.faults([{"product": "r-kvstore", "action": "ModifyInstanceMajorVersion", "latency_ms": 400}])
    upgrader = bench.upgrader(DBUPGRADE_ROLLOUT_QUEUE=TOPIC)
    event = batch(*[(i, "7.0") for i in BATCH])
    # The first message is being run by another invocation right now (MNS delivered it twice).
    twin = threading.Thread(target=run_rollout, args=(parse_rollout_event(event)[:1], upgrader, context()))
    twin.start()
    # Started once the twin holds the instance's claim (its upgrade call then takes 0.4 s), not after
    # a fixed pause a busy machine could outrun.
    waited_until = time.monotonic() + 10
    while upgrader.store.claim_of(BATCH[0]) is None:
        assert time.monotonic() < waited_until, "the twin took no claim"
        time.sleep(0.01)

    summary = run_rollout(parse_rollout_event(event), upgrader, context())
    twin.join()

    assert summary["counts"] == {"submitted": 9, "in_progress": 1}
    assert summary["batchItemFailures"] == [{"itemIdentifier": f"msg-{BATCH[0]}", "reason": "in_flight"}]
    assert all(accepted(bench, i) == 1 for i in BATCH)
    [again] = put_back(bench)  # it comes back alone, under its own delivery id
    assert (again["delivery_id"], again["upgrade"]["instance_id"], again["requeued"]) == (
        f"msg-{BATCH[0]}",
        BATCH[0],
        1,
    )
    # When it comes back, it answers from idempotency: no second upgrade call.
    [replayed] = run_rollout(parse_rollout_event(json.dumps(again)), upgrader, context())["outcomes"]
    assert replayed["status"] == "submitted" and accepted(bench, BATCH[0]) == 1


def test_a_transient_failure_comes_back_and_its_neighbours_are_done(bench: Bench) -> None:
    bench.faults([{"product": "dds", "action": "UpgradeDBInstanceEngineVersion", "error_rate": 1.0}])
    upgrader = bench.upgrader(DBUPGRADE_ROLLOUT_QUEUE=TOPIC)
    event = batch(("r-bp1ready0000001", "7.0"), ("dds-bp1ready000001", "5.0"), ("r-bp1ready0000002", "7.0"))

    summary = run_rollout(parse_rollout_event(event), upgrader, context())

    statuses = {o["instance_id"]: (o["status"], o["reason"]) for o in summary["outcomes"]}
    assert statuses["r-bp1ready0000001"] == statuses["r-bp1ready0000002"] == ("submitted", None)
    assert statuses["dds-bp1ready000001"] == ("failed", "retries_exhausted")
    assert summary["batchItemFailures"] == [
        {"itemIdentifier": "msg-dds-bp1ready000001", "reason": "transient"}
    ]
    [again] = put_back(bench)

    bench.faults([])
    [retried] = run_rollout(parse_rollout_event(json.dumps(again)), upgrader, context())["outcomes"]

    assert retried["status"] == "submitted" and accepted(bench, "dds-bp1ready000001") == 1
    assert accepted(bench, "r-bp1ready0000001") == accepted(bench, "r-bp1ready0000002") == 1
    assert upgrader.status("dds-bp1ready000001").status == "submitted"  # type: ignore[union-attr]


def test_a_single_message_that_must_come_back_fails_the_invocation_for_redelivery(bench: Bench) -> None:
    bench.faults([{"product": "dds", "action": "UpgradeDBInstanceEngineVersion", "error_rate": 1.0}])
    upgrader = bench.upgrader()

    with pytest.raises(RedeliveryNeeded, match="msg-dds-bp1ready000001"):
        run_rollout(parse_rollout_event(batch(("dds-bp1ready000001", "5.0"))), upgrader, context())

    bench.faults([])  # the platform's redelivery runs it
    summary = run_rollout(parse_rollout_event(batch(("dds-bp1ready000001", "5.0"))), upgrader, context())
    assert summary["counts"] == {"submitted": 1} and summary["batchItemFailures"] == []


def test_a_batch_stops_before_the_deadline_and_puts_the_rest_back(bench: Bench) -> None:
    bench.faults([{"product": "r-kvstore", "action": "DescribeInstanceAttribute", "latency_ms": 600}])
    upgrader = bench.upgrader(DBUPGRADE_ROLLOUT_QUEUE=TOPIC)
    event = batch(*[(i, "7.0") for i in BATCH[:4]])

    summary = run_rollout(parse_rollout_event(event), upgrader, context(MESSAGE_RESERVE_SECONDS + 1.0))

    ran = [o["instance_id"] for o in summary["outcomes"]]
    assert 1 <= len(ran) < 4 and ran == BATCH[: len(ran)]
    left = BATCH[len(ran) : 4]
    assert summary["batchItemFailures"] == [
        {"itemIdentifier": f"msg-{i}", "reason": "deadline"} for i in left
    ]
    assert [m["upgrade"]["instance_id"] for m in put_back(bench)] == left
    assert all(bench.upgrade_calls(i) == [] for i in left)
