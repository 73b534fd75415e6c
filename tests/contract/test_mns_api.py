"""Contract: the official aliyun-mns-sdk against localcloud's MNS (topics, queues, auth, errors, faults)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest
from mns.account import Account
from mns.mns_exception import MNSClientNetworkException, MNSServerException
from mns.queue import Message, QueueMeta
from mns.topic import TopicMessage

from localcloud.server import RunningServer
from tests.conftest import ACCOUNT_ID, AK_ID, AK_SECRET, DEFAULT_SEED
from tests.contract.helpers import advance, set_faults

STS = DEFAULT_SEED["accounts"][0]["sts"][0]
SEED: dict[str, Any] = {
    "accounts": DEFAULT_SEED["accounts"],
    "topics": ["notices"],
    "queues": ["tap", "tap-json", "tap-xml", "work", {"QueueName": "slow", "VisibilityTimeout": 60}],
    "subscriptions": [
        {"topic": "notices", "queue": "tap"},
        {"topic": "notices", "queue": "tap-json", "format": "JSON", "name": "json-tap"},
        {"topic": "notices", "queue": "tap-xml", "format": "XML"},
    ],
}


@pytest.fixture
def lc(make_localcloud: Callable[..., RunningServer]) -> RunningServer:
    return make_localcloud(SEED)


def raw_queue(account: Account, name: str) -> Any:
    """A queue handle that neither base64-encodes what it sends nor decodes what it receives."""
    queue = account.get_queue(name)
    queue.set_encoding(False)
    return queue


def server_error(action: Callable[[], object]) -> MNSServerException:
    with pytest.raises(MNSServerException) as caught:
        action()
    return caught.value


# ---- topics ---------------------------------------------------------------------------------------


def test_published_message_reaches_the_subscribed_queue_unchanged(
    lc: RunningServer, account: Account
) -> None:
    body = '{"event": "upgrade.submitted", "instance_id": "r-bp1demo0000000001", "note": "<&>"}'
    published = account.get_topic("notices").publish_message(TopicMessage(body, "upgrade.done"))

    assert published.message_body_md5 == hashlib.md5(body.encode()).hexdigest().upper()  # noqa: S324
    received = raw_queue(account, "tap").receive_message()
    assert received.message_body == body
    assert received.dequeue_count == 1
    [call] = lc.cloud.calls.query({"action": "PublishMessage"})
    assert call["params"]["TopicName"] == "notices"
    assert call["params"]["MessageTag"] == "upgrade.done"
    assert call["params"]["MessageId"] == published.message_id


def test_json_subscription_wraps_the_message_with_its_topic_and_tag(
    lc: RunningServer, account: Account
) -> None:
    published = account.get_topic("notices").publish_message(TopicMessage("hello", "greeting"))

    notification = json.loads(raw_queue(account, "tap-json").receive_message().message_body)

    assert notification["Message"] == "hello"
    assert notification["MessageTag"] == "greeting"
    assert notification["MessageId"] == published.message_id
    assert notification["TopicName"] == "notices"
    assert notification["TopicOwner"] == ACCOUNT_ID
    assert notification["SubscriptionName"] == "json-tap"
    assert notification["MessageMD5"] == published.message_body_md5


def test_xml_subscription_delivers_a_notification_document(lc: RunningServer, account: Account) -> None:
    account.get_topic("notices").publish_message(TopicMessage("a < b", "t"))

    body = raw_queue(account, "tap-xml").receive_message().message_body

    assert "<Notification" in body
    assert "<Message>a &lt; b</Message>" in body


def test_topic_attributes_count_published_messages(account: Account) -> None:
    topic = account.get_topic("notices")
    topic.publish_message(TopicMessage("one"))

    assert topic.get_attributes().message_count == 1


# ---- queues ---------------------------------------------------------------------------------------


def test_send_receive_delete_with_the_sdks_default_base64(account: Account) -> None:
    queue = account.get_queue("work")
    sent = queue.send_message(Message("rollout r-bp1demo0000000002 -> 7.0"))

    received = queue.receive_message()
    assert received.message_id == sent.message_id
    assert received.message_body == b"rollout r-bp1demo0000000002 -> 7.0"
    queue.delete_message(received.receipt_handle)

    assert server_error(lambda: queue.receive_message(0)).type == "MessageNotExist"


def test_receipt_handles_survive_the_unescaped_url(account: Account) -> None:
    queue = raw_queue(account, "work")
    queue.batch_send_message([Message(f"m{i}") for i in range(16)])

    handles = [m.receipt_handle for m in queue.batch_receive_message(16)]

    assert all(re.fullmatch(r"[0-9A-Za-z-]+", h) for h in handles)
    for handle in handles:
        queue.delete_message(handle)


def test_unacknowledged_message_is_redelivered_after_the_visibility_timeout(
    lc: RunningServer, account: Account
) -> None:
    queue = raw_queue(account, "work")
    queue.send_message(Message("job"))
    first = queue.receive_message()
    assert server_error(lambda: queue.receive_message(0)).type == "MessageNotExist"

    advance(lc, 31)
    second = queue.receive_message(0)

    assert second.message_id == first.message_id
    assert second.dequeue_count == 2
    assert second.first_dequeue_time == first.first_dequeue_time
    assert server_error(lambda: queue.delete_message(first.receipt_handle)).type == "MessageNotExist"
    queue.delete_message(second.receipt_handle)


def test_change_visibility_extends_the_hiding_and_replaces_the_handle(
    lc: RunningServer, account: Account
) -> None:
    queue = raw_queue(account, "work")
    queue.send_message(Message("job"))
    received = queue.receive_message()

    changed = queue.change_message_visibility(received.receipt_handle, 120)
    advance(lc, 60)

    assert changed.receipt_handle != received.receipt_handle
    assert int(changed.next_visible_time) > received.next_visible_time  # the SDK leaves it a string
    assert server_error(lambda: queue.receive_message(0)).type == "MessageNotExist"
    advance(lc, 61)
    assert queue.receive_message(0).dequeue_count == 2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK's get_attributes reads deprecated fields
def test_queue_default_visibility_timeout_comes_from_the_seed(lc: RunningServer, account: Account) -> None:
    queue = raw_queue(account, "slow")
    queue.send_message(Message("job"))
    received = queue.receive_message()

    assert received.next_visible_time - received.first_dequeue_time == 60_000
    assert queue.get_attributes().visibility_timeout == 60


def test_delayed_message_appears_after_its_delay(lc: RunningServer, account: Account) -> None:
    queue = raw_queue(account, "work")
    queue.send_message(Message("later", delay_seconds=10))
    assert server_error(lambda: queue.receive_message(0)).type == "MessageNotExist"

    advance(lc, 10)

    assert queue.receive_message(0).message_body == "later"


def test_batch_send_and_batch_receive(account: Account) -> None:
    queue = raw_queue(account, "work")
    sent = queue.batch_send_message([Message(f"item-{i}") for i in range(3)])

    received = queue.batch_receive_message(16)

    assert sorted(m.message_body for m in received) == ["item-0", "item-1", "item-2"]
    assert {m.message_id for m in received} == {m.message_id for m in sent}


def test_batch_send_over_sixteen_is_refused(account: Account) -> None:
    queue = raw_queue(account, "work")

    error = server_error(lambda: queue.batch_send_message([Message(str(i)) for i in range(17)]))

    assert error.type == "InvalidArgument"


def test_priority_orders_delivery(account: Account) -> None:
    queue = raw_queue(account, "work")
    queue.send_message(Message("routine", priority=8))
    queue.send_message(Message("urgent", priority=1))

    assert queue.receive_message().message_body == "urgent"


def test_long_poll_returns_when_a_message_arrives(lc: RunningServer, account: Account) -> None:
    results: list[Any] = []
    poller = threading.Thread(target=lambda: results.append(raw_queue(account, "work").receive_message(10)))
    poller.start()
    # Send only once the poll is parked on the server, so it is the long poll that sees the message.
    for _ in range(200):
        if lc.cloud.mns._waiters.get("work"):
            break
        time.sleep(0.01)
    raw_queue(Account(lc.url, AK_ID, AK_SECRET), "work").send_message(Message("wake up"))
    poller.join(timeout=10)

    assert [r.message_body for r in results] == ["wake up"]
    [receive] = lc.cloud.calls.query({"action": "ReceiveMessage"})
    assert receive["params"]["WaitSeconds"] == 10


def test_empty_queue_answers_message_not_exist_with_its_request_id(
    lc: RunningServer, account: Account
) -> None:
    error = server_error(lambda: account.get_queue("work").receive_message(0))

    assert error.type == "MessageNotExist"
    [call] = lc.cloud.calls.query({"action": "ReceiveMessage"})
    assert error.request_id == call["request_id"]
    assert error.host_id == lc.url


def test_unknown_topic_and_queue(account: Account) -> None:
    topic_error = server_error(lambda: account.get_topic("nope").publish_message(TopicMessage("x")))
    queue_error = server_error(lambda: account.get_queue("nope").send_message(Message("x")))

    assert topic_error.type == "TopicNotExist"
    assert queue_error.type == "QueueNotExist"


def test_malformed_receipt_handle(account: Account) -> None:
    assert (
        server_error(lambda: account.get_queue("work").delete_message("not-a-handle")).type
        == "ReceiptHandleError"
    )


# ---- authentication -------------------------------------------------------------------------------


def test_wrong_secret_is_refused_with_403(lc: RunningServer) -> None:
    error = server_error(
        lambda: Account(lc.url, AK_ID, "wrong-secret").get_queue("work").send_message(Message("x"))
    )

    assert error.type == "SignatureDoesNotMatch"
    [call] = lc.cloud.calls.query({"action": "SendMessage"})
    assert (call["status"], call["access_key_id"]) == (403, None)
    assert AK_SECRET not in json.dumps(lc.cloud.calls.query())


def test_unknown_access_key(lc: RunningServer) -> None:
    error = server_error(
        lambda: Account(lc.url, "LTAInobody", "x").get_queue("work").send_message(Message("x"))
    )

    assert error.type == "InvalidAccessKeyId"


def test_sts_token_is_accepted_and_a_wrong_one_refused(lc: RunningServer) -> None:
    good = Account(lc.url, STS["access_key_id"], STS["access_key_secret"], STS["security_token"])
    good.get_topic("notices").publish_message(TopicMessage("via sts"))

    wrong = Account(lc.url, STS["access_key_id"], STS["access_key_secret"], "CAIS" + "x" * 40)
    error = server_error(lambda: wrong.get_topic("notices").publish_message(TopicMessage("x")))
    missing = Account(lc.url, STS["access_key_id"], STS["access_key_secret"])
    missing_error = server_error(lambda: missing.get_topic("notices").publish_message(TopicMessage("x")))

    assert error.type == missing_error.type == "InvalidSecurityToken"
    assert STS["security_token"] not in json.dumps(lc.cloud.calls.query())


def _raw_request(
    lc: RunningServer, headers: dict[str, str], path: str = "/queues/work/messages"
) -> tuple[int, str, dict[str, str]]:
    parsed = urlparse(lc.url)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=10)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    result = response.status, response.read().decode(), dict(response.getheaders())
    conn.close()
    return result


def test_requests_without_authorization_or_with_a_stale_date(lc: RunningServer) -> None:
    now = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    stale = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() - 3600))
    signed = {"x-mns-version": "2015-06-06", "Authorization": f"MNS {AK_ID}:c2ln"}

    missing_auth = _raw_request(lc, {"Date": now, "x-mns-version": "2015-06-06"})
    missing_date = _raw_request(lc, signed)
    expired = _raw_request(lc, {**signed, "Date": stale})
    bad_signature = _raw_request(lc, {**signed, "Date": now})

    assert missing_auth[0] == 400 and "<Code>MissingAuthorizationHeader</Code>" in missing_auth[1]
    assert missing_date[0] == 400 and "<Code>MissingDateHeader</Code>" in missing_date[1]
    assert expired[0] == 408 and "<Code>TimeExpired</Code>" in expired[1]
    assert bad_signature[0] == 403 and "<Code>SignatureDoesNotMatch</Code>" in bad_signature[1]
    assert all(
        reply[2].get("x-mns-request-id") for reply in (missing_auth, missing_date, expired, bad_signature)
    )
    assert '<Error xmlns="http://mns.aliyuncs.com/doc/v1/">' in bad_signature[1]


def test_signed_x_mns_security_token_is_accepted(lc: RunningServer) -> None:
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    mns_headers = f"x-mns-security-token:{STS['security_token']}\nx-mns-version:2015-06-06\n"
    to_sign = f"GET\n\n\n{date}\n{mns_headers}/queues/work"
    digest = hmac.new(STS["access_key_secret"].encode(), to_sign.encode(), hashlib.sha1).digest()
    status, body, _ = _raw_request(
        lc,
        {
            "Date": date,
            "x-mns-version": "2015-06-06",
            "x-mns-security-token": STS["security_token"],
            "Authorization": f"MNS {STS['access_key_id']}:{base64.b64encode(digest).decode()}",
        },
        "/queues/work",
    )

    assert status == 200 and "<QueueName>work</QueueName>" in body


def test_content_md5_of_the_hex_or_the_raw_digest_is_taken_and_a_wrong_one_refused(lc: RunningServer) -> None:
    """The SDK signs base64 of the hex MD5; RFC 1864's base64 of the raw digest is taken too."""
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    empty = hashlib.md5(b"")  # noqa: S324 - the checksum under test
    wrong = hashlib.md5(b"another body")  # noqa: S324

    def get_with(content_md5: str) -> tuple[int, str, dict[str, str]]:
        to_sign = f"GET\n{content_md5}\n\n{date}\nx-mns-version:2015-06-06\n/queues/work"
        digest = hmac.new(AK_SECRET.encode(), to_sign.encode(), hashlib.sha1).digest()
        headers = {
            "Date": date,
            "Content-MD5": content_md5,
            "x-mns-version": "2015-06-06",
            "Authorization": f"MNS {AK_ID}:{base64.b64encode(digest).decode()}",
        }
        return _raw_request(lc, headers, "/queues/work")

    hex_form = get_with(base64.b64encode(empty.hexdigest().encode()).decode())
    raw_form = get_with(base64.b64encode(empty.digest()).decode())
    refused = get_with(base64.b64encode(wrong.hexdigest().encode()).decode())

    assert hex_form[0] == raw_form[0] == 200
    assert refused[0] == 400 and "<Code>InvalidDegist</Code>" in refused[1]


