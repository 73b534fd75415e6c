"""Helpers for the webhook tests: the seed, a signer, and calls in both FC entry shapes."""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from dbupgrade.cloudapi import RetryPolicy
from dbupgrade.webhook.app import WebhookApp
from dbupgrade.webhook.auth import standard_webhook_headers

from localcloud.server import RunningServer

TOPIC = "dbupgrade-notifications"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"functional-webhook-secret-7c1e").decode()
STATUS_TOKEN = "status-token-for-webhook-tests-51d0"
# Retries in milliseconds: the same code paths, a fast test run.
FAST_RETRY = RetryPolicy(base_seconds=0.002, cap_seconds=0.01, max_attempts=4, reserve_seconds=0)


def redis_entry(iid: str, version: str, status: str = "Normal") -> dict[str, Any]:
    return {
        "InstanceId": iid,
        "RegionId": "cn-hangzhou",
        "EngineVersion": version,
        "InstanceStatus": status,
        "ArchitectureType": "standard",
        "InstanceType": "Redis",
        "NodeType": "MASTER_SLAVE",
        "InstanceClass": "redis.shard.small.2.ce",
        "MaintainStartTime": "18:00Z",
        "MaintainEndTime": "19:00Z",
        "AutomaticBackup": "00:00Z",  # a fresh backup: the default backup gate submits at once
        "Tags": {"env": "test"},
    }


SEED: dict[str, Any] = {
    "redis": [
        redis_entry("r-bp1demo0000000001", "6.0"),
        redis_entry("r-bp1hook00000002", "6.0"),
        redis_entry("r-bp1attarget0001", "7.0"),
        redis_entry("r-bp1newer0000001", "7.0"),
    ],
    "mongodb": [
        {
            "DBInstanceId": "dds-bp1hook0000001",
            "RegionId": "cn-hangzhou",
            "EngineVersion": "4.4",
            "DBInstanceStatus": "Running",
            "DBInstanceType": "replicate",
            "MaintainStartTime": "18:00Z",
            "MaintainEndTime": "19:00Z",
            "AutomaticBackup": "00:00Z",
            "Tags": {},
        }
    ],
    "topics": [TOPIC],
    "queues": [],
    "upgrade_seconds": 600,  # instances stay "upgrading" for the whole test
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Hook:
    """A localcloud, a clean store, the webhook's environment, and ways to call it."""

    lc: RunningServer
    env: dict[str, str]
    replies: list[Reply] = field(default_factory=list)

    def app(self, **overrides: str) -> WebhookApp:
        return WebhookApp({**self.env, **overrides}, upgrader_options={"retry": FAST_RETRY})

    # -- the two FC entry shapes --

    def wsgi(
        self,
        app: WebhookApp,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/json",
            "wsgi.input": io.BytesIO(body),
            "fc.context": fc_context(),
        }
        for name, value in (headers or {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        seen: dict[str, Any] = {}

        def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
            seen["status"], seen["headers"] = status, dict(response_headers)

        text = b"".join(app(environ, start_response)).decode()
        reply = Reply(int(seen["status"].split()[0]), seen["headers"], text)
        self.replies.append(reply)
        return reply

    def fc3(
        self,
        app: WebhookApp,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        event = {
            "version": "v1",
            "rawPath": path,
            "body": body.decode(),
            "isBase64Encoded": False,
            "headers": {"content-type": "application/json", **(headers or {})},
            "queryParameters": {},
            "requestContext": {"http": {"method": method, "path": path}, "requestId": str(uuid.uuid4())},
        }
        result = app(json.dumps(event).encode(), fc_context(fc3=True))
        assert set(result) == {"statusCode", "headers", "body", "isBase64Encoded"}
        reply = Reply(result["statusCode"], result["headers"], result["body"])
        self.replies.append(reply)
        return reply

    # -- what reached the cloud --

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.lc.url + path, timeout=10) as reply:  # noqa: S310 -- localhost
            return json.loads(reply.read())

    def calls(self, action: str | None = None, **filters: str) -> list[dict[str, Any]]:
        params = {**({"action": action} if action else {}), **filters}
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return list(self.get(f"/_localcloud/calls?{query}")["calls"])

    def cloud_calls(self) -> list[dict[str, Any]]:
        """Calls to the database APIs (MNS publishes left out)."""
        return [c for c in self.calls() if c["product"] in ("r-kvstore", "dds")]

    def published(self) -> list[dict[str, Any]]:
        return [json.loads(c["params"]["MessageBody"]) for c in self.calls("PublishMessage", status="201")]

    def faults(self, rules: list[dict[str, Any]]) -> None:
        request = urllib.request.Request(  # noqa: S310 -- localhost
            self.lc.url + "/_localcloud/faults",
            json.dumps({"seed": 7, "rules": rules}).encode(),
            {"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 -- localhost
            pass


def fc_context(*, fc3: bool = False) -> SimpleNamespace:
    context = SimpleNamespace(
        request_id=str(uuid.uuid4()),
        region="cn-hangzhou",
        account_id="1234567890123456",
        function=SimpleNamespace(name="webhook", handler="index.handler", memory=512, timeout=60),
    )
    if not fc3:
        context.service = SimpleNamespace(name="dbupgrade")
        context.credentials = None
    return context


def sign(
    body: bytes, msg_id: str | None = None, *, secret: str = WEBHOOK_SECRET, age: float = 0
) -> dict[str, str]:
    moment = datetime.fromtimestamp(time.time() - age, tz=timezone.utc)
    return standard_webhook_headers(secret, body, msg_id or f"msg_{uuid.uuid4().hex}", moment)


def body_of(data: Any) -> bytes:
    return json.dumps(data).encode()
