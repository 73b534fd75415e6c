"""MNS XML API (2015-06-06) protocol layer: route, authenticate, parse, answer, render.

Routes (``server.py`` sends every path under ``/topics`` and ``/queues`` here)::

    POST   /topics/{T}/messages                        PublishMessage          201
    GET    /topics/{T}                                 GetTopicAttributes      200
    POST   /queues/{Q}/messages                        SendMessage | BatchSendMessage (<Messages>)  201
    GET    /queues/{Q}/messages[?waitseconds=N]        ReceiveMessage          200 | 404 MessageNotExist
    GET    /queues/{Q}/messages?numOfMessages=N[&...]  BatchReceiveMessage
    GET    /queues/{Q}/messages?peekonly=true[&numOfMessages=N]   PeekMessage | BatchPeekMessage
    DELETE /queues/{Q}/messages?ReceiptHandle=H        DeleteMessage           204
    DELETE /queues/{Q}/messages  <ReceiptHandles>      BatchDeleteMessage      204
    PUT    /queues/{Q}/messages?ReceiptHandle=H&VisibilityTimeout=S   ChangeMessageVisibility  200
    GET    /queues/{Q}                                 GetQueueAttributes      200

Queues and topics come from the seed; creating, deleting and listing them answer 501 NotImplemented.
Every reply carries ``x-mns-request-id``; every call is recorded in ``cloud.calls`` (product "mns").
Faults (``cloud.faults.decide("mns", action)``): throttle -> 429 TooManyRequests, error -> 500
InternalError, drop -> connection closed unanswered, lost_reply -> processed, then closed unanswered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from aiohttp import web

from localcloud.calls import Call
from localcloud.mns import auth, exceptions
from localcloud.mns.exceptions import XMLNS
from localcloud.mns.models import MnsBackend, QueueMessage, new_request_id

MAX_BATCH = 16
MAX_WAIT_SECONDS = 30
# Long polls also wake on this period: a delayed or hidden message becomes visible by time alone,
# and the emulated clock can jump forward under them.
POLL_RECHECK_SECONDS = 0.1
CONTENT_TYPE = "text/xml;charset=utf-8"


@dataclass
class Reply:
    status: int
    body: bytes = b""


@dataclass
class MnsRequest:
    """One parsed request: what its handler needs, and the params the call log records."""

    backend: MnsBackend
    name: str  # the topic or queue
    query: dict[str, str]  # raw query, keys lowercased, values percent-decoded only
    body: bytes
    account_id: str = ""
    params: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[MnsRequest], Awaitable[Reply]]


# ---- XML ------------------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_xml(body: bytes, root_name: str) -> ElementTree.Element:
    try:
        # The emulator's clients are local tools and tests; expat refuses entity-expansion bombs.
        root = ElementTree.fromstring(body)  # noqa: S314
    except ElementTree.ParseError as exc:
        raise exceptions.MalformedXML() from exc
    if _local(root.tag) != root_name:
        raise exceptions.InvalidArgument(f"The XML root element must be {root_name}, got {_local(root.tag)}.")
    return root


def _fields(element: ElementTree.Element) -> dict[str, str]:
    return {_local(child.tag): child.text or "" for child in element if len(child) == 0}


def _user_properties(element: ElementTree.Element) -> dict[str, str]:
    props: dict[str, str] = {}
    for holder in element:
        if _local(holder.tag) != "UserProperties":
            continue
        for prop in holder:
            entry = _fields(prop)
            if "Name" in entry:
                props[entry["Name"]] = entry.get("Value", "")
    return props


def _int_field(values: dict[str, str], name: str) -> int | None:
    raw = values.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise exceptions.InvalidArgument(f"The value of {name} is not an integer: {raw}") from exc


def _element(name: str, fields: dict[str, Any]) -> str:
    inner = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in fields.items())
    return f"<{name}>{inner}</{name}>"


def _document(name: str, fields: dict[str, Any]) -> bytes:
    inner = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in fields.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{name} xmlns="{XMLNS}">{inner}</{name}>'.encode()


def _list_document(name: str, item: str, entries: list[dict[str, Any]]) -> bytes:
    inner = "".join(_element(item, e) for e in entries)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{name} xmlns="{XMLNS}">{inner}</{name}>'.encode()


def _received(msg: QueueMessage) -> dict[str, Any]:
    # RecvMessageDecoder raises RespDataDamaged unless every one of these is present.
    return {
        "MessageId": msg.message_id,
        "ReceiptHandle": msg.receipt_handle,
        "MessageBodyMD5": msg.body_md5,
        "MessageBody": msg.body,
        "EnqueueTime": msg.enqueue_time,
        "NextVisibleTime": msg.next_visible_time,
        "FirstDequeueTime": msg.first_dequeue_time,
        "DequeueCount": msg.dequeue_count,
        "Priority": msg.priority,
    }


def _peeked(msg: QueueMessage) -> dict[str, Any]:
    return {k: v for k, v in _received(msg).items() if k not in ("ReceiptHandle", "NextVisibleTime")}


# ---- topics ---------------------------------------------------------------------------------------


async def publish_message(call: MnsRequest) -> Reply:
    values = _parse_xml(call.body, "Message")
    fields = _fields(values)
    tag = fields.get("MessageTag", "")
    call.params.update(MessageTag=tag, MessageBody=fields.get("MessageBody", ""))
    msg = call.backend.publish(
        call.name, fields.get("MessageBody", ""), tag, call.account_id, _user_properties(values)
    )
    call.params["MessageId"] = msg.message_id
    return Reply(201, _document("Message", {"MessageId": msg.message_id, "MessageBodyMD5": msg.body_md5}))


async def get_topic_attributes(call: MnsRequest) -> Reply:
    return Reply(200, _document("Topic", call.backend.topic(call.name).attributes()))


# ---- queues ---------------------------------------------------------------------------------------


def _send_one(call: MnsRequest, fields: dict[str, str]) -> QueueMessage:
    if "MessageBody" not in fields:
        raise exceptions.InvalidArgument("The MessageBody element is required.")
    return call.backend.send(
        call.name,
        fields["MessageBody"],
        call.account_id,
        _int_field(fields, "DelaySeconds"),
        _int_field(fields, "Priority"),
    )


async def send_message(call: MnsRequest) -> Reply:
    fields = _fields(_parse_xml(call.body, "Message"))
    call.params.update(MessageBody=fields.get("MessageBody", ""), DelaySeconds=fields.get("DelaySeconds"))
    msg = _send_one(call, fields)
    call.params["MessageId"] = msg.message_id
    return Reply(201, _document("Message", {"MessageId": msg.message_id, "MessageBodyMD5": msg.body_md5}))


async def batch_send_message(call: MnsRequest) -> Reply:
    entries = [_fields(m) for m in _parse_xml(call.body, "Messages") if _local(m.tag) == "Message"]
    if not 1 <= len(entries) <= MAX_BATCH:
        raise exceptions.InvalidArgument(f"The count of messages should be between 1 and {MAX_BATCH}.")
    call.params["MessageBodies"] = [e.get("MessageBody", "") for e in entries]
    call.backend.queue(call.name)
    for entry in entries:  # validate all before sending any: a refused batch leaves the queue untouched
        if "MessageBody" not in entry:
            raise exceptions.InvalidArgument("The MessageBody element is required.")
    sent = [_send_one(call, entry) for entry in entries]
    call.params["MessageIds"] = [m.message_id for m in sent]
    return Reply(
        201,
        _list_document(
            "Messages", "Message", [{"MessageId": m.message_id, "MessageBodyMD5": m.body_md5} for m in sent]
        ),
    )


def _query_int(call: MnsRequest, name: str, low: int, high: int) -> int | None:
    raw = call.query.get(name.lower())
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise exceptions.InvalidArgument(f"The value of {name} should between {low} and {high}.")
    return value


async def _receive(call: MnsRequest, count: int) -> list[QueueMessage]:
    queue = call.backend.queue(call.name)
    wait = _query_int(call, "waitseconds", 0, MAX_WAIT_SECONDS)
    wait = queue.polling_wait_seconds if wait is None else wait
    call.params["WaitSeconds"] = wait
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        messages = call.backend.receive(call.name, count)
        remaining = deadline - loop.time()
        if messages or remaining <= 0:
            break
        await call.backend.wait_for_message(call.name, min(remaining, POLL_RECHECK_SECONDS))
    if not messages:
        raise exceptions.MessageNotExist()
    call.params["MessageIds"] = [m.message_id for m in messages]
    return messages


async def receive_message(call: MnsRequest) -> Reply:
    [msg] = await _receive(call, 1)
    return Reply(200, _document("Message", _received(msg)))


async def batch_receive_message(call: MnsRequest) -> Reply:
    count = _query_int(call, "numOfMessages", 1, MAX_BATCH) or 1
    call.params["NumOfMessages"] = count
    messages = await _receive(call, count)
    return Reply(200, _list_document("Messages", "Message", [_received(m) for m in messages]))


async def peek_message(call: MnsRequest) -> Reply:
    count = _query_int(call, "numOfMessages", 1, MAX_BATCH)
    messages = call.backend.peek(call.name, count or 1)
    if not messages:
        raise exceptions.MessageNotExist()
    if count is None:
        return Reply(200, _document("Message", _peeked(messages[0])))
    return Reply(200, _list_document("Messages", "Message", [_peeked(m) for m in messages]))


def _receipt_handle(call: MnsRequest) -> str:
    handle = call.query.get("receipthandle")
    if not handle:
        raise exceptions.InvalidArgument("The ReceiptHandle parameter is required.")
    call.params["ReceiptHandle"] = handle
    return handle


async def delete_message(call: MnsRequest) -> Reply:
    call.backend.delete(call.name, _receipt_handle(call))
    return Reply(204)


async def batch_delete_message(call: MnsRequest) -> Reply:
    root = _parse_xml(call.body, "ReceiptHandles")
    handles = [h.text or "" for h in root if _local(h.tag) == "ReceiptHandle"]
    if not 1 <= len(handles) <= MAX_BATCH:
        raise exceptions.InvalidArgument(f"The count of receipt handles should be between 1 and {MAX_BATCH}.")
    call.params["ReceiptHandles"] = handles
    failures = []
    for handle in handles:
        try:
            call.backend.delete(call.name, handle)
        except (exceptions.MessageNotExist, exceptions.ReceiptHandleError) as exc:
            failures.append({"ErrorCode": exc.code, "ErrorMessage": exc.message, "ReceiptHandle": handle})
    if failures:  # the SDK's BatchDeleteMessageDecoder reads these <Errors> on a 404
        return Reply(404, _list_document("Errors", "Error", failures))
    return Reply(204)


async def change_message_visibility(call: MnsRequest) -> Reply:
    handle = _receipt_handle(call)
    timeout = _query_int(call, "VisibilityTimeout", 1, 43200)
    if timeout is None:
        raise exceptions.InvalidArgument("The VisibilityTimeout parameter is required.")
    call.params["VisibilityTimeout"] = timeout
    msg = call.backend.change_visibility(call.name, handle, timeout)
    return Reply(
        200,
        _document(
            "ChangeVisibility",
            {"ReceiptHandle": msg.receipt_handle, "NextVisibleTime": msg.next_visible_time},
        ),
    )


async def get_queue_attributes(call: MnsRequest) -> Reply:
    return Reply(200, _document("Queue", call.backend.queue_attributes(call.name)))


async def not_emulated(call: MnsRequest) -> Reply:
    raise exceptions.NotEmulated()


# ---- routing --------------------------------------------------------------------------------------


def _parse_query(raw_target: str) -> dict[str, str]:
    """Keys lowercased; values percent-decoded but '+' kept (the SDK sends receipt handles raw)."""
    query: dict[str, str] = {}
    for item in raw_target.partition("?")[2].split("&"):
        if item:
            key, _, value = item.partition("=")
            query[key.lower()] = unquote(value)
    return query


def _route(method: str, parts: list[str], query: dict[str, str], body: bytes) -> tuple[str, Handler]:
    kind = parts[0]
    if kind not in ("topics", "queues"):
        raise exceptions.InvalidRequestURL()
    if len(parts) == 3 and parts[2] == "messages":
        if kind == "topics" and method == "POST":
            return "PublishMessage", publish_message
        if kind == "queues":
            if method == "POST":
                # Markup inside a body is escaped, so a raw "<Messages" can only be the batch root.
                batch = b"<Messages" in body
                return ("BatchSendMessage", batch_send_message) if batch else ("SendMessage", send_message)
            if method == "GET" and query.get("peekonly", "").lower() == "true":
                return ("BatchPeekMessage" if "numofmessages" in query else "PeekMessage"), peek_message
            if method == "GET":
                if "numofmessages" in query:
                    return "BatchReceiveMessage", batch_receive_message
                return "ReceiveMessage", receive_message
            if method == "DELETE":
                if "receipthandle" in query:
                    return "DeleteMessage", delete_message
                return "BatchDeleteMessage", batch_delete_message
            if method == "PUT":
                return "ChangeMessageVisibility", change_message_visibility
    if len(parts) == 2 and method == "GET":
        if kind == "topics":
            return "GetTopicAttributes", get_topic_attributes
        return "GetQueueAttributes", get_queue_attributes
    if len(parts) <= 4 and method in ("GET", "PUT", "DELETE", "POST"):
        return f"{method} /{kind}", not_emulated
    raise exceptions.InvalidRequestURL()


def _region(host: str, default: str) -> str:
    """``{account}.mns.{region}[-internal].aliyuncs.com`` -> region (TopicURL, alibabacloud.com/help/doc-detail/34955.html); else the seed's."""
    parts = host.split(":", 1)[0].split(".")
    if len(parts) == 5 and parts[1] == "mns" and parts[3:] == ["aliyuncs", "com"]:
        return parts[2].removesuffix("-internal")
    return default