# ---- faults and state -----------------------------------------------------------------------------


def test_injected_faults(lc: RunningServer, account: Account) -> None:
    topic = account.get_topic("notices")
    set_faults(lc, seed=1, rules=[{"product": "mns", "action": "PublishMessage", "throttle_rate": 1.0}])
    throttled = server_error(lambda: topic.publish_message(TopicMessage("x")))
    set_faults(lc, seed=1, rules=[{"product": "mns", "action": "PublishMessage", "error_rate": 1.0}])
    failed = server_error(lambda: topic.publish_message(TopicMessage("x")))
    set_faults(lc, seed=1, rules=[{"product": "mns", "action": "PublishMessage", "drop_rate": 1.0}])
    with pytest.raises(MNSClientNetworkException):
        Account(lc.url, AK_ID, AK_SECRET).get_topic("notices").publish_message(TopicMessage("x"))
    set_faults(lc, seed=1, rules=[{"product": "mns", "action": "PublishMessage", "lost_reply_rate": 1.0}])
    with pytest.raises(MNSClientNetworkException):
        Account(lc.url, AK_ID, AK_SECRET).get_topic("notices").publish_message(TopicMessage("lost"))

    assert (throttled.type, failed.type) == ("TooManyRequests", "InternalError")
    # The SDK reconnects once when a connection closes unanswered, so each network fault is two calls,
    # and a lost reply was processed both times: the subscribed queue holds the message twice.
    faults = [c["fault"] for c in lc.cloud.calls.query({"action": "PublishMessage"})]
    assert faults == ["throttle", "error", "drop", "drop", "lost_reply", "lost_reply"]
    assert [m.message_body for m in raw_queue(account, "tap").batch_receive_message(16)] == ["lost", "lost"]


def test_queue_messages_survive_a_restart_with_state(make_localcloud: Any, tmp_path: Any) -> None:
    state_file = tmp_path / "state.json"
    first = make_localcloud(SEED, state_file=state_file)
    raw_queue(Account(first.url, AK_ID, AK_SECRET), "work").send_message(Message("persisted"))
    first.cloud.save()

    second = make_localcloud(SEED, state_file=state_file)

    assert (
        raw_queue(Account(second.url, AK_ID, AK_SECRET), "work").receive_message().message_body == "persisted"
    )


def test_unemulated_operations_say_so(lc: RunningServer, account: Account) -> None:
    error = server_error(lambda: account.get_queue("brand-new").create(QueueMeta()))

    assert error.type == "NotImplemented"
    assert "does not emulate" in error.message
