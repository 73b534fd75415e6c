"""Rollout (queue) function events: every shape that can carry upgrade messages to it.

- MNS topic trigger, JSON format: ``{"TopicOwner", "TopicName", "Message", "MessageId", ...}``
- MNS topic trigger, STREAM format: the raw body, or ``{"body": ..., "attrs": {...}}`` when the
  message has attributes. It carries no message id (the FC samples show the bare body, e.g.
  github.com/awesome-fc/code-example python/python3-mns-topic-trigger/README.md "Stream类型的测试事件",
  and devsapp/fc3's trigger-template event samples): the body's digest stands in for one, marked as
  a digest (``BODY_DIGEST_PREFIX``) so the use case remembers it only briefly
  (``BODY_DEDUPE_SECONDS``), as a hub-sha256 webhook's; a message id, where a shape has one, is
  always used instead
- EventBridge MNS-queue trigger: one CloudEvent, or a JSON array of them in batch mode, or the bare
  ``data`` (RawData push format); ``data.messageBody`` may be base64
- the scheduler's fan-out payload (``dbupgrade.triggers.fanout``), as the whole event (FC async
  invocation) or as a topic message body

Each message body is one upgrade request object (``{"instance_id", "target_version", ...}``).
``parse_rollout_event`` never raises: a bad message becomes a ``QueueMessage`` with ``error`` set,
so the handler can reject it alone and still run its neighbours.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal, NamedTuple

from dbupgrade.model import InvalidRequest
from dbupgrade.request import BODY_DIGEST_PREFIX
from dbupgrade.triggers._json import as_text, excerpt, loads, loads_body
from dbupgrade.triggers.fanout import FANOUT_KIND

Shape = Literal["mns-topic-json", "mns-topic-stream", "eventbridge", "async-fanout"]
MAX_BATCH = 10_000  # EventBridge "Batch Push Messages" upper bound


class QueueMessage(NamedTuple):
    """One message of a delivery: its request data, or the error that makes it unusable.

    A ``NamedTuple`` (immutable, compared by value): a frozen dataclass execs its generated methods
    at import, ~0.5-1 ms of every cold start (bench/NOTES.md).
    """

    shape: Shape
    message_id: str | None  # stable across redeliveries: joins the idempotency key
    raw: str  # an excerpt of the body as received, for the rejected outcome
    data: dict[str, Any] | None = None
    error: InvalidRequest | None = None
    rollout_id: str | None = None
    requeued: int = 0  # times the rollout function put it back on the rollout topic

    @property
    def ok(self) -> bool:
        return self.error is None and self.data is not None


def parse_rollout_event(event: bytes | bytearray | str) -> list[QueueMessage]:
    """Split a rollout delivery into its messages (at least one; bad ones carry ``error``)."""
    try:
        text = as_text(event, "event")
    except InvalidRequest as error:
        return [QueueMessage("mns-topic-stream", None, excerpt(repr(event[:64])), error=error)]
    if not text.strip():
        return [QueueMessage("mns-topic-stream", None, "", error=InvalidRequest("event", "is empty"))]
    try:
        envelope = loads(text, "event")
    except InvalidRequest:
        envelope = None  # not JSON at all: a STREAM body (possibly base64), judged as one message
    if isinstance(envelope, list):
        return _batch(envelope)
    if isinstance(envelope, dict):
        if envelope.get("kind") == FANOUT_KIND:
            return [_fanout(envelope, text)]
        if "specversion" in envelope or _is_raw_data(envelope):
            return [_eventbridge(envelope)]
        if "TopicOwner" in envelope or ("Message" in envelope and "MessageId" in envelope):
            return [_topic_json(envelope)]
        if "body" in envelope and set(envelope) <= {"body", "attrs"}:
            return [_stream(envelope["body"])]
    return [_stream(text)]


def _batch(items: list[Any]) -> list[QueueMessage]:
    if not items:
        return [QueueMessage("eventbridge", None, "[]", error=InvalidRequest("event", "is an empty batch"))]
    if len(items) > MAX_BATCH:
        error = InvalidRequest("event", f"has {len(items)} messages; at most {MAX_BATCH}")
        return [QueueMessage("eventbridge", None, "[...]", error=error)]
    messages = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            messages.append(_eventbridge(item))
        else:
            error = InvalidRequest(f"event[{index}]", "must be a CloudEvent object")
            messages.append(QueueMessage("eventbridge", None, excerpt(repr(item)), error=error))
    return messages


def _is_raw_data(envelope: dict[str, Any]) -> bool:
    return "messageBody" in envelope and "messageId" in envelope


def _eventbridge(cloud_event: dict[str, Any]) -> QueueMessage:
    data = cloud_event if _is_raw_data(cloud_event) else cloud_event.get("data")
    if not isinstance(data, dict):
        error = InvalidRequest("data", "must be an object with messageId and messageBody")
        event_id = _text_or_none(cloud_event.get("id"))
        return QueueMessage("eventbridge", event_id, excerpt(repr(data)), error=error)
    # The MNS message id survives redelivery; the CloudEvent id is per push.
    message_id = _text_or_none(data.get("messageId")) or _text_or_none(cloud_event.get("id"))
    return _with_body("eventbridge", message_id, data.get("messageBody"), "data.messageBody")


def _topic_json(envelope: dict[str, Any]) -> QueueMessage:
    message_id = _text_or_none(envelope.get("MessageId"))
    return _with_body("mns-topic-json", message_id, envelope.get("Message"), "Message")


def _stream(body: Any) -> QueueMessage:
    if not isinstance(body, str):
        error = InvalidRequest("body", "must be a string")
        return QueueMessage("mns-topic-stream", None, excerpt(repr(body)), error=error)
    # No message id in this shape: the digest recognises MNS's redeliveries of this body (its push
    # retries) and, being marked as one, is never kept as long as a real message id would be.
    digest = hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()
    return _with_body("mns-topic-stream", BODY_DIGEST_PREFIX + digest, body, "body")


def _fanout(envelope: dict[str, Any], text: str, shape: Shape = "async-fanout") -> QueueMessage:
    delivery_id = _text_or_none(envelope.get("delivery_id"))
    rollout_id = _text_or_none(envelope.get("rollout_id"))
    upgrade = envelope.get("upgrade")
    if delivery_id is None:
        error = InvalidRequest("delivery_id", "is required in a fan-out payload")
        return QueueMessage(shape, None, excerpt(text), error=error, rollout_id=rollout_id)
    if not isinstance(upgrade, dict):
        error = InvalidRequest("upgrade", "must be an object")
        return QueueMessage(shape, delivery_id, excerpt(text), error=error, rollout_id=rollout_id)
    requeued = envelope.get("requeued")
    return QueueMessage(
        shape,
        delivery_id,
        excerpt(text),
        data=dict(upgrade),
        rollout_id=rollout_id,
        requeued=requeued if isinstance(requeued, int) and not isinstance(requeued, bool) else 0,
    )


def _with_body(shape: Shape, message_id: str | None, body: Any, field: str) -> QueueMessage:
    if not isinstance(body, str):
        error = InvalidRequest(field, "must be a string holding a JSON object")
        return QueueMessage(shape, message_id, excerpt(repr(body)), error=error)
    try:
        data = loads_body(body, field)
    except InvalidRequest as error:
        return QueueMessage(shape, message_id, excerpt(body), error=error)
    if data.get("kind") == FANOUT_KIND:
        # The scheduler's topic fan-out: its delivery id, not the MNS message id, must key the
        # upgrade, because a re-fired timer publishes the same target again as a new message.
        return _fanout(data, body, shape)
    rollout_id = _text_or_none(data.get("rollout_id"))
    return QueueMessage(shape, message_id, excerpt(body), data=data, rollout_id=rollout_id)


def _text_or_none(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()[:256]
    return None
