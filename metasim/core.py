"""The world's machinery: lock, config, clock, ids, faults and the call log.

One re-entrant lock guards everything, because tests build and read the world from their own
thread while the server's event loop answers requests.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from core.errors import ConflictError, NotFoundError
from metasim.access import Denials
from metasim.calllog import CallLog
from metasim.entities import (
    Account,
    Call,
    SimConfig,
    Story,
    ThreadsPost,
    ThreadsUser,
    Token,
)
from metasim.faults import Fault, FaultBook
from metasim.limits import Limiter

T = TypeVar("T")


class WorldCore:
    """Shared state and bookkeeping; metasim.state.World adds the objects Meta serves."""

    def __init__(self, config: SimConfig | None = None, **settings: Any) -> None:
        self.lock = threading.RLock()
        self.config = replace(config or SimConfig(), **settings)
        self.offset = 0.0
        self._reset_state()

    def _reset_state(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.story_index: dict[str, Story] = {}
        self.threads_users: dict[str, ThreadsUser] = {}
        self.post_index: dict[str, ThreadsPost] = {}
        self.tokens: dict[str, Token] = {}
        self.threads_links: dict[str, str] = {}  # threads user id -> ig user id (either side)
        self.limiter = Limiter()
        self.denials = Denials()
        self.faultbook = FaultBook()
        self.log = CallLog()
        self._serials = itertools.count(1)
        self._ids: dict[str, itertools.count[int]] = {}

    def reset(self, *, config: bool = False) -> None:
        """Forget every object, token, fault, usage figure and call (and the config if asked)."""
        with self.lock:
            self._reset_state()
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
            raise ConflictError(msg)
        return str(object_id)

    def lookup(self, object_id: str) -> Account | Story | ThreadsUser | ThreadsPost | None:
        """The object with this id, of whichever kind (ids are unique across kinds)."""
        return (
            self.accounts.get(object_id)
            or self.story_index.get(object_id)
            or self.threads_users.get(object_id)
            or self.post_index.get(object_id)
        )

    # --- faults, call log ---------------------------------------------------------------------

    def add_fault(
        self,
        *,
        code: int | None = None,
        status: int | None = None,
        delay: float = 0.0,
        count: int | None = None,
        seconds: float | None = None,
        account: str | None = None,
        kind: str | None = None,
        message: str | None = None,
        subcode: int | None = None,
        is_transient: bool | None = None,
        regain_minutes: int = 1,
        garbage: str | None = None,
        quote: str | None = None,
    ) -> Fault:
        """Inject a fault: a Meta error `code` and/or HTTP `status`, and/or a `delay` (s), or
        a `garbage` 200 ("not_json" or "not_object"), for the next `count` matching calls
        (default 1) or for `seconds` of world time; `account` (IG user or Threads user id)
        and `kind` (route kind) narrow it. `quote` ("token", "old_token", "url") makes the
        error's message quote a token back (metasim.tokens.quoting_error)."""
        with self.lock:
            return self.faultbook.add(
                self.clock(), seconds=seconds, code=code, status=status, delay=delay,
                count=count, account=None if account is None else str(account), kind=kind,
                message=message, subcode=subcode, is_transient=is_transient,
                regain_minutes=regain_minutes, garbage=garbage, quote=quote,
            )  # fmt: skip

    def take_fault(self, account: str | None, kind: str) -> Fault | None:
        with self.lock:
            if not self.faultbook.faults:
                return None
            return self.faultbook.take(account, kind, self.clock())

    def faults(self) -> list[Fault]:
        with self.lock:
            return [f for f in self.faultbook.faults if f.live(self.clock())]

    def clear_faults(self) -> None:
        with self.lock:
            self.faultbook.clear()

    def calls(
        self,
        *,
        kind: str | None = None,
        account: str | None = None,
        platform: str | None = None,
        since: int = 0,
    ) -> list[Call]:
        """Calls answered so far (oldest first), optionally filtered; `since` is a seq."""
        return self.log.calls(kind=kind, account=account, platform=platform, since=since)

    def last_seq(self) -> int:
        return self.log.last_seq()

    def clear_calls(self) -> None:
        self.log.clear()

    # --- lookups -------------------------------------------------------------------------

    def account(self, ig_user_id: str) -> Account:
        return self._get(self.accounts, ig_user_id, "account")

    def threads_user(self, threads_user_id: str) -> ThreadsUser:
        return self._get(self.threads_users, threads_user_id, "Threads user")

    def _get(self, table: Mapping[str, T], key: str, what: str) -> T:
        with self.lock:
            found = table.get(str(key))
        if found is None:
            msg = f"no {what} {key}"
            raise NotFoundError(msg)
        return found
