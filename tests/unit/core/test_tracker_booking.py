"""A maintenance-window booking that has not started is waiting, not stuck, however far the clock
jumped: it is due at the window's next opening (``awaited_opening``), and only a window that opened
and stayed quiet past the stuck limit makes it overdue."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dbupgrade.tracker import UNKNOWN_WINDOW_GRACE, awaited_opening

WINDOW = {"MaintainStartTime": "18:00Z", "MaintainEndTime": "22:00Z"}
BOOKED = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)


def test_before_its_first_window_a_booking_is_due_at_that_opening() -> None:
    assert awaited_opening(BOOKED, BOOKED + timedelta(hours=2), WINDOW) == BOOKED.replace(hour=18)


def test_a_day_later_with_the_window_closed_it_is_due_at_the_next_opening_not_overdue() -> None:
    a_day_later = BOOKED + timedelta(days=1)  # the emulated clock advanced a day: 10:00 next day
    due = awaited_opening(BOOKED, a_day_later, WINDOW)
    assert due == datetime(2026, 1, 6, 18, 0, tzinfo=timezone.utc) and due > a_day_later


def test_inside_a_later_window_it_counts_from_that_windows_opening() -> None:
    inside = datetime(2026, 1, 6, 21, 0, tzinfo=timezone.utc)
    assert awaited_opening(BOOKED, inside, WINDOW) == datetime(2026, 1, 6, 18, 0, tzinfo=timezone.utc)


def test_a_window_across_midnight_open_now_counts_from_yesterdays_opening() -> None:
    wrap = {"MaintainStartTime": "22:00Z", "MaintainEndTime": "02:00Z"}
    inside = datetime(2026, 1, 7, 1, 0, tzinfo=timezone.utc)
    assert awaited_opening(BOOKED, inside, wrap) == datetime(2026, 1, 6, 22, 0, tzinfo=timezone.utc)


def test_without_the_windows_bounds_a_booking_gets_a_day() -> None:
    assert awaited_opening(BOOKED, BOOKED + timedelta(hours=5), {}) == BOOKED + UNKNOWN_WINDOW_GRACE
