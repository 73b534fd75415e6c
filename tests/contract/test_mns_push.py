"""Contract: what MNS subscriptions push to functions, in the formats Function Compute hands them over.

Publishing and sending go through the official aliyun-mns-sdk. The receiving side is FC's async
invoke (``cloud.fc.invoke_async``), which belongs to the FC room: here a recorder stands in for it,
so the tests see exactly the payload each push would invoke the function with.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from mns.account import Account
from mns.message_property import MessagePropertyValue, PropertyType
from mns.mns_exception import MNSServerException
from mns.queue import Message
from mns.topic import TopicMessage

from localcloud.server import RunningServer
from tests.conftest import ACCOUNT_ID
from tests.contract.helpers import advance, set_faults

SEED: dict[str, Any] = {
    "topics": ["rollout-json", "rollout-stream", "rollout-decay"],
    "queues": ["rollout-q", "batch-q", "b64-q"],
    "subscriptions": [
        {"topic": "rollout-json", "function": "dbupgrade/rollout", "format": "JSON", "name": "json-trigger"},
        {"topic": "rollout-stream", "function": "dbupgrade/stream"},
        {"topic": "rollout-decay", "function": "dbupgrade/decay", "strategy": "EXPONENTIAL_DECAY_RETRY"},
        {"queue": "rollout-q", "function": "dbupgrade/rollout", "name": "queue-trigger"},
        {"queue": "batch-q", "function": "dbupgrade/batch", "batch_size": 3, "batch_window_seconds": 5},
        {"queue": "b64-q", "function": "dbupgrade/b64", "base64": True},
    ],
}


class RecordingFc:
    """FC's async invoke as the pushes see it: records each accepted push; refuses the first ``failures``."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, str, bytes]] = []
        self.failures = 0

    async def invoke_async(self, service: str, function: str, payload: bytes) -> str:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("function unavailable")
        self.pushes.append((service, function, payload))
        return f"invocation-{len(self.pushes)}"

    def to(self, function: str) -> list[Any]:
        """Decoded payloads pushed to ``service/function``."""
        return [json.loads(p) for s, f, p in self.pushes if f"{s}/{f}" == function]


@pytest.fixture
def lc(make_localcloud: Callable[..., RunningServer]) -> RunningServer:
    return make_localcloud(SEED)


