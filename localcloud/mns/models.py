"""localcloud MNS state and rules: queues, topics, subscriptions and the pushes they make.

Seed keys (the queue attributes use the API's own names)::

    "topics": ["name", ...],
    "queues": ["name", {"QueueName": "q", "VisibilityTimeout": 30, "DelaySeconds": 0,
                        "PollingWaitSeconds": 0, "MaximumMessageSize": 65536}, ...],
    "subscriptions": [
      {"topic": "t", "queue": "q", "format": "SIMPLIFIED" | "JSON" | "XML"},
      {"topic": "t", "function": "service/function", "format": "STREAM" | "JSON",
       "strategy": "BACKOFF_RETRY" | "EXPONENTIAL_DECAY_RETRY"},
      {"queue": "q", "function": "service/function", "batch_size": 1, "batch_window_seconds": 0,
       "base64": false}]

Every subscription also takes ``"name"`` and, for topics, ``"filter_tag"``. Times are the emulated
clock's (``cloud.clock``) in milliseconds, so advancing it expires visibility timeouts, delays,
batch windows and push retry back-offs.

Pushes to functions run on the server's event loop (``attach``) and call
``await cloud.fc.invoke_async(service, function, payload) -> invocation id``; each attempt is a
``PushToFunction`` call in ``cloud.calls``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import random
import re
import secrets
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from localcloud.calls import Call
from localcloud.mns import exceptions, formats

DEFAULT_REGION = "cn-hangzhou"
DEFAULT_PRIORITY = 8  # 1 (highest) .. 16
MAX_MESSAGE_SIZE = 65536
TOPIC_RETENTION_SECONDS = 86400
MAX_TAG_LENGTH = 16  # the SDK refuses longer tags before sending; so does the service
TICK_SECONDS = 0.05  # how often pending pushes look at the (possibly advanced) emulated clock
RETRIES = {"BACKOFF_RETRY": 3, "EXPONENTIAL_DECAY_RETRY": 176}
_RECEIPT_HANDLE = re.compile(r"^[0-9]+-[0-9a-f]{24}$")


def body_md5(body: str) -> str:
    return hashlib.md5(body.encode()).hexdigest().upper()  # noqa: S324 - MNS's MessageBodyMD5


def new_message_id() -> str:
    return uuid.uuid4().hex.upper()


def new_request_id() -> str:
    return uuid.uuid4().hex[:24].upper()


@dataclass
class QueueMessage:
    message_id: str
    body: str
    body_md5: str
    enqueue_time: int
    next_visible_time: int
    priority: int = DEFAULT_PRIORITY
    first_dequeue_time: int = 0
    dequeue_count: int = 0
    receipt_handle: str = ""
    sender: str = ""  # the sending account, named in EventBridge events
    seq: int = 0  # arrival order among equal priorities


@dataclass
class Queue:
    name: str
    create_time: int  # epoch seconds
    visibility_timeout: int = 30
    delay_seconds: int = 0
    polling_wait_seconds: int = 0
    maximum_message_size: int = MAX_MESSAGE_SIZE
    message_retention_period: int = 345600
    messages: dict[str, QueueMessage] = field(default_factory=dict, init=False)
    handles: dict[str, str] = field(default_factory=dict, init=False)  # live receipt handle -> message id
    _seq: int = field(default=0, init=False)

    def send(self, body: str, delay: int | None, priority: int | None, sender: str, now: int) -> QueueMessage:
        if len(body.encode()) > self.maximum_message_size:
            raise exceptions.InvalidArgument(
                f"The MessageBody is larger than {self.maximum_message_size} bytes."
            )
        delay = self.delay_seconds if delay is None else delay
        if not 0 <= delay <= 604800:
            raise exceptions.InvalidArgument("The value of DelaySeconds should between 0 and 604800 seconds.")
        priority = DEFAULT_PRIORITY if priority is None else priority
        if not 1 <= priority <= 16:
            raise exceptions.InvalidArgument("The value of Priority should between 1 and 16.")
        self._seq += 1
        msg = QueueMessage(
            new_message_id(),
            body,
            body_md5(body),
            now,
            now + delay * 1000,
            priority,
            sender=sender,
            seq=self._seq,
        )
        self.messages[msg.message_id] = msg
        return msg

    def _expire(self, now: int) -> None:
        horizon = now - self.message_retention_period * 1000
        for msg in [m for m in self.messages.values() if m.enqueue_time < horizon]:
            self._remove(msg)

    def _remove(self, msg: QueueMessage) -> None:
        self.messages.pop(msg.message_id, None)
        self.handles.pop(msg.receipt_handle, None)

    def visible(self, now: int) -> list[QueueMessage]:
        self._expire(now)
        ready = [m for m in self.messages.values() if m.next_visible_time <= now]
        return sorted(ready, key=lambda m: (m.priority, m.seq))

    def receive(self, count: int, now: int) -> list[QueueMessage]:
        """Take up to ``count`` visible messages, hide them for the visibility timeout, mint new handles."""
        taken = []
        for msg in self.visible(now)[:count]:
            self.handles.pop(msg.receipt_handle, None)
            msg.dequeue_count += 1
            msg.first_dequeue_time = msg.first_dequeue_time or now
            msg.next_visible_time = now + self.visibility_timeout * 1000
            msg.receipt_handle = f"{msg.dequeue_count}-{secrets.token_hex(12)}"  # no + / = : sent unescaped
            self.handles[msg.receipt_handle] = msg.message_id
            taken.append(dataclasses.replace(msg))
        return taken

    def _by_handle(self, handle: str, now: int) -> QueueMessage:
        if not _RECEIPT_HANDLE.match(handle):
            raise exceptions.ReceiptHandleError(f"The receipt handle you provide is not valid: {handle}")
        msg = self.messages.get(self.handles.get(handle, ""))
        # A handle dies when its visibility timeout runs out: the message may now be someone else's.
        if msg is None or msg.next_visible_time <= now:
            raise exceptions.MessageNotExist()
        return msg

    def delete(self, handle: str, now: int) -> None:
        self._remove(self._by_handle(handle, now))

    def change_visibility(self, handle: str, timeout: int, now: int) -> QueueMessage:
        if not 1 <= timeout <= 43200:
            raise exceptions.InvalidArgument(
                "The value of VisibilityTimeout should between 1 and 43200 seconds."
            )
        msg = self._by_handle(handle, now)
        self.handles.pop(handle, None)
        msg.next_visible_time = now + timeout * 1000
        msg.receipt_handle = f"{msg.dequeue_count}-{secrets.token_hex(12)}"
        self.handles[msg.receipt_handle] = msg.message_id
        return dataclasses.replace(msg)

    def attributes(self, now: int) -> dict[str, Any]:
        self._expire(now)
        delayed = sum(1 for m in self.messages.values() if m.next_visible_time > now and not m.dequeue_count)
        inactive = sum(1 for m in self.messages.values() if m.next_visible_time > now and m.dequeue_count)
        return {
            "QueueName": self.name,
            "CreateTime": self.create_time,
            "LastModifyTime": self.create_time,
            "VisibilityTimeout": self.visibility_timeout,
            "MaximumMessageSize": self.maximum_message_size,
            "MessageRetentionPeriod": self.message_retention_period,
            "DelaySeconds": self.delay_seconds,
            "PollingWaitSeconds": self.polling_wait_seconds,
            "ActiveMessages": len(self.messages) - delayed - inactive,
            "InactiveMessages": inactive,
            "DelayMessages": delayed,
            "LoggingEnabled": "False",
        }


@dataclass(frozen=True)
class TopicToQueue:
    name: str
    topic: str
    queue: str
    format: str = "SIMPLIFIED"
    filter_tag: str = ""


@dataclass(frozen=True)
class TopicToFunction:
    name: str
    topic: str
    service: str
    function: str
    format: str = "STREAM"
    filter_tag: str = ""
    strategy: str = "BACKOFF_RETRY"


@dataclass(frozen=True)
class QueueToFunction:
    name: str
    queue: str
    service: str
    function: str
    batch_size: int = 1
    batch_window_seconds: float = 0.0
    base64_body: bool = False


Subscription = TopicToQueue | TopicToFunction | QueueToFunction


@dataclass
class Topic:
    name: str
    create_time: int
    message_count: int = 0
    subscriptions: list[TopicToQueue | TopicToFunction] = field(default_factory=list)

    def attributes(self) -> dict[str, Any]:
        return {
            "TopicName": self.name,
            "CreateTime": self.create_time,
            "LastModifyTime": self.create_time,
            "MaximumMessageSize": MAX_MESSAGE_SIZE,
            "MessageRetentionPeriod": TOPIC_RETENTION_SECONDS,
            "MessageCount": self.message_count,
            "LoggingEnabled": "False",
        }


@dataclass
class _TopicPush:
    """One published message on its way to one function, with its retry schedule."""

    subscription: TopicToFunction
    topic: str
    message_id: str
    payload: bytes
    due_ms: int
    attempt: int = 0


def _function_target(raw: dict[str, Any]) -> tuple[str, str]:
    service, sep, function = str(raw["function"]).partition("/")
    if not sep or not service or not function:
        raise ValueError(f"subscription {raw}: function must be 'service/function'")
    return service, function


def _parse_subscription(
    raw: dict[str, Any], topics: dict[str, Topic], queues: dict[str, Queue]
) -> Subscription:
    known = {
        "name",
        "topic",
        "queue",
        "function",
        "format",
        "filter_tag",
        "strategy",
        "batch_size",
        "batch_window_seconds",
        "base64",
    }
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"subscription {raw}: unknown keys {sorted(unknown)}")
    topic, queue, function = raw.get("topic"), raw.get("queue"), raw.get("function")
    if topic is not None and topic not in topics:
        raise ValueError(f"subscription {raw}: topic {topic!r} is not in the seed's topics")
    if queue is not None and queue not in queues:
        raise ValueError(f"subscription {raw}: queue {queue!r} is not in the seed's queues")
    if topic and queue and not function:
        fmt = raw.get("format", "SIMPLIFIED")
        if fmt not in formats.QUEUE_FORMATS:
            raise ValueError(f"subscription {raw}: format must be one of {formats.QUEUE_FORMATS}")
        return TopicToQueue(
            raw.get("name", f"{topic}-to-{queue}"), topic, queue, fmt, raw.get("filter_tag", "")
        )
    if topic and function and not queue:
        service, fn = _function_target(raw)
        fmt = raw.get("format", "STREAM")
        if fmt not in formats.FUNCTION_FORMATS:
            raise ValueError(f"subscription {raw}: format must be one of {formats.FUNCTION_FORMATS}")
        strategy = raw.get("strategy", "BACKOFF_RETRY")
        if strategy not in RETRIES:
            raise ValueError(f"subscription {raw}: strategy must be one of {sorted(RETRIES)}")
        name = raw.get("name", f"{topic}-to-{service}-{fn}")
        return TopicToFunction(name, topic, service, fn, fmt, raw.get("filter_tag", ""), strategy)
    if queue and function and not topic:
        service, fn = _function_target(raw)
        batch_size = int(raw.get("batch_size", 1))
        window = float(raw.get("batch_window_seconds", 0))
        if not 1 <= batch_size <= 10000 or not 0 <= window <= 15:
            raise ValueError(f"subscription {raw}: batch_size is 1..10000, batch_window_seconds 0..15")
        name = raw.get("name", f"{queue}-to-{service}-{fn}")
        return QueueToFunction(name, queue, service, fn, batch_size, window, bool(raw.get("base64", False)))
    raise ValueError(f"subscription {raw}: needs topic+queue, topic+function or queue+function")


class MnsBackend:
    """All MNS state of one localcloud. Thread-safe; pushes need ``attach(loop)`` first.

    Example::

        backend = MnsBackend.from_seed({"topics": ["t"], "queues": ["q"],
                                        "subscriptions": [{"topic": "t", "queue": "q"}]}, cloud)
        backend.publish("t", "hello", tag="greeting", owner="1234567890123456")
        [msg] = backend.receive("q", 1)
    """

    def __init__(
        self,
        cloud: Any,
        topics: dict[str, Topic],
        queues: dict[str, Queue],
        queue_triggers: list[QueueToFunction],
        region: str,
    ) -> None:
        self._cloud = cloud
        self.topics = topics
        self.queues = queues
        self.queue_triggers = queue_triggers
        self.region = region
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._topic_pushes: list[_TopicPush] = []
        self._busy_triggers: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    @classmethod
    def from_seed(cls, seed: dict[str, Any], cloud: Any) -> MnsBackend:
        created = int(cloud.clock.now())
        topics = {name: Topic(name, created) for name in seed.get("topics", [])}
        queues: dict[str, Queue] = {}
        for raw in seed.get("queues", []):
            spec = {"QueueName": raw} if isinstance(raw, str) else dict(raw)
            name = spec.pop("QueueName")
            attrs = {
                "VisibilityTimeout": "visibility_timeout",
                "DelaySeconds": "delay_seconds",
                "PollingWaitSeconds": "polling_wait_seconds",
                "MaximumMessageSize": "maximum_message_size",
                "MessageRetentionPeriod": "message_retention_period",
            }
            unknown = set(spec) - set(attrs)
            if unknown:
                raise ValueError(f"queue {name!r}: unknown attributes {sorted(unknown)}")
            queues[name] = Queue(name, created, **{attrs[k]: int(v) for k, v in spec.items()})
        queue_triggers = []
        for raw in seed.get("subscriptions", []):
            sub = _parse_subscription(raw, topics, queues)
            if isinstance(sub, QueueToFunction):
                queue_triggers.append(sub)
            else:
                topics[sub.topic].subscriptions.append(sub)
        return cls(cloud, topics, queues, queue_triggers, seed.get("region", DEFAULT_REGION))

    # ---- state --------------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self._cloud.clock.now() * 1000)

    def topic(self, name: str) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            raise exceptions.TopicNotExist(f"The topic you provided does not exist: {name}")
        return topic

    def queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            raise exceptions.QueueNotExist(f"The queue you provided does not exist: {name}")
        return queue

    def publish(
        self, topic_name: str, body: str, tag: str, owner: str, user_properties: dict[str, str] | None = None
    ) -> formats.PublishedMessage:
        """Publish to a topic: copy into subscribed queues now, schedule pushes to functions."""
        if len(body.encode()) > MAX_MESSAGE_SIZE:
            raise exceptions.InvalidArgument(f"The MessageBody is larger than {MAX_MESSAGE_SIZE} bytes.")
        if len(tag) > MAX_TAG_LENGTH:
            raise exceptions.InvalidArgument(
                f"The length of MessageTag should be between 1 and {MAX_TAG_LENGTH}."
            )
        with self._lock:
            topic = self.topic(topic_name)
            now = self.now_ms()
            msg = formats.PublishedMessage(
                new_message_id(),
                topic_name,
                owner,
                body,
                body_md5(body),
                tag,
                now,
                dict(user_properties or {}),
            )
            topic.message_count += 1
            delivered = False
            for sub in topic.subscriptions:
                if sub.filter_tag and sub.filter_tag != tag:
                    continue
                delivered = True
                if isinstance(sub, TopicToQueue):
                    queue_body = formats.queue_body(msg, sub.format, sub.name, owner)
                    self.queue(sub.queue).send(queue_body, 0, None, owner, now)
                    self._signal(sub.queue)
                else:
                    payload = formats.function_event(msg, sub.format, sub.name, owner)
                    self._topic_pushes.append(_TopicPush(sub, topic_name, msg.message_id, payload, now))
        if delivered:  # a message no subscription took leaves nothing for a tick to push
            self._kick()
        return msg

    def send(
        self, queue_name: str, body: str, sender: str, delay: int | None = None, priority: int | None = None
    ) -> QueueMessage:
        with self._lock:
            msg = self.queue(queue_name).send(body, delay, priority, sender, self.now_ms())
        self._signal(queue_name)
        self._kick()
        return dataclasses.replace(msg)

    def receive(self, queue_name: str, count: int) -> list[QueueMessage]:
        with self._lock:
            return self.queue(queue_name).receive(count, self.now_ms())

    def peek(self, queue_name: str, count: int) -> list[QueueMessage]:
        with self._lock:
            return [dataclasses.replace(m) for m in self.queue(queue_name).visible(self.now_ms())[:count]]

    def delete(self, queue_name: str, receipt_handle: str) -> None:
        with self._lock:
            self.queue(queue_name).delete(receipt_handle, self.now_ms())

    def change_visibility(self, queue_name: str, receipt_handle: str, timeout: int) -> QueueMessage:
        with self._lock:
            return self.queue(queue_name).change_visibility(receipt_handle, timeout, self.now_ms())

    def queue_attributes(self, queue_name: str) -> dict[str, Any]:
        with self._lock:
            return self.queue(queue_name).attributes(self.now_ms())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "queues": {
                    name: [dataclasses.asdict(m) for m in q.messages.values()]
                    for name, q in self.queues.items()
                },
                "topics": {name: {"message_count": t.message_count} for name, t in self.topics.items()},
            }

    def restore(self, state: dict[str, Any]) -> None:
        with self._lock:
            for name, messages in state.get("queues", {}).items():
                queue = self.queues.get(name)
                if queue is None:
                    continue
                queue.messages = {m["message_id"]: QueueMessage(**m) for m in messages}
                queue.handles = {
                    m.receipt_handle: m.message_id for m in queue.messages.values() if m.receipt_handle
                }
                queue._seq = max((m.seq for m in queue.messages.values()), default=0)
            for name, topic_state in state.get("topics", {}).items():
                if name in self.topics:
                    self.topics[name].message_count = int(topic_state.get("message_count", 0))
        self._kick()

    def close(self) -> None:
        if self._loop is not None and self._tick_handle is not None:
            self._loop.call_soon_threadsafe(self._tick_handle.cancel)

    # ---- long polling -------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Adopt the server's event loop (called on every MNS request; the first one counts)."""
        if self._loop is None:
            self._loop = loop
            self._kick()

    async def wait_for_message(self, queue_name: str, timeout: float) -> None:
        """Return when a message is sent to the queue, or after ``timeout`` seconds."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(queue_name, set())
        waiters.add(waiter)
        try:
            await asyncio.wait([waiter], timeout=timeout)
        finally:
            waiters.discard(waiter)

    def _in_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _call_in_loop(self, callback: Any, *args: Any) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        if self._in_loop():
            callback(*args)
        else:
            self._loop.call_soon_threadsafe(callback, *args)

    def _signal(self, queue_name: str) -> None:
        self._call_in_loop(self._wake_waiters, queue_name)

    def _wake_waiters(self, queue_name: str) -> None:
        for waiter in self._waiters.get(queue_name, ()):
            if not waiter.done():
                waiter.set_result(None)

    # ---- pushes to functions ------------------------------------------------------------------

    def _kick(self) -> None:
        self._call_in_loop(self._schedule_tick, 0.0)

    def _schedule_tick(self, delay: float) -> None:
        if self._loop is None or (self._tick_handle is not None and delay > 0):
            return
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._tick_handle = self._loop.call_later(delay, self._tick)

    def _has_work(self) -> bool:
        return bool(self._topic_pushes or self._tasks) or any(
            self.queues[t.queue].messages for t in self.queue_triggers
        )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _tick(self) -> None:
        self._tick_handle = None
        with self._lock:
            now = self.now_ms()
            due = [p for p in self._topic_pushes if p.due_ms <= now]
            self._topic_pushes = [p for p in self._topic_pushes if p.due_ms > now]
            batches = []
            for trigger in self.queue_triggers:
                if trigger.name not in self._busy_triggers:
                    batch = self._take_batch(trigger, now)
                    if batch:
                        self._busy_triggers.add(trigger.name)
                        batches.append((trigger, batch))
        for push in due:
            self._spawn(self._push_topic_message(push))
        for trigger, batch in batches:
            self._spawn(self._push_queue_batch(trigger, batch))
        if self._has_work():
            self._schedule_tick(TICK_SECONDS)

    def _take_batch(self, trigger: QueueToFunction, now: int) -> list[QueueMessage]:
        """Receive a batch once it is full or its oldest message has waited the batch window."""
        queue = self.queues[trigger.queue]
        visible = queue.visible(now)
        if not visible:
            return []
        waited_ms = now - min(m.next_visible_time for m in visible)
        if len(visible) < trigger.batch_size and waited_ms < trigger.batch_window_seconds * 1000:
            return []
        return queue.receive(trigger.batch_size, now)

    async def _invoke(
        self, action: str, params: dict[str, Any], service: str, function: str, payload: bytes
    ) -> bool:
        """Push ``payload`` to a function (FC async invocation); record the attempt; True if accepted."""
        decision = self._cloud.faults.decide("mns", action)
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        invocation_id, status, code = None, 202, None
        if decision.name is not None:
            status, code = (429, "TooManyRequests") if decision.throttle else (500, "InternalError")
        else:
            try:
                invocation_id = await self._cloud.fc.invoke_async(service, function, payload)
            except Exception as exc:  # any refusal by FC is a failed delivery, retried per strategy
                status = getattr(exc, "status", 500)
                code = getattr(exc, "code", None) or type(exc).__name__
        self._cloud.calls.record(
            Call(
                product="mns",
                action=action,
                params={
                    **params,
                    "Function": f"{service}/{function}",
                    "Payload": payload.decode(errors="replace"),
                },
                status=status,
                code=code,
                at=self._cloud.clock.now(),
                request_id=new_request_id(),
                fault=decision.name,
                extra={"invocation_id": invocation_id} if invocation_id else {},
            )
        )
        return code is None

    async def _push_topic_message(self, push: _TopicPush) -> None:
        sub = push.subscription
        params = {
            "TopicName": push.topic,
            "SubscriptionName": sub.name,
            "MessageId": push.message_id,
            "Attempt": push.attempt + 1,
        }
        delivered = await self._invoke("PushToFunction", params, sub.service, sub.function, push.payload)
        if not delivered and push.attempt < RETRIES[sub.strategy]:
            push.attempt += 1
            if sub.strategy == "BACKOFF_RETRY":
                backoff = random.Random(f"{push.message_id}:{push.attempt}").uniform(10, 20)
            else:
                backoff = min(2.0**push.attempt, 512.0)
            push.due_ms = self.now_ms() + int(backoff * 1000)
            with self._lock:
                self._topic_pushes.append(push)
        self._kick()

    async def _push_queue_batch(self, trigger: QueueToFunction, batch: list[QueueMessage]) -> None:
        """EventBridge-style: delete the batch once the function accepted it, else let it reappear."""
        request_id = new_request_id()
        source = formats.QueueEventSource(
            trigger.queue, trigger.function, trigger.name, batch[0].sender, self.region, trigger.base64_body
        )
        now = self.now_ms()
        events = [
            formats.queue_cloudevent(source, m.message_id, m.body, m.enqueue_time, now, request_id)
            for m in batch
        ]
        document: Any = events if trigger.batch_size > 1 else events[0]
        params = {
            "QueueName": trigger.queue,
            "SubscriptionName": trigger.name,
            "MessageIds": [m.message_id for m in batch],
        }
        try:
            if await self._invoke(
                "PushToFunction", params, trigger.service, trigger.function, json.dumps(document).encode()
            ):
                with self._lock:
                    for msg in batch:
                        # If its visibility ran out meanwhile, it is visible again and will be pushed again.
                        with contextlib.suppress(exceptions.MessageNotExist):
                            self.queues[trigger.queue].delete(msg.receipt_handle, self.now_ms())
        finally:
            self._busy_triggers.discard(trigger.name)
            self._kick()
