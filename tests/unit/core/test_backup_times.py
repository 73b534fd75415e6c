"""The backup gate reads and writes DescribeBackups' times without strptime/strftime on the usual
form, and gives what they give: the same datetime for every string, the same query text."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from dbupgrade.backup import QUERY_FORMAT, backups_query, parse_time
from dbupgrade.engines import ENGINES

API_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _strptime_reading(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    for fmt in (API_FORMAT, QUERY_FORMAT):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


def _moments(count: int) -> list[datetime]:
    rng = random.Random(15)
    start = datetime(1000, 1, 1, tzinfo=timezone.utc)
    return [start + timedelta(seconds=rng.randrange(9000 * 365 * 86400)) for _ in range(count)]


def test_every_api_time_reads_as_strptime_reads_it() -> None:
    for moment in _moments(2000):
        text = moment.strftime(API_FORMAT)
        assert parse_time(text) == _strptime_reading(text) == moment
        assert parse_time(text).tzinfo is timezone.utc  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text",
    [
        "2026-13-01T00:00:00Z",  # no month 13
        "2026-02-30T00:00:00Z",  # no 30 February
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:60Z",
        "2026-1-01T00:00:00Z",  # strptime takes one digit
        "2026-01-01T00:00Z",  # the query form
        "2026-01-01T00:00:00z",
        " 2026-01-01T00:00:00Z",
        "\uff12\uff10\uff12\uff16-01-01T00:00:00Z",  # full-width digits
        "",
        "never",
        None,
        20260101,
    ],
)
def test_other_texts_read_as_strptime_reads_them(text: object) -> None:
    assert parse_time(text) == _strptime_reading(text)


def test_the_query_times_are_strftime_s() -> None:
    engine = ENGINES["redis"]
    for since in _moments(500):
        until = since + timedelta(hours=24)
        query = backups_query(engine, "r-bp1abc", since, until)
        assert query["StartTime"] == (since - timedelta(minutes=1)).strftime(QUERY_FORMAT)
        assert query["EndTime"] == (until + timedelta(minutes=1)).strftime(QUERY_FORMAT)
