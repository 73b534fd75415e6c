"""The one clock the functions and the CLI read: the wall clock, or a local stack's emulated clock.

``DBUPGRADE_CLOCK_URL`` (set by ``dbupgrade local up`` in every function's environment and in the
CLI's exports) names localcloud's ``/_localcloud/clock``; its ``offset`` is added to the wall clock,
so ``POST /_localcloud/clock {"advance": ...}`` moves the window guard, outcome times, the tracker's
stuck timer and the CLI's elapsed / ETA together with the emulated cloud. Unset (as in FC): the wall
clock, nothing fetched. Everything that asks "what time is it" calls ``now()`` / ``utcnow()``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.request
from datetime import datetime, timezone

CLOCK_URL_VARIABLE = "DBUPGRADE_CLOCK_URL"
# The offset is fetched again at most this often: a clock advance is seen within it, and a burst of
# outcomes (a rollout's wave) costs one request, not one each.
REFRESH_SECONDS = 0.2
FETCH_TIMEOUT_SECONDS = 2.0
# The OpenAPI times dbupgrade reads (DescribeBackups' BackupStartTime, DescribeHistoryTasks'
# StartTime...): UTC, ``yyyy-MM-ddTHH:mm:ssZ``.
API_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Their usual zero-padded ASCII spelling, read field by field: ``strptime`` (pure Python, ~10 us a
# call, thousands a tick) only reads what this does not match, and alone decides what it accepts.
_API_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")

_lock = threading.Lock()
_cached: dict[str, float] = {}  # url -> offset
_fetched_at: dict[str, float] = {}  # url -> time.monotonic() of the fetch


def parse_api_time(text: str) -> datetime | None:
    """``text`` in ``API_TIME_FORMAT`` as a UTC datetime, read as ``strptime`` reads it; None when
    ``strptime`` refuses it.

    >>> parse_api_time("2026-11-30T16:05:56Z")
    datetime.datetime(2026, 11, 30, 16, 5, 56, tzinfo=datetime.timezone.utc)
    """
    usual = _API_TIME.fullmatch(text)
    if usual is not None:
        try:
            year, month, day, hour, minute, second = (int(field) for field in usual.groups())
            return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
        except ValueError:
            pass  # an impossible date: strptime refuses it too
    try:
        return datetime.strptime(text, API_TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def offset() -> float:
    """Seconds the emulated clock is ahead of the wall clock (0 without ``DBUPGRADE_CLOCK_URL``).

    A failed fetch keeps the last offset known (0 at first): a stack shutting down must not turn
    every outcome's time into an error.
    """
    url = os.environ.get(CLOCK_URL_VARIABLE, "").strip()
    if not url:
        return 0.0
    with _lock:
        fresh = time.monotonic() - _fetched_at.get(url, -REFRESH_SECONDS) < REFRESH_SECONDS
        if fresh:
            return _cached.get(url, 0.0)
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as reply:  # noqa: S310 -- local stack
                _cached[url] = float(json.loads(reply.read())["offset"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        _fetched_at[url] = time.monotonic()
        return _cached.get(url, 0.0)


def now() -> float:
    """Epoch seconds on the one clock."""
    return time.time() + offset()


def utcnow() -> datetime:
    """An aware UTC datetime on the one clock."""
    return datetime.fromtimestamp(now(), tz=timezone.utc)
