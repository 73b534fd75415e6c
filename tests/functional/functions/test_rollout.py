"""The rollout function end to end: every sample delivery shape, redelivery, bad neighbours, a down store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from mns.account import Account
from mns.topic import TopicMessage

from tests.conftest import AK_ID, AK_SECRET
from tests.functional.functions.conftest import Stack

EVENTS = Path(__file__).resolve().parents[3] / "events"


def sample(name: str) -> bytes:
    return (EVENTS / name).read_bytes()


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("rollout-mns-topic-json.json", {"dds-bp1demo000000002": "submitted"}),
        ("rollout-mns-topic-stream.json", {"r-bp1demo0000000004": "submitted"}),
        ("rollout-eventbridge-single.json", {"r-bp1demo0000000002": "submitted"}),
        (
            "rollout-eventbridge-batch.json",
            {
                "r-bp1demo0000000002": "submitted",
                "dds-bp1demo000000003": "submitted",
                "r-bp1demo0000000003": "noop",
            },
        ),
        ("rollout-async-fanout.json", {"r-bp1demo0000000004": "submitted"}),
    ],
)
def test_sample_delivery_upgrades_and_notifies(stack: Stack, event: str, expected: dict[str, str]) -> None:
    reply = stack.invoke("rollout", sample(event))

    assert {o["instance_id"]: o["status"] for o in reply["outcomes"]} == expected
    submitted = {i for i, status in expected.items() if status == "submitted"}
    assert set(stack.upgraded()) == submitted
    request_ids = {o["instance_id"]: o["request_id"] for o in reply["outcomes"]}
    assert {
        request_ids[c["params"].get("InstanceId") or c["params"]["DBInstanceId"]]
        for c in stack.upgrade_calls()
    } == {c["request_id"] for c in stack.upgrade_calls()}
    notes = stack.notifications(len(expected))
    assert {n["instance_id"]: n["event"] for n in notes} == {i: f"upgrade.{s}" for i, s in expected.items()}
    assert {n["source"] for n in notes} == {"queue"}


def test_maintenance_window_request_reaches_the_api_as_maintain_time(stack: Stack) -> None:
    stack.invoke("rollout", sample("rollout-mns-topic-stream.json"))

    [call] = stack.upgrade_calls()
    assert call["params"]["EffectiveTime"] == "MaintainTime"


def test_a_redelivered_batch_upgrades_nothing_twice(stack: Stack) -> None:
    first = stack.invoke("rollout", sample("rollout-eventbridge-batch.json"))
    again = stack.invoke("rollout", sample("rollout-eventbridge-batch.json"))

    assert len(stack.upgrade_calls()) == 2
    assert [(o["status"], o["request_id"]) for o in again["outcomes"]] == [
        (o["status"], o["request_id"]) for o in first["outcomes"]
    ]


def test_a_bad_message_is_rejected_alone_and_its_neighbours_run(stack: Stack) -> None:
    batch = json.loads(sample("rollout-eventbridge-batch.json"))
    batch[1]["data"]["messageBody"] = json.dumps({"instance_id": "dds-bp1demo000000003", "target": "7.0"})
    batch[2]["data"]["messageBody"] = "{not json"

    reply = stack.invoke("rollout", batch)

    outcomes = [(o["status"], o["field"]) for o in reply["outcomes"]]
    assert outcomes == [("submitted", None), ("rejected", "target"), ("rejected", "data.messageBody")]
    assert list(stack.upgraded()) == ["r-bp1demo0000000002"]
    notes = stack.notifications(3)
    assert sorted(n["event"] for n in notes) == ["upgrade.rejected", "upgrade.rejected", "upgrade.submitted"]
    rejected = [n for n in notes if n["event"] == "upgrade.rejected"]
    assert {n["correlation_id"] for n in rejected} == {
        batch[1]["data"]["messageId"],
        batch[2]["data"]["messageId"],
    }


def test_a_down_store_fails_the_invocation_before_any_cloud_call(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(
        rollout={"DBUPGRADE_REDIS_URL": "redis://127.0.0.1:9/0"}
    )  # discard port: nothing listens

    error = stack.invoke_failing("rollout", sample("rollout-eventbridge-batch.json"))

    assert error["errorType"] == "StoreUnavailable"
    assert [c for c in stack.calls() if c["product"] in ("r-kvstore", "dds")] == []


def test_bulk_publish_to_the_rollout_topic_is_pushed_to_the_function(stack: Stack) -> None:
    topic = Account(stack.lc.url, AK_ID, AK_SECRET).get_topic("dbupgrade-rollout")
    requests = [
        {"instance_id": "r-bp1demo0000000002", "target_version": "7.0", "rollout_id": "bulk-1"},
        {"instance_id": "r-bp1demo0000000004", "target_version": "7.0", "rollout_id": "bulk-1"},
        {"instance_id": "dds-bp1demo000000002", "target_version": "6.0", "rollout_id": "bulk-1"},
    ]
    for request in requests:
        topic.publish_message(TopicMessage(json.dumps(request), "rollout"))

    stack.wait_for(lambda: len(stack.upgrade_calls()) == 3)
    assert stack.lc.cloud.fc.wait_idle(30)
    assert stack.upgraded() == {r["instance_id"]: r["target_version"] for r in requests}
    notes = stack.notifications(3)
    assert {n["rollout_id"] for n in notes} == {"bulk-1"}