def _reply(status: int, body: bytes, request_id: str) -> web.Response:
    headers = {"x-mns-request-id": request_id}
    if not body:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, body=body, headers={**headers, "Content-Type": CONTENT_TYPE})


def _close_unanswered(request: web.Request) -> web.Response:
    """Close the connection without a reply: the client sees a reset, as after a network fault."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=204)


async def handle(cloud: Any, request: web.Request) -> web.StreamResponse:
    backend: MnsBackend = cloud.mns
    backend.attach(asyncio.get_running_loop())
    request_id = new_request_id()
    body = await request.read()
    raw_target = request.raw_path
    parts = [p for p in request.path.split("/") if p]
    query = _parse_query(raw_target)
    call = MnsRequest(backend, parts[1] if len(parts) > 1 else "", query, body)
    call.params["TopicName" if parts[0] == "topics" else "QueueName"] = call.name
    action, access_key_id, fault = "Unknown", None, None
    try:
        action, handler = _route(request.method, parts, query, body)
        decision = cloud.faults.decide("mns", action)
        fault = decision.name
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        if decision.drop:
            _record(cloud, action, call.params, 0, None, request_id, None, fault)
            return _close_unanswered(request)
        if decision.throttle:
            raise exceptions.TooManyRequests()
        if decision.error:
            raise exceptions.InternalError()
        credential = auth.authenticate(cloud.accounts, request.method, request.headers, raw_target, body)
        access_key_id, call.account_id = credential.access_key_id, credential.account_id
        auth.authorize(credential, action, parts[0], call.name, _region(request.host, backend.region))
        reply = await handler(call)
        status, payload, code = reply.status, reply.body, None
    except exceptions.MnsError as exc:
        host_id = f"{request.scheme}://{request.host}"  # named only by an error body
        status, payload, code = exc.status, exc.render(request_id, host_id), exc.code
    _record(cloud, action, call.params, status, code, request_id, access_key_id, fault)
    if fault == "lost_reply":
        return _close_unanswered(request)
    return _reply(status, payload, request_id)


def _record(
    cloud: Any,
    action: str,
    params: dict[str, Any],
    status: int,
    code: str | None,
    request_id: str,
    access_key_id: str | None,
    fault: str | None,
) -> None:
    cloud.calls.record(
        Call(
            product="mns",
            action=action,
            params=dict(params),
            status=status,
            code=code,
            at=cloud.clock.now(),
            request_id=request_id,
            access_key_id=access_key_id,
            fault=fault,
        )
    )
