"""The media part of the capture benchmark (bench/capture_media.py): the workers' settings it
sets and its model of production's calls per account-day against Meta's budget formula."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def media() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("capture_media")
    finally:
        sys.path.remove(str(BENCH))


def test_the_plan_compresses_the_schedule_and_ends_it(media: ModuleType) -> None:
    """The workers list every poll and stop after the plan's last slot."""
    plan = media.MediaPlan(50, 600.0, "2m,5m,10m", 30)
    assert plan.env() == {
        "IG_MEDIA_POLL_SECONDS": "30",
        "IG_MEDIA_SNAPSHOTS": "2m,5m,10m",
        "IG_MEDIA_MAX_AGE": "10m",
    }


def test_the_model_adds_stories_and_media_per_account_day(
    media: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """3 stories a day: 96 listings + 3 x 75 calls; 50 media over 30 days: 24 listings +
    50/30 x 21 captures x 1.5 calls; the total against 4800 per impression."""
    media.model(50)
    line = capsys.readouterr().out
    assert "stories 321 + feed and Reels 76" in line
    assert "= 398 calls per account-day" in line
    assert "8.3 % of an account seen once a day" in line
