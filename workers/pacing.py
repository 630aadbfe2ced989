"""Per-account throttling shared through Redis, so every worker process honours one pause.

Meta's rule (https://developers.facebook.com/docs/graph-api/overview/rate-limiting): once
limited, stop calling; more calls extend the block. So a pause is a Redis key with an expiry
(`archiver:pause:ig:<ig_user_id>`, value = resume time as a Unix timestamp, for humans),
checked before every request; the remaining time comes from the key's PTTL, so clocks of
different workers never disagree.

Slow-down rule (before Meta throttles us): after every response the usage headers are read.
When an account's X-Business-Use-Case-Usage figure (the largest of call_count, total_time,
total_cputime) exceeds `slow_at` percent (default 80), the account is paused for a time
growing linearly from 0 at `slow_at` to `slow_minutes` (default 5) at 100 %. The same rule
on X-App-Usage pauses the whole app (`archiver:pause:app`), which every account honours.
A non-zero `estimated_time_to_regain_access` pauses the account for that many minutes.
All pauses add up to `jitter` (10 %) so that workers do not resume in lockstep.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from models.stats import CALLS_KEY, PAUSES_KEY, stat_field
from workers.errors import AccountPaused, Throttled
from workers.usage import Usage, parse_app_usage, parse_buc_usage

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
    """Shared pauses per account key (`ig:<ig_user_id>`, `threads:<id>`) and for the app."""

    def __init__(
        self,
        redis: Redis,
        *,
        minute_seconds: float = 60.0,
        slow_at: float = 80.0,
        slow_minutes: float = 5.0,
        jitter: float = 0.1,
        prefix: str = "archiver",
    ) -> None:
        self.redis = redis
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
        """The app whose usage `account` shares: Instagram's (`app`) or Threads' own app
        (`app:threads`), which has a separate app id and budget (META-API.md §5)."""
        platform = account.partition(":")[0]
        return APP if platform in ("ig", APP) else f"{APP}:{platform}"

    def count_key(self, account: str) -> str:
        return f"{self.prefix}:pauses:{account}"

    async def remaining(self, account: str) -> float:
        """Seconds until calls for `account` may resume (the app pause included); 0 if free."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.pttl(self.pause_key(account))
            pipe.pttl(self.pause_key(self.app_of(account)))
            ttls = await pipe.execute()
        return max(0, *(int(ttl) for ttl in ttls)) / 1000

    async def check(self, account: str) -> None:
        """Raise AccountPaused (with the remaining seconds) unless `account` may call now."""
        remaining = await self.remaining(account)
        if remaining > 0:
            raise AccountPaused(account, remaining)

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
        log.warning("pausing %s for %.1fs (%s)", account, held / 1000, reason)
        return held / 1000

    async def count_call(self, account: str, status: str) -> None:
        """One Meta call answered with `status` (HTTP code, or `error` for no answer)."""
        await self.redis.hincrby(CALLS_KEY, stat_field(account, status), 1)  # type: ignore[misc]

    async def pause_counts(self, account: str) -> dict[str, int]:
        """How many pauses `account` took, by reason (throttled, regain, slowdown)."""
        raw = await self.redis.hgetall(self.count_key(account))  # type: ignore[misc]
        return {_text(key): int(value) for key, value in raw.items()}

    async def throttled(self, account: str, error: Throttled) -> float:
        """Meta said stop: pause the account for the error's retry_after (header-derived)."""
        return await self.pause(account, error.retry_after, reason="throttled")

    async def observe(self, account: str, headers: Mapping[str, str]) -> float:
        """Apply the slow-down rule to one response's usage headers; return the pause set."""
        paused = 0.0
        usage = account_usage(headers, account.partition(":")[2] or account)
        if usage is not None and usage.regain_minutes > 0:
            seconds = usage.regain_minutes * self.minute_seconds
            paused = await self.pause(account, seconds, reason="regain")
        elif usage is not None and usage.peak > self.slow_at:
            paused = await self.pause(account, self.slow_seconds(usage.peak), reason="slowdown")
        app = parse_app_usage(headers.get("x-app-usage"))
        if app is not None and app.peak > self.slow_at:
            await self.pause(self.app_of(account), self.slow_seconds(app.peak), reason="slowdown")
        return paused

    def slow_seconds(self, peak: float) -> float:
        """0 s at `slow_at` percent, growing linearly to `slow_minutes` at 100 % and above."""
        share = (min(peak, 100.0) - self.slow_at) / max(100.0 - self.slow_at, 1e-9)
        return max(share, 0.0) * self.slow_minutes * self.minute_seconds


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
