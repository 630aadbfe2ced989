"""Slot arithmetic: when each story capture is due (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.config import format_duration, load_settings
from core.errors import ConfigError
from workers.captures.slots import FINAL, FIRST, PostSchedule, StorySchedule

POSTED = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
EXPIRES = POSTED + timedelta(hours=24)
DEFAULTS = StorySchedule(snapshot_seconds=3600, final_margin_seconds=600)


def at(**delta: float) -> datetime:
    return POSTED + timedelta(**delta)


def test_discovery_is_first_unless_the_final_slot_is_due() -> None:
    """A story found with two minutes left is captured at once, as its final."""
    assert DEFAULTS.on_discovery(POSTED, EXPIRES, at(minutes=5)) == FIRST
    assert DEFAULTS.on_discovery(POSTED, EXPIRES, EXPIRES - timedelta(minutes=2)) == FINAL
    assert DEFAULTS.on_discovery(POSTED, EXPIRES, EXPIRES - timedelta(minutes=10)) == FINAL


def test_regular_slots_follow_the_posting_time() -> None:
    """After `first` at 0:05 comes s1 at 1:00, then s2 at 2:00: aligned to posted_at."""
    assert DEFAULTS.after(FIRST, POSTED, EXPIRES, at(minutes=5)) == ("s1", at(hours=1))
    assert DEFAULTS.after("s1", POSTED, EXPIRES, at(hours=1, seconds=3)) == ("s2", at(hours=2))


def test_late_slots_skip_ahead_instead_of_catching_up() -> None:
    """A capture running 3.5 hours late is followed by the next future slot only."""
    assert DEFAULTS.after("s1", POSTED, EXPIRES, at(hours=4, minutes=30)) == ("s5", at(hours=5))


def test_the_last_regular_slot_is_followed_by_final() -> None:
    """Final is due STORY_FINAL_MARGIN_SECONDS before expiry; nothing comes after it."""
    final_due = EXPIRES - timedelta(minutes=10)
    assert DEFAULTS.after("s23", POSTED, EXPIRES, at(hours=23)) == (FINAL, final_due)
    assert DEFAULTS.after(FINAL, POSTED, EXPIRES, final_due) is None


def test_a_whole_day_has_first_23_regular_and_final() -> None:
    """Walking the default schedule from discovery at 0:01 gives 25 captures in all."""
    slots, now = [FIRST], at(minutes=1)
    while (following := DEFAULTS.after(slots[-1], POSTED, EXPIRES, now)) is not None:
        slot, now = following
        slots.append(slot)
    assert slots == [FIRST, *(f"s{k}" for k in range(1, 24)), FINAL]
    assert now == EXPIRES - timedelta(minutes=10)


def test_a_slot_spacing_longer_than_the_story_goes_straight_to_final() -> None:
    """STORY_SNAPSHOT_SECONDS of two days: first, then final."""
    sparse = StorySchedule(snapshot_seconds=2 * 86400, final_margin_seconds=600)
    assert sparse.after(FIRST, POSTED, EXPIRES, at(minutes=1)) == (
        FINAL,
        EXPIRES - timedelta(minutes=10),
    )


def test_post_slots_decay_and_end() -> None:
    """Posts: the next offset after now, named by its label; nothing after the last one."""
    posts = PostSchedule((3600, 6 * 3600, 86400, 3 * 86400))
    assert posts.after(POSTED, at(minutes=10)) == ("1h", at(hours=1))
    assert posts.after(POSTED, at(hours=1)) == ("6h", at(hours=6))
    assert posts.after(POSTED, at(hours=30)) == ("3d", at(days=3))
    assert posts.after(POSTED, at(days=3)) is None


def test_only_regular_slots_can_be_late() -> None:
    """More than half an interval overdue: a regular slot is late; first and final never are."""
    assert not DEFAULTS.is_late("s2", POSTED, at(hours=2, minutes=29))
    assert DEFAULTS.is_late("s2", POSTED, at(hours=2, minutes=31))
    assert not DEFAULTS.is_late(FIRST, POSTED, at(hours=9))
    assert not DEFAULTS.is_late(FINAL, POSTED, at(hours=24))


def test_media_slots_decay_then_go_monthly_to_the_max_age() -> None:
    """Feed posts and Reels: the issue's offsets, then every 30 days until IG_MEDIA_MAX_AGE;
    a media found at 100 days takes its next capture at 120 days, none after the max age."""
    settings = load_settings(_env_file=None, ig_media_max_age="90d")
    offsets = settings.media_snapshot_offsets
    labels = [format_duration(o) for o in offsets]
    assert labels == ["1h", "3h", "6h", "12h", "1d", "2d", "3d", "7d", "14d", "30d", "60d", "90d"]
    media = PostSchedule(tuple(load_settings(_env_file=None).media_snapshot_offsets))
    assert media.after(POSTED, at(days=100)) == ("120d", at(days=120))
    assert media.after(POSTED, at(days=360)) is None
    assert load_settings(_env_file=None, ig_media_max_age="2h").media_snapshot_offsets == [3600]
    with pytest.raises(ConfigError, match="IG_MEDIA_SNAPSHOTS"):
        load_settings(_env_file=None, ig_media_snapshots="soon")
