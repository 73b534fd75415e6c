"""One MNS topic message per outcome: notification message v1, tagged with the outcome status.

MNS caps MessageTag at 16 characters (the SDK refuses longer tags before sending), and event
names like ``upgrade.in_progress`` are longer, so the tag is the event name without its
``upgrade.`` prefix (``submitted``, ``in_progress``...): subscriptions filter on that, and the body's
``event`` keeps the full name.

Besides the outcomes (and a rollout's ``rollout.completed`` / ``rollout.halted`` summary), a campaign
publishes one ``campaign.digest`` a day (``dbupgrade.rollouts.campaign``: its burn-down; tag
``campaign.digest``), additive to message v1.

A publish is tried a few times; when it still fails the message goes to the store's outbox and
``Upgrader.drain_outbox`` delivers it later (the tracker drains it every tick), so an outcome is never
lost and never notified twice by the same run.

``publish`` answers a ``Delivery``: ``DELIVERED``; ``RETRY`` (throttled, 5xx, the network, a
credential or permission problem an operator fixes: the message is fine, try it later); or
``REFUSED``, a message MNS will never accept however often it is sent (``REFUSED_CODES``, or the
SDK refusing its parameters before sending). A refused outbox entry is set aside (the store's
dead-letter list, logged and counted) so it never blocks the entries behind it. Only
``DELIVERED`` is truthy, so ``if not notifier.publish(...)`` keeps meaning "park it".

Every message fits MNS's limit before it is sent (``bounded``): a topic takes at most 64 KiB
(``MaximumMessageSize`` 1024-65536 bytes, default 65536: ROS ``Aliyun::Serverless::MNSTopic``,
alibabacloud.com/help/doc-detail/187669.htm; "How do I increase the maximum size of a message in
MNS": "ranges from 1,024 bytes (1 KB) to 65,536 bytes (64 KB)"). Strings are cut to
``FIELD_CHARS`` (``STRING_CHARS`` for the rest), lists to ``LIST_ITEMS`` items with a
``<name>_omitted`` count beside them (a rollout summary's failures), and what still does not fit
keeps only the envelope, with ``truncated: true``.

Example::

    notifier = Notifier(config)
    notifier.publish(outcome.notification(), credentials=creds, context=ctx)   # Delivery.DELIVERED

``publish_many`` publishes a batch (the tracker's transitions of a chunk) on an executor's threads,
logging only the failures (the caller sums the batch up in one line), and stops starting publishes
at the first that must wait (MNS is down: the rest would fail alike) or at a time limit: what it did
not try is ``None``, left for the outbox's drain.
"""

from __future__ import annotations

import enum
import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from dbupgrade.config import Config
from dbupgrade.context import Credentials, InvocationContext
from dbupgrade.logging import logger, mask, register_secret

PUBLISH_ATTEMPTS = 3
# Publishes under way at once in ``publish_many`` (each waits on MNS's round trip): the tracker's
# pool has as many threads (``tracker.CONCLUDE_CONCURRENCY``).
PUBLISHERS = 8
MESSAGE_TAG_MAX = 16
PUBLISH_PAUSE_SECONDS = 0.1
CONNECTION_TIMEOUT_SECONDS = 5  # the SDK's default is 60 s, longer than we can wait inside FC
MESSAGE_BYTES_MAX = 65536  # the module docstring gives the sources
# Per-field caps: a person reads the message; ids and codes are short in every real case.
FIELD_CHARS = {
    "message": 2000,
    "rollback": 600,
    "reason": 128,
    "code": 128,
    "field": 128,
}  # rollback: runbook.ROLLBACK_MAX
STRING_CHARS = 256  # ids (instance, ticket, rollout, correlation, request), versions, regions...
LIST_ITEMS = 50
ENVELOPE = ("version", "event", "request_id", "instance_id", "rollout_id", "ticket_id", "status", "at")
# 400 codes a resend cannot fix (MNS error codes, alibabacloud.com/help/en/mns/error-codes:
# InvalidArgument "The value of Element must be between Low and High ... bytes" is how a body over
# MaximumMessageSize is refused; MalformedXML a body MNS cannot parse). Credential and permission
# codes (AccessDenied, InvalidAccessKeyId...) are an operator's to fix: those messages wait.
REFUSED_CODES = frozenset({"InvalidArgument", "MalformedXML"})


class Delivery(enum.Enum):
    """What became of one publish."""

    DELIVERED = "delivered"
    RETRY = "retry"  # the message is fine; MNS or the way to it is not, for now
    REFUSED = "refused"  # MNS will never take this message: set it aside, do not resend it

    def __bool__(self) -> bool:
        return self is Delivery.DELIVERED


