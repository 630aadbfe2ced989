"""The state every part of the World shares: lock, config, clock, ids and the objects.

One re-entrant lock guards everything, because tests build and read the world from their own
thread while the server's event loop answers requests. The World's parts (tokens, budgets,
faults) each hold this one object, so they see the same clock and the same accounts.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from metasim.world.entities import Account, IgPost, SimConfig, Story, ThreadsPost, ThreadsUser

T = TypeVar("T")


class NotFound(LookupError):
    """No object (account, story, Threads user or post, token) has this id or value."""


class Conflict(Exception):
    """The id or token is taken already (the control API answers 409)."""


class WorldState:
    """Config, clock, ids and the objects Meta serves, by id (ids are unique across kinds)."""

    def __init__(self, config: SimConfig | None = None, **settings: Any) -> None:
        self.lock = threading.RLock()
        self.config = replace(config or SimConfig(), **settings)
        self.offset = 0.0
        self._reset_objects()

    def _reset_objects(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.story_index: dict[str, Story] = {}
        self.ig_media_index: dict[str, IgPost] = {}  # feed posts and Reels (world.feed)
        self.threads_users: dict[str, ThreadsUser] = {}
        self.post_index: dict[str, ThreadsPost] = {}
        self.threads_links: dict[str, str] = {}  # threads user id -> ig user id (either side)
        self._ids: dict[str, itertools.count[int]] = {}

    def reset(self, *, config: bool = False) -> None:
        """Forget every object and the clock's offset (and the config if asked)."""
        with self.lock:
            self._reset_objects()
            self.offset = 0.0
            if config:
                self.config = SimConfig()

    def configure(self, **settings: Any) -> SimConfig:
        names = {f.name for f in fields(SimConfig)}
        unknown = set(settings) - names
        if unknown:
            msg = f"unknown setting(s): {', '.join(sorted(unknown))}"
            raise ValueError(msg)
        with self.lock:
            self.config = replace(self.config, **settings)
            return self.config

    # --- clock ---------------------------------------------------------------------------

    def clock(self) -> float:
        """World time as a Unix timestamp."""
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def advance(self, seconds: float) -> None:
        """Move the world clock forward (stories age, tokens and windows run out)."""
        with self.lock:
            self.offset += seconds

    def moment(self, timestamp: datetime | float | None, age_seconds: float | None) -> datetime:
        """A creation time from a datetime, a Unix time or an age in seconds (default now)."""
        if isinstance(timestamp, datetime):
            if timestamp.tzinfo is None:
                msg = "naive datetime given; the simulator works in UTC"
                raise ValueError(msg)
            return timestamp.astimezone(UTC)
        if isinstance(timestamp, int | float):
            return datetime.fromtimestamp(timestamp, UTC)
        return self.now() - timedelta(seconds=age_seconds or 0.0)

    def aged(self, age_seconds: float | None) -> datetime | None:
        """`age_seconds` before now (None: not given)."""
        return None if age_seconds is None else self.now() - timedelta(seconds=age_seconds)

    # --- ids --------------------------------------------------------------------

    def new_id(self, base: int) -> str:
        counter = self._ids.setdefault(str(base), itertools.count(base + 1))
        while True:
            candidate = str(next(counter))
            if self.lookup(candidate) is None:
                return candidate

    def claim_id(self, object_id: str | None, base: int) -> str:
        if object_id is None:
            return self.new_id(base)
        object_id = str(object_id)  # JSON callers may send numbers
        if self.lookup(object_id) is not None:
            msg = f"id {object_id} exists already"
            raise Conflict(msg)
        return str(object_id)

    # --- lookups -------------------------------------------------------------------------

    def lookup(self, object_id: str) -> Account | Story | IgPost | ThreadsUser | ThreadsPost | None:
        """The object with this id, of whichever kind (ids are unique across kinds)."""
        with self.lock:
            return (
                self.accounts.get(object_id)
                or self.story_index.get(object_id)
                or self.ig_media_index.get(object_id)
                or self.threads_users.get(object_id)
                or self.post_index.get(object_id)
            )

    def account(self, ig_user_id: str) -> Account:
        return self._get(self.accounts, ig_user_id, "account")

    def threads_user(self, threads_user_id: str) -> ThreadsUser:
        return self._get(self.threads_users, threads_user_id, "Threads user")

    def story(self, media_id: str) -> Story:
        return self._get(self.story_index, media_id, "story")

    def get_ig_media(self, media_id: str) -> IgPost:
        return self._get(self.ig_media_index, media_id, "feed post or Reel")

    def threads_post(self, post_id: str) -> ThreadsPost:
        return self._get(self.post_index, post_id, "Threads post")

    def _get(self, table: Mapping[str, T], key: str, what: str) -> T:
        with self.lock:
            found = table.get(str(key))
        if found is None:
            msg = f"no {what} {key}"
            raise NotFound(msg)
        return found
