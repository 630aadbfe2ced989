"""Throttling shared through Redis, so every worker process honours one pause.

Meta's rule (https://developers.facebook.com/docs/graph-api/overview/rate-limiting): once
limited, stop calling; more calls extend the block. So a pause is a Redis key with an expiry
(`archiver:pause:ig:<ig_user_id>`, value = resume time as a Unix timestamp, for humans),
checked before every request; the remaining time comes from the key's PTTL, so clocks of
different workers never disagree.

Two scopes. An account (`ig:<id>`, `threads:<id>`) is paused by its own throttle errors
(17, 32, 613, 80002, ...) and its X-Business-Use-Case-Usage. The app (`app` for the Meta app,
`app:threads` for the Threads app, which has its own id and budget) is paused by code 4
(application request limit) and by X-App-Usage, and that pause holds every account of the
app in every worker: no call at all until it lapses.

Every answer's usage headers are read, errors and throttles included. Slow-down rule (before
Meta throttles us): when a BUC figure (the largest of call_count, total_time, total_cputime)
exceeds `slow_at` percent (default 80), the account is paused for a time growing linearly from
0 at `slow_at` to `slow_minutes` (default 5) at 100 %. The same rule on X-App-Usage pauses the
app, and at 100 % or more that is an `app_limit` pause. A non-zero
`estimated_time_to_regain_access` pauses the account for that many minutes. All pauses add up
to `jitter` (10 %) so that workers do not resume in lockstep.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from redis.asyncio import Redis

from reports.figures import CALLS_KEY, PAUSES_KEY, stat_field
from reports.worker_metrics import WorkerMetrics
from workers.meta.api_errors import AccountPaused, AppThrottled, MetaError, Throttled
from workers.meta.usage import Usage, parse_app_usage, parse_buc_usage

__all__ = [
    "APP",
    "Pacer",
    "Usage",
    "account_usage",
    "parse_app_usage",
    "parse_buc_usage",
]

log = logging.getLogger(__name__)

APP = "app"
APP_LIMIT = "app_limit"  # pause reason: code 4, or X-App-Usage at 100 % or more

# Keep the later of the existing and the new resume time: a short slow-down must never cut a
# throttle pause short. KEYS: pause key, the account's counter hash, the platform-wide one;
# ARGV: ms, resume timestamp, reason, platform-wide field.
_PAUSE_SCRIPT = """
local ttl = redis.call('PTTL', KEYS[1])
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
if ttl >= tonumber(ARGV[1]) then return ttl end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
return tonumber(ARGV[1])
"""


class Hold(NamedTuple):
    """A pause one answer calls for: how long, and why (for the pause counters)."""

    seconds: float
    reason: str


def account_usage(headers: Mapping[str, str], account_id: str) -> Usage | None:
    """The BUC usage that applies to one account: its own entries, else all of them (worst)."""
    buc = parse_buc_usage(headers.get("x-business-use-case-usage"))
    entries = buc.get(account_id) or [usage for entries in buc.values() for usage in entries]
    if not entries:
        return None
    return Usage(
        call_count=max(u.call_count for u in entries),
        total_time=max(u.total_time for u in entries),
        total_cputime=max(u.total_cputime for u in entries),
        regain_minutes=max(u.regain_minutes for u in entries),
    )


class Pacer:
    """Shared pauses per account key (`ig:<ig_user_id>`, `threads:<id>`) and per app."""

    def __init__(
        self,
        redis: Redis,
        *,
        minute_seconds: float = 60.0,
        slow_at: float = 80.0,
        slow_minutes: float = 5.0,
        jitter: float = 0.1,
        prefix: str = "archiver",
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.redis = redis
        self.metrics = metrics
        self.minute_seconds = minute_seconds
        self.slow_at = slow_at
        self.slow_minutes = slow_minutes
        self.jitter = jitter
        self.prefix = prefix
        self._script = redis.register_script(_PAUSE_SCRIPT)

    def __repr__(self) -> str:
        return f"Pacer(minute_seconds={self.minute_seconds}, slow_at={self.slow_at})"

    def pause_key(self, account: str) -> str:
        return f"{self.prefix}:pause:{account}"

    @staticmethod
    def app_of(account: str) -> str:
        """The app whose budget `account` shares: Instagram's (`app`) or the Threads app's
        (`app:threads`), which has its own app id and budget
        (https://developers.facebook.com/docs/threads/get-started)."""
        platform = account.partition(":")[0]
        if platform == APP:
            return account
        return APP if platform == "ig" else f"{APP}:{platform}"

    def count_key(self, account: str) -> str:
        return f"{self.prefix}:pauses:{account}"

    async def _held(self, account: str) -> tuple[str, float]:
        """The key holding `account` longest (its own, or its app's) and its seconds left."""
        keys = list(dict.fromkeys([account, self.app_of(account)]))
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pttl(self.pause_key(key))
            ttls = await pipe.execute()
        left = {key: max(0, int(ttl)) / 1000 for key, ttl in zip(keys, ttls, strict=True)}
        key = max(left, key=left.__getitem__)
        return key, left[key]

    async def remaining(self, account: str) -> float:
        """Seconds until calls for `account` may resume (the app pause included); 0 if free."""
        return (await self._held(account))[1]

    async def check(self, account: str) -> None:
        """Raise AccountPaused (naming the key that holds, with its seconds left) unless
        `account` may call now."""
        key, left = await self._held(account)
        if left > 0:
            raise AccountPaused(key, left)

    async def pause(self, account: str, seconds: float, *, reason: str) -> float:
        """Hold `account` for `seconds` plus jitter (never shortening a longer pause).

        Returns the seconds the account is now paused for.
        """
        seconds *= 1 + random.uniform(0, self.jitter)
        ms = max(1, round(seconds * 1000))
        resume = f"{time.time() + ms / 1000:.3f}"
        keys = [self.pause_key(account), self.count_key(account), PAUSES_KEY]
        args: list[str | int] = [ms, resume, reason, stat_field(account, reason)]
        held = int(await self._script(keys=keys, args=args))
        if self.metrics is not None:
            self.metrics.paused(account, reason)
        log.warning("pausing %s for %.1fs (%s)", account, held / 1000, reason)
        return held / 1000

    async def count_call(self, account: str, status: str, *, path: str, seconds: float) -> None:
        """One Meta call to `path` answered with `status` (HTTP code, or `error` for no
        answer) after `seconds`: the archive-wide count in Redis and this process's metrics."""
        if self.metrics is not None:
            self.metrics.meta_call(account, path, status, seconds)
        await self.redis.hincrby(CALLS_KEY, stat_field(account, status), 1)  # type: ignore[misc]

    async def pause_counts(self, account: str) -> dict[str, int]:
        """How many pauses `account` took, by reason (throttled, regain, slowdown)."""
        raw = await self.redis.hgetall(self.count_key(account))  # type: ignore[misc]
        return {_text(key): int(value) for key, value in raw.items()}

    async def throttled(self, account: str, error: Throttled) -> float:
        """Meta said stop: hold the error's scope (the app for code 4, else the account) for
        its retry_after; returns the seconds now held."""
        if isinstance(error, AppThrottled):
            return await self.pause(self.app_of(account), error.retry_after, reason=APP_LIMIT)
        return await self.pause(account, error.retry_after, reason="throttled")

    async def observe(self, account: str, headers: Mapping[str, str]) -> float:
        """Apply the slow-down rule to one answer's usage headers; return the account's pause."""
        return (await self.after(account, headers)).get(account, 0.0)

    async def after(
        self, account: str, headers: Mapping[str, str], error: MetaError | None = None
    ) -> dict[str, float]:
        """Feed one answer (any status: successes, errors, throttles) to the pauses.

        A Throttled `error` holds its scope and gets the seconds actually held as its
        retry_after. Returns the seconds held per paused key.
        """
        app = self.app_of(account)
        holds = {account: self._account_hold(account, headers, error),
                 app: self._app_hold(headers, error)}  # fmt: skip
        held = {
            key: await self.pause(key, hold.seconds, reason=hold.reason)
            for key, hold in holds.items()
            if hold is not None
        }
        if isinstance(error, Throttled):
            scope = app if isinstance(error, AppThrottled) else account
            error.retry_after = held.get(scope, error.retry_after)
        return held

    def _account_hold(
        self, account: str, headers: Mapping[str, str], error: MetaError | None
    ) -> Hold | None:
        if isinstance(error, Throttled) and not isinstance(error, AppThrottled):
            return Hold(error.retry_after, "throttled")  # its wait came from these headers
        usage = account_usage(headers, account.partition(":")[2] or account)
        if usage is not None and usage.regain_minutes > 0:
            return Hold(usage.regain_minutes * self.minute_seconds, "regain")
        if usage is not None and usage.peak > self.slow_at:
            return Hold(self.slow_seconds(usage.peak), "slowdown")
        return None

    def _app_hold(self, headers: Mapping[str, str], error: MetaError | None) -> Hold | None:
        usage = parse_app_usage(headers.get("x-app-usage"))
        peak = usage.peak if usage is not None else 0.0
        if isinstance(error, AppThrottled):
            return Hold(error.retry_after, APP_LIMIT)
        if peak >= 100:  # the app is at its limit: Meta may refuse any call now
            return Hold(self.slow_minutes * self.minute_seconds, APP_LIMIT)
        if peak > self.slow_at:
            return Hold(self.slow_seconds(peak), "slowdown")
        return None

    def slow_seconds(self, peak: float) -> float:
        """0 s at `slow_at` percent, growing linearly to `slow_minutes` at 100 % and above."""
        share = (min(peak, 100.0) - self.slow_at) / max(100.0 - self.slow_at, 1e-9)
        return max(share, 0.0) * self.slow_minutes * self.minute_seconds


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
