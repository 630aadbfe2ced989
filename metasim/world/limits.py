"""Call budgets over rolling windows, and blocks that calls made during them extend.

Meta counts calls per app + app-user pair over a rolling window ("Calls within 24 hours =
4800 * Number of Impressions" for Instagram's Business Use Case limit; one hour for the app's
X-App-Usage), reports usage in whole percentages and `estimated_time_to_regain_access` in
minutes, and says that calls made while throttled extend the block
(https://developers.facebook.com/docs/graph-api/overview/rate-limiting).

Here every call counts, refused ones included: that is how more calls extend a block. Calls
are kept in buckets of one (simulated) minute, so a 24 h window costs at most 1,440 buckets
per key whatever the call rate, and a "minute" lasts `minute_seconds` so tests run a whole
throttle cycle in a second. Not thread-safe on its own: the World calls it under its lock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Charge:
    """The outcome of one call against a budget."""

    percent: int  # call_count, 0..100
    regain_minutes: int  # 0 unless over budget
    over: bool

    def usage(self, *, instagram_login: bool = False) -> dict[str, int]:
        """The figures of one usage header entry; time and CPU follow the call count.

        graph.instagram.com names them call_volume / cpu_time / total_time (Instagram Login;
        unconfirmed: the name change is reported, not documented by Meta), graph.facebook.com
        call_count / total_cputime / total_time.
        """
        cpu, total = self.percent * 2 // 5, self.percent * 3 // 5
        if instagram_login:
            return {"call_volume": self.percent, "cpu_time": cpu, "total_time": total}
        return {"call_count": self.percent, "total_cputime": cpu, "total_time": total}


@dataclass
class Rolling:
    """One key's calls in the window: [bucket start, calls] pairs, oldest first."""

    buckets: deque[list[float]] = field(default_factory=deque)
    total: int = 0

    def prune(self, now: float, span: float) -> None:
        """Forget buckets that ended `span` (window + bucket length) ago."""
        while self.buckets and self.buckets[0][0] + span <= now:
            self.total -= int(self.buckets.popleft()[1])

    def add(self, now: float, minute: float) -> None:
        if not self.buckets or now >= self.buckets[-1][0] + minute:
            self.buckets.append([now, 0])
        self.buckets[-1][1] += 1
        self.total += 1

    def free_at(self, budget: int, span: float) -> float:
        """When enough old calls have left the window for one more call to fit (the caller
        has just counted a call, so there is at least one bucket)."""
        excess, last = self.total - budget + 1, 0.0
        for start, count in self.buckets:
            excess, last = excess - int(count), start
            if excess <= 0:
                break
        return last + span


@dataclass
class Block:
    """A block set on demand: until `until`; each call during it pushes the end to at least
    `extend` seconds after that call."""

    until: float
    extend: float

    def to_dict(self, now: float) -> dict[str, float]:
        return {"remaining_seconds": max(0.0, self.until - now), "extend_seconds": self.extend}


class Limiter:
    """Rolling call budgets and on-demand blocks, keyed by account id or "app:<platform>"."""

    def __init__(self) -> None:
        self.windows: dict[str, Rolling] = {}
        self.blocks: dict[str, Block] = {}

    def clear(self) -> None:
        self.windows.clear()
        self.blocks.clear()

    def charge(
        self, key: str, budget: int, now: float, window_seconds: float, minute_seconds: float
    ) -> Charge:
        """Count one call (refused or not) and say whether it is over the budget or blocked."""
        rolling = self.windows.setdefault(key, Rolling())
        span = window_seconds + minute_seconds
        rolling.prune(now, span)
        rolling.add(now, minute_seconds)
        budget = max(budget, 1)
        blocked = self._blocked(key, now)
        if rolling.total <= budget and blocked is None:
            return Charge(min(100, rolling.total * 100 // budget), 0, over=False)
        free = rolling.free_at(budget, span) if rolling.total > budget else now
        until = max(free, blocked.until if blocked else now)
        return Charge(100, max(1, math.ceil((until - now) / minute_seconds)), over=True)

    def _blocked(self, key: str, now: float) -> Block | None:
        block = self.blocks.get(key)
        if block is None or now >= block.until:
            self.blocks.pop(key, None)
            return None
        block.until = max(block.until, now + block.extend)  # more calls extend the block
        return block

    def peek(
        self, key: str, budget: int, now: float, window_seconds: float, minute_seconds: float
    ) -> Charge:
        """The current usage of a key without counting a call (for answers before charging)."""
        rolling = self.windows.get(key)
        if rolling is None:
            return Charge(0, 0, over=False)
        rolling.prune(now, window_seconds + minute_seconds)
        return Charge(min(100, rolling.total * 100 // max(budget, 1)), 0, over=False)

    def block(self, key: str, now: float, seconds: float, extend: float) -> Block:
        """Refuse every call of `key` for `seconds`; each call meanwhile extends it."""
        self.blocks[key] = Block(now + seconds, extend)
        return self.blocks[key]
