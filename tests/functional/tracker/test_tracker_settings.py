"""The tracker's settings and time arithmetic: a bad value fails naming its variable; windows may wrap."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from dbupgrade.errors import ConfigError
from dbupgrade.tracker import TrackerSettings, tick_time, window_opening


def utc(hour: int, minute: int = 0, day: int = 23) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=timezone.utc)


def test_stuck_after_defaults_and_overrides() -> None:
    assert TrackerSettings.from_env({}).stuck_after == {"redis": 7200, "mongodb": 21600}
    assert TrackerSettings.from_env({"DBUPGRADE_STUCK_AFTER": '{"mongodb": 3600}'}).stuck_after == {
        "redis": 7200,
        "mongodb": 3600,
    }


@pytest.mark.parametrize(
    "text", ["7200", '{"mysql": 60}', '{"redis": 0}', '{"redis": "2h"}', '{"redis": true}', "{"]
)
def test_a_bad_stuck_after_fails_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError) as error:
        TrackerSettings.from_env({"DBUPGRADE_STUCK_AFTER": text})
    assert "DBUPGRADE_STUCK_AFTER" in str(error.value)


@pytest.mark.parametrize(
    ("moment", "start", "end", "opening"),
    [
        (utc(10), "18:00Z", "19:00Z", utc(18)),  # later today
        (utc(18, 30), "18:00Z", "19:00Z", utc(18, 30)),  # inside: now
        (utc(20), "18:00Z", "19:00Z", utc(18, day=24)),  # passed: tomorrow
        (utc(23), "22:00Z", "02:00Z", utc(23)),  # inside a window that wraps midnight
        (utc(1), "22:00Z", "02:00Z", utc(1)),
        (utc(3), "22:00Z", "02:00Z", utc(22)),
    ],
)
def test_the_maintenance_window_opening(moment: datetime, start: str, end: str, opening: datetime) -> None:
    assert window_opening(moment, start, end) == opening


def test_a_tick_runs_at_the_later_of_the_wall_clock_and_the_timers_firing() -> None:
    ahead = tick_time(b'{"triggerTime": "2099-01-01T00:00:00Z", "triggerName": "t", "payload": ""}')
    assert ahead == datetime(2099, 1, 1, tzinfo=timezone.utc)  # an emulated clock ahead of the wall
    behind = tick_time(b'{"triggerTime": "2020-01-01T00:00:00Z"}')  # a late retry of an old firing
    assert behind.year >= 2026
