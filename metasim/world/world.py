"""The simulated world: accounts, stories, Threads users and posts, and what Meta reports.

A World is made of parts that share one WorldState (lock, config, clock, ids, objects):
`world.tokens` (metasim.world.tokens), `world.budgets` (budgets, blocks and permission
denials), `world.faults` (injected failures), `world.feed` (feed posts and Reels) and
`world.log` (the calls answered). The World itself creates and reads the other objects.

Thread-safe (tests build and read it from their own thread while the server's event loop
answers requests) and dict-based, so a world of thousands of accounts answers as fast as one
of a single account. The clock is real UTC plus an offset (`advance`); the usual way to
compress time is to post stories in the past: a story posted 23 h 55 min ago expires in 5 min.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from metasim.world import insights
from metasim.world.budgets import Budgets
from metasim.world.calllog import CallLog
from metasim.world.entities import Account, SimConfig, Story, ThreadsPost, ThreadsUser
from metasim.world.faults import Faults
from metasim.world.feed import FeedBook
from metasim.world.state import WorldState
from metasim.world.tokens import UNSET, TokenBook

IG_USER_BASE = 17841400000000000
STORY_BASE = 18000000000000000
THREADS_USER_BASE = 25000000000000000
THREADS_POST_BASE = 17890000000000000

__all__ = ["World"]


def _story_metrics(names: Sequence[str]) -> tuple[str, ...]:
    """Story metric names, checked: a typo would otherwise refuse nothing, silently."""
    unknown = sorted(set(names) - set(insights.STORY_METRICS))
    if unknown:
        msg = f"not story metrics: {', '.join(unknown)}"
        raise ValueError(msg)
    return tuple(names)


class World:
    """Everything the simulator knows; every method is safe to call from any thread."""

    def __init__(self, config: SimConfig | None = None, **settings: Any) -> None:
        self.state = WorldState(config, **settings)
        self.lock = self.state.lock
        self.tokens = TokenBook(self.state)
        self.budgets = Budgets(self.state)
        self.faults = Faults(self.state)
        self.feed = FeedBook(self.state)
        self.log = CallLog()

    @property
    def config(self) -> SimConfig:
        return self.state.config

    def configure(self, **settings: Any) -> SimConfig:
        """Change settings of SimConfig at run time (an unknown name is a ValueError)."""
        return self.state.configure(**settings)

    def reset(self, *, config: bool = False) -> None:
        """Forget every object, token, fault, usage figure and call (and the config if asked)."""
        with self.lock:
            self.state.reset(config=config)
            self.tokens.reset()
            self.budgets.reset()
            self.faults.reset()
            self.log.clear()

    def now(self) -> datetime:
        """World time: real UTC plus the offset `advance` added."""
        return self.state.now()

    def advance(self, seconds: float) -> None:
        """Move the world clock forward (stories age, tokens and windows run out)."""
        self.state.advance(seconds)

    # --- creation --------------------------------------------------------------------------

    def add_account(
        self,
        *,
        ig_user_id: str | None = None,
        username: str | None = None,
        token: str | None = None,
        login: str = "facebook",
        token_issued_at: datetime | None = None,
        token_age_seconds: float | None = None,
        token_expires_at: datetime | None = UNSET,
        budget: int | None = None,
        impressions: int | None = None,
        threads_user_id: str | None = None,
        stories: Iterable[Mapping[str, Any]] = (),
        followers_count: int = 500,
        daily_reach: int = 300,
    ) -> Account:
        """An IG professional account with its token (`login`: facebook or instagram); its
        budget per rolling window is `budget`, else 4800 * `impressions`, else the default."""
        if login not in ("facebook", "instagram"):
            msg = f"login must be facebook or instagram, not {login!r}"
            raise ValueError(msg)
        with self.lock:
            ig_id = self.state.claim_id(ig_user_id, IG_USER_BASE)
            issued = token_issued_at or self.state.aged(token_age_seconds)
            tok = self.tokens.issue_token(
                login, ig_id, token, issued_at=issued, expires_at=token_expires_at
            )
            account = Account(
                ig_id, username or f"account_{ig_id[-6:]}", tok.value, login, budget,
                impressions=impressions, followers_count=followers_count,
                daily_reach=daily_reach,
            )  # fmt: skip
            self.state.accounts[ig_id] = account
            linked = threads_user_id or next(
                (t for t, i in self.state.threads_links.items() if i == ig_id), None
            )
            if linked is not None:
                self.link(ig_id, linked)
            for spec in stories:
                self.add_story(ig_id, **spec)
            return account

    def add_story(
        self,
        account: str,
        *,
        story_id: str | None = None,
        timestamp: datetime | float | None = None,
        age_seconds: float | None = None,
        viewers: int = 500,
        seed: int | None = None,
        media_type: str = "IMAGE",
        caption: str | None = None,
        finals: Mapping[str, int] | None = None,
        refuses: Sequence[str] = (),
    ) -> Story:
        """A story posted at `timestamp` (or `age_seconds` ago; default now).

        `viewers` is its final reach; below 5, insights answer error 10. `finals` overrides
        final counters (keys as in insights.story_finals, e.g. "reach", "nav:tap_exit").
        `refuses`: metrics Meta will not serve for this media (see refuse_metrics).
        """
        with self.lock:
            owner = self.account(account)
            media_id = self.state.claim_id(story_id, STORY_BASE)
            seed = int(media_id) if seed is None else seed
            story = Story(
                id=media_id,
                account=owner.ig_user_id,
                timestamp=self.state.moment(timestamp, age_seconds),
                viewers=viewers,
                seed=seed,
                finals=insights.story_finals(viewers, seed, finals),
                media_type=media_type,
                caption=caption,
                refuses=_story_metrics(refuses),
            )
            self.state.story_index[media_id] = story
            owner.story_ids.append(media_id)
            return story

    def refuse_metrics(self, media_id: str, metrics: Sequence[str]) -> Story:
        """From now on insights of this story fail with (#100) "not supported for this media
        type" when any of `metrics` is asked (an empty list serves everything again)."""
        with self.lock:
            story = self.story(media_id)
            story.refuses = _story_metrics(metrics)
            return story

    def add_threads_user(
        self,
        *,
        threads_user_id: str | None = None,
        username: str | None = None,
        token: str | None = None,
        ig_user_id: str | None = None,
        followers_count: int = 150,
        links: Sequence[str] = (),
        daily_views: int = 100,
        seed: int | None = None,
        token_issued_at: datetime | None = None,
        token_age_seconds: float | None = None,
        token_expires_at: datetime | None = UNSET,
    ) -> ThreadsUser:
        """A Threads profile; `ig_user_id` links it to an Instagram account (needed for
        followers_count and follower_demographics)."""
        with self.lock:
            uid = self.state.claim_id(threads_user_id, THREADS_USER_BASE)
            issued = token_issued_at or self.state.aged(token_age_seconds)
            tok = self.tokens.issue_token(
                "threads", uid, token, issued_at=issued, expires_at=token_expires_at
            )
            user = ThreadsUser(
                id=uid,
                username=username or f"threads_{uid[-6:]}",
                token=tok.value,
                seed=int(uid) if seed is None else seed,
                followers_count=followers_count,
                links=list(links) or [f"https://example.com/{uid}/bio", "https://example.com/shop"],
                daily_views=daily_views,
            )
            self.state.threads_users[uid] = user
            linked = ig_user_id or self.state.threads_links.get(uid)
            if linked is not None:
                self.link(linked, uid)
            return user

    def add_threads_post(
        self,
        user: str,
        *,
        post_id: str | None = None,
        timestamp: datetime | float | None = None,
        age_seconds: float | None = None,
        media_type: str = "TEXT_POST",
        text: str | None = None,
        seed: int | None = None,
        finals: Mapping[str, int] | None = None,
        is_quote_post: bool = False,
        reply_to: str | None = None,
    ) -> ThreadsPost:
        """A Threads post; media_type REPOST_FACADE posts have no insights ({"data": []});
        `reply_to` (a post id) makes it the user's reply to that post."""
        with self.lock:
            owner = self.threads_user(user)
            parent = None if reply_to is None else self.threads_post(reply_to)
            pid = self.state.claim_id(post_id, THREADS_POST_BASE)
            seed = int(pid) if seed is None else seed
            post = ThreadsPost(
                id=pid,
                user=owner.id,
                timestamp=self.state.moment(timestamp, age_seconds),
                seed=seed,
                finals=insights.post_finals(seed, finals),
                media_type=media_type,
                text=text if text is not None else f"Post {pid}",
                is_quote_post=is_quote_post,
                replied_to=None if parent is None else parent.id,
                root_post=None if parent is None else parent.root_post or parent.id,
            )
            self.state.post_index[pid] = post
            owner.post_ids.append(pid)
            return post

    def delete_threads_post(self, post_id: str) -> ThreadsPost:
        """The owner deletes a post: it leaves the listing and its insights answer (#100)."""
        with self.lock:
            post = self.threads_post(post_id)
            post.deleted_at = post.deleted_at or self.now()
            return post

    def link(self, ig_user_id: str, threads_user_id: str) -> None:
        """Connect an IG account and a Threads profile (either may be created later)."""
        with self.lock:
            self.state.threads_links[threads_user_id] = ig_user_id
            if ig_user_id in self.state.accounts:
                self.state.accounts[ig_user_id].threads_user_id = threads_user_id
            if threads_user_id in self.state.threads_users:
                self.state.threads_users[threads_user_id].ig_user_id = ig_user_id

    def populate(
        self,
        *,
        accounts: int = 1,
        stories_per_account: int = 0,
        story_ages: Sequence[float] | None = None,
        viewers: int = 500,
        login: str = "facebook",
        budget: int | None = None,
        threads: bool = False,
        posts_per_user: int = 0,
        token_age_seconds: float | None = None,
    ) -> list[Account]:
        """Many accounts at once, e.g. 1,000 accounts x 3 stories for a benchmark.

        Story i of each account is `story_ages[i % len]` seconds old (default: spread over
        the day); with `threads`, each account gets a linked Threads user with posts.
        """
        count = max(stories_per_account, 1)
        ages = list(story_ages or [i * 86400 / count for i in range(count)])
        created = []
        with self.lock:
            for _ in range(accounts):
                account = self.add_account(
                    login=login, budget=budget, token_age_seconds=token_age_seconds
                )
                for i in range(stories_per_account):
                    self.add_story(
                        account.ig_user_id, age_seconds=ages[i % len(ages)], viewers=viewers
                    )
                if threads:
                    user = self.add_threads_user(
                        ig_user_id=account.ig_user_id, token_age_seconds=token_age_seconds
                    )
                    for i in range(posts_per_user):
                        self.add_threads_post(user.id, age_seconds=3600.0 * (i + 1))
                created.append(account)
        return created

    # --- read access -------------------------------------------------------------------------

    def account(self, ig_user_id: str) -> Account:
        return self.state.account(ig_user_id)

    def threads_user(self, threads_user_id: str) -> ThreadsUser:
        return self.state.threads_user(threads_user_id)

    def story(self, media_id: str) -> Story:
        return self.state.story(media_id)

    def threads_post(self, post_id: str) -> ThreadsPost:
        return self.state.threads_post(post_id)

    def connected_threads_user(self, ig_user_id: str) -> str | None:
        """The Threads user linked to an IG account, if any."""
        with self.lock:
            return self.account(ig_user_id).threads_user_id

    def live_stories(self, ig_user_id: str) -> list[Story]:
        """An account's unexpired stories, newest first (the order of the /stories edge)."""
        with self.lock:
            now = self.now()
            stories = [self.state.story_index[i] for i in self.account(ig_user_id).story_ids]
        return sorted((s for s in stories if s.alive(now)), key=lambda s: s.sort_key)

    def posts_of(self, threads_user_id: str) -> list[ThreadsPost]:
        """A Threads user's posts, newest first."""
        with self.lock:
            posts = [self.state.post_index[i] for i in self.threads_user(threads_user_id).post_ids]
        return sorted(posts, key=lambda p: p.sort_key)

    def story_values(self, media_id: str, at: datetime | None = None) -> dict[str, int]:
        """A story's counters at a moment (default now), as /insights reports them."""
        return self.story(media_id).counts(at or self.now())

    def story_webhook_value(self, media_id: str) -> dict[str, Any]:
        """The `value` of a story_insights webhook change for this story, with the legacy
        names of Meta's sample and -1 for counts below 5 (IGWH-FB). Final values: Meta sends
        it an hour after expiry."""
        story = self.story(media_id)
        counts = story.counts(story.expires_at)

        def shown(n: int) -> int:
            return n if n >= 5 else -1

        return {
            "media_id": story.id,
            "exits": shown(counts["nav:tap_exit"]),
            "replies": shown(counts["replies"]),
            "reach": shown(counts["reach"]),
            "taps_forward": shown(counts["nav:tap_forward"]),
            "taps_back": shown(counts["nav:tap_back"]),
            "impressions": shown(counts["views"]),
        }

    def summary(self) -> dict[str, int]:
        """How many objects, faults and calls the world holds."""
        with self.lock:
            now = self.now()
            return {
                "accounts": len(self.state.accounts),
                "stories": len(self.state.story_index),
                "ig_media": len(self.state.ig_media_index),
                "live_stories": sum(s.alive(now) for s in self.state.story_index.values()),
                "threads_users": len(self.state.threads_users),
                "threads_posts": len(self.state.post_index),
                "tokens": len(self.tokens.issued),
                "faults": len(self.faults.book),
                "blocks": len(self.budgets.blocks()),
                "denials": len(self.budgets.denials.items),
                "calls": self.log.last_seq(),
            }
