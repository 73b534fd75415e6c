"""What subscribers receive: MNS notification bodies and the events Function Compute is handed.

- topic -> queue (``NotifyContentFormat``): SIMPLIFIED = the published body unchanged (never
  base64'd by MNS, so a Python consumer reads it with ``queue.set_encoding(False)``; a body published
  with ``Base64TopicMessage`` arrives base64 and the SDK's default decoding fits), JSON, or XML.
- topic -> function (FC ``mns_topic`` trigger): JSON, or STREAM = the raw body, or
  ``{"body", "attrs"}`` when the message carries user properties.
- queue -> function (EventBridge MNS-queue source): one CloudEvent, or a JSON array of them when
  the trigger batches.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from xml.sax.saxutils import escape

from localcloud.mns.exceptions import XMLNS

QUEUE_FORMATS = ("SIMPLIFIED", "JSON", "XML")
FUNCTION_FORMATS = ("JSON", "STREAM")


@dataclass(frozen=True)
class PublishedMessage:
    """One message published to a topic, as its subscribers are told about it."""

    message_id: str
    topic: str
    owner: str  # the publishing account
    body: str
    body_md5: str
    tag: str
    publish_time_ms: int
    user_properties: dict[str, str] = field(default_factory=dict)


def rfc3339_ms(epoch_ms: int) -> str:
    stamp = datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def _notification_fields(msg: PublishedMessage, subscription: str, subscriber: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "TopicOwner": msg.owner,
        "TopicName": msg.topic,
        "Subscriber": subscriber,
        "SubscriptionName": subscription,
        "MessageId": msg.message_id,
        "MessageMD5": msg.body_md5,
        "Message": msg.body,
        "PublishTime": msg.publish_time_ms,
    }
    if msg.tag:
        fields["MessageTag"] = msg.tag
    return fields


def json_notification(msg: PublishedMessage, subscription: str, subscriber: str) -> str:
    """NotifyContentFormat JSON; user properties are merged in as top-level keys, as FC shows them."""
    return json.dumps({**msg.user_properties, **_notification_fields(msg, subscription, subscriber)})


def xml_notification(msg: PublishedMessage, subscription: str, subscriber: str) -> str:
    inner = "".join(
        f"<{name}>{escape(str(value))}</{name}>"
        for name, value in _notification_fields(msg, subscription, subscriber).items()
    )
    return f'<?xml version="1.0" encoding="utf-8"?>\n<Notification xmlns="{XMLNS}">{inner}</Notification>'


def queue_body(msg: PublishedMessage, fmt: str, subscription: str, subscriber: str) -> str:
    """The queue message body a topic -> queue subscription of format ``fmt`` enqueues."""
    if fmt == "SIMPLIFIED":
        return msg.body
    if fmt == "JSON":
        return json_notification(msg, subscription, subscriber)
    return xml_notification(msg, subscription, subscriber)


def function_event(msg: PublishedMessage, fmt: str, subscription: str, subscriber: str) -> bytes:
    """The ``event`` bytes an FC MNS-topic trigger of format ``fmt`` hands the function."""
    if fmt == "JSON":
        return json_notification(msg, subscription, subscriber).encode()
    if msg.user_properties:
        return json.dumps({"body": msg.body, "attrs": msg.user_properties}).encode()
    return msg.body.encode()


@dataclass(frozen=True)
class QueueEventSource:
    """Where an EventBridge MNS-queue trigger says its events come from."""

    queue: str
    function: str
    trigger: str
    account_id: str
    region: str
    base64_body: bool


def queue_cloudevent(
    source: QueueEventSource, message_id: str, body: str, enqueue_ms: int, now_ms: int, request_id: str
) -> dict[str, Any]:
    name = f"MNS-{source.function}-{source.trigger}"
    return {
        "id": f"{request_id}-{message_id}",
        "source": name,
        "specversion": "1.0",
        "type": "mns:Queue:SendMessage",
        "datacontenttype": "application/json; charset=utf-8",
        "subject": f"acs:mns:{source.region}:{source.account_id}:queues/{source.queue}",
        "time": rfc3339_ms(enqueue_ms),
        "aliyunaccountid": source.account_id,
        "aliyunpublishtime": rfc3339_ms(now_ms),
        "aliyuneventbusname": name,
        "aliyunregionid": source.region,
        "data": {
            "requestId": request_id,
            "messageId": message_id,
            "messageBody": base64.b64encode(body.encode()).decode() if source.base64_body else body,
        },
    }