@pytest.fixture
def fc(lc: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RecordingFc:
    recorder = RecordingFc()
    monkeypatch.setattr(lc.cloud.fc, "invoke_async", recorder.invoke_async, raising=False)
    return recorder


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def push_calls(lc: RunningServer) -> list[dict[str, Any]]:
    return lc.cloud.calls.query({"action": "PushToFunction"})


def send_raw(account: Account, queue_name: str, *bodies: str) -> None:
    queue = account.get_queue(queue_name)
    queue.set_encoding(False)
    for body in bodies:
        queue.send_message(Message(body))


# ---- topic -> function ----------------------------------------------------------------------------


def test_topic_push_in_json_format(lc: RunningServer, fc: RecordingFc, account: Account) -> None:
    body = '{"instance_id": "r-bp1demo0000000001", "to_version": "7.0"}'
    published = account.get_topic("rollout-json").publish_message(TopicMessage(body, "rollout"))

    eventually(lambda: len(fc.pushes) == 1)

    [event] = fc.to("dbupgrade/rollout")
    assert event["Message"] == body
    assert event["MessageId"] == published.message_id
    assert event["MessageMD5"] == published.message_body_md5
    assert event["TopicName"] == "rollout-json"
    assert event["TopicOwner"] == event["Subscriber"] == ACCOUNT_ID
    assert event["SubscriptionName"] == "json-trigger"
    assert isinstance(event["PublishTime"], int)
    [call] = push_calls(lc)
    assert (call["status"], call["params"]["Function"], call["extra"]["invocation_id"]) == (
        202,
        "dbupgrade/rollout",
        "invocation-1",
    )


def test_topic_push_in_stream_format_is_the_raw_body(fc: RecordingFc, account: Account) -> None:
    account.get_topic("rollout-stream").publish_message(TopicMessage("plain text, not JSON"))

    eventually(lambda: len(fc.pushes) == 1)

    assert fc.pushes == [("dbupgrade", "stream", b"plain text, not JSON")]


def test_topic_push_in_stream_format_with_attributes(fc: RecordingFc, account: Account) -> None:
    message = TopicMessage("hello")
    message.add_user_property("team", MessagePropertyValue(PropertyType.STRING, "orders"))
    account.get_topic("rollout-stream").publish_message(message)

    eventually(lambda: len(fc.pushes) == 1)

    assert fc.to("dbupgrade/stream") == [{"body": "hello", "attrs": {"team": "orders"}}]


def test_failed_topic_push_is_retried_after_a_backoff(
    lc: RunningServer, fc: RecordingFc, account: Account
) -> None:
    fc.failures = 1
    account.get_topic("rollout-json").publish_message(TopicMessage("retry me"))
    eventually(lambda: len(push_calls(lc)) == 1)
    assert fc.pushes == []

    advance(lc, 20)  # BACKOFF_RETRY waits 10-20 s between attempts

    eventually(lambda: len(fc.pushes) == 1)
    assert [(c["params"]["Attempt"], c["status"]) for c in push_calls(lc)] == [(1, 500), (2, 202)]


def test_backoff_retry_gives_up_after_three_retries(
    lc: RunningServer, fc: RecordingFc, account: Account
) -> None:
    set_faults(lc, rules=[{"product": "mns", "action": "PushToFunction", "error_rate": 1}])
    account.get_topic("rollout-json").publish_message(TopicMessage("doomed"))

    for attempts in range(1, 5):
        eventually(lambda n=attempts: len(push_calls(lc)) == n)
        advance(lc, 20)
    advance(lc, 600)
    time.sleep(0.2)  # several push ticks: nothing is left to retry

    calls = push_calls(lc)
    assert [c["params"]["Attempt"] for c in calls] == [1, 2, 3, 4]
    assert {(c["status"], c["fault"]) for c in calls} == {(500, "error")}
    assert fc.pushes == []


def test_exponential_decay_retries_sooner_at_first(
    lc: RunningServer, fc: RecordingFc, account: Account
) -> None:
    fc.failures = 2
    account.get_topic("rollout-decay").publish_message(TopicMessage("eventually"))
    eventually(lambda: len(push_calls(lc)) == 1)

    advance(lc, 2)
    eventually(lambda: len(push_calls(lc)) == 2)
    advance(lc, 4)

    eventually(lambda: len(fc.pushes) == 1)


# ---- queue -> function (EventBridge CloudEvents) --------------------------------------------------


def test_queue_push_is_one_cloudevent_and_consumes_the_message(
    lc: RunningServer, fc: RecordingFc, account: Account
) -> None:
    send_raw(account, "rollout-q", "r-bp1demo0000000003 7.0")

    eventually(lambda: len(fc.pushes) == 1)

    [event] = fc.to("dbupgrade/rollout")
    assert event["specversion"] == "1.0"
    assert event["type"] == "mns:Queue:SendMessage"
    assert event["source"] == "MNS-rollout-queue-trigger"
    assert event["subject"] == f"acs:mns:cn-hangzhou:{ACCOUNT_ID}:queues/rollout-q"
    assert event["data"]["messageBody"] == "r-bp1demo0000000003 7.0"
    eventually(lambda: not lc.cloud.mns.queues["rollout-q"].messages)
    with pytest.raises(MNSServerException):
        account.get_queue("rollout-q").peek_message()


def test_queue_push_batches_until_full_or_the_window_passes(
    lc: RunningServer, fc: RecordingFc, account: Account
) -> None:
    send_raw(account, "batch-q", "a", "b")
    time.sleep(0.2)  # several push ticks: a batch of 2 of 3 waits for its window
    assert fc.pushes == []

    advance(lc, 5)
    eventually(lambda: len(fc.pushes) == 1)
    send_raw(account, "batch-q", "c", "d", "e")
    eventually(lambda: len(fc.pushes) == 2)

    first, second = fc.to("dbupgrade/batch")
    assert [e["data"]["messageBody"] for e in first] == ["a", "b"]
    assert [e["data"]["messageBody"] for e in second] == ["c", "d", "e"]


def test_queue_push_can_base64_the_body(fc: RecordingFc, account: Account) -> None:
    send_raw(account, "b64-q", "héllo")

    eventually(lambda: len(fc.pushes) == 1)

    [event] = fc.to("dbupgrade/b64")
    assert base64.b64decode(event["data"]["messageBody"]).decode() == "héllo"


def test_refused_queue_push_is_redelivered_after_the_visibility_timeout(
    lc: RunningServer, fc: RecordingFc, account: Account
) -> None:
    fc.failures = 1
    send_raw(account, "rollout-q", "again")
    eventually(lambda: len(push_calls(lc)) == 1)

    advance(lc, 30)

    eventually(lambda: len(fc.pushes) == 1)
    assert [c["status"] for c in push_calls(lc)] == [500, 202]
    assert fc.to("dbupgrade/rollout")[0]["data"]["messageBody"] == "again"


def test_push_to_a_function_fc_lacks_is_a_failed_delivery(lc: RunningServer, account: Account) -> None:
    # No recorder here: the real FC backend refuses, as FC refuses a trigger whose function is gone.
    account.get_topic("rollout-json").publish_message(TopicMessage("nobody home"))

    eventually(lambda: len(push_calls(lc)) == 1)

    [call] = push_calls(lc)
    assert (call["status"], call["code"]) == (404, "ServiceNotFound")
