"""The finishing tick's cheaper pieces read and publish exactly as before (bench/NOTES.md, issue #15
item 4, second pass): task start times, outcome times, the stop of a batch's publishes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from dbupgrade.config import Config
from dbupgrade.notify import Delivery, Notifier
from dbupgrade.progress import TIME_FORMAT, _parse
from dbupgrade.tracker import _time_text


def _strptime(text: object) -> datetime | None:
    try:
        return datetime.strptime(str(text), TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-30T12:00:05Z",
        "2026-1-5T1:2:3Z",  # unpadded: strptime takes it
        "2026-02-30T12:00:00Z",  # no such day
        "2026-11-30T12:00:60Z",
        "2026-11-30T120000.0Z",  # ISO basic form: fromisoformat would take it, strptime does not
        "2026-11-30 12:00:05Z",
        "2026-11-30T12:00:05",
        "２026-11-30T12:00:05Z",  # a full-width digit
        "",
        None,
    ],
)
def test_a_task_start_time_reads_as_strptime_reads_it(text: object) -> None:
    assert _parse(text) == _strptime(text)


def test_an_outcome_time_is_the_moment_in_its_own_zone() -> None:
    moment = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    assert _time_text(moment) == "2026-01-01T12:00:00Z"
    # An equal instant in another zone is another text (the format has no offset).
    assert _time_text(moment.astimezone(timezone(timedelta(hours=8)))) == "2026-01-01T20:00:00Z"


def test_a_batch_stops_publishing_at_the_first_that_must_wait() -> None:
    notifier = Notifier(Config.from_env({"DBUPGRADE_TOPIC": "outcomes"}))  # no endpoint: RETRY
    with ThreadPoolExecutor(1) as pool:
        deliveries = notifier.publish_many(
            [{"event": f"upgrade.completed.{i}"} for i in range(5)],
            credentials=None,
            context=None,
            pool=pool,
            until=time.monotonic() + 60,
        )
    assert deliveries == [Delivery.RETRY, None, None, None, None]
