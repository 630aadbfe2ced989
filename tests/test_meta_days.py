"""Meta's days (Pacific midnight to midnight) and which of them a poll asks totals for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workers.meta.days import Window, closed_days, day_start, due_windows

SETTLE = timedelta(days=2)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_day_starts_at_pacific_midnight_in_summer_and_winter() -> None:
    """07:00 UTC under daylight saving time, 08:00 UTC without; late UTC evening is the
    same Pacific day, early UTC morning the day before."""
    assert day_start(utc("2026-07-15 20:00")) == utc("2026-07-15 07:00")
    assert day_start(utc("2026-07-16 03:00")) == utc("2026-07-15 07:00")
    assert day_start(utc("2026-12-15 07:59")) == utc("2026-12-14 08:00")


def test_closed_days_run_back_across_a_clock_change_without_gaps() -> None:
    """Each window starts where the one before ended; the day of the change is 25 hours."""
    days = closed_days(utc("2026-11-03 12:00"), 3)
    assert days == [
        Window(utc("2026-11-02 08:00"), utc("2026-11-03 08:00")),
        Window(utc("2026-11-01 07:00"), utc("2026-11-02 08:00")),
        Window(utc("2026-10-31 07:00"), utc("2026-11-01 07:00")),
    ]
    assert days[1].until - days[1].since == timedelta(hours=25)
    assert days[0].params == {"since": 1793606400, "until": 1793692800}


def test_closed_days_stop_at_the_floor() -> None:
    """No window starts before Meta's earliest accepted `since`."""
    floor = utc("2026-11-01 07:00")
    assert len(closed_days(utc("2026-11-03 12:00"), 10, floor=floor)) == 2


def test_due_windows_fill_missing_days_newest_first_within_the_limit() -> None:
    """Nothing stored: the newest `limit` closed days."""
    now = utc("2026-11-10 12:00")
    due = due_windows(now, {}, horizon=30, settle=SETTLE, limit=4)
    assert due == closed_days(now, 4)


def test_a_day_is_asked_when_it_ends_and_once_more_when_settled() -> None:
    """Stored early: asked again once `settle` has passed since its end; stored after that:
    never again. A day still settling is not asked at every poll."""
    now = utc("2026-11-10 12:00")
    yesterday, before, third, fourth = closed_days(now, 4)
    stored = {
        yesterday.until: yesterday.until + timedelta(hours=1),  # still settling
        before.until: before.until + timedelta(hours=30),  # still settling
        third.until: third.until + timedelta(hours=1),  # settled by now: once more
        fourth.until: fourth.until + SETTLE,  # asked when settled: done
    }
    due = due_windows(now, stored, horizon=4, settle=SETTLE, limit=4)
    assert due == [third]
