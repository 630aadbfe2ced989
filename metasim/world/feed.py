"""Feed posts and Reels: the IG media the /{ig-user-id}/media edge lists, and their counters.

Meta's media insights reference (https://developers.facebook.com/docs/instagram-platform/reference/instagram-media/insights)
lists which metric each media product type serves: FEED_METRICS and REELS_METRICS below
(`profile_activity` takes the `action_type` breakdown). The edge lists a user's feed media and
Reels, never stories, newest first, at most the 10K most recent
(https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/media).

Counters only ever grow, like Threads posts' (metasim.world.insights): `floor(final *
progress(age))`, with sums computed from their parts so that they hold exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

from metasim.world.entities import IgPost
from metasim.world.insights import media_finals
from metasim.world.state import WorldState

IG_MEDIA_BASE = 17900000000000000
MAX_LISTED = 10_000  # "Returns a maximum of 10K of the most recently created media"
FEED: Final = "FEED"
REELS: Final = "REELS"
FEED_METRICS: Final = (
    "comments", "follows", "likes", "profile_activity", "profile_visits", "reach", "saved",
    "shares", "total_interactions", "views",
)  # fmt: skip
REELS_METRICS: Final = (
    "comments", "ig_reels_avg_watch_time", "ig_reels_video_view_total_time", "likes", "reach",
    "saved", "shares", "total_interactions", "views",
)  # fmt: skip
METRICS: Final = {FEED: FEED_METRICS, REELS: REELS_METRICS}
MEDIA_TYPES: Final = {FEED: ("IMAGE", "VIDEO", "CAROUSEL_ALBUM"), REELS: ("VIDEO",)}


def _checked(product_type: str, media_type: str, refuses: Sequence[str]) -> tuple[str, ...]:
    if product_type not in METRICS:
        msg = f"media_product_type must be FEED or REELS, not {product_type!r}"
        raise ValueError(msg)
    if media_type not in MEDIA_TYPES[product_type]:
        msg = f"a {product_type} media is one of {', '.join(MEDIA_TYPES[product_type])}"
        raise ValueError(msg)
    unknown = sorted(set(refuses) - set(METRICS[product_type]))
    if unknown:
        msg = f"not {product_type} metrics: {', '.join(unknown)}"
        raise ValueError(msg)
    return tuple(refuses)


class FeedBook:
    """The world's feed posts and Reels (`world.feed`), sharing the world's state."""

    def __init__(self, state: WorldState) -> None:
        self.state = state

    def add_media(
        self,
        account: str,
        *,
        media_id: str | None = None,
        media_product_type: str = FEED,
        media_type: str | None = None,
        timestamp: datetime | float | None = None,
        age_seconds: float | None = None,
        caption: str | None = None,
        seed: int | None = None,
        finals: Mapping[str, int] | None = None,
        refuses: Sequence[str] = (),
    ) -> IgPost:
        """A feed post (IMAGE, VIDEO or CAROUSEL_ALBUM) or a Reel (VIDEO) posted at
        `timestamp` (or `age_seconds` ago); `refuses`: metrics its insights refuse."""
        kind = media_type or ("VIDEO" if media_product_type == REELS else "IMAGE")
        with self.state.lock:
            owner = self.state.account(account)
            mid = self.state.claim_id(media_id, IG_MEDIA_BASE)
            seed = int(mid) if seed is None else seed
            post = IgPost(
                id=mid,
                account=owner.ig_user_id,
                timestamp=self.state.moment(timestamp, age_seconds),
                product_type=media_product_type,
                media_type=kind,
                seed=seed,
                finals=media_finals(seed, finals),
                caption=caption if caption is not None else f"Post {mid}",
                refuses=_checked(media_product_type, kind, refuses),
            )
            self.state.ig_media_index[mid] = post
            return post

    def post(self, media_id: str) -> IgPost:
        return self.state.get_ig_media(media_id)

    def media_of(self, ig_user_id: str) -> list[IgPost]:
        """An account's feed posts and Reels, newest first, the 10K most recent."""
        with self.state.lock:
            self.state.account(ig_user_id)
            found = [p for p in self.state.ig_media_index.values() if p.account == ig_user_id]
        return sorted(found, key=lambda p: p.sort_key)[:MAX_LISTED]

    def values(self, media_id: str, at: datetime | None = None) -> dict[str, int]:
        """A media's counters at a moment (default now), as /insights reports them."""
        return self.post(media_id).counts(at or self.state.now())
