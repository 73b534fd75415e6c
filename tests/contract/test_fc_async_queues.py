"""Contract: localcloud's FC runs each function's async invocations on that function's own queue, and
keeps each log line of concurrent instances whole (issue #15).

The official aliyun-fc2 client sends the invocations; the probe function runs in real worker processes.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import fc2
import pytest

from tests.conftest import AK_ID, AK_SECRET
from tests.contract.test_fc_invoke import DEMO_ACCOUNT, probe

SEED = {
    "accounts": [DEMO_ACCOUNT],
    "functions": [
        probe("busy", max_instances=2, timeout=30),
        probe("marker", max_async_retry_attempts=0),
        probe("talker", max_instances=3),
    ],
}
FLOOD = 20  # far more than "busy" has instances (and than one shared queue had threads: 16)
SLEEP_SECONDS = 5


@pytest.fixture
def client(make_localcloud: Any) -> tuple[Any, fc2.Client]:
    lc = make_localcloud(SEED)
    return lc, fc2.Client(endpoint=lc.url, accessKeyID=AK_ID, accessKeySecret=AK_SECRET, Timeout=30)


def send_async(client: fc2.Client, function: str, event: dict[str, Any]) -> None:
    client.invoke_function(
        "probe", function, payload=json.dumps(event).encode(), headers={"x-fc-invocation-type": "Async"}
    )


def ended(lc: Any, function: str) -> int:
    return sum(line.startswith("FC Invoke End RequestId: ") for line in lc.cloud.fc.logs("probe", function))


def test_a_flood_of_one_functions_async_invocations_does_not_hold_back_another_function(
    client: tuple[Any, fc2.Client], tmp_path: Path
) -> None:
    lc, fc = client
    for _ in range(FLOOD):
        send_async(fc, "busy", {"action": "sleep", "seconds": SLEEP_SECONDS})
    marker = tmp_path / "marker-ran"
    send_async(fc, "marker", {"action": "flaky", "counter": str(marker), "failures": 0})

    for _ in range(300):  # the marker's own queue runs it at once; give up after ~30 s
        if marker.exists():
            break
        time.sleep(0.1)

    assert marker.read_text() == "1"
    # It ran while the flood was still on its first invocations: it waited in no shared queue.
    assert ended(lc, "busy") == 0


def test_concurrent_instances_log_lines_stay_whole(
    client: tuple[Any, fc2.Client], capfd: pytest.CaptureFixture[str]
) -> None:
    lc, fc = client
    for _ in range(30):
        send_async(fc, "talker", {"action": "print"})
    assert lc.cloud.fc.wait_idle(timeout=60)

    lines = [line for line in capfd.readouterr().err.splitlines() if "[fc probe/talker]" in line]
    whole = re.compile(
        r"\[fc probe/talker\] (FC Invoke (Start|End) RequestId: [0-9a-f-]+|to (stdout|stderr) from the probe)"
    )
    assert len(lines) == 30 * 4
    assert [line for line in lines if not whole.fullmatch(line)] == []
