"""`dbupgrade invoke` as an operator runs it against a deployed FC 2.0 function: here localcloud's FC
(DBUPGRADE_LOCAL), whose workers run the real rollout function on an embedded Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.conftest import AK_SECRET
from tests.functional.functions.conftest import Stack

EVENT = Path(__file__).resolve().parents[3] / "events" / "rollout-async-fanout.json"
INSTANCE = "r-bp1demo0000000004"  # the event's target


def dbupgrade_invoke(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "DBUPGRADE_FC_"))}
    return subprocess.run(
        [sys.executable, "-m", "dbupgrade.cli", "invoke", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_sync_invoke_prints_the_functions_reply(stack: Stack) -> None:
    result = dbupgrade_invoke("rollout", "--event", str(EVENT), DBUPGRADE_LOCAL=stack.lc.url)

    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert [(o["instance_id"], o["status"]) for o in reply["outcomes"]] == [(INSTANCE, "submitted")]
    assert stack.upgraded() == {INSTANCE: "7.0"}
    assert "request id " in result.stderr


def test_async_invoke_returns_once_fc_accepts_and_the_function_runs_later(stack: Stack) -> None:
    result = dbupgrade_invoke("rollout", "--event", str(EVENT), "--async", DBUPGRADE_LOCAL=stack.lc.url)

    assert result.returncode == 0, result.stderr
    accepted = json.loads(result.stdout)
    assert accepted["accepted"] is True and accepted["request_id"]
    stack.wait_for(lambda: stack.upgraded() == {INSTANCE: "7.0"})


def test_a_function_error_exits_non_zero_with_its_error_type(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(rollout={"DBUPGRADE_REDIS_URL": "redis://127.0.0.1:9/0"})  # nothing listens

    result = dbupgrade_invoke("rollout", "--event", str(EVENT), DBUPGRADE_LOCAL=stack.lc.url)

    assert result.returncode == 1
    assert "rollout failed: StoreUnavailable" in result.stderr
    # aliyun-fc2 logs failed requests with their signed headers; none of that reaches the operator
    assert "Authorization" not in result.stderr and AK_SECRET not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_fc_refusing_the_call_names_fc_s_error_code(stack: Stack) -> None:
    result = dbupgrade_invoke("nonexistent", "--event", str(EVENT), DBUPGRADE_LOCAL=stack.lc.url)

    assert result.returncode == 1
    assert "FC refused the call: FunctionNotFound" in result.stderr
    assert "Traceback" not in result.stderr


class BadGateway(BaseHTTPRequestHandler):
    """What sits in front of FC when something is wrong: an HTML 502, not FC's JSON error body."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        self.send_response(502)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


@pytest.fixture
def gateway() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), BadGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_non_json_error_page_is_reported_not_a_json_decode_crash(gateway: str) -> None:
    result = dbupgrade_invoke(
        "rollout",
        "--event",
        str(EVENT),
        DBUPGRADE_FC_ENDPOINT=gateway,
        ALIBABA_CLOUD_ACCESS_KEY_ID="LTAI5tTestAccessKey01",
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=AK_SECRET,
    )

    assert result.returncode == 1
    assert "not FC's (a proxy or gateway in the way?)" in result.stderr
    assert "502 Bad Gateway" in result.stderr
    assert "Traceback" not in result.stderr and AK_SECRET not in result.stderr
