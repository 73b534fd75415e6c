"""Rollout function events: every shape a message can arrive in, and hostile input."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from dbupgrade.model import InvalidRequest
from dbupgrade.request import BODY_DIGEST_PREFIX
from dbupgrade.triggers import fanout_payload, parse_rollout_event
from hypothesis import given, settings
from hypothesis import strategies as st

EVENTS = Path(__file__).resolve().parents[3] / "events"
REQUEST = {"instance_id": "r-bp1demo0000000002", "target_version": "7.0"}


def sample(name: str) -> bytes:
    return (EVENTS / name).read_bytes()


def test_mns_topic_json_message_keeps_the_message_id() -> None:
    [message] = parse_rollout_event(sample("rollout-mns-topic-json.json"))

    assert message.shape == "mns-topic-json"
    assert message.message_id == "5F5B2A0C6A2E4C1A-1-19A1B2C3D4E-200000001"
    assert message.data == {
        "instance_id": "dds-bp1demo000000002",
        "target_version": "6.0",
        "ticket_id": "CHG-2001",
        "rollout_id": "mongo-6-wave-1",
    }
    assert message.rollout_id == "mongo-6-wave-1"


def test_mns_topic_stream_with_attributes_reads_the_body() -> None:
    [message] = parse_rollout_event(sample("rollout-mns-topic-stream.json"))

    assert message.shape == "mns-topic-stream"
    assert message.data is not None
    assert message.data["instance_id"] == "r-bp1demo0000000004"


def test_mns_topic_stream_raw_body_is_the_request() -> None:
    [message] = parse_rollout_event(json.dumps(REQUEST).encode())

    assert message.shape == "mns-topic-stream"
    assert message.data == REQUEST


def test_stream_bodies_have_no_message_id_so_a_digest_marked_as_one_stands_in_for_redelivery() -> None:
    body = json.dumps(REQUEST).encode()
    [first] = parse_rollout_event(body)
    [redelivered] = parse_rollout_event(body)
    [other] = parse_rollout_event(json.dumps({**REQUEST, "target_version": "6.0"}).encode())
    [with_attributes] = parse_rollout_event(sample("rollout-mns-topic-stream.json"))

    # Marked as a body digest, the use case remembers it only for BODY_DEDUPE_SECONDS (never the
    # 7 days of a real message id): the same body sent again later is a new request.
    assert first.message_id is not None and first.message_id.startswith(BODY_DIGEST_PREFIX)
    assert with_attributes.message_id is not None and with_attributes.message_id.startswith(
        BODY_DIGEST_PREFIX
    )
    assert first.message_id == redelivered.message_id != other.message_id


def test_a_topic_json_message_keys_on_its_message_id_never_on_a_digest() -> None:
    [message] = parse_rollout_event(sample("rollout-mns-topic-json.json"))

    assert message.message_id == json.loads(sample("rollout-mns-topic-json.json"))["MessageId"]


def test_eventbridge_single_event_uses_the_mns_message_id_not_the_event_id() -> None:
    [message] = parse_rollout_event(sample("rollout-eventbridge-single.json"))

    assert message.shape == "eventbridge"
    assert message.message_id == "0BC1A2E3F4A5B6C7-1-19A1B2C3D4F-300000001"
    assert message.data is not None and message.data["instance_id"] == "r-bp1demo0000000002"


def test_eventbridge_batch_decodes_a_base64_body() -> None:
    messages = parse_rollout_event(sample("rollout-eventbridge-batch.json"))

    assert [m.data["instance_id"] for m in messages if m.data] == [
        "r-bp1demo0000000002",
        "dds-bp1demo000000003",
        "r-bp1demo0000000003",
    ]
    assert len({m.message_id for m in messages}) == 3


def test_eventbridge_raw_data_push_format() -> None:
    body = base64.b64encode(json.dumps(REQUEST).encode()).decode()
    event = {"requestId": "r1", "messageId": "m1", "messageBody": body}
    [message] = parse_rollout_event(json.dumps(event).encode())

    assert (message.message_id, message.data) == ("m1", REQUEST)


def test_async_fanout_payload_round_trips() -> None:
    payload = fanout_payload(REQUEST, rollout_id="wave-1", delivery_id="wave-1:r-bp1demo0000000002")
    [message] = parse_rollout_event(payload)

    assert message.shape == "async-fanout"
    assert message.message_id == "wave-1:r-bp1demo0000000002"
    assert message.rollout_id == "wave-1"
    assert message.data == {**REQUEST, "rollout_id": "wave-1"}


def test_fanout_published_on_the_topic_is_keyed_by_its_delivery_id_not_the_message_id() -> None:
    payload = fanout_payload(REQUEST, rollout_id="wave-1", delivery_id="wave-1:r-bp1demo0000000002")
    event = {"TopicOwner": "1", "MessageId": "new-message-each-publish", "Message": payload.decode()}
    [message] = parse_rollout_event(json.dumps(event).encode())

    assert message.shape == "mns-topic-json"
    assert message.message_id == "wave-1:r-bp1demo0000000002"
    assert message.data == {**REQUEST, "rollout_id": "wave-1"}


def test_sample_async_fanout_event() -> None:
    [message] = parse_rollout_event(sample("rollout-async-fanout.json"))

    assert message.ok
    assert message.message_id == "staging-redis-7-2026-11-23T18-30-00Z:r-bp1demo0000000004"


def test_a_bad_message_in_a_batch_does_not_spoil_its_neighbours() -> None:
    batch = json.loads(sample("rollout-eventbridge-batch.json"))
    batch[1]["data"]["messageBody"] = "this is not an upgrade"
    batch.append("not an event")

    messages = parse_rollout_event(json.dumps(batch).encode())

    assert [m.ok for m in messages] == [True, False, True, False]
    assert messages[1].error is not None and messages[1].error.field == "data.messageBody"
    assert messages[1].message_id == "0BC1A2E3F4A5B6C7-1-19A1B2C3D4F-300000012"
    assert messages[3].error is not None and messages[3].error.field == "event[3]"


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (b"", "event"),
        (b"   ", "event"),
        (b"[]", "event"),
        (b"\xff\xfe", "event"),
        (b"plain words", "body"),
        (b"[1, 2]", "event[0]"),
        (json.dumps({"TopicOwner": "1", "MessageId": "m", "Message": 5}).encode(), "Message"),
        (json.dumps({"body": ["x"]}).encode(), "body"),
        (json.dumps({"specversion": "1.0", "id": "e1", "data": "x"}).encode(), "data"),
        (json.dumps({"kind": "dbupgrade.rollout/v1", "upgrade": {}}).encode(), "delivery_id"),
        (json.dumps({"kind": "dbupgrade.rollout/v1", "delivery_id": "d", "upgrade": 1}).encode(), "upgrade"),
    ],
)
def test_unusable_input_becomes_one_message_with_an_error_naming_the_field(event: bytes, field: str) -> None:
    [message, *_] = parse_rollout_event(event)

    assert not message.ok
    assert message.error is not None and message.error.field == field


def test_raw_excerpt_of_a_huge_bad_body_is_bounded() -> None:
    [message] = parse_rollout_event(b"x" * 100_000)

    assert len(message.raw) < 1000


cloud_event = st.fixed_dictionaries(
    {"specversion": st.just("1.0")},
    optional={
        "id": st.text(max_size=10),
        "data": st.one_of(
            st.none(),
            st.text(max_size=20),
            st.fixed_dictionaries(
                {},
                optional={
                    "messageId": st.one_of(st.none(), st.text(max_size=10), st.integers()),
                    "messageBody": st.one_of(st.none(), st.text(max_size=40), st.integers()),
                },
            ),
        ),
    },
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(event: bytes) -> None:
    messages = parse_rollout_event(event)

    assert messages
    assert all(m.ok or isinstance(m.error, InvalidRequest) for m in messages)


@settings(max_examples=400, deadline=None)
@given(json_values | cloud_event | st.lists(cloud_event | json_values, max_size=5))
def test_random_json_never_raises(value: object) -> None:
    messages = parse_rollout_event(json.dumps(value).encode())

    assert messages
    for message in messages:
        assert (message.data is None) != (message.error is None)


def test_deeply_nested_json_is_rejected_not_crashed() -> None:
    [message] = parse_rollout_event(b"[" * 100_000 + b"]" * 100_000)

    assert not message.ok