def message_tag(event: str) -> str:
    """The MessageTag of an event: ``upgrade.submitted`` -> ``submitted`` (MNS allows 16 characters)."""
    return event.removeprefix("upgrade.")[:MESSAGE_TAG_MAX]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


class _Caps:
    """One try at fitting a message: list length and long-text length, smaller at each try."""

    def __init__(self, items: int, text_chars: int) -> None:
        self.items, self.text_chars = items, text_chars

    def value(self, name: str, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return _cut(value, min(FIELD_CHARS.get(name, STRING_CHARS), max(self.text_chars, STRING_CHARS)))
        if depth >= 4:  # notifications are flat or one level deep; anything deeper is not ours
            return None if isinstance(value, (dict, list)) else value
        if isinstance(value, dict):
            return self.fields(value, depth + 1)
        if isinstance(value, list):
            return [self.value(name, item, depth + 1) for item in value[: self.items]]
        return value

    def fields(self, fields: dict[str, Any], depth: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in list(fields.items())[: LIST_ITEMS * 2]:
            name = _cut(str(key), 64)
            out[name] = self.value(name, value, depth)
            if isinstance(value, list) and len(value) > self.items:
                out[f"{name}_omitted"] = len(value) - self.items
        return out


# Tried in turn until the message fits: a rollout summary of 50 failures with long messages
# keeps fewer failures and shorter messages rather than none.
_TRIES = (_Caps(LIST_ITEMS, FIELD_CHARS["message"]), _Caps(20, 500), _Caps(10, 256), _Caps(3, 256))


# ``json.dumps``'s own encoder for these arguments, built once instead of per message.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def encode(message: dict[str, Any]) -> str:
    """The body as published: compact JSON, ASCII only (so characters and bytes are one count)."""
    return _ENCODER.encode(message)


def bounded(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` cut to fit MNS's 64 KiB (the module docstring says how).

    >>> long = bounded({"event": "rollout.halted", "failures": [{"instance_id": "r-1"}] * 80})
    >>> len(long["failures"]), long["failures_omitted"]
    (50, 30)
    """
    return _fitted(message)[0]


def _within_caps(message: dict[str, Any]) -> bool:
    """Whether the first try would keep ``message`` as it is: flat (no list or object values), few
    fields, short keys, every string within its cap. An outcome's notification nearly always is;
    telling it costs a look at each field, not the copy the caps build."""
    if len(message) > LIST_ITEMS * 2:
        return False
    for key, value in message.items():
        if isinstance(value, str):
            if len(value) > _FIRST_CHARS.get(key, _FIRST_STRING_CHARS):
                return False
        elif isinstance(value, (dict, list)) or not isinstance(key, str) or len(key) > 64:
            return False
    return True


# The first try's cap of each string field (``_Caps.value``'s), worked out once.
_FIRST_STRING_CHARS = min(STRING_CHARS, max(_TRIES[0].text_chars, STRING_CHARS))
_FIRST_CHARS = {
    name: min(chars, max(_TRIES[0].text_chars, STRING_CHARS)) for name, chars in FIELD_CHARS.items()
}


def _fitted(message: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``bounded(message)`` and its body as published (encoded once: a publish needs both)."""
    if _within_caps(message):
        body = encode(message)
        if len(body) <= MESSAGE_BYTES_MAX:
            return dict(message), body
    for caps in _TRIES:
        fitted = caps.fields(message)
        body = encode(fitted)
        if len(body) <= MESSAGE_BYTES_MAX:
            return fitted, body
    # Only a pathological message gets here (a hundred fields at their caps): keep what
    # identifies it, so the subscriber still learns that something happened and to what.
    envelope = {**{k: fitted.get(k) for k in ENVELOPE if k in fitted}, "truncated": True}
    return envelope, encode(envelope)


def _classify(exc: Exception) -> Delivery:
    from mns.mns_exception import MNSClientParameterException, MNSServerException

    if isinstance(exc, MNSClientParameterException):
        return Delivery.REFUSED  # the SDK refused the message itself: resending cannot help
    if isinstance(exc, MNSServerException) and getattr(exc, "type", None) in REFUSED_CODES:
        return Delivery.REFUSED
    return Delivery.RETRY


class Notifier:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._topics: dict[tuple[int, str, str, str], Any] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.config.topic)

    def endpoint(self, context: InvocationContext | None) -> str | None:
        """DBUPGRADE_MNS_ENDPOINT, else derived from the FC context's account and region."""
        if self.config.mns_endpoint:
            return self.config.mns_endpoint
        if context is not None and context.account_id and context.region:
            return f"https://{context.account_id}.mns.{context.region}.aliyuncs.com"
        return None

    def _topic(self, endpoint: str, credentials: Credentials) -> Any:
        # One client per thread: the MNS SDK sends every request of a client over one shared
        # HTTPConnection, so concurrent publishes (the local server's thread pool, FC instance
        # concurrency) interleave on it, fail, and the retry publishes a message twice.
        # The topic object is kept with it: it only names the topic, and it is built once, not per message.
        key = (threading.get_ident(), endpoint, credentials.access_key_id, credentials.security_token or "")
        with self._lock:
            topic = self._topics.get(key)
            if topic is None:
                # The client and topic modules only, as ``mns.account.Account`` builds them: the
                # account module also imports the queue API, whose ``deprecated``/``wrapt``
                # decorators cost ~20 ms of every cold start for nothing a publish uses.
                from mns.mns_client import MNSClient

                register_secret(credentials.access_key_secret)
                register_secret(credentials.security_token)
                client = MNSClient(
                    endpoint,
                    credentials.access_key_id,
                    credentials.access_key_secret,
                    security_token=credentials.security_token or "",
                )
                client.set_connection_timeout(CONNECTION_TIMEOUT_SECONDS)
                from mns.topic import Topic

                topic = Topic(self.config.topic, client)
                if len(self._topics) > 16:  # STS tokens rotate; forget the stale ones
                    self._topics.pop(next(iter(self._topics)))
                self._topics[key] = topic
        return topic

    def publish(
        self, message: dict[str, Any], *, credentials: Credentials | None, context: InvocationContext | None
    ) -> Delivery:
        """Publish ``message`` (notification v1), bounded to fit; ``DELIVERED`` also when no topic is set."""
        return self._publish(message, credentials, context, announce=True)

    def publish_many(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        credentials: Credentials | None,
        context: InvocationContext | None,
        pool: Executor,
        until: float,
    ) -> list[Delivery | None]:
        """``publish`` of each on ``pool``'s threads (MNS's round trips overlap), without a log line
        per delivered message; each one's ``Delivery``, or ``None`` where it was not tried: a publish
        before it answered ``RETRY`` (the others would wait alike), or ``until`` (time.monotonic())
        had passed when its turn came."""
        stop = threading.Event()
        deliveries: list[Delivery | None] = [None] * len(messages)
        turns, taking = iter(range(len(messages))), threading.Lock()

        # A few publishers take the messages in order, one at a time, rather than a task (a future,
        # a queue hand-off, a wake-up of the caller) per message: ~thousands a tick at fleet scale.
        def publisher() -> None:
            while True:
                with taking:
                    turn = next(turns, None)
                if turn is None or stop.is_set() or time.monotonic() >= until:
                    return
                delivery = self._publish(messages[turn], credentials, context, announce=False)
                deliveries[turn] = delivery
                if delivery is Delivery.RETRY:
                    stop.set()

        for running in [pool.submit(publisher) for _ in range(min(PUBLISHERS, len(messages)))]:
            running.result()
        return deliveries

    def _publish(
        self,
        message: dict[str, Any],
        credentials: Credentials | None,
        context: InvocationContext | None,
        *,
        announce: bool,
    ) -> Delivery:
        if not self.enabled:
            return Delivery.DELIVERED
        event = str(message.get("event"))[:64]
        endpoint = self.endpoint(context)
        if endpoint is None or credentials is None:
            logger.warning("cannot publish: no MNS endpoint or credentials", extra={"event": event})
            return Delivery.RETRY
        from mns.topic import TopicMessage

        # Masked like a log line: an outcome's message may quote an error that quoted a secret.
        body = mask(_fitted(message)[1])
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                reply = self._topic(endpoint, credentials).publish_message(
                    TopicMessage(body, message_tag(event))
                )
                if announce:
                    logger.info(
                        "notification published",
                        extra={"event": event, "message_id": getattr(reply, "message_id", None)},
                    )
                return Delivery.DELIVERED
            except Exception as exc:  # the MNS SDK raises its own and socket exceptions alike
                verdict = _classify(exc)
                logger.warning(
                    "publish failed",
                    extra={
                        "event": event,
                        "attempt": attempt,
                        "verdict": verdict.value,
                        "error": mask(str(exc))[:300],
                    },
                )
                if verdict is Delivery.REFUSED:
                    return verdict
                if attempt < PUBLISH_ATTEMPTS:
                    time.sleep(PUBLISH_PAUSE_SECONDS * attempt)
        return Delivery.RETRY
