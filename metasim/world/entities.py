"""What the simulated world holds: accounts, stories, feed posts and Reels, Threads users and
posts, tokens, calls."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from metasim.world import insights

SIXTY_DAYS = 60 * 86400
REFRESHED_EXPIRES_IN = 5183944  # Meta's example `expires_in` of a refreshed token
# "Calls within 24 hours = 4800 * Number of Impressions" (Instagram's Business Use Case limit):
# https://developers.facebook.com/docs/graph-api/overview/rate-limiting
BUC_CALLS_PER_IMPRESSION = 4800


@dataclass
class SimConfig:
    """Knobs of a world; every one can be changed at run time (World.configure, /_sim/config).

    - page_size: default `limit` of /stories (Meta: 25).
    - minute_seconds: how long a throttle "minute" lasts (60 real; 1 in tests).
    - window_minutes: the rolling window of an account's budget, in those minutes (Meta's
      BUC: 24 h).
    - default_budget: calls per window per IG account when the account sets neither a
      budget nor impressions (Meta: 4800 * impressions).
    - app_window_minutes: the rolling window of the app's budget (X-App-Usage: one hour).
    - app_budget: calls per app window for the whole app (over it: code 4).
    - expired_insights: what insights of an expired story answer: "empty" ({"data": []})
      or "error" (code 100 subcode 33, as one third party reports [UNCERTAIN]).
    - token_lifetime_seconds: lifetime of tokens created without an explicit expiry.
    """

    page_size: int = 25
    minute_seconds: float = 60.0
    window_minutes: float = 1440.0
    default_budget: int = 4800
    app_window_minutes: float = 60.0
    app_budget: int = 1_000_000
    expired_insights: str = "empty"
    token_lifetime_seconds: int = SIXTY_DAYS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Token:
    """An access token; `owners` are the IG accounts or Threads users it may read."""

    value: str = field(repr=False)
    serial: int
    kind: str  # "facebook", "instagram" (IG Login) or "threads"
    owners: set[str]
    issued_at: datetime
    expires_at: datetime | None  # None: never (long-lived Page tokens)

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.value,
            "serial": self.serial,
            "kind": self.kind,
            "owners": sorted(self.owners),
            "issued_at": self.issued_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


@dataclass
class Account:
    """An Instagram professional account (its id is the webhook `entry.id`).

    Its call budget per rolling window: `budget` if set, else Meta's BUC formula "Calls
    within 24 hours = 4800 * Number of Impressions" when `impressions` is set, else the
    world's default_budget.
    """

    ig_user_id: str
    username: str
    token: str = field(repr=False)
    login: str = "facebook"
    budget: int | None = None
    threads_user_id: str | None = None
    impressions: int | None = None
    story_ids: list[str] = field(default_factory=list, repr=False)
    # Account insights (metasim.api.instagram_account): the follower count (below 100 Meta
    # gives no follower_count or demographics), the reach of an average day, metrics the
    # account refuses with (#100), and Pacific days (ISO dates) whose data Meta withholds.
    followers_count: int = 500
    daily_reach: int = 300
    insights_refuses: tuple[str, ...] = ()
    withheld_days: tuple[str, ...] = ()

    def calls_allowed(self, default: int) -> int:
        if self.budget is not None:
            return self.budget
        return BUC_CALLS_PER_IMPRESSION * self.impressions if self.impressions else default

    def to_dict(self) -> dict[str, Any]:
        return {
            "ig_user_id": self.ig_user_id,
            "username": self.username,
            "token": self.token,
            "login": self.login,
            "budget": self.budget,
            "threads_user_id": self.threads_user_id,
            "impressions": self.impressions,
            "stories": list(self.story_ids),
            "followers_count": self.followers_count,
            "daily_reach": self.daily_reach,
            "insights_refuses": list(self.insights_refuses),
            "withheld_days": list(self.withheld_days),
        }


@dataclass
class Story:
    """An IG story; `viewers` is its final reach (below 5: insights answer error 10);
    `refuses` are metrics Meta will not serve for this media ((#100), the whole call fails)."""

    id: str
    account: str
    timestamp: datetime
    viewers: int
    seed: int
    finals: dict[str, int] = field(repr=False)
    media_type: str = "IMAGE"
    caption: str | None = None
    refuses: tuple[str, ...] = ()

    @property
    def expires_at(self) -> datetime:
        return self.timestamp + timedelta(seconds=insights.STORY_LIFETIME)

    @property
    def sort_key(self) -> tuple[int, str]:
        """Newest first, then by id: the order of the /stories edge and its cursors."""
        return (-int(self.timestamp.timestamp()), self.id)

    def alive(self, now: datetime) -> bool:
        return now < self.expires_at

    def counts(self, now: datetime) -> dict[str, int]:
        return insights.story_counts(self.finals, (now - self.timestamp).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account": self.account,
            "timestamp": self.timestamp.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "viewers": self.viewers,
            "seed": self.seed,
            "media_type": self.media_type,
            "caption": self.caption,
            "refuses": list(self.refuses),
        }


@dataclass
class ThreadsUser:
    """A Threads profile; without `ig_user_id` it has no linked Instagram account."""

    id: str
    username: str
    token: str = field(repr=False)
    seed: int
    ig_user_id: str | None = None
    followers_count: int = 150
    links: list[str] = field(default_factory=list)
    daily_views: int = 100
    post_ids: list[str] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threads_user_id": self.id,
            "username": self.username,
            "token": self.token,
            "ig_user_id": self.ig_user_id,
            "followers_count": self.followers_count,
            "links": list(self.links),
            "daily_views": self.daily_views,
            "posts": list(self.post_ids),
        }


@dataclass
class ThreadsPost:
    """A Threads post, or a reply (`replied_to` set; /threads does not list replies, they
    are on /{threads-user-id}/replies); `deleted_at` once its owner deleted it."""

    id: str
    user: str
    timestamp: datetime
    seed: int
    finals: dict[str, int] = field(repr=False)
    media_type: str = "TEXT_POST"
    text: str | None = None
    is_quote_post: bool = False
    replied_to: str | None = None
    root_post: str | None = None
    deleted_at: datetime | None = None

    @property
    def sort_key(self) -> tuple[int, str]:
        return (-int(self.timestamp.timestamp()), self.id)

    @property
    def is_reply(self) -> bool:
        return self.replied_to is not None

    def counts(self, now: datetime) -> dict[str, int]:
        return insights.post_counts(self.finals, (now - self.timestamp).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "timestamp": self.timestamp.isoformat(),
            "seed": self.seed,
            "media_type": self.media_type,
            "text": self.text,
            "is_quote_post": self.is_quote_post,
            "replied_to": self.replied_to,
            "root_post": self.root_post,
            "deleted_at": self.deleted_at.isoformat() if self.deleted_at else None,
        }


@dataclass
class IgPost:
    """A feed post or a Reel; `refuses`: metrics Meta will not serve for this media ((#100),
    the whole call fails), as some carousels and media types do."""

    id: str
    account: str
    timestamp: datetime
    product_type: str
    media_type: str
    seed: int
    finals: dict[str, int] = field(repr=False)
    caption: str | None = None
    refuses: tuple[str, ...] = ()

    @property
    def sort_key(self) -> tuple[int, str]:
        """Newest first, then by id: the order of the /media edge and its cursors."""
        return (-int(self.timestamp.timestamp()), self.id)

    def counts(self, now: datetime) -> dict[str, int]:
        return insights.media_counts(self.finals, (now - self.timestamp).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account": self.account,
            "timestamp": self.timestamp.isoformat(),
            "media_product_type": self.product_type,
            "media_type": self.media_type,
            "seed": self.seed,
            "caption": self.caption,
            "refuses": list(self.refuses),
        }


@dataclass(frozen=True)
class Call:
    """One request the simulator answered; `params` never hold the token (`***` instead)."""

    seq: int
    at: datetime
    method: str
    path: str
    params: dict[str, str]
    kind: str
    status: int
    host: str | None = None
    version: str | None = None
    platform: str | None = None
    account: str | None = None
    object_id: str | None = None
    code: int | None = None
    fault: int | None = None
    token_serial: int | None = None
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data
