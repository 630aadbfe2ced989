"""Meta's days, and which of them a Threads poll asks the user totals for.

Threads user insights count by Meta's day, which ends at midnight Pacific time: the `views`
series reports each day with `end_time` 07:00 or 08:00 UTC of the next day
(https://developers.facebook.com/docs/threads/insights). A range total such as `likes`
covers whatever days the `since`/`until` range touches, and without a range it covers
"yesterday through today". So the totals are asked one closed Meta day at a time, from one
Pacific midnight to the next: windows that follow Meta's own boundaries never share a day,
whether Meta sums whole days or counts to the second. A window in UTC days would straddle
two Meta days, and consecutive UTC windows would both count the day between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError

PACIFIC_ZONE = "America/Los_Angeles"


@cache
def pacific() -> ZoneInfo:
    """Meta's day zone; a system without the zone database says so instead of using UTC."""
    try:
        return ZoneInfo(PACIFIC_ZONE)
    except ZoneInfoNotFoundError as exc:
        msg = f"the time zone database has no {PACIFIC_ZONE} (install the tzdata package)"
        raise ConfigError(msg) from exc


def day_start(moment: datetime) -> datetime:
    """The Pacific midnight that starts the Meta day holding `moment`, in UTC."""
    local = moment.astimezone(pacific())
    return datetime(local.year, local.month, local.day, tzinfo=pacific()).astimezone(UTC)


@dataclass(frozen=True, order=True)
class Window:
    """One Meta day, [since, until): `until` is the `end_time` its values are stored with."""

    since: datetime
    until: datetime

    @property
    def params(self) -> dict[str, int]:
        return {"since": int(self.since.timestamp()), "until": int(self.until.timestamp())}


def closed_days(now: datetime, count: int, *, floor: datetime | None = None) -> list[Window]:
    """The last `count` Meta days that have ended by `now`, newest first (none before
    `floor`). A day is 23, 24 or 25 hours long; each start is found from the day before's."""
    windows: list[Window] = []
    until = day_start(now)
    while len(windows) < count:
        since = day_start(until - timedelta(hours=1))
        if floor is not None and since < floor:
            break
        windows.append(Window(since, until))
        until = since
    return windows


def due_windows(
    now: datetime,
    stored: Mapping[datetime, datetime],
    *,
    horizon: int,
    settle: timedelta,
    limit: int,
    floor: datetime | None = None,
) -> list[Window]:
    """The closed days to ask now, newest first and at most `limit` of them.

    `stored` maps each day's end (`end_time`) to when its newest value was captured. A day
    is asked once it has ended, and once more after `settle`, since Meta's counts of a day
    can still grow after it closes; after that it is never asked again. Days missing within
    `horizon` days back are filled in, `limit` calls a poll at most.
    """
    due = []
    for window in closed_days(now, horizon, floor=floor):
        captured = stored.get(window.until)
        settled_at = window.until + settle
        if captured is None or (captured < settled_at <= now):
            due.append(window)
    return due[:limit]
