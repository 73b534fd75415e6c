"""The deployed tracker: functions/tracker/index.py on FC's Timer event, and its place in template.yml."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.functional.tracker.conftest import UPGRADE_SECONDS, TrackBench

ROOT = Path(__file__).resolve().parents[3]


def load_handler_module() -> ModuleType:
    """A fresh import of the function's index.py (its warm Tracker is per module)."""
    spec = importlib.util.spec_from_file_location(
        "tracker_index", ROOT / "functions" / "tracker" / "index.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_timer_firing_on_the_emulated_clock_completes_an_upgrade(
    track: TrackBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in track.env.items():
        monkeypatch.setenv(name, value)
    index = load_handler_module()
    track.upgrade("r-bp1trackdone0001", "7.0")
    track.advance(UPGRADE_SECONDS + 60)
    # As localcloud's timers fire it: triggerTime is the emulated time, hours past the wall clock.
    event = {
        "triggerTime": track.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "triggerName": "every-minute",
        "payload": "",
    }

    reply = json.loads(index.handler(json.dumps(event).encode(), None))

    assert reply["transitions"] == [
        {"instance_id": "r-bp1trackdone0001", "status": "completed", "reason": "version_verified"}
    ]
    assert reply["rollouts"] == [] and reply["drained"] == 0
    assert track.events("r-bp1trackdone0001") == ["upgrade.submitted", "upgrade.completed"]


def test_the_sample_event_and_a_hand_invocation_are_accepted(
    track: TrackBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in track.env.items():
        monkeypatch.setenv(name, value)
    index = load_handler_module()

    for event in ((ROOT / "events" / "tracker.json").read_bytes(), b"", b"not json"):
        assert json.loads(index.handler(event, None))["checked"] == 0


def test_the_template_fires_the_tracker_every_minute() -> None:
    template = yaml.safe_load((ROOT / "template.yml").read_text())
    function = template["Resources"]["dbupgrade-tracker"]["tracker"]
    [timer] = function["Events"].values()
    assert timer["Type"] == "Timer"
    assert timer["Properties"]["CronExpression"] == "@every 1m" and timer["Properties"]["Enable"] is True
    # Every run of the use case gets the same env: the tracker publishes and advances rollouts too.
    scheduled = template["Resources"]["dbupgrade-scheduled"]["scheduled"]["Properties"][
        "EnvironmentVariables"
    ]
    assert function["Properties"]["EnvironmentVariables"] == scheduled
    # A lost tick is not retried: the next one a minute later checks everything again.
    assert function["Properties"]["AsyncConfiguration"]["MaxAsyncRetryAttempts"] == 0
