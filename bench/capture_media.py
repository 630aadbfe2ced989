"""Feed posts and Reels beside the stories in bench/capture.py (`--media N`): N media per
account in the simulator, captured on a compressed decaying schedule while the stories run,
then the media figures and a model of the calls a day costs with production's defaults.

The media are posted over the last `--media-spread` minutes, so the first listing finds them
all at once (a burst of first captures) and their later slots (`--media-snapshots`, minutes
for production's hours) come due during the run, competing with the story finals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from capture_procs import CallTally, Simulator
from sqlalchemy.engine import Engine

BATCH = 2000  # media per POST /_sim/media
# Meta's Business Use Case limit: "Calls within 24 hours = 4800 * Number of Impressions"
# (https://developers.facebook.com/docs/graph-api/overview/rate-limiting).
BUC_PER_IMPRESSION = 4800
# Production defaults (core/config.py): story listing every 900 s, a snapshot an hour plus
# first and final, 3 calls each; /media listed hourly; IG_MEDIA_SNAPSHOTS (10) then every
# 30 days to 365 days (11 more); FEED 2 calls a capture (plain + profile_activity by
# action_type), REELS 1.
STORY_LISTINGS_PER_DAY = 86400 / 900
STORY_CALLS_PER_STORY = (1 + 23 + 1) * 3
MEDIA_LISTINGS_PER_DAY = 24
CAPTURES_PER_MEDIA = 10 + 11
CALLS_PER_MEDIA_CAPTURE = (2 + 1) / 2  # half feed posts, half Reels
MEDIA_FIGURES = sa.text(
    "SELECT count(*),"
    " count(*) FILTER (WHERE capture_state = 'done'),"
    " (SELECT count(*) FROM snapshot WHERE subject_type IN ('feed', 'reel'))"
    " FROM media WHERE subject_type IN ('feed', 'reel')"
)


@dataclass(frozen=True)
class MediaPlan:
    per_account: int
    spread_s: float
    snapshots: str  # IG_MEDIA_SNAPSHOTS for the workers
    poll_s: int = 120  # IG_MEDIA_POLL_SECONDS (production: hourly)

    def env(self) -> dict[str, str]:
        last = self.snapshots.split(",")[-1]
        return {
            "IG_MEDIA_POLL_SECONDS": str(self.poll_s),
            "IG_MEDIA_SNAPSHOTS": self.snapshots,
            "IG_MEDIA_MAX_AGE": last,
        }


def seed_media(sim: Simulator, plan: MediaPlan, created: list[dict[str, Any]]) -> int:
    """`per_account` media per account, half Reels, posted over the last `spread_s`."""
    specs = [
        {
            "account": account["ig_user_id"],
            "media_product_type": "REELS" if k % 2 else "FEED",
            "age_seconds": plan.spread_s * (k + 0.5) / plan.per_account,
        }
        for account in created
        for k in range(plan.per_account)
    ]
    for start in range(0, len(specs), BATCH):
        sim.request("POST", "/media", {"media": specs[start : start + BATCH]})
    return len(specs)


def print_media(engine: Engine, calls: CallTally, accounts: int, media: int, run_s: float) -> None:
    """What was found and captured, the calls it took, and production's calls per day."""
    with engine.connect() as conn:
        found, done, snapshots = conn.execute(MEDIA_FIGURES).one()
    listings, insights = calls.by_kind["ig_media_list"], calls.by_kind["ig_media_insights"]
    print(
        f"  feed posts and Reels: {found:,} / {media:,} discovered, {snapshots:,} snapshots, "
        f"{done:,} done; {listings:,} /media calls, {insights:,} media insights calls "
        f"({insights / max(snapshots, 1):.2f} per snapshot; target 1.5)"
    )
    story_calls = calls.by_kind["insights"] + calls.by_kind["stories"]
    print(
        f"  calls per account in this {run_s:.0f} s run: stories {story_calls / accounts:.1f}, "
        f"feed and Reels {(listings + insights) / accounts:.1f}"
    )
    model(media // max(accounts, 1))


def model(per_account: int, stories_per_day: int = 3, media_days: int = 30) -> None:
    """Calls per account-day with production's defaults: 3 stories a day, and the media
    posted over `media_days` (each with its whole schedule) against Meta's BUC formula."""
    stories = STORY_LISTINGS_PER_DAY + stories_per_day * STORY_CALLS_PER_STORY
    posted_per_day = per_account / media_days
    media = MEDIA_LISTINGS_PER_DAY + posted_per_day * CAPTURES_PER_MEDIA * CALLS_PER_MEDIA_CAPTURE
    total = stories + media
    print(
        f"  model, production defaults: stories {stories:.0f} + feed and Reels {media:.0f} "
        f"({per_account} media over {media_days} days) = {total:.0f} calls per account-day; "
        f"Meta allows {BUC_PER_IMPRESSION} x impressions per 24 h: "
        f"{100 * total / BUC_PER_IMPRESSION:.1f} % of an account seen once a day"
    )
