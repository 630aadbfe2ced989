"""When each story and Threads post is captured: pure slot arithmetic, no I/O.

A story lives 24 hours from its `timestamp`
(https://developers.facebook.com/docs/instagram-platform/reference/instagram-media/insights),
after which its insights are gone. Its captures are named slots:

- `first`: at discovery, at once;
- `s1`, `s2`, ...: regular captures at `posted_at + k * snapshot_seconds`;
- `final`: at `expires_at - final_margin_seconds`, so a late or retried job still lands
  before expiry.

A story found after its final slot was due (say with two minutes left) is captured at once
as `final`. Slot names are part of each job id and of each snapshot's unique slot key, so any
number of workers capture a slot at most once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.config import format_duration

FIRST = "first"
FINAL = "final"
WEBHOOK = "webhook"


@dataclass(frozen=True)
class StorySchedule:
    """The spacing settings (STORY_SNAPSHOT_SECONDS, STORY_FINAL_MARGIN_SECONDS)."""

    snapshot_seconds: float
    final_margin_seconds: float

    def final_due(self, expires_at: datetime) -> datetime:
        return expires_at - timedelta(seconds=self.final_margin_seconds)

    def regular_due(self, posted_at: datetime, k: int) -> datetime:
        return posted_at + timedelta(seconds=k * self.snapshot_seconds)

    def is_late(self, slot: str, posted_at: datetime, now: datetime) -> bool:
        """A regular slot more than half an interval overdue (the workers are behind): better
        skipped than taken, so that the captures still on time, the final above all, are."""
        if not (slot.startswith("s") and slot[1:].isdigit()):
            return False
        overdue = (now - self.regular_due(posted_at, int(slot[1:]))).total_seconds()
        return overdue > self.snapshot_seconds / 2

    def on_discovery(self, posted_at: datetime, expires_at: datetime, now: datetime) -> str:
        """The slot taken at once when a story is first seen: `first`, or `final` when the
        final slot is already due."""
        return FINAL if now >= self.final_due(expires_at) else FIRST

    def after(
        self, slot: str, posted_at: datetime, expires_at: datetime, now: datetime
    ) -> tuple[str, datetime] | None:
        """The slot that follows `slot` (taken at `now`) and when it is due; None after final.

        Regular slots already in the past are skipped, not caught up: one capture now says
        more than several at once.
        """
        if slot == FINAL:
            return None
        final_due = self.final_due(expires_at)
        elapsed = (now - posted_at).total_seconds()
        k = max(1, math.floor(elapsed / self.snapshot_seconds) + 1)
        if slot.startswith("s") and slot[1:].isdigit():
            k = max(k, int(slot[1:]) + 1)
        due = self.regular_due(posted_at, k)
        if due < final_due:
            return f"s{k}", due
        return FINAL, final_due


@dataclass(frozen=True)
class PostSchedule:
    """Threads post counters only show "now": snapshot them on a decaying schedule counted
    from the post's timestamp (THREADS_POST_SNAPSHOTS, then weekly), each slot named by its
    offset (`1h`, `3d`, ...). A post is captured as `first` when found, whatever its age."""

    offsets: tuple[int, ...]

    def after(self, posted_at: datetime, now: datetime) -> tuple[str, datetime] | None:
        """The next slot due after `now`; None when the schedule is over."""
        for offset in self.offsets:
            due = posted_at + timedelta(seconds=offset)
            if due > now:
                return format_duration(offset), due
        return None
